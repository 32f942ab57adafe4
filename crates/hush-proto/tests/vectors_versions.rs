//! Every vector of /work/shared/vectors/versions.json.

use hush_proto::version::*;
use serde_json::Value;

mod common;
use common::load;

fn range(v: &Value) -> VersionRange {
    let a = v.as_array().expect("range array");
    VersionRange::new(a[0].as_u64().unwrap() as u16, a[1].as_u64().unwrap() as u16)
        .expect("valid range")
}

fn opt_range(v: &Value) -> Option<VersionRange> {
    if v.is_null() { None } else { Some(range(v)) }
}

fn constant(name: &str) -> Value {
    let r = |r: VersionRange| serde_json::json!([r.min(), r.max()]);
    match name {
        "constant.smp_relay.server_range_with_alpn" => r(smp_version::SERVER_RANGE),
        "constant.smp_relay.server_range_without_alpn" => r(smp_version::LEGACY_SERVER_RANGE),
        "constant.smp_relay.client_range" => r(smp_version::CLIENT_RANGE),
        "constant.smp_relay.proxied_range" => r(smp_version::PROXIED_RANGE),
        "constant.smp_relay.feature.authCmds_implied_session" => smp_version::AUTH_CMDS.into(),
        "constant.smp_relay.feature.sendingProxy" => smp_version::SENDING_PROXY.into(),
        "constant.smp_relay.feature.sndAuthKey" => smp_version::SND_AUTH_KEY.into(),
        "constant.smp_relay.feature.deletedEvent" => smp_version::DELETED_EVENT.into(),
        "constant.smp_relay.feature.encryptedBlock" => smp_version::ENCRYPTED_BLOCK.into(),
        "constant.smp_relay.feature.blockedEntity" => smp_version::BLOCKED_ENTITY.into(),
        "constant.smp_relay.feature.proxyServerHandshake" => {
            smp_version::PROXY_SERVER_HANDSHAKE.into()
        }
        "constant.smp_relay.feature.shortLinks" => smp_version::SHORT_LINKS.into(),
        "constant.smp_relay.feature.serviceCerts" => smp_version::SERVICE_CERTS.into(),
        "constant.smp_relay.feature.newNtfCreds" => smp_version::NEW_NTF_CREDS.into(),
        "constant.smp_relay.feature.clientNotices" => smp_version::CLIENT_NOTICES.into(),
        "constant.ntf.server_range_with_alpn" => r(ntf_version::SERVER_RANGE),
        "constant.ntf.server_range_without_alpn" => r(ntf_version::LEGACY_SERVER_RANGE),
        "constant.ntf.feature.authBatchCmds" => ntf_version::AUTH_BATCH_CMDS.into(),
        "constant.ntf.feature.invalidReason" => ntf_version::INVALID_REASON.into(),
        "constant.smp_client_queue_uri_range" => r(smp_client_version::RANGE),
        "constant.smp_agent_range" => r(agent_version::RANGE),
        "constant.block_size.smp" => SMP_BLOCK_SIZE.into(),
        "constant.block_size.ntf" => NTF_BLOCK_SIZE.into(),
        "constant.max_send_body.v11+" => {
            assert_eq!(smp_version::max_send_body(18), 16048);
            smp_version::max_send_body(11).into()
        }
        "constant.max_send_body.v8-10" => {
            assert_eq!(smp_version::max_send_body(8), 16064);
            smp_version::max_send_body(10).into()
        }
        "constant.max_send_body.v6-7" => {
            assert_eq!(smp_version::max_send_body(6), 16088);
            smp_version::max_send_body(7).into()
        }
        "constant.alpn.smp" => smp_version::ALPN.into(),
        "constant.alpn.ntf" => ntf_version::ALPN.into(),
        _ => panic!("unhandled constant vector {name}"),
    }
}

#[test]
fn all_version_vectors() {
    let vs = load("versions.json");
    let mut n = 0;
    for v in &vs {
        let name = v["name"].as_str().unwrap();
        let i = &v["inputs"];
        let e = &v["expected"];
        let family = name.trim_start_matches("ts.").split('.').next().unwrap();
        match family {
            "compatible_version" => {
                let (a, b) = (range(&i["range_a"]), range(&i["range_b"]));
                let want = e["version"].as_u64().map(|x| x as u16);
                assert_eq!(a.compatible_version(&b), want, "{name}");
                assert_eq!(b.compatible_version(&a), want, "{name} (swapped)");
            }
            "range_intersection" => {
                let (a, b) = (range(&i["range_a"]), range(&i["range_b"]));
                let want = opt_range(&e["range"]);
                assert_eq!(a.intersect(&b), want, "{name}");
                assert_eq!(b.intersect(&a), want, "{name} (swapped)");
            }
            "capped_range" => {
                let r = range(&i["range"]);
                let m = i["new_max"].as_u64().unwrap() as u16;
                assert_eq!(r.capped(m), opt_range(&e["range"]), "{name}");
            }
            "is_compatible" => {
                let r = range(&i["range"]);
                let ver = i["version"].as_u64().unwrap() as u16;
                assert_eq!(
                    r.contains(ver),
                    e["compatible"].as_bool().unwrap(),
                    "{name}"
                );
            }
            "invalid_range" => {
                let (a, b) = (
                    i["min"].as_u64().unwrap() as u16,
                    i["max"].as_u64().unwrap() as u16,
                );
                assert!(e.get("error").is_some());
                assert_eq!(VersionRange::new(a, b), None, "{name}");
                let mut bytes = a.to_be_bytes().to_vec();
                bytes.extend(b.to_be_bytes());
                use hush_proto::Decode;
                assert!(VersionRange::from_bytes(&bytes).is_err(), "{name} binary");
                assert!(
                    VersionRange::str_decode(&format!("{a}-{b}")).is_err(),
                    "{name} text"
                );
            }
            "strEncode" => {
                let r = range(&i["range"]);
                let t = e["text"].as_str().unwrap();
                assert_eq!(r.str_encode(), t, "{name}");
                assert_eq!(VersionRange::str_decode(t).unwrap(), r, "{name}");
                let long = format!("{}-{}", r.min(), r.max());
                assert_eq!(
                    VersionRange::str_decode(&long).unwrap(),
                    r,
                    "{name} long form"
                );
            }
            "constant" => assert_eq!(constant(name), e["value"], "{name}"),
            _ => panic!("unhandled vector {name}"),
        }
        n += 1;
    }
    assert_eq!(n, vs.len());
    assert!(n >= 66, "expected at least 66 version vectors, got {n}");
}
