//! Instant push end to end: alice registers a (simulated) device with the ntf-server of
//! `hush up`, enables push for bob; bob sends while alice's chat is closed; `hush device` reads
//! the push from apns-sink, decrypts it, fetches the message with GET and prints it.

mod common;

use std::time::Duration;

use common::{Proc, chat, connect, hush, start_up};

#[test]
fn instant_push_then_device_fetches_and_prints() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, _relay) = start_up(dir.path());
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
    let out = hush(&pa, &["notify", "bob", "push"]);
    assert_eq!(out, vec!["bob: notifications push"]);
    let st = hush(&pa, &["--json", "status"]);
    let v: serde_json::Value = serde_json::from_str(&st[0]).unwrap();
    assert_eq!(v["contacts"][0]["notify"], "push");

    let mut dev = Proc::spawn(
        "device",
        &["-p", pa.to_str().unwrap(), "device", "--count", "2"],
        &[],
    );
    dev.wait_line("device: waiting for pushes");
    hush(&pb, &["send", "alice", "first"]);
    dev.wait_line("push: 1 notification(s)");
    dev.wait_line("bob: first");
    hush(&pb, &["send", "alice", "second", "push"]);
    dev.wait_line("bob: second push");
    let (code, lines) = dev.finish(Duration::from_secs(20));
    assert_eq!(code, 0, "{lines:?}");
    // the messages were acknowledged: a chat session sees nothing new, history has both
    let h = hush(&pa, &["history", "bob"]);
    assert_eq!(h, vec!["bob: first", "bob: second push"]);

    // periodic mode registers TCRN with the ntf-server
    let out = hush(&pa, &["notify", "bob", "periodic"]);
    assert_eq!(out, vec!["bob: notifications periodic"]);
    let out = hush(&pa, &["notify", "bob", "connected"]);
    assert_eq!(out, vec!["bob: notifications connected"]);
}

/// Split mode: the device exchanges its token for a push handle at the push-server; the
/// ntf-server stores only the handle (the token is nowhere in its database), the push still
/// reaches the device.
#[test]
fn split_mode_push_handle_hides_the_token_from_the_ntf_server() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _relay) = start_up(dir.path());
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
    hush(&pa, &["notify", "bob", "push", "--split"]);
    let mut dev = Proc::spawn(
        "device",
        &["-p", pa.to_str().unwrap(), "device", "--count", "1"],
        &[],
    );
    dev.wait_line("device: waiting for pushes");
    hush(&pb, &["send", "alice", "via a handle"]);
    dev.wait_line("bob: via a handle");
    assert_eq!(dev.finish(Duration::from_secs(20)).0, 0);

    let db = rusqlite::Connection::open(pa.join("hush.db")).unwrap();
    let token: String = db
        .query_row(
            "SELECT value FROM settings WHERE key = 'device_token'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(token.len(), 64);
    // stop the stack so the ntf-server store is flushed, then search its files
    up.signal(libc::SIGTERM);
    assert_eq!(up.finish(Duration::from_secs(20)).0, 0);
    let mut searched = 0;
    for e in std::fs::read_dir(up_dir.join("ntf")).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap_or_default();
        searched += bytes.len();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "device token found in {}",
            e.path().display()
        );
    }
    assert!(searched > 0);
}
