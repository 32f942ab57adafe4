//! Fuzz target bodies for the NTF receive paths: `ntf_transmission` (what an ntf-server does
//! with a received block) and `ntf_handshake` (both sides of the NTF hello exchange).
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/ntf_*.rs`) and the corpus-replay test
//! `crates/hush-transport/tests/fuzz_corpus.rs` (included with `#[path]`). Like
//! `bodies/proto.rs`, every body takes the raw fuzzer input (**first byte selects**, the rest is
//! the payload), never panics on bad input, returns whether the decoder accepted it, and asserts
//! round trips when it did.
//!
//! The ntf-server / hush-transport steps are async and tied to a store or a TLS stream, so the
//! bodies follow them step by step with the same hush-proto / hush-crypto calls:
//! `ntf-server/src/server.rs` `serve_connection` → `core.rs` `process_transmission` /
//! `transmission` → `command.rs` `parse_command`, and `hush-transport/src/handshake.rs`
//! `ntf_handshake` (server and client).

use std::sync::OnceLock;

use hush_crypto::{PrivateKey, PublicKey, TransmissionAuth, X25519Public, X25519Secret};
use hush_proto::Encode;
use hush_proto::encoding::{EncodeError, ShortString, pad, unpad};
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::handshake::{NtfClientHello, NtfServerHello};
use hush_proto::ntf::{
    NtfCommand, NtfResponse, PushProvider, decode_ntf_block_content, decode_ntf_transmission,
    encode_ntf_transmission, ntf_block_content,
};
use hush_proto::smp::PublicKeyDer;
use hush_proto::transmission::{AuthorizationKind, Transmission, try_authorized_bytes};
use hush_proto::version::{NTF_BLOCK_SIZE, VersionRange, ntf_version};

/// The connection's session id (tls-unique) in the fuzz bodies: what a v1 transmission must
/// carry and what a server hello must announce. The `transmission.v3.TNEW.signed` vector's
/// (`97 98 … b6`), so that vector's signature verifies.
pub const FUZZ_SESSION_ID: &[u8] = &{
    let mut a = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        a[i] = 0x97 + i as u8;
        i += 1;
    }
    a
};

/// Self-signed Ed25519 certificate (CN=hush-fuzz-ntf) of the `signed_x25519_key.ed25519`
/// vector's signing key (seed 01..20): the leaf certificate the client checks the server
/// hello's signed key against. Generated once with `openssl req -x509 -set_serial 1`.
pub const FUZZ_LEAF_CERT_HEX: &str = "308201333081e6a003020102020101300506032b657030183116301406\
035504030c0d687573682d66757a7a2d6e74663020170d3236313230353233303633325a180f3231323631313131\
3233303633325a30183116301406035504030c0d687573682d66757a7a2d6e7466302a300506032b657003210079\
b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664a3533051301d0603551d0e04160414\
4e1cf1bb1520cd0d9a99ee1f4ae7521647dd6a53301f0603551d230418301680144e1cf1bb1520cd0d9a99ee1f4a\
e7521647dd6a53300f0603551d130101ff040530030101ff300506032b657003410047f27e6bcdfab3b52bb0543e\
4f88c072be9951a6ae1b544acf91b48b6982bafd93f9d864e7993be4d48da6d3ae0f50e2354f31c391b130dbb56a\
4d5c11d84d08";

/// The server's per-connection X25519 session key (authenticators are checked with it).
pub const FUZZ_SESSION_KEY: [u8; 32] = [7; 32];

/// The token id in the `IDTKN` answer to a verified `TNEW`.
pub const FUZZ_TOKEN_ID: [u8; 24] = [0x70; 24];

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex constant"))
        .collect()
}

/// The leaf certificate DER ([`FUZZ_LEAF_CERT_HEX`]).
pub fn fuzz_leaf_cert() -> &'static [u8] {
    static CERT: OnceLock<Vec<u8>> = OnceLock::new();
    CERT.get_or_init(|| hex_bytes(FUZZ_LEAF_CERT_HEX))
}

/// SHA-256 of [`fuzz_leaf_cert`]: the server identity (key hash) in the client hello.
pub fn fuzz_key_hash() -> [u8; 32] {
    hush_crypto::fingerprint(fuzz_leaf_cert())
}

/// The NTF version for a selector: `1 + selector % 3`.
pub fn ntf_version_of(sel: u8) -> u16 {
    1 + u16::from(sel) % ntf_version::CURRENT
}

/// `ntf_transmission`: selector → version `1 + sel % 3`; `(sel / 3) % 2` = 0: the payload is a
/// received block (`pad(content, …)`, as the block reader hands it over, at most 512 bytes),
/// 1: the payload is one transmission.
///
/// Every transmission goes through the ntf-server's receive steps: decode (canonical:
/// re-encoding gives the input back), authorization length (hush-proto's and hush-crypto's
/// classifications agree), session id (v1), `parse_command` (canonical command encoding,
/// push-handle text), credentials, the keys carried by `TNEW` / `SNEW`, authorization check with
/// the session key, and the reply transmission echoing the ids, which must encode and decode
/// back to the same fields.
pub fn ntf_transmission(data: &[u8]) -> bool {
    ntf_transmission_replies(data).0
}

/// The body of [`ntf_transmission`]: whether a transmission decoded, and the server's
/// responses (one per transmission; one `ERR BLOCK` for an undecodable block; none when the
/// connection would be dropped or for an empty input).
pub fn ntf_transmission_replies(data: &[u8]) -> (bool, Vec<NtfResponse>) {
    let Some((&sel, body)) = data.split_first() else {
        return (false, Vec::new());
    };
    let version = ntf_version_of(sel);
    let block_err = || {
        // The server answers one `ERR BLOCK` with empty ids.
        let r = NtfResponse::Err(ErrorType::Block);
        check_reply(&[], &[], &r, version);
        (false, vec![r])
    };
    let items = if (sel / 3) % 2 == 0 {
        if body.len() > NTF_BLOCK_SIZE {
            return (false, Vec::new());
        }
        let Ok(content) = unpad(body) else {
            return block_err();
        };
        match decode_ntf_block_content(content, version) {
            Ok(items) => items,
            Err(_) => return block_err(),
        }
    } else {
        vec![body]
    };
    let mut decoded = false;
    let mut replies = Vec::with_capacity(items.len());
    for item in items {
        let (ok, r) = receive_transmission(item, version);
        decoded |= ok;
        replies.push(r);
    }
    (decoded, replies)
}

/// One transmission as `Core::process_transmission` handles it: whether it decoded, and the
/// response.
fn receive_transmission(item: &[u8], version: u16) -> (bool, NtfResponse) {
    let t = match decode_ntf_transmission(item, version) {
        Ok(t) => t,
        Err(_) => {
            let r = NtfResponse::Err(ErrorType::Block);
            check_reply(&[], &[], &r, version);
            return (false, r);
        }
    };
    let mut out = Vec::new();
    encode_ntf_transmission(&mut out, &t, version).expect("a decoded NTF transmission re-encodes");
    assert_eq!(
        out, item,
        "NTF transmission encoding is canonical (v{version})"
    );
    assert_eq!(decode_ntf_transmission(&out, version), Ok(t));
    let resp = server_response(&t, version);
    let entity: &[u8] = if resp == NtfResponse::Err(ErrorType::Block) {
        &[]
    } else {
        t.entity_id
    };
    check_reply(t.corr_id, entity, &resp, version);
    (true, resp)
}

/// The response `Core::transmission` gives with an empty store: no token or subscription
/// exists, so everything but `PING` and a correctly signed `TNEW` is `AUTH`. A verified `TNEW`
/// gets `IDTKN` with [`FUZZ_TOKEN_ID`] and the public key of [`FUZZ_SESSION_KEY`] standing in
/// for the new token's id and the server's DH key.
fn server_response(t: &Transmission<'_>, version: u16) -> NtfResponse {
    let kind = AuthorizationKind::classify(t.authorization);
    let auth = TransmissionAuth::parse(t.authorization);
    assert_eq!(
        kind.is_some(),
        auth.is_ok(),
        "hush-proto and hush-crypto classify a {}-byte authorization alike",
        t.authorization.len()
    );
    if let Ok(Some(a)) = &auth {
        assert_eq!(a.as_bytes(), t.authorization);
    }
    if kind.is_none() {
        return NtfResponse::Err(ErrorType::Block);
    }
    if version < ntf_version::AUTH_BATCH_CMDS && t.session_id != FUZZ_SESSION_ID {
        return NtfResponse::Err(ErrorType::Session);
    }
    let cmd = match NtfCommand::parse(t.command, version) {
        Ok(c) => c,
        Err(e) => return NtfResponse::Err(e),
    };
    let enc = cmd
        .encode_checked(version)
        .expect("a parsed command re-encodes");
    assert_eq!(enc, t.command, "NTF command encoding is canonical");
    // `parse_command`: a push handle (`PH`) must be UTF-8 text.
    if let NtfCommand::Tnew { token, .. } | NtfCommand::Trpl { token } = &cmd
        && token.provider == PushProvider::PushHandle
        && std::str::from_utf8(&token.token).is_err()
    {
        return NtfResponse::Err(ErrorType::Cmd(CommandError::Syntax));
    }
    if let Err(e) = cmd.check_credentials(!t.authorization.is_empty(), t.entity_id) {
        return NtfResponse::Err(e);
    }
    let auth = auth.ok().flatten();
    let authorized = try_authorized_bytes(FUZZ_SESSION_ID, t.corr_id, t.entity_id, t.command)
        .expect("decoded fields fit shortStrings");
    assert!(authorized.ends_with(t.command));
    assert_eq!(authorized, t.authorized(FUZZ_SESSION_ID));
    let session_key = X25519Secret::from_bytes(FUZZ_SESSION_KEY);
    let session_key = (version >= ntf_version::AUTH_BATCH_CMDS).then_some(&session_key);
    let verify = |key: Option<&PublicKey>| {
        hush_crypto::verify_transmission(key, auth.as_ref(), session_key, &authorized, t.corr_id)
    };
    match cmd {
        NtfCommand::Ping => NtfResponse::Pong,
        NtfCommand::Tnew {
            verify_key, dh_key, ..
        } => {
            let pk = PublicKey::from_spki_der(verify_key.as_bytes()).ok();
            if let Some(k) = &pk {
                assert_eq!(
                    PublicKey::from_spki_der(&k.to_spki_der()).ok().as_ref(),
                    Some(k),
                    "SPKI round trip"
                );
            }
            if !verify(pk.as_ref()) {
                return NtfResponse::Err(ErrorType::Auth);
            }
            // Signed by the key it registers: the store would create the token.
            if let Ok(dh) = X25519Public::from_spki_der(dh_key.as_bytes()) {
                assert_eq!(
                    X25519Public::from_spki_der(&dh.to_spki_der()).ok(),
                    Some(dh)
                );
            }
            let srv_dh = X25519Secret::from_bytes(FUZZ_SESSION_KEY).public();
            NtfResponse::TknId {
                token_id: FUZZ_TOKEN_ID.to_vec(),
                server_dh_key: PublicKeyDer::new(srv_dh.to_spki_der()).expect("44-byte SPKI"),
            }
        }
        NtfCommand::Snew { notifier_key, .. } => {
            // `Core::snew`'s `auth_key`: the notifier's private key, PKCS#8.
            if let Ok(k) = PrivateKey::from_pkcs8_der(notifier_key.as_der()) {
                let der = k.to_pkcs8_der().expect("a parsed private key re-encodes");
                let k2 = PrivateKey::from_pkcs8_der(&der).expect("re-encoded PKCS#8 parses");
                assert_eq!(k2.algorithm(), k.algorithm());
                assert_eq!(k2.public().ok(), k.public().ok(), "PKCS#8 round trip");
            }
            // No token exists: the dummy verification runs and the answer is AUTH.
            let _ = verify(None);
            NtfResponse::Err(ErrorType::Auth)
        }
        _ => {
            let _ = verify(None);
            NtfResponse::Err(ErrorType::Auth)
        }
    }
}

/// `encode_response`: the reply transmission (session id on the wire at v1) and its block
/// content must encode, and decode back to the same fields.
fn check_reply(corr: &[u8], entity: &[u8], resp: &NtfResponse, version: u16) {
    let body = resp.encode_for_version(version);
    let mut t = Transmission::new(corr, entity, &body);
    if version < ntf_version::AUTH_BATCH_CMDS {
        t.session_id = FUZZ_SESSION_ID;
    }
    let mut out = Vec::new();
    encode_ntf_transmission(&mut out, &t, version).expect("a reply echoing decoded ids encodes");
    assert_eq!(
        decode_ntf_transmission(&out, version),
        Ok(t),
        "reply round trip"
    );
    match ntf_block_content(&out, version) {
        Ok(content) => {
            assert_eq!(
                decode_ntf_block_content(&content, version),
                Ok(vec![&out[..]])
            );
            assert!(pad(&content, NTF_BLOCK_SIZE).is_ok(), "reply block pads");
        }
        // Ids that fill a request's block leave no room for a longer reply (`ERR CMD
        // NO_AUTH` for `TCHK`): the block writer skips it (reference `TELargeMsg`).
        Err(e) => assert!(matches!(e, EncodeError::TooLong { .. }), "{e:?}"),
    }
}

/// Whether the reply to a transmission fits a block at `version` (the transport sends it);
/// `None` if the transmission does not decode.
pub fn reply_fits_block(item: &[u8], version: u16) -> Option<bool> {
    let t = decode_ntf_transmission(item, version).ok()?;
    let resp = server_response(&t, version);
    let entity: &[u8] = if resp == NtfResponse::Err(ErrorType::Block) {
        &[]
    } else {
        t.entity_id
    };
    let body = resp.encode_for_version(version);
    let mut r = Transmission::new(t.corr_id, entity, &body);
    if version < ntf_version::AUTH_BATCH_CMDS {
        r.session_id = FUZZ_SESSION_ID;
    }
    let mut out = Vec::new();
    encode_ntf_transmission(&mut out, &r, version).ok()?;
    Some(ntf_block_content(&out, version).is_ok())
}

/// How a received hello ends: the negotiated version, or where it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloOutcome {
    /// Accepted at this version (client side: after checking the signed key, and the reply is
    /// accepted by a server offering the hello's range).
    Version(u16),
    /// Longer than a block (the reader never hands it over).
    Oversized,
    /// The block's length prefix exceeds it (`BLOCK`).
    Block,
    /// The hello does not decode (`HANDSHAKE PARSE`).
    Parse,
    /// Client: the hello's session id is not the connection's (`BadSession`).
    Session,
    /// No common version (`Version`).
    Version0,
    /// Client: the signed session key does not verify with the leaf certificate (`BAD_AUTH`).
    BadAuth,
    /// Server: the key hash is not the server's (`IDENTITY`).
    Identity,
}

/// `ntf_handshake`: selector % 2 → 0: the client receives a server hello, 1: the server receives
/// a client hello; payload = the received block (`pad(hello, …)`, at most 512 bytes).
///
/// Client side (`TransportClient::ntf_handshake`): decode, the hello's session id must be the
/// connection's, version negotiation with the client range, the signed session key checked
/// against the leaf certificate, then the client hello reply must be accepted by a server
/// offering the hello's range. Server side (`TransportServer::ntf_handshake`): decode, key hash,
/// version inside the offered range. Both: the hello re-encodes to the consumed prefix and
/// decodes to the same value.
pub fn ntf_handshake(data: &[u8]) -> bool {
    !matches!(
        ntf_handshake_outcome(data),
        None | Some(HelloOutcome::Oversized | HelloOutcome::Block | HelloOutcome::Parse)
    )
}

/// The body of [`ntf_handshake`]; `None` for an empty input.
pub fn ntf_handshake_outcome(data: &[u8]) -> Option<HelloOutcome> {
    let (&sel, body) = data.split_first()?;
    Some(if sel % 2 == 0 {
        client_receives(body)
    } else {
        server_receives(body, ntf_version::SERVER_RANGE)
    })
}

fn client_receives(block: &[u8]) -> HelloOutcome {
    if block.len() > NTF_BLOCK_SIZE {
        return HelloOutcome::Oversized;
    }
    let Ok(content) = unpad(block) else {
        return HelloOutcome::Block;
    };
    let Ok(hello) = NtfServerHello::decode(content) else {
        return HelloOutcome::Parse;
    };
    let enc = hello.to_bytes();
    assert!(
        content.starts_with(&enc),
        "server hello encoding is the consumed prefix"
    );
    assert_eq!(NtfServerHello::decode(&enc).as_ref(), Ok(&hello));
    if hello.session_id.as_bytes() != FUZZ_SESSION_ID {
        return HelloOutcome::Session;
    }
    let Some(common) = hello.versions.intersect(&ntf_version::CLIENT_RANGE) else {
        return HelloOutcome::Version0;
    };
    let version = common.max();
    if let Some(k) = &hello.signed_key
        && hush_crypto::verify_signed_x25519_key(fuzz_leaf_cert(), k.as_bytes()).is_err()
    {
        return HelloOutcome::BadAuth;
    }
    let reply = NtfClientHello {
        version,
        key_hash: ShortString::new(fuzz_key_hash().to_vec()).expect("32 bytes"),
    };
    let reply = pad(&reply.to_bytes(), NTF_BLOCK_SIZE).expect("client hello fits a block");
    assert_eq!(
        server_receives(&reply, hello.versions),
        HelloOutcome::Version(version),
        "a server offering {:?} accepts the client's reply",
        hello.versions
    );
    HelloOutcome::Version(version)
}

/// The server side of the NTF handshake for a received block, offering `offered`.
fn server_receives(block: &[u8], offered: VersionRange) -> HelloOutcome {
    if block.len() > NTF_BLOCK_SIZE {
        return HelloOutcome::Oversized;
    }
    let Ok(content) = unpad(block) else {
        return HelloOutcome::Block;
    };
    let Ok(hello) = NtfClientHello::decode(content) else {
        return HelloOutcome::Parse;
    };
    let enc = hello.to_bytes();
    assert!(
        content.starts_with(&enc),
        "client hello encoding is the consumed prefix"
    );
    assert_eq!(NtfClientHello::decode(&enc).as_ref(), Ok(&hello));
    if !hush_crypto::ct_eq(hello.key_hash.as_bytes(), &fuzz_key_hash()) {
        return HelloOutcome::Identity;
    }
    if !offered.contains(hello.version) {
        return HelloOutcome::Version0;
    }
    HelloOutcome::Version(hello.version)
}
