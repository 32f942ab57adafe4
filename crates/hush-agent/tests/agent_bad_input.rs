//! Bad input through the real relay: garbage, a corrupted ratchet message, a header under a
//! wrong key, a replayed chain position and an exactly repeated body. Each gives an error (or
//! duplicate) event, no panic, and leaves the receiver's ratchet state as it was; the
//! conversation continues afterwards.

mod common;

use common::*;
use hush_agent::envelope::{
    AGENT_VERSION, AMessage, AgentMessage, AgentMsgEnvelope, ClientMessage, ClientMsgEnvelope,
    E2E_ENC_AGENT_MSG_LEN, PrivHeader,
};
use hush_agent::ratchet::{Ratchet, RatchetVersions, x3dh_inviter, x3dh_joiner};
use hush_agent::store::{SndQueue, Store};
use hush_agent::{AgentEvent, AgentEvents, MsgIntegrity};
use hush_client::{ClientConfig, SmpClient};
use hush_crypto::{X448Secret, sha256};

fn ratchet_bytes(db: &std::path::Path, conn: i64) -> Vec<u8> {
    let mut s = Store::open(db).unwrap();
    s.tx(|tx| tx.connection(conn))
        .unwrap()
        .ratchet
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec()
}

/// A's send queue and ratchet, read from A's database (a second handle on the same file).
fn sender_state(db: &std::path::Path, conn: i64) -> (SndQueue, Ratchet, i64, Vec<u8>) {
    let mut s = Store::open(db).unwrap();
    s.tx(|tx| {
        let c = tx.connection(conn)?;
        let sq = tx.snd_queues_of(conn)?.pop().unwrap();
        Ok::<_, hush_agent::store::StoreError>((
            sq,
            c.ratchet.unwrap(),
            c.last_snd_id,
            c.last_snd_hash,
        ))
    })
    .unwrap()
}

fn seal(sq: &SndQueue, agent_env: Vec<u8>) -> Vec<u8> {
    ClientMsgEnvelope::seal(
        &sq.e2e_secret,
        sq.smp_client_version,
        None,
        &ClientMessage {
            header: PrivHeader::Empty,
            body: agent_env,
        },
    )
    .unwrap()
    .encode()
}

fn msg_envelope(enc: Vec<u8>) -> Vec<u8> {
    AgentMsgEnvelope::Msg {
        agent_version: AGENT_VERSION,
        enc_agent_message: enc,
    }
    .encode()
    .unwrap()
}

fn agent_msg(id: i64, prev: &[u8], body: &[u8]) -> Vec<u8> {
    AgentMessage::Message {
        snd_msg_id: id,
        prev_msg_hash: prev.to_vec(),
        msg: AMessage::AMsg(body.to_vec()),
    }
    .encode()
    .unwrap()
}

async fn next_interesting(rx: &mut AgentEvents) -> AgentEvent {
    let mut seen = Vec::new();
    wait_for(rx, &mut seen, |e| match e {
        AgentEvent::Error { .. } | AgentEvent::Duplicate { .. } | AgentEvent::Message { .. } => {
            Some(e.clone())
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_reported_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (db_a, db_b) = (db_path(dir.path(), "a"), db_path(dir.path(), "b"));
    let (a, mut a_rx) = open_agent(&db_a, relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_b, relay.server()).await;
    let (a_conn, b_conn) = connect_pair(&a, &mut a_rx, &b, &mut b_rx).await;

    // one real message first
    let id = a.send(a_conn, b"real 1").unwrap();
    match next_interesting(&mut b_rx).await {
        AgentEvent::Message { msg_id, body, .. } => {
            assert_eq!((msg_id, body.as_slice()), (id, &b"real 1"[..]));
            b.ack(b_conn, msg_id).await.unwrap();
        }
        e => panic!("{e:?}"),
    }

    let (client, _events) = SmpClient::connect(&relay.server(), ClientConfig::default())
        .await
        .unwrap();
    let (sq, a_ratchet, last_id, last_hash) = sender_state(&db_a, a_conn);
    let inject = |body: Vec<u8>| {
        let client = client.clone();
        let sq = sq.clone();
        async move {
            client
                .send(&sq.snd_id, Some(&sq.snd_key), false, &body)
                .await
                .unwrap()
        }
    };
    let before = ratchet_bytes(&db_b, b_conn);
    let expect_error = async |what: &str, body: Vec<u8>, rx: &mut AgentEvents| {
        inject(body).await;
        match next_interesting(rx).await {
            AgentEvent::Error { conn, .. } => assert_eq!(conn, Some(b_conn), "{what}"),
            e => panic!("{what}: expected an error event, got {e:?}"),
        }
        assert_eq!(
            ratchet_bytes(&db_b, b_conn),
            before,
            "{what}: state changed"
        );
    };

    // (1) not an envelope at all
    expect_error("garbage", vec![0x42; 300], &mut b_rx).await;
    // (2) a valid per-queue envelope around a garbage agent envelope
    expect_error(
        "bad agent envelope",
        seal(&sq, b"\x00\x07Zgarbage".to_vec()),
        &mut b_rx,
    )
    .await;
    // (3) a corrupted ratchet message (one byte of the body flipped)
    let mut fork = a_ratchet.clone();
    let mut enc = fork
        .encrypt(
            &agent_msg(last_id + 1, &last_hash, b"forged"),
            E2E_ENC_AGENT_MSG_LEN,
        )
        .unwrap();
    let n = enc.len();
    enc[n - 100] ^= 1;
    expect_error(
        "corrupted ratchet message",
        seal(&sq, msg_envelope(enc)),
        &mut b_rx,
    )
    .await;
    // (4) a header under a wrong key: a ratchet of an unrelated X3DH
    let (r1, r2, s1, s2) = (
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
    );
    let p = x3dh_joiner(&s1, &s2, &r1.public().unwrap(), &r2.public().unwrap()).unwrap();
    let _ = x3dh_inviter(&r1, &r2, &s1.public().unwrap(), &s2.public().unwrap()).unwrap();
    let v = RatchetVersions {
        current: 3,
        max_supported: 3,
    };
    let mut stranger = Ratchet::init_joiner(
        v,
        &r2.public().unwrap(),
        X448Secret::generate().unwrap(),
        &p,
    )
    .unwrap();
    let enc = stranger
        .encrypt(
            &agent_msg(last_id + 1, &last_hash, b"stranger"),
            E2E_ENC_AGENT_MSG_LEN,
        )
        .unwrap();
    expect_error(
        "header under a wrong key",
        seal(&sq, msg_envelope(enc)),
        &mut b_rx,
    )
    .await;

    // the real conversation is unaffected
    let id2 = a.send(a_conn, b"real 2").unwrap();
    match next_interesting(&mut b_rx).await {
        AgentEvent::Message {
            msg_id,
            body,
            integrity,
            ..
        } => {
            assert_eq!((msg_id, body.as_slice()), (id2, &b"real 2"[..]));
            assert_eq!(integrity, MsgIntegrity::Ok);
            b.ack(b_conn, msg_id).await.unwrap();
        }
        e => panic!("{e:?}"),
    }

    // (5) replay of a chain position: a valid message for the position "real 2" used
    let mut fork = a_ratchet.clone();
    let enc = fork
        .encrypt(
            &agent_msg(last_id + 1, &last_hash, b"replayed"),
            E2E_ENC_AGENT_MSG_LEN,
        )
        .unwrap();
    let before = ratchet_bytes(&db_b, b_conn);
    inject(seal(&sq, msg_envelope(enc))).await;
    assert_eq!(
        next_interesting(&mut b_rx).await,
        AgentEvent::Duplicate { conn: b_conn }
    );
    assert_eq!(ratchet_bytes(&db_b, b_conn), before);

    // B → A still works
    let id3 = b.send(b_conn, b"reply").unwrap();
    match next_interesting(&mut a_rx).await {
        AgentEvent::Message { msg_id, body, .. } => {
            assert_eq!((msg_id, body.as_slice()), (id3, &b"reply"[..]));
            a.ack(a_conn, msg_id).await.unwrap();
        }
        e => panic!("{e:?}"),
    }

    // (6) the same SEND body twice (a sender retry): delivered once, then a duplicate
    let (sq, mut a_ratchet, last_id, last_hash) = sender_state(&db_a, a_conn);
    let plain = agent_msg(last_id + 1, &last_hash, b"sent twice");
    let body = seal(
        &sq,
        msg_envelope(a_ratchet.encrypt(&plain, E2E_ENC_AGENT_MSG_LEN).unwrap()),
    );
    inject(body.clone()).await;
    match next_interesting(&mut b_rx).await {
        AgentEvent::Message { msg_id, body, .. } => {
            assert_eq!((msg_id, body.as_slice()), (last_id + 1, &b"sent twice"[..]));
            b.ack(b_conn, msg_id).await.unwrap();
        }
        e => panic!("{e:?}"),
    }
    let before = ratchet_bytes(&db_b, b_conn);
    inject(body).await;
    assert_eq!(
        next_interesting(&mut b_rx).await,
        AgentEvent::Duplicate { conn: b_conn }
    );
    assert_eq!(ratchet_bytes(&db_b, b_conn), before);

    // (7) integrity: a gap in the sender's ids, then a wrong previous-message hash
    let plain2 = agent_msg(last_id + 4, &sha256(&plain), b"after a gap");
    inject(seal(
        &sq,
        msg_envelope(a_ratchet.encrypt(&plain2, E2E_ENC_AGENT_MSG_LEN).unwrap()),
    ))
    .await;
    match next_interesting(&mut b_rx).await {
        AgentEvent::Message {
            msg_id, integrity, ..
        } => {
            assert_eq!(msg_id, last_id + 4);
            assert_eq!(
                integrity,
                MsgIntegrity::Skipped {
                    from: last_id + 2,
                    to: last_id + 3
                }
            );
            b.ack(b_conn, msg_id).await.unwrap();
        }
        e => panic!("{e:?}"),
    }
    let plain3 = agent_msg(last_id + 5, b"not the previous hash", b"bad hash");
    inject(seal(
        &sq,
        msg_envelope(a_ratchet.encrypt(&plain3, E2E_ENC_AGENT_MSG_LEN).unwrap()),
    ))
    .await;
    match next_interesting(&mut b_rx).await {
        AgentEvent::Message {
            msg_id, integrity, ..
        } => {
            assert_eq!((msg_id, integrity), (last_id + 5, MsgIntegrity::BadHash));
            b.ack(b_conn, msg_id).await.unwrap();
        }
        e => panic!("{e:?}"),
    }
    let plain4 = agent_msg(last_id + 2, &sha256(&plain3), b"old id");
    inject(seal(
        &sq,
        msg_envelope(a_ratchet.encrypt(&plain4, E2E_ENC_AGENT_MSG_LEN).unwrap()),
    ))
    .await;
    match next_interesting(&mut b_rx).await {
        AgentEvent::Message {
            msg_id, integrity, ..
        } => {
            assert_eq!(
                (msg_id, integrity),
                (last_id + 2, MsgIntegrity::BadId { last: last_id + 5 })
            );
            b.ack(b_conn, msg_id).await.unwrap();
        }
        e => panic!("{e:?}"),
    }

    client.close().await;
    a.close().await;
    b.close().await;
}

/// Anyone can send to a contact address (unsigned): garbage and malformed requests give error
/// events, and a real request still works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_address_rejects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, _b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (address, link) = a.create_contact_address().await.unwrap();
    let hush_proto::address::ConnectionRequestUri::Contact { data } =
        hush_proto::address::ConnectionRequestUri::parse(&link).unwrap()
    else {
        panic!("not a contact link")
    };
    let q = &data.smp_queues[0];
    let (client, _events) = SmpClient::connect(&q.server, ClientConfig::default())
        .await
        .unwrap();
    let send = |body: Vec<u8>| {
        let client = client.clone();
        let sid = q.sender_id.clone();
        async move { client.send(&sid, None, false, &body).await.unwrap() }
    };
    let expect_error = async |rx: &mut AgentEvents, what: &str| match next_interesting(rx).await {
        AgentEvent::Error { conn, .. } => assert_eq!(conn, Some(address), "{what}"),
        e => panic!("{what}: expected an error, got {e:?}"),
    };
    // (1) garbage
    send(vec![1; 100]).await;
    expect_error(&mut a_rx, "garbage").await;
    // (2) a well-sealed request whose "invitation" is a contact link
    let eph = hush_crypto::X25519Secret::generate();
    let dh = hush_crypto::X25519Public::from_spki_der(&q.dh_public_key).unwrap();
    let env = AgentMsgEnvelope::Invitation {
        agent_version: 7,
        conn_req: link.clone(),
        conn_info: b"evil".to_vec(),
    };
    // the encoder does not validate; the receiver must
    let sealed = ClientMsgEnvelope::seal(
        &eph.dh(&dh),
        4,
        Some(eph.public()),
        &ClientMessage {
            header: PrivHeader::Empty,
            body: env.encode().unwrap(),
        },
    )
    .unwrap()
    .encode();
    send(sealed).await;
    expect_error(&mut a_rx, "contact link inside a request").await;
    // (3) a real request
    b.join(&link, b"real bob").await.unwrap();
    let mut seen = Vec::new();
    let info = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::ContactRequest { conn_info, .. } => Some(conn_info.clone()),
        _ => None,
    })
    .await;
    assert_eq!(info, b"real bob");
    client.close().await;
    a.close().await;
    b.close().await;
}
