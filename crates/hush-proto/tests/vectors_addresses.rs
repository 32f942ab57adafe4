//! Every vector of `shared/vectors/addresses.json` except `cert_chain.*` (transport helper):
//! server identity text, server addresses (text and binary), transport hosts, queue URIs,
//! e2e ratchet parameters, full connection links, short links, XFTP address.

use hush_proto::address::{
    BasicAuth, ConnReqUriData, ConnShortLink, ConnectionRequestUri, ContactConnType,
    E2eRatchetParamsUri, ProtocolServer, ProtocolType, QueueMode, ServerWithAuth, ServiceScheme,
    ShortLinkScheme, SmpQueueUri, TransportHost, render_server_address, url_encode,
};
use hush_proto::encoding::{Parser, base64url_encode};
use hush_proto::version::VersionRange;
use serde_json::Value;

mod common;

fn load() -> Vec<Value> {
    common::load("addresses.json")
}

fn family(prefix: &str) -> Vec<Value> {
    common::family("addresses.json", prefix)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string field {k} in {v}"))
}

fn hx(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(s(v, k)).unwrap()
}

fn hosts_of(v: &Value) -> Vec<TransportHost> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().parse().unwrap())
        .collect()
}

fn range(t: &str) -> VersionRange {
    VersionRange::str_decode(t).unwrap()
}

#[test]
fn all_vectors_are_claimed() {
    let known = [
        "server_identity.",
        "server_address.",
        "transport_host.",
        "queue.",
        "e2e_ratchet_params.",
        "connection_link.",
        "short_link.",
        "xftp_address.",
        "cert_chain.", // transport helper's vectors
    ];
    let all = load();
    assert_eq!(all.len(), 79, "addresses.json changed size");
    for v in &all {
        let n = s(v, "name");
        assert!(
            known.iter().any(|k| n.starts_with(k)),
            "unclaimed vector {n}"
        );
    }
}

#[test]
fn server_identity() {
    let vs = family("server_identity.");
    assert_eq!(vs.len(), 2);
    for v in &vs {
        let fp: [u8; 32] = hx(&v["expected"], "sha256_hex").try_into().unwrap();
        let text = s(&v["expected"], "key_hash_text");
        assert_eq!(base64url_encode(&fp), text, "{}", v["name"]);
        let hosts: Vec<TransportHost> = vec!["localhost".parse().unwrap()];
        let addr = render_server_address(&fp, &hosts, Some(5001));
        assert_eq!(addr, format!("smp://{text}@localhost:5001"));
        let srv = ProtocolServer::parse(&addr).unwrap();
        assert_eq!(srv.key_hash(), &fp);
    }
}

#[test]
fn server_addresses() {
    let vs = family("server_address.");
    assert_eq!(vs.len(), 7);
    for v in &vs {
        let name = s(v, "name");
        let text = s(&v["inputs"], "text");
        let e = &v["expected"];
        let (srv, auth) = if e.get("basic_auth_ascii").is_some() {
            let sa = ServerWithAuth::parse(text).unwrap();
            assert_eq!(
                sa.auth.as_ref().map(BasicAuth::as_str),
                Some(s(e, "basic_auth_ascii"))
            );
            assert_eq!(sa.to_string(), text, "{name}");
            // not a plain server address
            assert!(ProtocolServer::parse(text).is_err(), "{name}");
            (sa.server, sa.auth)
        } else {
            (ProtocolServer::parse(text).unwrap(), None)
        };
        assert!(auth.is_none() || name.ends_with("with_basic_auth"));
        if let Some(sc) = e.get("scheme") {
            assert_eq!(srv.scheme().as_str(), sc.as_str().unwrap(), "{name}");
        }
        assert_eq!(srv.hosts(), hosts_of(&e["hosts"]).as_slice(), "{name}");
        assert_eq!(srv.port(), s(e, "port"), "{name}");
        assert_eq!(srv.key_hash(), hx(e, "key_hash_hex").as_slice(), "{name}");
        if auth.is_none() {
            assert_eq!(srv.to_string(), text, "{name}");
        }
        if let Some(bin) = e.get("smpEncode_hex") {
            let bin = hex::decode(bin.as_str().unwrap()).unwrap();
            let mut out = Vec::new();
            srv.encode_binary(&mut out);
            assert_eq!(hex::encode(&out), hex::encode(&bin), "{name}");
            let mut p = Parser::new(&bin);
            let back = ProtocolServer::decode_binary(&mut p, srv.scheme()).unwrap();
            p.finish().unwrap();
            assert_eq!(back, srv, "{name}");
        }
        let default = match srv.scheme() {
            ProtocolType::Smp => 5223,
            _ => 443,
        };
        let expect_port = srv.port().parse().unwrap_or(default);
        assert_eq!(srv.effective_port(), expect_port);
    }
}

#[test]
fn transport_hosts() {
    let vs = family("transport_host.");
    assert_eq!(vs.len(), 15);
    let mut rejected = 0;
    for v in &vs {
        let name = s(v, "name");
        let text = s(&v["inputs"], "text");
        let e = &v["expected"];
        if e.get("error").is_some() {
            assert!(
                text.parse::<TransportHost>().is_err(),
                "{name} must be rejected"
            );
            rejected += 1;
            continue;
        }
        let h: TransportHost = text.parse().unwrap();
        let kind = match h {
            TransportHost::Ipv4(_) => "ipv4",
            TransportHost::Ipv6(_) => "ipv6",
            TransportHost::Onion(_) => "onion",
            TransportHost::Domain(_) => "domain",
        };
        assert_eq!(kind, s(e, "kind"), "{name}");
        assert_eq!(h.to_string(), s(e, "strEncode_roundtrip"), "{name}");
    }
    assert_eq!(rejected, 9);
}

fn queue_from_inputs(i: &Value) -> SmpQueueUri {
    let port = s(i, "port").to_string();
    SmpQueueUri {
        client_versions: range(s(i, "smp_client_version_range")),
        server: ProtocolServer::new(
            ProtocolType::Smp,
            hosts_of(&i["hosts"]),
            port,
            hx(i, "key_hash_hex"),
        )
        .unwrap(),
        sender_id: hx(i, "sender_id_hex"),
        dh_public_key: hx(i, "dh_public_key_der_hex"),
        queue_mode: match i["queue_mode"].as_str() {
            Some("messaging") => Some(QueueMode::Messaging),
            Some("contact") => Some(QueueMode::Contact),
            None => None,
            Some(m) => panic!("unknown queue mode {m}"),
        },
    }
}

#[test]
fn queue_uris() {
    let vs = family("queue.");
    assert_eq!(vs.len(), 17);
    let mut encoded = 0;
    for v in &vs {
        let name = s(v, "name");
        let q = queue_from_inputs(&v["inputs"]);
        let text = s(&v["expected"], "text");
        match s(&v["expected"], "direction") {
            "encode+decode" => {
                assert_eq!(q.to_text(), text, "{name}");
                encoded += 1;
            }
            "decode-only" => assert_ne!(q.to_text(), text, "{name}: decode-only text is emitted"),
            d => panic!("unknown direction {d}"),
        }
        assert_eq!(SmpQueueUri::parse(text).unwrap(), q, "{name}");
    }
    assert_eq!(encoded, 10);
}

fn e2e_params() -> (E2eRatchetParamsUri, Value) {
    let v = family("e2e_ratchet_params.").pop().unwrap();
    let i = &v["inputs"];
    let keys: Vec<Vec<u8>> = i["x3dh_keys_x448_der_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| hex::decode(k.as_str().unwrap()).unwrap())
        .collect();
    let p = E2eRatchetParamsUri {
        versions: range(s(i, "e2e_version_range")),
        key1: keys[0].clone(),
        key2: keys[1].clone(),
        kem: None,
    };
    (p, v)
}

#[test]
fn e2e_ratchet_params() {
    assert_eq!(family("e2e_ratchet_params.").len(), 1);
    let (p, v) = e2e_params();
    let e = &v["expected"];
    assert_eq!(p.to_text(), s(e, "unescaped"));
    assert_eq!(url_encode(p.to_text().as_bytes()), s(e, "text"));
    assert_eq!(E2eRatchetParamsUri::parse(s(e, "unescaped")).unwrap(), p);
}

fn queue_named(name: &str) -> SmpQueueUri {
    let v = family(name)
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no queue vector {name}"));
    queue_from_inputs(&v["inputs"])
}

/// Interprets the informal `contents` field of a `connection_link.*` vector.
fn link_from_contents(name: &str, contents: &str, text: &str) -> ConnectionRequestUri {
    let default_queue = "queue.v1-4.two_hosts.messaging";
    let mut agent = range("2-7");
    let mut client_data = None;
    let mut queues = vec![queue_named(default_queue)];
    for part in contents.split("; ") {
        if let Some(q) = part.strip_prefix("2 x ") {
            queues = vec![queue_named(q), queue_named(q)];
        } else if part.starts_with("queue.") {
            queues = vec![queue_named(part)];
        } else if let Some(r) = part.strip_prefix("agent range ") {
            agent = range(r);
        } else if part.starts_with("parses to agent range 2-2") {
            agent = range("2-2");
        } else if let Some(d) = part.strip_prefix("data ") {
            client_data = Some(d.to_string());
        } else if part == "client data JSON" {
            client_data = Some(r#"{"type":"group_link", "group_link_id":"abc"}"#.to_string());
        } else {
            panic!("{name}: cannot interpret contents {part:?}");
        }
    }
    let data = ConnReqUriData {
        scheme: ServiceScheme::Simplex,
        agent_versions: agent,
        smp_queues: queues,
        client_data,
    };
    if name.starts_with("connection_link.invitation.") {
        assert!(text.contains("/invitation#"));
        ConnectionRequestUri::Invitation {
            data,
            e2e: e2e_params().0,
        }
    } else {
        assert!(text.contains("/contact#"));
        ConnectionRequestUri::Contact { data }
    }
}

#[test]
fn connection_links() {
    let vs = family("connection_link.");
    assert_eq!(vs.len(), 20);
    let mut encoded = 0;
    for v in &vs {
        let name = s(v, "name");
        let text = s(&v["expected"], "text");
        let link = link_from_contents(name, s(&v["inputs"], "contents"), text);
        match s(&v["expected"], "direction") {
            "encode+decode" => {
                assert_eq!(link.to_text(), text, "{name}");
                encoded += 1;
            }
            "decode-only" => {}
            d => panic!("unknown direction {d}"),
        }
        assert_eq!(ConnectionRequestUri::parse(text).unwrap(), link, "{name}");
    }
    assert_eq!(encoded, 14);
    // the app-server scheme is printed as given
    let mut link = link_from_contents("connection_link.contact.x", "agent range 2-7", "/contact#");
    if let ConnectionRequestUri::Contact { data } = &mut link {
        data.scheme = ServiceScheme::simplex_chat();
    }
    assert!(
        link.to_text()
            .starts_with("https://simplex.chat/contact#/?v=2-7&smp=")
    );
    // invitation ratchet keys must be X448 (reference `RcvE2ERatchetParamsUri 'X448`)
    let mut inv = link_from_contents(
        "connection_link.invitation.x",
        "agent range 2-7",
        "/invitation#",
    );
    let ConnectionRequestUri::Invitation { e2e, .. } = &mut inv else {
        unreachable!()
    };
    let dh = queue_named("queue.v1-4.two_hosts.messaging").dh_public_key;
    e2e.key1 = dh.clone();
    e2e.key2 = dh;
    assert!(E2eRatchetParamsUri::parse(&e2e.to_text()).is_ok());
    assert!(ConnectionRequestUri::parse(&inv.to_text()).is_err());
}

fn short_link_from_inputs(i: &Value) -> ConnShortLink {
    let scheme = if s(i, "scheme").starts_with("https") {
        ShortLinkScheme::Server
    } else {
        assert_eq!(s(i, "scheme"), "simplex");
        ShortLinkScheme::Simplex
    };
    let server = ProtocolServer::new(
        ProtocolType::Smp,
        hosts_of(&i["hosts"]),
        s(i, "port"),
        hx(i, "key_hash_hex"),
    )
    .unwrap();
    let link_key = s(i, "link_key_ascii").as_bytes().to_vec();
    let t = s(i, "type");
    if t.starts_with("invitation") {
        ConnShortLink::Invitation {
            scheme,
            server,
            link_id: s(i, "link_id_ascii").as_bytes().to_vec(),
            link_key,
        }
    } else {
        let conn_type = match t {
            "contact (a)" => ContactConnType::Contact,
            "group (g)" => ContactConnType::Group,
            _ => panic!("unknown short link type {t}"),
        };
        ConnShortLink::Contact {
            scheme,
            conn_type,
            server,
            link_key,
        }
    }
}

#[test]
fn short_links() {
    let vs: Vec<Value> = family("short_link.")
        .into_iter()
        .filter(|v| v["name"] != "short_link.shorten_restore_preset")
        .collect();
    assert_eq!(vs.len(), 10);
    for v in &vs {
        let name = s(v, "name");
        let link = short_link_from_inputs(&v["inputs"]);
        let text = s(&v["expected"], "text");
        assert_eq!(s(&v["expected"], "direction"), "encode+decode");
        assert_eq!(link.to_text(), text, "{name}");
        assert_eq!(ConnShortLink::parse(text).unwrap(), link, "{name}");
    }
    // upper-case type letters are accepted, unknown ones are not
    assert!(ConnShortLink::parse("simplex:/A#MDEy?h=smp.simplex.im").is_ok());
    assert!(ConnShortLink::parse("simplex:/x#MDEy?h=smp.simplex.im").is_err());
    assert!(
        ConnShortLink::parse("simplex:/a#MDEy").is_err(),
        "no server"
    );
}

#[test]
fn short_link_shorten_restore() {
    let vs = family("short_link.shorten_restore_preset");
    assert_eq!(vs.len(), 1);
    let v = &vs[0];
    let i = &v["inputs"];
    let e = &v["expected"];
    let presets = vec![ProtocolServer::parse(s(i, "preset_server")).unwrap()];
    for (full, short) in [
        ("full_contact_link", "shortened_contact_link"),
        ("full_invitation_link", "shortened_invitation_link"),
    ] {
        let full_link = ConnShortLink::parse(s(i, full)).unwrap();
        assert_eq!(full_link.to_text(), s(i, full));
        let shortened = full_link.clone().shorten(&presets);
        assert_eq!(shortened.to_text(), s(e, short));
        let parsed = ConnShortLink::parse(s(e, short)).unwrap();
        assert_eq!(parsed, shortened);
        assert_eq!(parsed.restore(&presets), full_link);
        // not a preset: unchanged
        assert_eq!(full_link.clone().shorten(&[]), full_link);
    }
}

#[test]
fn xftp_address() {
    let vs = family("xftp_address.");
    assert_eq!(vs.len(), 1);
    let v = &vs[0];
    let srv = ProtocolServer::parse(s(&v["inputs"], "text")).unwrap();
    assert_eq!(srv.scheme(), ProtocolType::Xftp);
    assert_eq!(
        srv.key_hash(),
        hx(&v["expected"], "key_hash_hex").as_slice()
    );
    let hp = format!("{}:{}", srv.hosts()[0], srv.port());
    assert_eq!(hp, s(&v["expected"], "host_port"));
    assert_eq!(srv.to_string(), s(&v["inputs"], "text"));
}
