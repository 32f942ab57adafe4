//! `ntf-server import`: a store log written by hand in the reference's format
//! (tests/fixtures/reference, see its README.md) is imported into a real SQLite store; the
//! ntf-server then serves the imported tokens over NTF, subscribes the imported subscription
//! on a real relay (itself imported from the reference relay fixture) and pushes a message.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};

use common::*;
use hush_crypto::{DhSecret, Ed25519Secret, X25519Secret};
use hush_proto::encoding::base64url_encode;
use hush_proto::error::ErrorType;
use hush_proto::ntf::{NtfCommand, NtfResponse, PushProvider, SmpQueueNtf, SubStatus, TokenStatus};
use ntf_server::PolicyMode;
use ntf_server::import::{
    ImportError, ImportOptions, ImportReport, LogError, Phase, Progress, import_reference,
    import_reference_with,
};
use ntf_server::store::{Device as StoreDevice, Store, StoreMode};
/// The fixture's ids and secrets: sha256("<tag><n>") prefixes (OpenSSL's sha256).
fn h(tag: &str, n: u32, size: usize) -> Vec<u8> {
    openssl::sha::sha256(format!("{tag}{n}").as_bytes())[..size].to_vec()
}

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(p)
}

fn smp_fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../smp-server/tests/fixtures/reference")
        .join(p)
}

fn hex_of(s: &str) -> String {
    openssl::sha::sha256(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fixture relay address that the test replaces with the test relay's.
fn fixture_relay() -> String {
    format!("smp://{}@127.0.0.1:5223", base64url_encode(&h("fp", 1, 32)))
}

/// The token's push secret: X25519(server key "tdh<n>", device key "cdh<n>").
fn push_secret(n: u32) -> DhSecret {
    let srv = X25519Secret::from_bytes(h("tdh", n, 32).try_into().unwrap());
    let dev = X25519Secret::from_bytes(h("cdh", n, 32).try_into().unwrap());
    srv.dh(&dev.public())
}

fn verify_key(n: u8) -> Ed25519Secret {
    Ed25519Secret::from_seed(&[40 + n; 32])
}

fn expected_report(r: &ImportReport) {
    assert_eq!(r.log_lines, 22, "{r:?}");
    assert_eq!(r.tokens, 3, "tokens 1, 2, 5: {r:?}");
    assert_eq!(
        r.deleted_tokens, 2,
        "token 3 (device re-activated), token 4 (TDELETE)"
    );
    assert_eq!(r.subscriptions, 3, "subscriptions 1, 2, 3");
    assert_eq!(r.deleted_subscriptions, 2, "4 with its token, 5 by SDELETE");
    assert_eq!(r.active_tokens, 1);
    assert_eq!(r.cron_tokens, 2);
    assert_eq!(
        r.service_records_skipped, 4,
        "serviceAssoc=T, service=T, two SERVICE"
    );
    assert_eq!(r.records_skipped, 1, "TSTATUS of an unknown token");
    assert_eq!(r.truncated_lines, 1);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.ends_with(":22: incomplete last line skipped")),
        "{:?}",
        r.warnings
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(":21: record for a token that does not exist")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test]
async fn imported_tokens_and_subscriptions_work() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();

    // the relay, migrated from the reference relay fixture (queue 1 has notifier id "nid1"
    // with the Ed25519 key of seed [3; 32])
    let mut rconf = relay_config(dir.path());
    rconf.store.message_expiration = std::time::Duration::from_secs(3650 * 86400);
    let r = smp_server::import::import_into_configured_store(
        &rconf,
        &smp_fixture("smp-server-store.log"),
        None,
        false,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(r.queues, 9);
    let relay = Relay::start(rconf).await;

    // the ntf store log, with the fixture relay replaced by the test relay
    let text = std::fs::read_to_string(fixture("ntf-server-store.log")).unwrap();
    assert!(text.contains(&fixture_relay()));
    let log = dir.path().join("ntf-server-store.log");
    std::fs::write(
        &log,
        text.replace(&fixture_relay(), &relay.server.to_text()),
    )
    .unwrap();

    let config = ntf_config(dir.path(), true, PolicyMode::Reference);
    let StoreMode::Sqlite(_) = config.store_mode() else {
        panic!("expected the SQLite store")
    };
    let mut events: Vec<Progress> = Vec::new();
    let report =
        ntf_server::import::import_into_configured_store(&config, &log, false, |p| events.push(p))
            .await
            .unwrap();
    expected_report(&report);
    assert_eq!(
        events.last().copied(),
        Some(Progress {
            phase: Phase::Subscriptions,
            done: 3,
            total: 3
        })
    );

    // the records, read back from the file
    let store = Store::open(&config.store_mode()).unwrap();
    let tkn = |n| h("tkn", n, 24);
    let sub = |n| h("sub", n, 24);
    let t1 = store.token(&tkn(1)).unwrap();
    assert_eq!(t1.status, TokenStatus::Active);
    assert_eq!((t1.cron_interval, t1.created_at), (20, 1764979200));
    assert!(t1.was_active);
    assert_eq!(*t1.dh_secret, *push_secret(1).as_bytes());
    assert_eq!(
        t1.device,
        StoreDevice::Token(hush_proto::ntf::DeviceToken {
            provider: PushProvider::ApnsTest,
            token: hex_of("device1").into_bytes()
        })
    );
    assert!(
        store.token(&tkn(3)).is_none(),
        "other registration of the device"
    );
    assert!(store.token(&tkn(4)).is_none(), "TDELETE");
    let t2 = store.token(&tkn(2)).unwrap();
    assert_eq!(t2.status, TokenStatus::Confirmed);
    assert_eq!(t2.reg_code, h("reg2", 2, 16), "TUPDATE");
    assert!(!t2.was_active);
    assert_eq!(
        t2.device,
        StoreDevice::Token(hush_proto::ntf::DeviceToken {
            provider: PushProvider::ApnsProd,
            token: hex_of("device3").into_bytes()
        })
    );
    let t5 = store.token(&tkn(5)).unwrap();
    assert_eq!((t5.status, t5.cron_interval), (TokenStatus::Expired, 30));
    assert!(t5.was_active, "a token with subscriptions was verified");
    assert_eq!(store.sub(&sub(2)).unwrap().status, SubStatus::Auth);
    assert_eq!(
        store.sub(&sub(3)).unwrap().status,
        SubStatus::Err(b"SMP AUTH".to_vec())
    );
    assert!(store.sub(&sub(4)).is_none());
    assert!(store.sub(&sub(5)).is_none());
    let s1 = store.sub(&sub(1)).unwrap();
    assert_eq!(
        s1.queue,
        SmpQueueNtf {
            server: relay.server.clone(),
            notifier_id: h("nid", 1, 24)
        }
    );

    // not twice
    let again = import_reference(&log, &store, |_| {}).await;
    assert!(
        matches!(again, Err(ImportError::TargetNotEmpty(3))),
        "{again:?}"
    );
    drop(store);

    // the ntf-server on the imported store
    let push = push().await;
    let ntf = Ntf::start(config, &push).await;
    let mut c = ntf.client().await;
    let mut d = Device::new(1);
    d.token_hex = hex_of("device1");
    d.key = verify_key(1);
    d.token_id = tkn(1);
    d.dh_secret = Some(push_secret(1));
    let (_, r) = c.cmd(Some(&d.key), &tkn(1), &NtfCommand::Tchk).await;
    assert_eq!(r, NtfResponse::Tkn(TokenStatus::Active));
    let (_, r) = c
        .cmd(Some(&verify_key(2)), &tkn(1), &NtfCommand::Tchk)
        .await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth), "another token's key");
    let (_, r) = c
        .cmd(Some(&verify_key(2)), &tkn(2), &NtfCommand::Tchk)
        .await;
    assert_eq!(r, NtfResponse::Tkn(TokenStatus::Confirmed));
    let (_, r) = c
        .cmd(Some(&verify_key(3)), &tkn(3), &NtfCommand::Tchk)
        .await;
    assert_eq!(r, NtfResponse::Err(ErrorType::Auth), "removed registration");
    // the imported subscription is subscribed on the relay with the imported notifier key
    wait_sub(&mut c, &d, &sub(1), SubStatus::Active).await;

    // a message to the queue: the relay notifies, the device gets the push
    let smp = relay.client().await;
    let sender = hush_client::AuthKey::Ed25519(Ed25519Secret::from_seed(&[2; 32]));
    let before = push.received(d.sink_token()).len();
    smp.send(
        &h("sid", 1, 24),
        Some(&sender),
        true,
        b"pushed after the move",
    )
    .await
    .unwrap();
    let (_, items) = wait_message_push(&push, &d, before).await;
    let item = items.last().unwrap();
    assert_eq!(item.queue, s1.queue);
    let ndh = DhSecret::from_bytes(h("ndh", 1, 32).try_into().unwrap());
    let meta = hush_client::decrypt_nmsg(&ndh, &item.nonce, &item.enc_meta).unwrap();
    // the recipient fetches it with the imported recipient key and DH secret
    let rcv = hush_client::AuthKey::Ed25519(Ed25519Secret::from_seed(&[1; 32]));
    let raw = smp.get(&h("rid", 1, 24), &rcv).await.unwrap().unwrap();
    let m = raw
        .decrypt(&DhSecret::from_bytes(h("rdh", 1, 32).try_into().unwrap()))
        .unwrap();
    assert_eq!(m.msg_id, meta.msg_id);
    let hush_client::RcvMsgBody::Message { body, .. } = m.body else {
        panic!("quota marker")
    };
    assert_eq!(body, b"pushed after the move");
    ntf.stop().await;
    relay.stop().await;
}

async fn import_text(dir: &Path, name: &str, text: &str) -> Result<ImportReport, ImportError> {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    import_reference(&p, &Store::memory(), |_| {}).await
}

fn parse_err(r: Result<ImportReport, ImportError>) -> (usize, String) {
    match r {
        Err(ImportError::Log(LogError::Parse { line, msg, .. })) => (line, msg),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_logs_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("ntf-server-store.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let t1 = lines[0];
    let s1 = lines[6];
    assert!(s1.starts_with("SCREATE") && s1.contains("127.0.0.1:5223"));

    let e = import_text(dir.path(), "a.log", &format!("{t1}\nTRENAME x\n"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().ends_with("a.log:2: unknown record `TRENAME`"),
        "{e}"
    );
    // a token whose DH public key is not its private key's
    let tkn5 = lines
        .iter()
        .find(|l| l.contains("tokenStatus=EXPIRED"))
        .unwrap();
    let pub5 = tkn5
        .split("dhKeys=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let pub1 = t1
        .split("dhKeys=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let (line, msg) = parse_err(
        import_text(
            dir.path(),
            "b.log",
            &format!("{t1}\n{}\n", t1.replace(pub1, pub5)),
        )
        .await,
    );
    assert_eq!(line, 2);
    assert!(msg.contains("does not belong"), "{msg}");
    // a subscription whose queue address is not an SMP server
    let bad = s1.replace("smp://", "xftp://");
    let (line, msg) = parse_err(import_text(dir.path(), "c.log", &format!("{t1}\n{bad}\n")).await);
    assert_eq!(line, 2);
    assert!(msg.starts_with("smpQueue"), "{msg}");
    // a device token that is not hex
    let bad = t1.replace("token=apns_test ", "token=apns_test zz");
    let (line, _) = parse_err(import_text(dir.path(), "d.log", &format!("{bad}\n")).await);
    assert_eq!(line, 1);
    // cut in the middle but complete (has its newline): an error; without it: skipped
    let cut = &s1[..s1.len() - 20];
    let (line, _) =
        parse_err(import_text(dir.path(), "e.log", &format!("{t1}\n{cut}\n{t1}\n")).await);
    assert_eq!(line, 2);
    let r = import_text(dir.path(), "e.log", &format!("{t1}\n{cut}"))
        .await
        .unwrap();
    assert_eq!((r.tokens, r.truncated_lines), (1, 1));
    // a subscription of a token that is not there: skipped with a warning
    let r = import_text(dir.path(), "f.log", &format!("{s1}\n"))
        .await
        .unwrap();
    assert_eq!((r.subscriptions, r.records_skipped), (0, 1));
    assert!(r.warnings[0].ends_with("f.log:1: SCREATE: no such token, subscription skipped"));

    // force: a non-empty target
    let store = Store::memory();
    let p = dir.path().join("g.log");
    std::fs::write(&p, format!("{t1}\n")).unwrap();
    import_reference(&p, &store, |_| {}).await.unwrap();
    assert!(matches!(
        import_reference(&fixture("ntf-server-store.log"), &store, |_| {}).await,
        Err(ImportError::TargetNotEmpty(1))
    ));
    let r = import_reference_with(
        &fixture("ntf-server-store.log"),
        &store,
        ImportOptions { force: true },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(r.tokens, 3);
    assert_eq!(store.counts().tokens, 3, "token 1 replaced");
}

/// `[STORE_LOG] db_connection`: the import goes to the PostgreSQL store the configuration names;
/// a new instance reads the tokens and subscriptions back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_into_the_configured_postgres_store() {
    let schema = pg::PgSchema::new("import");
    let dir = tempfile::tempdir().unwrap();
    let mut config = ntf_config(dir.path(), true, PolicyMode::Reference);
    config.store_db = Some(ntf_server::store::PgConfig {
        connection: pg::PG_URL.into(),
        schema: schema.0.clone(),
        pool_size: 4,
        ..ntf_server::store::PgConfig::default()
    });
    let StoreMode::Postgres(_) = config.store_mode() else {
        panic!("expected the PostgreSQL store")
    };
    let log = fixture("ntf-server-store.log");
    let report = ntf_server::import::import_into_configured_store(&config, &log, false, |_| {})
        .await
        .unwrap();
    expected_report(&report);
    let again =
        ntf_server::import::import_into_configured_store(&config, &log, false, |_| {}).await;
    assert!(
        matches!(again, Err(ImportError::TargetNotEmpty(3))),
        "{again:?}"
    );
    let store = Store::open_async(&config.store_mode()).await.unwrap();
    let c = store.counts();
    assert_eq!((c.tokens, c.subscriptions), (3, 3));
    let t1 = store.token(&h("tkn", 1, 24)).unwrap();
    assert_eq!((t1.status, t1.cron_interval), (TokenStatus::Active, 20));
    assert_eq!(*t1.dh_secret, *push_secret(1).as_bytes());
    assert_eq!(
        store.sub(&h("sub", 3, 24)).unwrap().status,
        SubStatus::Err(b"SMP AUTH".to_vec())
    );
    // memory-only configuration: nothing to import into
    let mut mem = ntf_config(dir.path(), true, PolicyMode::Reference);
    mem.store_enable = false;
    let e = ntf_server::import::import_into_configured_store(&mem, &log, false, |_| {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("memory only"), "{e}");
}
