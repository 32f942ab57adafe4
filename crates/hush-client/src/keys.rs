//! Command authorization keys (reference §2.7): Ed25519 / Ed448 signatures, or the 80-byte
//! crypto_box authenticator made with an X25519 queue key and the relay's per-connection
//! session key.

use hush_crypto::keys::{Ed448Secret, Ed25519Secret};
use hush_crypto::{X25519Public, X25519Secret, cb_authenticate_parts};
use hush_proto::smp::PublicKeyDer;

use crate::ClientError;

/// Which kind of key authorizes a queue's commands. Current apps use Ed25519 (§6.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AuthAlgorithm {
    #[default]
    Ed25519,
    Ed448,
    /// crypto_box authenticator with the relay's session key (needs SMP v7+).
    X25519,
}

/// A private key that authorizes commands (recipient, sender or notifier key).
#[derive(Clone, Debug)]
pub enum AuthKey {
    Ed25519(Ed25519Secret),
    Ed448(Ed448Secret),
    X25519(X25519Secret),
}

impl AuthKey {
    /// A fresh random key.
    pub fn generate(alg: AuthAlgorithm) -> Result<AuthKey, ClientError> {
        Ok(match alg {
            AuthAlgorithm::Ed25519 => AuthKey::Ed25519(Ed25519Secret::generate()),
            AuthAlgorithm::Ed448 => AuthKey::Ed448(Ed448Secret::generate()?),
            AuthAlgorithm::X25519 => AuthKey::X25519(X25519Secret::generate()),
        })
    }

    pub fn algorithm(&self) -> AuthAlgorithm {
        match self {
            AuthKey::Ed25519(_) => AuthAlgorithm::Ed25519,
            AuthKey::Ed448(_) => AuthAlgorithm::Ed448,
            AuthKey::X25519(_) => AuthAlgorithm::X25519,
        }
    }

    /// The public key as the SPKI DER that goes into `NEW`, `KEY`, `SKEY`, `NKEY`.
    pub fn public_der(&self) -> Result<PublicKeyDer, ClientError> {
        let der = match self {
            AuthKey::Ed25519(k) => k.public().to_spki_der(),
            AuthKey::Ed448(k) => k.public()?.to_spki_der(),
            AuthKey::X25519(k) => k.public().to_spki_der(),
        };
        PublicKeyDer::auth_key(der).map_err(ClientError::Decode)
    }

    /// The authorization of one transmission: a signature over `authorized`, or the
    /// authenticator keyed by the relay's session key and nonce = `corr_id`.
    pub fn authorize(
        &self,
        server_session_key: Option<&X25519Public>,
        corr_id: &[u8],
        authorized: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.authorize_parts(server_session_key, corr_id, &[authorized])
    }

    /// [`AuthKey::authorize`] over the concatenation of `authorized` (Ed25519 and the
    /// authenticator hash the parts where they lie: a 16 KB `SEND` is not copied to be signed).
    pub fn authorize_parts(
        &self,
        server_session_key: Option<&X25519Public>,
        corr_id: &[u8],
        authorized: &[&[u8]],
    ) -> Result<Vec<u8>, ClientError> {
        match self {
            AuthKey::Ed25519(k) => Ok(k.sign_parts(authorized).to_vec()),
            AuthKey::Ed448(k) => Ok(k.sign(&authorized.concat())?),
            AuthKey::X25519(k) => {
                let server = server_session_key
                    .ok_or(ClientError::Auth("relay sent no session key (SMP < 7)"))?;
                Ok(cb_authenticate_parts(server, k, corr_id, authorized).to_vec())
            }
        }
    }
}

/// A fresh X25519 key pair for a DH field (`NEW` rcvDhKey, `NKEY` rcvNtfDhKey); returns the
/// secret and its SPKI for the command.
pub fn new_dh_key() -> Result<(X25519Secret, PublicKeyDer), ClientError> {
    let k = X25519Secret::generate();
    let der = PublicKeyDer::dh_key(k.public().to_spki_der()).map_err(ClientError::Decode)?;
    Ok((k, der))
}

/// The shared secret of our DH private key and the relay's key from `IDS` / `NID`.
pub fn dh_secret(
    own: &X25519Secret,
    server_key: &PublicKeyDer,
) -> Result<hush_crypto::DhSecret, ClientError> {
    let pk = X25519Public::from_spki_der(server_key.as_bytes())?;
    Ok(own.dh(&pk))
}
