//! Two agents talking through a real smp-server relay (in-process, real TLS, real files).

mod common;

use common::*;
use hush_agent::{AgentEvent, MsgIntegrity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_connect_and_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    assert_eq!(
        a.connection_status(a_conn).unwrap(),
        hush_agent::ConnStatus::Connected
    );
    assert_eq!(
        b.connection_status(b_conn).unwrap(),
        hush_agent::ConnStatus::Connected
    );
    // a contact address link can be shown again later
    let (addr, link) = a.create_contact_address().await.unwrap();
    assert_eq!(a.contact_addresses().unwrap(), vec![addr]);
    assert_eq!(a.contact_address_link(addr).unwrap(), link);

    // size limit: 15795 bytes is the largest body (15840-byte ratchet padding); a refused
    // message consumes no id and leaves nothing in the outbox
    assert!(matches!(
        a.send(a_conn, &[7; 15796]),
        Err(hush_agent::AgentError::TooLarge)
    ));
    assert_eq!(a.pending_sends().unwrap(), 0);

    let mut seen = Vec::new();
    for i in 0..5 {
        let body = format!("a->b {i}");
        let id = a.send(a_conn, body.as_bytes()).unwrap();
        assert_eq!(id, 2 + i, "confirmation took id 1");
        let (mid, got, integrity) = wait_for(&mut b_rx, &mut seen, |e| match e {
            AgentEvent::Message {
                conn,
                msg_id,
                body,
                integrity,
            } if *conn == b_conn => Some((*msg_id, body.clone(), integrity.clone())),
            _ => None,
        })
        .await;
        assert_eq!(mid, id);
        assert_eq!(got, body.as_bytes());
        assert_eq!(integrity, MsgIntegrity::Ok);
        b.ack_with_receipt(b_conn, mid, b"seen").await.unwrap();
        wait_for(&mut a_rx, &mut seen, |e| {
            matches!(e, AgentEvent::Receipt { conn, msg_id, hash_ok: true } if *conn == a_conn && *msg_id == id)
                .then_some(())
        })
        .await;
        let body = format!("b->a {i}");
        let id = b.send(b_conn, body.as_bytes()).unwrap();
        let (mid, got) = wait_for(&mut a_rx, &mut seen, |e| match e {
            AgentEvent::Message {
                conn, msg_id, body, ..
            } if *conn == a_conn => Some((*msg_id, body.clone())),
            _ => None,
        })
        .await;
        assert_eq!((mid, got), (id, body.into_bytes()));
        a.ack(a_conn, mid).await.unwrap();
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_down_5s_then_reconnect_delivers_queued_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    let mut seen = Vec::new();

    relay.stop().await;
    for rx in [&mut a_rx, &mut b_rx] {
        wait_for(rx, &mut seen, |e| {
            matches!(e, AgentEvent::RelayDown { .. }).then_some(())
        })
        .await;
    }
    let id = a.send(a_conn, b"sent while the relay is down").unwrap();
    assert_eq!(a.pending_sends().unwrap(), 1);
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        a.pending_sends().unwrap(),
        1,
        "nothing can be delivered while down"
    );
    relay.restart().await;

    wait_for(&mut b_rx, &mut seen, |e| {
        matches!(e, AgentEvent::RelayUp { .. }).then_some(())
    })
    .await;
    let (mid, body) = wait_for(&mut b_rx, &mut seen, |e| match e {
        AgentEvent::Message {
            conn, msg_id, body, ..
        } if *conn == b_conn => Some((*msg_id, body.clone())),
        _ => None,
    })
    .await;
    assert_eq!(
        (mid, body.as_slice()),
        (id, &b"sent while the relay is down"[..])
    );
    b.ack(b_conn, mid).await.unwrap();
    wait_for(&mut a_rx, &mut seen, |e| {
        matches!(e, AgentEvent::Sent { conn, msg_id } if *conn == a_conn && *msg_id == id)
            .then_some(())
    })
    .await;
    assert_eq!(a.pending_sends().unwrap(), 0);
    a.close().await;
    b.close().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_connection_refuses_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    b.delete_connection(b_conn).await.unwrap();
    assert!(!b.connections().unwrap().contains(&b_conn));
    let id = a.send(a_conn, b"to nowhere").unwrap();
    let mut seen = Vec::new();
    let err = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::DeliveryError {
            conn,
            msg_id,
            error,
        } if *conn == a_conn && *msg_id == id => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(err.contains("Auth"), "{err}");
    assert_eq!(a.pending_sends().unwrap(), 0);
    a.close().await;
    b.close().await;
}

/// More messages than the relay's queue quota (128): the sender gets `ERR QUOTA`, the
/// recipient drains the queue, receives the quota marker and answers `A_QCONT`, which resumes
/// the sender at once (its timer retry is set to 10 minutes here, so only QCONT can do it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_then_qcont_resumes_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let mut config = agent_config(relay.server());
    config.quota_retry_interval = std::time::Duration::from_secs(600);
    let (a, mut a_rx) = hush_agent::Agent::open(db_path(dir.path(), "a"), config)
        .await
        .unwrap();
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    const M: i64 = 200;
    for i in 0..M {
        a.send(a_conn, format!("q {i}").as_bytes()).unwrap();
    }
    // let the sender hit the quota before anything is acknowledged
    let mut seen = Vec::new();
    let first = wait_for(&mut b_rx, &mut seen, |e| match e {
        AgentEvent::Message { msg_id, .. } => Some(*msg_id),
        _ => None,
    })
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while a.pending_sends().unwrap() > M - 128 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        a.pending_sends().unwrap() == M - 128,
        "the quota stopped the sender"
    );
    b.ack(b_conn, first).await.unwrap();
    let mut next = first + 1;
    while next < first + M {
        let (id, body) = wait_for(&mut b_rx, &mut seen, |e| match e {
            AgentEvent::Message { msg_id, body, .. } => Some((*msg_id, body.clone())),
            _ => None,
        })
        .await;
        assert_eq!(id, next);
        assert_eq!(body, format!("q {}", id - first).into_bytes());
        b.ack(b_conn, id).await.unwrap();
        next += 1;
    }
    // (the relay's OK to the last SEND may arrive after the recipient got the message)
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.pending_sends().unwrap() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "outbox not emptied");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    a.close().await;
    b.close().await;
}

/// `NKEY` for a connection's receive queue: the credentials are stored, and a notifier
/// subscribed with them (as an NTF server would) gets an `NMSG` that decrypts to the message's
/// relay id when the peer sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_credentials_work_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let db_a = db_path(dir.path(), "a");
    let (a, mut a_rx) = open_agent(&db_a, relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    let creds = a.enable_notifications(a_conn).await.unwrap();
    assert_eq!(creds.len(), 1);
    let (server, creds) = &creds[0];
    {
        let mut s = hush_agent::store::Store::open(&db_a).unwrap();
        let q = s.tx(|tx| tx.rcv_queues_of(a_conn)).unwrap().pop().unwrap();
        let stored = q.notifier.expect("stored notifier credentials");
        assert_eq!(stored.notifier_id, creds.notifier_id);
    }
    let (ntf, mut ntf_events) =
        hush_client::SmpClient::connect(server, hush_client::ClientConfig::default())
            .await
            .unwrap();
    ntf.subscribe_notifier(&creds.notifier_id, &creds.notifier_key)
        .await
        .unwrap();
    b.send(b_conn, b"wake up").unwrap();
    let mut seen = Vec::new();
    let msg_id = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::Message { msg_id, .. } => Some(*msg_id),
        _ => None,
    })
    .await;
    let ev = tokio::time::timeout(WAIT, ntf_events.recv())
        .await
        .unwrap()
        .unwrap();
    match ev {
        hush_client::ServerEvent::Notification {
            notifier_id,
            nonce,
            enc_meta,
        } => {
            assert_eq!(notifier_id, creds.notifier_id);
            let meta =
                hush_client::decrypt_nmsg(&creds.rcv_ntf_dh_secret, &nonce, &enc_meta).unwrap();
            assert_eq!(meta.msg_id.len(), 24);
        }
        e => panic!("expected NMSG, got {e:?}"),
    }
    a.ack(a_conn, msg_id).await.unwrap();
    a.disable_notifications(a_conn).await.unwrap();
    ntf.close().await;
    a.close().await;
    b.close().await;
}

/// `join_with_request`: the contact request carries `request_info` (the app's `x.contact`),
/// the requester's confirmation after the owner accepts carries `conn_info` (its `x.info`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_request_and_confirmation_carry_their_own_info() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (_, link) = a.create_contact_address().await.unwrap();
    let b_conn = b
        .join_with_request(&link, b"request from bob", b"bob's profile")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let request = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::ContactRequest {
            request, conn_info, ..
        } => {
            assert_eq!(conn_info, b"request from bob");
            Some(*request)
        }
        _ => None,
    })
    .await;
    let a_conn = a
        .accept_contact_request(request, b"alice's profile")
        .await
        .unwrap();
    wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::Connected { conn, peer_info } if *conn == a_conn => {
            assert_eq!(peer_info, b"bob's profile");
            Some(())
        }
        _ => None,
    })
    .await;
    wait_for(&mut b_rx, &mut seen, |e| match e {
        AgentEvent::Connected { conn, peer_info } if *conn == b_conn => {
            assert_eq!(peer_info, b"alice's profile");
            Some(())
        }
        _ => None,
    })
    .await;
    a.close().await;
    b.close().await;
}

/// A delivery receipt is sent without the notification flag (reference MsgFlags
/// notification = False): the peer's notifier gets no NMSG for it, while a message does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_do_not_notify() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    // b's receive queue has a notifier, subscribed as an NTF server would
    let creds = b.enable_notifications(b_conn).await.unwrap();
    let (server, creds) = &creds[0];
    let (ntf, mut ntf_events) =
        hush_client::SmpClient::connect(server, hush_client::ClientConfig::default())
            .await
            .unwrap();
    ntf.subscribe_notifier(&creds.notifier_id, &creds.notifier_key)
        .await
        .unwrap();
    // b → a, a acknowledges with a receipt; b gets the receipt
    let sent = b.send(b_conn, b"hello").unwrap();
    let mut seen = Vec::new();
    let mid = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::Message { msg_id, .. } => Some(*msg_id),
        _ => None,
    })
    .await;
    a.ack_with_receipt(a_conn, mid, b"").await.unwrap();
    wait_for(&mut b_rx, &mut seen, |e| match e {
        AgentEvent::Receipt { msg_id, .. } if *msg_id == sent => Some(()),
        _ => None,
    })
    .await;
    // no NMSG for the receipt
    let ev = tokio::time::timeout(std::time::Duration::from_millis(500), ntf_events.recv()).await;
    assert!(ev.is_err(), "a receipt woke the notifier: {ev:?}");
    // a message does
    a.send(a_conn, b"a real message").unwrap();
    let ev = tokio::time::timeout(WAIT, ntf_events.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, hush_client::ServerEvent::Notification { .. }),
        "{ev:?}"
    );
    ntf.close().await;
    a.close().await;
    b.close().await;
}

/// The largest body goes through the relay intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_message_fits() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, _) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    let big: Vec<u8> = (0..15795u32).map(|i| (i % 251) as u8).collect();
    let id = a.send(a_conn, &big).unwrap();
    let mut seen = Vec::new();
    let body = wait_for(&mut b_rx, &mut seen, |e| match e {
        AgentEvent::Message { msg_id, body, .. } if *msg_id == id => Some(body.clone()),
        _ => None,
    })
    .await;
    assert_eq!(body, big);
    a.close().await;
    b.close().await;
}

/// Both agents restart between the invitation and the confirmation: the handshake completes
/// from what the databases kept (outbox, keys, ratchet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (db_a, db_b) = (db_path(dir.path(), "a"), db_path(dir.path(), "b"));
    let (a, _a_rx) = open_agent(&db_a, relay.server()).await;
    let (b, _b_rx) = open_agent(&db_b, relay.server()).await;
    let (a_conn, link) = a.create_invitation(b"alice").await.unwrap();
    a.close().await;
    let b_conn = b.join(&link, b"bob").await.unwrap();
    b.close().await;
    // the joiner's confirmation may or may not have left before the restart
    let (a, mut a_rx) = open_agent(&db_a, relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_b, relay.server()).await;
    assert_eq!(a.subscribe_all().await.unwrap(), 1);
    assert_eq!(b.subscribe_all().await.unwrap(), 1);
    let mut seen = Vec::new();
    wait_for(&mut a_rx, &mut seen, |e| {
        matches!(e, AgentEvent::Connected { conn, .. } if *conn == a_conn).then_some(())
    })
    .await;
    wait_for(&mut b_rx, &mut seen, |e| {
        matches!(e, AgentEvent::Connected { conn, .. } if *conn == b_conn).then_some(())
    })
    .await;
    let id = b.send(b_conn, b"after restarts").unwrap();
    let (mid, body) = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::Message { msg_id, body, .. } => Some((*msg_id, body.clone())),
        _ => None,
    })
    .await;
    assert_eq!((mid, body.as_slice()), (id, &b"after restarts"[..]));
    a.close().await;
    b.close().await;
}

/// Without auto-accept the inviter waits for the application's approval (CONF, then
/// allowConnection in the reference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_waits_for_approval() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let mut config = agent_config(relay.server());
    config.auto_accept_confirmations = false;
    let (a, mut a_rx) = hush_agent::Agent::open(db_path(dir.path(), "a"), config)
        .await
        .unwrap();
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (a_conn, link) = a.create_invitation(b"alice").await.unwrap();
    assert!(
        a.allow_connection(a_conn, None).is_err(),
        "nothing to approve yet"
    );
    let b_conn = b.join(&link, b"bob").await.unwrap();
    let mut seen = Vec::new();
    let info = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::Confirmation { conn, peer_info } if *conn == a_conn => Some(peer_info.clone()),
        _ => None,
    })
    .await;
    assert_eq!(info, b"bob");
    assert_eq!(
        a.connection_status(a_conn).unwrap(),
        hush_agent::ConnStatus::AwaitingApproval
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        b.connection_status(b_conn).unwrap(),
        hush_agent::ConnStatus::Joined,
        "no reply before approval"
    );
    a.allow_connection(a_conn, Some(b"alice, approved"))
        .unwrap();
    wait_for(&mut a_rx, &mut seen, |e| {
        matches!(e, AgentEvent::Connected { conn, .. } if *conn == a_conn).then_some(())
    })
    .await;
    let info = wait_for(&mut b_rx, &mut seen, |e| match e {
        AgentEvent::Connected { conn, peer_info } if *conn == b_conn => Some(peer_info.clone()),
        _ => None,
    })
    .await;
    assert_eq!(info, b"alice, approved");
    a.close().await;
    b.close().await;
}
