//! Envelope codecs: proptest round trips and "never panics on garbage/truncated input".

use hush_agent::envelope::{
    AMessage, AgentMessage, AgentMsgEnvelope, ClientMessage, ClientMsgEnvelope, MsgReceipt,
    PrivHeader, SmpQueueInfo, SndQAddr,
};
use hush_agent::ratchet::{E2eRatchetParams, KemParams};
use hush_crypto::{X448Secret, X25519Secret};
use hush_proto::address::{ProtocolServer, QueueMode};
use hush_proto::encoding::Parser;
use proptest::prelude::*;

fn server() -> ProtocolServer {
    ProtocolServer::parse(
        "smp://AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=@smp.example.com,10.0.0.1:5223",
    )
    .unwrap()
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn params() -> impl Strategy<Value = E2eRatchetParams> {
    (2u16..=3, prop::option::of(bytes(40)), any::<bool>()).prop_map(|(version, kem, acc)| {
        let k1 = X448Secret::generate().unwrap().public().unwrap();
        let k2 = X448Secret::generate().unwrap().public().unwrap();
        let kem = if version >= 3 {
            kem.map(|k| {
                if acc {
                    KemParams::Accepted {
                        ct: k.clone(),
                        key: k,
                    }
                } else {
                    KemParams::Proposed { key: k }
                }
            })
        } else {
            None
        };
        E2eRatchetParams {
            version,
            key1: k1,
            key2: k2,
            kem,
        }
    })
}

fn amessage() -> impl Strategy<Value = AMessage> {
    prop_oneof![
        Just(AMessage::Hello),
        bytes(200).prop_map(AMessage::AMsg),
        prop::collection::vec((any::<i64>(), bytes(32), bytes(50)), 1..4).prop_map(|rs| {
            AMessage::ARcvd(
                rs.into_iter()
                    .map(|(agent_msg_id, msg_hash, info)| MsgReceipt {
                        agent_msg_id,
                        msg_hash,
                        info,
                    })
                    .collect(),
            )
        }),
        bytes(24).prop_map(|sender_id| AMessage::QCont(SndQAddr {
            server: server(),
            sender_id
        })),
        any::<i64>().prop_map(AMessage::EReady),
        (bytes(24), any::<bool>()).prop_map(|(sender_id, v4)| {
            let uri = hush_proto::address::SmpQueueUri {
                client_versions: hush_proto::version::VersionRange::new(if v4 { 4 } else { 1 }, 4)
                    .unwrap(),
                server: server(),
                sender_id: sender_id.clone(),
                dh_public_key: X25519Secret::generate().public().to_spki_der(),
                queue_mode: Some(QueueMode::Messaging),
            };
            let replaced = v4.then(|| SndQAddr {
                server: server(),
                sender_id,
            });
            AMessage::QAdd(vec![(uri, replaced)])
        }),
        (bytes(24), bytes(44)).prop_map(|(sender_id, key)| {
            AMessage::QKey(vec![(
                SmpQueueInfo {
                    client_version: 4,
                    server: server(),
                    sender_id,
                    dh_public_key: X25519Secret::generate().public(),
                    queue_mode: Some(QueueMode::Messaging),
                },
                key,
            )])
        }),
        (bytes(24), any::<bool>()).prop_map(|(sender_id, primary)| AMessage::QUse(vec![(
            SndQAddr {
                server: server(),
                sender_id
            },
            primary
        )])),
        prop::collection::vec(bytes(24), 1..3).prop_map(|ids| AMessage::QTest(
            ids.into_iter()
                .map(|sender_id| SndQAddr {
                    server: server(),
                    sender_id
                })
                .collect()
        )),
    ]
}

fn agent_message() -> impl Strategy<Value = AgentMessage> {
    prop_oneof![
        bytes(100).prop_map(AgentMessage::ConnInfo),
        (
            bytes(24),
            bytes(100),
            2u16..=4,
            prop::option::of(any::<bool>())
        )
            .prop_map(|(sender_id, conn_info, client_version, m)| {
                let queue_mode = match client_version {
                    4 => m.map(|m| {
                        if m {
                            QueueMode::Messaging
                        } else {
                            QueueMode::Contact
                        }
                    }),
                    3 => Some(QueueMode::Messaging),
                    _ => None,
                };
                AgentMessage::ConnInfoReply {
                    queues: vec![SmpQueueInfo {
                        client_version,
                        server: server(),
                        sender_id,
                        dh_public_key: X25519Secret::generate().public(),
                        queue_mode,
                    }],
                    // starts with a byte that cannot be read as a queue mode
                    conn_info: [b"{".as_slice(), &conn_info].concat(),
                }
            }),
        bytes(100).prop_map(AgentMessage::RatchetInfo),
        (any::<i64>(), bytes(32), amessage()).prop_map(|(snd_msg_id, prev_msg_hash, msg)| {
            AgentMessage::Message {
                snd_msg_id,
                prev_msg_hash,
                msg,
            }
        }),
    ]
}

fn agent_envelope() -> impl Strategy<Value = AgentMsgEnvelope> {
    prop_oneof![
        (1u16..=7, prop::option::of(params()), bytes(200)).prop_map(|(v, e2e, enc)| {
            AgentMsgEnvelope::Confirmation {
                agent_version: v,
                e2e,
                enc_conn_info: enc,
            }
        }),
        (1u16..=7, bytes(200)).prop_map(|(v, enc)| AgentMsgEnvelope::Msg {
            agent_version: v,
            enc_agent_message: enc,
        }),
        (1u16..=7, params(), bytes(50)).prop_map(|(v, e2e, info)| AgentMsgEnvelope::RatchetKey {
            agent_version: v,
            e2e,
            info,
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn agent_message_round_trip(m in agent_message()) {
        let b = m.encode().unwrap();
        prop_assert_eq!(AgentMessage::decode(&b).unwrap(), m);
    }

    #[test]
    fn agent_envelope_round_trip(e in agent_envelope()) {
        let b = e.encode().unwrap();
        prop_assert_eq!(AgentMsgEnvelope::decode(&b).unwrap(), e);
    }

    #[test]
    fn client_envelope_round_trip(v in any::<u16>(), key in any::<bool>(), nonce in any::<[u8; 24]>(), ct in bytes(300)) {
        let e = ClientMsgEnvelope {
            smp_client_version: v,
            e2e_dh_key: key.then(|| X25519Secret::generate().public()),
            nonce,
            ciphertext: ct,
        };
        prop_assert_eq!(ClientMsgEnvelope::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn client_message_round_trip(k in prop::option::of(bytes(100)), body in bytes(300)) {
        let m = ClientMessage {
            header: match k { Some(k) => PrivHeader::Confirmation(k), None => PrivHeader::Empty },
            body,
        };
        prop_assert_eq!(ClientMessage::decode(&m.encode().unwrap()).unwrap(), m);
    }

    #[test]
    fn decoders_never_panic(g in bytes(400)) {
        let _ = AgentMessage::decode(&g);
        let _ = AgentMsgEnvelope::decode(&g);
        let _ = ClientMsgEnvelope::decode(&g);
        let _ = ClientMessage::decode(&g);
        let _ = SmpQueueInfo::parse(&mut Parser::new(&g));
        let _ = E2eRatchetParams::parse(&mut Parser::new(&g));
    }

    #[test]
    fn truncations_are_errors_not_panics(m in agent_message(), cut in any::<prop::sample::Index>()) {
        let b = m.encode().unwrap();
        let n = cut.index(b.len().max(1));
        let _ = AgentMessage::decode(&b[..n]);
        let e = AgentMsgEnvelope::Msg { agent_version: 7, enc_agent_message: b };
        let eb = e.encode().unwrap();
        prop_assert!(AgentMsgEnvelope::decode(&eb[..cut.index(3).min(eb.len())]).is_err());
    }
}
