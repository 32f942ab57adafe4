//! §8.3 (upstream `tests/NtfServerTests.hs`) against real servers over real TLS on 127.0.0.1:
//! smp-server relay, ntf-server, in-process push-server delivering to apns-sink; the test plays
//! the device (decrypts the pushes, GETs/ACKs with hush-client).

mod common;

use common::*;
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::ntf::{NtfCommand, NtfResponse, SubStatus, TokenStatus};
use ntf_server::PolicyMode;

fn vectors() -> Vec<serde_json::Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/ntf.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("ntf.json missing")).unwrap()
}

/// `ntf_syntax.*`: the v3 transmission of each vector, sent over TLS, gets exactly the v3
/// response transmission of the vector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_vectors_over_tls() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let ntf = Ntf::start(ntf_config(dir.path(), false, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let mut n = 0;
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        if !name.starts_with("ntf_syntax.") {
            continue;
        }
        let t = hex::decode(v["inputs"]["v3_transmission_hex"].as_str().unwrap()).unwrap();
        let want = hex::decode(
            v["expected"]["v3_response_transmission_hex"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(c.raw(t).await, want, "{name}");
        n += 1;
    }
    assert_eq!(n, 5, "ntf_syntax vectors");
    // PING → PONG
    let (e, r) = c.cmd(None, b"", &NtfCommand::Ping).await;
    assert!(e.is_empty());
    assert_eq!(r, NtfResponse::Pong);
    ntf.stop().await;
}

/// A legacy client without ALPN gets NTF v1 (session id on the wire, unbatched blocks, no
/// server key): the `ntf_syntax` vectors as the upstream test really runs them (v1), with this
/// connection's session id, get the vectors' responses; PING works; idle connections are closed
/// when `[INACTIVE_CLIENTS] disconnect` is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_v1_client_and_inactive_disconnect() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let mut cfg = ntf_config(dir.path(), false, PolicyMode::Reference);
    cfg.inactive_ttl = Some(std::time::Duration::from_millis(700));
    let ntf = Ntf::start(cfg, &push).await;
    let client = hush_transport::TransportClient::new(
        hush_transport::Protocol::Ntf,
        hush_transport::ClientConfig {
            alpn: Vec::new(),
            ..hush_transport::ClientConfig::ntf()
        },
        None,
    )
    .unwrap();
    let mut conn = client
        .connect_addr(ntf.addr, &ntf.fingerprint)
        .await
        .unwrap();
    assert_eq!(conn.version(), 1);
    assert!(conn.server_session_key().is_none());
    let sid = conn.session_id().to_vec();
    let mut n = 0;
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        if !name.starts_with("ntf_syntax.") {
            continue;
        }
        let i = &v["inputs"];
        let auth = hex::decode(i["authorization_hex"].as_str().unwrap()).unwrap();
        let cmd = hex::decode(i["command_hex"].as_str().unwrap()).unwrap();
        let corr = i["corr_id_ascii"].as_str().unwrap().as_bytes();
        let entity = i["entity_id_ascii"].as_str().unwrap().as_bytes();
        let t = hush_proto::transmission::Transmission {
            authorization: &auth,
            session_id: &sid,
            corr_id: corr,
            entity_id: entity,
            command: &cmd,
            ..Default::default()
        };
        let mut out = Vec::new();
        hush_proto::ntf::encode_ntf_transmission(&mut out, &t, 1).unwrap();
        conn.send(&[out]).await.unwrap();
        let block = conn.recv().await.unwrap().unwrap();
        let ts = block.transmissions().unwrap();
        let r = hush_proto::ntf::decode_ntf_transmission(ts[0], 1).unwrap();
        assert_eq!(r.session_id, sid.as_slice(), "{name}");
        assert_eq!(r.corr_id, corr, "{name}");
        assert_eq!(r.entity_id, entity, "{name}");
        assert_eq!(
            r.command,
            v["expected"]["response_ascii"].as_str().unwrap().as_bytes(),
            "{name}"
        );
        n += 1;
    }
    assert_eq!(n, 5);
    // idle → closed by the server
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), conn.recv()).await;
    assert!(matches!(r, Ok(Err(_))), "connection not closed: {r:?}");
    ntf.stop().await;
}

/// Subscription status mapping (§5.4): relay `AUTH` on NSUB → `SUB AUTH`; `DELD` (recipient
/// `NDEL`) → `SUB DELETED`; `END` (another connection took the notifier subscription) →
/// `SUB END`; a repeated SNEW after END subscribes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_status_mapping() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(ntf_config(dir.path(), false, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let smp = relay.client().await;
    let mut d = Device::new(50);
    register(&mut c, &push, &mut d).await;

    // AUTH: right notifier id, wrong key
    let q = Queue::new(&smp, &relay.server).await;
    let mut cmd = q.snew(&d.token_id);
    let wrong = hush_client::AuthKey::generate(hush_client::AuthAlgorithm::Ed25519).unwrap();
    if let NtfCommand::Snew { notifier_key, .. } = &mut cmd {
        *notifier_key = notifier_pkcs8(&wrong);
    }
    let (_, r) = c.cmd(Some(&d.key), b"", &cmd).await;
    let NtfResponse::SubId { sub_id } = r else {
        panic!("{r:?}")
    };
    wait_sub(&mut c, &d, &sub_id, SubStatus::Auth).await;

    // DELETED: the recipient removes the notifier credentials
    let q2 = Queue::new(&smp, &relay.server).await;
    let sub2 = subscribe(&mut c, &d, &q2).await;
    smp.disable_notifications(&q2.q.rcv_id, &q2.q.rcv_key)
        .await
        .unwrap();
    wait_sub(&mut c, &d, &sub2, SubStatus::Deleted).await;

    // END: another connection subscribes as notifier
    let q3 = Queue::new(&smp, &relay.server).await;
    let sub3 = subscribe(&mut c, &d, &q3).await;
    let other = relay.client().await;
    other
        .subscribe_notifier(&q3.ntf.notifier_id, &q3.ntf.notifier_key)
        .await
        .unwrap();
    wait_sub(&mut c, &d, &sub3, SubStatus::End).await;
    other.close().await;
    // SNEW again (same token, same key): same id, subscribed again
    let (_, r) = c.cmd(Some(&d.key), b"", &q3.snew(&d.token_id)).await;
    assert_eq!(
        r,
        NtfResponse::SubId {
            sub_id: sub3.clone()
        }
    );
    wait_sub(&mut c, &d, &sub3, SubStatus::Active).await;
    let n = push.received(d.sink_token()).len();
    send(&smp, &q3, b"after END").await;
    let (_, items) = wait_message_push(&push, &d, n).await;
    fetch_and_check(&smp, &q3, items.last().unwrap()).await;
    ntf.stop().await;
    relay.stop().await;
}

/// Token keys of every kind the reference accepts: Ed25519 and Ed448 signatures, X25519
/// crypto_box authenticators (keyed with this connection's server session key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_token_key_kinds() {
    use hush_client::{AuthAlgorithm, AuthKey};
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let ntf = Ntf::start(ntf_config(dir.path(), false, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    for (i, alg) in [
        AuthAlgorithm::Ed25519,
        AuthAlgorithm::Ed448,
        AuthAlgorithm::X25519,
    ]
    .into_iter()
    .enumerate()
    {
        let key = AuthKey::generate(alg).unwrap();
        let d = Device::new(40 + i as u8);
        let tnew = NtfCommand::Tnew {
            token: d.device_token(),
            verify_key: key.public_der().unwrap(),
            dh_key: hush_proto::ntf::PublicKeyDer::dh_key(d.dh.public().to_spki_der()).unwrap(),
        }
        .encode_checked(3)
        .unwrap();
        let (_, r) = c.cmd_auth(&key, b"", &tnew).await;
        let NtfResponse::TknId { token_id, .. } = r else {
            panic!("{alg:?}: {r:?}")
        };
        let tchk = NtfCommand::Tchk.encode_checked(3).unwrap();
        let (_, r) = c.cmd_auth(&key, &token_id, &tchk).await;
        assert!(matches!(r, NtfResponse::Tkn(_)), "{alg:?}: {r:?}");
        // another key of the same kind → AUTH
        let other = AuthKey::generate(alg).unwrap();
        let (_, r) = c.cmd_auth(&other, &token_id, &tchk).await;
        assert_eq!(r, NtfResponse::Err(ErrorType::Auth), "{alg:?}");
    }
    ntf.stop().await;
}

/// TNEW (+ repeat), TVFY, TCHK, SNEW, SEND → alert push → GET/ACK with matching msgId and ts;
/// TRPL; SNEW rules; TCRN; TDEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_subscription_lifecycle() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(ntf_config(dir.path(), true, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let smp = relay.client().await;
    let mut d = Device::new(1);

    // SNEW before TVFY → AUTH (token REGISTERED/CONFIRMED)
    let (_, r) = tnew(&mut c, &d).await;
    let NtfResponse::TknId {
        token_id,
        server_dh_key,
    } = r
    else {
        panic!("{r:?}")
    };
    let q1 = Queue::new(&smp, &relay.server).await;
    let (_, r) = c.cmd(Some(&d.key), b"", &q1.snew(&token_id)).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));
    // the verification push reached APNs (push-server delivery report) → CONFIRMED
    push.wait_pushes(d.sink_token(), 1).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, r) = c.cmd(Some(&d.key), &token_id, &NtfCommand::Tchk).await;
        if r == NtfResponse::Tkn(TokenStatus::Confirmed) {
            break;
        }
        assert_eq!(r, NtfResponse::Tkn(TokenStatus::Registered));
        assert!(tokio::time::Instant::now() < deadline, "not CONFIRMED");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, r) = c.cmd(Some(&d.key), b"", &q1.snew(&token_id)).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth), "SNEW in CONFIRMED");

    // Repeated TNEW: same id, same key, same code.
    let code = register(&mut c, &push, &mut d).await;
    assert_eq!(d.token_id, token_id);
    let (_, r) = tnew(&mut c, &d).await;
    assert_eq!(
        r,
        NtfResponse::TknId {
            token_id: token_id.clone(),
            server_dh_key: server_dh_key.clone()
        }
    );
    let pushes = push.wait_pushes(d.sink_token(), 3).await;
    match d.decode(&pushes[2]) {
        PushContent::Verification(c2) => assert_eq!(c2, code),
        _ => panic!("expected a verification push"),
    }
    // TNEW with the same token and key but another DH key → AUTH
    let mut other = Device::new(1);
    other.key = d.key.clone();
    let (_, r) = tnew(&mut c, &other).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));
    // TVFY with a wrong code → AUTH
    let (_, r) = c
        .cmd(
            Some(&d.key),
            &d.token_id,
            &NtfCommand::Tvfy { code: vec![0; 32] },
        )
        .await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));
    // a command signed with another key → AUTH
    let stranger = hush_crypto::Ed25519Secret::generate();
    let (_, r) = c.cmd(Some(&stranger), &d.token_id, &NtfCommand::Tchk).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));

    // SNEW → IDSUB; repeated SNEW → same id; other key / other token → AUTH
    let sub1 = subscribe(&mut c, &d, &q1).await;
    let (_, r) = c.cmd(Some(&d.key), b"", &q1.snew(&d.token_id)).await;
    assert_eq!(
        r,
        NtfResponse::SubId {
            sub_id: sub1.clone()
        }
    );
    let q_other_key = Queue::new(&smp, &relay.server).await;
    let mut bad = q1.snew(&d.token_id);
    if let NtfCommand::Snew { notifier_key, .. } = &mut bad {
        *notifier_key = notifier_pkcs8(&q_other_key.ntf.notifier_key);
    }
    let (_, r) = c.cmd(Some(&d.key), b"", &bad).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));
    let mut d2 = Device::new(2);
    register(&mut c, &push, &mut d2).await;
    let (_, r) = c.cmd(Some(&d2.key), b"", &q1.snew(&d2.token_id)).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));

    // SEND with the notification flag → alert push whose last item names this queue
    let n0 = push.received(d.sink_token()).len();
    send(&smp, &q1, b"hello secret body").await;
    let (p, items) = wait_message_push(&push, &d, n0).await;
    assert_eq!(p.push_type.as_deref(), Some("alert"));
    assert_eq!(p.priority, None);
    let v: serde_json::Value = serde_json::from_str(&p.payload).unwrap();
    assert_eq!(v["aps"]["category"], "NTF_CAT_CHECK_MESSAGE");
    assert_eq!(v["aps"]["mutable-content"], 1);
    assert_eq!(v["aps"]["alert"], "Encrypted message or another app event");
    let body = fetch_and_check(&smp, &q1, items.last().unwrap()).await;
    assert_eq!(body, b"hello secret body");

    // A message without the notification flag produces no push.
    let n1 = push.received(d.sink_token()).len();
    smp.send(&q1.q.snd_id, None, false, b"quiet").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(push.received(d.sink_token()).len(), n1);
    let raw = smp.get(&q1.q.rcv_id, &q1.q.rcv_key).await.unwrap().unwrap();
    smp.ack(&q1.q.rcv_id, &q1.q.rcv_key, &raw.msg_id)
        .await
        .unwrap();

    // TRPL → OK, verification push to the new token, TVFY → ACTIVE, notifications continue.
    let old_token = d.token_hex.clone();
    d.token_hex = hex::encode([9u8; 32]);
    let (_, r) = c
        .cmd(
            Some(&d.key),
            &d.token_id,
            &NtfCommand::Trpl {
                token: d.device_token(),
            },
        )
        .await;
    assert_eq!(r, NtfResponse::Ok);
    let (_, r) = c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await;
    assert!(
        matches!(
            r,
            NtfResponse::Tkn(TokenStatus::Registered | TokenStatus::Confirmed)
        ),
        "{r:?}"
    );
    let pushes = push.wait_pushes(d.sink_token(), 1).await;
    let PushContent::Verification(code) = d.decode(&pushes[0]) else {
        panic!()
    };
    let (_, r) = c
        .cmd(Some(&d.key), &d.token_id, &NtfCommand::Tvfy { code })
        .await;
    assert_eq!(r, NtfResponse::Ok);
    let old_count = push.received(&old_token).len();
    send(&smp, &q1, b"after trpl").await;
    let (_, items) = wait_message_push(&push, &d, 1).await;
    fetch_and_check(&smp, &q1, items.last().unwrap()).await;
    assert_eq!(
        push.received(&old_token).len(),
        old_count,
        "old token gets nothing"
    );

    // TCRN: 1..19 → QUOTA, 20 → OK, 0 → OK
    for (m, want) in [
        (1, NtfResponse::Err(ErrorType::Quota)),
        (19, NtfResponse::Err(ErrorType::Quota)),
        (20, NtfResponse::Ok),
        (0, NtfResponse::Ok),
    ] {
        let (_, r) = c
            .cmd(Some(&d.key), &d.token_id, &NtfCommand::Tcrn { minutes: m })
            .await;
        assert_eq!(r, want, "TCRN {m}");
    }

    // SDEL → OK, then SCHK → AUTH; TDEL → OK, then TCHK → AUTH.
    let (_, r) = c.cmd(Some(&d.key), &sub1, &NtfCommand::Sdel).await;
    assert_eq!(r, NtfResponse::Ok);
    let (_, r) = c.cmd(Some(&d.key), &sub1, &NtfCommand::Schk).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));
    let (_, r) = c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tdel).await;
    assert_eq!(r, NtfResponse::Ok);
    let (_, r) = c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));
    // credentials: token command without entity → NO_AUTH
    let (_, r) = c.cmd(Some(&d.key), b"", &NtfCommand::Tchk).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Cmd(CommandError::NoAuth)));

    ntf.stop().await;
    relay.stop().await;
}

/// Same flow with notifier credentials created by `NEW` (v17) instead of `NKEY`; two queues
/// notify into one push list (oldest first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_credentials_from_new() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(ntf_config(dir.path(), false, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let smp = relay.client().await;
    let mut d = Device::new(3);
    register(&mut c, &push, &mut d).await;
    let qa = Queue::new_with_creds(&smp, &relay.server).await;
    let qb = Queue::new(&smp, &relay.server).await;
    subscribe(&mut c, &d, &qa).await;
    subscribe(&mut c, &d, &qb).await;
    let n = push.received(d.sink_token()).len();
    send(&smp, &qa, b"a").await;
    let (_, items) = wait_message_push(&push, &d, n).await;
    fetch_and_check(&smp, &qa, items.last().unwrap()).await;
    send(&smp, &qb, b"b").await;
    let (_, items) = wait_message_push(&push, &d, n + 1).await;
    assert_eq!(items.len(), 2, "one item per queue");
    assert_eq!(items[0].queue, qa.queue_ntf(), "oldest first");
    fetch_and_check(&smp, &qb, &items[1]).await;
    ntf.stop().await;
    relay.stop().await;
}

/// Subscriptions created while the relay is offline become ACTIVE when it comes back; old and
/// new queues notify. Then a relay restart: subscriptions go INACTIVE and come back ACTIVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_offline_and_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(ntf_config(dir.path(), true, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let mut d = Device::new(4);
    register(&mut c, &push, &mut d).await;
    let smp = relay.client().await;
    let q_old = Queue::new(&smp, &relay.server).await;
    let sub_old = subscribe(&mut c, &d, &q_old).await;
    let q_new = Queue::new(&smp, &relay.server).await;
    smp.close().await;
    let cfg = relay.stop().await;

    // relay down: the old subscription goes INACTIVE, a new one stays pending
    wait_sub(&mut c, &d, &sub_old, SubStatus::Inactive).await;
    let (_, r) = c.cmd(Some(&d.key), b"", &q_new.snew(&d.token_id)).await;
    let NtfResponse::SubId { sub_id: sub_new } = r else {
        panic!("{r:?}")
    };
    let (_, r) = c.cmd(Some(&d.key), &sub_new, &NtfCommand::Schk).await;
    assert!(
        matches!(r, NtfResponse::Sub(SubStatus::New | SubStatus::Pending)),
        "{r:?}"
    );

    // relay back on the same port
    let relay = Relay::start(cfg).await;
    wait_sub(&mut c, &d, &sub_old, SubStatus::Active).await;
    wait_sub(&mut c, &d, &sub_new, SubStatus::Active).await;
    let smp = relay.client().await;
    for q in [&q_old, &q_new] {
        let n = push.received(d.sink_token()).len();
        send(&smp, q, b"after restart").await;
        let (_, items) = wait_message_push(&push, &d, n).await;
        let item = items
            .iter()
            .rev()
            .find(|i| i.queue == q.queue_ntf())
            .unwrap();
        fetch_and_check(&smp, q, item).await;
    }
    ntf.stop().await;
    relay.stop().await;
}

/// ntf-server restart with the SQLite store: tokens and subscriptions come back by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntf_restart_sqlite() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(ntf_config(dir.path(), true, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let mut d = Device::new(5);
    register(&mut c, &push, &mut d).await;
    let smp = relay.client().await;
    let q = Queue::new(&smp, &relay.server).await;
    let sub = subscribe(&mut c, &d, &q).await;
    drop(c);
    let cfg = ntf.stop().await;

    let ntf = Ntf::start(cfg, &push).await;
    let mut c = ntf.client().await;
    let (_, r) = c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await;
    assert_eq!(r, NtfResponse::Tkn(TokenStatus::Active));
    wait_sub(&mut c, &d, &sub, SubStatus::Active).await;
    let n = push.received(d.sink_token()).len();
    send(&smp, &q, b"after ntf restart").await;
    let (_, items) = wait_message_push(&push, &d, n).await;
    fetch_and_check(&smp, &q, items.last().unwrap()).await;
    ntf.stop().await;
    relay.stop().await;
}

/// ntf-server restart in memory mode: the client's TCHK gets AUTH, it re-creates the token and
/// the subscription (same notifier credentials) and notifications flow again. Also a relay
/// restart in memory mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntf_restart_memory() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let relay = Relay::start(relay_config(dir.path())).await;
    let ntf = Ntf::start(ntf_config(dir.path(), false, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let mut d = Device::new(6);
    register(&mut c, &push, &mut d).await;
    let smp = relay.client().await;
    let q = Queue::new(&smp, &relay.server).await;
    let sub = subscribe(&mut c, &d, &q).await;
    drop(c);
    let cfg = ntf.stop().await;
    assert!(
        !cfg.paths.data_dir.join("ntf-server-store.db").exists(),
        "nothing on disk"
    );

    let ntf = Ntf::start(cfg, &push).await;
    let mut c = ntf.client().await;
    // the client's periodic checks find nothing…
    let (_, r) = c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));
    let (_, r) = c.cmd(Some(&d.key), &sub, &NtfCommand::Schk).await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth));
    // …and re-create token and subscription
    register(&mut c, &push, &mut d).await;
    let sub2 = subscribe(&mut c, &d, &q).await;
    let n = push.received(d.sink_token()).len();
    send(&smp, &q, b"after memory restart").await;
    let (_, items) = wait_message_push(&push, &d, n).await;
    fetch_and_check(&smp, &q, items.last().unwrap()).await;

    // relay restart with the memory-mode ntf-server: the subscription comes back
    smp.close().await;
    let rcfg = relay.stop().await;
    wait_sub(&mut c, &d, &sub2, SubStatus::Inactive).await;
    let relay = Relay::start(rcfg).await;
    wait_sub(&mut c, &d, &sub2, SubStatus::Active).await;
    let smp = relay.client().await;
    let n = push.received(d.sink_token()).len();
    send(&smp, &q, b"after relay restart").await;
    let (_, items) = wait_message_push(&push, &d, n).await;
    fetch_and_check(&smp, &q, items.last().unwrap()).await;
    ntf.stop().await;
    relay.stop().await;
}
