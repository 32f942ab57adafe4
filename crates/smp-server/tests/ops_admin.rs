//! `spawn_admin`: the metrics endpoint and the control port started from a `Config`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use smp_server::control::{BlockingInfo, ControlHandler, ControlReply, SenderId};
use smp_server::{Config, Metrics, ServerPaths, spawn_admin};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Stats;

impl ControlHandler for Stats {
    async fn stats(&self) -> ControlReply {
        Ok(vec!["qCreated: 1".into()])
    }
    async fn clients(&self) -> ControlReply {
        Err("not here".into())
    }
    async fn status(&self, _: SenderId) -> ControlReply {
        Err("not here".into())
    }
    async fn block(&self, _: SenderId, _: BlockingInfo) -> ControlReply {
        Err("not here".into())
    }
    async fn unblock(&self, _: SenderId) -> ControlReply {
        Err("not here".into())
    }
    async fn delete(&self, _: SenderId) -> ControlReply {
        Err("not here".into())
    }
    async fn save(&self) -> ControlReply {
        Err("not here".into())
    }
}

fn config(text: &str) -> Config {
    let paths = ServerPaths {
        config_dir: PathBuf::from("/nonexistent"),
        data_dir: PathBuf::from("/nonexistent"),
    };
    Config::parse(text.as_bytes(), Path::new("test.ini"), paths)
        .unwrap()
        .0
}

#[tokio::test]
async fn starts_what_the_config_enables() {
    let cfg = config(
        "[METRICS]\nenable = on\naddress = 127.0.0.1:0\n\
         [TRANSPORT]\ncontrol_port = 0\n\
         [AUTH]\ncontrol_port_user_password = u-pw\n",
    );
    let metrics = Metrics::new();
    metrics.queues_created.inc_by(11);
    let (trigger, shutdown) = smp_server::shutdown_channel();
    let admin = spawn_admin(&cfg, &metrics, Arc::new(Stats), &shutdown)
        .await
        .unwrap();
    let maddr = admin.metrics_addr.unwrap();
    let caddr = admin.control_addr.unwrap();
    assert!(maddr.ip().is_loopback() && maddr.port() != 0);
    assert!(caddr.ip().is_loopback() && caddr.port() != 0);

    let mut s = TcpStream::connect(maddr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.contains("\nsimplex_smp_queues_created 11\n"), "{body}");

    let s = TcpStream::connect(caddr).await.unwrap();
    let (rd, mut wr) = s.into_split();
    let mut rd = BufReader::new(rd);
    wr.write_all(b"auth u-pw\nstats\nquit\n").await.unwrap();
    let mut lines = Vec::new();
    let mut l = String::new();
    while rd.read_line(&mut l).await.unwrap() > 0 {
        lines.push(l.trim_end().to_string());
        l.clear();
    }
    assert_eq!(
        lines,
        [
            "SMP server control port",
            "'help' for supported commands",
            "Current role is CPRUser",
            "qCreated: 1"
        ]
    );

    trigger.trigger();
    for t in admin.tasks {
        tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .expect("task did not stop")
            .unwrap();
    }
}

#[tokio::test]
async fn nothing_starts_when_disabled_and_bind_errors_are_reported() {
    let (_trigger, shutdown) = smp_server::shutdown_channel();
    let admin = spawn_admin(&config(""), &Metrics::new(), Arc::new(Stats), &shutdown)
        .await
        .unwrap();
    assert!(admin.metrics_addr.is_none() && admin.control_addr.is_none());
    assert!(admin.tasks.is_empty());

    // A port that is taken: a Bind error naming the address.
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = config(&format!(
        "[METRICS]\nenable = on\naddress = 127.0.0.1:{port}\n"
    ));
    let err = spawn_admin(&cfg, &Metrics::new(), Arc::new(Stats), &shutdown)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}
