//! Queue rotation and ratchet re-synchronisation, hush ↔ hush over a real relay, plus the
//! wire layouts of the messages involved.
//!
//! Byte layouts: the simplexmq repository has no encoded literals for QADD/QKEY/QUSE/QTEST,
//! EREADY or the `R` envelope in its tests, so the expected bytes below are written out by hand
//! from the reference source (Simplex/Messaging/Agent/Protocol.hs: `instance Encoding
//! AMessage`, `AgentMsgEnvelope`, `SMPQueueInfo`, `SMPQueueUri`; Simplex/Messaging/Encoding.hs:
//! `Bool` = `T`/`F`, `Maybe` = `0` | `1` x, `NonEmpty` = count byte + items, `Int64` = 8 bytes
//! big-endian; `ProtocolServer` = (NonEmpty host as shortString text, port shortString,
//! key hash shortString)), not produced by the encoder under test.

mod common;

use std::time::Duration;

use common::*;
use hush_agent::envelope::{
    AMessage, AgentMessage, AgentMsgEnvelope, SmpQueueInfo, SndQAddr, encode_queue_uri,
};
use hush_agent::ratchet::E2eRatchetParams;
use hush_agent::{
    Agent, AgentEvent, AgentEvents, MsgIntegrity, QueueDirection, RatchetSyncState, SwitchPhase,
};
use hush_crypto::{X448Secret, X25519Secret};
use hush_proto::address::{ProtocolServer, QueueMode, SmpQueueUri};
use hush_proto::encoding::Parser;
use hush_proto::version::VersionRange;

// ---------------------------------------------------------------------------------------------
// Byte layouts (hand-derived from the reference source, see the file comment)

const KEY_HASH: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

fn server() -> ProtocolServer {
    ProtocolServer::parse("smp://AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=@localhost:5001")
        .unwrap()
}

/// `ProtocolServer` by hand: 1 host "localhost", port "5001", the 32-byte key hash.
fn server_bytes() -> Vec<u8> {
    let mut b = vec![1, 9];
    b.extend_from_slice(b"localhost");
    b.push(4);
    b.extend_from_slice(b"5001");
    b.push(32);
    b.extend_from_slice(&KEY_HASH);
    b
}

/// `AgentMessage` `M` header by hand: sndMsgId 7 (Int64) ‖ prevMsgHash (shortString, 32 × 0xAA).
fn header_bytes() -> Vec<u8> {
    let mut b = vec![b'M', 0, 0, 0, 0, 0, 0, 0, 7, 32];
    b.extend_from_slice(&[0xAA; 32]);
    b
}

fn agent_msg(msg: AMessage) -> Vec<u8> {
    AgentMessage::Message {
        snd_msg_id: 7,
        prev_msg_hash: vec![0xAA; 32],
        msg,
    }
    .encode()
    .unwrap()
}

fn addr(sid: u8) -> SndQAddr {
    SndQAddr {
        server: server(),
        sender_id: vec![sid; 24],
    }
}

/// `SndQAddr` by hand: server ‖ shortString sender id.
fn addr_bytes(sid: u8) -> Vec<u8> {
    let mut b = server_bytes();
    b.push(24);
    b.extend_from_slice(&[sid; 24]);
    b
}

fn roundtrip(bytes: &[u8]) -> AMessage {
    match AgentMessage::decode(bytes).unwrap() {
        AgentMessage::Message { msg, .. } => msg,
        m => panic!("{m:?}"),
    }
}

#[test]
fn eready_layout() {
    let wire = agent_msg(AMessage::EReady(0x0102_0304_0506));
    let mut want = header_bytes();
    want.extend_from_slice(&[b'E', 0, 0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(wire, want);
    assert_eq!(roundtrip(&wire), AMessage::EReady(0x0102_0304_0506));
}

#[test]
fn qadd_layout() {
    let dh = X25519Secret::generate().public().to_spki_der();
    let uri = SmpQueueUri {
        client_versions: VersionRange::new(1, 4).unwrap(),
        server: server(),
        sender_id: vec![5; 24],
        dh_public_key: dh.clone(),
        queue_mode: Some(QueueMode::Messaging),
    };
    let wire = agent_msg(AMessage::QAdd(vec![(uri.clone(), Some(addr(9)))]));
    // QA ‖ count 1 ‖ SMPQueueUri (versions 1-4, server, sender id, dh key; min < 4 and
    // max ≥ 3 with a sender-securable queue: sndSecure flag 'T') ‖ Just ‖ SndQAddr
    let mut want = header_bytes();
    want.extend_from_slice(b"QA");
    want.push(1);
    want.extend_from_slice(&[0, 1, 0, 4]);
    want.extend_from_slice(&server_bytes());
    want.push(24);
    want.extend_from_slice(&[5; 24]);
    want.push(44);
    want.extend_from_slice(&dh);
    want.push(b'T');
    want.push(b'1');
    want.extend_from_slice(&addr_bytes(9));
    assert_eq!(wire, want);
    assert_eq!(
        roundtrip(&wire),
        AMessage::QAdd(vec![(uri.clone(), Some(addr(9)))])
    );

    // min version 4: the queue mode letter instead of the flag; Nothing for the address
    let uri4 = SmpQueueUri {
        client_versions: VersionRange::new(4, 4).unwrap(),
        ..uri
    };
    let mut b = Vec::new();
    encode_queue_uri(&uri4, &mut b).unwrap();
    assert_eq!(b.last(), Some(&b'M'));
    let wire = agent_msg(AMessage::QAdd(vec![(uri4.clone(), None)]));
    assert_eq!(wire.last(), Some(&b'0'));
    assert_eq!(roundtrip(&wire), AMessage::QAdd(vec![(uri4, None)]));
}

#[test]
fn qkey_layout() {
    let dh = X25519Secret::generate().public();
    let auth = vec![0x30; 44]; // an Ed25519 SPKI is 44 bytes; content opaque here
    let info = SmpQueueInfo {
        client_version: 4,
        server: server(),
        sender_id: vec![6; 24],
        dh_public_key: dh,
        queue_mode: Some(QueueMode::Messaging),
    };
    let wire = agent_msg(AMessage::QKey(vec![(info.clone(), auth.clone())]));
    // QK ‖ count 1 ‖ SMPQueueInfo (version 4, server, sender id, dh key, 'M') ‖ shortString key
    let mut want = header_bytes();
    want.extend_from_slice(b"QK");
    want.push(1);
    want.extend_from_slice(&[0, 4]);
    want.extend_from_slice(&server_bytes());
    want.push(24);
    want.extend_from_slice(&[6; 24]);
    want.push(44);
    want.extend_from_slice(&dh.to_spki_der());
    want.push(b'M');
    want.push(44);
    want.extend_from_slice(&auth);
    assert_eq!(wire, want);
    assert_eq!(roundtrip(&wire), AMessage::QKey(vec![(info, auth)]));
}

#[test]
fn quse_qtest_layout() {
    let wire = agent_msg(AMessage::QUse(vec![(addr(1), true), (addr(2), false)]));
    let mut want = header_bytes();
    want.extend_from_slice(b"QU");
    want.push(2);
    want.extend_from_slice(&addr_bytes(1));
    want.push(b'T');
    want.extend_from_slice(&addr_bytes(2));
    want.push(b'F');
    assert_eq!(wire, want);
    assert_eq!(
        roundtrip(&wire),
        AMessage::QUse(vec![(addr(1), true), (addr(2), false)])
    );

    let wire = agent_msg(AMessage::QTest(vec![addr(3)]));
    let mut want = header_bytes();
    want.extend_from_slice(b"QT");
    want.push(1);
    want.extend_from_slice(&addr_bytes(3));
    assert_eq!(wire, want);
    assert_eq!(roundtrip(&wire), AMessage::QTest(vec![addr(3)]));
}

#[test]
fn rotation_decoders_reject() {
    // empty NonEmpty lists
    for tag in [b"QA", b"QK", b"QU", b"QT"] {
        let mut b = header_bytes();
        b.extend_from_slice(tag);
        b.push(0);
        assert!(
            matches!(
                AgentMessage::decode(&b),
                Err(hush_agent::envelope::EnvelopeError::Syntax(_))
            ),
            "{tag:?}"
        );
    }
    // QUSE with a bad Bool
    let mut b = header_bytes();
    b.extend_from_slice(b"QU\x01");
    b.extend_from_slice(&addr_bytes(1));
    b.push(b'x');
    assert_eq!(
        AgentMessage::decode(&b),
        Err(hush_agent::envelope::EnvelopeError::Syntax(
            "QUSE primary flag"
        ))
    );
    // QADD with a bad Maybe tag
    let mut b = header_bytes();
    b.extend_from_slice(b"QA\x01");
    encode_queue_uri(
        &SmpQueueUri {
            client_versions: VersionRange::new(4, 4).unwrap(),
            server: server(),
            sender_id: vec![1; 24],
            dh_public_key: X25519Secret::generate().public().to_spki_der(),
            queue_mode: None,
        },
        &mut b,
    )
    .unwrap();
    b.push(b'2');
    assert_eq!(
        AgentMessage::decode(&b),
        Err(hush_agent::envelope::EnvelopeError::Syntax(
            "QADD Maybe tag"
        ))
    );
}

#[test]
fn ratchet_key_envelope_layout() {
    let k1 = X448Secret::generate().unwrap().public().unwrap();
    let k2 = X448Secret::generate().unwrap().public().unwrap();
    let info = AgentMessage::RatchetInfo(Vec::new()).encode().unwrap();
    // AgentRatchetInfo "" is the single tag byte
    assert_eq!(info, b"R");
    let env = AgentMsgEnvelope::RatchetKey {
        agent_version: 7,
        e2e: E2eRatchetParams {
            version: 3,
            key1: k1,
            key2: k2,
            kem: None,
        },
        info: info.clone(),
    };
    let wire = env.encode().unwrap();
    // agentVersion ‖ 'R' ‖ RcvE2ERatchetParams (version, shortString SPKI k1, k2, e2e v3:
    // Maybe KEM = '0') ‖ Tail info
    let mut want = vec![0, 7, b'R', 0, 3, 68];
    want.extend_from_slice(&k1.to_spki_der());
    want.push(68);
    want.extend_from_slice(&k2.to_spki_der());
    want.push(b'0');
    want.extend_from_slice(b"R");
    assert_eq!(wire, want);
    assert_eq!(AgentMsgEnvelope::decode(&wire).unwrap(), env);
    let _ = Parser::new(&wire);
}

// ---------------------------------------------------------------------------------------------
// hush ↔ hush over a real relay

async fn next_msg(rx: &mut AgentEvents, seen: &mut Vec<AgentEvent>, conn: i64) -> (i64, Vec<u8>) {
    wait_for(rx, seen, |e| match e {
        AgentEvent::Message {
            conn: c,
            msg_id,
            body,
            ..
        } if *c == conn => Some((*msg_id, body.clone())),
        _ => None,
    })
    .await
}

/// Sends `body` from `from` and waits for it at `to`, acknowledged with a receipt; waits for
/// the receipt at the sender. Returns the receiver's message id.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    from: &Agent,
    from_rx: &mut AgentEvents,
    from_conn: i64,
    to: &Agent,
    to_rx: &mut AgentEvents,
    to_conn: i64,
    body: &str,
    seen: &mut Vec<AgentEvent>,
) {
    let id = from.send(from_conn, body.as_bytes()).unwrap();
    let (mid, got) = next_msg(to_rx, seen, to_conn).await;
    assert_eq!(got, body.as_bytes());
    assert_eq!(mid, id);
    to.ack_with_receipt(to_conn, mid, b"ok").await.unwrap();
    wait_for(from_rx, seen, |e| {
        matches!(e, AgentEvent::Receipt { conn, msg_id, hash_ok: true } if *conn == from_conn && *msg_id == id)
            .then_some(())
    })
    .await;
}

/// Waits for a switch phase on one side.
async fn phase(
    rx: &mut AgentEvents,
    seen: &mut Vec<AgentEvent>,
    conn: i64,
    direction: QueueDirection,
    want: SwitchPhase,
) {
    seen_or_wait(rx, seen, |e| {
        matches!(e, AgentEvent::Switch { conn: c, direction: d, phase: p }
            if *c == conn && *d == direction && *p == want)
    })
    .await;
}

/// Like `wait_for`, but an event already collected in `seen` counts.
async fn seen_or_wait(
    rx: &mut AgentEvents,
    seen: &mut Vec<AgentEvent>,
    f: impl Fn(&AgentEvent) -> bool,
) {
    if seen.iter().any(&f) {
        return;
    }
    wait_for(rx, seen, |e| f(e).then_some(())).await;
}

/// The relay still has a queue (QUE on a fresh connection with the recipient key).
async fn relay_has_queue(
    server: &ProtocolServer,
    rcv_id: &[u8],
    key: &hush_client::AuthKey,
) -> bool {
    let (pool, _ev) = hush_client::SmpClientPool::tls(hush_client::PoolConfig::default()).unwrap();
    let c = pool.client(server).await.unwrap();
    let r = c.queue_info(rcv_id, key).await;
    pool.close().await;
    match r {
        Ok(_) => true,
        Err(hush_client::ClientError::Smp(hush_proto::error::ErrorType::Auth)) => false,
        Err(e) => panic!("QUE: {e}"),
    }
}

fn rcv_queues(db: &std::path::Path, conn: i64) -> Vec<hush_agent::store::RcvQueue> {
    let mut s = hush_agent::store::Store::open(db).unwrap();
    s.tx(|tx| tx.rcv_queues_of(conn)).unwrap()
}

/// One side rotates its receive queue while the other keeps sending: every message arrives
/// once and in order at the application, receipts work over the new queue, and the old queue
/// is gone at the relay. Then the other side rotates (both roles on both agents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_mid_conversation_both_roles() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a_db, b_db) = (db_path(dir.path(), "a"), db_path(dir.path(), "b"));
    let (a, mut a_rx) = open_agent(&a_db, relay.server()).await;
    let (b, mut b_rx) = open_agent(&b_db, relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    rotate_round(0, &a, &mut a_rx, a_conn, &a_db, &b, &mut b_rx, b_conn).await;
    rotate_round(1, &b, &mut b_rx, b_conn, &b_db, &a, &mut a_rx, a_conn).await;
    a.close().await;
    b.close().await;
}

/// x rotates its receive queue while y keeps sending.
#[allow(clippy::too_many_arguments)]
async fn rotate_round(
    round: usize,
    x: &Agent,
    x_rx: &mut AgentEvents,
    x_conn: i64,
    x_db: &std::path::Path,
    y: &Agent,
    y_rx: &mut AgentEvents,
    y_conn: i64,
) {
    let mut seen = Vec::new();
    let seen = &mut seen;
    // before
    for i in 0..3 {
        exchange(
            y,
            y_rx,
            y_conn,
            x,
            x_rx,
            x_conn,
            &format!("r{round} before {i}"),
            seen,
        )
        .await;
    }
    let old = a_or_b_queue(x, x_db, x_conn).await;
    // x rotates its receive queue; y keeps sending during the switch
    x.switch_queue(x_conn).await.unwrap();
    assert!(matches!(
        x.switch_queue(x_conn).await,
        Err(hush_agent::AgentError::State(_))
    ));
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(
            y.send(y_conn, format!("r{round} during {i}").as_bytes())
                .unwrap(),
        );
    }
    // x: the application sees the ten messages once, in order, and acknowledges them
    for (i, id) in ids.iter().enumerate() {
        let (mid, body) = next_msg(x_rx, seen, x_conn).await;
        assert_eq!(body, format!("r{round} during {i}").as_bytes());
        assert_eq!(mid, *id, "in order");
        x.ack(x_conn, mid).await.unwrap();
    }
    phase(
        x_rx,
        seen,
        x_conn,
        QueueDirection::Rcv,
        SwitchPhase::Completed,
    )
    .await;
    phase(
        y_rx,
        seen,
        y_conn,
        QueueDirection::Snd,
        SwitchPhase::Completed,
    )
    .await;
    // every phase was reported on both sides
    for (p, d) in [
        (SwitchPhase::Started, QueueDirection::Rcv),
        (SwitchPhase::Confirmed, QueueDirection::Rcv),
        (SwitchPhase::Secured, QueueDirection::Rcv),
        (SwitchPhase::Started, QueueDirection::Snd),
        (SwitchPhase::Secured, QueueDirection::Snd),
    ] {
        assert!(
            seen.iter().any(|e| matches!(e, AgentEvent::Switch { phase, direction, .. } if *phase == p && *direction == d)),
            "missing {p:?} {d:?}"
        );
    }
    // after: both directions, with receipts
    for i in 0..3 {
        exchange(
            y,
            y_rx,
            y_conn,
            x,
            x_rx,
            x_conn,
            &format!("r{round} after {i}"),
            seen,
        )
        .await;
        exchange(
            x,
            x_rx,
            x_conn,
            y,
            y_rx,
            y_conn,
            &format!("r{round} back {i}"),
            seen,
        )
        .await;
    }
    // no duplicates, no integrity errors on application messages
    assert!(
        !seen.iter().any(
            |e| matches!(e, AgentEvent::Message { integrity, .. } if *integrity != MsgIntegrity::Ok)
                || matches!(e, AgentEvent::Duplicate { .. } | AgentEvent::Error { .. })
        ),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|e| matches!(e, AgentEvent::Message { .. })),
        "a message was seen twice or out of place: {seen:?}"
    );
    seen.clear();
    // the old queue is gone, at the relay and locally; one new queue left
    let (old_server, old_rcv_id, old_key) = old;
    assert!(!relay_has_queue(&old_server, &old_rcv_id, &old_key).await);
    let now = a_or_b_queue(x, x_db, x_conn).await;
    assert_ne!(now.1, old_rcv_id);
    assert!(relay_has_queue(&now.0, &now.1, &now.2).await);
}

/// The single receive queue of a connection (read through a second store handle; WAL mode
/// allows it while the agent runs).
async fn a_or_b_queue(
    _agent: &Agent,
    db: &std::path::Path,
    conn: i64,
) -> (ProtocolServer, Vec<u8>, hush_client::AuthKey) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let qs = rcv_queues(db, conn);
        if qs.len() == 1 {
            let q = qs.into_iter().next().unwrap();
            return (q.server, q.rcv_id, q.rcv_key);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} queues",
            qs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn copy_db(from: &std::path::Path, to: &std::path::Path) {
    for ext in ["", "-wal", "-shm"] {
        let f = std::path::PathBuf::from(format!("{}{ext}", from.display()));
        let t = std::path::PathBuf::from(format!("{}{ext}", to.display()));
        if f.exists() {
            std::fs::copy(&f, &t).unwrap();
        } else {
            let _ = std::fs::remove_file(&t);
        }
    }
}

/// B's database is restored from a copy made before several messages: its ratchet is behind,
/// A's next message does not decrypt (header) → `Required`, sending refused; B re-synchronises
/// (`R` both ways, EREADY both ways), then messages and receipts flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_desync_then_resync() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a_db, b_db) = (db_path(dir.path(), "a"), db_path(dir.path(), "b"));
    let backup = db_path(dir.path(), "b-backup");
    let (a, mut a_rx) = open_agent(&a_db, relay.server()).await;
    let (b, mut b_rx) = open_agent(&b_db, relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;
    let mut seen = Vec::new();
    exchange(&a, &mut a_rx, a_conn, &b, &mut b_rx, b_conn, "1", &mut seen).await;

    // snapshot of B, then more traffic both ways (the ratchets step on)
    b.close().await;
    copy_db(&b_db, &backup);
    let (b, mut b_rx) = open_agent(&b_db, relay.server()).await;
    b.subscribe_all().await.unwrap();
    for i in 0..3 {
        exchange(
            &a,
            &mut a_rx,
            a_conn,
            &b,
            &mut b_rx,
            b_conn,
            &format!("a{i}"),
            &mut seen,
        )
        .await;
        exchange(
            &b,
            &mut b_rx,
            b_conn,
            &a,
            &mut a_rx,
            a_conn,
            &format!("b{i}"),
            &mut seen,
        )
        .await;
    }
    // B goes back in time
    b.close().await;
    copy_db(&backup, &b_db);
    let (b, mut b_rx) = open_agent(&b_db, relay.server()).await;
    b.subscribe_all().await.unwrap();
    assert_eq!(b.ratchet_sync_state(b_conn).unwrap(), RatchetSyncState::Ok);
    // nothing to re-sync yet: refused without force
    assert!(b.sync_ratchet(b_conn, false).is_err());

    a.send(a_conn, b"lost").unwrap();
    let (state, error) = wait_for(&mut b_rx, &mut seen, |e| match e {
        AgentEvent::RatchetSync { conn, state, error } if *conn == b_conn => {
            Some((*state, error.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!(state, RatchetSyncState::Required, "{error:?}");
    assert!(error.is_some());
    assert_eq!(
        b.ratchet_sync_state(b_conn).unwrap(),
        RatchetSyncState::Required
    );
    assert!(matches!(
        b.send(b_conn, b"refused"),
        Err(hush_agent::AgentError::State(_))
    ));

    // re-synchronise
    assert_eq!(
        b.sync_ratchet(b_conn, false).unwrap(),
        RatchetSyncState::Started
    );
    for (rx, conn) in [(&mut a_rx, a_conn), (&mut b_rx, b_conn)] {
        seen_or_wait(rx, &mut seen, |e| {
            matches!(e, AgentEvent::RatchetSync { conn: c, state: RatchetSyncState::Agreed, .. } if *c == conn)
        })
        .await;
        seen_or_wait(
            rx,
            &mut seen,
            |e| matches!(e, AgentEvent::EReady { conn: c, .. } if *c == conn),
        )
        .await;
    }
    seen.clear();
    for (agent, conn) in [(&a, a_conn), (&b, b_conn)] {
        let deadline = tokio::time::Instant::now() + WAIT;
        while agent.ratchet_sync_state(conn).unwrap() != RatchetSyncState::Ok {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // messages and receipts flow again, both ways
    for i in 0..3 {
        exchange(
            &a,
            &mut a_rx,
            a_conn,
            &b,
            &mut b_rx,
            b_conn,
            &format!("again a{i}"),
            &mut seen,
        )
        .await;
        exchange(
            &b,
            &mut b_rx,
            b_conn,
            &a,
            &mut a_rx,
            a_conn,
            &format!("again b{i}"),
            &mut seen,
        )
        .await;
    }
    // a repeated forced re-sync also works (A starts this time)
    a.sync_ratchet(a_conn, true).unwrap();
    for (rx, conn) in [(&mut a_rx, a_conn), (&mut b_rx, b_conn)] {
        seen_or_wait(
            rx,
            &mut seen,
            |e| matches!(e, AgentEvent::EReady { conn: c, .. } if *c == conn),
        )
        .await;
    }
    exchange(
        &a,
        &mut a_rx,
        a_conn,
        &b,
        &mut b_rx,
        b_conn,
        "after second sync",
        &mut seen,
    )
    .await;
    exchange(
        &b,
        &mut b_rx,
        b_conn,
        &a,
        &mut a_rx,
        a_conn,
        "after second sync",
        &mut seen,
    )
    .await;
    a.close().await;
    b.close().await;
}

/// A schema-2 database (made by the previous release's migrations) opens and is migrated:
/// its connection reads as in sync, its queues have no switch state.
#[test]
fn schema_2_database_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(SCHEMA_1_2).unwrap();
        db.pragma_update(None, "user_version", 2).unwrap();
        db.execute(
            "INSERT INTO connections (mode, status, agent_version, created_at) VALUES ('invitation', 'connected', 7, 0)",
            [],
        )
        .unwrap();
    }
    let mut s = hush_agent::store::Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), 3);
    let st = s.tx(|tx| tx.ratchet_sync(1)).unwrap();
    assert_eq!(st, RatchetSyncState::Ok);
    s.tx(|tx| tx.set_ratchet_sync(1, RatchetSyncState::Required))
        .unwrap();
    assert!(s.tx(|tx| tx.add_ratchet_key_hash(1, b"h")).unwrap());
    assert!(!s.tx(|tx| tx.add_ratchet_key_hash(1, b"h")).unwrap());
    drop(s);
    let mut s = hush_agent::store::Store::open(&path).unwrap();
    assert_eq!(
        s.tx(|tx| tx.ratchet_sync(1)).unwrap(),
        RatchetSyncState::Required
    );
    assert_eq!(
        s.tx(|tx| tx.current_snd_queue(1))
            .unwrap()
            .map(|q| q.snd_queue_id),
        None
    );
}

/// Schema versions 1 and 2 as they were released (copied from store.rs before version 3).
const SCHEMA_1_2: &str = r#"
CREATE TABLE connections (
  conn_id INTEGER PRIMARY KEY AUTOINCREMENT,
  mode TEXT NOT NULL,
  status TEXT NOT NULL,
  agent_version INTEGER NOT NULL,
  ratchet BLOB,
  x3dh_r1 BLOB,
  x3dh_r2 BLOB,
  last_snd_id INTEGER NOT NULL DEFAULT 0,
  last_snd_hash BLOB NOT NULL DEFAULT x'',
  last_rcv_id INTEGER NOT NULL DEFAULT 0,
  last_rcv_hash BLOB NOT NULL DEFAULT x'',
  peer_info BLOB,
  own_info BLOB,
  created_at INTEGER NOT NULL
);
CREATE TABLE rcv_queues (
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  server TEXT NOT NULL,
  rcv_id BLOB NOT NULL,
  snd_id BLOB NOT NULL,
  rcv_key BLOB NOT NULL,
  rcv_dh_secret BLOB NOT NULL,
  e2e_priv BLOB NOT NULL,
  e2e_secret BLOB,
  queue_mode TEXT NOT NULL,
  smp_client_version INTEGER NOT NULL,
  ntf_id BLOB,
  ntf_key BLOB,
  ntf_dh_secret BLOB,
  PRIMARY KEY (server, rcv_id)
);
CREATE INDEX rcv_queues_conn ON rcv_queues(conn_id);
CREATE TABLE snd_queues (
  snd_queue_id INTEGER PRIMARY KEY AUTOINCREMENT,
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  server TEXT NOT NULL,
  snd_id BLOB NOT NULL,
  snd_key BLOB NOT NULL,
  e2e_priv BLOB NOT NULL,
  e2e_secret BLOB NOT NULL,
  secured INTEGER NOT NULL,
  smp_client_version INTEGER NOT NULL,
  UNIQUE (server, snd_id)
);
CREATE TABLE outbox (
  outbox_id INTEGER PRIMARY KEY AUTOINCREMENT,
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  snd_queue_id INTEGER NOT NULL REFERENCES snd_queues(snd_queue_id) ON DELETE CASCADE,
  msg_id INTEGER NOT NULL,
  kind TEXT NOT NULL,
  body BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE rcv_msgs (
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  enc_hash BLOB NOT NULL,
  msg_id INTEGER NOT NULL,
  server TEXT NOT NULL,
  rcv_id BLOB NOT NULL,
  server_msg_id BLOB NOT NULL,
  body BLOB,
  acked INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (conn_id, enc_hash)
);
CREATE INDEX rcv_msgs_msg ON rcv_msgs(conn_id, msg_id);
CREATE TABLE contact_requests (
  request_id INTEGER PRIMARY KEY AUTOINCREMENT,
  address_conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  invitation TEXT NOT NULL,
  conn_info BLOB NOT NULL,
  created_at INTEGER NOT NULL
);
ALTER TABLE rcv_msgs ADD COLUMN msg_hash BLOB;
CREATE TABLE snd_msgs (
  conn_id INTEGER NOT NULL REFERENCES connections(conn_id) ON DELETE CASCADE,
  msg_id INTEGER NOT NULL,
  msg_hash BLOB NOT NULL,
  PRIMARY KEY (conn_id, msg_id)
);
"#;
