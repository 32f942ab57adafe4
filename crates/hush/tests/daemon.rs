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

    // notifications off for bob: still received, no hook
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
    d.wait_line("relay connected");
    hush(&pb, &["send", "alice", "silent one"]);
    d.wait_line("bob: silent one");
    std::thread::sleep(Duration::from_millis(300));
    let s = std::fs::read_to_string(&hook_out).unwrap();
    assert!(!s.contains("silent one"), "{s}");
    d.signal(libc::SIGTERM);
    let (c, _) = d.finish(Duration::from_secs(20));
    assert_eq!(c, 0);

    // statistics of the last run
    let st = hush(&pa, &["--json", "daemon", "--stats"]);
    let v: serde_json::Value = serde_json::from_str(&st[0]).unwrap();
    let relays = v["relays"].as_array().unwrap();
    assert_eq!(relays.len(), 1, "{v}");
    assert!(relays[0]["bytes_received"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["messages"], 1);
    let text = hush(&pa, &["daemon", "--stats"]);
    assert!(text[0].starts_with("hush daemon idle traffic"), "{text:?}");
}
