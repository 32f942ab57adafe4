//! §8.1 "Persistence": restart restores queues (secured state, notifier) and undelivered messages;
//! deleted queues stay deleted; without a store log nothing survives; SIGKILL of the real binary
//! loses nothing that was acknowledged; a corrupt store file stops the server with a clear message.

mod common;

use common::*;
use hush_crypto::X25519Public;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command};

async fn sub(r: &mut TestClient, q: &Queue) {
    let corr = random_corr();
    r.send(Some(&q.rcv_key), &corr, &q.rcv_id, &Command::Sub)
        .await;
    assert_eq!(r.response_to(&corr).await, BrokerMsg::Sok(None));
}

#[tokio::test]
async fn restart_restores_queues_notifiers_and_messages() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let cfg = test_config(&paths);
    let server = TestServer::start(cfg.clone()).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    let q = new_queue_with(
        &mut r,
        AuthKey::ed25519(),
        NewOpts {
            ntf: true,
            subscribe: false,
            ..Default::default()
        },
    )
    .await;
    let sk = AuthKey::ed25519();
    assert_eq!(
        s.cmd(Some(&sk), &q.snd_id, Command::SKey(sk.public_der()))
            .await,
        BrokerMsg::Ok
    );
    assert_eq!(
        s.cmd(Some(&sk), &q.snd_id, send_cmd(b"kept", true)).await,
        BrokerMsg::Ok
    );
    let gone = new_queue(&mut r).await;
    assert_eq!(
        r.cmd(Some(&gone.rcv_key), &gone.rcv_id, Command::Del).await,
        BrokerMsg::Ok
    );
    server.stop().await;

    let server = TestServer::start(cfg).await;
    let mut r = server.connect().await;
    let mut s = server.connect().await;
    // the secured state survived: unsigned SEND refused, signed accepted
    assert_err(
        &s.cmd(None, &q.snd_id, send_cmd(b"x", false)).await,
        ErrorType::Auth,
    );
    sub(&mut r, &q).await;
    let (id, body) = q.body(&r.event().await.1);
    assert_eq!(body, b"kept");
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        BrokerMsg::Ok
    );
    // notifier survived: NSUB works, and the pending notification from before is delivered
    let (nk, ndh) = q.ntf.clone().unwrap();
    let mut n = server.connect().await;
    assert_eq!(
        n.cmd(Some(&nk), &q.notifier_id(), Command::NSub).await,
        BrokerMsg::Sok(None)
    );
    let (e, m) = n.event().await;
    assert_eq!(e, q.notifier_id());
    let BrokerMsg::NMsg { nonce, enc_meta } = m else {
        panic!("{m:?}")
    };
    let creds = q.ids.server_ntf_creds.clone().unwrap();
    let secret = ndh.dh(&X25519Public::from_spki_der(creds.srv_ntf_dh_key.as_bytes()).unwrap());
    let meta = hush_crypto::decrypt_nmsg_meta(&secret, &nonce, enc_meta.as_bytes()).unwrap();
    assert_eq!(&meta[1..25], id.as_slice());
    // the deleted queue stays deleted
    assert_err(
        &r.cmd(Some(&gone.rcv_key), &gone.rcv_id, Command::Sub).await,
        ErrorType::Auth,
    );
    assert_err(
        &s.cmd(None, &gone.snd_id, send_cmd(b"x", false)).await,
        ErrorType::Auth,
    );
    server.stop().await;
}

#[tokio::test]
async fn without_store_log_nothing_survives() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut cfg = test_config(&paths);
    cfg.store.enable = false;
    let server = TestServer::start(cfg.clone()).await;
    let mut r = server.connect().await;
    let q = new_queue(&mut r).await;
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Off).await,
        BrokerMsg::Ok
    );
    server.stop().await;
    assert!(!cfg.store.path.exists(), "memory store writes no file");
    let server = TestServer::start(cfg).await;
    let mut r = server.connect().await;
    assert_err(
        &r.cmd(Some(&q.rcv_key), &q.rcv_id, Command::Sub).await,
        ErrorType::Auth,
    );
    server.stop().await;
}

#[tokio::test]
async fn binary_sigkill_and_sigterm_keep_acknowledged_messages() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    ini_for_binary(&paths, &[]);
    let bin = BinaryServer::start(&paths);
    let mut r = bin.connect().await;
    let mut s = bin.connect().await;
    let q = new_queue_with(
        &mut r,
        AuthKey::ed25519(),
        NewOpts {
            subscribe: false,
            ..Default::default()
        },
    )
    .await;
    for i in 0..5u8 {
        assert_eq!(
            s.cmd(None, &q.snd_id, send_cmd(&[i], false)).await,
            BrokerMsg::Ok
        );
    }
    drop((r, s));
    bin.sigkill();

    let bin = BinaryServer::start(&paths);
    let mut r = bin.connect().await;
    let mut s = bin.connect().await;
    sub(&mut r, &q).await;
    let (id0, b0) = q.body(&r.event().await.1);
    assert_eq!(b0, [0]);
    let (id1, b1) = q.body(&r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id0)).await);
    assert_eq!(b1, [1]);
    assert_eq!(
        s.cmd(None, &q.snd_id, send_cmd(&[5], false)).await,
        BrokerMsg::Ok
    );
    drop((r, s));
    let status = bin.sigterm();
    assert!(status.success(), "graceful stop exits 0, got {status:?}");

    let bin = BinaryServer::start(&paths);
    let mut r = bin.connect().await;
    sub(&mut r, &q).await;
    // [1] was delivered but not acknowledged: it comes again, then 2..5
    let (mut id, b) = q.body(&r.event().await.1);
    assert_eq!(b, [1]);
    assert_eq!(id, id1);
    for expect in 2..=5u8 {
        let (nid, b) = q.body(&r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await);
        assert_eq!(b, [expect]);
        id = nid;
    }
    assert_eq!(
        r.cmd(Some(&q.rcv_key), &q.rcv_id, ack(&id)).await,
        BrokerMsg::Ok
    );
    bin.sigkill();
}

#[test]
fn corrupt_store_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    ini_for_binary(&paths, &[]);
    std::fs::create_dir_all(&paths.data_dir).unwrap();
    let db = paths.data_dir.join(smp_server::config::STORE_FILE);
    std::fs::write(
        &db,
        b"this is not a sqlite database, just garbage bytes....",
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .arg("--config-dir")
        .arg(&paths.config_dir)
        .arg("--data-dir")
        .arg(&paths.data_dir)
        .arg("start")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the message store"), "{err}");
    assert!(err.contains("not a SQLite database"), "{err}");
    // the file was left untouched
    assert_eq!(
        std::fs::read(&db).unwrap(),
        b"this is not a sqlite database, just garbage bytes...."
    );
}

#[test]
fn start_initializes_on_first_run() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("cfg");
    let data_dir = dir.path().join("data");
    // First run of a fresh directory: `start` initializes, then serves (on the default port,
    // which may be taken on this machine; only the initialization is checked here).
    let mut child = std::process::Command::new(binary())
        .arg("--config-dir")
        .arg(&config_dir)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("start")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut saw_address = false;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.starts_with("Server address: smp://") {
            saw_address = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(saw_address);
    assert!(config_dir.join("smp-server.ini").exists());
    assert!(config_dir.join("fingerprint").exists());
}
