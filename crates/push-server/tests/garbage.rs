//! Decoders never panic on garbage or truncated input (peers control all of these).

use proptest::prelude::*;
use push_server::http_util::UrlParts;
use push_server::jwt::{Es256Key, verify_es256};
use push_server::provider::webpush;
use push_server::{ApnsEnv, DeviceAddress, PushHandle, PushTarget};

proptest! {
    #[test]
    fn jwt_verify_never_panics(s in ".{0,300}", parts in proptest::collection::vec("[A-Za-z0-9_-]{0,120}", 0..5)) {
        let key = Es256Key::generate().unwrap();
        let pubkey = push_server::jwt::public_key_from_pem(&key.public_pem().unwrap()).unwrap();
        let _ = verify_es256(&s, &pubkey);
        let _ = verify_es256(&parts.join("."), &pubkey);
    }

    #[test]
    fn truncated_or_flipped_jwt_is_rejected(cut in 0usize..200, flip in 0usize..200) {
        let key = Es256Key::generate().unwrap();
        let pubkey = push_server::jwt::public_key_from_pem(&key.public_pem().unwrap()).unwrap();
        let jwt = push_server::jwt::apns_provider_token(&key, "K", "T", 1, push_server::jwt::SigFormat::Jose).unwrap();
        let cut = cut % jwt.len();
        prop_assert!(verify_es256(&jwt[..cut], &pubkey).is_err());
        let mut b = jwt.clone().into_bytes();
        let i = flip % b.len();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        if let Ok(s) = String::from_utf8(b)
            && s != jwt
        {
            prop_assert!(verify_es256(&s, &pubkey).is_err());
        }
    }

    #[test]
    fn webpush_decrypt_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let ua = Es256Key::from_private_bytes(&[7u8; 32]).unwrap();
        let _ = webpush::decrypt(&ua, &[1u8; 16], &body);
    }

    #[test]
    fn webpush_truncated_body_is_rejected(cut in 0usize..200) {
        let ua = Es256Key::from_private_bytes(&[7u8; 32]).unwrap();
        let body = webpush::encrypt(&ua.public_uncompressed().unwrap(), &[1u8; 16], b"hello world").unwrap();
        let cut = cut % body.len();
        prop_assert!(webpush::decrypt(&ua, &[1u8; 16], &body[..cut]).is_err());
    }

    #[test]
    fn url_parse_never_panics(s in ".{0,200}") {
        let _ = UrlParts::parse(&s);
    }

    #[test]
    fn ntf_parts_never_panic(code in proptest::collection::vec(any::<u8>(), 0..3), token in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = PushTarget::from_ntf_parts(&code, &token);
    }
}

#[test]
fn ntf_parts_map_provider_codes() {
    let t = "ab".repeat(32);
    for (code, env) in [
        (b"AP", ApnsEnv::Prod),
        (b"AD", ApnsEnv::Dev),
        (b"AT", ApnsEnv::Test),
        (b"AN", ApnsEnv::Null),
    ] {
        assert_eq!(
            PushTarget::from_ntf_parts(code, t.as_bytes()),
            Some(PushTarget::Device(DeviceAddress::Apns {
                env,
                token: t.clone()
            }))
        );
    }
    assert_eq!(
        PushTarget::from_ntf_parts(push_server::HANDLE_PROVIDER_CODE, b"abc"),
        Some(PushTarget::Handle(PushHandle("abc".into())))
    );
    assert_eq!(push_server::HANDLE_PROVIDER_CODE, b"PH");
    assert_eq!(PushTarget::from_ntf_parts(b"XX", b"abc"), None);
    assert_eq!(PushTarget::from_ntf_parts(b"AP", b"\xff"), None);
    // Matches hush-proto's providers: the APNs ones give the same device address as
    // `DeviceAddress::from_ntf_token`, the push handle provider a handle (and no device address).
    let mut n = 0;
    for p in hush_proto::ntf::PushProvider::ALL {
        let dt = hush_proto::ntf::DeviceToken {
            provider: p,
            token: t.as_bytes().to_vec(),
        };
        let via_parts = PushTarget::from_ntf_parts(p.code(), t.as_bytes());
        assert_eq!(PushTarget::from_ntf_token(&dt), via_parts, "{}", p.name());
        let expected = if p == hush_proto::ntf::PushProvider::PushHandle {
            assert_eq!(DeviceAddress::from_ntf_token(&dt), None);
            Some(PushTarget::Handle(PushHandle(t.clone())))
        } else {
            DeviceAddress::from_ntf_token(&dt).map(PushTarget::Device)
        };
        assert!(expected.is_some(), "{}", p.name());
        assert_eq!(via_parts, expected, "{}", p.name());
        n += 1;
    }
    assert_eq!(n, 5, "providers known to hush-proto");
}

#[test]
fn url_parts() {
    let u = UrlParts::parse("https://push.example.net/w/abc?x=1").unwrap();
    assert_eq!(
        (u.https, u.host.as_str(), u.port, u.path.as_str()),
        (true, "push.example.net", 443, "/w/abc?x=1")
    );
    assert_eq!(u.origin(), "https://push.example.net");
    let u = UrlParts::parse("http://127.0.0.1:8080/up").unwrap();
    assert_eq!(u.origin(), "http://127.0.0.1:8080");
    let u = UrlParts::parse("https://[::1]:9/x").unwrap();
    assert_eq!(u.origin(), "https://[::1]:9");
    assert!(UrlParts::parse("ftp://x/y").is_none());
    assert!(UrlParts::parse("/relative").is_none());
}
