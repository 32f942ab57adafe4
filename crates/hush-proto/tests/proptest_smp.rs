//! Property tests: round trips of commands, broker messages, errors, transmissions and
//! batches; decoders never panic on garbage or truncated input.

use hush_proto::address::{BasicAuth, KeyAlgorithm, ProtocolServer, TransportHost};
use hush_proto::encoding::{Decode, Encode, Large, ShortString};
use hush_proto::error::*;
use hush_proto::smp::*;
use hush_proto::transmission::*;
use hush_proto::version::{SMP_BLOCK_SIZE, VersionRange};
use proptest::prelude::*;
use proptest::sample::select;

fn short() -> impl Strategy<Value = ShortString> {
    prop::collection::vec(any::<u8>(), 0..40).prop_map(|v| ShortString::new(v).unwrap())
}

fn id24() -> impl Strategy<Value = ShortString> {
    prop::collection::vec(any::<u8>(), 24).prop_map(|v| ShortString::new(v).unwrap())
}

fn large() -> impl Strategy<Value = Large> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(|v| Large::new(v).unwrap())
}

fn key(algs: &'static [KeyAlgorithm]) -> impl Strategy<Value = PublicKeyDer> {
    (select(algs), prop::collection::vec(any::<u8>(), 57)).prop_map(|(a, raw)| {
        let mut der = a.spki_prefix().to_vec();
        der.extend_from_slice(&raw[..a.key_len()]);
        PublicKeyDer::new(der).unwrap()
    })
}

fn auth_key() -> impl Strategy<Value = PublicKeyDer> {
    key(&[
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Ed448,
        KeyAlgorithm::X25519,
    ])
}

fn dh_key() -> impl Strategy<Value = PublicKeyDer> {
    key(&[KeyAlgorithm::X25519])
}

fn basic_auth() -> impl Strategy<Value = BasicAuth> {
    "[A-Za-z0-9!#$%&*+.=?^_~-]{1,20}".prop_map(|s| BasicAuth::new(s).unwrap())
}

fn link_data() -> impl Strategy<Value = QueueLinkData> {
    (large(), large()).prop_map(|(fixed, user)| QueueLinkData { fixed, user })
}

fn queue_req_data() -> impl Strategy<Value = QueueReqData> {
    prop_oneof![
        prop::option::of((id24(), link_data())).prop_map(QueueReqData::Messaging),
        prop::option::of((id24(), id24(), link_data())).prop_map(QueueReqData::Contact),
    ]
}

fn new_req() -> impl Strategy<Value = NewQueueReq> {
    (
        auth_key(),
        dh_key(),
        prop::option::of(basic_auth()),
        any::<bool>(),
        prop::option::of(queue_req_data()),
        prop::option::of((auth_key(), dh_key())),
    )
        .prop_map(
            |(rcv_auth_key, rcv_dh_key, basic_auth, s, qrd, ntf)| NewQueueReq {
                rcv_auth_key,
                rcv_dh_key,
                basic_auth,
                sub_mode: if s {
                    SubscriptionMode::Subscribe
                } else {
                    SubscriptionMode::OnlyCreate
                },
                queue_req_data: qrd,
                ntf_creds: ntf.map(|(ntf_auth_key, rcv_ntf_dh_key)| NewNtfCreds {
                    ntf_auth_key,
                    rcv_ntf_dh_key,
                }),
            },
        )
}

fn server() -> impl Strategy<Value = ProtocolServer> {
    (
        prop::collection::vec("[a-z][a-z0-9]{0,10}(\\.[a-z]{2,5})?", 1..3),
        prop::option::of(1u16..),
        prop::collection::vec(any::<u8>(), 32),
    )
        .prop_map(|(hosts, port, kh)| {
            let hosts = hosts
                .iter()
                .map(|h| TransportHost::parse_bytes(h.as_bytes()).unwrap())
                .collect();
            ProtocolServer::smp(hosts, port, kh).unwrap()
        })
}

fn command() -> impl Strategy<Value = Command> {
    let simple = select(vec![
        Command::Sub,
        Command::Subs,
        Command::LDel,
        Command::NDel,
        Command::Get,
        Command::Off,
        Command::Del,
        Command::Que,
        Command::Ping,
        Command::LGet,
        Command::NSub,
        Command::NSubs,
    ]);
    prop_oneof![
        simple,
        new_req().prop_map(Command::New),
        auth_key().prop_map(Command::Key),
        auth_key().prop_map(Command::SKey),
        auth_key().prop_map(Command::LKey),
        prop::collection::vec(auth_key(), 1..4)
            .prop_map(|v| Command::RKey(NonEmpty::new(v).unwrap())),
        (id24(), link_data()).prop_map(|(link_id, data)| Command::LSet { link_id, data }),
        (auth_key(), dh_key()).prop_map(|(notifier_key, rcv_ntf_dh_key)| Command::NKey {
            notifier_key,
            rcv_ntf_dh_key
        }),
        short().prop_map(Command::Ack),
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(n, body)| {
            Command::Send {
                flags: MsgFlags { notification: n },
                body,
            }
        }),
        (server(), prop::option::of(basic_auth()))
            .prop_map(|(server, basic_auth)| Command::Prxy { server, basic_auth }),
        (
            any::<u16>(),
            dh_key(),
            prop::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|(version, key, enc_transmission)| Command::PFwd {
                version,
                key,
                enc_transmission
            }),
        prop::collection::vec(any::<u8>(), 0..100).prop_map(Command::RFwd),
    ]
}

fn transport_error() -> impl Strategy<Value = TransportError> {
    select(vec![
        TransportError::Block,
        TransportError::Version,
        TransportError::LargeMsg,
        TransportError::Session,
        TransportError::NoAuth,
        TransportError::Handshake(HandshakeError::Parse),
        TransportError::Handshake(HandshakeError::Identity),
        TransportError::Handshake(HandshakeError::BadAuth),
        TransportError::Handshake(HandshakeError::BadService),
    ])
}

fn broker_error() -> impl Strategy<Value = BrokerErrorType> {
    prop_oneof![
        short().prop_map(BrokerErrorType::Response),
        short().prop_map(BrokerErrorType::Unexpected),
        select(vec![
            BrokerErrorType::Network,
            BrokerErrorType::Timeout,
            BrokerErrorType::Host,
            BrokerErrorType::NoService
        ]),
        transport_error().prop_map(BrokerErrorType::Transport),
    ]
}

fn cmd_error() -> impl Strategy<Value = CommandError> {
    select(vec![
        CommandError::Unknown,
        CommandError::Syntax,
        CommandError::Prohibited,
        CommandError::NoAuth,
        CommandError::HasAuth,
        CommandError::NoEntity,
    ])
}

fn error_type() -> impl Strategy<Value = ErrorType> {
    let leaf = prop_oneof![
        select(vec![
            ErrorType::Block,
            ErrorType::Session,
            ErrorType::Auth,
            ErrorType::Service,
            ErrorType::Crypto,
            ErrorType::Quota,
            ErrorType::NoMsg,
            ErrorType::LargeMsg,
            ErrorType::Expired,
            ErrorType::Internal,
            ErrorType::Duplicate,
        ]),
        cmd_error().prop_map(ErrorType::Cmd),
        "[ -~]{0,30}".prop_map(ErrorType::Store),
        (
            any::<bool>(),
            prop::option::of(prop_oneof![
                Just("{}".to_string()),
                (0i64..100000).prop_map(|n| format!("{{\"ttl\":{n}}}"))
            ])
        )
            .prop_map(|(spam, notice)| ErrorType::Blocked(BlockingInfo {
                reason: if spam {
                    BlockingReason::Spam
                } else {
                    BlockingReason::Content
                },
                notice
            })),
        broker_error().prop_map(|b| ErrorType::Proxy(ProxyError::Broker(b))),
        select(vec![
            ErrorType::Proxy(ProxyError::BasicAuth),
            ErrorType::Proxy(ProxyError::NoSession)
        ]),
    ];
    leaf.prop_recursive(3, 8, 1, |inner| {
        inner.prop_map(|e| ErrorType::Proxy(ProxyError::Protocol(Box::new(e))))
    })
}

fn broker_msg() -> impl Strategy<Value = BrokerMsg> {
    prop_oneof![
        (
            id24(),
            id24(),
            dh_key(),
            prop::option::of(any::<bool>()),
            prop::option::of(id24()),
            prop::option::of(id24()),
            prop::option::of((id24(), dh_key()))
        )
            .prop_map(|(rcv_id, snd_id, srv_dh_key, m, link_id, service_id, nc)| {
                BrokerMsg::Ids(QueueIdsKeys {
                    rcv_id,
                    snd_id,
                    srv_dh_key,
                    queue_mode: m.map(|m| {
                        if m {
                            QueueMode::Messaging
                        } else {
                            QueueMode::Contact
                        }
                    }),
                    link_id,
                    service_id,
                    server_ntf_creds: nc.map(|(notifier_id, srv_ntf_dh_key)| ServerNtfCreds {
                        notifier_id,
                        srv_ntf_dh_key,
                    }),
                })
            }),
        (id24(), link_data()).prop_map(|(sender_id, data)| BrokerMsg::Lnk { sender_id, data }),
        prop::option::of(id24()).prop_map(BrokerMsg::Sok),
        any::<i64>().prop_map(BrokerMsg::Soks),
        any::<i64>().prop_map(BrokerMsg::Ends),
        (id24(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(msg_id, body)| BrokerMsg::Msg { msg_id, body }),
        (id24(), dh_key()).prop_map(|(notifier_id, srv_ntf_dh_key)| BrokerMsg::Nid {
            notifier_id,
            srv_ntf_dh_key
        }),
        (any::<[u8; 24]>(), short())
            .prop_map(|(nonce, enc_meta)| BrokerMsg::NMsg { nonce, enc_meta }),
        (
            short(),
            any::<(u16, u16)>(),
            prop::collection::vec(large(), 1..3),
            large()
        )
            .prop_map(|(session_id, (a, b), chain, signed_key)| BrokerMsg::PKey {
                session_id,
                version_range: VersionRange::new(a.min(b), a.max(b)).unwrap(),
                cert_chain: NonEmpty::new(chain).unwrap(),
                signed_key,
            }),
        prop::collection::vec(any::<u8>(), 0..100).prop_map(BrokerMsg::RRes),
        prop::collection::vec(any::<u8>(), 0..100).prop_map(BrokerMsg::PRes),
        "[ -~]{0,40}".prop_map(|s| BrokerMsg::Info(format!("{{{s}}}").into_bytes())),
        error_type().prop_map(BrokerMsg::Err),
        select(vec![
            BrokerMsg::End,
            BrokerMsg::Deld,
            BrokerMsg::Ok,
            BrokerMsg::Pong
        ]),
    ]
}

/// What a command looks like after an encode/decode trip at `v` (fields a version cannot
/// carry are dropped, as the reference does).
fn normalize_command(c: &Command, v: u16) -> Command {
    match c {
        Command::New(r) => {
            let mut r = r.clone();
            if v < 17 {
                r.ntf_creds = None;
            }
            if v < 9 {
                r.queue_req_data = None;
            } else if v < 15 {
                r.queue_req_data = Some(match r.queue_mode() {
                    Some(QueueMode::Messaging) => QueueReqData::Messaging(None),
                    _ => QueueReqData::Contact(None),
                });
            }
            Command::New(r)
        }
        c => c.clone(),
    }
}

fn normalize_msg(m: &BrokerMsg, v: u16) -> BrokerMsg {
    match m {
        BrokerMsg::Ids(q) => {
            let mut q = q.clone();
            if v < 17 {
                q.server_ntf_creds = None;
            }
            if v < 16 {
                q.service_id = None;
            }
            if v < 15 {
                q.link_id = None;
                q.queue_mode = if v < 9 {
                    None
                } else if q.queue_mode == Some(QueueMode::Messaging) {
                    Some(QueueMode::Messaging)
                } else {
                    Some(QueueMode::Contact)
                };
            }
            BrokerMsg::Ids(q)
        }
        BrokerMsg::Sok(_) if v < 16 => BrokerMsg::Ok,
        BrokerMsg::Deld if v < 10 => BrokerMsg::End,
        BrokerMsg::Err(e) => BrokerMsg::Err(e.for_version(v)),
        m => m.clone(),
    }
}

fn transmission_parts() -> impl Strategy<Value = RawTransmission> {
    (
        prop_oneof![
            Just(vec![]),
            prop::collection::vec(any::<u8>(), 64),
            prop::collection::vec(any::<u8>(), 80)
        ],
        prop::option::of(prop::collection::vec(any::<u8>(), 64)),
        prop::collection::vec(any::<u8>(), 0..33),
        prop::collection::vec(any::<u8>(), 0..25),
        prop::collection::vec(any::<u8>(), 0..25),
        prop::collection::vec(any::<u8>(), 0..100),
    )
        .prop_map(
            |(authorization, service_sig, session_id, corr_id, entity_id, command)| {
                RawTransmission {
                    authorization,
                    service_sig,
                    session_id,
                    corr_id,
                    entity_id,
                    command,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn command_round_trip(c in command(), v in 6u16..=18) {
        let b = c.encode(v);
        let d = Command::decode(&b, v);
        prop_assert_eq!(d, Ok(normalize_command(&c, v)));
        // every strict prefix that drops parameters fails or parses to something else, never panics
        for n in 0..b.len() {
            let _ = Command::decode(&b[..n], v);
        }
    }

    #[test]
    fn command_credentials_total(c in command(), auth in any::<bool>(), entity in prop::collection::vec(any::<u8>(), 0..3)) {
        let r = c.check_credentials(auth, &entity);
        match c.party() {
            Party::Recipient | Party::Notifier | Party::RecipientService | Party::NotifierService
                => prop_assert_eq!(r.is_ok(), auth && !entity.is_empty()),
            Party::IdleClient | Party::ProxyService => prop_assert_eq!(r.is_ok(), !auth && entity.is_empty()),
            _ => {}
        }
    }

    #[test]
    fn broker_msg_round_trip(m in broker_msg(), v in 6u16..=18) {
        let b = m.encode(v);
        prop_assert_eq!(BrokerMsg::decode(&b, v), Ok(normalize_msg(&m, v)));
        for n in 0..b.len() {
            let _ = BrokerMsg::decode(&b[..n], v);
        }
    }

    #[test]
    fn error_type_round_trip(e in error_type()) {
        let b = e.to_bytes();
        prop_assert_eq!(ErrorType::decode(&b), Ok(e.clone()));
        prop_assert_eq!(ErrorType::from_bytes(&b).map(|x| x.to_bytes()), Ok(b));
    }

    #[test]
    fn transmission_round_trip(t in transmission_parts(), smp in any::<bool>(), v in 1u16..=18) {
        let layout = if smp { Layout::smp(v) } else { Layout::ntf(v.min(3)) };
        let mut out = Vec::new();
        let r = encode_transmission_with(&mut out, &t.as_ref(), layout);
        let sig_ok = t.service_sig.is_none() || (layout.service_slot && !t.authorization.is_empty());
        prop_assert_eq!(r.is_ok(), sig_ok);
        if sig_ok {
            let d = decode_transmission_with(&out, layout).unwrap();
            prop_assert_eq!(d.authorization, &t.authorization[..]);
            prop_assert_eq!(d.service_sig, t.service_sig.as_deref());
            prop_assert_eq!(d.corr_id, &t.corr_id[..]);
            prop_assert_eq!(d.entity_id, &t.entity_id[..]);
            prop_assert_eq!(d.command, &t.command[..]);
            if layout.session_id_on_wire {
                prop_assert_eq!(d.session_id, &t.session_id[..]);
            } else {
                prop_assert!(d.session_id.is_empty());
            }
        } else {
            prop_assert!(out.is_empty());
        }
    }

    #[test]
    fn batch_round_trip(sizes in prop::collection::vec(0usize..3000, 0..40), block in prop_oneof![Just(SMP_BLOCK_SIZE), Just(512usize), 20usize..5000]) {
        let items: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, n)| vec![i as u8; *n]).collect();
        let batches = batch_transmissions(&items, block);
        let mut next = 0;
        for b in &batches {
            match b {
                Ok(b) => {
                    prop_assert_eq!(b.items.start, next);
                    prop_assert!(!b.items.is_empty() && b.items.len() <= 255);
                    prop_assert!(b.content.len() - 1 <= block - 19);
                    let got = decode_batch(&b.content).unwrap();
                    let want: Vec<&[u8]> = items[b.items.clone()].iter().map(|v| &v[..]).collect();
                    prop_assert_eq!(got, want);
                    next = b.items.end;
                }
                Err(e) => {
                    prop_assert_eq!(e.index, next);
                    prop_assert!(items[e.index].len() + 2 > block.saturating_sub(19));
                    next += 1;
                }
            }
        }
        prop_assert_eq!(next, items.len());
    }

    #[test]
    fn decoders_never_panic_on_garbage(b in prop::collection::vec(any::<u8>(), 0..400), v in 0u16..=20) {
        let _ = Command::decode(&b, v);
        let _ = BrokerMsg::decode(&b, v);
        let _ = ErrorType::decode(&b);
        let _ = decode_batch(&b);
        let _ = VersionRange::from_bytes(&b);
        let _ = VersionRange::str_decode(&String::from_utf8_lossy(&b));
        for layout in [Layout::smp(6), Layout::smp(18), Layout::ntf(1), Layout::ntf(3)] {
            let _ = decode_transmission_with(&b, layout);
        }
    }

    #[test]
    fn decoders_never_panic_on_tagged_garbage(
        tag in select(COMMAND_TAGS.iter().chain(BROKER_TAGS.iter()).copied().collect::<Vec<_>>()),
        rest in prop::collection::vec(any::<u8>(), 0..200),
        v in 6u16..=18,
    ) {
        let mut b = tag.as_bytes().to_vec();
        b.push(b' ');
        b.extend(rest);
        let _ = Command::decode(&b, v);
        let _ = BrokerMsg::decode(&b, v);
        let mut e = b"PROXY ".to_vec();
        e.extend_from_slice(&b);
        let _ = ErrorType::decode(&e);
    }

    #[test]
    fn flipped_bytes_never_panic(c in command(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut b = c.encode(18);
        let i = pos.index(b.len());
        b[i] = byte;
        let _ = Command::decode(&b, 18);
        let _ = BrokerMsg::decode(&b, 18);
    }
}

#[test]
fn broker_tag_from_client_is_unknown_and_vice_versa() {
    for t in BROKER_TAGS {
        assert_eq!(
            Command::decode(t.as_bytes(), 18),
            Err(CommandError::Unknown),
            "{t}"
        );
    }
    for t in COMMAND_TAGS {
        assert_eq!(
            BrokerMsg::decode(t.as_bytes(), 18),
            Err(CommandError::Unknown),
            "{t}"
        );
        // a known tag with a stray trailing character is an unknown tag
        assert_eq!(
            Command::decode(format!("{t}=").as_bytes(), 18),
            Err(CommandError::Unknown)
        );
    }
    // parameterless commands with a trailing space are a syntax error
    assert_eq!(Command::decode(b"SUB ", 18), Err(CommandError::Syntax));
    // SEND: reserved flag bytes skipped, the body must follow a space
    assert_eq!(
        Command::decode(b"SEND Txyz hi", 18),
        Ok(Command::Send {
            flags: MsgFlags { notification: true },
            body: b"hi".to_vec()
        })
    );
    assert_eq!(Command::decode(b"SEND T", 18), Err(CommandError::Syntax));
    // a DH key where an auth key is allowed is fine (X25519), an Ed25519 key as DH key is not
    let ed = hex::decode(
        "302a300506032b657003210079b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664",
    )
    .unwrap();
    let mut nkey = b"NKEY ".to_vec();
    nkey.push(44);
    nkey.extend(&ed);
    nkey.push(44);
    nkey.extend(&ed);
    assert_eq!(Command::decode(&nkey, 18), Err(CommandError::Syntax));
}

#[test]
fn key_encoding_checks() {
    assert!(PublicKeyDer::new(vec![0x30, 0x2a]).is_err());
    let x448 = {
        let mut d = KeyAlgorithm::X448.spki_prefix().to_vec();
        d.extend([1u8; 56]);
        d
    };
    assert!(PublicKeyDer::new(x448.clone()).is_ok());
    assert!(PublicKeyDer::auth_key(x448.clone()).is_err());
    assert!(PublicKeyDer::dh_key(x448).is_err());
    // the encoded form is the shortString of the DER
    let k = PublicKeyDer::new({
        let mut d = KeyAlgorithm::Ed25519.spki_prefix().to_vec();
        d.extend([2u8; 32]);
        d
    })
    .unwrap();
    assert_eq!(k.to_bytes()[0], 44);
}
