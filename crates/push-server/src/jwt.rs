//! ES256 JSON Web Tokens (APNs provider tokens, RFC 8292 VAPID), signed and verified with OpenSSL.
//!
//! Signature encoding: RFC 7518 §3.4 (which Apple's documentation and RFC 8292 follow) encodes an
//! ES256 signature as the 64-byte `r ‖ s`; the reference APNs client sends the DER
//! `SEQUENCE { INTEGER r, INTEGER s }` instead, which APNs also accepts. [`SigFormat`] selects one;
//! verification ([`verify_es256`]) accepts both, as APNs does.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::ecdsa::EcdsaSig;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::sha::sha256;

/// How the ECDSA signature is serialised in the JWT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SigFormat {
    /// 64-byte `r ‖ s` (RFC 7518, Apple's documentation, RFC 8292). Default.
    #[default]
    Jose,
    /// DER `SEQUENCE { r, s }` (what the reference `APNS.hs signedJWTToken` sends).
    Der,
}

impl SigFormat {
    pub fn parse(s: &str) -> Option<SigFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "jose" | "raw" | "rs" => Some(SigFormat::Jose),
            "der" => Some(SigFormat::Der),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("not a JWT (three base64url parts)")]
    Format,
    #[error("JWT header or claims are not JSON objects")]
    Json,
    #[error("JWT alg is not ES256")]
    Alg,
    #[error("bad signature encoding")]
    SigEncoding,
    #[error("signature does not verify")]
    Signature,
    #[error("key error: {0}")]
    Key(String),
}

fn key_err(e: openssl::error::ErrorStack) -> JwtError {
    JwtError::Key(e.to_string())
}

/// A P-256 signing key.
#[derive(Clone)]
pub struct Es256Key {
    key: EcKey<Private>,
}

impl std::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Es256Key(..)")
    }
}

impl Es256Key {
    pub fn generate() -> Result<Es256Key, JwtError> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(key_err)?;
        Ok(Es256Key {
            key: EcKey::generate(&group).map_err(key_err)?,
        })
    }

    /// From a PEM private key (PKCS#8 `.p8` as Apple issues, or SEC1); must be P-256.
    pub fn from_pem(pem: &[u8]) -> Result<Es256Key, JwtError> {
        let pkey = PKey::private_key_from_pem(pem).map_err(key_err)?;
        let key = pkey.ec_key().map_err(key_err)?;
        if key.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
            return Err(JwtError::Key("not a P-256 key".into()));
        }
        Ok(Es256Key { key })
    }

    /// From the raw 32-byte private scalar (and its curve).
    pub fn from_private_bytes(d: &[u8]) -> Result<Es256Key, JwtError> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(key_err)?;
        let d = BigNum::from_slice(d).map_err(key_err)?;
        let mut ctx = BigNumContext::new().map_err(key_err)?;
        let mut point = openssl::ec::EcPoint::new(&group).map_err(key_err)?;
        point
            .mul_generator2(&group, &d, &mut ctx)
            .map_err(key_err)?;
        let key = EcKey::from_private_components(&group, &d, &point).map_err(key_err)?;
        key.check_key().map_err(key_err)?;
        Ok(Es256Key { key })
    }

    pub fn to_pkcs8_pem(&self) -> Result<Vec<u8>, JwtError> {
        PKey::from_ec_key(self.key.clone())
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(key_err)
    }

    pub fn public_pem(&self) -> Result<Vec<u8>, JwtError> {
        PKey::from_ec_key(self.key.clone())
            .and_then(|k| k.public_key_to_pem())
            .map_err(key_err)
    }

    /// Uncompressed public point (65 bytes, `04 ‖ x ‖ y`).
    pub fn public_uncompressed(&self) -> Result<Vec<u8>, JwtError> {
        let mut ctx = BigNumContext::new().map_err(key_err)?;
        self.key
            .public_key()
            .to_bytes(
                self.key.group(),
                PointConversionForm::UNCOMPRESSED,
                &mut ctx,
            )
            .map_err(key_err)
    }

    pub fn ec_key(&self) -> &EcKey<Private> {
        &self.key
    }

    /// Signs `header_json` and `claims_json` (exact bytes) into a compact JWT.
    pub fn sign_jwt(
        &self,
        header_json: &str,
        claims_json: &str,
        format: SigFormat,
    ) -> Result<String, JwtError> {
        let mut out = String::with_capacity(256);
        out.push_str(&URL_SAFE_NO_PAD.encode(header_json));
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(claims_json));
        let digest = sha256(out.as_bytes());
        let sig = EcdsaSig::sign(&digest, &self.key).map_err(key_err)?;
        let sig_bytes = match format {
            SigFormat::Der => sig.to_der().map_err(key_err)?,
            SigFormat::Jose => {
                let mut v = sig.r().to_vec_padded(32).map_err(key_err)?;
                v.extend_from_slice(&sig.s().to_vec_padded(32).map_err(key_err)?);
                v
            }
        };
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(sig_bytes));
        Ok(out)
    }
}

/// A P-256 public key from PEM (SPKI).
pub fn public_key_from_pem(pem: &[u8]) -> Result<EcKey<Public>, JwtError> {
    let pkey = PKey::public_key_from_pem(pem).map_err(key_err)?;
    let key = pkey.ec_key().map_err(key_err)?;
    if key.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
        return Err(JwtError::Key("not a P-256 key".into()));
    }
    Ok(key)
}

/// A verified JWT: its header and claims as JSON objects, and which signature form it used.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: serde_json::Map<String, serde_json::Value>,
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub format: SigFormat,
}

/// Verifies an ES256 JWT (signature as `r ‖ s` or DER).
pub fn verify_es256(jwt: &str, key: &EcKey<Public>) -> Result<Verified, JwtError> {
    let mut parts = jwt.split('.');
    let (h, c, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(s), None) => (h, c, s),
        _ => return Err(JwtError::Format),
    };
    let dec = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Format);
    let header: serde_json::Value = serde_json::from_slice(&dec(h)?).map_err(|_| JwtError::Json)?;
    let claims: serde_json::Value = serde_json::from_slice(&dec(c)?).map_err(|_| JwtError::Json)?;
    let (serde_json::Value::Object(header), serde_json::Value::Object(claims)) = (header, claims)
    else {
        return Err(JwtError::Json);
    };
    if header.get("alg").and_then(|v| v.as_str()) != Some("ES256") {
        return Err(JwtError::Alg);
    }
    let sig_bytes = dec(s)?;
    let (sig, format) = if sig_bytes.len() == 64 {
        let r = BigNum::from_slice(&sig_bytes[..32]).map_err(|_| JwtError::SigEncoding)?;
        let s = BigNum::from_slice(&sig_bytes[32..]).map_err(|_| JwtError::SigEncoding)?;
        (
            EcdsaSig::from_private_components(r, s).map_err(|_| JwtError::SigEncoding)?,
            SigFormat::Jose,
        )
    } else {
        (
            EcdsaSig::from_der(&sig_bytes).map_err(|_| JwtError::SigEncoding)?,
            SigFormat::Der,
        )
    };
    let signed_len = h.len() + 1 + c.len();
    let digest = sha256(jwt.as_bytes().get(..signed_len).ok_or(JwtError::Format)?);
    if sig.verify(&digest, key).map_err(|_| JwtError::Signature)? {
        Ok(Verified {
            header,
            claims,
            format,
        })
    } else {
        Err(JwtError::Signature)
    }
}

/// The APNs provider token of the reference: `{"alg":"ES256","kid":…}` `{"iss":…,"iat":…}`.
pub fn apns_provider_token(
    key: &Es256Key,
    key_id: &str,
    team_id: &str,
    iat: u64,
    format: SigFormat,
) -> Result<String, JwtError> {
    let header = serde_json::json!({"alg": "ES256", "kid": key_id}).to_string();
    let claims = format!(
        "{{\"iss\":{},\"iat\":{iat}}}",
        serde_json::Value::String(team_id.to_string())
    );
    key.sign_jwt(&header, &claims, format)
}
