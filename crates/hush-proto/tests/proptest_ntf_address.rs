//! Round trips and "never panics" properties for `address.rs` and `ntf.rs`.

use std::net::Ipv6Addr;

use hush_proto::address::{
    BasicAuth, ConnReqUriData, ConnShortLink, ConnectionRequestUri, ContactConnType,
    E2eRatchetParamsUri, KeyAlgorithm, ProtocolServer, ProtocolType, QueueMode, RatchetKemParams,
    ServerWithAuth, ServiceScheme, ShortLinkScheme, SmpQueueUri, SmpServer, TransportHost,
};
use hush_proto::encoding::Parser;
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::ntf::{
    DeviceToken, InvalidReason, NtfCommand, NtfResponse, PnMessageData, PrivateKeyDer,
    PublicKeyDer, PushProvider, SmpQueueNtf, SubStatus, TokenStatus, encode_pn_messages,
    parse_pn_messages,
};
use hush_proto::version::VersionRange;
use hush_proto::{Decode, Encode};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// strategies

fn ipv4() -> impl Strategy<Value = TransportHost> {
    any::<[u8; 4]>().prop_map(TransportHost::Ipv4)
}

fn ipv6() -> impl Strategy<Value = TransportHost> {
    any::<u128>().prop_map(|a| TransportHost::Ipv6(Ipv6Addr::from(a)))
}

fn onion() -> impl Strategy<Value = TransportHost> {
    "[a-z2-7]{56}".prop_map(|s| TransportHost::Onion(format!("{s}.onion")))
}

fn domain() -> impl Strategy<Value = TransportHost> {
    // labels start with a letter (a leading IPv4-looking prefix would be taken as an address,
    // in the reference too) and never contain ".onion"
    prop::collection::vec("[a-z][a-z0-9-]{0,9}", 1..4)
        .prop_map(|l| l.join("."))
        .prop_filter("onion-like", |d| !d.contains("onion"))
        .prop_map(TransportHost::Domain)
}

fn host() -> impl Strategy<Value = TransportHost> {
    prop_oneof![ipv4(), ipv6(), onion(), domain()]
}

/// Hosts for text forms followed by `:port`: a bare IPv6 address would swallow the port
/// (the reference prints IPv6 without brackets too), so it is only allowed without a port.
fn hosts_and_port() -> impl Strategy<Value = (Vec<TransportHost>, Option<u16>)> {
    (prop::collection::vec(host(), 1..4), any::<Option<u16>>()).prop_map(|(mut h, port)| {
        if port.is_some() {
            h.retain(|h| !matches!(h, TransportHost::Ipv6(_)));
            if h.is_empty() {
                h.push(TransportHost::Domain("example.com".into()));
            }
        }
        (h, port)
    })
}

fn scheme() -> impl Strategy<Value = ProtocolType> {
    prop_oneof![
        Just(ProtocolType::Smp),
        Just(ProtocolType::Ntf),
        Just(ProtocolType::Xftp)
    ]
}

fn server_of(scheme: ProtocolType) -> impl Strategy<Value = ProtocolServer> {
    (hosts_and_port(), prop::collection::vec(any::<u8>(), 1..48)).prop_map(
        move |((hosts, port), kh)| {
            ProtocolServer::new(
                scheme,
                hosts,
                port.map(|p| p.to_string()).unwrap_or_default(),
                kh,
            )
            .unwrap()
        },
    )
}

fn any_server() -> impl Strategy<Value = ProtocolServer> {
    scheme().prop_flat_map(server_of)
}

fn basic_auth() -> impl Strategy<Value = BasicAuth> {
    "[!-~]{1,20}"
        .prop_filter("forbidden chars", |s| !s.contains(['@', ':', '/']))
        .prop_map(|s| BasicAuth::new(s).unwrap())
}

fn key(alg: KeyAlgorithm) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), alg.key_len()).prop_map(move |raw| {
        let mut v = alg.spki_prefix().to_vec();
        v.extend(raw);
        v
    })
}

fn private_key(alg: KeyAlgorithm) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), alg.key_len()).prop_map(move |raw| {
        let mut v = alg.pkcs8_prefix().to_vec();
        v.extend(raw);
        v
    })
}

fn auth_alg() -> impl Strategy<Value = KeyAlgorithm> {
    prop_oneof![
        Just(KeyAlgorithm::Ed25519),
        Just(KeyAlgorithm::Ed448),
        Just(KeyAlgorithm::X25519)
    ]
}

fn range(lo: u16, hi: u16) -> impl Strategy<Value = VersionRange> {
    (lo..=hi, lo..=hi).prop_map(|(a, b)| VersionRange::new(a.min(b), a.max(b)).unwrap())
}

fn bytes(min: usize, max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), min..max)
}

fn queue_uri() -> impl Strategy<Value = SmpQueueUri> {
    (
        range(1, 4),
        server_of(ProtocolType::Smp),
        bytes(1, 32),
        key(KeyAlgorithm::X25519),
        prop_oneof![
            Just(None),
            Just(Some(QueueMode::Messaging)),
            Just(Some(QueueMode::Contact))
        ],
    )
        .prop_map(|(vr, server, sender_id, dh, mode)| SmpQueueUri {
            client_versions: vr,
            server,
            sender_id,
            dh_public_key: dh,
            queue_mode: mode,
        })
}

fn e2e_params() -> impl Strategy<Value = E2eRatchetParamsUri> {
    (
        range(1, 3),
        prop_oneof![Just(KeyAlgorithm::X448), Just(KeyAlgorithm::X25519)],
        bytes(1, 64),
        any::<bool>(),
    )
        .prop_flat_map(|(vr, alg, kem, with_kem)| {
            (key(alg), key(alg)).prop_map(move |(k1, k2)| E2eRatchetParamsUri {
                versions: vr,
                key1: k1,
                key2: k2,
                kem: (with_kem && vr.max() >= 3).then(|| RatchetKemParams::Proposed {
                    kem_key: kem.clone(),
                }),
            })
        })
}

fn conn_link() -> impl Strategy<Value = ConnectionRequestUri> {
    (
        range(2, 7),
        prop::collection::vec(queue_uri(), 1..3),
        prop::option::of("\\PC{0,20}"),
        prop::option::of(e2e_params().prop_filter("links carry X448 keys", |e| {
            KeyAlgorithm::of_spki(&e.key1) == Some(KeyAlgorithm::X448)
        })),
    )
        .prop_map(|(vr, queues, client_data, e2e)| {
            let data = ConnReqUriData {
                scheme: ServiceScheme::Simplex,
                agent_versions: vr,
                smp_queues: queues,
                client_data,
            };
            match e2e {
                Some(e2e) => ConnectionRequestUri::Invitation { data, e2e },
                None => ConnectionRequestUri::Contact { data },
            }
        })
}

fn short_link() -> impl Strategy<Value = ConnShortLink> {
    (
        prop::collection::vec(host(), 1..3),
        any::<Option<u16>>(),
        bytes(0, 33),
        prop_oneof![
            Just(ShortLinkScheme::Simplex),
            Just(ShortLinkScheme::Server)
        ],
        prop_oneof![
            Just(None),
            Just(Some(ContactConnType::Contact)),
            Just(Some(ContactConnType::Channel)),
            Just(Some(ContactConnType::Group)),
            Just(Some(ContactConnType::Relay))
        ],
        bytes(1, 33),
        bytes(1, 33),
    )
        .prop_map(|(hosts, port, kh, scheme, ct, id, k)| {
            let port = port.map(|p| p.to_string()).unwrap_or_default();
            let server = ProtocolServer::new(ProtocolType::Smp, hosts, port, kh).unwrap();
            match ct {
                Some(conn_type) => ConnShortLink::Contact {
                    scheme,
                    conn_type,
                    server,
                    link_key: k,
                },
                None => ConnShortLink::Invitation {
                    scheme,
                    server,
                    link_id: id,
                    link_key: k,
                },
            }
        })
}

fn provider() -> impl Strategy<Value = PushProvider> {
    prop::sample::select(PushProvider::ALL.to_vec())
}

fn device_token() -> impl Strategy<Value = DeviceToken> {
    (provider(), bytes(0, 100)).prop_map(|(provider, token)| DeviceToken { provider, token })
}

fn smp_queue_ntf() -> impl Strategy<Value = SmpQueueNtf> {
    (server_of(ProtocolType::Smp), bytes(0, 32)).prop_map(|(server, notifier_id)| SmpQueueNtf {
        server: server.update_legacy_hosts(),
        notifier_id,
    })
}

fn ntf_command() -> impl Strategy<Value = NtfCommand> {
    prop_oneof![
        (
            device_token(),
            auth_alg().prop_flat_map(key),
            key(KeyAlgorithm::X25519)
        )
            .prop_map(|(token, vk, dh)| NtfCommand::Tnew {
                token,
                verify_key: PublicKeyDer::new(vk).unwrap(),
                dh_key: PublicKeyDer::new(dh).unwrap(),
            }),
        bytes(0, 64).prop_map(|code| NtfCommand::Tvfy { code }),
        Just(NtfCommand::Tchk),
        device_token().prop_map(|token| NtfCommand::Trpl { token }),
        Just(NtfCommand::Tdel),
        any::<u16>().prop_map(|minutes| NtfCommand::Tcrn { minutes }),
        (
            bytes(0, 32),
            smp_queue_ntf(),
            auth_alg().prop_flat_map(private_key)
        )
            .prop_map(|(token_id, queue, k)| NtfCommand::Snew {
                token_id,
                queue,
                notifier_key: PrivateKeyDer::new(k).unwrap(),
            }),
        Just(NtfCommand::Schk),
        Just(NtfCommand::Sdel),
        Just(NtfCommand::Ping),
    ]
}

fn token_status() -> impl Strategy<Value = TokenStatus> {
    let reasons = prop_oneof![
        Just(None),
        Just(Some(InvalidReason::BadToken)),
        Just(Some(InvalidReason::TokenNotForTopic)),
        Just(Some(InvalidReason::ExpiredToken)),
        Just(Some(InvalidReason::Unregistered)),
    ];
    prop_oneof![
        Just(TokenStatus::New),
        Just(TokenStatus::Registered),
        reasons.prop_map(TokenStatus::Invalid),
        Just(TokenStatus::Confirmed),
        Just(TokenStatus::Active),
        Just(TokenStatus::Expired),
    ]
}

fn sub_status() -> impl Strategy<Value = SubStatus> {
    prop_oneof![
        Just(SubStatus::New),
        Just(SubStatus::Pending),
        Just(SubStatus::Active),
        Just(SubStatus::Inactive),
        Just(SubStatus::End),
        Just(SubStatus::Deleted),
        Just(SubStatus::Auth),
        Just(SubStatus::Service),
        bytes(0, 40).prop_map(SubStatus::Err),
    ]
}

fn ntf_response() -> impl Strategy<Value = NtfResponse> {
    prop_oneof![
        (bytes(0, 32), key(KeyAlgorithm::X25519)).prop_map(|(token_id, k)| NtfResponse::TknId {
            token_id,
            server_dh_key: PublicKeyDer::new(k).unwrap()
        }),
        bytes(0, 32).prop_map(|sub_id| NtfResponse::SubId { sub_id }),
        Just(NtfResponse::Ok),
        prop_oneof![
            Just(ErrorType::Auth),
            Just(ErrorType::Quota),
            Just(ErrorType::Block),
            Just(ErrorType::Internal),
            Just(ErrorType::Cmd(CommandError::Syntax)),
            Just(ErrorType::Cmd(CommandError::NoAuth)),
        ]
        .prop_map(NtfResponse::Err),
        token_status().prop_map(NtfResponse::Tkn),
        sub_status().prop_map(NtfResponse::Sub),
        Just(NtfResponse::Pong),
    ]
}

fn pn_message() -> impl Strategy<Value = PnMessageData> {
    (
        server_of(ProtocolType::Smp),
        bytes(1, 32),
        prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0)],
        any::<[u8; 24]>(),
        bytes(1, 160),
    )
        .prop_map(|(server, nid, ts, nonce, meta)| PnMessageData {
            queue: SmpQueueNtf {
                server: server.update_legacy_hosts(),
                notifier_id: nid,
            },
            ntf_ts: ts,
            nonce,
            enc_meta: meta,
        })
}

// ---------------------------------------------------------------------------------------------
// round trips

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn transport_host_roundtrip(h in host()) {
        let text = h.to_string();
        prop_assert_eq!(text.parse::<TransportHost>().unwrap(), h.clone());
        let bin = h.to_bytes();
        prop_assert_eq!(TransportHost::from_bytes(&bin).unwrap(), h);
    }

    #[test]
    fn server_text_and_binary_roundtrip(srv in any_server()) {
        let text = srv.to_string();
        prop_assert_eq!(ProtocolServer::parse(&text).unwrap(), srv.clone());
        let mut bin = Vec::new();
        srv.encode_binary(&mut bin);
        let mut p = Parser::new(&bin);
        prop_assert_eq!(ProtocolServer::decode_binary(&mut p, srv.scheme()).unwrap(), srv.clone());
        prop_assert!(p.is_empty());
        if srv.scheme() == ProtocolType::Smp {
            let s = SmpServer(srv.clone());
            prop_assert_eq!(SmpServer::from_bytes(&s.to_bytes()).unwrap(), s);
        }
    }

    #[test]
    fn server_with_auth_roundtrip(srv in any_server(), auth in prop::option::of(basic_auth())) {
        let sa = ServerWithAuth { server: srv, auth };
        let text = sa.to_string();
        prop_assert_eq!(ServerWithAuth::parse(&text).unwrap(), sa.clone());
        if sa.auth.is_some() {
            prop_assert!(ProtocolServer::parse(&text).is_err());
        }
        if let Some(a) = &sa.auth {
            prop_assert_eq!(BasicAuth::from_bytes(&a.to_bytes()).unwrap(), a.clone());
        }
    }

    #[test]
    fn queue_uri_roundtrip(q in queue_uri()) {
        let text = q.to_text();
        prop_assert_eq!(SmpQueueUri::parse(&text).unwrap(), q);
    }

    #[test]
    fn e2e_params_roundtrip(e in e2e_params()) {
        prop_assert_eq!(E2eRatchetParamsUri::parse(&e.to_text()).unwrap(), e);
    }

    #[test]
    fn connection_link_roundtrip(l in conn_link()) {
        let text = l.to_text();
        prop_assert_eq!(ConnectionRequestUri::parse(&text).unwrap(), l);
    }

    #[test]
    fn short_link_roundtrip(l in short_link()) {
        let text = l.to_text();
        prop_assert_eq!(ConnShortLink::parse(&text).unwrap(), l);
    }

    #[test]
    fn ntf_command_roundtrip(c in ntf_command(), v in 1u16..=3) {
        let bytes = c.encode_checked(v).unwrap();
        prop_assert_eq!(NtfCommand::parse(&bytes, v).unwrap(), c.clone());
        prop_assert_eq!(c.to_bytes(), bytes);
    }

    #[test]
    fn ntf_response_roundtrip(r in ntf_response()) {
        let bytes = r.encode_checked(3).unwrap();
        prop_assert_eq!(NtfResponse::parse(&bytes, 3).unwrap(), r.clone());
        // older peers never see an INVALID reason
        let old = NtfResponse::parse(&r.encode_checked(2).unwrap(), 2).unwrap();
        if let NtfResponse::Tkn(TokenStatus::Invalid(reason)) = old {
            prop_assert_eq!(reason, None);
        }
    }

    #[test]
    fn smp_queue_ntf_roundtrip(q in smp_queue_ntf()) {
        if !q.notifier_id.is_empty() {
            prop_assert_eq!(q.to_string().parse::<SmpQueueNtf>().unwrap(), q.clone());
        }
        prop_assert_eq!(SmpQueueNtf::from_bytes(&q.to_bytes()).unwrap(), q);
    }

    #[test]
    fn pn_messages_roundtrip(items in prop::collection::vec(pn_message(), 1..7)) {
        let text = encode_pn_messages(&items);
        prop_assert_eq!(parse_pn_messages(&text).unwrap(), items);
    }

    #[test]
    fn device_token_text_roundtrip(p in provider(), hex in "([0-9a-f]{2}){1,40}") {
        let t = DeviceToken { provider: p, token: hex.into_bytes() };
        prop_assert_eq!(DeviceToken::parse_text(&t.to_text()).unwrap(), t.clone());
        prop_assert_eq!(DeviceToken::from_bytes(&t.to_bytes()).unwrap(), t);
    }

    #[test]
    fn push_handle_text_roundtrip(h in "[A-Za-z0-9_-]{1,255}") {
        let t = DeviceToken { provider: PushProvider::PushHandle, token: h.into_bytes() };
        prop_assert_eq!(DeviceToken::parse_text(&t.to_text()).unwrap(), t.clone());
        prop_assert_eq!(DeviceToken::from_bytes(&t.to_bytes()).unwrap(), t);
    }

    #[test]
    fn token_status_text_roundtrip(s in token_status(), ss in sub_status()) {
        prop_assert_eq!(TokenStatus::parse_text(&s.to_text()).unwrap(), s);
        let t = ss.to_bytes();
        prop_assert_eq!(SubStatus::from_bytes(&t).unwrap(), ss);
    }
}

// ---------------------------------------------------------------------------------------------
// garbage never panics

fn all_text_parsers(s: &str) {
    let _ = s.parse::<TransportHost>();
    let _ = ProtocolServer::parse(s);
    let _ = ServerWithAuth::parse(s);
    let _ = SmpQueueUri::parse(s);
    let _ = E2eRatchetParamsUri::parse(s);
    let _ = ConnectionRequestUri::parse(s);
    let _ = ConnShortLink::parse(s);
    let _ = parse_pn_messages(s);
    let _ = DeviceToken::parse_text(s);
    let _ = s.parse::<SmpQueueNtf>();
    let _ = TokenStatus::parse_text(s);
    let _ = SubStatus::parse_text(s);
}

fn all_binary_parsers(b: &[u8]) {
    for v in 1..=3 {
        let _ = NtfCommand::parse(b, v);
        let _ = NtfResponse::parse(b, v);
        let _ = NtfCommand::from_transmission(b.get(..b.len().min(64)).unwrap_or(b), b"", b, v);
    }
    let _ = TransportHost::from_bytes(b);
    let _ = SmpServer::from_bytes(b);
    let _ = SmpQueueNtf::from_bytes(b);
    let _ = DeviceToken::from_bytes(b);
    let _ = BasicAuth::from_bytes(b);
    let _ = PublicKeyDer::new(b.to_vec());
    let _ = PrivateKeyDer::new(b.to_vec());
    let mut p = Parser::new(b);
    let _ = ProtocolServer::decode_binary(&mut p, ProtocolType::Ntf);
}

fn mutate(s: &[u8], pos: usize, byte: u8, cut: usize) -> Vec<u8> {
    let mut v = s.to_vec();
    if !v.is_empty() {
        let i = pos % v.len();
        v[i] = byte;
        v.truncate(cut % (v.len() + 1));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn text_garbage_never_panics(s in "\\PC{0,200}") {
        all_text_parsers(&s);
    }

    #[test]
    fn text_alphabet_garbage_never_panics(
        s in "[a-z0-9:/@#?&=;,.%+_\\-\\[\\] ]{0,120}",
        prefix in prop::sample::select(vec!["smp://", "ntf://", "simplex:/", "https://", "simplex:/i#", "https://a/a#"]),
    ) {
        all_text_parsers(&format!("{prefix}{s}"));
    }

    #[test]
    fn binary_garbage_never_panics(b in prop::collection::vec(any::<u8>(), 0..300)) {
        all_binary_parsers(&b);
    }

    #[test]
    fn mutated_links_never_panic(l in conn_link(), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let m = mutate(l.to_text().as_bytes(), pos, byte, cut);
        all_text_parsers(&String::from_utf8_lossy(&m));
    }

    #[test]
    fn mutated_short_links_never_panic(l in short_link(), q in queue_uri(), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        for t in [l.to_text(), q.to_text()] {
            let m = mutate(t.as_bytes(), pos, byte, cut);
            all_text_parsers(&String::from_utf8_lossy(&m));
        }
    }

    #[test]
    fn truncated_and_mutated_ntf_never_panic(c in ntf_command(), r in ntf_response(), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let cb = c.encode_checked(3).unwrap();
        let rb = r.encode_checked(3).unwrap();
        for b in [&cb, &rb] {
            for n in 0..b.len() {
                all_binary_parsers(&b[..n]);
            }
            all_binary_parsers(&mutate(b, pos, byte, cut));
        }
    }
}
