//! Forged certificate chains over real TLS sockets on 127.0.0.1.
//!
//! A man in the middle who copied a relay's identity certificate (it is public: every relay
//! sends it) presents `[own leaf, real identity certificate, own CA]`. The pin (SHA-256 of the
//! 2nd certificate) matches and the leaf validates against the last certificate, so the
//! reference's check (and ours before this fix) accepted it. The leaf must be issued by the
//! pinned identity certificate, and the identity certificate must chain up to the CA.
//! The same holds for service (client) certificates, whose identity fingerprint is the
//! service's identity on the relay.

use std::sync::Arc;

use hush_crypto::SignAlgorithm;
use hush_proto::handshake::ServiceRole;
use hush_transport::tls::{verify_client_chain, verify_server_chain};
use hush_transport::{
    ChainError, ClientCertificate, ClientConfig, ServerConnection, ServerIdentity,
    ServiceCredentials, ServiceRegistrar, ServiceRequest, TransportClient, TransportError,
    TransportServer,
};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::BasicConstraints;
use openssl::x509::{X509Builder, X509NameBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// (description, presented chain, pinned fingerprint, expected error).
type ServerCase = (&'static str, Vec<Vec<u8>>, [u8; 32], ChainError);

/// What the client and the server side of one connection ended with.
type Outcome = (
    Result<(), TransportError>,
    Result<ServerConnection, TransportError>,
);

fn key() -> PKey<Private> {
    PKey::generate_ed25519().unwrap()
}

/// A certificate for `key` named `cn`, with issuer name `issuer_cn`, signed by `issuer_key`
/// (which need not belong to the named issuer: that is how forgeries are made).
fn cert(
    cn: &str,
    key: &PKey<Private>,
    issuer_cn: &str,
    issuer_key: &PKey<Private>,
    ca: bool,
) -> Vec<u8> {
    let name = |cn: &str| {
        let mut b = X509NameBuilder::new().unwrap();
        b.append_entry_by_text("CN", cn).unwrap();
        b.build()
    };
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name(cn)).unwrap();
    b.set_issuer_name(&name(issuer_cn)).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(3650).unwrap())
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

/// One party's genuine PKI: CA ← network cert ← identity cert (4-chain) and CA ← identity
/// cert (3-chain), leaves under each identity certificate, and a plain `[leaf, CA]` 2-chain.
struct Pki {
    ca: Vec<u8>,
    net: Vec<u8>,
    /// Identity certificate issued by the CA (3-chain).
    id3: Vec<u8>,
    leaf3: Vec<u8>,
    /// Identity certificate issued by the network certificate (4-chain).
    id4: Vec<u8>,
    leaf4: Vec<u8>,
    leaf_key: PKey<Private>,
    /// `[leaf, CA]` made by hush-crypto (what `smp-server init` creates).
    two: hush_crypto::ServerIdentity,
}

impl Pki {
    fn new(prefix: &str) -> Self {
        let (k_ca, k_net, k_id, leaf_key) = (key(), key(), key(), key());
        let n = |s: &str| format!("{prefix} {s}");
        let ca = cert(&n("CA"), &k_ca, &n("CA"), &k_ca, true);
        let net = cert(&n("network"), &k_net, &n("CA"), &k_ca, true);
        let id3 = cert(&n("identity"), &k_id, &n("CA"), &k_ca, true);
        let leaf3 = cert(&n("leaf"), &leaf_key, &n("identity"), &k_id, false);
        let id4 = cert(&n("identity"), &k_id, &n("network"), &k_net, true);
        let leaf4 = cert(&n("leaf"), &leaf_key, &n("identity"), &k_id, false);
        let two =
            hush_crypto::ServerIdentity::generate(SignAlgorithm::Ed25519, "localhost").unwrap();
        Pki {
            ca,
            net,
            id3,
            leaf3,
            id4,
            leaf4,
            leaf_key,
            two,
        }
    }

    fn chain2(&self) -> Vec<Vec<u8>> {
        self.two.chain_der()
    }

    fn chain3(&self) -> Vec<Vec<u8>> {
        vec![self.leaf3.clone(), self.id3.clone(), self.ca.clone()]
    }

    fn chain4(&self) -> Vec<Vec<u8>> {
        vec![
            self.leaf4.clone(),
            self.id4.clone(),
            self.net.clone(),
            self.ca.clone(),
        ]
    }
}

/// The attacker's own PKI: a CA, a network certificate and a leaf issued by each, plus a
/// self-signed leaf and a leaf that names the victim's identity certificate as its issuer but
/// is signed with the attacker's key.
struct Attacker {
    key: PKey<Private>,
    ca: Vec<u8>,
    net: Vec<u8>,
    /// Issued by `ca`.
    leaf: Vec<u8>,
    /// Issued by `net`.
    leaf_under_net: Vec<u8>,
    self_signed: Vec<u8>,
    /// Issuer name = the victim's identity certificate subject, signature by the attacker.
    fake_issuer: Vec<u8>,
}

impl Attacker {
    fn new() -> Self {
        let (k_ca, k_net, key) = (key(), key(), key());
        let ca = cert("attacker CA", &k_ca, "attacker CA", &k_ca, true);
        let net = cert("attacker network", &k_net, "attacker CA", &k_ca, true);
        let leaf = cert("localhost", &key, "attacker CA", &k_ca, false);
        let leaf_under_net = cert("localhost", &key, "attacker network", &k_net, false);
        let self_signed = cert("localhost", &key, "localhost", &key, true);
        let fake_issuer = cert("localhost", &key, "relay identity", &key, false);
        Attacker {
            key,
            ca,
            net,
            leaf,
            leaf_under_net,
            self_signed,
            fake_issuer,
        }
    }
}

/// Starts a server presenting `chain` (its leaf's key is `key`) that accepts one connection.
async fn serve_chain(
    chain: Vec<Vec<u8>>,
    key: PKey<Private>,
    registrar: Option<ServiceRegistrar>,
) -> (
    std::net::SocketAddr,
    JoinHandle<Result<ServerConnection, TransportError>>,
) {
    let identity = ServerIdentity::from_chain(chain, key).unwrap();
    let mut server = TransportServer::smp(identity).unwrap();
    if let Some(r) = registrar {
        server = server.with_service_registrar(r);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        server.accept(tcp).await
    });
    (addr, h)
}

/// Connects an ordinary SMP client pinning `fp` to a server presenting `chain`.
async fn connect_to(chain: Vec<Vec<u8>>, key: PKey<Private>, fp: &[u8; 32]) -> Outcome {
    let (addr, h) = serve_chain(chain, key, None).await;
    let client = TransportClient::smp()
        .unwrap()
        .connect_addr(addr, fp)
        .await
        .map(|_| ());
    (client, h.await.unwrap())
}

fn fp(der: &[u8]) -> [u8; 32] {
    hush_crypto::fingerprint(der)
}

/// Asserts the client refused the server chain with `want` inside the TLS handshake.
fn assert_server_refused(r: Outcome, want: ChainError, case: &str) {
    let (client, server) = r;
    match client {
        Err(TransportError::ServerChain(e)) if e == want => {}
        other => panic!("{case}: expected ServerChain({want:?}), got {other:?}"),
    }
    // The client aborted the TLS handshake with an alert: the server never got a session.
    assert!(
        matches!(&server, Err(TransportError::Tls(_))),
        "{case}: server side {:?}",
        server.as_ref().map(|_| ())
    );
}

#[tokio::test]
async fn forged_server_chains_are_refused_by_the_client() {
    let relay = Pki::new("relay");
    let att = Attacker::new();
    let leaf_err = ChainError::LeafNotIssuedByIdentity;
    let cases: Vec<ServerCase> = vec![
        (
            "3 certs: attacker leaf, real identity, attacker CA",
            vec![att.leaf.clone(), relay.id3.clone(), att.ca.clone()],
            fp(&relay.id3),
            leaf_err.clone(),
        ),
        (
            "4 certs: attacker leaf, real identity, real network cert, attacker CA",
            vec![
                att.leaf.clone(),
                relay.id4.clone(),
                relay.net.clone(),
                att.ca.clone(),
            ],
            fp(&relay.id4),
            leaf_err.clone(),
        ),
        (
            "4 certs: attacker leaf, real identity, attacker network cert, attacker CA",
            vec![
                att.leaf_under_net.clone(),
                relay.id4.clone(),
                att.net.clone(),
                att.ca.clone(),
            ],
            fp(&relay.id4),
            leaf_err.clone(),
        ),
        (
            "3 certs: self-signed attacker leaf, real identity, real CA",
            vec![att.self_signed.clone(), relay.id3.clone(), relay.ca.clone()],
            fp(&relay.id3),
            leaf_err.clone(),
        ),
        (
            "3 certs: attacker-signed leaf naming the real identity, real identity, real CA",
            vec![att.fake_issuer.clone(), relay.id3.clone(), relay.ca.clone()],
            fp(&relay.id3),
            leaf_err.clone(),
        ),
        (
            "3 certs: leaf signed by the attacker CA (not sent), real identity, real CA",
            vec![att.leaf.clone(), relay.id3.clone(), relay.ca.clone()],
            fp(&relay.id3),
            leaf_err.clone(),
        ),
        (
            "2 certs: attacker leaf, real identity = CA",
            vec![att.leaf.clone(), relay.two.ca_cert_der.clone()],
            relay.two.fingerprint,
            leaf_err.clone(),
        ),
        (
            "3 certs: real leaf and identity, attacker CA",
            vec![relay.leaf3.clone(), relay.id3.clone(), att.ca.clone()],
            fp(&relay.id3),
            ChainError::IdentityNotChainedToCa(1),
        ),
        (
            "4 certs: real leaf and identity, attacker network cert, real CA",
            vec![
                relay.leaf4.clone(),
                relay.id4.clone(),
                att.net.clone(),
                relay.ca.clone(),
            ],
            fp(&relay.id4),
            ChainError::IdentityNotChainedToCa(1),
        ),
    ];
    for (case, chain, pin, want) in cases {
        // Same verdict from the function itself and over a real TLS connection.
        assert_eq!(
            verify_server_chain(&chain, &pin),
            Err(want.clone()),
            "{case}"
        );
        // The leaf key is the attacker's except where the real relay leaf is sent.
        let key = if chain[0] == relay.leaf3 || chain[0] == relay.leaf4 {
            relay.leaf_key.clone()
        } else {
            att.key.clone()
        };
        let r = connect_to(chain, key, &pin).await;
        assert_server_refused(r, want, case);
    }
    // The error says what went wrong.
    assert_eq!(
        ChainError::LeafNotIssuedByIdentity.to_string(),
        "leaf certificate is not issued by the pinned identity certificate"
    );
    assert_eq!(
        ChainError::IdentityNotChainedToCa(1).to_string(),
        "identity certificate does not chain to the CA: certificate 2 is not issued by certificate 3"
    );
}

#[tokio::test]
async fn genuine_server_chains_are_accepted() {
    let relay = Pki::new("relay");
    // 2 certificates for both algorithms, as `smp-server init` makes them.
    for alg in [SignAlgorithm::Ed25519, SignAlgorithm::Ed448] {
        let two = hush_crypto::ServerIdentity::generate(alg, "localhost").unwrap();
        let chain = two.chain_der();
        assert_eq!(verify_server_chain(&chain, &two.fingerprint), Ok(()));
        let (c, s) = connect_to(chain, two.online.key.clone(), &two.fingerprint).await;
        c.unwrap();
        s.unwrap();
    }
    for (chain, pin) in [
        (relay.chain3(), fp(&relay.id3)),
        (relay.chain4(), fp(&relay.id4)),
    ] {
        assert_eq!(verify_server_chain(&chain, &pin), Ok(()));
        let (c, s) = connect_to(chain, relay.leaf_key.clone(), &pin).await;
        c.unwrap();
        let s = s.unwrap();
        assert!(s.client_cert_chain().is_empty());
    }
}

/// A registrar that hands out the first 24 bytes of the service's identity fingerprint.
fn registrar() -> ServiceRegistrar {
    Arc::new(|req: ServiceRequest| Box::pin(async move { Ok(req.cert_hash[..24].to_vec()) }))
}

/// A service (client certificate `chain`, leaf key `key`) connecting to a genuine relay.
async fn service_connect(chain: Vec<Vec<u8>>, key: PKey<Private>) -> Outcome {
    let relay = hush_crypto::ServerIdentity::generate(SignAlgorithm::Ed25519, "localhost").unwrap();
    let (addr, h) = serve_chain(
        relay.chain_der(),
        relay.online.key.clone(),
        Some(registrar()),
    )
    .await;
    let creds = ServiceCredentials {
        role: ServiceRole::Notifier,
        cert: ClientCertificate { chain, key },
    };
    let client = TransportClient::smp_service(ClientConfig::smp(), creds)
        .unwrap()
        .connect_addr(addr, &relay.fingerprint)
        .await
        .map(|_| ());
    (client, h.await.unwrap())
}

#[tokio::test]
async fn forged_service_chains_are_refused_by_the_server() {
    let service = Pki::new("service");
    let att = Attacker::new();
    let leaf_err = ChainError::LeafNotIssuedByIdentity;
    let cases: Vec<(&str, Vec<Vec<u8>>, ChainError)> = vec![
        (
            "3 certs: attacker leaf, real service identity, attacker CA",
            vec![att.leaf.clone(), service.id3.clone(), att.ca.clone()],
            leaf_err.clone(),
        ),
        (
            "4 certs: attacker leaf, real identity, real network cert, attacker CA",
            vec![
                att.leaf.clone(),
                service.id4.clone(),
                service.net.clone(),
                att.ca.clone(),
            ],
            leaf_err.clone(),
        ),
        (
            "4 certs: attacker leaf, real identity, attacker network cert, attacker CA",
            vec![
                att.leaf_under_net.clone(),
                service.id4.clone(),
                att.net.clone(),
                att.ca.clone(),
            ],
            leaf_err.clone(),
        ),
        (
            "3 certs: self-signed attacker leaf, real identity, real CA",
            vec![
                att.self_signed.clone(),
                service.id3.clone(),
                service.ca.clone(),
            ],
            leaf_err.clone(),
        ),
        (
            "3 certs: attacker-signed leaf, real identity, real CA",
            vec![att.leaf.clone(), service.id3.clone(), service.ca.clone()],
            leaf_err.clone(),
        ),
        (
            "2 certs: attacker leaf, real identity = CA",
            vec![att.leaf.clone(), service.two.ca_cert_der.clone()],
            leaf_err.clone(),
        ),
        (
            "4 certs: real leaf and identity, attacker network cert, real CA",
            vec![
                service.leaf4.clone(),
                service.id4.clone(),
                att.net.clone(),
                service.ca.clone(),
            ],
            ChainError::IdentityNotChainedToCa(1),
        ),
    ];
    for (case, chain, want) in cases {
        assert_eq!(verify_client_chain(&chain), Err(want.clone()), "{case}");
        // The leaf key is the attacker's except in the last case (the real service leaf).
        let key = if chain[0] == service.leaf4 {
            service.leaf_key.clone()
        } else {
            att.key.clone()
        };
        let (client, server) = service_connect(chain, key).await;
        match server {
            Err(TransportError::ClientChain(e)) if e == want => {}
            other => panic!(
                "{case}: expected ClientChain({want:?}), got {:?}",
                other.map(|_| ())
            ),
        }
        assert!(client.is_err(), "{case}: the service got a session");
    }
}

#[tokio::test]
async fn genuine_service_chains_are_accepted() {
    let service = Pki::new("service");
    let two_ca = service.two.ca_cert_der.clone();
    for (chain, key, id) in [
        (service.chain2(), service.two.online.key.clone(), two_ca),
        (
            service.chain3(),
            service.leaf_key.clone(),
            service.id3.clone(),
        ),
        (
            service.chain4(),
            service.leaf_key.clone(),
            service.id4.clone(),
        ),
    ] {
        assert_eq!(verify_client_chain(&chain), Ok(()));
        let n = chain.len();
        let (client, server) = service_connect(chain, key).await;
        client.unwrap();
        let server = server.unwrap();
        assert_eq!(server.client_cert_chain().len(), n);
        let ps = server.service().unwrap();
        // The service is identified by its identity certificate (2nd).
        assert_eq!(ps.cert_hash, fp(&id));
        assert_eq!(ps.service_id, fp(&id)[..24].to_vec());
    }
}

/// Also the non-service path: any TLS client that presents a certificate chain is checked
/// right after the TLS handshake, before the hellos.
#[tokio::test]
async fn forged_client_certificate_without_service_is_refused() {
    let service = Pki::new("client");
    let att = Attacker::new();
    let relay = hush_crypto::ServerIdentity::generate(SignAlgorithm::Ed25519, "localhost").unwrap();
    let (addr, h) = serve_chain(relay.chain_der(), relay.online.key.clone(), None).await;
    let cc = ClientCertificate {
        chain: vec![att.leaf.clone(), service.id3.clone(), att.ca.clone()],
        key: att.key.clone(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = hush_transport::tls::TlsClient::new(Some(&cc))
        .unwrap()
        .connect(
            tcp,
            hush_transport::tls::SMP_CLIENT_ALPN,
            &relay.fingerprint,
        )
        .await;
    // The client's TLS handshake completes (the server does not refuse inside TLS) ...
    let _tls = tls.unwrap();
    // ... and the server drops the connection with the clear error.
    match h.await.unwrap() {
        Err(TransportError::ClientChain(ChainError::LeafNotIssuedByIdentity)) => {}
        other => panic!("{:?}", other.map(|_| ())),
    }
}
