//! The encoding vectors of `shared/vectors/ntf.json`: `ntf_syntax.*`, `encode.*`,
//! `push_provider.*`, `device_token.*`, `transmission.*` and `pn_messages.text`.
//! Skipped (crypto or push-payload vectors owned by other helpers): `nmsg_meta.encrypt`,
//! `apns.verification_push`, `apns.message_push`, `apns.check_messages_push`, `apns.jwt`.

use hush_proto::address::{ProtocolServer, ProtocolType};
use hush_proto::encoding::{Parser, pad};
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::ntf::{
    DeviceToken, InvalidReason, NtfCommand, NtfResponse, PnMessageData, PrivateKeyDer,
    PublicKeyDer, PushProvider, SmpQueueNtf, SubStatus, TokenStatus, decode_ntf_block_content,
    decode_ntf_transmission, encode_ntf_transmission, encode_pn_messages, ntf_block_content,
    parse_pn_messages,
};
use hush_proto::transmission::{Transmission, authorized_bytes};
use serde_json::Value;

mod common;

const SKIPPED: [&str; 5] = [
    "nmsg_meta.encrypt",
    "apns.verification_push",
    "apns.message_push",
    "apns.check_messages_push",
    "apns.jwt",
];

fn load() -> Vec<Value> {
    common::load("ntf.json")
}

fn family(prefix: &str) -> Vec<Value> {
    common::family("ntf.json", prefix)
}

fn named(name: &str) -> Value {
    load()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string field {k} in {v}"))
}

fn hx(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(s(v, k)).unwrap()
}

#[test]
fn all_vectors_are_claimed() {
    let mine = [
        "ntf_syntax.",
        "encode.",
        "push_provider.",
        "device_token.",
        "transmission.",
        "pn_messages.",
    ];
    let all = load();
    assert_eq!(all.len(), 54, "ntf.json changed size");
    let mut claimed = 0;
    for v in &all {
        let n = s(v, "name");
        if mine.iter().any(|k| n.starts_with(k)) {
            claimed += 1;
        } else {
            assert!(SKIPPED.contains(&n), "unclaimed vector {n}");
        }
    }
    assert_eq!(claimed, 49);
}

#[test]
fn syntax_vectors() {
    let vs = family("ntf_syntax.");
    assert_eq!(vs.len(), 5);
    let session_id: Vec<u8> = (151u8..=182).collect();
    for v in &vs {
        let name = s(v, "name");
        let i = &v["inputs"];
        let e = &v["expected"];
        let auth = hx(i, "authorization_hex");
        let corr = s(i, "corr_id_ascii").as_bytes();
        let entity = s(i, "entity_id_ascii").as_bytes();
        let command = hx(i, "command_hex");
        let t = Transmission {
            authorization: &auth,
            corr_id: corr,
            entity_id: entity,
            command: &command,
            ..Default::default()
        };
        // v3 layout
        let mut v3 = Vec::new();
        encode_ntf_transmission(&mut v3, &t, 3).unwrap();
        assert_eq!(hex::encode(&v3), s(i, "v3_transmission_hex"), "{name}");
        let block = ntf_block_content(&v3, 3).unwrap();
        assert_eq!(hex::encode(&block), s(i, "v3_block_content_hex"), "{name}");
        let items = decode_ntf_block_content(&block, 3).unwrap();
        assert_eq!(items, vec![v3.as_slice()]);
        let back = decode_ntf_transmission(items[0], 3).unwrap();
        assert_eq!(back, t, "{name}");
        // v1 layout, as the upstream test actually ran: session id on the wire, unbatched
        let t1 = Transmission {
            session_id: &session_id,
            ..t
        };
        let mut v1 = Vec::new();
        encode_ntf_transmission(&mut v1, &t1, 1).unwrap();
        assert_eq!(v1.len(), v3.len() + 1 + session_id.len());
        let block1 = ntf_block_content(&v1, 1).unwrap();
        assert_eq!(block1, v1, "v1 blocks are unbatched");
        assert_eq!(pad(&block1, 512).unwrap().len(), 512);
        let back1 =
            decode_ntf_transmission(decode_ntf_block_content(&block1, 1).unwrap()[0], 1).unwrap();
        assert_eq!(back1, t1, "{name}");
        // the server's verdict
        let err = NtfCommand::from_transmission(&auth, entity, &command, 1).unwrap_err();
        assert_eq!(
            NtfCommand::from_transmission(&auth, entity, &command, 3).unwrap_err(),
            err
        );
        let resp = NtfResponse::Err(err).encode_for_version(3);
        assert_eq!(
            String::from_utf8(resp.clone()).unwrap(),
            s(e, "response_ascii"),
            "{name}"
        );
        assert_eq!(s(e, "corr_id_ascii").as_bytes(), corr);
        assert_eq!(s(e, "entity_id_ascii").as_bytes(), entity);
        let mut rt = Vec::new();
        encode_ntf_transmission(&mut rt, &Transmission::new(corr, entity, &resp), 3).unwrap();
        assert_eq!(
            hex::encode(&rt),
            s(e, "v3_response_transmission_hex"),
            "{name}"
        );
        // and the client reads it back
        let back = decode_ntf_transmission(&rt, 3).unwrap();
        let parsed = NtfResponse::parse(back.command, 3).unwrap();
        assert!(matches!(parsed, NtfResponse::Err(ErrorType::Cmd(_))));
        parsed.check_entity(back.entity_id).unwrap();
    }
}

fn tnew_inputs() -> Value {
    named("encode.TNEW.apns_prod")["inputs"].clone()
}

fn test_server() -> ProtocolServer {
    ProtocolServer::parse("smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@localhost:5001")
        .unwrap()
}

enum Value2 {
    Cmd(NtfCommand),
    Resp(NtfResponse),
}

fn encode_value(name: &str, i: &Value) -> Value2 {
    use Value2::*;
    let tnew = tnew_inputs();
    let device_hex = s(&tnew, "device_token_ascii").as_bytes().to_vec();
    let pk = |k: &str| PublicKeyDer::new(hx(i, k)).unwrap();
    let status = name.rsplit_once('.').map(|x| x.1).unwrap_or("");
    match name {
        "encode.TNEW.apns_prod" => Cmd(NtfCommand::Tnew {
            token: DeviceToken {
                provider: PushProvider::ApnsProd,
                token: s(i, "device_token_ascii").as_bytes().to_vec(),
            },
            verify_key: pk("token_verify_key_spki_hex"),
            dh_key: pk("client_dh_key_spki_hex"),
        }),
        "encode.TVFY" => Cmd(NtfCommand::Tvfy {
            code: hx(i, "reg_code_hex"),
        }),
        "encode.TCHK" => Cmd(NtfCommand::Tchk),
        "encode.TRPL" => Cmd(NtfCommand::Trpl {
            token: DeviceToken {
                provider: PushProvider::ApnsDev,
                token: device_hex,
            },
        }),
        "encode.TDEL" => Cmd(NtfCommand::Tdel),
        "encode.TCRN.20" => Cmd(NtfCommand::Tcrn { minutes: 20 }),
        "encode.TCRN.0" => Cmd(NtfCommand::Tcrn { minutes: 0 }),
        "encode.SNEW" => Cmd(NtfCommand::Snew {
            token_id: hx(i, "token_id_hex"),
            queue: SmpQueueNtf {
                server: test_server(),
                notifier_id: hx(i, "notifier_id_hex"),
            },
            notifier_key: PrivateKeyDer::new(hx(i, "notifier_private_pkcs8_hex")).unwrap(),
        }),
        "encode.SCHK" => Cmd(NtfCommand::Schk),
        "encode.SDEL" => Cmd(NtfCommand::Sdel),
        "encode.PING" => Cmd(NtfCommand::Ping),
        "encode.IDTKN" => Resp(NtfResponse::TknId {
            token_id: hx(i, "token_id_hex"),
            server_dh_key: pk("server_dh_key_spki_hex"),
        }),
        "encode.IDSUB" => Resp(NtfResponse::SubId {
            sub_id: hx(i, "subscription_id_hex"),
        }),
        "encode.OK" => Resp(NtfResponse::Ok),
        "encode.PONG" => Resp(NtfResponse::Pong),
        "encode.ERR.AUTH" => Resp(NtfResponse::Err(ErrorType::Auth)),
        "encode.ERR.QUOTA" => Resp(NtfResponse::Err(ErrorType::Quota)),
        _ if name.starts_with("encode.TKN.") => Resp(NtfResponse::Tkn(match status {
            "NEW" => TokenStatus::New,
            "REGISTERED" => TokenStatus::Registered,
            "CONFIRMED" => TokenStatus::Confirmed,
            "ACTIVE" => TokenStatus::Active,
            "EXPIRED" => TokenStatus::Expired,
            "INVALID" => TokenStatus::Invalid(None),
            "INVALID,BAD" => TokenStatus::Invalid(Some(InvalidReason::BadToken)),
            "INVALID,TOPIC" => TokenStatus::Invalid(Some(InvalidReason::TokenNotForTopic)),
            "INVALID,EXPIRED" => TokenStatus::Invalid(Some(InvalidReason::ExpiredToken)),
            "INVALID,UNREGISTERED" => TokenStatus::Invalid(Some(InvalidReason::Unregistered)),
            x => panic!("unknown token status {x}"),
        })),
        _ if name.starts_with("encode.SUB.") => Resp(NtfResponse::Sub(match status {
            "NEW" => SubStatus::New,
            "PENDING" => SubStatus::Pending,
            "ACTIVE" => SubStatus::Active,
            "INACTIVE" => SubStatus::Inactive,
            "END" => SubStatus::End,
            "DELETED" => SubStatus::Deleted,
            "AUTH" => SubStatus::Auth,
            "SERVICE" => SubStatus::Service,
            "ERR some text" => SubStatus::Err(b"some text".to_vec()),
            x => panic!("unknown sub status {x}"),
        })),
        _ => panic!("no value for vector {name}"),
    }
}

#[test]
fn command_and_response_encodings() {
    let vs = family("encode.");
    assert_eq!(vs.len(), 36);
    let (mut cmds, mut resps) = (0, 0);
    for v in &vs {
        let name = s(v, "name");
        let i = &v["inputs"];
        let version = i["ntf_version"].as_u64().unwrap() as u16;
        assert_eq!(version, 3);
        let bytes = hx(&v["expected"], "bytes_hex");
        match encode_value(name, i) {
            Value2::Cmd(c) => {
                assert_eq!(
                    hex::encode(c.encode_checked(version).unwrap()),
                    hex::encode(&bytes),
                    "{name}"
                );
                assert_eq!(NtfCommand::parse(&bytes, version).unwrap(), c, "{name}");
                cmds += 1;
            }
            Value2::Resp(r) => {
                assert_eq!(
                    hex::encode(r.encode_checked(version).unwrap()),
                    hex::encode(&bytes),
                    "{name}"
                );
                assert_eq!(NtfResponse::parse(&bytes, version).unwrap(), r, "{name}");
                resps += 1;
            }
        }
    }
    assert_eq!((cmds, resps), (11, 25));
}

#[test]
fn snew_normalises_legacy_preset_hosts() {
    let i = named("encode.SNEW")["inputs"].clone();
    let srv =
        ProtocolServer::parse("smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@smp9.simplex.im")
            .unwrap();
    let cmd = NtfCommand::Snew {
        token_id: hx(&i, "token_id_hex"),
        queue: SmpQueueNtf {
            server: srv.clone(),
            notifier_id: hx(&i, "notifier_id_hex"),
        },
        notifier_key: PrivateKeyDer::new(hx(&i, "notifier_private_pkcs8_hex")).unwrap(),
    };
    let bytes = cmd.encode_checked(3).unwrap();
    let NtfCommand::Snew { queue, .. } = NtfCommand::parse(&bytes, 3).unwrap() else {
        panic!("not SNEW")
    };
    assert_eq!(queue.server.hosts().len(), 2);
    assert_eq!(
        queue.server.hosts()[1].to_string(),
        "jssqzccmrcws6bhmn77vgmhfjmhwlyr3u7puw4erkyoosywgl67slqqd.onion"
    );
    assert_eq!(queue.server.clone().update_legacy_hosts(), queue.server);
    assert_eq!(srv.update_legacy_hosts(), queue.server);
}

#[test]
fn push_providers() {
    let vs = family("push_provider.");
    assert_eq!(vs.len(), 4);
    for v in &vs {
        let name = s(&v["inputs"], "strEncode");
        let code = s(&v["expected"], "smpEncode_ascii");
        let p = PushProvider::from_name(name).unwrap();
        assert_eq!(p.name(), name);
        assert_eq!(p.code(), code.as_bytes());
        assert_eq!(PushProvider::from_code(code.as_bytes()), Some(p));
        let host = s(&v["expected"], "apns_host");
        match p.apns_host() {
            Some(h) => assert_eq!(h, host),
            None => assert!(!host.starts_with("api."), "{name}"),
        }
    }
    assert_eq!(PushProvider::from_code(b"AX"), None);
}

#[test]
fn device_tokens() {
    let vs = family("device_token.");
    assert_eq!(vs.len(), 2);
    let null = named("device_token.str.null");
    let t = DeviceToken {
        provider: PushProvider::ApnsNull,
        token: b"test_ntf_token".to_vec(),
    };
    assert_eq!(t.to_text(), s(&null["expected"], "text"));
    assert_eq!(
        DeviceToken::parse_text(s(&null["expected"], "text")).unwrap(),
        t
    );
    let mut out = Vec::new();
    hush_proto::Encode::encode(&t, &mut out);
    assert_eq!(hex::encode(&out), s(&null["expected"], "smpEncode_hex"));
    let mut p = Parser::new(&out);
    assert_eq!(
        <DeviceToken as hush_proto::Decode>::decode(&mut p).unwrap(),
        t
    );

    let hexv = named("device_token.str.hex");
    let text = s(&hexv["expected"], "text");
    let t = DeviceToken::parse_text(text).unwrap();
    assert_eq!(t.provider, PushProvider::ApnsProd);
    assert_eq!(t.token, s(&tnew_inputs(), "device_token_ascii").as_bytes());
    assert_eq!(t.to_text(), text);
}

#[test]
fn signed_tnew_transmission() {
    let vs = family("transmission.");
    assert_eq!(vs.len(), 1);
    let v = &vs[0];
    let i = &v["inputs"];
    let e = &v["expected"];
    let version = i["ntf_version"].as_u64().unwrap() as u16;
    let session = hx(i, "session_id_hex");
    let corr = hx(i, "corr_id_hex");
    let entity = hx(i, "entity_id_hex");
    let command = hx(i, "command_hex");
    assert_eq!(
        hex::encode(authorized_bytes(&session, &corr, &entity, &command)),
        s(e, "authorized_hex")
    );
    let sig = hx(e, "signature_hex");
    let t = Transmission {
        authorization: &sig,
        corr_id: &corr,
        entity_id: &entity,
        command: &command,
        ..Default::default()
    };
    let mut tb = Vec::new();
    encode_ntf_transmission(&mut tb, &t, version).unwrap();
    assert_eq!(hex::encode(&tb), s(e, "transmission_hex"));
    let block = ntf_block_content(&tb, version).unwrap();
    assert_eq!(hex::encode(&block), s(e, "block_content_hex"));
    let padded = pad(&block, e["padded_block_len"].as_u64().unwrap() as usize).unwrap();
    assert_eq!(hex::encode(&padded), s(e, "padded_block_hex"));
    // the command is the TNEW of encode.TNEW.apns_prod, and passes the server's checks
    let cmd = NtfCommand::from_transmission(&sig, &entity, &command, version).unwrap();
    let tnew = tnew_inputs();
    match &cmd {
        NtfCommand::Tnew {
            token, verify_key, ..
        } => {
            assert_eq!(token.token, s(&tnew, "device_token_ascii").as_bytes());
            assert_eq!(
                verify_key.as_bytes(),
                hx(&tnew, "token_verify_key_spki_hex").as_slice()
            );
        }
        c => panic!("not TNEW: {c:?}"),
    }
    assert_eq!(cmd.encode_checked(version).unwrap(), command);
}

#[test]
fn pn_messages_text() {
    let v = named("pn_messages.text");
    let items: Vec<PnMessageData> = v["inputs"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|it| PnMessageData {
            queue: SmpQueueNtf {
                server: ProtocolServer::parse_with_scheme(s(it, "smp_server"), ProtocolType::Smp)
                    .unwrap(),
                notifier_id: hx(it, "notifier_id_hex"),
            },
            ntf_ts: it["ntf_ts"].as_i64().unwrap(),
            nonce: hx(it, "nmsg_nonce_hex").try_into().unwrap(),
            enc_meta: hx(it, "enc_nmsg_meta_hex"),
        })
        .collect();
    assert_eq!(items.len(), 2);
    let text = s(&v["expected"], "text");
    assert_eq!(encode_pn_messages(&items), text);
    assert_eq!(parse_pn_messages(text).unwrap(), items);
}

#[test]
fn syntax_error_kinds() {
    // commands with the right tag but broken parameters are SYNTAX, unknown tags UNKNOWN
    let syntax = Err(ErrorType::Cmd(CommandError::Syntax));
    assert_eq!(NtfCommand::parse(b"TNEW", 3), syntax);
    assert_eq!(NtfCommand::parse(b"SNEW T", 3), syntax);
    assert_eq!(NtfCommand::parse(b"TNEW S", 3), syntax);
    assert_eq!(
        NtfCommand::parse(b"IDTKN", 3),
        Err(ErrorType::Cmd(CommandError::Unknown))
    );
    assert_eq!(
        NtfResponse::parse(b"TNEW", 3),
        Err(ErrorType::Cmd(CommandError::Unknown))
    );
}
