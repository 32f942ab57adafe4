//! The providers come from one registry (`provider::REGISTRY`, name → constructor): each enabled
//! provider serves its routes (address kinds), a disabled one none, an unserved route is
//! `NoProvider`, and two providers claiming one route are refused.

use std::path::Path;
use std::sync::Arc;

use push_server::cli::{self, CliError};
use push_server::config::Config;
use push_server::job::WebPushSubscription;
use push_server::jwt::Es256Key;
use push_server::provider::sink::MemorySink;
use push_server::provider::{Constructor, Providers, REGISTRY, Route, Routes, SetupError};
use push_server::{ApnsEnv, DeviceAddress, PushError};

fn config(dir: &Path) -> Config {
    Config::parse(b"", &dir.join("push-server.ini"), dir)
        .unwrap()
        .0
}

fn apns(env: ApnsEnv) -> DeviceAddress {
    DeviceAddress::Apns {
        env,
        token: "00ff".into(),
    }
}

fn webpush() -> DeviceAddress {
    let mut p256dh = vec![4u8; 65];
    p256dh[1] = 1;
    DeviceAddress::WebPush(WebPushSubscription {
        endpoint: "https://push.example/x".into(),
        p256dh,
        auth: vec![7; 16],
    })
}

/// The provider serving `a` (its metric name), or the routing error.
fn served_by(p: &Providers, a: &DeviceAddress) -> Result<Option<&'static str>, PushError> {
    match p.route(a)? {
        Route::Send(provider) => Ok(Some(provider.name())),
        Route::Null => Ok(None),
    }
}

#[test]
fn registry_has_one_line_per_configurable_provider() {
    let names: Vec<&str> = REGISTRY.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["apns", "webpush"]);
}

#[test]
fn nothing_enabled_serves_nothing_but_apns_null() {
    let dir = tempfile::tempdir().unwrap();
    let p = Providers::from_config(&config(dir.path())).unwrap();
    assert!(p.routes().is_empty(), "{:?}", p.routes());
    assert_eq!(
        served_by(&p, &apns(ApnsEnv::Test)).unwrap_err(),
        PushError::NoProvider("apns_test")
    );
    assert_eq!(
        served_by(&p, &webpush()).unwrap_err(),
        PushError::NoProvider("webpush")
    );
    assert_eq!(served_by(&p, &apns(ApnsEnv::Null)).unwrap(), None);
}

#[test]
fn enabled_providers_serve_their_routes() {
    let dir = tempfile::tempdir().unwrap();
    let key = Es256Key::generate().unwrap();
    let key_file = dir.path().join("key.p8");
    std::fs::write(&key_file, key.to_pkcs8_pem().unwrap()).unwrap();
    let mut cfg = config(dir.path());
    cfg.apns.enable = true;
    cfg.apns.key_file = key_file.clone();
    cfg.apns.team_id = "TEAM".into();
    cfg.apns.key_id = "KEY".into();
    cfg.apns.dev_url = None;
    cfg.apns.test_url = Some("https://127.0.0.1:8443".into());
    cfg.webpush.enable = true;
    cfg.webpush.vapid_key_file = key_file;
    let p = Providers::from_config(&cfg).unwrap();
    assert_eq!(p.routes(), ["apns_prod", "apns_test", "webpush"]);
    assert_eq!(
        served_by(&p, &apns(ApnsEnv::Prod)).unwrap(),
        Some("apns_prod")
    );
    assert_eq!(
        served_by(&p, &apns(ApnsEnv::Test)).unwrap(),
        Some("apns_test")
    );
    assert_eq!(
        served_by(&p, &apns(ApnsEnv::Dev)).unwrap_err(),
        PushError::NoProvider("apns_dev")
    );
    assert_eq!(served_by(&p, &webpush()).unwrap(), Some("webpush"));
}

#[test]
fn setup_errors_keep_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.webpush.enable = true;
    cfg.webpush.vapid_key_file = dir.path().join("missing.pem");
    assert!(matches!(
        Providers::from_config(&cfg),
        Err(SetupError::File { ref path, .. }) if path.ends_with("missing.pem")
    ));
    let e = cli::providers(&cfg).unwrap_err();
    assert!(
        matches!(&e, CliError::File { path, .. } if path.ends_with("missing.pem")),
        "{e:?}"
    );
    let mut cfg = config(dir.path());
    let key_file = dir.path().join("key.p8");
    std::fs::write(
        &key_file,
        Es256Key::generate().unwrap().to_pkcs8_pem().unwrap(),
    )
    .unwrap();
    cfg.apns.enable = true;
    cfg.apns.key_file = key_file;
    let e = cli::providers(&cfg).unwrap_err();
    assert_eq!(e.to_string(), "[APNS] team_id and key_id are required");
}

fn sink_for_apns_test(_: &Config) -> Result<Routes, SetupError> {
    Ok(vec![("apns_test", Arc::new(MemorySink::new()))])
}

#[test]
fn two_providers_for_one_route_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let one: &[(&str, Constructor)] = &[("first", sink_for_apns_test)];
    let p = Providers::from_registry(&cfg, one).unwrap();
    assert_eq!(served_by(&p, &apns(ApnsEnv::Test)).unwrap(), Some("sink"));
    let two: &[(&str, Constructor)] = &[
        ("first", sink_for_apns_test),
        ("second", sink_for_apns_test),
    ];
    let e = Providers::from_registry(&cfg, two).unwrap_err();
    assert_eq!(
        e.to_string(),
        "providers first and second both serve apns_test"
    );
}
