//! The command core without sockets: a recording [`PushGateway`] and the vector
//! `transmission.v3.TNEW.signed` (a real Ed25519-signed TNEW for a given session id) must be
//! accepted; the same transmission under another session id must be `ERR AUTH`. Also: the push
//! job is a verification push whose payload decrypts with the vector's keys.

use std::sync::{Arc, Mutex};

use hush_proto::error::ErrorType;
use hush_proto::ntf::{NtfResponse, decode_ntf_transmission};
use ntf_server::core::{ConnCtx, Core, CoreOptions};
use ntf_server::store::Store;
use push_server::{
    FeedbackEvent, GatewayError, PushGateway, PushJob, PushKind, PushType, SubmitOutcome,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<PushJob>>);

impl PushGateway for Recorder {
    async fn submit(&self, job: PushJob) -> Result<SubmitOutcome, GatewayError> {
        self.0.lock().unwrap().push(job);
        Ok(SubmitOutcome::Queued)
    }
    async fn feedback(&self, _: u64, _: u32) -> Result<Vec<FeedbackEvent>, GatewayError> {
        Ok(Vec::new())
    }
    async fn ack_feedback(&self, _: u64) -> Result<(), GatewayError> {
        Ok(())
    }
}

fn vector(name: &str) -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/ntf.json"
    );
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("ntf.json missing")).unwrap();
    all.into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn hx(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn signed_tnew_vector_is_accepted() {
    let v = vector("transmission.v3.TNEW.signed");
    let session = hx(&v["inputs"]["session_id_hex"]);
    let t = hx(&v["expected"]["transmission_hex"]);
    let gw = Arc::new(Recorder::default());
    let (pool, events) = hush_client::SmpClientPool::tls(Default::default()).unwrap();
    let (_trigger, shutdown) = smp_server::shutdown_channel();
    let (core, _tasks) = Core::start(
        Store::memory(),
        CoreOptions::default(),
        gw.clone(),
        pool,
        events,
        shutdown,
    );

    let other = vec![0u8; 32];
    for (sid, ok) in [(&other, false), (&session, true)] {
        let ctx = ConnCtx {
            version: 3,
            session_id: sid,
            session_key: None,
            token_limit: None,
        };
        let resp = core.process_transmission(&ctx, &t).await;
        let r = decode_ntf_transmission(&resp, 3).unwrap();
        assert_eq!(r.corr_id, hx(&v["inputs"]["corr_id_hex"]));
        let parsed = NtfResponse::parse(r.command, 3).unwrap();
        if ok {
            assert!(matches!(parsed, NtfResponse::TknId { .. }), "{parsed:?}");
        } else {
            assert_eq!(parsed, NtfResponse::Err(ErrorType::Auth));
        }
    }
    // one verification job, background priority 5, decryptable with the client DH key
    let mut job = None;
    for _ in 0..100 {
        if let Some(j) = gw.0.lock().unwrap().first().cloned() {
            job = Some(j);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let job = job.expect("no verification job");
    assert_eq!(job.kind, PushKind::Verification);
    assert_eq!(job.push_type, PushType::Background);
    assert_eq!(job.priority, Some(5));
    assert!(job.report_delivery);
    let tkn = core.store.tokens().pop().unwrap();
    // client DH private key of the vectors: bytes 1..32 (its public key is in the TNEW)
    let client = hush_crypto::X25519Secret::from_bytes(core::array::from_fn(|i| i as u8 + 1));
    let server = hush_crypto::X25519Secret::from_bytes(*tkn.server_dh_key);
    let dh = client.dh(&server.public());
    let p: serde_json::Value = serde_json::from_slice(&job.payload).unwrap();
    let nonce: [u8; 24] =
        hush_proto::encoding::base64url_decode(p["notificationData"]["nonce"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
    let ct = hush_proto::encoding::base64url_decode(
        p["notificationData"]["verification"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        hush_crypto::cb_decrypt(&dh, &nonce, &ct).unwrap(),
        tkn.reg_code
    );
}

/// Garbage transmissions never panic the core and always get one response transmission.
#[test]
fn garbage_never_panics() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let core = rt.block_on(async {
        let (pool, events) = hush_client::SmpClientPool::tls(Default::default()).unwrap();
        let (trigger, shutdown) = smp_server::shutdown_channel();
        std::mem::forget(trigger);
        Core::start(
            Store::memory(),
            CoreOptions::default(),
            Arc::new(Recorder::default()),
            pool,
            events,
            shutdown,
        )
        .0
    });
    let prefixes: [&[u8]; 4] = [
        b"",
        b"\x00\x04abcd\x00",
        b"\x00\x04abcd\x00TNEW T",
        b"\x00\x04abcd\x00SNEW S",
    ];
    proptest::proptest!(proptest::prelude::ProptestConfig::with_cases(500), |(
        tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        which in 0usize..4,
        version in 1u16..=3,
    )| {
        let mut t = prefixes[which].to_vec();
        t.extend_from_slice(&tail);
        let ctx = ConnCtx { version, session_id: &[7; 32], session_key: None, token_limit: None };
        let resp = rt.block_on(core.process_transmission(&ctx, &t));
        proptest::prop_assert!(!resp.is_empty());
    });
}
