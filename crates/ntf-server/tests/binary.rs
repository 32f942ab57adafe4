//! The `ntf-server` binary: `init` (Ed448 certificates by default, ini), `start` with the
//! push-server as a separate server over the network (`[PUSH] mode = remote`) and with the
//! push-server in the same process (`mode = in_process`), `delete`.

#[path = "common/binary.rs"]
mod binary;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use binary::{Sink, ntf_command, push_dir, register, sink_with_topics, start};
use common::*;
use hush_proto::ntf::{NtfCommand, NtfResponse};

async fn sink() -> Sink {
    sink_with_topics(&[]).await
}

fn ntf_init(dir: &Path) -> (PathBuf, PathBuf) {
    let (etc, var, text) = binary::ntf_init(dir);
    assert!(text.contains("Fingerprint: "), "{text}");
    // Ed448 by default, like the reference's `ntf-server init`
    let pem = std::fs::read(etc.join("ca.crt")).unwrap();
    let ca = openssl::x509::X509::from_pem(&pem).unwrap();
    assert_eq!(ca.public_key().unwrap().id(), openssl::pkey::Id::ED448);
    (etc, var)
}

fn set_ini(etc: &Path, extra: &str) {
    let ini = etc.join("ntf-server.ini");
    let text = std::fs::read_to_string(&ini).unwrap();
    let text = text.replace("[TRANSPORT]\n", "[TRANSPORT]\nbind = 127.0.0.1\n");
    // the test relay listens on 127.0.0.1
    let text = text.replace(
        "relay_destinations = public",
        "relay_destinations = loopback",
    );
    std::fs::write(&ini, format!("{text}\n{extra}")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_with_remote_push_server() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let s = sink().await;
    let pdir = dir.path().join("push");
    std::fs::create_dir_all(&pdir).unwrap();
    let cred = push_dir(&pdir, &s);
    let (pcfg, _) = push_server::config::Config::load(&pdir).unwrap();
    let push = push_server::cli::start(&pcfg).await.unwrap();
    let fp = std::fs::read_to_string(pdir.join("fingerprint")).unwrap();

    let (etc, var) = ntf_init(dir.path());
    set_ini(
        &etc,
        &format!(
            "[PUSH]\nmode = remote\nhost = 127.0.0.1\nport = {}\nfingerprint = {}\ncredential = {cred}\n",
            push.addr.port(),
            fp.trim()
        ),
    );
    let r = start(&etc, &var, false);
    let (mut c, d) = register(r.addr, &r.fp, &s, 31).await;

    // a relay, a queue, SNEW, SEND → message push through the network gateway
    let relay = Relay::start(relay_config(dir.path())).await;
    let smp = relay.client().await;
    let q = Queue::new(&smp, &relay.server).await;
    let (_, resp) = c.cmd(Some(&d.key), b"", &q.snew(&d.token_id)).await;
    let NtfResponse::SubId { sub_id } = resp else {
        panic!("{resp:?}")
    };
    wait_sub(&mut c, &d, &sub_id, hush_proto::ntf::SubStatus::Active).await;
    send(&smp, &q, b"over the network").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let items = loop {
        let got = s.sink.received_for(&d.token_hex);
        if got.len() >= 2 {
            break last_message_items(&d, &got);
        }
        assert!(tokio::time::Instant::now() < deadline, "no message push");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    fetch_and_check(&smp, &q, items.last().unwrap()).await;
    drop(r);
    relay.stop().await;
    push.stop().await;

    // delete
    let out = ntf_command(&etc, &var)
        .args(["delete", "-y"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!etc.join("ntf-server.ini").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_with_in_process_push_server() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let s = sink().await;
    let pdir = dir.path().join("push");
    std::fs::create_dir_all(&pdir).unwrap();
    push_dir(&pdir, &s);
    let (etc, var) = ntf_init(dir.path());
    set_ini(
        &etc,
        &format!(
            "[PUSH]\nmode = in_process\nconfig_dir = {}\n",
            pdir.display()
        ),
    );
    let r = start(&etc, &var, false);
    let (mut c, d) = register(r.addr, &r.fp, &s, 32).await;
    let (_, resp) = c.cmd(Some(&d.key), &d.token_id, &NtfCommand::Tchk).await;
    assert_eq!(resp, NtfResponse::Tkn(hush_proto::ntf::TokenStatus::Active));
    // without a push configuration the binary refuses to start (init writes one in
    // `<config dir>/push`: removed here)
    let bare = tempfile::tempdir().unwrap();
    let (etc2, var2) = ntf_init(bare.path());
    std::fs::remove_dir_all(etc2.join("push")).unwrap();
    let out = ntf_command(&etc2, &var2).arg("start").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("config_dir"));
}
