//! End to end through real processes: `hush up`, and `hush chat` / one-shot commands per user,
//! driven through stdin/stdout.

mod common;

use std::time::Duration;

use common::{chat, connect, hush, profile, start_up};

#[test]
fn two_users_connect_chat_history_delete() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    let pb = profile(dir.path(), "bob", &relay);
    let mut a = chat(&pa, "alice", &[]);
    let mut b = chat(&pb, "bob", &[]);
    connect(&mut a, &mut b, "alice", "bob");

    a.send("@bob hello bob");
    b.wait_line("alice: hello bob");
    b.send("@alice hi alice, how are you?");
    a.wait_line("bob: hi alice, how are you?");
    for i in 0..5 {
        a.send(&format!("@bob message {i}"));
    }
    for i in 0..5 {
        b.wait_line(&format!("alice: message {i}"));
    }
    // unknown contact → error, session continues
    a.send("@carol hello");
    a.wait_for("error", Duration::from_secs(5), |l| {
        l.contains("no contact carol")
    });

    let (code, _) = a.finish(Duration::from_secs(20));
    assert_eq!(code, 0);
    let (code, _) = b.finish(Duration::from_secs(20));
    assert_eq!(code, 0);

    // history is local and survives the session
    let h = hush(&pb, &["history", "alice"]);
    assert_eq!(h[0], "alice: hello bob");
    assert!(h[1].starts_with("me: hi alice, how are you? ("), "{h:?}");
    assert_eq!(h.len(), 7, "{h:?}");
    // one-shot send while the other side is offline; delivered when bob comes back
    hush(&pa, &["send", "bob", "while", "you", "were", "away"]);
    let mut b = chat(&pb, "bob", &[]);
    b.wait_line("alice: while you were away");
    let (code, _) = b.finish(Duration::from_secs(20));
    assert_eq!(code, 0);

    // status and JSON output
    let st = hush(&pa, &["--json", "status"]);
    let v: serde_json::Value = serde_json::from_str(&st[0]).unwrap();
    assert_eq!(v["event"], "status");
    assert_eq!(v["contacts"][0]["name"], "bob");
    assert_eq!(v["contacts"][0]["status"], "connected");
    assert_eq!(v["outbox"], 0);
    assert_eq!(v["relays_up"][&relay], true, "{v}");
    let st = hush(&pa, &["status"]);
    assert!(
        st.iter()
            .any(|l| l.starts_with("relay 127.0.0.1:") && l.contains("reachable")),
        "{st:?}"
    );
    assert!(
        st.iter().any(|l| l == "contacts: 1 connected, 0 pending"),
        "{st:?}"
    );

    // delete: bob disappears from alice's contacts
    hush(&pa, &["delete", "bob"]);
    let cs = hush(&pa, &["contacts"]);
    assert!(cs.is_empty(), "{cs:?}");
}

#[test]
fn contact_address_and_accept() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    let pb = profile(dir.path(), "bob", &relay);
    let addr = hush(&pa, &["address"]);
    let link = addr[0].strip_prefix("address: ").unwrap().to_string();
    // the address is stable
    assert_eq!(hush(&pa, &["address"])[0], addr[0]);
    let mut a = chat(&pa, "alice", &[]);
    let mut b = chat(&pb, "bob", &[]);
    b.send(&format!("/connect {link}"));
    a.wait_line("request from bob");
    a.send("/accept bob");
    a.wait_line("accepted bob");
    a.wait_line("connected: bob");
    b.wait_line("connected: alice");
    b.send("@alice thanks for accepting");
    a.wait_line("bob: thanks for accepting");
}

#[test]
fn group_of_three_member_to_member() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    let pb = profile(dir.path(), "bob", &relay);
    let pc = profile(dir.path(), "carol", &relay);
    let mut a = chat(&pa, "alice", &[]);
    let mut b = chat(&pb, "bob", &[]);
    let mut c = chat(&pc, "carol", &[]);
    connect(&mut a, &mut b, "alice", "bob");
    connect(&mut a, &mut c, "alice", "carol");

    a.send("/group create team");
    a.wait_line("group #team created");
    a.send("/group invite team bob");
    b.wait_line("joined group #team (invited by alice)");
    a.wait_line("#team: bob joined");
    a.send("/group invite team carol");
    c.wait_line("joined group #team (invited by alice)");
    a.wait_line("#team: carol joined");
    // bob and carol are introduced and connect directly
    b.wait_line("#team: member carol connected");
    c.wait_line("#team: member bob connected");

    a.send("#team hello team");
    b.wait_line("#team alice: hello team");
    c.wait_line("#team alice: hello team");
    b.send("#team hi from bob");
    a.wait_line("#team bob: hi from bob");
    c.wait_line("#team bob: hi from bob");
    c.send("#team carol here");
    a.wait_line("#team carol: carol here");
    b.wait_line("#team carol: carol here");

    // bob and carol are not each other's contacts: their messages travelled member to member
    let (code, _) = b.finish(Duration::from_secs(20));
    assert_eq!(code, 0);
    let cs = hush(&pb, &["contacts"]);
    assert_eq!(cs.len(), 1, "{cs:?}");
    let h = hush(&pb, &["history", "#team"]);
    assert_eq!(
        h,
        vec![
            "#team alice: hello team",
            "#team me: hi from bob",
            "#team carol: carol here"
        ]
    );
}
