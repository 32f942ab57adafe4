//! The CLI with short links, through real processes (`hush up`, `hush chat`): `invite` and
//! `address` print a short link then the full one; two hush users connect by each.

mod common;

use common::{chat, hush, profile, start_up};
use hush_proto::address::{ConnShortLink, ConnectionRequestUri};

#[test]
fn invitation_and_address_by_short_link() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, relay) = start_up(dir.path());
    let pa = profile(dir.path(), "alice", &relay);
    let pb = profile(dir.path(), "bob", &relay);
    let pc = profile(dir.path(), "carol", &relay);

    // contact address (one-shot commands, before the chats run): short + full, stable
    let addr = hush(&pa, &["address"]);
    assert!(
        addr[0].starts_with("address: https://127.0.0.1/a#"),
        "{addr:?}"
    );
    assert!(
        addr[1].starts_with("full link: simplex:/contact#/?"),
        "{addr:?}"
    );
    assert_eq!(hush(&pa, &["address"]), addr);
    let json = hush(&pa, &["--json", "address"]);
    let v: serde_json::Value = serde_json::from_str(&json[0]).unwrap();
    assert_eq!(v["link"].as_str(), addr[0].strip_prefix("address: "), "{v}");
    assert_eq!(
        v["full_link"].as_str(),
        addr[1].strip_prefix("full link: "),
        "{v}"
    );
    let link = addr[0].strip_prefix("address: ").unwrap();

    // one-time invitation: the short link first, then the full link
    let mut a = chat(&pa, "alice", &[]);
    let mut b = chat(&pb, "bob", &[]);
    a.send("/invite");
    let short = a.wait_line("invitation: ");
    let short = short.trim_start_matches("invitation: ").to_string();
    let full = a.wait_line("full link: ");
    let full = full.trim_start_matches("full link: ").to_string();
    assert!(
        matches!(
            ConnShortLink::parse(&short),
            Ok(ConnShortLink::Invitation { .. })
        ),
        "{short}"
    );
    assert!(short.starts_with("https://127.0.0.1/i#"), "{short}");
    assert!(
        matches!(
            ConnectionRequestUri::parse(&full),
            Ok(ConnectionRequestUri::Invitation { .. })
        ),
        "{full}"
    );
    b.send(&format!("/connect {short}"));
    b.wait_line("connected: alice");
    a.wait_line("connected: bob");
    a.send("@bob via a short link");
    b.wait_line("alice: via a short link");

    // carol asks through the address's short link
    let mut c = chat(&pc, "carol", &[]);
    c.send(&format!("/connect {link}"));
    a.wait_line("request from carol");
    a.send("/accept carol");
    a.wait_line("connected: carol");
    c.wait_line("connected: alice");
    c.send("@alice hello from carol");
    a.wait_line("carol: hello from carol");
}
