//! The packaged Grafana dashboard and Prometheus alert rules (packaging/grafana, packaging/
//! prometheus) only use push-server metrics the real `push-server` binary exports. Its labelled
//! families appear only once something was counted in them, so the test makes each happen on a
//! running binary (APNs test endpoint = an apns-sink): a push delivered, one refused by the
//! provider (BadDeviceToken), one retried (503 once), connections beyond
//! max_connections_per_ip; then it scrapes `/metrics` and looks up every `push_*` name the
//! packaged files use.

mod common;
#[path = "../../../packaging/metric_names.rs"]
mod metric_names;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apns_sink::FailureMode;
use hush_server_common::test_support::{after, spawn_lines, wait_for_lines};
use push_server::PushGateway;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_metrics_are_exported_by_the_push_server() {
    let env = common::sink().await;
    let (dir, fp, credential) = common::push_server_dir(&env, 50);
    let ini = dir.path().join("push-server.ini");
    let t = std::fs::read_to_string(&ini).unwrap();
    let port0 = "[METRICS]\nenable = on\nhost = 127.0.0.1\nport = 0\n";
    assert!(t.contains(port0), "{t}");
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metric_names::free_port()));
    let t = t.replace(
        port0,
        &format!(
            "[METRICS]\nenable = on\nhost = 127.0.0.1\nport = {}\n",
            metrics.port()
        ),
    );
    std::fs::write(&ini, format!("{t}[LIMITS]\nmax_connections_per_ip = 2\n")).unwrap();

    let (child, rx) = spawn_lines(
        Command::new(env!("CARGO_BIN_EXE_push-server"))
            .arg("--dir")
            .arg(dir.path())
            .arg("start")
            .env_remove("PUSH_SERVER_DIR")
            .env_remove("RUST_LOG")
            .stderr(Stdio::null()),
    );
    let addr: std::net::SocketAddr = wait_for_lines(&rx, Duration::from_secs(20), |line| {
        after(line, "push-server listening on ")
    })
    .expect("push-server did not start");

    env.sink
        .set_failure(&common::token(2), FailureMode::BadDeviceToken, None);
    env.sink
        .set_failure(&common::token(3), FailureMode::ServiceUnavailable, Some(1));
    let gw = common::remote(addr, fp, Some(credential));
    for n in 1..=3 {
        gw.submit(common::check_job(&common::token(n)))
            .await
            .unwrap();
    }
    // beyond max_connections_per_ip = 2 (the gateway holds one): refused at accept
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            held.push(s);
        }
    }

    let want = [
        "push_sent_total{",
        "push_failed_total{",
        "push_retries_total{",
        "push_jobs_submitted_total{",
        "push_refused_total{",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ctype, body) = loop {
        let (ctype, body) = tokio::task::spawn_blocking(move || metric_names::scrape(metrics))
            .await
            .unwrap();
        if want.iter().all(|w| body.contains(w)) {
            break (ctype, body);
        }
        assert!(
            Instant::now() < deadline,
            "not all of {want:?} counted after 30 s:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(held);
    let openmetrics = ctype.contains("openmetrics");
    assert!(openmetrics, "push-server serves OpenMetrics: {ctype}");
    let checked = metric_names::check_server("push-server", &body, openmetrics);
    for name in [
        "push_sent_total",
        "push_failed_total",
        "push_retries_total",
        "push_outbox_length",
        "push_refused_total",
    ] {
        assert!(checked.contains(name), "{name} not used: {checked:?}");
    }
    drop(child);
}
