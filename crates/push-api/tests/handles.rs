//! Split mode: a push handle cannot be turned into the token without the push-server's key.

use push_api::job::WebPushSubscription;
use push_api::{ApnsEnv, DeviceAddress, HandleError, HandleKey, PushHandle};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

fn apns(token: &str) -> DeviceAddress {
    DeviceAddress::Apns {
        env: ApnsEnv::Prod,
        token: token.into(),
    }
}

#[test]
fn handle_round_trips_only_with_its_key() {
    let key = HandleKey::generate();
    let token = "6bb1b6c5e3e5e4f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
    let h = key.seal(&apns(token)).unwrap();
    assert_eq!(key.open(&h).unwrap(), apns(token));
    // Another key (everyone but this push-server) cannot open it.
    for _ in 0..20 {
        assert_eq!(HandleKey::generate().open(&h), Err(HandleError::Auth));
    }
    // The handle text and bytes contain neither the token text nor the token bytes.
    let raw = URL_SAFE_NO_PAD.decode(h.as_str()).unwrap();
    let token_bytes = hex::decode(token).unwrap();
    assert!(!h.as_str().contains(token));
    assert!(
        !raw.windows(8)
            .any(|w| token.as_bytes().windows(8).any(|t| t == w))
    );
    assert!(
        !raw.windows(8)
            .any(|w| token_bytes.windows(8).any(|t| t == w))
    );
    // Every bit matters (authenticated).
    for i in 0..raw.len() {
        let mut r = raw.clone();
        r[i] ^= 1;
        let h2 = PushHandle(URL_SAFE_NO_PAD.encode(&r));
        assert!(key.open(&h2).is_err(), "flipped byte {i} accepted");
    }
}

#[test]
fn same_token_gives_unlinkable_handles_of_one_length() {
    let key = HandleKey::generate();
    let t1 = "aa".repeat(32);
    let t2 = "bb".repeat(32);
    let hs: Vec<PushHandle> = (0..50).map(|_| key.seal(&apns(&t1)).unwrap()).collect();
    let mut uniq = hs.clone();
    uniq.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    uniq.dedup();
    assert_eq!(uniq.len(), 50, "fresh nonce per registration");
    // All APNs handles (any token of the standard length) have the same length: the length does
    // not single out a device.
    let other = key.seal(&apns(&t2)).unwrap();
    assert!(hs.iter().all(|h| h.as_str().len() == other.as_str().len()));
    // Shared prefix beyond the version byte would link them: none.
    let a = URL_SAFE_NO_PAD.decode(hs[0].as_str()).unwrap();
    let b = URL_SAFE_NO_PAD.decode(hs[1].as_str()).unwrap();
    assert_eq!(a[0], b[0]);
    assert_ne!(a[1..13], b[1..13]);
}

#[test]
fn key_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("handle.key");
    let key = HandleKey::generate();
    key.save(&p).unwrap();
    assert!(key.save(&p).is_err(), "never overwrites");
    let loaded = HandleKey::load(&p).unwrap();
    let h = key.seal(&apns(&"ab".repeat(32))).unwrap();
    assert_eq!(loaded.open(&h).unwrap(), apns(&"ab".repeat(32)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn webpush_handles_and_limits() {
    let key = HandleKey::generate();
    let sub = DeviceAddress::WebPush(WebPushSubscription {
        endpoint: "https://push.example.net/w/abc".into(),
        p256dh: {
            let mut v = vec![4u8];
            v.extend([7u8; 64]);
            v
        },
        auth: vec![1; 16],
    });
    let h = key.seal(&sub).unwrap();
    assert_eq!(key.open(&h).unwrap(), sub);
    // Too long for the NTF shortString: refused at registration, not truncated.
    let DeviceAddress::WebPush(mut long) = sub else {
        unreachable!()
    };
    long.endpoint = format!("https://push.example.net/{}", "x".repeat(200));
    assert!(matches!(
        key.seal(&DeviceAddress::WebPush(long)),
        Err(HandleError::TooLong(_))
    ));
    // Invalid addresses are refused.
    assert!(key.seal(&apns("XYZ")).is_err());
}

proptest! {
    #[test]
    fn open_never_panics_on_garbage(s in ".{0,400}") {
        let key = HandleKey::from_bytes([3; 32]);
        let _ = key.open(&PushHandle(s));
    }

    #[test]
    fn open_never_panics_on_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let key = HandleKey::from_bytes([3; 32]);
        let _ = key.open(&PushHandle(URL_SAFE_NO_PAD.encode(&b)));
    }

    #[test]
    fn apns_tokens_round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..100), env in 0u8..4) {
        let key = HandleKey::from_bytes([9; 32]);
        let env = [ApnsEnv::Prod, ApnsEnv::Dev, ApnsEnv::Test, ApnsEnv::Null][env as usize];
        let a = DeviceAddress::Apns { env, token: hex::encode(&bytes) };
        let h = key.seal(&a).unwrap();
        prop_assert_eq!(key.open(&h).unwrap(), a);
    }

    #[test]
    fn job_json_round_trips(id in any::<[u8; 16]>(), payload in proptest::collection::vec(any::<u8>(), 0..200), prio in proptest::option::of(prop_oneof![Just(5u8), Just(10u8)])) {
        let job = push_api::PushJob {
            job_id: push_api::JobId(id),
            target: push_api::PushTarget::Device(apns(&hex::encode(id))),
            kind: push_api::PushKind::Message,
            payload,
            push_type: push_api::PushType::Alert,
            priority: prio,
            expires_at: Some(123),
            collapse_id: Some("c".into()),
            report_delivery: true,
        };
        let text = serde_json::to_string(&job).unwrap();
        prop_assert_eq!(serde_json::from_str::<push_api::PushJob>(&text).unwrap(), job);
        prop_assert_eq!(push_api::JobId::from_uuid(&push_api::JobId(id).to_uuid()), Some(push_api::JobId(id)));
    }

    #[test]
    fn job_json_parser_never_panics(s in ".{0,300}") {
        let _ = serde_json::from_str::<push_api::PushJob>(&s);
    }
}
