//! Periodic mode end to end: with `hush up --dev-fast-periodic` (a TCRN minute lasts 0.1 s, the
//! ntf-server sweeps every 0.5 s), alice sets `notify bob periodic` (TCRN 20 → every 2 s), bob
//! sends while alice is offline, the ntf-server's sweep sends a background `checkMessages`
//! push to apns-sink, and `hush device` wakes up, fetches all queues and prints "bob: …".

mod common;

use std::time::Duration;

use common::{Proc, chat, connect, hush, start_up_with};

#[test]
fn periodic_push_wakes_the_device_which_fetches_and_prints() {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, _relay) = start_up_with(dir.path(), &["--dev-fast-periodic"]);
    up.seen_or_wait("dev line", |l| l.starts_with("dev: fast periodic pushes"));
    let up_dir = dir.path().join("up");
    let pa = dir.path().join("alice");
    let pb = dir.path().join("bob");
    for (p, n) in [(&pa, "alice"), (&pb, "bob")] {
        hush(
            p,
            &["init", "--name", n, "--up-dir", up_dir.to_str().unwrap()],
        );
    }
    {
        let mut a = chat(&pa, "alice", &[]);
        let mut b = chat(&pb, "bob", &[]);
        connect(&mut a, &mut b, "alice", "bob");
        assert_eq!(a.finish(Duration::from_secs(20)).0, 0);
        assert_eq!(b.finish(Duration::from_secs(20)).0, 0);
    }
    let out = hush(&pa, &["notify", "bob", "periodic"]);
    assert_eq!(out, vec!["bob: notifications periodic"]);
    // periodic mode enables no per-queue notifications: only checkMessages pushes can wake
    // the device
    hush(&pb, &["send", "alice", "while you slept"]);

    let mut dev = Proc::spawn(
        "device",
        &["-p", pa.to_str().unwrap(), "device", "--run-for", "12s"],
        &[],
    );
    dev.wait_line("device: waiting for pushes");
    dev.wait_line("push: check messages");
    dev.wait_line("bob: while you slept");
    // a message sent while the device waits arrives with a later periodic push
    hush(&pb, &["send", "alice", "next round"]);
    dev.wait_line("bob: next round");
    let (code, lines) = dev.finish(Duration::from_secs(30));
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with("push: ") && l.contains("notification(s)")),
        "only periodic pushes expected: {lines:?}"
    );
    let wakeups = lines
        .iter()
        .filter(|l| l.as_str() == "push: check messages")
        .count();
    // ~12 s at one push per 2 s (the first one counted above via wait_line is in `lines` too)
    assert!((3..=8).contains(&wakeups), "{wakeups} wake-ups: {lines:?}");
    // fetched and acknowledged: in the history, not delivered again
    let h = hush(&pa, &["history", "bob"]);
    assert_eq!(h, vec!["bob: while you slept", "bob: next round"]);
}
