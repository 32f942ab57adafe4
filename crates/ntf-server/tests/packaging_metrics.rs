//! The packaged Grafana dashboard and Prometheus alert rules (packaging/grafana, packaging/
//! prometheus) only use ntf-server metrics the real `ntf-server` binary exports: init + start
//! it as an operator does (metrics enabled on a free loopback port), scrape `/metrics` and look
//! up every `simplex_ntf_*` / `hush_ntf_*` name the packaged files use. Labelled counters
//! nothing was counted in yet are declared by `# TYPE` (text format 0.0.4: their samples carry
//! the family name), which the lookup accepts.

#[path = "../../../packaging/metric_names.rs"]
mod metric_names;

use std::io::BufRead;
use std::process::{Command, Stdio};

use metric_names::Killed;

#[test]
fn dashboard_and_alert_metrics_are_exported_by_the_ntf_server() {
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("ntf"), dir.path().join("ntf-data"));
    let cmd = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ntf-server"));
        c.arg("--config-dir")
            .arg(&etc)
            .arg("--data-dir")
            .arg(&var)
            .env_remove("NTF_SERVER_CFG_PATH")
            .env_remove("NTF_SERVER_LOG_PATH")
            .env_remove("RUST_LOG");
        c
    };
    let out = cmd()
        .args(["init", "--fqdn", "ntf.example.com", "--port", "0"])
        .args(["--push-port", "0", "-y"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ini = etc.join("ntf-server.ini");
    let t = std::fs::read_to_string(&ini).unwrap();
    let off = "[METRICS]\nenable = off\n";
    assert!(t.contains(off), "{t}");
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metric_names::free_port()));
    let on = format!("[METRICS]\nenable = on\naddress = {metrics}\n");
    std::fs::write(&ini, t.replace(off, &on)).unwrap();

    let mut child = Killed(
        cmd()
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("start exited before listening")
            .unwrap();
        if line.starts_with("Listening on ") {
            break;
        }
    }
    let (ctype, body) = metric_names::scrape(metrics);
    let openmetrics = ctype.contains("openmetrics");
    let checked = metric_names::check_server("ntf-server", &body, openmetrics);
    for name in [
        "simplex_ntf_tokens_total",
        "simplex_ntf_notifications_failed",
        "simplex_ntf_smp_subscription_pending_sub_count_other",
        "simplex_ntf_apns_push_queue_length",
        "hush_ntf_pushes",
    ] {
        assert!(checked.contains(name), "{name} not used: {checked:?}");
    }
    drop(child);
}
