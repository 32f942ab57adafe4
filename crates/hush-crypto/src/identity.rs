//! Server identity: offline CA + online TLS certificate and the CA fingerprint (§2.1, §2.3),
//! stored like the reference's `smp-server init` (`ca.crt`, `ca.key`, `server.crt`,
//! `server.key`, `fingerprint`). Rendering `smp://…` addresses is hush-proto's job.

use std::path::Path;

use crate::CryptoError;
use crate::cert::{CertKey, SignAlgorithm, generate_ca, generate_online_cert};

/// Common name the reference gives the offline CA.
pub const CA_COMMON_NAME: &str = "SMP server CA";

/// File names used by the reference in the server's config directory.
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVER_CERT_FILE: &str = "server.crt";
pub const SERVER_KEY_FILE: &str = "server.key";
pub const FINGERPRINT_FILE: &str = "fingerprint";

/// CA + online certificate, and the CA fingerprint (the server's key hash).
#[derive(Debug)]
pub struct ServerIdentity {
    /// Offline CA (its key may be absent on a running server; see [`ServerIdentity::load`]).
    pub ca_cert_der: Vec<u8>,
    pub ca_key: Option<openssl::pkey::PKey<openssl::pkey::Private>>,
    /// Online (TLS leaf) certificate and key.
    pub online: CertKey,
    /// SHA-256 of the CA certificate DER.
    pub fingerprint: [u8; 32],
}

impl ServerIdentity {
    /// Generates a CA ("SMP server CA") and an online certificate with `common_name`
    /// (the reference default is the server's host, e.g. `127.0.0.1`).
    pub fn generate(alg: SignAlgorithm, common_name: &str) -> Result<Self, CryptoError> {
        let ca = generate_ca(alg, CA_COMMON_NAME)?;
        let online = generate_online_cert(&ca, alg, common_name)?;
        let fingerprint = ca.fingerprint();
        Ok(ServerIdentity {
            ca_cert_der: ca.cert_der,
            ca_key: Some(ca.key),
            online,
            fingerprint,
        })
    }

    /// The TLS certificate chain the server presents: `[online leaf, offline CA]`.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.online.cert_der.clone(), self.ca_cert_der.clone()]
    }

    /// Writes `ca.crt`, `ca.key` (if present), `server.crt`, `server.key` (keys 0600 from creation)
    /// and `fingerprint` (base64url with padding and a newline, as the reference writes it).
    pub fn save(&self, dir: &Path) -> Result<(), CryptoError> {
        // A new directory is private (0700); an existing one is the operator's and left as it is
        // (the keys in it are 0600 either way).
        if !dir.is_dir() {
            hush_server_common::private::create_private_dir(dir)?;
        }
        if let Some(k) = &self.ca_key {
            let ca = CertKey {
                cert_der: self.ca_cert_der.clone(),
                key: k.clone(),
            };
            ca.save_pem_files(&dir.join(CA_CERT_FILE), &dir.join(CA_KEY_FILE))?;
        } else {
            let pem = openssl::x509::X509::from_der(&self.ca_cert_der)?.to_pem()?;
            std::fs::write(dir.join(CA_CERT_FILE), pem)?;
        }
        self.online
            .save_pem_files(&dir.join(SERVER_CERT_FILE), &dir.join(SERVER_KEY_FILE))?;
        let fp = hush_proto::encoding::base64url_encode(&self.fingerprint);
        std::fs::write(dir.join(FINGERPRINT_FILE), format!("{fp}\n"))?;
        Ok(())
    }

    /// Loads the identity from `dir`. The CA key is optional (operators may move it offline).
    /// If a `fingerprint` file exists it must match the CA certificate (the reference refuses
    /// to start otherwise).
    pub fn load(dir: &Path) -> Result<Self, CryptoError> {
        let ca_chain = crate::cert::load_cert_chain_pem(&dir.join(CA_CERT_FILE))?;
        let ca_cert_der = ca_chain
            .into_iter()
            .next()
            .ok_or(CryptoError::Pem("no CA certificate"))?;
        let ca_key_path = dir.join(CA_KEY_FILE);
        let ca_key = if ca_key_path.exists() {
            let pem = zeroize::Zeroizing::new(std::fs::read(&ca_key_path)?);
            Some(
                CertKey::from_pem(
                    &openssl::x509::X509::from_der(&ca_cert_der)?.to_pem()?,
                    &pem,
                )?
                .key,
            )
        } else {
            None
        };
        let online =
            CertKey::load_pem_files(&dir.join(SERVER_CERT_FILE), &dir.join(SERVER_KEY_FILE))?;
        let fingerprint = crate::cert::fingerprint(&ca_cert_der);
        let fp_path = dir.join(FINGERPRINT_FILE);
        if fp_path.exists() {
            let saved = std::fs::read_to_string(&fp_path)?;
            let saved = hush_proto::encoding::base64url_decode(saved.trim())
                .map_err(|_| CryptoError::Pem("bad fingerprint file"))?;
            if !crate::ct_eq(&saved, &fingerprint) {
                return Err(CryptoError::Pem("fingerprint file does not match ca.crt"));
            }
        }
        Ok(ServerIdentity {
            ca_cert_der,
            ca_key,
            online,
            fingerprint,
        })
    }
}
