//! SMP / NTF hello codecs (reference §2.4, §5.1).
//!
//! No upstream vector exists for whole hello blocks (vectors/README.md, "Not found upstream"),
//! so the layouts below are spelled out byte by byte from the reference's encoders, and the
//! pieces that do have vectors (version range, X25519 SPKI, signed session key) are taken from
//! /work/shared/vectors.

use hush_proto::encoding::{Encode, Large, Parser, ShortString};
use hush_proto::handshake::*;
use hush_proto::version::VersionRange;
use proptest::prelude::*;
use serde_json::Value;

mod common;

fn vectors(file: &str) -> Vec<Value> {
    common::load(&format!("{file}.json"))
}

fn vector(file: &str, name: &str) -> Value {
    vectors(file)
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name} not found in {file}"))
}

fn hex_field(v: &Value, path: &[&str]) -> Vec<u8> {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    hex::decode(
        x.as_str()
            .unwrap_or_else(|| panic!("{path:?} not a string")),
    )
    .unwrap()
}

fn vr(min: u16, max: u16) -> VersionRange {
    VersionRange::new(min, max).unwrap()
}

fn ss(b: &[u8]) -> ShortString {
    ShortString::new(b.to_vec()).unwrap()
}

fn chain2() -> CertChain {
    CertChain::new([b"leaf-cert-der".to_vec(), b"ca-cert-der".to_vec()]).unwrap()
}

fn signed_key_vector() -> (Vec<u8>, Vec<u8>) {
    let v = vector("crypto", "signed_x25519_key.ed25519");
    (
        hex_field(&v, &["expected", "signed_exact_der_hex"]),
        hex_field(&v, &["expected", "smpEncode_as_Large_hex"]),
    )
}

#[test]
fn x25519_spki_matches_vectors() {
    let mut n = 0;
    for v in vectors("crypto") {
        let name = v["name"].as_str().unwrap();
        if name.starts_with("x25519.spki.") {
            let key: [u8; 32] = hex_field(&v, &["inputs", "public_key_hex"])
                .try_into()
                .unwrap();
            let der = hex_field(&v, &["expected", "der_hex"]);
            assert_eq!(x25519_spki(&key).to_vec(), der, "{name}");
            assert_eq!(x25519_from_spki(&der), Some(key), "{name}");
            n += 1;
        }
    }
    assert_eq!(n, 2, "expected two x25519.spki vectors");
    // An Ed25519 SPKI is not an X25519 one.
    let ed = hex_field(
        &vector("crypto", "literal_key.samplePubKey"),
        &["expected", "der_hex"],
    );
    assert_eq!(x25519_from_spki(&ed), None);
}

/// Server hello v6..18: `00060012` ‖ shortString(sessionId) ‖ chain ‖ Large(signed key).
#[test]
fn smp_server_hello_layout() {
    let range_bytes = hex_field(
        &vector("encoding", "versionrange.6-18"),
        &["expected", "bytes_hex"],
    );
    let (signed, signed_large) = signed_key_vector();
    let session_id: Vec<u8> = (201..=232).collect();
    let hello = SmpServerHello {
        versions: vr(6, 18),
        session_id: ss(&session_id),
        auth: Some(CertChainPubKey {
            cert_chain: chain2(),
            signed_key: Large::new(signed.clone()).unwrap(),
        }),
    };
    let mut expected = range_bytes.clone();
    expected.push(32);
    expected.extend_from_slice(&session_id);
    expected.push(2);
    expected.extend_from_slice(&[0, 13]);
    expected.extend_from_slice(b"leaf-cert-der");
    expected.extend_from_slice(&[0, 11]);
    expected.extend_from_slice(b"ca-cert-der");
    expected.extend_from_slice(&signed_large);
    let bytes = hello.to_bytes();
    assert_eq!(hex::encode(&bytes), hex::encode(&expected));
    assert_eq!(SmpServerHello::decode(&bytes).unwrap(), hello);

    // Trailing bytes (a future extension) are ignored.
    let mut ext = bytes.clone();
    ext.extend_from_slice(b"future extension");
    assert_eq!(SmpServerHello::decode(&ext).unwrap(), hello);
}

#[test]
fn smp_server_hello_legacy_has_no_auth() {
    let hello = SmpServerHello {
        versions: vr(6, 6),
        session_id: ss(&[7; 32]),
        auth: Some(CertChainPubKey {
            cert_chain: chain2(),
            signed_key: Large::new(vec![1, 2, 3]).unwrap(),
        }),
    };
    let bytes = hello.to_bytes();
    // range + shortString(32) only: the key is not encoded below v7.
    assert_eq!(bytes.len(), 4 + 1 + 32);
    assert_eq!(&bytes[..4], &[0, 6, 0, 6]);
    let back = SmpServerHello::decode(&bytes).unwrap();
    assert_eq!(back.auth, None);
    // Even if bytes follow, a v6-only hello has no key.
    let mut more = bytes.clone();
    more.extend_from_slice(&hello.auth.as_ref().unwrap().to_bytes());
    assert_eq!(SmpServerHello::decode(&more).unwrap().auth, None);
}

#[test]
fn smp_server_hello_optional_auth() {
    // max >= 7 but nothing / garbage after the session id: the key parses as absent.
    let mut bytes = vec![0, 6, 0, 18, 2, 0xaa, 0xbb];
    let h = SmpServerHello::decode(&bytes).unwrap();
    assert_eq!(h.auth, None);
    assert_eq!(h.session_id.as_bytes(), &[0xaa, 0xbb]);
    bytes.push(0); // empty NonEmpty chain
    assert_eq!(SmpServerHello::decode(&bytes).unwrap().auth, None);
    // truncated header fails
    assert!(SmpServerHello::decode(&[0, 6, 0]).is_err());
    assert!(SmpServerHello::decode(&[0, 6, 0, 18, 5, 1]).is_err());
}

#[test]
fn smp_server_hello_rejects_bad_range() {
    // min > max is not a version range.
    assert!(SmpServerHello::decode(&[0, 18, 0, 6, 0]).is_err());
}

/// v18 client hello: Word16 ‖ shortString(keyHash) ‖ shortString(X25519 SPKI) ‖ `F` ‖ `0`.
#[test]
fn smp_client_hello_v18_layout() {
    let dh = vector("crypto", "literal_key.sampleDhPubKey");
    let key: [u8; 32] = hex_field(&dh, &["expected", "raw_public_key_hex"])
        .try_into()
        .unwrap();
    let key_smp = hex_field(&dh, &["expected", "smpEncode_hex"]);
    let fp = hex_field(
        &vector("addresses", "server_identity.fixture_ca_ed448"),
        &["expected", "sha256_hex"],
    );
    let hello = SmpClientHello {
        version: 18,
        key_hash: ss(&fp),
        dh_key: Some(key),
        proxy_server: false,
        service: None,
    };
    let mut expected = vec![0, 18, 32];
    expected.extend_from_slice(&fp);
    expected.extend_from_slice(&key_smp);
    expected.extend_from_slice(b"F0");
    let bytes = hello.to_bytes();
    assert_eq!(hex::encode(&bytes), hex::encode(&expected));
    assert!(bytes.ends_with(b"F0"));
    assert_eq!(SmpClientHello::decode(&bytes).unwrap(), hello);
}

#[test]
fn smp_client_hello_absent_dh_key() {
    // v18 without a key: the byte after the key hash is `T`, which is not a 44-byte SPKI.
    let hello = SmpClientHello {
        version: 18,
        key_hash: ss(&[9; 32]),
        dh_key: None,
        proxy_server: true,
        service: None,
    };
    let bytes = hello.to_bytes();
    let mut expected = vec![0, 18, 32];
    expected.extend_from_slice(&[9; 32]);
    expected.extend_from_slice(b"T0");
    assert_eq!(bytes, expected);
    assert_eq!(SmpClientHello::decode(&bytes).unwrap(), hello);

    // v11 without key, nothing after the key hash.
    let v11 = SmpClientHello {
        version: 11,
        key_hash: ss(&[9; 32]),
        dh_key: None,
        proxy_server: false,
        service: None,
    };
    assert_eq!(v11.to_bytes().len(), 2 + 33);
    assert_eq!(SmpClientHello::decode(&v11.to_bytes()).unwrap(), v11);
}

#[test]
fn smp_client_hello_version_dependent_fields() {
    let full = |version| SmpClientHello {
        version,
        key_hash: ss(&[1; 32]),
        dh_key: Some([2; 32]),
        proxy_server: true,
        service: Some(ClientHelloService {
            role: ServiceRole::Notifier,
            cert_key: CertChainPubKey {
                cert_chain: chain2(),
                signed_key: Large::new(vec![5; 10]).unwrap(),
            },
        }),
    };
    // v6: version + key hash only
    let b6 = full(6).to_bytes();
    assert_eq!(b6.len(), 35);
    let d6 = SmpClientHello::decode(&b6).unwrap();
    assert_eq!(
        (d6.dh_key, d6.proxy_server, d6.service),
        (None, false, None)
    );
    // v7..13: + key
    let b13 = full(13).to_bytes();
    assert_eq!(b13.len(), 35 + 45);
    let d13 = SmpClientHello::decode(&b13).unwrap();
    assert_eq!(d13.dh_key, Some([2; 32]));
    assert!(!d13.proxy_server && d13.service.is_none());
    // v14, v15: + proxy flag
    let b15 = full(15).to_bytes();
    assert_eq!(b15.len(), 35 + 45 + 1);
    assert_eq!(*b15.last().unwrap(), b'T');
    assert!(SmpClientHello::decode(&b15).unwrap().service.is_none());
    // v16: + service: '1' 'N' chain Large
    let b16 = full(16).to_bytes();
    let tail = &b16[35 + 45 + 1..];
    let mut svc = b"1N".to_vec();
    svc.extend_from_slice(&chain2().to_bytes());
    svc.extend_from_slice(&[0, 10]);
    svc.extend_from_slice(&[5; 10]);
    assert_eq!(tail, &svc[..]);
    assert_eq!(SmpClientHello::decode(&b16).unwrap(), full(16));
}

#[test]
fn smp_client_hello_errors() {
    // v14+ requires the proxy flag
    let mut b = vec![0, 14, 1, 0xab];
    assert!(SmpClientHello::decode(&b).is_err());
    b.push(b'X');
    assert!(SmpClientHello::decode(&b).is_err());
    // bad service role
    let mut b = vec![0, 16, 0, b'F', b'1', b'Z'];
    assert!(SmpClientHello::decode(&b).is_err());
    b.truncate(4);
    b.push(b'2');
    assert!(SmpClientHello::decode(&b).is_err());
}

#[test]
fn third_message_layout() {
    let r = SmpServerHandshakeResponse::ServiceId(ss(b"0123456789abcdef01234567"));
    let bytes = r.to_bytes();
    assert_eq!(bytes[0], b'R');
    assert_eq!(bytes[1], 24);
    assert_eq!(SmpServerHandshakeResponse::decode(&bytes).unwrap(), r);

    let cases: [(HelloTransportError, &[u8]); 9] = [
        (HelloTransportError::Block, b"EBLOCK"),
        (HelloTransportError::Version, b"EVERSION"),
        (HelloTransportError::LargeMsg, b"ELARGE_MSG"),
        (HelloTransportError::Session, b"ESESSION"),
        (HelloTransportError::NoAuth, b"ENO_AUTH"),
        (
            HelloTransportError::Handshake(HandshakeErrorKind::Parse),
            b"EHANDSHAKE PARSE",
        ),
        (
            HelloTransportError::Handshake(HandshakeErrorKind::Identity),
            b"EHANDSHAKE IDENTITY",
        ),
        (
            HelloTransportError::Handshake(HandshakeErrorKind::BadAuth),
            b"EHANDSHAKE BAD_AUTH",
        ),
        (
            HelloTransportError::Handshake(HandshakeErrorKind::BadService),
            b"EHANDSHAKE BAD_SERVICE",
        ),
    ];
    for (e, text) in cases {
        let m = SmpServerHandshakeResponse::Error(e);
        assert_eq!(m.to_bytes(), text);
        assert_eq!(SmpServerHandshakeResponse::decode(text).unwrap(), m);
    }
    assert!(SmpServerHandshakeResponse::decode(b"EHANDSHAKE NOPE").is_err());
    assert!(SmpServerHandshakeResponse::decode(b"EFOO").is_err());
    assert!(SmpServerHandshakeResponse::decode(b"X").is_err());
    assert!(SmpServerHandshakeResponse::decode(b"").is_err());
}

#[test]
fn ntf_server_hello_layout() {
    let (signed, signed_large) = signed_key_vector();
    let sid: Vec<u8> = (151..=182).collect();
    let hello = NtfServerHello {
        versions: vr(1, 3),
        session_id: ss(&sid),
        signed_key: Some(Large::new(signed).unwrap()),
    };
    let mut expected = vec![0, 1, 0, 3, 32];
    expected.extend_from_slice(&sid);
    expected.extend_from_slice(&signed_large);
    let bytes = hello.to_bytes();
    assert_eq!(bytes, expected);
    assert!(bytes.len() <= 512 - 2, "fits an NTF block");
    assert_eq!(NtfServerHello::decode(&bytes).unwrap(), hello);
    let mut ext = bytes.clone();
    ext.extend_from_slice(b"##");
    assert_eq!(NtfServerHello::decode(&ext).unwrap(), hello);
    // mandatory when max >= 2
    assert!(NtfServerHello::decode(&expected[..5 + 32]).is_err());
    // legacy 1..1: no key
    let legacy = NtfServerHello {
        versions: vr(1, 1),
        session_id: ss(&sid),
        signed_key: None,
    };
    assert_eq!(legacy.to_bytes().len(), 37);
    assert_eq!(NtfServerHello::decode(&legacy.to_bytes()).unwrap(), legacy);
}

#[test]
fn ntf_client_hello_layout() {
    let h = NtfClientHello {
        version: 3,
        key_hash: ss(&[4; 32]),
    };
    let mut expected = vec![0, 3, 32];
    expected.extend_from_slice(&[4; 32]);
    assert_eq!(h.to_bytes(), expected);
    expected.push(b'x');
    assert_eq!(NtfClientHello::decode(&expected).unwrap(), h);
    assert!(NtfClientHello::decode(&[0, 3, 32, 1]).is_err());
}

#[test]
fn cert_chain_bounds() {
    assert_eq!(
        CertChain::new(Vec::<Vec<u8>>::new()),
        Err(CertChainError::Empty)
    );
    assert!(CertChain::new(vec![vec![0u8; 1]; 256]).is_err());
    assert!(CertChain::new(vec![vec![0u8; 65536]]).is_err());
    assert_eq!(CertChain::new(vec![vec![0u8; 1]; 255]).unwrap().len(), 255);
    // NonEmpty rejects a zero count
    let mut p = Parser::new(&[0]);
    assert!(p.decode::<CertChain>().is_err());
}

// ---- property tests ----

fn arb_range() -> impl Strategy<Value = VersionRange> {
    (0u16..40, 0u16..40).prop_map(|(a, b)| vr(a.min(b), a.max(b)))
}

fn arb_ss() -> impl Strategy<Value = ShortString> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(|v| ShortString::new(v).unwrap())
}

fn arb_large() -> impl Strategy<Value = Large> {
    proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| Large::new(v).unwrap())
}

fn arb_chain() -> impl Strategy<Value = CertChain> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..5)
        .prop_map(|v| CertChain::new(v).unwrap())
}

fn arb_cck() -> impl Strategy<Value = CertChainPubKey> {
    (arb_chain(), arb_large()).prop_map(|(cert_chain, signed_key)| CertChainPubKey {
        cert_chain,
        signed_key,
    })
}

fn arb_role() -> impl Strategy<Value = ServiceRole> {
    prop_oneof![
        Just(ServiceRole::Messaging),
        Just(ServiceRole::Notifier),
        Just(ServiceRole::Proxy)
    ]
}

fn arb_client_hello() -> impl Strategy<Value = SmpClientHello> {
    (
        0u16..30,
        arb_ss(),
        proptest::option::of(any::<[u8; 32]>()),
        any::<bool>(),
        proptest::option::of(
            (arb_role(), arb_cck())
                .prop_map(|(role, cert_key)| ClientHelloService { role, cert_key }),
        ),
    )
        .prop_map(|(version, key_hash, dh_key, proxy_server, service)| {
            // Normalise: fields the version does not carry decode as absent.
            SmpClientHello {
                version,
                key_hash,
                dh_key: dh_key.filter(|_| version >= 7),
                proxy_server: proxy_server && version >= 14,
                service: service.filter(|_| version >= 16),
            }
        })
}

fn arb_error() -> impl Strategy<Value = HelloTransportError> {
    prop_oneof![
        Just(HelloTransportError::Block),
        Just(HelloTransportError::Version),
        Just(HelloTransportError::LargeMsg),
        Just(HelloTransportError::Session),
        Just(HelloTransportError::NoAuth),
        prop_oneof![
            Just(HandshakeErrorKind::Parse),
            Just(HandshakeErrorKind::Identity),
            Just(HandshakeErrorKind::BadAuth),
            Just(HandshakeErrorKind::BadService)
        ]
        .prop_map(HelloTransportError::Handshake),
    ]
}

proptest! {
    #[test]
    fn smp_server_hello_round_trip(
        versions in arb_range(), session_id in arb_ss(), auth in proptest::option::of(arb_cck()),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let auth = auth.filter(|_| versions.max() >= 7);
        let h = SmpServerHello { versions, session_id, auth };
        let mut bytes = h.to_bytes();
        prop_assert_eq!(SmpServerHello::decode(&bytes).unwrap(), h.clone());
        if h.auth.is_some() || versions.max() < 7 {
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(SmpServerHello::decode(&bytes).unwrap(), h);
        }
    }

    #[test]
    fn smp_client_hello_round_trip(h in arb_client_hello()) {
        prop_assert_eq!(SmpClientHello::decode(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn third_message_round_trip(id in arb_ss(), e in arb_error(), which in any::<bool>()) {
        let m = if which {
            SmpServerHandshakeResponse::ServiceId(id)
        } else {
            SmpServerHandshakeResponse::Error(e)
        };
        prop_assert_eq!(SmpServerHandshakeResponse::decode(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn ntf_hellos_round_trip(
        versions in arb_range(), session_id in arb_ss(), key in arb_large(),
        version in any::<u16>(), key_hash in arb_ss(),
    ) {
        let signed_key = if versions.max() >= 2 { Some(key) } else { None };
        let h = NtfServerHello { versions, session_id, signed_key };
        prop_assert_eq!(NtfServerHello::decode(&h.to_bytes()).unwrap(), h);
        let c = NtfClientHello { version, key_hash };
        prop_assert_eq!(NtfClientHello::decode(&c.to_bytes()).unwrap(), c);
    }

    #[test]
    fn decoders_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = SmpServerHello::decode(&bytes);
        let _ = SmpClientHello::decode(&bytes);
        let _ = SmpServerHandshakeResponse::decode(&bytes);
        let _ = NtfServerHello::decode(&bytes);
        let _ = NtfClientHello::decode(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_truncated_or_flipped(
        h in arb_client_hello(), cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(), bit in 0u8..8,
    ) {
        let bytes = h.to_bytes();
        let cut_at = cut.index(bytes.len() + 1);
        let _ = SmpClientHello::decode(&bytes[..cut_at]);
        let mut flipped = bytes.clone();
        let i = flip.index(flipped.len());
        flipped[i] ^= 1 << bit;
        let _ = SmpClientHello::decode(&flipped);
        let srv = SmpServerHello {
            versions: vr(6, 18),
            session_id: h.key_hash.clone(),
            auth: h.service.map(|s| s.cert_key),
        };
        let sb = srv.to_bytes();
        let _ = SmpServerHello::decode(&sb[..cut.index(sb.len() + 1)]);
        let mut sf = sb.clone();
        let j = flip.index(sf.len());
        sf[j] ^= 1 << bit;
        let _ = SmpServerHello::decode(&sf);
    }
}
