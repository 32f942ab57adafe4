//! hush-bench: the SMP `SEND` hot path as two functions, shared by the wall-time benchmark
//! (`benches/send.rs`, divan) and the instruction-count harness (`benches/send_callgrind.rs`,
//! valgrind callgrind). See BENCHMARKS.md at the repository root for figures.
//!
//! * [`seal_send`] (client side): build `SEND` with a 16048-byte body, sign the authorized
//!   bytes with Ed25519, encode the v18 transmission, batch it into a block, pad and encrypt
//!   with the next secretbox-chain key → 16384 bytes.
//! * [`open_send`] (server side): decrypt with the next chain key, unpad, parse the batch and
//!   the transmission, parse the command, verify the signature where the authorized bytes lie
//!   in the block, with the sender key decoded once (as the relay's per-connection key cache
//!   holds it after the connection's first verified command).
//!
//! Both use only the crates' public API, as `hush-transport` and the server do.

use hush_crypto::secretbox::{TAG_LEN, sb_encrypt_into, sb_open_in_place};
use hush_crypto::{Ed25519Secret, Ed25519Verifier, PublicKey, SbChainKey, SignAlgorithm};
use hush_proto::encoding::unpad;
use hush_proto::smp::{Command, MsgFlags};
use hush_proto::transmission::{
    Authorized, Layout, Transmission, authorized_bytes, batch_one, decode_batch,
    decode_transmission_signed, encode_transmission_with,
};
use hush_proto::version::{SMP_BLOCK_SIZE, smp_version};

/// Largest `SEND` body at v11+ (`max_send_body`).
pub const SEND_BODY_LEN: usize = smp_version::max_send_body(smp_version::CURRENT);

/// Length of the authorized bytes of the fixture's `SEND` (what is signed): session id,
/// corrId and sender id as shortStrings (1 + 32, 1 + 24, 1 + 24) and `SEND T ` + body.
pub const SEND_AUTHORIZED_LEN: usize = 33 + 25 + 25 + 7 + SEND_BODY_LEN;

/// Why a block did not open into a verified `SEND`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("block does not decrypt")]
    Decrypt,
    #[error("bad padding")]
    Padding,
    #[error("bad batch")]
    Batch,
    #[error("bad transmission")]
    Transmission,
    #[error("bad command")]
    Command,
    #[error("not a signed SEND")]
    NotSend,
    #[error("signature does not verify")]
    Signature,
}

/// Fixed inputs of one `SEND`: the sender's key, the connection's session id, ids and body.
pub struct SendFixture {
    pub sender_key: Ed25519Secret,
    pub sender_public: PublicKey,
    /// `sender_public` decoded, as the relay keeps it.
    pub sender_verifier: Ed25519Verifier,
    pub session_id: [u8; 32],
    pub corr_id: [u8; 24],
    pub sender_id: [u8; 24],
    pub body: Vec<u8>,
    /// The client → server chain key both sides start from.
    pub chain_key: [u8; 32],
}

impl Default for SendFixture {
    fn default() -> Self {
        let sender_key = Ed25519Secret::from_seed(&core::array::from_fn(|i| i as u8 + 1));
        let sender_public = PublicKey::Ed25519(sender_key.public());
        let sender_verifier =
            Ed25519Verifier::new(&sender_key.public()).expect("a generated key is a point");
        SendFixture {
            sender_key,
            sender_public,
            sender_verifier,
            session_id: core::array::from_fn(|i| 201 + i as u8),
            corr_id: core::array::from_fn(|i| 1 + i as u8),
            sender_id: core::array::from_fn(|i| 101 + i as u8),
            body: (0..SEND_BODY_LEN).map(|i| (i * 31 % 251) as u8).collect(),
            chain_key: [0x5a; 32],
        }
    }
}

impl SendFixture {
    /// A fresh chain at the fixture's starting key (clients and servers each hold one).
    pub fn chain(&self) -> SbChainKey {
        SbChainKey::from_bytes(self.chain_key)
    }
}

/// Client side: one signed `SEND` → one encrypted 16384-byte block, written to `out`
/// (cleared first). Advances `chain` by one block.
pub fn seal_send(fx: &SendFixture, chain: &mut SbChainKey, out: &mut Vec<u8>) {
    let layout = Layout::smp(smp_version::CURRENT);
    let cmd = Command::Send {
        flags: MsgFlags { notification: true },
        body: fx.body.clone(),
    };
    let command = cmd.encode(smp_version::CURRENT);
    // As hush-client's `encode_command`: the short head, then the command where it is.
    let head = authorized_bytes(&fx.session_id, &fx.corr_id, &fx.sender_id, &[]);
    let sig = fx.sender_key.sign_parts(&[&head, &command]);
    let t = Transmission {
        authorization: &sig,
        service_sig: None,
        session_id: &[],
        corr_id: &fx.corr_id,
        entity_id: &fx.sender_id,
        command: &command,
    };
    let mut encoded = Vec::with_capacity(command.len() + 160);
    // Fixture fields are within their limits: cannot fail.
    let _ = encode_transmission_with(&mut encoded, &t, layout);
    let content = batch_one(&[&encoded], SMP_BLOCK_SIZE).unwrap_or_default();
    let (key, nonce) = chain.next();
    out.clear();
    let _ = sb_encrypt_into(&key, &nonce, &content, SMP_BLOCK_SIZE - TAG_LEN, out);
}

/// What the server learns from a verified `SEND`.
#[derive(Debug, PartialEq, Eq)]
pub struct OpenedSend {
    pub sender_id_len: usize,
    pub notification: bool,
    pub body_len: usize,
}

/// Server side: decrypts `block` in place with the next key of `chain`, parses it down to the
/// `SEND` command and verifies its signature against `sender_key` over the connection's
/// `session_id`. Advances `chain` by one block.
pub fn open_send(
    sender_key: &Ed25519Verifier,
    session_id: &[u8],
    chain: &mut SbChainKey,
    block: &mut [u8],
) -> Result<OpenedSend, OpenError> {
    let (key, nonce) = chain.next();
    let plain = sb_open_in_place(&key, &nonce, block).map_err(|_| OpenError::Decrypt)?;
    let content = unpad(plain).map_err(|_| OpenError::Padding)?;
    let items = decode_batch(content).map_err(|_| OpenError::Batch)?;
    let [item] = items.as_slice() else {
        return Err(OpenError::Batch);
    };
    let (t, signed) = decode_transmission_signed(item, Layout::smp(smp_version::CURRENT))
        .map_err(|_| OpenError::Transmission)?;
    let cmd = Command::decode(t.command, smp_version::CURRENT).map_err(|_| OpenError::Command)?;
    let Command::Send { flags, body } = cmd else {
        return Err(OpenError::NotSend);
    };
    let Ok(Some(hush_crypto::TransmissionAuth::Signature(SignAlgorithm::Ed25519, sig))) =
        hush_crypto::TransmissionAuth::parse(t.authorization)
    else {
        return Err(OpenError::Signature);
    };
    let authorized = Authorized::new(session_id, signed).ok_or(OpenError::Transmission)?;
    sender_key
        .verify_parts(&authorized.parts(), &sig)
        .map_err(|_| OpenError::Signature)?;
    Ok(OpenedSend {
        sender_id_len: t.entity_id.len(),
        notification: flags.notification,
        body_len: body.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open() {
        let fx = SendFixture::default();
        let (mut client, mut server) = (fx.chain(), fx.chain());
        for _ in 0..3 {
            let mut block = Vec::new();
            seal_send(&fx, &mut client, &mut block);
            assert_eq!(block.len(), SMP_BLOCK_SIZE);
            let opened = open_send(&fx.sender_verifier, &fx.session_id, &mut server, &mut block);
            assert_eq!(
                opened,
                Ok(OpenedSend {
                    sender_id_len: 24,
                    notification: true,
                    body_len: SEND_BODY_LEN,
                })
            );
        }
    }

    #[test]
    fn open_rejects_wrong_key_session_and_chain() {
        let fx = SendFixture::default();
        let mut block = Vec::new();
        seal_send(&fx, &mut fx.chain(), &mut block);
        let other = Ed25519Verifier::new(&Ed25519Secret::from_seed(&[9; 32]).public()).unwrap();
        let mut b = block.clone();
        assert_eq!(
            open_send(&other, &fx.session_id, &mut fx.chain(), &mut b),
            Err(OpenError::Signature)
        );
        let mut b = block.clone();
        assert_eq!(
            open_send(&fx.sender_verifier, &[0; 32], &mut fx.chain(), &mut b),
            Err(OpenError::Signature)
        );
        let mut ahead = fx.chain();
        let _ = ahead.next();
        assert_eq!(
            open_send(&fx.sender_verifier, &fx.session_id, &mut ahead, &mut block),
            Err(OpenError::Decrypt)
        );
    }

    #[test]
    fn body_is_the_largest_send() {
        assert_eq!(SEND_BODY_LEN, 16048);
        let fx = SendFixture::default();
        let cmd = Command::Send {
            flags: MsgFlags { notification: true },
            body: fx.body.clone(),
        }
        .encode(smp_version::CURRENT);
        let a = authorized_bytes(&fx.session_id, &fx.corr_id, &fx.sender_id, &cmd);
        assert_eq!(a.len(), SEND_AUTHORIZED_LEN);
    }
}
