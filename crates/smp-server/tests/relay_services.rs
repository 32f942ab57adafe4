//! Service certificates (SMP v16, reference `Server.hs` `verifyQueueTransmission`,
//! `subscribeNotifications`, `subscribeServiceNotifications`): the service handshake over real
//! TLS with a client certificate, NEW/SUB/NSUB signed in a service session associating queues
//! with the service, `NSUBS` subscribing all of them in one command (`SOKS n`), `ENDS n` on
//! takeover, and the misuse errors.

mod common;

use std::time::Duration;

use common::*;
use hush_crypto::{SignAlgorithm, X25519Public, generate_ca, generate_online_cert};
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::handshake::ServiceRole;
use hush_proto::smp::{BrokerMsg, Command};
use hush_proto::transmission::{Transmission, authorized_bytes, encode_transmission};
use hush_transport::{ClientCertificate, ClientConfig, ServiceCredentials, TransportClient};
use smp_server::server::RelayOptions;

async fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let s = TestServer::start_with(test_config(&paths), RelayOptions::default()).await;
    (dir, s)
}

/// A service certificate: (chain leaf + CA, leaf key) and the CA's fingerprint.
#[derive(Clone)]
struct Cert {
    chain: Vec<Vec<u8>>,
    key: openssl::pkey::PKey<openssl::pkey::Private>,
}

fn service_cert() -> Cert {
    let ca = generate_ca(SignAlgorithm::Ed25519, "ntf service CA").unwrap();
    let leaf = generate_online_cert(&ca, SignAlgorithm::Ed25519, "ntf service").unwrap();
    Cert {
        chain: vec![leaf.cert_der, ca.cert_der],
        key: leaf.key,
    }
}

async fn try_connect_service(
    s: &TestServer,
    cert: &Cert,
    role: ServiceRole,
) -> Result<TestClient, hush_transport::TransportError> {
    let creds = ServiceCredentials {
        role,
        cert: ClientCertificate {
            chain: cert.chain.clone(),
            key: cert.key.clone(),
        },
    };
    let conn = TransportClient::smp_service(ClientConfig::smp(), creds)?
        .connect_addr(s.addr, &s.key_hash)
        .await?;
    Ok(TestClient::from_conn(conn))
}

async fn connect_service(s: &TestServer, cert: &Cert, role: ServiceRole) -> TestClient {
    let c = try_connect_service(s, cert, role).await.unwrap();
    assert_eq!(c.version(), 18);
    assert!(c.conn.service().is_some(), "service session");
    c
}

fn service_id(c: &TestClient) -> Vec<u8> {
    c.conn.service().unwrap().service_id.clone()
}

/// A queue command signed in a service session: the entity key signs
/// `certHash ‖ authorized`, the service key signs `authorized` (the service slot).
/// `service_sig: false` leaves the slot empty (to test misuse).
async fn service_signed(
    c: &mut TestClient,
    key: &AuthKey,
    entity: &[u8],
    cmd: Command,
    service_sig: bool,
) -> BrokerMsg {
    let corr = random_corr();
    let command = cmd.encode(c.version());
    let authorized = authorized_bytes(c.conn.session_id(), &corr, entity, &command);
    let svc = c.conn.service().unwrap().clone();
    let mut with_cert = svc.cert_hash.to_vec();
    with_cert.extend_from_slice(&authorized);
    let server_key: X25519Public = *c.conn.server_session_key().unwrap();
    let (auth, sig) = if service_sig {
        (
            key.authorize(&with_cert, &corr, &server_key),
            Some(svc.key.sign(&authorized)),
        )
    } else {
        (key.authorize(&authorized, &corr, &server_key), None)
    };
    let t = Transmission {
        authorization: &auth,
        service_sig: sig.as_ref().map(|s| &s[..]),
        corr_id: &corr,
        entity_id: entity,
        command: &command,
        ..Default::default()
    };
    let mut bytes = Vec::new();
    encode_transmission(&mut bytes, &t, c.version(), true).unwrap();
    c.send_raw(vec![bytes]).await;
    c.response_to(&corr).await
}

/// `SUBS` / `NSUBS`: signed by the service key alone, entity = `entity`.
async fn service_command(c: &mut TestClient, entity: &[u8], cmd: Command) -> BrokerMsg {
    let corr = random_corr();
    let command = cmd.encode(c.version());
    let authorized = authorized_bytes(c.conn.session_id(), &corr, entity, &command);
    let sig = c.conn.service().unwrap().key.sign(&authorized);
    let t = Transmission {
        authorization: &sig,
        service_sig: None,
        corr_id: &corr,
        entity_id: entity,
        command: &command,
        ..Default::default()
    };
    let mut bytes = Vec::new();
    encode_transmission(&mut bytes, &t, c.version(), true).unwrap();
    c.send_raw(vec![bytes]).await;
    c.response_to(&corr).await
}

/// A queue with notifier credentials (`NKEY` by its recipient): (queue, notifier key,
/// notifier id, rcv ntf DH secret).
async fn ntf_queue(r: &mut TestClient) -> (Queue, AuthKey, Vec<u8>, hush_crypto::DhSecret) {
    let q = new_queue(r).await;
    let nk = AuthKey::ed25519();
    let dh = hush_crypto::X25519Secret::generate();
    let m = r
        .cmd(
            Some(&q.rcv_key),
            &q.rcv_id,
            Command::NKey {
                notifier_key: nk.public_der(),
                rcv_ntf_dh_key: dh_der(&dh),
            },
        )
        .await;
    let BrokerMsg::Nid {
        notifier_id,
        srv_ntf_dh_key,
    } = m
    else {
        panic!("{m:?}")
    };
    let secret = dh.dh(&X25519Public::from_spki_der(srv_ntf_dh_key.as_bytes()).unwrap());
    (q, nk, notifier_id.as_bytes().to_vec(), secret)
}

fn sok(sid: &[u8]) -> BrokerMsg {
    BrokerMsg::Sok(Some(ss(sid)))
}

/// Receives `n` events, in any order.
async fn events(c: &mut TestClient, n: usize) -> Vec<(Vec<u8>, BrokerMsg)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            tokio::time::timeout(Duration::from_secs(10), c.event())
                .await
                .expect("event"),
        );
    }
    out
}

#[tokio::test]
async fn service_handshake_gives_a_stable_id_per_certificate() {
    let (_d, s) = server().await;
    let cert = service_cert();
    let a = connect_service(&s, &cert, ServiceRole::Notifier).await;
    let b = connect_service(&s, &cert, ServiceRole::Notifier).await;
    assert_eq!(service_id(&a).len(), 24);
    assert_eq!(service_id(&a), service_id(&b));
    // Another certificate: another service.
    let other = connect_service(&s, &service_cert(), ServiceRole::Notifier).await;
    assert_ne!(service_id(&a), service_id(&other));
    // The same certificate in another role is refused in the handshake (BAD_SERVICE).
    let refused = try_connect_service(&s, &cert, ServiceRole::Messaging).await;
    assert!(refused.is_err(), "role change accepted");
    // A plain client on the same relay still works, and gets ERR SERVICE for SUBS/NSUBS.
    let mut plain = s.connect().await;
    assert!(plain.conn.service().is_none());
    let k = AuthKey::ed25519();
    for cmd in [Command::NSubs, Command::Subs] {
        assert_err(
            &plain.cmd(Some(&k), &service_id(&a), cmd).await,
            ErrorType::Service,
        );
    }
    s.stop().await;
}

/// The service id and the associations survive a relay restart.
#[tokio::test]
async fn service_id_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let cert = service_cert();
    let s = TestServer::start(test_config(&paths)).await;
    let mut a = connect_service(&s, &cert, ServiceRole::Notifier).await;
    let id1 = service_id(&a);
    let mut r = s.connect().await;
    let (_, nk1, nid1, _) = ntf_queue(&mut r).await;
    let (_, nk2, nid2, _) = ntf_queue(&mut r).await;
    for (nk, nid) in [(&nk1, &nid1), (&nk2, &nid2)] {
        assert_eq!(
            service_signed(&mut a, nk, nid, Command::NSub, true).await,
            sok(&id1)
        );
    }
    drop((a, r));
    s.stop().await;
    // After a restart: same id, the associations are still there, and a plain NSUB still
    // removes one (the store knows associations exist).
    let s = TestServer::start(test_config(&paths)).await;
    let mut b = connect_service(&s, &cert, ServiceRole::Notifier).await;
    assert_eq!(service_id(&b), id1);
    assert_eq!(
        service_command(&mut b, &id1, Command::NSubs).await,
        BrokerMsg::Soks(2)
    );
    let mut plain = s.connect().await;
    assert_eq!(
        plain.cmd(Some(&nk1), &nid1, Command::NSub).await,
        BrokerMsg::Sok(None)
    );
    assert_eq!(b.event().await, (nid1.clone(), BrokerMsg::End));
    let mut c = connect_service(&s, &cert, ServiceRole::Notifier).await;
    assert_eq!(
        service_command(&mut c, &id1, Command::NSubs).await,
        BrokerMsg::Soks(1)
    );
    s.stop().await;
}

#[tokio::test]
async fn nsub_associates_and_nsubs_subscribes_all_with_nmsg_for_each() {
    let (_d, s) = server().await;
    let cert = service_cert();
    let mut r = s.connect().await;
    let mut snd = s.connect().await;
    let mut queues = Vec::new();
    for _ in 0..5 {
        queues.push(ntf_queue(&mut r).await);
    }
    // Associate: NSUB signed in the service session → SOK serviceId.
    let mut n1 = connect_service(&s, &cert, ServiceRole::Notifier).await;
    let sid = service_id(&n1);
    for (_, nk, nid, _) in &queues {
        assert_eq!(
            service_signed(&mut n1, nk, nid, Command::NSub, true).await,
            sok(&sid)
        );
        // Again (a retried NSUB): still SOK serviceId.
        assert_eq!(
            service_signed(&mut n1, nk, nid, Command::NSub, true).await,
            sok(&sid)
        );
    }
    drop(n1);
    // A later session subscribes all five with one NSUBS.
    let mut n2 = connect_service(&s, &cert, ServiceRole::Notifier).await;
    assert_eq!(
        service_command(&mut n2, &sid, Command::NSubs).await,
        BrokerMsg::Soks(5)
    );
    // Repeated on the same connection: the same count, nothing read again.
    assert_eq!(
        service_command(&mut n2, &sid, Command::NSubs).await,
        BrokerMsg::Soks(5)
    );
    for (q, _, _, _) in &queues {
        assert_eq!(
            snd.cmd(None, &q.snd_id, send_cmd(b"hello", true)).await,
            BrokerMsg::Ok
        );
    }
    let got = events(&mut n2, 5).await;
    for (q, _, nid, secret) in &queues {
        let (_, m) = got.iter().find(|(e, _)| e == nid).expect("NMSG for each");
        let BrokerMsg::NMsg { nonce, enc_meta } = m else {
            panic!("{m:?}")
        };
        hush_crypto::decrypt_nmsg_meta(secret, nonce, enc_meta.as_bytes()).unwrap();
        let _ = q;
    }
    s.stop().await;
}

#[tokio::test]
async fn nsubs_takeover_sends_ends_and_plain_nsub_leaves_the_service() {
    let (_d, s) = server().await;
    let cert = service_cert();
    let mut r = s.connect().await;
    let mut queues = Vec::new();
    for _ in 0..4 {
        queues.push(ntf_queue(&mut r).await);
    }
    let mut a = connect_service(&s, &cert, ServiceRole::Notifier).await;
    let sid = service_id(&a);
    for (_, nk, nid, _) in &queues {
        assert_eq!(
            service_signed(&mut a, nk, nid, Command::NSub, true).await,
            sok(&sid)
        );
    }
    assert_eq!(
        service_command(&mut a, &sid, Command::NSubs).await,
        BrokerMsg::Soks(4)
    );
    // Another connection of the same service takes it over: A gets one ENDS 4 (entity =
    // service id), not an END per queue.
    let mut b = connect_service(&s, &cert, ServiceRole::Notifier).await;
    assert_eq!(
        service_command(&mut b, &sid, Command::NSubs).await,
        BrokerMsg::Soks(4)
    );
    assert_eq!(a.event().await, (sid.clone(), BrokerMsg::Ends(4)));
    a.expect_nothing(Duration::from_millis(300)).await;
    // A plain NSUB of one queue (outside any service session) removes it from the service:
    // B gets END for it, the queue answers SOK without id.
    let (_, nk0, nid0, _) = &queues[0];
    let mut plain = s.connect().await;
    assert_eq!(
        plain.cmd(Some(nk0), nid0, Command::NSub).await,
        BrokerMsg::Sok(None)
    );
    assert_eq!(b.event().await, (nid0.clone(), BrokerMsg::End));
    // The service now has 3 queues.
    let mut c = connect_service(&s, &cert, ServiceRole::Notifier).await;
    assert_eq!(
        service_command(&mut c, &sid, Command::NSubs).await,
        BrokerMsg::Soks(3)
    );
    assert_eq!(b.event().await, (sid.clone(), BrokerMsg::Ends(3)));
    s.stop().await;
}

/// A deleted notifier (NDEL) leaves the service; its subscriber gets DELD.
#[tokio::test]
async fn ndel_removes_the_association() {
    let (_d, s) = server().await;
    let cert = service_cert();
    let mut r = s.connect().await;
    let (q1, nk1, nid1, _) = ntf_queue(&mut r).await;
    let (_q2, nk2, nid2, _) = ntf_queue(&mut r).await;
    let mut a = connect_service(&s, &cert, ServiceRole::Notifier).await;
    let sid = service_id(&a);
    assert_eq!(
        service_signed(&mut a, &nk1, &nid1, Command::NSub, true).await,
        sok(&sid)
    );
    assert_eq!(
        service_signed(&mut a, &nk2, &nid2, Command::NSub, true).await,
        sok(&sid)
    );
    assert_eq!(
        r.cmd(Some(&q1.rcv_key), &q1.rcv_id, Command::NDel).await,
        BrokerMsg::Ok
    );
    assert_eq!(a.event().await, (nid1.clone(), BrokerMsg::Deld));
    let mut b = connect_service(&s, &cert, ServiceRole::Notifier).await;
    assert_eq!(
        service_command(&mut b, &sid, Command::NSubs).await,
        BrokerMsg::Soks(1)
    );
    // A held 2 queues, one was deleted: its ENDS counts 1.
    assert_eq!(a.event().await, (sid.clone(), BrokerMsg::Ends(1)));
    s.stop().await;
}

/// Misuse in a notifier service session gives the reference's errors.
#[tokio::test]
async fn notifier_service_session_rules() {
    let (_d, s) = server().await;
    let cert = service_cert();
    let mut r = s.connect().await;
    let (q, nk, nid, _) = ntf_queue(&mut r).await;
    let mut n = connect_service(&s, &cert, ServiceRole::Notifier).await;
    let sid = service_id(&n);
    // NSUB without the service signature in a service session: ERR SERVICE.
    assert_err(
        &service_signed(&mut n, &nk, &nid, Command::NSub, false).await,
        ErrorType::Service,
    );
    // A wrong entity key with a valid service signature: AUTH.
    assert_err(
        &service_signed(&mut n, &AuthKey::ed25519(), &nid, Command::NSub, true).await,
        ErrorType::Auth,
    );
    // Messaging commands in a notifier session: CMD PROHIBITED (role check first).
    assert_err(
        &n.cmd(None, &q.snd_id, send_cmd(b"x", false)).await,
        ErrorType::Cmd(CommandError::Prohibited),
    );
    assert_err(
        &service_command(&mut n, &sid, Command::Subs).await,
        ErrorType::Cmd(CommandError::Prohibited),
    );
    // NSUBS naming another entity, or signed by another key: ERR SERVICE.
    assert_err(
        &service_command(&mut n, &[7; 24], Command::NSubs).await,
        ErrorType::Service,
    );
    assert_err(
        &n.cmd(Some(&AuthKey::ed25519()), &sid, Command::NSubs).await,
        ErrorType::Service,
    );
    // PING is anyone's.
    assert_eq!(n.cmd(None, &[], Command::Ping).await, BrokerMsg::Pong);
    // Still usable: a correct NSUB.
    assert_eq!(
        service_signed(&mut n, &nk, &nid, Command::NSub, true).await,
        sok(&sid)
    );
    // A plain session cannot use a service signature.
    let mut plain = s.connect().await;
    let corr = random_corr();
    let command = Command::NSub.encode(18);
    let authorized = authorized_bytes(plain.conn.session_id(), &corr, &nid, &command);
    let server_key = *plain.conn.server_session_key().unwrap();
    let auth = nk.authorize(&authorized, &corr, &server_key);
    let t = Transmission {
        authorization: &auth,
        service_sig: Some(&[5u8; 64]),
        corr_id: &corr,
        entity_id: &nid,
        command: &command,
        ..Default::default()
    };
    let mut bytes = Vec::new();
    encode_transmission(&mut bytes, &t, 18, true).unwrap();
    plain.send_raw(vec![bytes]).await;
    assert_err(&plain.response_to(&corr).await, ErrorType::Service);
    s.stop().await;
}

/// A messaging service: NEW and SUB signed in the session (IDS and SOK carry the service id,
/// messages are delivered), create-only NEW prohibited, SUBS prohibited (the reference does
/// not serve recipient service subscriptions yet), notifier commands prohibited.
#[tokio::test]
async fn messaging_service_session() {
    let (_d, s) = server().await;
    let cert = service_cert();
    let mut m = connect_service(&s, &cert, ServiceRole::Messaging).await;
    let sid = service_id(&m);
    let key = AuthKey::ed25519();
    let dh = hush_crypto::X25519Secret::generate();
    let subscribe = NewOpts {
        subscribe: true,
        ..NewOpts::default()
    };
    let create_only = NewOpts {
        subscribe: false,
        ..NewOpts::default()
    };
    assert_err(
        &service_signed(
            &mut m,
            &key,
            &[],
            new_request(&key, &dh, create_only, None),
            true,
        )
        .await,
        ErrorType::Cmd(CommandError::Prohibited),
    );
    // NEW without the service signature in a service session: ERR SERVICE.
    assert_err(
        &service_signed(
            &mut m,
            &key,
            &[],
            new_request(&key, &dh, subscribe, None),
            false,
        )
        .await,
        ErrorType::Service,
    );
    let ids = match service_signed(
        &mut m,
        &key,
        &[],
        new_request(&key, &dh, subscribe, None),
        true,
    )
    .await
    {
        BrokerMsg::Ids(ids) => ids,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        ids.service_id.as_ref().map(|i| i.as_bytes().to_vec()),
        Some(sid.clone())
    );
    let rid = ids.rcv_id.as_bytes().to_vec();
    let snd_id = ids.snd_id.as_bytes().to_vec();
    // The queue is subscribed by the creating session: a message arrives.
    let mut snd = s.connect().await;
    assert_eq!(
        snd.cmd(None, &snd_id, send_cmd(b"to the service", false))
            .await,
        BrokerMsg::Ok
    );
    let (e, msg) = m.event().await;
    assert_eq!(e, rid);
    assert!(matches!(msg, BrokerMsg::Msg { .. }), "{msg:?}");
    // SUB signed in the session: SOK serviceId (then the unacknowledged MSG again).
    assert_eq!(
        service_signed(&mut m, &key, &rid, Command::Sub, true).await,
        sok(&sid)
    );
    // SUBS: verified, then CMD PROHIBITED as in the reference.
    assert_err(
        &service_command(&mut m, &sid, Command::Subs).await,
        ErrorType::Cmd(CommandError::Prohibited),
    );
    // NSUBS is a notifier command: prohibited in a messaging session.
    assert_err(
        &service_command(&mut m, &sid, Command::NSubs).await,
        ErrorType::Cmd(CommandError::Prohibited),
    );
    s.stop().await;
}

/// More queues than one page of the store walk (1,000 ids): all of them are subscribed and the
/// last one's notification arrives.
#[tokio::test]
async fn nsubs_walks_more_than_one_page() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut cfg = test_config(&paths);
    cfg.limits.new_queues_per_minute = 100_000;
    cfg.limits.new_queues_per_minute_per_ip = 100_000;
    let s = std::sync::Arc::new(TestServer::start(cfg).await);
    let cert = service_cert();
    let sid = service_id(&connect_service(&s, &cert, ServiceRole::Notifier).await);
    const N: usize = 1_203;
    const TASKS: usize = 8;
    // Created and associated from 8 connection pairs at once (the store commits in groups).
    let mut set = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let (s, cert, sid) = (s.clone(), cert.clone(), sid.clone());
        set.spawn(async move {
            let mut r = s.connect().await;
            let mut a = connect_service(&s, &cert, ServiceRole::Notifier).await;
            let mut last = None;
            for _ in (t..N).step_by(TASKS) {
                let (q, nk, nid, _) = ntf_queue(&mut r).await;
                assert_eq!(
                    service_signed(&mut a, &nk, &nid, Command::NSub, true).await,
                    sok(&sid)
                );
                last = Some((q, nid));
            }
            last
        });
    }
    let mut last = None;
    while let Some(l) = set.join_next().await {
        last = l.unwrap();
    }
    let mut b = connect_service(&s, &cert, ServiceRole::Notifier).await;
    assert_eq!(
        service_command(&mut b, &sid, Command::NSubs).await,
        BrokerMsg::Soks(N as i64)
    );
    let (q, nid) = last.unwrap();
    let mut snd = s.connect().await;
    assert_eq!(
        snd.cmd(None, &q.snd_id, send_cmd(b"last", true)).await,
        BrokerMsg::Ok
    );
    let (e, m) = b.event().await;
    assert_eq!(e, nid);
    assert!(matches!(m, BrokerMsg::NMsg { .. }), "{m:?}");
    drop((b, snd));
    if let Ok(s) = std::sync::Arc::try_unwrap(s) {
        s.stop().await;
    }
}

/// `[TRANSPORT] accept_service_credentials = off`: a client declaring a service is refused in
/// the handshake; plain clients are served as before.
#[tokio::test]
async fn services_refused_when_accept_service_credentials_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut config = test_config(&paths);
    config.transport.accept_service_credentials = false;
    let s = TestServer::start_with(config, RelayOptions::default()).await;
    let refused = try_connect_service(&s, &service_cert(), ServiceRole::Notifier).await;
    assert!(refused.is_err(), "service session accepted while off");
    let mut plain = s.connect().await;
    assert!(plain.conn.service().is_none());
    let (_q, _k, _nid, _secret) = ntf_queue(&mut plain).await;
    s.stop().await;
}

/// Each service handshake with a new certificate stores a service record: one address gets
/// 10 at once (then 10 a minute); the 11th is refused in the handshake and counted, while a
/// plain client from the same address still connects.
#[tokio::test]
async fn service_handshakes_per_address_are_capped() {
    let (_d, s) = server().await;
    let ((_, per_ip_burst), _) = smp_server::server::SERVICE_HANDSHAKES;
    for _ in 0..per_ip_burst {
        connect_service(&s, &service_cert(), ServiceRole::Notifier).await;
    }
    let refused = try_connect_service(&s, &service_cert(), ServiceRole::Notifier).await;
    assert!(
        refused.is_err(),
        "service handshake over the per-address cap accepted"
    );
    let mut plain = s.connect().await;
    assert!(plain.conn.service().is_none());
    let (_q, _k, _nid, _secret) = ntf_queue(&mut plain).await;
    assert_eq!(s.metrics().service_handshakes_refused.get(), 1);
    s.stop().await;
}
