//! `hush daemon`: notifies each new message through the `--on-message` hook (and a log line),
//! survives a relay restart (reconnect with backoff, resubscribe), stops on SIGTERM with exit 0
//! and reports its idle traffic (`hush daemon --stats`).

mod common;

use std::time::{Duration, Instant};

use common::{Proc, chat, connect, free_port_base, hush, profile, start_up_at};

fn wait_file(path: &std::path::Path, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timeout; file: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn daemon_notifies_reconnects_and_reports_idle_cost() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_base();
    let (up, relay) = start_up_at(dir.path(), base);
    let pa = profile(dir.path(), "alice", &relay);
    let pb = profile(dir.path(), "bob", &relay);
    {
        let mut a = chat(&pa, "alice", &[]);
        let mut b = chat(&pb, "bob", &[]);
        connect(&mut a, &mut b, "alice", "bob");
        let (c, _) = a.finish(Duration::from_secs(20));
        assert_eq!(c, 0);
        let (c, _) = b.finish(Duration::from_secs(20));
        assert_eq!(c, 0);
    }
    let hook_out = dir.path().join("hook.txt");
    let hook = format!(
        "printf '%s|%s|%s\\n' \"$HUSH_FROM\" \"$HUSH_GROUP\" \"$HUSH_TEXT\" >> {}",
        hook_out.display()
    );
    let mut d = Proc::spawn(
        "daemon",
        &[
            "-p",
            pa.to_str().unwrap(),
            "daemon",
            "--no-desktop",
            "--on-message",
            &hook,
            "--ping-interval",
            "2s",
            "--reconnect-max",
            "2s",
        ],
        &[],
    );
    d.wait_line("hush daemon: 1 queue(s) subscribed");
    d.wait_line("relay connected");

    hush(&pb, &["send", "alice", "ping from bob"]);
    d.wait_line("bob: ping from bob");
    let s = wait_file(&hook_out, |s| s.contains("ping from bob"));
    assert_eq!(s.trim(), "bob||ping from bob");
    d.seen_or_wait("log line", |l| {
        l == "[stderr] hush daemon: new message from bob"
    });

    // a new contact made with one-shot commands while the daemon runs (SIGHUP → subscribe)
    let pc = profile(dir.path(), "carol", &relay);
    let link = hush(&pa, &["invite"]);
    let link = link[0].strip_prefix("invitation: ").unwrap().to_string();
    // (the one-shot connect may already complete the handshake while it flushes)
    let out = hush(&pc, &["connect", &link]);
    d.wait_line("connected: carol");
    let mut c = chat(&pc, "carol", &[]);
    if !out.iter().any(|l| l == "connected: alice") {
        c.wait_line("connected: alice");
    }
    c.send("@alice hi from carol");
    d.wait_line("carol: hi from carol");
    assert_eq!(c.finish(Duration::from_secs(20)).0, 0);
    // chat refuses to run beside the daemon (both would subscribe the same queues)
    let o = std::process::Command::new(common::BIN)
        .args(["-p", pa.to_str().unwrap(), "chat"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("daemon"));

    // relay restart: the daemon sees it go down, reconnects, resubscribes
    up.signal(libc::SIGTERM);
    let (c, _) = up.finish(Duration::from_secs(20));
    assert_eq!(c, 0);
    d.wait_line("relay down");
    let (_up2, relay2) = start_up_at(dir.path(), base);
    assert_eq!(relay, relay2);
    d.wait_for("reconnect", Duration::from_secs(20), |l| {
        l.starts_with("relay connected")
    });
    hush(&pb, &["send", "alice", "after the restart"]);
    d.wait_line("bob: after the restart");
    wait_file(&hook_out, |s| s.contains("after the restart"));

    // notifications off for bob: the daemon leaves bob's queue alone (not subscribed)
    d.signal(libc::SIGTERM);
    let (c, lines) = d.finish(Duration::from_secs(20));
    assert_eq!(c, 0, "{lines:?}");
    hush(&pa, &["notify", "bob", "off"]);
    let mut d = Proc::spawn(
        "daemon",
        &[
            "-p",
            pa.to_str().unwrap(),
            "daemon",
            "--no-desktop",
            "--on-message",
            &hook,
        ],
        &[],
    );
    d.wait_line("hush daemon: 1 queue(s) subscribed");
    d.wait_line("not subscribed (left to their mode): bob (off)");
    d.wait_line("relay connected");
    hush(&pb, &["send", "alice", "silent one"]);
    hush(&pc, &["send", "alice", "loud one"]);
    d.wait_line("carol: loud one");
    wait_file(&hook_out, |s| s.contains("loud one"));
    std::thread::sleep(Duration::from_millis(500));
    let s = std::fs::read_to_string(&hook_out).unwrap();
    assert!(!s.contains("silent one"), "{s}");
    d.signal(libc::SIGTERM);
    let (c, lines) = d.finish(Duration::from_secs(20));
    assert_eq!(c, 0);
    assert!(
        !lines.iter().any(|l| l.contains("silent one")),
        "the daemon received bob's message: {lines:?}"
    );

    // statistics of the last run
    let st = hush(&pa, &["--json", "daemon", "--stats"]);
    let v: serde_json::Value = serde_json::from_str(&st[0]).unwrap();
    let relays = v["relays"].as_array().unwrap();
    assert_eq!(relays.len(), 1, "{v}");
    assert!(relays[0]["bytes_received"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["messages"], 1, "{v}");
    let text = hush(&pa, &["daemon", "--stats"]);
    assert!(text[0].starts_with("hush daemon idle traffic"), "{text:?}");
    // bob's message waited in its queue for a chat session
    let mut a = chat(&pa, "alice", &[]);
    a.wait_line("bob: silent one");
    assert_eq!(a.finish(Duration::from_secs(20)).0, 0);
}

/// Per-contact modes decide what the daemon subscribes: bob (`connected`) is subscribed by the
/// daemon, carol (`push`) is not — her message reaches alice through the push path (ntf-server
/// → apns-sink → `hush device` GET), and the daemon, whose relay connection would otherwise
/// receive it at once, never sees it.
#[test]
fn daemon_subscribes_only_connected_contacts_push_contacts_arrive_by_push() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, _relay) = common::start_up(dir.path());
    let up_dir = dir.path().join("up");
    let mut ps = Vec::new();
    for n in ["alice", "bob", "carol"] {
        let p = dir.path().join(n);
        hush(
            &p,
            &["init", "--name", n, "--up-dir", up_dir.to_str().unwrap()],
        );
        ps.push(p);
    }
    let (pa, pb, pc) = (&ps[0], &ps[1], &ps[2]);
    {
        let mut a = chat(pa, "alice", &[]);
        let mut b = chat(pb, "bob", &[]);
        let mut c = chat(pc, "carol", &[]);
        connect(&mut a, &mut b, "alice", "bob");
        connect(&mut a, &mut c, "alice", "carol");
        for p in [a, b, c] {
            assert_eq!(p.finish(Duration::from_secs(20)).0, 0);
        }
    }
    assert_eq!(
        hush(pa, &["notify", "carol", "push"]),
        vec!["carol: notifications push"]
    );
    let mut d = Proc::spawn(
        "daemon",
        &[
            "-p",
            pa.to_str().unwrap(),
            "--json",
            "daemon",
            "--no-desktop",
        ],
        &[],
    );
    let started = d.wait_for("daemon_started", Duration::from_secs(20), |l| {
        l.contains("\"daemon_started\"")
    });
    let v: serde_json::Value = serde_json::from_str(&started).unwrap();
    // alice has exactly two receive queues (one per contact); only bob's is subscribed
    assert_eq!(v["queues"], 1, "{v}");
    assert_eq!(v["left_to_mode"][0]["name"], "carol", "{v}");
    assert_eq!(v["left_to_mode"][0]["mode"], "push", "{v}");
    d.wait_for("relay_up", Duration::from_secs(20), |l| {
        l.contains("\"relay_up\"")
    });

    let mut dev = Proc::spawn(
        "device",
        &["-p", pa.to_str().unwrap(), "device", "--count", "1"],
        &[],
    );
    dev.wait_line("device: waiting for pushes");

    hush(pb, &["send", "alice", "to the daemon"]);
    d.wait_for("bob's message", Duration::from_secs(20), |l| {
        l.contains("to the daemon") && l.contains("bob")
    });

    hush(pc, &["send", "alice", "by push"]);
    dev.wait_line("push: 1 notification(s)");
    dev.wait_line("carol: by push");
    let (code, lines) = dev.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("to the daemon")),
        "the device took bob's message: {lines:?}"
    );

    // the daemon still holds bob's subscription after the device's wake-up
    hush(pb, &["send", "alice", "still connected"]);
    d.wait_for("bob's second message", Duration::from_secs(20), |l| {
        l.contains("still connected")
    });
    std::thread::sleep(Duration::from_millis(300));
    d.signal(libc::SIGTERM);
    let (code, lines) = d.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("by push")),
        "the daemon received carol's message: {lines:?}"
    );
    let h = hush(pa, &["history", "carol"]);
    assert_eq!(h, vec!["carol: by push"]);
}

/// Idle: the only traffic is one PING round trip per relay per ping interval (one 16 KB SMP
/// block each way), measured on the daemon's own sockets.
#[test]
fn daemon_idle_traffic_is_one_ping_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = common::start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    hush(&pa, &["invite"]);
    let d = Proc::spawn(
        "daemon",
        &[
            "-p",
            pa.to_str().unwrap(),
            "daemon",
            "--no-desktop",
            "--ping-interval",
            "1s",
            "--run-for",
            "3500ms",
        ],
        &[],
    );
    let (code, lines) = d.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{lines:?}");
    let st = hush(&pa, &["--json", "daemon", "--stats"]);
    let v: serde_json::Value = serde_json::from_str(&st[0]).unwrap();
    let r = &v["relays"][0];
    let block = 16_384.0;
    let pings_in = (r["bytes_received"].as_f64().unwrap() / block).round();
    let pings_out = (r["bytes_sent"].as_f64().unwrap() / block).round();
    // PINGs at ~1, 2, 3 s of silence (timer granularity allows one fewer)
    assert!((2.0..=3.0).contains(&pings_in), "{v}");
    assert_eq!(pings_in, pings_out, "{v}");
    // each block is one TLS record: payload + 22 bytes of TLS 1.3 overhead
    let per = r["bytes_received"].as_f64().unwrap() / pings_in;
    assert!((block..block + 64.0).contains(&per), "{v}");
    assert_eq!(r["connections_seen"], 1, "{v}");
}

/// Runs the daemon for a moment and returns its statistics (the last write happens while the
/// relay socket is still open).
fn daemon_stats(p: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "-p",
        p.to_str().unwrap(),
        "daemon",
        "--no-desktop",
        "--run-for",
        "1500ms",
    ];
    args.extend_from_slice(extra);
    let d = Proc::spawn("daemon", &args, &[]);
    let (c, lines) = d.finish(Duration::from_secs(20));
    assert!(
        lines.iter().any(|l| l.starts_with("relay connected")),
        "{lines:?}"
    );
    assert_eq!(c, 0, "{lines:?}");
    let st = hush(p, &["--json", "daemon", "--stats"]);
    serde_json::from_str(&st[0]).unwrap()
}

/// The daemon's relay socket carries the kernel keep-alive options, read back by the daemon
/// from its own socket with getsockopt (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
/// TCP_USER_TIMEOUT) into its statistics: the defaults (45 s / 15 s / 4, user timeout 105 s,
/// PING after 5 h), explicit knobs, and `--keepalive off`.
#[test]
fn daemon_relay_socket_has_keepalive() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = common::start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    // a pending invitation: one receive queue for the daemon to subscribe
    hush(&pa, &["invite"]);

    let v = daemon_stats(&pa, &[]);
    let r = &v["relays"][0];
    assert_eq!(
        r["keepalive"],
        serde_json::json!({"idle_seconds": 45, "interval_seconds": 15, "count": 4, "user_timeout_ms": 105000}),
        "{v}"
    );
    assert_eq!(v["keepalive"], r["keepalive"], "{v}");
    assert_eq!(v["ping_interval_seconds"], 5 * 3600, "{v}");
    assert!(r["connections_seen"].as_u64().unwrap() >= 1, "{v}");

    let v = daemon_stats(&pa, &["--keepalive", "7s/3s/5"]);
    assert_eq!(
        v["relays"][0]["keepalive"],
        serde_json::json!({"idle_seconds": 7, "interval_seconds": 3, "count": 5, "user_timeout_ms": 22000}),
        "{v}"
    );

    let v = daemon_stats(&pa, &["--keepalive", "off"]);
    assert!(v["relays"][0]["keepalive"].is_null(), "{v}");
    assert!(v["keepalive"].is_null(), "{v}");
    let text = hush(&pa, &["daemon", "--stats"]);
    assert!(text[0].contains("TCP keep-alive off"), "{text:?}");

    // a bad value is a clear error
    let o = std::process::Command::new(common::BIN)
        .args([
            "-p",
            pa.to_str().unwrap(),
            "daemon",
            "--keepalive",
            "60s/15s",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("<idle>/<interval>/<count>"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
