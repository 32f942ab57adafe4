//! Push jobs: what the ntf-server hands to the push-server.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hush_proto::ntf::{DeviceToken, PushProvider};
use serde::{Deserialize, Serialize};

use crate::handle::PushHandle;

/// Deduplication id of a job, chosen by the ntf-server (random 16 bytes). A job id accepted twice
/// is delivered once; it is also sent as the APNs `apns-id` (UUID form) so the device side can
/// recognise an at-least-once duplicate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub [u8; 16]);

impl JobId {
    pub fn random() -> JobId {
        JobId(rand::random())
    }

    /// Canonical UUID text (8-4-4-4-12 lowercase hex), as used for `apns-id`.
    pub fn to_uuid(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(36);
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }

    /// Parses the UUID text form (either case, with dashes) or 32 hex digits.
    pub fn from_uuid(s: &str) -> Option<JobId> {
        let compact: String = s.chars().filter(|c| *c != '-').collect();
        if compact.len() != 32 {
            return None;
        }
        let bytes = hex::decode(compact.to_ascii_lowercase()).ok()?;
        let arr: [u8; 16] = bytes.try_into().ok()?;
        Some(JobId(arr))
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", hex::encode(self.0))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        let arr: [u8; 16] = v
            .try_into()
            .map_err(|_| serde::de::Error::custom("job id must be 16 bytes"))?;
        Ok(JobId(arr))
    }
}

/// What the push is for (metrics and logs; the payload is built by the ntf-server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushKind {
    /// Token verification push (`TNEW`/`TRPL`).
    Verification,
    /// New-message push (`NMSG`).
    Message,
    /// Periodic "check messages" push (`TCRN`).
    CheckMessages,
    /// Anything else (e.g. a coalesced visible alert).
    Other,
}

impl PushKind {
    pub const fn label(self) -> &'static str {
        match self {
            PushKind::Verification => "verification",
            PushKind::Message => "message",
            PushKind::CheckMessages => "check_messages",
            PushKind::Other => "other",
        }
    }
}

/// APNs push type (`apns-push-type`); also selects the Web Push `Urgency`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushType {
    Alert,
    Background,
}

impl PushType {
    pub const fn apns_value(self) -> &'static str {
        match self {
            PushType::Alert => "alert",
            PushType::Background => "background",
        }
    }
}

/// Which APNs environment a token belongs to (NTF providers `AP`, `AD`, `AT`, `AN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApnsEnv {
    /// `AP`: api.push.apple.com.
    Prod,
    /// `AD`: api.sandbox.push.apple.com.
    Dev,
    /// `AT`: the local mock (apns-sink); its URL comes from the configuration.
    Test,
    /// `AN`: never pushed (accepted and dropped).
    Null,
}

impl ApnsEnv {
    pub const fn label(self) -> &'static str {
        match self {
            ApnsEnv::Prod => "apns_prod",
            ApnsEnv::Dev => "apns_dev",
            ApnsEnv::Test => "apns_test",
            ApnsEnv::Null => "apns_null",
        }
    }

    /// The APNs environment of an NTF push provider (`AP`/`AD`/`AT`/`AN`); `None` for providers
    /// that are not APNs (`PH`, a push handle).
    pub fn from_provider(p: PushProvider) -> Option<ApnsEnv> {
        match p {
            PushProvider::ApnsProd => Some(ApnsEnv::Prod),
            PushProvider::ApnsDev => Some(ApnsEnv::Dev),
            PushProvider::ApnsTest => Some(ApnsEnv::Test),
            PushProvider::ApnsNull => Some(ApnsEnv::Null),
            _ => None,
        }
    }
}

/// A Web Push (RFC 8030) / UnifiedPush subscription: endpoint URL and the UA's keys (RFC 8291).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebPushSubscription {
    pub endpoint: String,
    /// The UA's P-256 public key, uncompressed point (65 bytes), base64url in JSON.
    #[serde(with = "b64")]
    pub p256dh: Vec<u8>,
    /// The 16-byte authentication secret, base64url in JSON.
    #[serde(with = "b64")]
    pub auth: Vec<u8>,
}

impl fmt::Debug for WebPushSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Endpoints are capability URLs: never print them.
        f.write_str("WebPushSubscription(..)")
    }
}

/// Where a push goes, as the push-server knows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum DeviceAddress {
    /// APNs: the token as lowercase hex text (used verbatim in `/3/device/<token>`).
    Apns { env: ApnsEnv, token: String },
    /// Web Push / UnifiedPush.
    WebPush(WebPushSubscription),
}

impl fmt::Debug for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are never printed (privacy rule).
        match self {
            DeviceAddress::Apns { env, .. } => write!(f, "Apns({})", env.label()),
            DeviceAddress::WebPush(_) => f.write_str("WebPush(..)"),
        }
    }
}

impl DeviceAddress {
    /// Provider label for metrics.
    pub fn provider_label(&self) -> &'static str {
        match self {
            DeviceAddress::Apns { env, .. } => env.label(),
            DeviceAddress::WebPush(_) => "webpush",
        }
    }

    /// Converts an NTF device token (reference providers `AP`/`AD`/`AT`/`AN`).
    pub fn from_ntf_token(t: &DeviceToken) -> Option<DeviceAddress> {
        let env = ApnsEnv::from_provider(t.provider)?;
        let token = String::from_utf8(t.token.clone()).ok()?;
        Some(DeviceAddress::Apns { env, token })
    }

    /// Checks the shape (APNs token: non-empty lowercase hex ≤ 200 chars, or the null test
    /// token; Web Push: http(s) URL ≤ 2048 bytes, 65-byte uncompressed key, 16-byte secret).
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            DeviceAddress::Apns { env, token } => {
                if *env == ApnsEnv::Null {
                    return Ok(());
                }
                if token.is_empty()
                    || token.len() > 200
                    || !token
                        .bytes()
                        .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                {
                    return Err("APNs token must be lowercase hex");
                }
                Ok(())
            }
            DeviceAddress::WebPush(s) => {
                if s.endpoint.len() > 2048
                    || !(s.endpoint.starts_with("https://") || s.endpoint.starts_with("http://"))
                {
                    return Err("Web Push endpoint must be an http(s) URL");
                }
                if s.p256dh.len() != 65 || s.p256dh.first() != Some(&4) {
                    return Err("p256dh must be a 65-byte uncompressed P-256 point");
                }
                if s.auth.len() != 16 {
                    return Err("auth secret must be 16 bytes");
                }
                Ok(())
            }
        }
    }
}

/// The target of a job: a device address (reference mode, the ntf-server knows the token) or an
/// opaque push handle (split mode, only the push-server can open it).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushTarget {
    Device(DeviceAddress),
    Handle(PushHandle),
}

impl fmt::Debug for PushTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushTarget::Device(d) => write!(f, "Device({d:?})"),
            PushTarget::Handle(_) => f.write_str("Handle(..)"),
        }
    }
}

impl PushTarget {
    /// From an NTF `deviceToken` (provider code + token bytes): `AP`/`AD`/`AT`/`AN` give a device
    /// address (APNs token text), `PH` ([`PushProvider::PushHandle`]) a push handle. `None` for
    /// other codes or non-UTF-8 tokens.
    pub fn from_ntf_parts(code: &[u8], token: &[u8]) -> Option<PushTarget> {
        Self::from_provider(PushProvider::from_code(code)?, token)
    }

    /// From a parsed NTF device token; the same mapping as [`PushTarget::from_ntf_parts`].
    pub fn from_ntf_token(t: &DeviceToken) -> Option<PushTarget> {
        Self::from_provider(t.provider, &t.token)
    }

    fn from_provider(provider: PushProvider, token: &[u8]) -> Option<PushTarget> {
        let text = std::str::from_utf8(token).ok()?.to_string();
        if provider == PushProvider::PushHandle {
            return Some(PushTarget::Handle(PushHandle(text)));
        }
        let env = ApnsEnv::from_provider(provider)?;
        Some(PushTarget::Device(DeviceAddress::Apns { env, token: text }))
    }
}

/// One push, handed over by the ntf-server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushJob {
    pub job_id: JobId,
    pub target: PushTarget,
    pub kind: PushKind,
    /// APNs: the JSON body built by the ntf-server (sent as is). Web Push: the same bytes are
    /// encrypted with RFC 8291 `aes128gcm` for the subscription. Base64url in JSON.
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
    pub push_type: PushType,
    /// `apns-priority` (5 or 10; `None` = header omitted, as the reference does for alerts).
    #[serde(default)]
    pub priority: Option<u8>,
    /// Unix seconds after which the push is useless: sent as `apns-expiration` / Web Push `TTL`, and
    /// the outbox drops the job after it. `None` = the configured default TTL, no APNs header.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// `apns-collapse-id` / Web Push `Topic`.
    #[serde(default)]
    pub collapse_id: Option<String>,
    /// Report [`crate::FeedbackReason::Delivered`] once the provider accepted the push (the
    /// reference marks a token CONFIRMED when APNs accepted its verification push).
    #[serde(default)]
    pub report_delivery: bool,
}

/// Largest accepted payload (bytes) before any provider limit.
pub const MAX_JOB_PAYLOAD: usize = 16 * 1024;

impl PushJob {
    /// Checks what can be checked without opening a handle.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.payload.len() > MAX_JOB_PAYLOAD {
            return Err("payload too large");
        }
        if let Some(p) = self.priority
            && !matches!(p, 1 | 5 | 10)
        {
            return Err("priority must be 1, 5 or 10");
        }
        if let Some(c) = &self.collapse_id
            && c.len() > 64
        {
            return Err("collapse id longer than 64 bytes");
        }
        if let PushTarget::Device(d) = &self.target {
            d.validate()?;
        }
        Ok(())
    }
}

pub(crate) mod b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_id_uuid_text_is_the_canonical_form_and_parses_back() {
        let id = JobId([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54,
            0x32, 0x10,
        ]);
        assert_eq!(id.to_uuid(), "01234567-89ab-cdef-fedc-ba9876543210");
        assert_eq!(JobId::from_uuid(&id.to_uuid()), Some(id));
        assert_eq!(
            JobId([0xff; 16]).to_uuid(),
            "ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
    }
}
