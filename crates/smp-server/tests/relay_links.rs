//! §8.1 short links (v15): invitation (messaging queue) and contact links.

mod common;

use common::*;
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::smp::{BrokerMsg, Command, NewQueueReq, QueueMode, QueueReqData, SubscriptionMode};

async fn server() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let s = TestServer::start(test_config(&paths)).await;
    (dir, s)
}

fn new_with(key: &AuthKey, dh: &hush_crypto::X25519Secret, data: QueueReqData) -> Command {
    Command::New(NewQueueReq {
        rcv_auth_key: key.public_der(),
        rcv_dh_key: dh_der(dh),
        basic_auth: None,
        sub_mode: SubscriptionMode::OnlyCreate,
        queue_req_data: Some(data),
        ntf_creds: None,
    })
}

#[tokio::test]
async fn invitation_link() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let key = AuthKey::ed25519();
    let dh = hush_crypto::X25519Secret::generate();
    let data = link_data(b"fixed part", b"user part");
    // a sender id not derived from the corrId
    let bad = new_with(
        &key,
        &dh,
        QueueReqData::Messaging(Some((ss(&[1; 24]), data.clone()))),
    );
    assert_err(
        &r.cmd(Some(&key), &[], bad).await,
        ErrorType::Cmd(CommandError::Prohibited),
    );
    // correct: first 24 bytes of SHA3-384(corrId)
    let corr = random_corr();
    let sid = hush_crypto::sender_id_from_corr_id(&corr);
    let cmd = new_with(
        &key,
        &dh,
        QueueReqData::Messaging(Some((ss(&sid), data.clone()))),
    );
    r.send(Some(&key), &corr, &[], &cmd).await;
    let BrokerMsg::Ids(ids) = r.response_to(&corr).await else {
        panic!()
    };
    assert_eq!(ids.snd_id.as_bytes(), sid);
    assert_eq!(ids.queue_mode, Some(QueueMode::Messaging));
    let lid = ids.link_id.clone().expect("link id").as_bytes().to_vec();
    let rid = ids.rcv_id.as_bytes().to_vec();
    // unsigned LGET on an invitation → AUTH
    assert_err(&s.cmd(None, &lid, Command::LGet).await, ErrorType::Auth);
    // LSET before securing → OK
    let data2 = link_data(b"fixed part", b"user part 2");
    let lset = |id: &[u8], d| Command::LSet {
        link_id: ss(id),
        data: d,
    };
    assert_eq!(
        r.cmd(Some(&key), &rid, lset(&lid, data2.clone())).await,
        BrokerMsg::Ok
    );
    let sk = AuthKey::ed25519();
    assert_err(
        &s.cmd(None, &lid, Command::LKey(sk.public_der())).await,
        ErrorType::Cmd(CommandError::NoAuth),
    );
    assert_err(
        &s.cmd(
            Some(&AuthKey::ed25519()),
            &lid,
            Command::LKey(sk.public_der()),
        )
        .await,
        ErrorType::Auth,
    );
    assert_err(
        &s.cmd(Some(&sk), &rid, Command::LKey(sk.public_der())).await,
        ErrorType::Auth,
    );
    let expect = BrokerMsg::Lnk {
        sender_id: ss(&sid),
        data: data2.clone(),
    };
    assert_eq!(
        s.cmd(Some(&sk), &lid, Command::LKey(sk.public_der())).await,
        expect
    );
    let other = AuthKey::ed25519();
    assert_err(
        &s.cmd(Some(&other), &lid, Command::LKey(other.public_der()))
            .await,
        ErrorType::Auth,
    );
    assert_eq!(
        s.cmd(Some(&sk), &lid, Command::LKey(sk.public_der())).await,
        expect
    );
    // secured now: LSET → AUTH; LDEL → OK
    assert_err(
        &r.cmd(Some(&key), &rid, lset(&lid, data2)).await,
        ErrorType::Auth,
    );
    assert_eq!(r.cmd(Some(&key), &rid, Command::LDel).await, BrokerMsg::Ok);
    assert_err(
        &s.cmd(Some(&sk), &lid, Command::LKey(sk.public_der())).await,
        ErrorType::Auth,
    );
    // the queue works with the key set by LKEY
    assert_eq!(
        s.cmd(Some(&sk), &sid, send_cmd(b"via link", false)).await,
        BrokerMsg::Ok
    );
    server.stop().await;
}

#[tokio::test]
async fn contact_link() {
    let (_d, server) = server().await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let key = AuthKey::ed25519();
    let dh = hush_crypto::X25519Secret::generate();
    let data = link_data(b"contact fixed", b"profile");
    let lid = [42u8; 24];
    let corr = random_corr();
    let sid = hush_crypto::sender_id_from_corr_id(&corr);
    let cmd = new_with(
        &key,
        &dh,
        QueueReqData::Contact(Some((ss(&lid), ss(&sid), data.clone()))),
    );
    r.send(Some(&key), &corr, &[], &cmd).await;
    let BrokerMsg::Ids(ids) = r.response_to(&corr).await else {
        panic!()
    };
    assert_eq!(
        ids.link_id.as_ref().unwrap().as_bytes(),
        lid,
        "client-chosen link id echoed"
    );
    assert_eq!(ids.queue_mode, Some(QueueMode::Contact));
    let rid = ids.rcv_id.as_bytes().to_vec();
    let sk = AuthKey::ed25519();
    assert_err(
        &s.cmd(Some(&sk), &lid, Command::LKey(sk.public_der())).await,
        ErrorType::Auth,
    );
    assert_err(
        &s.cmd(Some(&sk), &lid, Command::LGet).await,
        ErrorType::Cmd(CommandError::HasAuth),
    );
    assert_err(&s.cmd(None, &rid, Command::LGet).await, ErrorType::Auth);
    assert_eq!(
        s.cmd(None, &lid, Command::LGet).await,
        BrokerMsg::Lnk {
            sender_id: ss(&sid),
            data: data.clone()
        }
    );
    let lset = |id: &[u8], d| Command::LSet {
        link_id: ss(id),
        data: d,
    };
    let updated = link_data(b"contact fixed", b"new profile");
    assert_eq!(
        r.cmd(Some(&key), &rid, lset(&lid, updated.clone())).await,
        BrokerMsg::Ok
    );
    assert_eq!(
        s.cmd(None, &lid, Command::LGet).await,
        BrokerMsg::Lnk {
            sender_id: ss(&sid),
            data: updated.clone()
        }
    );
    assert_err(
        &r.cmd(Some(&key), &rid, lset(&[43; 24], updated)).await,
        ErrorType::Auth,
    );
    assert_err(
        &r.cmd(Some(&key), &rid, lset(&lid, link_data(b"changed", b"x")))
            .await,
        ErrorType::Auth,
    );
    assert_eq!(r.cmd(Some(&key), &rid, Command::LDel).await, BrokerMsg::Ok);
    assert_eq!(r.cmd(Some(&key), &rid, Command::LDel).await, BrokerMsg::Ok);
    assert_err(&s.cmd(None, &lid, Command::LGet).await, ErrorType::Auth);
    // contact queues take unsigned SENDs
    assert_eq!(
        s.cmd(None, &sid, send_cmd(b"request", false)).await,
        BrokerMsg::Ok
    );
    server.stop().await;
}
