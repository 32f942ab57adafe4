//! Short links (§3.9) between two hush agents over a real relay (in-process smp-server, real
//! TLS): a one-time invitation and a contact address, each joined by its short link; a link
//! read twice, a link with a wrong key, and the full link returned alongside.

mod common;

use common::*;
use hush_agent::{Agent, AgentError, AgentEvent, AgentEvents};
use hush_proto::address::{ConnShortLink, ConnectionRequestUri};

async fn exchange(a: &Agent, a_conn: i64, b: &Agent, b_rx: &mut AgentEvents, b_conn: i64) {
    let mut seen = Vec::new();
    let id = a.send(a_conn, b"over a short link").unwrap();
    let (mid, body) = wait_for(b_rx, &mut seen, |e| match e {
        AgentEvent::Message {
            conn, msg_id, body, ..
        } if *conn == b_conn => Some((*msg_id, body.clone())),
        _ => None,
    })
    .await;
    assert_eq!((mid, body.as_slice()), (id, &b"over a short link"[..]));
    b.ack(b_conn, mid).await.unwrap();
}

async fn connected(rx: &mut AgentEvents, c: i64) -> Vec<u8> {
    let mut seen = Vec::new();
    wait_for(rx, &mut seen, |e| match e {
        AgentEvent::Connected { conn, peer_info } if *conn == c => Some(peer_info.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitation_by_short_link() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;
    let (c, _c_rx) = open_agent(&db_path(dir.path(), "c"), relay.server()).await;

    let (a_conn, link) = a
        .create_invitation_with_short_link(b"alice", b"alice's link data")
        .await
        .unwrap();
    // https://<relay host>/i#<link id>/<link key>?p=<port>&c=<key hash>
    let srv = relay.server();
    let host = srv.hosts()[0].to_string();
    assert!(
        link.short.starts_with(&format!("https://{host}/i#")),
        "{}",
        link.short
    );
    let ConnShortLink::Invitation {
        server,
        link_id,
        link_key,
        ..
    } = ConnShortLink::parse(&link.short).unwrap()
    else {
        panic!("not an invitation link")
    };
    assert_eq!(server, srv);
    assert_eq!((link_id.len(), link_key.len()), (24, 32));
    // the full link stays available and is a normal invitation on the same queue
    let ConnectionRequestUri::Invitation { data, .. } =
        ConnectionRequestUri::parse(&link.full).unwrap()
    else {
        panic!("not an invitation")
    };
    assert_eq!(data.smp_queues[0].server, srv);

    // a link with another key (same link id): LKEY works, the data does not decrypt
    let mut bad_key = link_key.clone();
    bad_key[0] ^= 1;
    let bad = ConnShortLink::Invitation {
        scheme: hush_proto::address::ShortLinkScheme::Server,
        server: srv.clone(),
        link_id: link_id.clone(),
        link_key: bad_key,
    }
    .to_text();
    match c.join(&bad, b"carol").await {
        Err(AgentError::Link(e)) => assert_eq!(e, "link data does not decrypt"),
        r => panic!("expected a link error, got {r:?}"),
    }

    // LKEY above secured the queue with carol's key: the invitation is used up for others.
    // So make a fresh one for bob.
    let _ = a_conn;
    let (a_conn, link) = a
        .create_invitation_with_short_link(b"alice", b"alice's link data")
        .await
        .unwrap();
    let b_conn = b.join(&link.short, b"bob").await.unwrap();
    assert_eq!(connected(&mut a_rx, a_conn).await, b"bob");
    assert_eq!(connected(&mut b_rx, b_conn).await, b"alice");
    exchange(&a, a_conn, &b, &mut b_rx, b_conn).await;
    exchange(&b, b_conn, &a, &mut a_rx, a_conn).await;

    // a second reader of the same one-time link is refused by the relay (other LKEY key)
    match c.join(&link.short, b"carol").await {
        Err(AgentError::Relay(_)) => {}
        r => panic!("expected the relay to refuse, got {r:?}"),
    }
    a.close().await;
    b.close().await;
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_address_by_short_link() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path()).await;
    let (a, mut a_rx) = open_agent(&db_path(dir.path(), "a"), relay.server()).await;
    let (b, mut b_rx) = open_agent(&db_path(dir.path(), "b"), relay.server()).await;

    let (addr, link) = a
        .create_contact_address_with_short_link(b"alice's profile in the link")
        .await
        .unwrap();
    let host = relay.server().hosts()[0].to_string();
    assert!(
        link.short.starts_with(&format!("https://{host}/a#")),
        "{}",
        link.short
    );
    // the full link can be rebuilt from the database, and equals the one in the link data
    assert_eq!(a.contact_address_link(addr).unwrap(), link.full);
    // anyone can read an address's link data (LGET), any number of times
    for _ in 0..2 {
        let d = b.contact_short_link_data(&link.short).await.unwrap();
        assert_eq!(d.user_data, b"alice's profile in the link");
        assert_eq!(d.conn_req.to_text(), link.full);
    }
    // an address link with a wrong key names another link id: the relay has none
    let ConnShortLink::Contact {
        scheme,
        conn_type,
        server,
        mut link_key,
    } = ConnShortLink::parse(&link.short).unwrap()
    else {
        panic!("not a contact link")
    };
    link_key[31] ^= 1;
    let bad = ConnShortLink::Contact {
        scheme,
        conn_type,
        server,
        link_key,
    }
    .to_text();
    assert!(matches!(
        b.contact_short_link_data(&bad).await,
        Err(AgentError::Relay(_))
    ));

    // bob sends a contact request through the short link
    let b_conn = b
        .join_with_request(&link.short, b"request from bob", b"bob's profile")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let request = wait_for(&mut a_rx, &mut seen, |e| match e {
        AgentEvent::ContactRequest {
            address,
            request,
            conn_info,
        } if *address == addr => {
            assert_eq!(conn_info, b"request from bob");
            Some(*request)
        }
        _ => None,
    })
    .await;
    let a_conn = a
        .accept_contact_request(request, b"alice's profile")
        .await
        .unwrap();
    assert_eq!(connected(&mut a_rx, a_conn).await, b"bob's profile");
    assert_eq!(connected(&mut b_rx, b_conn).await, b"alice's profile");
    exchange(&a, a_conn, &b, &mut b_rx, b_conn).await;
    exchange(&b, b_conn, &a, &mut a_rx, a_conn).await;
    a.close().await;
    b.close().await;
}
