//! The packaged Grafana dashboard and Prometheus alert rules (packaging/grafana, packaging/
//! prometheus) only use ntf-server metrics the real `ntf-server` binary exports: init + start
//! it as an operator does (metrics enabled on a free loopback port), scrape `/metrics` and look
//! up every `simplex_ntf_*` / `hush_ntf_*` name the packaged files use. Labelled counters
//! nothing was counted in yet are declared by `# TYPE` (text format 0.0.4: their samples carry
//! the family name), which the lookup accepts.

#[path = "../../../packaging/metric_names.rs"]
mod metric_names;

use std::process::Stdio;
use std::time::Duration;

use hush_server_common::test_support::{dirs_command, run_ok, spawn_lines, wait_for_lines};

#[test]
fn dashboard_and_alert_metrics_are_exported_by_the_ntf_server() {
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("ntf"), dir.path().join("ntf-data"));
    let cmd = || dirs_command(env!("CARGO_BIN_EXE_ntf-server"), "NTF_SERVER", &etc, &var);
    run_ok(
        cmd()
            .args(["init", "--fqdn", "ntf.example.com", "--port", "0"])
            .args(["--push-port", "0", "-y"]),
        "init",
    );
    let ini = etc.join("ntf-server.ini");
    let t = std::fs::read_to_string(&ini).unwrap();
    let off = "[METRICS]\nenable = off\n";
    assert!(t.contains(off), "{t}");
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metric_names::free_port()));
    let on = format!("[METRICS]\nenable = on\naddress = {metrics}\n");
    std::fs::write(&ini, t.replace(off, &on)).unwrap();

    let (child, rx) = spawn_lines(cmd().arg("start").stderr(Stdio::null()));
    wait_for_lines(&rx, Duration::from_secs(20), |line| {
        line.starts_with("Listening on ").then_some(())
    })
    .expect("start exited before listening");
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
