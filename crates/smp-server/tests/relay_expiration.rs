//! §8.1 "Expiration, blocking" (not short links).

mod common;

use std::time::Duration;

use common::*;
use hush_proto::error::{BlockingInfo, BlockingReason, ErrorType};
use hush_proto::smp::{BrokerMsg, Command};
use smp_server::server::RelayOptions;

async fn start(
    ttl: Duration,
    on_send: bool,
    interval: Duration,
) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut cfg = test_config(&paths);
    cfg.store.message_expiration = ttl;
    cfg.store.expire_messages_on_send = on_send;
    let opts = RelayOptions {
        expire_interval: interval,
        ..Default::default()
    };
    let s = TestServer::start_with(cfg, opts).await;
    (dir, s)
}

async fn sub(r: &mut TestClient, q: &Queue) {
    let corr = random_corr();
    r.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub)
        .await;
    assert_eq!(r.response_to(&corr).await, BrokerMsg::Sok(None));
}

fn unsubscribed() -> NewOpts {
    NewOpts {
        subscribe: false,
        ..Default::default()
    }
}

#[tokio::test]
async fn expire_on_send_drops_old_message() {
    let (_d, server) = start(Duration::from_secs(1), true, Duration::from_secs(3600)).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue_with(&mut r, AuthKey::ed25519(), unsubscribed()).await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"old", false)).await,
        BrokerMsg::Ok
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"new", false)).await,
        BrokerMsg::Ok
    );
    sub(&mut r, &q).await;
    let (id, body) = q.body(&r.event().await.1);
    assert_eq!(body, b"new");
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        BrokerMsg::Ok
    );
    server.stop().await;
}

#[tokio::test]
async fn periodic_expiry_removes_old_message() {
    let (_d, server) = start(Duration::from_secs(1), false, Duration::from_secs(1)).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue_with(&mut r, AuthKey::ed25519(), unsubscribed()).await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"old", false)).await,
        BrokerMsg::Ok
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    sub(&mut r, &q).await;
    r.expect_nothing(Duration::from_millis(300)).await;
    server.stop().await;
}

#[tokio::test]
async fn long_interval_keeps_old_message() {
    let (_d, server) = start(Duration::from_secs(1), false, Duration::from_secs(3600)).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue_with(&mut r, AuthKey::ed25519(), unsubscribed()).await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"old", false)).await,
        BrokerMsg::Ok
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"new", false)).await,
        BrokerMsg::Ok
    );
    sub(&mut r, &q).await;
    let (_, body) = q.body(&r.event().await.1);
    assert_eq!(body, b"old");
    server.stop().await;
}

#[tokio::test]
async fn blocked_queue_via_control_port() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut cfg = test_config(&paths);
    cfg.transport.control_port = Some(0);
    cfg.auth.control_port_admin_password =
        Some(smp_server::config::BasicAuth::new("adminpw").unwrap());
    let server = TestServer::start(cfg).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue(&mut r).await;
    let sid = hush_proto::encoding::base64url_encode(&q.snd_id);
    let ctl = server.control_addr.unwrap();
    let out = control(
        ctl,
        &[
            "auth adminpw",
            &format!("block {sid} reason=content,notice={{\"ttl\":3600}}"),
            &format!("status {sid}"),
        ],
    )
    .await;
    assert!(
        out.contains("blocked reason=content,notice={\"ttl\":3600}"),
        "{out}"
    );
    let blocked = ErrorType::Blocked(BlockingInfo {
        reason: BlockingReason::Content,
        notice: Some("{\"ttl\":3600}".into()),
    });
    let sk = AuthKey::ed25519();
    assert_err(
        &s.cmd(Some(&sk), &q.snd_id, Command::SKey(sk.public_der()))
            .await,
        blocked.clone(),
    );
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(b"x", false)).await,
        blocked.clone(),
    );
    assert_err(
        &r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Sub).await,
        blocked.clone(),
    );
    // OFF still works on a blocked queue
    let out = control(
        ctl,
        &[
            "auth adminpw",
            &format!("unblock {sid}"),
            &format!("status {sid}"),
        ],
    )
    .await;
    assert!(out.contains("active"), "{out}");
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(b"after", false)).await,
        BrokerMsg::Ok
    );
    assert_eq!(q.body(&r.event().await.1).1, b"after");
    // delete via the control port: DELD to the subscriber
    let out = control(ctl, &["auth adminpw", &format!("delete {sid}"), "stats"]).await;
    assert!(out.contains("queues: 0"), "{out}");
    assert_eq!(r.event().await, (q.rcv_id.clone(), BrokerMsg::Deld));
    let out = control(ctl, &["auth adminpw", "clients"]).await;
    assert!(out.contains("clientId,version"), "{out}");
    server.stop().await;
}

/// `save` says what the running relay's store is and that there is nothing to write; a user
/// cannot run it.
#[tokio::test]
async fn save_reports_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut cfg = test_config(&paths);
    assert!(cfg.store.enable && cfg.store.database.is_none());
    cfg.transport.control_port = Some(0);
    cfg.auth.control_port_admin_password =
        Some(smp_server::config::BasicAuth::new("adminpw").unwrap());
    cfg.auth.control_port_user_password =
        Some(smp_server::config::BasicAuth::new("userpw").unwrap());
    let server = TestServer::start(cfg).await;
    let ctl = server.control_addr.unwrap();
    let out = control(ctl, &["auth adminpw", "save"]).await;
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with(
            "nothing to save: the store is SQLite (sync = full), every change is committed"
        ),
        "{out}"
    );
    let out = control(ctl, &["auth userpw", "save"]).await;
    assert_eq!(out.lines().last(), Some("AUTH"), "{out}");
    server.stop().await;
}

async fn control(addr: std::net::SocketAddr, lines: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut text = lines.join("\n");
    text.push_str("\nquit\n");
    c.write_all(text.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, c.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}
