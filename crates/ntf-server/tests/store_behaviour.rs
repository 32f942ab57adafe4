//! One store behaviour, three backends: every case runs against memory, SQLite (a real file)
//! and PostgreSQL (127.0.0.1:5432, database `test`, a schema of its own per test, dropped at the
//! end). PostgreSQL cases FAIL when the server is down (they never skip).
//!
//! Cases: tokens (registration index, per-device cap and eviction, updates), subscriptions (caps,
//! relay indexes, status), last notifications (one per subscription, newest 6), periodic pushes
//! (due index), expiry of never-verified tokens, restart (everything reloaded, persistent
//! backends only). PostgreSQL only: two instances on one schema see each other's changes;
//! leases; an unreachable database is a clear error at start.

#[path = "common/pg.rs"]
mod pg;

use pg::{PG_URL, PgSchema, pg};
use std::time::Duration;

use hush_proto::address::ProtocolServer;
use hush_proto::ntf::{
    DeviceToken, PnMessageData, PushProvider, SmpQueueNtf, SubStatus, TokenStatus,
};
use ntf_server::store::{
    CapExceeded, Device, LastNtf, PgConfig, RemoteChange, Store, StoreCounts, StoreMode, SubCaps,
    SubRec, TokenRec,
};
use zeroize::Zeroizing;

/// The store configuration of a test schema.
trait SchemaConfig {
    fn config(&self) -> PgConfig;
}

impl SchemaConfig for PgSchema {
    fn config(&self) -> PgConfig {
        PgConfig {
            connection: PG_URL.into(),
            schema: self.0.clone(),
            pool_size: 4,
            ..PgConfig::default()
        }
    }
}

enum Backend {
    Memory,
    Sqlite(tempfile::TempDir),
    Pg(PgSchema),
}

impl Backend {
    fn new(kind: &str, tag: &str) -> Backend {
        match kind {
            "memory" => Backend::Memory,
            "sqlite" => Backend::Sqlite(tempfile::tempdir().unwrap()),
            _ => Backend::Pg(PgSchema::new(tag)),
        }
    }

    fn mode(&self) -> StoreMode {
        match self {
            Backend::Memory => StoreMode::Memory,
            Backend::Sqlite(d) => StoreMode::Sqlite(d.path().join("ntf.db")),
            Backend::Pg(s) => StoreMode::Postgres(s.config()),
        }
    }

    fn persistent(&self) -> bool {
        !matches!(self, Backend::Memory)
    }

    async fn open(&self) -> Store {
        Store::open_async(&self.mode())
            .await
            .expect("open store (is PostgreSQL running at 127.0.0.1:5432?)")
    }
}

fn server(port: u16) -> ProtocolServer {
    ProtocolServer::parse(&format!(
        "smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@localhost:{port}"
    ))
    .unwrap()
}

fn token(id: u8, device: &[u8], key: u8) -> TokenRec {
    TokenRec {
        id: vec![id; 24],
        device: Device::Token(DeviceToken {
            provider: PushProvider::ApnsTest,
            token: device.to_vec(),
        }),
        verify_key: vec![key; 44],
        client_dh_key: vec![4; 44],
        server_dh_key: Zeroizing::new([9; 32]),
        dh_secret: Zeroizing::new([id; 32]),
        status: TokenStatus::Active,
        reg_code: vec![7; 32],
        cron_interval: 0,
        cron_sent_at: 0,
        created_at: 100,
        was_active: true,
    }
}

fn unverified(id: u8, device: &[u8], created_at: i64) -> TokenRec {
    TokenRec {
        status: TokenStatus::Registered,
        was_active: false,
        created_at,
        ..token(id, device, id)
    }
}

fn sub(id: u8, token: u8, port: u16) -> SubRec {
    SubRec {
        id: vec![id; 24],
        token_id: vec![token; 24],
        queue: SmpQueueNtf {
            server: server(port),
            notifier_id: vec![id; 24],
        },
        notifier_key: Zeroizing::new(vec![id; 48]),
        status: SubStatus::New,
    }
}

fn ntf(s: &SubRec, ts: i64) -> LastNtf {
    LastNtf {
        sub_id: s.id.clone(),
        data: PnMessageData {
            queue: s.queue.clone(),
            ntf_ts: ts,
            nonce: [ts as u8; 24],
            enc_meta: vec![4; 144],
        },
    }
}

const CAPS: SubCaps = SubCaps {
    per_token: 3,
    relays_per_token: 2,
    relays: 3,
};

/// Reopens persistent backends (after `sync`) and runs `check` on both the live and the
/// reloaded store; returns the store to go on with (the reloaded one, or the same in memory).
async fn check_both(b: &Backend, s: Store, check: impl Fn(&Store)) -> Store {
    check(&s);
    if !b.persistent() {
        return s;
    }
    s.sync().await.unwrap();
    drop(s);
    // PostgreSQL: the dropped store's tasks end on their own; the reload reads the rows.
    let s2 = b.open().await;
    check(&s2);
    s2
}

async fn case_tokens(b: Backend) {
    let s = b.open().await;
    s.add_token(token(1, b"dev-a", 1), 2).unwrap();
    // same device, second token: fine (cap 2)
    s.add_token(unverified(2, b"dev-a", 50), 2).unwrap();
    // third: the never-verified one (2) is evicted
    let e = s.add_token(unverified(3, b"dev-a", 60), 2).unwrap();
    assert_eq!(e.tokens, 1);
    assert!(s.token(&[2; 24]).is_none());
    // only verified ones left besides 3 → verify 3, then a fourth is refused
    assert!(s.update_token(&[3; 24], |t| {
        t.status = TokenStatus::Active;
        true
    }));
    assert_eq!(
        s.add_token(unverified(4, b"dev-a", 70), 2).unwrap_err(),
        CapExceeded::TokensPerDevice
    );
    // a refused update changes nothing
    assert!(!s.update_token(&[1; 24], |t| {
        t.reg_code = vec![0];
        false
    }));
    // TRPL moves token 1 to another device
    s.replace_device(
        &[1; 24],
        Device::Token(DeviceToken {
            provider: PushProvider::ApnsTest,
            token: b"dev-b".to_vec(),
        }),
        vec![5; 32],
        2,
    )
    .unwrap()
    .unwrap();
    check_both(&b, s, |s| {
        assert_eq!(s.counts().tokens, 2);
        let t1 = s.token(&[1; 24]).unwrap();
        assert_eq!(t1.status, TokenStatus::Registered);
        assert!(t1.was_active);
        assert_eq!(t1.reg_code, vec![5; 32]);
        assert_eq!(*t1.dh_secret, [1; 32]);
        assert!(
            s.token_by_registration(&t1.device, &t1.verify_key)
                .is_some()
        );
        let a = Device::Token(DeviceToken {
            provider: PushProvider::ApnsTest,
            token: b"dev-a".to_vec(),
        });
        assert_eq!(s.tokens_with_device(&a), vec![vec![3u8; 24]]);
        assert_eq!(s.token(&[3; 24]).unwrap().status, TokenStatus::Active);
    })
    .await;
}

async fn case_subscriptions(b: Backend) {
    let s = b.open().await;
    s.put_token(token(1, b"d1", 1));
    s.put_token(token(2, b"d2", 2));
    s.add_sub(sub(10, 1, 5001), CAPS).unwrap();
    s.add_sub(sub(11, 1, 5001), CAPS).unwrap();
    s.add_sub(sub(12, 1, 5002), CAPS).unwrap();
    assert_eq!(
        s.add_sub(sub(13, 1, 5002), CAPS).unwrap_err(),
        CapExceeded::SubsPerToken
    );
    s.add_sub(sub(20, 2, 5002), CAPS).unwrap();
    s.add_sub(sub(21, 2, 5003), CAPS).unwrap();
    assert_eq!(
        s.add_sub(sub(22, 2, 5004), CAPS).unwrap_err(),
        CapExceeded::RelaysPerToken
    );
    s.put_token(token(3, b"d3", 3));
    assert_eq!(
        s.add_sub(sub(30, 3, 5004), CAPS).unwrap_err(),
        CapExceeded::Relays
    );
    assert_eq!(
        s.set_sub_status(&[10; 24], SubStatus::Active),
        Some(SubStatus::New)
    );
    s.set_sub_status(&[11; 24], SubStatus::End);
    assert!(s.delete_sub(&[21; 24]).is_some());
    assert!(s.delete_sub(&[21; 24]).is_none());
    check_both(&b, s, |s| {
        assert_eq!(s.counts().subscriptions, 4);
        assert_eq!(s.sub(&[10; 24]).unwrap().status, SubStatus::Active);
        assert_eq!(s.sub(&[11; 24]).unwrap().status, SubStatus::End);
        assert_eq!(
            s.sub_by_queue(&sub(12, 1, 5002).queue).unwrap().id,
            vec![12; 24]
        );
        assert_eq!(s.subs_on_server(&server(5001)).len(), 2);
        assert_eq!(s.subs_on_server(&server(5002)).len(), 2);
        assert!(!s.relay_in_use(&server(5003)));
        let mut relays: Vec<String> = s.relays().iter().map(|r| r.to_text()).collect();
        relays.sort();
        assert_eq!(relays.len(), 2);
        let c = s.sub_counts();
        assert_eq!((c.active, c.pending, c.relays), (1, 2, 2));
        assert_eq!(*s.sub(&[12; 24]).unwrap().notifier_key, vec![12; 48]);
    })
    .await;
}

async fn case_last_notifications(b: Backend) {
    let s = b.open().await;
    s.put_token(token(1, b"d1", 1));
    let subs: Vec<SubRec> = (0..8u8).map(|i| sub(40 + i, 1, 5001)).collect();
    for x in &subs {
        s.put_sub(x.clone());
    }
    for (i, x) in subs.iter().enumerate() {
        s.add_last_ntf(&[1; 24], ntf(x, i as i64 + 1));
    }
    // a newer one of sub 45 replaces its older one
    let l = s.add_last_ntf(&[1; 24], ntf(&subs[5], 100));
    assert_eq!(
        l.iter().map(|n| n.data.ntf_ts).collect::<Vec<_>>(),
        vec![3, 4, 5, 7, 8, 100]
    );
    // deleting a subscription drops its notification
    s.delete_sub(&subs[3].id);
    let s = check_both(&b, s, |s| {
        let l = s.last_ntfs(&[1; 24]);
        assert_eq!(
            l.iter().map(|n| n.data.ntf_ts).collect::<Vec<_>>(),
            vec![3, 5, 7, 8, 100]
        );
        assert_eq!(l[4].data.nonce, [100; 24]);
        assert_eq!(s.counts().last_notifications, 5);
    })
    .await;
    // deleting the token drops everything of it
    assert_eq!(s.delete_token(&[1; 24]).len(), 7);
    check_both(&b, s, |s| {
        assert_eq!(
            s.counts(),
            StoreCounts {
                tokens: 0,
                subscriptions: 0,
                last_notifications: 0
            }
        );
        assert!(s.last_ntfs(&[1; 24]).is_empty());
    })
    .await;
}

async fn case_cron(b: Backend) {
    let s = b.open().await;
    s.set_cron_minute(Duration::from_secs(60));
    let mut t = token(1, b"d1", 1);
    t.cron_interval = 20;
    t.cron_sent_at = 1000;
    s.put_token(t);
    let mut off = token(2, b"d2", 2);
    off.cron_interval = 20;
    off.status = TokenStatus::Invalid(None);
    s.put_token(off);
    let due_ms = (1000 + 20 * 60) * 1000;
    assert!(s.take_due_cron(due_ms - 1, 0, 10).is_empty());
    let due = s.take_due_cron(due_ms, 2200, 10);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, vec![1; 24]);
    check_both(&b, s, |s| {
        s.set_cron_minute(Duration::from_secs(60));
        assert_eq!(s.token(&[1; 24]).unwrap().cron_sent_at, 2200);
        // not due again until one more interval
        assert!(s.take_due_cron(due_ms, 2200, 10).is_empty());
    })
    .await;
}

async fn case_expiry(b: Backend) {
    let s = b.open().await;
    s.put_token(unverified(1, b"d1", 100));
    s.put_token(unverified(2, b"d2", 200));
    s.put_token(token(3, b"d3", 3));
    s.put_sub(sub(10, 1, 5001));
    let (n, subs) = s.expire_unverified(150, 100);
    assert_eq!(n, 1);
    assert_eq!(subs.len(), 1);
    let s = check_both(&b, s, |s| {
        assert!(s.token(&[1; 24]).is_none());
        assert!(s.sub(&[10; 24]).is_none());
        assert!(s.token(&[2; 24]).is_some());
        assert_eq!(s.counts().tokens, 2);
    })
    .await;
    // after a reload the expiry index still holds token 2 (and never the verified token 3)
    let (n, _) = s.expire_unverified(i64::MAX, 100);
    assert_eq!(n, 1);
    assert!(s.token(&[3; 24]).is_some());
}

macro_rules! suite {
    ($($case:ident),*) => {
        mod memory { $( #[tokio::test] async fn $case() { super::$case(super::Backend::new("memory", "")).await } )* }
        mod sqlite { $( #[tokio::test] async fn $case() { super::$case(super::Backend::new("sqlite", "")).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $case() { super::$case(super::Backend::new("pg", stringify!($case))).await } )* }
    };
}

suite!(
    case_tokens,
    case_subscriptions,
    case_last_notifications,
    case_cron,
    case_expiry
);

// --- PostgreSQL only -------------------------------------------------------------------------

async fn recv_change(rx: &mut tokio::sync::mpsc::Receiver<RemoteChange>) -> RemoteChange {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("remote change within 10 s")
        .unwrap()
}

/// Wait until `f` holds (changes of another instance arrive asynchronously).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not within 10 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_see_each_others_changes() {
    let schema = PgSchema::new("two");
    let mode = StoreMode::Postgres(schema.config());
    let a = Store::open_async(&mode).await.unwrap();
    let b = Store::open_async(&mode).await.unwrap();
    let mut b_changes = b.postgres().unwrap().take_remote_changes().unwrap();
    let mut a_changes = a.postgres().unwrap().take_remote_changes().unwrap();
    assert_ne!(
        a.postgres().unwrap().instance_id(),
        b.postgres().unwrap().instance_id()
    );
    // SNEW on A → B has the token and the subscription, and is told about the subscription
    a.put_token(token(1, b"d1", 1));
    a.add_sub(sub(10, 1, 5001), CAPS).unwrap();
    a.sync().await.unwrap();
    match recv_change(&mut b_changes).await {
        RemoteChange::Sub(s) => assert_eq!(s.id, vec![10; 24]),
        other => panic!("{other:?}"),
    }
    assert!(b.token(&[1; 24]).is_some());
    assert!(b.relay_in_use(&server(5001)));
    // status changes of an existing subscription update B's memory without a change event
    a.set_sub_status(&[10; 24], SubStatus::Active);
    a.add_last_ntf(&[1; 24], ntf(&sub(10, 1, 5001), 7));
    a.sync().await.unwrap();
    eventually("status on B", || {
        b.sub(&[10; 24])
            .is_some_and(|s| s.status == SubStatus::Active)
    })
    .await;
    eventually("last ntf on B", || b.last_ntfs(&[1; 24]).len() == 1).await;
    // a change on B reaches A
    b.update_token(&[1; 24], |t| {
        t.cron_interval = 30;
        true
    });
    b.sync().await.unwrap();
    eventually("token update on A", || {
        a.token(&[1; 24]).is_some_and(|t| t.cron_interval == 30)
    })
    .await;
    // token deleted on B → A drops it with its subscription, and says so
    b.delete_token(&[1; 24]);
    b.sync().await.unwrap();
    loop {
        match recv_change(&mut a_changes).await {
            RemoteChange::SubDeleted(s) => {
                assert_eq!(s.id, vec![10; 24]);
                break;
            }
            RemoteChange::Sub(_) => {}
        }
    }
    assert!(a.token(&[1; 24]).is_none());
    assert!(!a.relay_in_use(&server(5001)));
    // nothing of A's own changes came back to A as remote
    assert!(a_changes.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_leases_share_relays_and_are_taken_over() {
    let schema = PgSchema::new("lease");
    let mut cfg = schema.config();
    cfg.lease = ntf_server::store::Lease {
        ttl: Duration::from_secs(2),
        renew: Duration::from_millis(200),
    };
    let mode = StoreMode::Postgres(cfg);
    let a = Store::open_async(&mode).await.unwrap();
    let b = Store::open_async(&mode).await.unwrap();
    let (pa, pb) = (a.postgres().unwrap(), b.postgres().unwrap());
    let relays: Vec<ProtocolServer> = (0..4).map(|i| server(6000 + i)).collect();
    // a few rounds each: both register, the first one releases what exceeds its share
    let (mut ha, mut hb) = Default::default();
    for _ in 0..8 {
        ha = pa.lease_tick(&relays).await.unwrap();
        hb = pb.lease_tick(&relays).await.unwrap();
    }
    assert_eq!(ha.len(), 2, "{ha:?}");
    assert_eq!(hb.len(), 2, "{hb:?}");
    assert!(ha.is_disjoint(&hb));
    // A stops renewing: within a ttl and a bit B holds everything
    let t0 = std::time::Instant::now();
    loop {
        hb = pb.lease_tick(&relays).await.unwrap();
        if hb.len() == 4 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no takeover: {hb:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "taken before expiry"
    );
    // A comes back: it renews nothing (its leases were taken) and claims its share again
    // once B releases one relay per round
    for _ in 0..6 {
        ha = pa.lease_tick(&relays).await.unwrap();
        hb = pb.lease_tick(&relays).await.unwrap();
    }
    assert!(ha.is_disjoint(&hb));
    assert_eq!(ha.len() + hb.len(), 4);
    assert_eq!(ha.len(), 2, "{ha:?}");
    // a graceful stop releases at once
    pb.release_leases().await.unwrap();
    ha = pa.lease_tick(&relays).await.unwrap();
    assert_eq!(ha.len(), 4);
}

#[tokio::test]
async fn postgres_unreachable_is_a_clear_error() {
    let cfg = PgConfig {
        connection: "postgresql://postgres:pw-not-shown@127.0.0.1:1/test".into(),
        schema: "ntf_unreachable".into(),
        pool_size: 2,
        ..PgConfig::default()
    };
    let e = Store::open_async(&StoreMode::Postgres(cfg))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("cannot connect to PostgreSQL"), "{msg}");
    assert!(!msg.contains("pw-not-shown"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_version_is_recorded_and_newer_refused() {
    let schema = PgSchema::new("ver");
    let mode = StoreMode::Postgres(schema.config());
    drop(Store::open_async(&mode).await.unwrap());
    let c = pg().await;
    let v: i64 = c
        .query_one(
            &format!(
                "SELECT value FROM {}.ntf_meta WHERE key = 'schema_version'",
                schema.0
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 1);
    // opening again does not migrate twice
    drop(Store::open_async(&mode).await.unwrap());
    c.execute(
        &format!(
            "UPDATE {}.ntf_meta SET value = 99 WHERE key = 'schema_version'",
            schema.0
        ),
        &[],
    )
    .await
    .unwrap();
    let e = Store::open_async(&mode).await.unwrap_err().to_string();
    assert!(e.contains("newer than this ntf-server"), "{e}");
}

/// The database drops every connection of both instances: the writer retries (a change made
/// meanwhile is committed, `sync` returns), the listener reconnects and reloads, and changes
/// flow between the instances again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_lost_are_reestablished() {
    let schema = PgSchema::new("drop");
    let mode = StoreMode::Postgres(schema.config());
    let a = Store::open_async(&mode).await.unwrap();
    let b = Store::open_async(&mode).await.unwrap();
    let mut b_changes = b.postgres().unwrap().take_remote_changes().unwrap();
    a.put_token(token(1, b"d1", 1));
    a.sync().await.unwrap();
    eventually("token on B", || b.token(&[1; 24]).is_some()).await;
    let c = pg().await;
    let killed = c
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("ntf-server {}", schema.0)],
        )
        .await
        .unwrap()
        .len();
    assert!(killed >= 3, "{killed} connections terminated");
    // a change on A right away: committed through a new connection
    a.add_sub(sub(10, 1, 5001), CAPS).unwrap();
    tokio::time::timeout(Duration::from_secs(20), a.sync())
        .await
        .expect("sync after reconnect")
        .unwrap();
    // B learns about it (announced, or found by the reload after its LISTEN reconnect)
    match recv_change(&mut b_changes).await {
        RemoteChange::Sub(s) => assert_eq!(s.id, vec![10; 24]),
        other => panic!("{other:?}"),
    }
    // and later changes flow as before
    a.set_sub_status(&[10; 24], SubStatus::Active);
    a.sync().await.unwrap();
    eventually("status on B", || {
        b.sub(&[10; 24])
            .is_some_and(|s| s.status == SubStatus::Active)
    })
    .await;
    // leases work on new connections too
    let held = a
        .postgres()
        .unwrap()
        .lease_tick(&[server(5001)])
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
}
