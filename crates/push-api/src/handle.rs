//! Split mode: opaque push handles.
//!
//! A device registers its device address (APNs token or Web Push subscription) with the
//! push-server and gets back a *push handle*: the address sealed with AES-256-GCM under a key only
//! the push-server holds ([`HandleKey`], file `handle.key` in the data directory), with a fresh
//! random 96-bit nonce per registration. The device gives the handle (NTF provider code `PH`) to
//! the ntf-server instead of its token.
//!
//! Privacy properties (what the tests check):
//! * without the key, the handle reveals nothing about the token or the provider, except an upper
//!   bound of the address length (APNs handles all have the same length);
//! * two registrations of the same token give unrelated handles, so the ntf-server cannot link a
//!   re-registration to an earlier one (the device should cache its handle and register again only
//!   when its token changes, otherwise the ntf-server sees a new token);
//! * GCM authentication: the ntf-server cannot forge or alter a handle to push to another token; it
//!   can only use handles it was given;
//! * for addresses that fit (every APNs token, short Web Push / UnifiedPush endpoints) the
//!   push-server keeps no state per handle (nothing to leak, nothing to delete); longer Web Push
//!   subscriptions are stored by the push-server (outbox table `registrations`, dropped after
//!   `registration_ttl` without a push) and the handle seals only the random 16-byte registration
//!   id, with the same unlinkability for the ntf-server;
//! * rotating `handle.key` invalidates every handle (the version byte leaves room for key ids).
//!
//! Layout: `version(1) = 1 ‖ nonce(12) ‖ AES-256-GCM(key, nonce, aad = "hush-push-handle-v1",
//! address encoding) ‖ tag(16)`, text form base64url without padding, at most 255 characters so that
//! it fits the NTF `deviceToken` shortString (a 32-byte APNs token gives 87 characters). Address
//! encoding: `'h' env len bytes` (hex APNs token as bytes), `'a' env len text` (other APNs tokens,
//! e.g. `test_ntf_token`), `'w' len16 endpoint p256dh(65) auth(16)` (Web Push; endpoints longer than
//! about 100 bytes do not fit: [`HandleKey::seal`] refuses them with [`HandleError::TooLong`] and the
//! service stores them instead), `'r' id(16)` (a stored registration).

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::job::{ApnsEnv, DeviceAddress, WebPushSubscription};

const VERSION: u8 = 1;
const AAD: &[u8] = b"hush-push-handle-v1";
/// Longest handle text (the NTF shortString limit).
pub const MAX_HANDLE_LEN: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandleError {
    #[error("push handle is not valid base64url")]
    Encoding,
    #[error("push handle has an unknown version")]
    Version,
    #[error("push handle does not authenticate (wrong key or altered)")]
    Auth,
    #[error("push handle content is malformed")]
    Malformed,
    #[error("device address too long for a push handle ({0} characters, limit 255)")]
    TooLong(usize),
    #[error("invalid device address: {0}")]
    Address(&'static str),
    #[error("handle key file: {0}")]
    KeyFile(String),
    #[error("push handle refers to a stored registration (look it up with the outbox)")]
    Stored,
}

/// What a handle contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealed {
    /// The device address itself.
    Address(DeviceAddress),
    /// The id of a registration stored by the push-server (addresses too long to seal inline,
    /// i.e. most Web Push endpoints).
    Registration([u8; 16]),
}

/// The push-server's secret handle key (32 bytes).
#[derive(Clone)]
pub struct HandleKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandleKey(..)")
    }
}

/// An opaque push handle (text form).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PushHandle(pub String);

impl fmt::Debug for PushHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PushHandle(..)")
    }
}

impl PushHandle {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl HandleKey {
    pub fn generate() -> HandleKey {
        HandleKey(Zeroizing::new(rand::random()))
    }

    pub fn from_bytes(b: [u8; 32]) -> HandleKey {
        HandleKey(Zeroizing::new(b))
    }

    /// Reads a key file (64 hex digits, surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<HandleKey, HandleError> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| HandleError::KeyFile(format!("{}: {e}", path.display())))?,
        );
        let bytes = Zeroizing::new(
            hex::decode(text.trim())
                .map_err(|_| HandleError::KeyFile(format!("{}: not hex", path.display())))?,
        );
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| HandleError::KeyFile(format!("{}: must be 32 bytes", path.display())))?;
        Ok(HandleKey::from_bytes(arr))
    }

    /// Writes the key file (a private file: 0600 from creation, fsync'd, written in full before
    /// it appears under its name), failing if it exists.
    pub fn save(&self, path: &Path) -> Result<(), HandleError> {
        let err =
            |e: &dyn std::fmt::Display| HandleError::KeyFile(format!("{}: {e}", path.display()));
        if path.try_exists().map_err(|e| err(&e))? {
            return Err(err(&"already exists"));
        }
        let mut text = Zeroizing::new(hex::encode(*self.0));
        text.push('\n');
        hush_server_common::private::write_private(path, text.as_bytes()).map_err(|e| err(&e))
    }

    /// Seals a device address into a new handle (fresh random nonce).
    pub fn seal(&self, addr: &DeviceAddress) -> Result<PushHandle, HandleError> {
        addr.validate().map_err(HandleError::Address)?;
        let plain = Zeroizing::new(encode_address(addr)?);
        self.seal_bytes(&plain)
    }

    /// Seals a reference to a stored registration.
    pub fn seal_registration(&self, id: &[u8; 16]) -> Result<PushHandle, HandleError> {
        let mut plain = Vec::with_capacity(17);
        plain.push(b'r');
        plain.extend_from_slice(id);
        self.seal_bytes(&plain)
    }

    fn seal_bytes(&self, plain: &[u8]) -> Result<PushHandle, HandleError> {
        let nonce: [u8; 12] = rand::random();
        let cipher = Aes256Gcm::new_from_slice(self.0.as_slice()).map_err(|_| HandleError::Auth)?;
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: AAD,
                },
            )
            .map_err(|_| HandleError::Auth)?;
        let mut out = Vec::with_capacity(1 + 12 + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        let text = URL_SAFE_NO_PAD.encode(out);
        if text.len() > MAX_HANDLE_LEN {
            return Err(HandleError::TooLong(text.len()));
        }
        Ok(PushHandle(text))
    }

    /// Opens a handle that holds an address inline; a handle of a stored registration gives
    /// [`HandleError::Stored`] (use [`HandleKey::open_sealed`]).
    pub fn open(&self, h: &PushHandle) -> Result<DeviceAddress, HandleError> {
        match self.open_sealed(h)? {
            Sealed::Address(a) => Ok(a),
            Sealed::Registration(_) => Err(HandleError::Stored),
        }
    }

    /// Opens a handle; fails unless it was sealed with this key and is unaltered.
    pub fn open_sealed(&self, h: &PushHandle) -> Result<Sealed, HandleError> {
        if h.0.len() > MAX_HANDLE_LEN {
            return Err(HandleError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(h.0.as_bytes())
            .map_err(|_| HandleError::Encoding)?;
        let (&ver, rest) = raw.split_first().ok_or(HandleError::Malformed)?;
        if ver != VERSION {
            return Err(HandleError::Version);
        }
        if rest.len() < 12 + 16 {
            return Err(HandleError::Malformed);
        }
        let (nonce, ct) = rest.split_at(12);
        let cipher = Aes256Gcm::new_from_slice(self.0.as_slice()).map_err(|_| HandleError::Auth)?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
                .map_err(|_| HandleError::Auth)?,
        );
        if let Some(id) = plain.strip_prefix(b"r") {
            let id: [u8; 16] = id.try_into().map_err(|_| HandleError::Malformed)?;
            return Ok(Sealed::Registration(id));
        }
        decode_address(&plain).map(Sealed::Address)
    }
}

fn env_code(e: ApnsEnv) -> u8 {
    match e {
        ApnsEnv::Prod => 0,
        ApnsEnv::Dev => 1,
        ApnsEnv::Test => 2,
        ApnsEnv::Null => 3,
    }
}

fn encode_address(a: &DeviceAddress) -> Result<Vec<u8>, HandleError> {
    let mut out = Vec::new();
    match a {
        DeviceAddress::Apns { env, token }
            if token.len() % 2 == 0
                && token
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            // Hex tokens travel as their bytes (half the size).
            let bytes = hex::decode(token).map_err(|_| HandleError::Address("token hex"))?;
            let len = u8::try_from(bytes.len()).map_err(|_| HandleError::TooLong(token.len()))?;
            out.push(b'h');
            out.push(env_code(*env));
            out.push(len);
            out.extend_from_slice(&bytes);
        }
        DeviceAddress::Apns { env, token } => {
            let len = u8::try_from(token.len()).map_err(|_| HandleError::TooLong(token.len()))?;
            out.push(b'a');
            out.push(env_code(*env));
            out.push(len);
            out.extend_from_slice(token.as_bytes());
        }
        DeviceAddress::WebPush(s) => {
            let len = u16::try_from(s.endpoint.len())
                .map_err(|_| HandleError::TooLong(s.endpoint.len()))?;
            out.push(b'w');
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s.endpoint.as_bytes());
            out.extend_from_slice(&s.p256dh);
            out.extend_from_slice(&s.auth);
        }
    }
    Ok(out)
}

fn decode_address(b: &[u8]) -> Result<DeviceAddress, HandleError> {
    let (&tag, rest) = b.split_first().ok_or(HandleError::Malformed)?;
    let addr = match tag {
        b'a' | b'h' => {
            let (&env, rest) = rest.split_first().ok_or(HandleError::Malformed)?;
            let env = match env {
                0 => ApnsEnv::Prod,
                1 => ApnsEnv::Dev,
                2 => ApnsEnv::Test,
                3 => ApnsEnv::Null,
                _ => return Err(HandleError::Malformed),
            };
            let (&len, rest) = rest.split_first().ok_or(HandleError::Malformed)?;
            if rest.len() != usize::from(len) {
                return Err(HandleError::Malformed);
            }
            let token = if tag == b'h' {
                hex::encode(rest)
            } else {
                String::from_utf8(rest.to_vec()).map_err(|_| HandleError::Malformed)?
            };
            DeviceAddress::Apns { env, token }
        }
        b'w' => {
            let len_bytes: [u8; 2] = rest
                .get(..2)
                .and_then(|s| s.try_into().ok())
                .ok_or(HandleError::Malformed)?;
            let len = usize::from(u16::from_be_bytes(len_bytes));
            let rest = rest.get(2..).ok_or(HandleError::Malformed)?;
            if rest.len() != len + 65 + 16 {
                return Err(HandleError::Malformed);
            }
            let (endpoint, keys) = rest.split_at(len);
            let (p256dh, auth) = keys.split_at(65);
            DeviceAddress::WebPush(WebPushSubscription {
                endpoint: String::from_utf8(endpoint.to_vec())
                    .map_err(|_| HandleError::Malformed)?,
                p256dh: p256dh.to_vec(),
                auth: auth.to_vec(),
            })
        }
        _ => return Err(HandleError::Malformed),
    };
    addr.validate().map_err(|_| HandleError::Malformed)?;
    Ok(addr)
}
