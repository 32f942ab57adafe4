//! Command authorization (reference §2.7, `Server.hs verifyQueueTransmission`).
//!
//! Every check runs a real verification, against a dummy key of the same algorithm when the queue
//! or the key is missing, so that all `AUTH` failures cost about the same time whether or not the
//! queue exists.
//!
//! Decoded keys are cached per connection ([`KeyCache`]): a queue key that verified an
//! authorization on this connection is kept decoded — an Ed25519 key as a decompressed point
//! (saves the point decompression of every later verify), an X25519 key as its DH secret with
//! this connection's session key (saves the scalar multiplication of every later crypto_box
//! authenticator). Only successful verifications fill the cache, so a client that cannot
//! authorize never gets a faster answer for an existing queue than for a missing one: every
//! failure it can cause still decodes (or runs the dummy) at full cost.

use std::sync::Mutex;

use hush_crypto::{
    DhSecret, Ed25519Verifier, PublicKey, SignAlgorithm, TransmissionAuth, X25519Secret,
};
use hush_proto::transmission::Authorized;

/// Keys one connection keeps decoded. Small on purpose (a linear scan over a few entries): a
/// client typically authorizes with a handful of queue keys per connection; above
/// [`KEY_CACHE_MAX`] the oldest entry goes.
#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<Vec<(Box<[u8]>, Decoded)>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyCache(..)")
    }
}

/// Most decoded keys one connection keeps.
pub const KEY_CACHE_MAX: usize = 32;

/// A key decoded for verification on one connection.
#[derive(Clone)]
enum Decoded {
    Ed25519(Ed25519Verifier),
    Ed448(hush_crypto::Ed448Public),
    /// X25519(queue key, this connection's session key).
    X25519(DhSecret),
}

impl KeyCache {
    fn get(&self, der: &[u8]) -> Option<Decoded> {
        let g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.iter().find(|(k, _)| &**k == der).map(|(_, d)| d.clone())
    }

    fn insert(&self, der: &[u8], d: Decoded) {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if g.iter().any(|(k, _)| &**k == der) {
            return;
        }
        if g.len() >= KEY_CACHE_MAX {
            g.remove(0);
        }
        g.push((der.into(), d));
    }

    /// Keys held (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().map(|g| g.len()).unwrap_or(0)
    }
}

/// Decodes a DER SPKI key for verification (`None`: not a key, or not a valid point).
fn decode(der: &[u8], session_key: &X25519Secret) -> Option<Decoded> {
    Some(match PublicKey::from_spki_der(der).ok()? {
        PublicKey::Ed25519(k) => Decoded::Ed25519(Ed25519Verifier::new(&k).ok()?),
        PublicKey::Ed448(k) => Decoded::Ed448(k),
        PublicKey::X25519(k) => Decoded::X25519(session_key.dh(&k)),
        PublicKey::X448(_) => return None,
    })
}

/// What a transmission brings to be verified.
pub struct Authorization<'a> {
    /// `None` = no authorization (length 0). Lengths other than 0/64/80/114 never get here (`ERR BLOCK`).
    pub auth: Option<TransmissionAuth>,
    /// `shortString(sessionId) ‖ shortString(corrId) ‖ shortString(entityId) ‖ command`, in
    /// place in the block (hashed where it lies).
    pub authorized: Authorized<'a>,
    pub corr_id: &'a [u8],
    /// This connection's X25519 key (for authenticators).
    pub session_key: &'a X25519Secret,
    /// This connection's decoded keys.
    pub keys: &'a KeyCache,
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
        let mut any = false;
        let mut ok = false;
        for der in keys {
            let der = der.as_ref();
            // No short-circuit: every key is tried (timing does not reveal which one matched).
            let (cached, decoded) = match self.keys.get(der) {
                Some(d) => (true, Some(d)),
                None => (false, decode(der, self.session_key)),
            };
            let Some(d) = decoded else {
                // Not a usable key (never stored by this relay): like a missing one.
                continue;
            };
            any = true;
            let verified = self.verify_decoded(&d, auth);
            if verified && !cached {
                self.keys.insert(der, d);
            }
            ok |= verified;
        }
        if !any {
            self.dummy();
            return false;
        }
        ok
    }

    /// One verification with a decoded key; a key of another kind than the authorization runs
    /// the dummy verification of the authorization's kind (reference `verifyCmdAuthorization`).
    fn verify_decoded(&self, d: &Decoded, auth: &TransmissionAuth) -> bool {
        match (auth, d) {
            (TransmissionAuth::Signature(SignAlgorithm::Ed25519, sig), Decoded::Ed25519(vk)) => {
                vk.verify_parts(&self.authorized.parts(), sig).is_ok()
            }
            (TransmissionAuth::Signature(SignAlgorithm::Ed448, sig), Decoded::Ed448(k)) => {
                k.verify(&self.authorized.to_vec(), sig).is_ok()
            }
            (TransmissionAuth::Authenticator(a), Decoded::X25519(dh)) => {
                hush_crypto::cb_verify_dh(dh, self.corr_id, a, &self.authorized.parts())
            }
            _ => {
                self.dummy();
                false
            }
        }
    }

    /// Verification against one key.
    pub fn verify(&self, key: &[u8]) -> bool {
        self.verify_any(&[key])
    }

    /// Runs a dummy verification (result discarded) when there is an authorization.
    pub fn dummy(&self) {
        if let Some(auth) = &self.auth {
            let _ = hush_crypto::dummy_verify_transmission_parts(
                auth,
                Some(self.session_key),
                &self.authorized.parts(),
                self.corr_id,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_crypto::{Ed25519Secret, X25519Public};

    fn authorization<'a>(
        auth: Option<TransmissionAuth>,
        authorized: &'a [u8],
        corr: &'a [u8],
        session_key: &'a X25519Secret,
        keys: &'a KeyCache,
    ) -> Authorization<'a> {
        Authorization {
            auth,
            authorized: Authorized::from_bytes(authorized),
            corr_id: corr,
            session_key,
            keys,
        }
    }

    /// Ed25519: a valid signature verifies and caches the key; a cached key still rejects a bad
    /// signature; a failed verification caches nothing; the results match hush-crypto's
    /// uncached `verify_transmission`.
    #[test]
    fn ed25519_cached_like_uncached() {
        let sk = Ed25519Secret::generate();
        let der = sk.public().to_spki_der();
        let session = X25519Secret::generate();
        let cache = KeyCache::default();
        let msg = b"authorized bytes";
        let sig = TransmissionAuth::Signature(SignAlgorithm::Ed25519, sk.sign(msg).to_vec());
        let mut bad_bytes = sk.sign(msg).to_vec();
        bad_bytes[3] ^= 1;
        let bad = TransmissionAuth::Signature(SignAlgorithm::Ed25519, bad_bytes);

        let a = authorization(Some(bad.clone()), msg, b"c", &session, &cache);
        assert!(!a.verify(&der));
        assert_eq!(cache.len(), 0, "a failure must not fill the cache");

        let a = authorization(Some(sig.clone()), msg, b"c", &session, &cache);
        assert!(a.verify(&der));
        assert_eq!(cache.len(), 1);
        assert!(a.verify(&der), "cached key verifies");
        let pk = PublicKey::from_spki_der(&der).unwrap();
        for (auth, want) in [(sig, true), (bad.clone(), false)] {
            let uncached =
                hush_crypto::verify_transmission(Some(&pk), Some(&auth), Some(&session), msg, b"c");
            assert_eq!(uncached, want);
            let a = authorization(Some(auth), msg, b"c", &session, &cache);
            assert_eq!(a.verify(&der), want);
        }
        // Another message with the cached key fails.
        let a = authorization(Some(bad), b"other", b"c", &session, &cache);
        assert!(!a.verify(&der));
    }

    /// X25519 authenticators: verified with the cached DH secret, bound to the corrId and the
    /// authorized bytes; a signature against an X25519 key (kind mismatch) is refused.
    #[test]
    fn x25519_authenticator_cached() {
        let queue = X25519Secret::generate();
        let der = queue.public().to_spki_der();
        let session = X25519Secret::generate();
        let session_pub: X25519Public = session.public();
        let cache = KeyCache::default();
        let msg = b"shortString sess || corr || entity || SEND";
        let a80 = hush_crypto::cb_authenticate(&session_pub, &queue, b"corr-1", msg);
        let auth = Some(TransmissionAuth::Authenticator(a80));
        for _ in 0..2 {
            let a = authorization(auth.clone(), msg, b"corr-1", &session, &cache);
            assert!(a.verify(&der));
            assert_eq!(cache.len(), 1);
        }
        // Same authenticator, other corrId (nonce) or other bytes: refused, cached or not.
        let a = authorization(auth.clone(), msg, b"corr-2", &session, &cache);
        assert!(!a.verify(&der));
        let a = authorization(auth.clone(), b"other", b"corr-1", &session, &cache);
        assert!(!a.verify(&der));
        // A fresh connection (other session key) does not accept it.
        let other = X25519Secret::generate();
        let cache2 = KeyCache::default();
        let a = authorization(auth, msg, b"corr-1", &other, &cache2);
        assert!(!a.verify(&der));
        assert_eq!(cache2.len(), 0);
        // Kind mismatch.
        let sig = TransmissionAuth::Signature(SignAlgorithm::Ed25519, vec![0; 64]);
        let a = authorization(Some(sig), msg, b"corr-1", &session, &cache);
        assert!(!a.verify(&der));
    }

    /// No usable key, no authorization, several keys: the rules of `verify_any`; the cache
    /// stays bounded.
    #[test]
    fn verify_any_rules_and_bound() {
        let session = X25519Secret::generate();
        let cache = KeyCache::default();
        let msg = b"m";
        let sk = Ed25519Secret::generate();
        let der = sk.public().to_spki_der();
        let sig = Some(TransmissionAuth::Signature(
            SignAlgorithm::Ed25519,
            sk.sign(msg).to_vec(),
        ));
        let none: [&[u8]; 0] = [];
        let a = authorization(sig.clone(), msg, b"c", &session, &cache);
        assert!(!a.verify_any(&none));
        assert!(!a.verify(b"not a key"));
        let other = Ed25519Secret::generate().public().to_spki_der();
        assert!(a.verify_any(&[other.as_slice(), der.as_slice()]));
        assert!(a.verify_any(&[der.as_slice(), other.as_slice()]));
        assert_eq!(cache.len(), 1);
        let unsigned = authorization(None, msg, b"c", &session, &cache);
        assert!(!unsigned.verify(&der));
        for _ in 0..KEY_CACHE_MAX + 5 {
            let k = Ed25519Secret::generate();
            let s = Some(TransmissionAuth::Signature(
                SignAlgorithm::Ed25519,
                k.sign(msg).to_vec(),
            ));
            let a = authorization(s, msg, b"c", &session, &cache);
            assert!(a.verify(&k.public().to_spki_der()));
        }
        assert_eq!(cache.len(), KEY_CACHE_MAX);
    }
}
