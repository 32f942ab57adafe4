//! The packaged Grafana dashboard and Prometheus alert rules (packaging/grafana, packaging/
//! prometheus) only use relay metrics the real `smp-server` binary exports: init + start it as
//! an operator does (metrics on a free loopback port), open one client socket so that the
//! per-port socket gauges exist, scrape `/metrics` and look up every `simplex_smp_*` /
//! `hush_smp_*` name the packaged files use.

#[path = "../../../packaging/metric_names.rs"]
mod metric_names;

use std::process::Stdio;
use std::time::{Duration, Instant};

use hush_server_common::test_support::{after, dirs_command, run_ok, spawn_lines, wait_for_lines};

#[test]
fn dashboard_and_alert_metrics_are_exported_by_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("smp"), dir.path().join("smp-data"));
    let cmd = || dirs_command(env!("CARGO_BIN_EXE_smp-server"), "SMP_SERVER", &etc, &var);
    run_ok(
        cmd().args(["init", "--fqdn", "relay.example.com", "--port", "0", "-y"]),
        "init",
    );
    let ini = etc.join("smp-server.ini");
    let t = std::fs::read_to_string(&ini).unwrap();
    let default = format!("address = {}\n", smp_server::config::DEFAULT_METRICS_ADDR);
    assert!(t.contains(&default), "{t}");
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metric_names::free_port()));
    std::fs::write(&ini, t.replace(&default, &format!("address = {metrics}\n"))).unwrap();

    let (child, rx) = spawn_lines(cmd().arg("start").stderr(Stdio::null()));
    let port = wait_for_lines(&rx, Duration::from_secs(20), |line| {
        after(line, "Listening on ").map(|a: std::net::SocketAddr| a.port())
    })
    .expect("start exited before listening");
    // one accepted (and closed) socket: simplex_smp_sockets_{accepted,closed,active}{port}
    drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());

    let deadline = Instant::now() + Duration::from_secs(20);
    let (ctype, body) = loop {
        let (ctype, body) = metric_names::scrape(metrics);
        if body.contains("simplex_smp_sockets_closed{") || Instant::now() > deadline {
            break (ctype, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let openmetrics = ctype.contains("openmetrics");
    let checked = metric_names::check_server("smp-server", &body, openmetrics);
    // the dashboard covers the relay's main series (a parser finding nothing would pass above)
    for name in [
        "simplex_smp_clients_total",
        "simplex_smp_messages_sent",
        "simplex_smp_subscription_ntf_total",
        "simplex_smp_sockets_active",
        "simplex_smp_delivery_ack_confirmed_time_bucket",
        "hush_smp_connections_refused",
    ] {
        assert!(checked.contains(name), "{name} not used: {checked:?}");
    }
    drop(child);
}
