//! Certificate-chain rules (reference §2.3) against addresses.json `cert_chain.*` and
//! `server_identity.*` vectors, and X.509 validation with generated chains of 2, 3 and 4.

use hush_crypto::{SignAlgorithm, generate_ca, generate_online_cert};
use hush_transport::ChainError;
use hush_transport::tls::{ChainCerts, chain_id_ca, verify_client_chain, verify_server_chain};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::BasicConstraints;
use openssl::x509::{X509, X509Builder, X509NameBuilder};
use serde_json::Value;

fn vectors(file: &str) -> Vec<Value> {
    let path = format!(
        "{}/../../../shared/vectors/{}.json",
        env!("CARGO_MANIFEST_DIR"),
        file
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vector file {path} missing or unreadable: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn chain_interpretation_vectors() {
    let mut n = 0;
    for v in vectors("addresses") {
        let name = v["name"].as_str().unwrap();
        if !name.ends_with("_certs")
            || !name.starts_with("cert_chain.")
            || name.contains("fingerprint")
        {
            continue;
        }
        let chain: Vec<&str> = v["inputs"]["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        match chain_id_ca(&chain) {
            ChainCerts::Valid { leaf, id, ca } => {
                assert_eq!(*leaf, chain[0], "{name}");
                assert_eq!(*id, v["expected"]["id_cert"].as_str().unwrap(), "{name}");
                assert_eq!(*ca, v["expected"]["ca_cert"].as_str().unwrap(), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        n += 1;
    }
    assert_eq!(n, 3, "cert_chain.{{2,3,4}}_certs");
    // The rest of the table (no vectors): 0, 1 and 5 certificates.
    assert_eq!(chain_id_ca::<u8>(&[]), ChainCerts::Empty);
    assert_eq!(chain_id_ca(&[1]), ChainCerts::SelfSigned(&1));
    assert_eq!(chain_id_ca(&[1, 2, 3, 4, 5]), ChainCerts::TooLong);
}

#[test]
fn identity_fingerprint_vectors() {
    let mut n = 0;
    for v in vectors("addresses") {
        let name = v["name"].as_str().unwrap();
        if !name.starts_with("cert_chain.fingerprint") {
            continue;
        }
        let chain: Vec<Vec<u8>> = v["inputs"]["chain_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| hex::decode(c.as_str().unwrap()).unwrap())
            .collect();
        let ChainCerts::Valid { id, .. } = chain_id_ca(&chain) else {
            panic!("{name}: not a valid chain shape");
        };
        let want = v["expected"]["fingerprint_hex"].as_str().unwrap();
        assert_eq!(hex::encode(hush_crypto::fingerprint(id)), want, "{name}");
        // The pin check of verify_server_chain uses exactly this certificate: with the right
        // hash the (fake, non-DER) chain gets past the pin and fails only as malformed.
        let want = hex::decode(want).unwrap();
        assert_eq!(
            verify_server_chain(&chain, &want),
            Err(ChainError::Malformed),
            "{name}"
        );
        assert_eq!(
            verify_server_chain(&chain, &[0; 32]),
            Err(ChainError::UnknownCa),
            "{name}"
        );
        n += 1;
    }
    assert_eq!(n, 2);
}

/// The upstream CA fixtures (Ed448 `tests/fixtures/ca.crt`, Ed25519 `tests/fixtures/ed25519/ca.crt`)
/// as a 2-chain `[ca, ca]`: the pinned hash is SHA-256 of the whole DER and the self-signed CA
/// validates against itself.
#[test]
fn upstream_ca_fixtures_validate_and_pin() {
    let mut n = 0;
    for v in vectors("addresses") {
        let name = v["name"].as_str().unwrap();
        if !name.starts_with("server_identity.fixture_ca") {
            continue;
        }
        let ca = hex::decode(v["inputs"]["ca_cert_der_hex"].as_str().unwrap()).unwrap();
        let fp = hex::decode(v["expected"]["sha256_hex"].as_str().unwrap()).unwrap();
        let chain = vec![ca.clone(), ca];
        assert_eq!(verify_server_chain(&chain, &fp), Ok(()), "{name}");
        let mut wrong = fp.clone();
        wrong[31] ^= 0x80;
        assert_eq!(
            verify_server_chain(&chain, &wrong),
            Err(ChainError::UnknownCa),
            "{name}"
        );
        n += 1;
    }
    assert_eq!(n, 2);
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut b = X509NameBuilder::new().unwrap();
    b.append_entry_by_text("CN", cn).unwrap();
    b.build()
}

/// A certificate for `key` named `cn`, issued by (`issuer_cn`, `issuer_key`).
fn cert(
    cn: &str,
    key: &PKey<Private>,
    issuer_cn: &str,
    issuer_key: &PKey<Private>,
    ca: bool,
    days_from_now: (i64, i64),
) -> Vec<u8> {
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name(cn)).unwrap();
    b.set_issuer_name(&name(issuer_cn)).unwrap();
    b.set_pubkey(key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now + days_from_now.0 * 86400).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + days_from_now.1 * 86400).unwrap())
        .unwrap();
    let bc = if ca {
        BasicConstraints::new().critical().ca().build().unwrap()
    } else {
        BasicConstraints::new().build().unwrap()
    };
    b.append_extension(bc).unwrap();
    b.sign(issuer_key, MessageDigest::null()).unwrap();
    b.build().to_der().unwrap()
}

fn key() -> PKey<Private> {
    PKey::generate_ed25519().unwrap()
}

const VALID: (i64, i64) = (-1, 3650);

#[test]
fn two_cert_chain_from_hush_crypto() {
    for alg in [SignAlgorithm::Ed25519, SignAlgorithm::Ed448] {
        let ca = generate_ca(alg, "CA").unwrap();
        let leaf = generate_online_cert(&ca, alg, "leaf").unwrap();
        let fp = hush_crypto::fingerprint(&ca.cert_der);
        let chain = vec![leaf.cert_der.clone(), ca.cert_der.clone()];
        assert_eq!(verify_server_chain(&chain, &fp), Ok(()));
        // Too short / too long.
        assert_eq!(
            verify_server_chain(&chain[..1], &fp),
            Err(ChainError::TooShort(1))
        );
        assert_eq!(verify_server_chain(&[], &fp), Err(ChainError::TooShort(0)));
        let long = vec![chain[0].clone(); 5];
        assert_eq!(verify_server_chain(&long, &fp), Err(ChainError::TooLong(5)));
        // Pinning the leaf instead of the CA is an unknown CA.
        assert_eq!(
            verify_server_chain(&chain, &hush_crypto::fingerprint(&leaf.cert_der)),
            Err(ChainError::UnknownCa)
        );
        // A leaf from another CA, presented with this CA, is not issued by the identity (= CA)
        // certificate.
        let other = generate_ca(alg, "CA").unwrap();
        let stranger = generate_online_cert(&other, alg, "leaf").unwrap();
        let bad = vec![stranger.cert_der, ca.cert_der.clone()];
        assert_eq!(
            verify_server_chain(&bad, &fp),
            Err(ChainError::LeafNotIssuedByIdentity)
        );
        // Client side: a service chain [leaf, CA] validates; an empty chain is fine.
        assert_eq!(verify_client_chain(&chain), Ok(()));
        assert_eq!(verify_client_chain(&[]), Ok(()));
    }
}

#[test]
fn three_and_four_cert_chains() {
    let (k_ca, k_net, k_id, k_leaf) = (key(), key(), key(), key());
    // 3: leaf ← id ← ca
    let ca = cert("ca", &k_ca, "ca", &k_ca, true, VALID);
    let id = cert("id", &k_id, "ca", &k_ca, true, VALID);
    let leaf = cert("leaf", &k_leaf, "id", &k_id, false, VALID);
    let chain3 = vec![leaf.clone(), id.clone(), ca.clone()];
    let fp_id = hush_crypto::fingerprint(&id);
    assert_eq!(verify_server_chain(&chain3, &fp_id), Ok(()));
    // The identity is the 2nd certificate, not the CA.
    assert_eq!(
        verify_server_chain(&chain3, &hush_crypto::fingerprint(&ca)),
        Err(ChainError::UnknownCa)
    );
    // 4: leaf ← id ← network ← ca; the 3rd certificate is not an anchor.
    let net = cert("net", &k_net, "ca", &k_ca, true, VALID);
    let id4 = cert("id", &k_id, "net", &k_net, true, VALID);
    let leaf4 = cert("leaf", &k_leaf, "id", &k_id, false, VALID);
    let chain4 = vec![leaf4, id4.clone(), net, ca.clone()];
    assert_eq!(
        verify_server_chain(&chain4, &hush_crypto::fingerprint(&id4)),
        Ok(())
    );
    // A 4-chain whose last certificate is not the root: the network certificate (3rd) is not
    // issued by it.
    let wrong_root = cert("other", &key(), "other", &key(), true, VALID);
    let mut bad4 = chain4.clone();
    bad4[3] = wrong_root;
    assert_eq!(
        verify_server_chain(&bad4, &hush_crypto::fingerprint(&id4)),
        Err(ChainError::IdentityNotChainedToCa(2))
    );
    // Each certificate must be issued by the next one: a 4-chain with the network certificate
    // left out of the path (identity issued directly by the CA) is refused.
    let skip = vec![leaf.clone(), id.clone(), chain4[2].clone(), ca.clone()];
    assert_eq!(
        verify_server_chain(&skip, &fp_id),
        Err(ChainError::IdentityNotChainedToCa(1))
    );
    // A 3-chain whose identity is issued by a CA that is not the last certificate.
    let wrong_ca = cert("ca", &key(), "ca", &key(), true, VALID);
    assert_eq!(
        verify_server_chain(&[leaf, id, wrong_ca], &fp_id),
        Err(ChainError::IdentityNotChainedToCa(1))
    );
}

#[test]
fn validity_dates_are_checked() {
    let (k_ca, k_leaf) = (key(), key());
    let ca = cert("ca", &k_ca, "ca", &k_ca, true, VALID);
    let expired = cert("leaf", &k_leaf, "ca", &k_ca, false, (-10, -1));
    let future = cert("leaf", &k_leaf, "ca", &k_ca, false, (1, 10));
    let fp = hush_crypto::fingerprint(&ca);
    for leaf in [expired, future] {
        let r = verify_server_chain(&[leaf, ca.clone()], &fp);
        assert!(matches!(r, Err(ChainError::Invalid(_))), "{r:?}");
    }
    let ok = cert("leaf", &k_leaf, "ca", &k_ca, false, VALID);
    assert_eq!(verify_server_chain(&[ok, ca], &fp), Ok(()));
}

#[test]
fn client_chain_rules() {
    let k = key();
    let self_signed = cert("svc", &k, "svc", &k, true, VALID);
    assert_eq!(
        verify_client_chain(std::slice::from_ref(&self_signed)),
        Ok(())
    );
    let other = key();
    let not_self = cert("svc", &k, "x", &other, false, VALID);
    assert!(matches!(
        verify_client_chain(&[not_self]),
        Err(ChainError::Invalid(_))
    ));
    assert_eq!(
        verify_client_chain(&vec![self_signed; 5]),
        Err(ChainError::TooLong(5))
    );
    assert_eq!(
        verify_client_chain(&[b"not der".to_vec()]),
        Err(ChainError::Malformed)
    );
    let _ = X509::from_der(&cert("a", &k, "a", &k, true, VALID)).unwrap();
}
