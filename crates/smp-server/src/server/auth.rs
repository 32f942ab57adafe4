//! Command authorization (reference §2.7, `Server.hs verifyQueueTransmission`).
//!
//! Every check runs a real verification, against a dummy key of the same algorithm when the queue
//! or the key is missing, so that all `AUTH` failures cost about the same time whether or not the
//! queue exists.

use hush_crypto::{PublicKey, TransmissionAuth, X25519Secret};

/// What a transmission brings to be verified.
pub struct Authorization<'a> {
    /// `None` = no authorization (length 0). Lengths other than 0/64/80/114 never get here (`ERR BLOCK`).
    pub auth: Option<TransmissionAuth>,
    /// `shortString(sessionId) ‖ shortString(corrId) ‖ shortString(entityId) ‖ command`.
    pub authorized: Vec<u8>,
    pub corr_id: &'a [u8],
    /// This connection's X25519 key (for authenticators).
    pub session_key: &'a X25519Secret,
}

impl Authorization<'_> {
    pub fn is_present(&self) -> bool {
        self.auth.is_some()
    }

    /// True if the authorization verifies with one of `keys` (DER SPKI). With no keys (missing
    /// queue or key) a dummy verification of the same kind runs and the result is `false`. A
    /// missing authorization is `false`.
    pub fn verify_any<K: AsRef<[u8]>>(&self, keys: &[K]) -> bool {
        let Some(auth) = &self.auth else {
            return false;
        };
        let parsed: Vec<PublicKey> = keys
            .iter()
            .filter_map(|k| PublicKey::from_spki_der(k.as_ref()).ok())
            .collect();
        if parsed.is_empty() {
            self.dummy();
            return false;
        }
        let mut ok = false;
        for k in &parsed {
            // No short-circuit: every key is tried (timing does not reveal which one matched).
            ok |= hush_crypto::verify_transmission(
                Some(k),
                Some(auth),
                Some(self.session_key),
                &self.authorized,
                self.corr_id,
            );
        }
        ok
    }

    /// Verification against one key.
    pub fn verify(&self, key: &[u8]) -> bool {
        self.verify_any(&[key])
    }

    /// Runs a dummy verification (result discarded) when there is an authorization.
    pub fn dummy(&self) {
        if let Some(auth) = &self.auth {
            let _ = hush_crypto::dummy_verify_transmission(
                auth,
                Some(self.session_key),
                &self.authorized,
                self.corr_id,
            );
        }
    }
}
