//! /work/shared/vectors/commands.json: transmission.*, xftp_transmission.*, batching.*,
//! smp_syntax.* and encode.* vectors.

use hush_proto::encoding::{pad, unpad};
use hush_proto::transmission::*;
use hush_proto::version::SMP_BLOCK_SIZE;
use serde_json::Value;

mod common;
use common::load;
use sha2::{Digest, Sha256};

fn family(prefix: &str) -> Vec<Value> {
    common::family("commands.json", prefix)
}

fn hexv(v: &Value) -> Vec<u8> {
    hex::decode(
        v.as_str()
            .unwrap_or_else(|| panic!("hex string expected, got {v}")),
    )
    .expect("valid hex")
}

fn ascii(v: &Value) -> Vec<u8> {
    v.as_str().expect("string").as_bytes().to_vec()
}

/// `_hex` or `_ascii` variant of a field.
fn bytes_field(o: &Value, base: &str) -> Vec<u8> {
    if let Some(h) = o.get(format!("{base}_hex")) {
        hexv(h)
    } else {
        ascii(&o[format!("{base}_ascii")])
    }
}

fn single_block(items: &[&[u8]]) -> Vec<u8> {
    let owned: Vec<Vec<u8>> = items.iter().map(|t| t.to_vec()).collect();
    let batches = batch_transmissions(&owned, SMP_BLOCK_SIZE);
    assert_eq!(batches.len(), 1);
    let b = batches.into_iter().next().unwrap().unwrap();
    assert_eq!(b.items, 0..items.len());
    assert_eq!(batch_one(items, SMP_BLOCK_SIZE).unwrap(), b.content);
    b.content
}

#[test]
fn transmission_vectors() {
    let vs = family("transmission.");
    assert_eq!(vs.len(), 5);
    for v in &vs {
        let name = v["name"].as_str().unwrap();
        let i = &v["inputs"];
        let e = &v["expected"];
        let version = i.get("smp_version").and_then(Value::as_u64).unwrap_or(18) as u16;
        let corr = hexv(&i["corr_id_hex"]);
        let entity = i.get("entity_id_hex").map(hexv).unwrap_or_default();
        let t_bytes = hexv(&e["transmission_hex"]);
        let t = decode_transmission(&t_bytes, version, true).unwrap();
        assert_eq!(t.corr_id, &corr[..], "{name}");
        assert_eq!(t.entity_id, &entity[..], "{name}");
        assert_eq!(t.service_sig, None, "{name}");
        if let Some(c) = i.get("command_ascii") {
            assert_eq!(t.command, &ascii(c)[..], "{name}");
        }
        // re-encoding gives the same bytes
        let mut out = Vec::new();
        encode_transmission(&mut out, &t, version, true).unwrap();
        assert_eq!(out, t_bytes, "{name} re-encode");
        if let Some(sig) = e.get("signature_hex") {
            assert_eq!(t.authorization, &hexv(sig)[..], "{name}");
        }
        if let Some(sid) = i.get("session_id_hex") {
            let sid = hexv(sid);
            if version < 7 {
                assert_eq!(t.session_id, &sid[..], "{name}: v<7 session id on the wire");
            } else {
                assert!(t.session_id.is_empty());
            }
            let authorized = t.authorized(&sid);
            if let Some(a) = e.get("authorized_hex") {
                assert_eq!(authorized, hexv(a), "{name} authorized bytes");
            }
            // the authorized bytes are the same formula at every version
            let mut expect = vec![sid.len() as u8];
            expect.extend(&sid);
            expect.push(corr.len() as u8);
            expect.extend(&corr);
            expect.push(entity.len() as u8);
            expect.extend(&entity);
            expect.extend(t.command);
            assert_eq!(authorized, expect, "{name}");
        }
        match name {
            "transmission.v18.SUB.ed25519" | "transmission.v6.SUB.ed25519" => {
                assert_eq!(t.authorization.len(), 64);
                // same signature in both layouts (the signed bytes do not depend on the version)
                assert_eq!(
                    hex::encode(t.authorization),
                    "1ae3c80f1f24ef2b1fc8f896b42c7adf631972c4a5f0b20db43f34d94eeb18c16463bc18e9d9ec51506caa31eda130c8b5e52f4f18b0f538dc6aea45ae579407"
                );
                // v18 with non-empty authorization: '0' service slot right after it
                if version >= 16 {
                    assert_eq!(t_bytes[65], b'0');
                }
            }
            "transmission.v18.SUB.authenticator" => assert_eq!(t.authorization.len(), 80),
            "transmission.v18.PING" => {
                assert!(t.authorization.is_empty());
                assert_eq!(t.command, b"PING");
                let resp = hexv(&e["response_transmission_hex"]);
                let mut out = Vec::new();
                encode_transmission(&mut out, &Transmission::new(&corr, &[], b"PONG"), 18, true)
                    .unwrap();
                assert_eq!(out, resp, "{name} response");
            }
            "transmission.v18.SUB.response_SOK" => {
                assert!(t.authorization.is_empty());
                assert_eq!(t.command, b"SOK 0");
                assert_eq!(e["v15_and_below_response_ascii"], "OK");
            }
            _ => panic!("unhandled {name}"),
        }
        if let Some(b) = e.get("block_content_hex") {
            let content = hexv(b);
            assert_eq!(single_block(&[&t_bytes]), content, "{name} block content");
            assert_eq!(decode_batch(&content).unwrap(), vec![&t_bytes[..]]);
        }
    }
}

#[test]
fn xftp_transmission_vectors() {
    // XFTP keeps the session id on the wire: the SMP v6 layout.
    let vs = family("xftp_transmission.");
    assert_eq!(vs.len(), 2);
    for v in &vs {
        let name = v["name"].as_str().unwrap();
        let i = &v["inputs"];
        let e = &v["expected"];
        let content = hexv(&e["block_content_hex"]);
        let items = decode_batch(&content).unwrap();
        assert_eq!(items.len(), 1);
        let t = decode_transmission_with(items[0], Layout::smp(6)).unwrap();
        assert_eq!(t.session_id, &hexv(&i["session_id_hex"])[..], "{name}");
        assert_eq!(t.corr_id, &ascii(&i["corr_id_ascii"])[..], "{name}");
        assert_eq!(t.entity_id, &hexv(&i["entity_id_hex"])[..], "{name}");
        assert_eq!(t.command, &ascii(&i["command_ascii"])[..], "{name}");
        match name {
            "xftp_transmission.PING.unsigned" => assert!(t.authorization.is_empty()),
            "xftp_transmission.FPUT.signed" => assert_eq!(t.authorization.len(), 64),
            _ => panic!("unhandled {name}"),
        }
        let mut out = Vec::new();
        encode_transmission_with(&mut out, &t, Layout::smp(6)).unwrap();
        assert_eq!(single_block(&[&out]), content, "{name}");
        let block = pad(&content, e["padded_block_len"].as_u64().unwrap() as usize).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&block)),
            e["padded_block_sha256_hex"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(unpad(&block).unwrap(), &content[..]);
    }
}

fn ed25519_sub(version: u16, k: u8) -> Vec<u8> {
    let t = Transmission {
        authorization: &[k; 64],
        service_sig: None,
        session_id: &[7; 32],
        corr_id: &[k; 24],
        entity_id: &[k.wrapping_add(1); 24],
        command: b"SUB",
    };
    let mut out = Vec::new();
    encode_transmission(&mut out, &t, version, true).unwrap();
    out
}

fn counts(b: &[Result<Batch, TooLarge>]) -> Vec<Option<usize>> {
    b.iter()
        .map(|r| r.as_ref().ok().map(|b| b.items.len()))
        .collect()
}

/// Every block content is well formed and within budget, and the items are all there in order.
fn check_batches(items: &[Vec<u8>], batches: &[Result<Batch, TooLarge>]) {
    let mut next = 0;
    for b in batches {
        match b {
            Ok(b) => {
                assert_eq!(b.items.start, next);
                assert!(b.content.len() + 18 <= SMP_BLOCK_SIZE);
                let got = decode_batch(&b.content).unwrap();
                let want: Vec<&[u8]> = items[b.items.clone()].iter().map(|v| &v[..]).collect();
                assert_eq!(got, want);
                next = b.items.end;
            }
            Err(e) => {
                assert_eq!(e.index, next);
                next += 1;
            }
        }
    }
    assert_eq!(next, items.len());
}

#[test]
fn batching_vectors() {
    let vs = family("batching.");
    assert_eq!(vs.len(), 5);
    for v in &vs {
        let name = v["name"].as_str().unwrap();
        let want = &v["expected"]["value"];
        match name {
            "batching.v18.SUB_per_block" | "batching.v6.SUB_per_block" => {
                let version = if name.contains("v18") { 18 } else { 6 };
                let per = want.as_u64().unwrap() as usize;
                let subs: Vec<Vec<u8>> = (0..300).map(|k| ed25519_sub(version, k as u8)).collect();
                assert_eq!(subs[0].len(), if version == 18 { 119 } else { 151 });
                let b = batch_transmissions(&subs, SMP_BLOCK_SIZE);
                check_batches(&subs, &b);
                // right-aligned like the reference: the remainder goes first
                let r = 300 % per;
                let mut expect = vec![Some(r)];
                expect.extend(std::iter::repeat_n(Some(per), 300 / per));
                assert_eq!(counts(&b), expect, "{name}");
                // exactly `per` fit one block, one more does not
                assert_eq!(batch_transmissions(&subs[..per], SMP_BLOCK_SIZE).len(), 1);
                assert_eq!(
                    batch_transmissions(&subs[..per + 1], SMP_BLOCK_SIZE).len(),
                    2
                );
            }
            "batching.v18.END_per_block" => {
                let ends: Vec<Vec<u8>> = (0..300)
                    .map(|k| {
                        let mut o = Vec::new();
                        encode_transmission(
                            &mut o,
                            &Transmission::new(&[], &[k as u8; 24], b"END"),
                            18,
                            true,
                        )
                        .unwrap();
                        o
                    })
                    .collect();
                let b = batch_transmissions(&ends, SMP_BLOCK_SIZE);
                check_batches(&ends, &b);
                assert_eq!(want.as_u64(), Some(255));
                assert_eq!(counts(&b), vec![Some(45), Some(255)], "{name}");
            }
            "batching.v18.NMSG_per_block" => {
                let ntfs: Vec<Vec<u8>> = (0..200)
                    .map(|k| {
                        let mut cmd = b"NMSG ".to_vec();
                        cmd.extend([k as u8; 24]);
                        cmd.push(144);
                        cmd.extend([1u8; 144]);
                        let mut o = Vec::new();
                        encode_transmission(
                            &mut o,
                            &Transmission::new(&[], &[k as u8; 24], &cmd),
                            18,
                            true,
                        )
                        .unwrap();
                        o
                    })
                    .collect();
                assert_eq!(ntfs[0].len() + 2, 203);
                let b = batch_transmissions(&ntfs, SMP_BLOCK_SIZE);
                check_batches(&ntfs, &b);
                assert_eq!(want.as_u64(), Some(80));
                assert_eq!(counts(&b), vec![Some(40), Some(80), Some(80)], "{name}");
            }
            "batching.v18.SOK_with_MSG" => {
                // Upstream testBatchSubResponses: SOK Nothing with 24-byte corrId and id; MSG with
                // a 24-byte msgId and a maxMessageLength (16048) random body.
                let sok = |k: u8| {
                    let mut o = Vec::new();
                    encode_transmission(
                        &mut o,
                        &Transmission::new(&[k; 24], &[k; 24], b"SOK 0"),
                        18,
                        true,
                    )
                    .unwrap();
                    o
                };
                let mut cmd = b"MSG ".to_vec();
                cmd.push(24);
                cmd.extend([9u8; 24]);
                cmd.extend(vec![5u8; 16048]);
                let mut msg = Vec::new();
                encode_transmission(
                    &mut msg,
                    &Transmission::new(&[3; 24], &[4; 24], &cmd),
                    18,
                    true,
                )
                .unwrap();
                let mut four: Vec<Vec<u8>> = (0..4).map(sok).collect();
                four.push(msg.clone());
                assert_eq!(
                    batch_transmissions(&four, SMP_BLOCK_SIZE).len(),
                    1,
                    "{name}"
                );
                let mut five: Vec<Vec<u8>> = (0..5).map(sok).collect();
                five.push(msg);
                let b = batch_transmissions(&five, SMP_BLOCK_SIZE);
                check_batches(&five, &b);
                assert_eq!(b.len(), 2, "{name}");
                assert!(
                    want.as_str()
                        .unwrap()
                        .starts_with("4 SOK + 1 max-size MSG fit in one block")
                );
            }
            _ => panic!("unhandled {name}"),
        }
    }
}

/// Upstream BatchingTests with an over-size SEND in the middle / at the start.
#[test]
fn batching_large_message_splits() {
    let send = |len: usize| {
        let mut cmd = b"SEND F ".to_vec();
        cmd.extend(vec![1u8; len]);
        let t = Transmission {
            authorization: &[2; 80],
            service_sig: None,
            session_id: &[],
            corr_id: &[3; 24],
            entity_id: &[4; 24],
            command: &cmd,
        };
        let mut o = Vec::new();
        encode_transmission(&mut o, &t, 18, true).unwrap();
        o
    };
    let subs = |n: usize| (0..n).map(|k| ed25519_sub(18, k as u8)).collect::<Vec<_>>();
    // 60 SUB, SEND 8000, 40 SUB → (33, 68)
    let mut items = subs(60);
    items.push(send(8000));
    items.extend(subs(40));
    let b = batch_transmissions(&items, SMP_BLOCK_SIZE);
    check_batches(&items, &b);
    assert_eq!(counts(&b), vec![Some(33), Some(68)]);
    // 60 SUB, SEND 17000, 150 SUB → (60, large, 15, 135)
    let mut items = subs(60);
    items.push(send(17000));
    items.extend(subs(150));
    let b = batch_transmissions(&items, SMP_BLOCK_SIZE);
    check_batches(&items, &b);
    assert_eq!(counts(&b), vec![Some(60), None, Some(15), Some(135)]);
    assert_eq!(b[1].as_ref().unwrap_err().index, 60);
    // SEND 17000 first, then 60 + 150 SUB → (large, 75, 135)
    let mut items = vec![send(17000)];
    items.extend(subs(210));
    let b = batch_transmissions(&items, SMP_BLOCK_SIZE);
    check_batches(&items, &b);
    assert_eq!(counts(&b), vec![None, Some(75), Some(135)]);
}

#[test]
fn decode_batch_rejects_malformed() {
    assert!(decode_batch(&[]).is_err());
    assert!(decode_batch(&[0]).is_err(), "count 0");
    assert!(decode_batch(&[1, 0, 2, 1]).is_err(), "short item");
    assert!(decode_batch(&[1, 0, 1, 1, 9]).is_err(), "trailing bytes");
    assert_eq!(
        decode_batch(&[2, 0, 1, 1, 0, 0]).unwrap(),
        vec![&[1u8][..], &[][..]]
    );
}

#[test]
fn smp_syntax_framing() {
    let vs = family("smp_syntax.");
    assert_eq!(vs.len(), 31);
    for v in &vs {
        let name = v["name"].as_str().unwrap();
        let i = &v["inputs"];
        let e = &v["expected"];
        assert_eq!(i["smp_version"], 18);
        let t_bytes = hexv(&i["transmission_hex"]);
        let content = hexv(&i["block_content_hex"]);
        assert_eq!(
            decode_batch(&content).unwrap(),
            vec![&t_bytes[..]],
            "{name}"
        );
        let t = decode_transmission(&t_bytes, 18, true).unwrap();
        assert_eq!(
            t.authorization,
            &hexv(&i["authorization_hex"])[..],
            "{name}"
        );
        assert_eq!(t.corr_id, &bytes_field(i, "corr_id")[..], "{name}");
        assert_eq!(t.entity_id, &bytes_field(i, "entity_id")[..], "{name}");
        assert_eq!(t.command, &hexv(&i["command_hex"])[..], "{name}");
        let mut out = Vec::new();
        encode_transmission(&mut out, &t, 18, true).unwrap();
        assert_eq!(out, t_bytes, "{name}");
        // the response: empty authorization, no service slot, same corrId and entity
        let resp = hexv(&e["response_hex"]);
        assert_eq!(resp, e["response_ascii"].as_str().unwrap().as_bytes());
        let mut out = Vec::new();
        let rc = bytes_field(e, "corr_id");
        let re = bytes_field(e, "entity_id");
        encode_transmission(&mut out, &Transmission::new(&rc, &re, &resp), 18, true).unwrap();
        assert_eq!(
            out,
            hexv(&e["transmission_hex"]),
            "{name} response transmission"
        );
    }
}

mod err_vectors {
    use super::*;
    use hush_proto::Decode;
    use hush_proto::encoding::{Encode, ShortString};
    use hush_proto::error::*;

    /// The value each `encode.ERR.*` vector describes, built by hand.
    fn expected_value(name: &str) -> ErrorType {
        use ErrorType as E;
        let blocked = |reason, notice: Option<&str>| {
            E::Blocked(BlockingInfo {
                reason,
                notice: notice.map(str::to_owned),
            })
        };
        let broker = |b| E::Proxy(ProxyError::Broker(b));
        match name.trim_start_matches("encode.ERR.") {
            "BLOCK" => E::Block,
            "SESSION" => E::Session,
            "CMD UNKNOWN" => E::Cmd(CommandError::Unknown),
            "CMD SYNTAX" => E::Cmd(CommandError::Syntax),
            "CMD PROHIBITED" => E::Cmd(CommandError::Prohibited),
            "CMD NO_AUTH" => E::Cmd(CommandError::NoAuth),
            "CMD HAS_AUTH" => E::Cmd(CommandError::HasAuth),
            "CMD NO_ENTITY" => E::Cmd(CommandError::NoEntity),
            "AUTH" => E::Auth,
            "SERVICE" => E::Service,
            "CRYPTO" => E::Crypto,
            "QUOTA" => E::Quota,
            "STORE some error text" => E::Store("some error text".into()),
            "EXPIRED" => E::Expired,
            "NO_MSG" => E::NoMsg,
            "LARGE_MSG" => E::LargeMsg,
            "INTERNAL" => E::Internal,
            "PROXY PROTOCOL AUTH" => E::Proxy(ProxyError::Protocol(Box::new(E::Auth))),
            "PROXY BROKER TIMEOUT" => broker(BrokerErrorType::Timeout),
            "PROXY BROKER NETWORK" => broker(BrokerErrorType::Network),
            "PROXY BROKER HOST" => broker(BrokerErrorType::Host),
            "PROXY BROKER NO_SERVICE" => broker(BrokerErrorType::NoService),
            "PROXY BROKER TRANSPORT VERSION" => {
                broker(BrokerErrorType::Transport(TransportError::Version))
            }
            "PROXY BROKER TRANSPORT HANDSHAKE IDENTITY" => broker(BrokerErrorType::Transport(
                TransportError::Handshake(HandshakeError::Identity),
            )),
            "PROXY BROKER RESPONSE" => broker(BrokerErrorType::Response(
                ShortString::new(b"hello".to_vec()).unwrap(),
            )),
            "PROXY BASIC_AUTH" => E::Proxy(ProxyError::BasicAuth),
            "PROXY NO_SESSION" => E::Proxy(ProxyError::NoSession),
            "BLOCKED.v18" | "BLOCKED.v12-17" | "BLOCKED.v11" => {
                blocked(BlockingReason::Spam, Some("{\"ttl\":3600}"))
            }
            "BLOCKED.v18.no_notice" => blocked(BlockingReason::Content, None),
            other => panic!("unhandled ERR vector {other}"),
        }
    }

    #[test]
    fn encode_err_vectors() {
        let vs = family("encode.ERR.");
        assert_eq!(vs.len(), 31);
        for v in &vs {
            let name = v["name"].as_str().unwrap();
            let version = v["inputs"]["smp_version"].as_u64().unwrap() as u16;
            let want = hexv(&v["expected"]["bytes_hex"]);
            let value = expected_value(name);
            let mut out = b"ERR ".to_vec();
            value.encode_for_version(&mut out, version);
            assert_eq!(out, want, "{name}");
            // decoding the payload gives the (version-adjusted) value back
            let payload = want.strip_prefix(b"ERR ").unwrap();
            assert_eq!(
                ErrorType::decode(payload).unwrap(),
                value.for_version(version),
                "{name}"
            );
            assert_eq!(
                ErrorType::from_bytes(payload).unwrap().to_bytes(),
                payload,
                "{name}"
            );
        }
    }
}

mod command_vectors {
    use super::*;
    use hush_proto::address::{BasicAuth, ProtocolServer, TransportHost};
    use hush_proto::encoding::{Large, ShortString};
    use hush_proto::error::{BlockingInfo, BlockingReason, CommandError, ErrorType};
    use hush_proto::smp::*;

    fn ss(b: &[u8]) -> ShortString {
        ShortString::new(b.to_vec()).unwrap()
    }

    fn link_data() -> QueueLinkData {
        QueueLinkData {
            fixed: Large::new(b"fixed data".to_vec()).unwrap(),
            user: Large::new(b"user data".to_vec()).unwrap(),
        }
    }

    struct Ctx {
        rcv_auth: PublicKeyDer,
        rcv_dh: PublicKeyDer,
        srv_dh: PublicKeyDer,
        ntf_dh: PublicKeyDer,
        rid: ShortString,
        sid: ShortString,
        lid: ShortString,
        nid: ShortString,
        svc: ShortString,
    }

    fn ctx(i: &Value) -> Ctx {
        Ctx {
            rcv_auth: PublicKeyDer::auth_key(hexv(&i["rcv_auth_key_spki_hex"])).unwrap(),
            rcv_dh: PublicKeyDer::dh_key(hexv(&i["rcv_dh_key_spki_hex"])).unwrap(),
            srv_dh: PublicKeyDer::dh_key(hexv(&i["srv_dh_key_spki_hex"])).unwrap(),
            ntf_dh: PublicKeyDer::dh_key(hexv(&i["ntf_dh_key_spki_hex"])).unwrap(),
            rid: ss(&hexv(&i["recipient_id_hex"])),
            sid: ss(&hexv(&i["sender_id_hex"])),
            lid: ss(&hexv(&i["link_id_hex"])),
            nid: ss(&hexv(&i["notifier_id_hex"])),
            svc: ss(&hexv(&i["service_id_hex"])),
        }
    }

    enum V {
        C(Command),
        B(BrokerMsg),
    }

    /// The value each `encode.*` (non-ERR) vector describes, built by hand from its inputs.
    fn value(name: &str, i: &Value) -> V {
        let new = |c: &Ctx, auth: Option<&str>, mode, qrd, ntf| {
            V::C(Command::New(NewQueueReq {
                rcv_auth_key: c.rcv_auth.clone(),
                rcv_dh_key: c.rcv_dh.clone(),
                basic_auth: auth.map(|a| BasicAuth::new(a).unwrap()),
                sub_mode: mode,
                queue_req_data: qrd,
                ntf_creds: ntf,
            }))
        };
        let ids = |c: &Ctx, mode, link: bool, svc: bool, ntf: bool| {
            V::B(BrokerMsg::Ids(QueueIdsKeys {
                rcv_id: c.rid.clone(),
                snd_id: c.sid.clone(),
                srv_dh_key: c.srv_dh.clone(),
                queue_mode: mode,
                link_id: link.then(|| c.lid.clone()),
                service_id: svc.then(|| c.svc.clone()),
                server_ntf_creds: ntf.then(|| ServerNtfCreds {
                    notifier_id: c.nid.clone(),
                    srv_ntf_dh_key: c.ntf_dh.clone(),
                }),
            }))
        };
        use SubscriptionMode::*;
        let c = i.get("rcv_auth_key_spki_hex").map(|_| ctx(i));
        let c = c.as_ref();
        match name {
            "encode.NEW.v18.full" => {
                let c = c.unwrap();
                new(
                    c,
                    Some("pass"),
                    OnlyCreate,
                    Some(QueueReqData::Contact(Some((
                        c.lid.clone(),
                        c.sid.clone(),
                        link_data(),
                    )))),
                    Some(NewNtfCreds {
                        ntf_auth_key: c.rcv_auth.clone(),
                        rcv_ntf_dh_key: c.ntf_dh.clone(),
                    }),
                )
            }
            "encode.NEW.v18.messaging_with_link" => {
                let c = c.unwrap();
                new(
                    c,
                    None,
                    Subscribe,
                    Some(QueueReqData::Messaging(Some((c.sid.clone(), link_data())))),
                    None,
                )
            }
            "encode.NEW.v15" | "encode.NEW.v9" => new(
                c.unwrap(),
                None,
                Subscribe,
                Some(QueueReqData::Messaging(None)),
                None,
            ),
            "encode.NEW.v6.with_auth" => new(c.unwrap(), Some("pass"), Subscribe, None, None),
            "encode.NEW.v6.no_auth" => new(c.unwrap(), None, Subscribe, None, None),
            "encode.IDS.v18" => ids(c.unwrap(), Some(QueueMode::Messaging), true, false, true),
            "encode.IDS.v18.minimal" => {
                ids(c.unwrap(), Some(QueueMode::Messaging), false, false, false)
            }
            "encode.IDS.v16" => ids(c.unwrap(), Some(QueueMode::Contact), true, true, false),
            "encode.IDS.v15" | "encode.IDS.v9" => {
                ids(c.unwrap(), Some(QueueMode::Messaging), false, false, false)
            }
            "encode.IDS.v6" => ids(c.unwrap(), None, false, false, false),
            "encode.KEY" => V::C(Command::Key(c.unwrap().rcv_auth.clone())),
            "encode.SKEY" => V::C(Command::SKey(c.unwrap().rcv_auth.clone())),
            "encode.LKEY" => V::C(Command::LKey(c.unwrap().rcv_auth.clone())),
            "encode.RKEY" => {
                let k = c.unwrap().rcv_auth.clone();
                V::C(Command::RKey(NonEmpty::new(vec![k.clone(), k]).unwrap()))
            }
            "encode.LSET" => V::C(Command::LSet {
                link_id: c.unwrap().lid.clone(),
                data: link_data(),
            }),
            "encode.NKEY" => V::C(Command::NKey {
                notifier_key: c.unwrap().rcv_auth.clone(),
                rcv_ntf_dh_key: c.unwrap().ntf_dh.clone(),
            }),
            "encode.ACK" => V::C(Command::Ack(c.unwrap().rid.clone())),
            "encode.SEND.notify" | "encode.SEND.no_notify" => V::C(Command::Send {
                flags: MsgFlags {
                    notification: name.ends_with(".notify"),
                },
                body: b"hello".to_vec(),
            }),
            "encode.SUB" => V::C(Command::Sub),
            "encode.SUBS" => V::C(Command::Subs),
            "encode.LDEL" => V::C(Command::LDel),
            "encode.NDEL" => V::C(Command::NDel),
            "encode.GET" => V::C(Command::Get),
            "encode.OFF" => V::C(Command::Off),
            "encode.DEL" => V::C(Command::Del),
            "encode.QUE" => V::C(Command::Que),
            "encode.PING" => V::C(Command::Ping),
            "encode.LGET" => V::C(Command::LGet),
            "encode.NSUB" => V::C(Command::NSub),
            "encode.NSUBS" => V::C(Command::NSubs),
            "encode.PRXY" => {
                let kh = hush_proto::encoding::base64url_decode(
                    "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=",
                )
                .unwrap();
                V::C(Command::Prxy {
                    server: ProtocolServer::smp(
                        vec![TransportHost::parse_bytes(b"localhost").unwrap()],
                        Some(5001),
                        kh,
                    )
                    .unwrap(),
                    basic_auth: Some(BasicAuth::new("pass").unwrap()),
                })
            }
            "encode.PFWD" => V::C(Command::PFwd {
                version: 17,
                key: PublicKeyDer::dh_key(hexv(&i["rcv_dh_key_spki_hex"])).unwrap(),
                enc_transmission: b"\x00\x01encrypted".to_vec(),
            }),
            "encode.RFWD" => V::C(Command::RFwd(b"forwarded \x00 bytes".to_vec())),
            "encode.LNK" => V::B(BrokerMsg::Lnk {
                sender_id: c.unwrap().sid.clone(),
                data: link_data(),
            }),
            "encode.SOK.nothing" => V::B(BrokerMsg::Sok(None)),
            "encode.SOK.just" => V::B(BrokerMsg::Sok(Some(c.unwrap().svc.clone()))),
            "encode.SOKS" => V::B(BrokerMsg::Soks(5)),
            "encode.ENDS" => V::B(BrokerMsg::Ends(5)),
            "encode.NID" => V::B(BrokerMsg::Nid {
                notifier_id: c.unwrap().nid.clone(),
                srv_ntf_dh_key: c.unwrap().ntf_dh.clone(),
            }),
            "encode.NMSG" => {
                let nonce: [u8; 24] = std::array::from_fn(|k| 0x19 + k as u8);
                let meta = hex::decode("985a5a53fd734b1b647d8ef2cb14506393bde3a276b5e32140b2a002b797c2bd5f0a54e331ad7b196f1abdbf0076a73238605432bcafdd17d07597ed01efa2c248d1238395c33f84fad5f0c118fbdfacf065306f0c740b4bee77db22d793400d28719c0198accfc6f5b0d3da48c24e248dc1aeabb246f39ece5c628aa4c7778caf88219a21057c64d256f0acf0155be2").unwrap();
                assert_eq!(meta.len(), 144);
                V::B(BrokerMsg::NMsg {
                    nonce,
                    enc_meta: ss(&meta),
                })
            }
            "encode.MSG" => {
                let body = load("crypto.json")
                    .into_iter()
                    .find(|v| v["name"] == "msg_body.encrypt")
                    .map(|v| hexv(&v["expected"]["enc_body_hex"]))
                    .expect("crypto.json msg_body.encrypt");
                V::B(BrokerMsg::Msg {
                    msg_id: ss(&hexv(&i["msg_id_hex"])),
                    body,
                })
            }
            "encode.END" => V::B(BrokerMsg::End),
            "encode.DELD.v10+" | "encode.DELD.v9_and_below" => V::B(BrokerMsg::Deld),
            "encode.OK" => V::B(BrokerMsg::Ok),
            "encode.PONG" => V::B(BrokerMsg::Pong),
            _ => panic!("unhandled vector {name}"),
        }
    }

    #[test]
    fn encode_vectors() {
        let vs: Vec<Value> = family("encode.")
            .into_iter()
            .filter(|v| !v["name"].as_str().unwrap().starts_with("encode.ERR."))
            .collect();
        assert_eq!(vs.len(), 49);
        for v in &vs {
            let name = v["name"].as_str().unwrap();
            let i = &v["inputs"];
            let e = &v["expected"];
            let version = i["smp_version"].as_u64().unwrap() as u16;
            let bytes = match value(name, i) {
                V::C(c) => {
                    let b = c.encode(version);
                    let d = Command::decode(&b, version);
                    assert_eq!(d.as_ref(), Ok(&c), "{name} decode");
                    // a relay never accepts a command as a broker message and vice versa
                    assert_eq!(
                        BrokerMsg::decode(&b, version),
                        Err(CommandError::Unknown),
                        "{name}"
                    );
                    b
                }
                V::B(m) => {
                    let b = m.encode(version);
                    let d = BrokerMsg::decode(&b, version).unwrap();
                    if name == "encode.DELD.v9_and_below" {
                        assert_eq!(d, BrokerMsg::End);
                    } else {
                        assert_eq!(d, m, "{name} decode");
                    }
                    assert_eq!(
                        Command::decode(&b, version),
                        Err(CommandError::Unknown),
                        "{name}"
                    );
                    b
                }
            };
            if let Some(h) = e.get("bytes_hex") {
                assert_eq!(hex::encode(&bytes), h.as_str().unwrap(), "{name}");
            } else {
                let prefix = hexv(&e["prefix_hex"]);
                assert!(bytes.starts_with(&prefix), "{name} prefix");
                if let Some(n) = e.get("total_len") {
                    assert_eq!(bytes.len(), n.as_u64().unwrap() as usize, "{name} length");
                }
            }
        }
    }

    #[test]
    fn err_blocked_via_broker_msg() {
        let info = BlockingInfo {
            reason: BlockingReason::Spam,
            notice: Some("{\"ttl\":3600}".into()),
        };
        let m = BrokerMsg::Err(ErrorType::Blocked(info));
        for v in family("encode.ERR.BLOCKED") {
            let version = v["inputs"]["smp_version"].as_u64().unwrap() as u16;
            if v["name"] == "encode.ERR.BLOCKED.v18.no_notice" {
                continue;
            }
            assert_eq!(
                hex::encode(m.encode(version)),
                v["expected"]["bytes_hex"].as_str().unwrap()
            );
        }
        assert_eq!(BrokerMsg::Sok(None).encode(15), b"OK");
    }

    #[test]
    fn smp_syntax_vectors() {
        let vs = family("smp_syntax.");
        assert_eq!(vs.len(), 31);
        let mut errors = 0;
        for v in &vs {
            let name = v["name"].as_str().unwrap();
            let t_bytes = hexv(&v["inputs"]["transmission_hex"]);
            let t = decode_transmission(&t_bytes, 18, true).unwrap();
            let want = v["expected"]["response_ascii"].as_str().unwrap();
            let sid = [0u8; 32];
            match check_client_transmission(&t, 18, &sid) {
                Err(r) => {
                    errors += 1;
                    let got = BrokerMsg::Err(r.error).encode(18);
                    assert_eq!(String::from_utf8(got.clone()).unwrap(), want, "{name}");
                    // full response transmission: same corrId, entity kept for CMD errors
                    assert!(r.keep_entity);
                    let entity = if r.keep_entity { t.entity_id } else { &[] };
                    let mut out = Vec::new();
                    encode_transmission(
                        &mut out,
                        &Transmission::new(t.corr_id, entity, &got),
                        18,
                        true,
                    )
                    .unwrap();
                    assert_eq!(out, hexv(&v["expected"]["transmission_hex"]), "{name}");
                }
                Ok((kind, Command::Ping)) => {
                    assert_eq!(kind, AuthorizationKind::None);
                    assert_eq!(want, "PONG", "{name}")
                }
                // the queue does not exist: every other well-formed command gets AUTH
                Ok((kind, _)) => {
                    assert_eq!(kind, AuthorizationKind::Ed25519Signature, "{name}");
                    assert_eq!(want, "ERR AUTH", "{name}")
                }
            }
            // the expected response decodes as a broker message
            let resp = BrokerMsg::decode(want.as_bytes(), 18).unwrap();
            assert_eq!(resp.encode(18), want.as_bytes());
        }
        assert!(errors >= 20, "most syntax vectors are errors ({errors})");
    }
}

mod transmission_checks {
    use super::*;
    use hush_proto::error::{CommandError, ErrorType};
    use hush_proto::smp::*;

    #[test]
    fn bad_authorization_size_and_session() {
        let sid = [7u8; 32];
        let t = Transmission {
            authorization: &[1; 65],
            corr_id: b"c",
            entity_id: b"e",
            command: b"SUB",
            ..Default::default()
        };
        let r = check_client_transmission(&t, 18, &sid).unwrap_err();
        assert_eq!((r.error, r.keep_entity), (ErrorType::Block, false));
        // v6: wrong session id → SESSION, checked first
        let t6 = Transmission {
            session_id: &[8; 32],
            ..t
        };
        let r = check_client_transmission(&t6, 6, &sid).unwrap_err();
        assert_eq!((r.error, r.keep_entity), (ErrorType::Session, false));
        let ok6 = Transmission {
            session_id: &sid,
            authorization: &[1; 64],
            ..t
        };
        assert!(check_client_transmission(&ok6, 6, &sid).is_ok());
        // client side
        let pong = Transmission::new(b"c", b"", b"PONG");
        assert_eq!(
            check_server_transmission(&pong, 18, &sid),
            Ok(BrokerMsg::Pong)
        );
        let pong_e = Transmission::new(b"c", b"e", b"PONG");
        assert_eq!(
            check_server_transmission(&pong_e, 18, &sid),
            Err(ErrorType::Cmd(CommandError::HasAuth))
        );
        let ok_no_entity = Transmission::new(b"c", b"", b"OK");
        assert_eq!(
            check_server_transmission(&ok_no_entity, 18, &sid),
            Err(ErrorType::Cmd(CommandError::NoEntity))
        );
        let ids_like = Transmission::new(b"c", b"", b"ERR AUTH");
        assert_eq!(
            check_server_transmission(&ids_like, 18, &sid),
            Ok(BrokerMsg::Err(ErrorType::Auth))
        );
    }
}

/// Not a vector: with a real MSG event (16122-byte encrypted body, empty corrId) only 3 SOKs
/// fit next to it in one block; the upstream "4 SOK + MSG" test uses a 16048-byte body.
#[test]
fn real_msg_event_capacity() {
    let sok = |k: u8| {
        let mut o = Vec::new();
        encode_transmission(
            &mut o,
            &Transmission::new(&[k; 24], &[k; 24], b"SOK 0"),
            18,
            true,
        )
        .unwrap();
        o
    };
    let mut cmd = b"MSG ".to_vec();
    cmd.push(24);
    cmd.extend([9u8; 24]);
    cmd.extend(vec![5u8; 16122]);
    let mut msg = Vec::new();
    encode_transmission(&mut msg, &Transmission::new(&[], &[4; 24], &cmd), 18, true).unwrap();
    assert_eq!(msg.len() + 2, 16180);
    for (n, blocks) in [(3, 1), (4, 2)] {
        let mut items: Vec<Vec<u8>> = (0..n).map(sok).collect();
        items.push(msg.clone());
        assert_eq!(
            batch_transmissions(&items, SMP_BLOCK_SIZE).len(),
            blocks,
            "{n} SOKs"
        );
    }
}
