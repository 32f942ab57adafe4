//! Resubscription cost: S notifier subscriptions over R real relays (SQLite stores), subscribed
//! again the way a restarted notification server does it — before: one `NSUB` per queue, each
//! signed by its notifier key, batched into blocks (≤ 135 per block as the reference agent
//! does) and pipelined on one connection per relay; after: one `NSUBS` per relay in a service
//! session (TLS client certificate, v16), answered `SOKS n`.
//!
//! The queues are written straight into each relay's store before it starts (the same records
//! `NEW` + `NKEY` make, every notifier with its own Ed25519 key); for the service run they are
//! associated with the service in the store (what `NSUB` signed in a service session does).
//! Every `NSUB` is signed before the clock starts, so the figures are the relays' work plus
//! the transport: wall time until every answer arrived and this process's CPU time
//! (/proc/self/stat) over the same window.
//!
//! ```text
//! cargo run --release -p smp-server --example service_resubscribe -- --subs 100000 --relays 3
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_crypto::{Ed25519Secret, SignAlgorithm, generate_ca, generate_online_cert};
use hush_proto::handshake::ServiceRole;
use hush_proto::smp::Command;
use hush_proto::transmission::{
    Layout, Transmission, authorized_bytes, decode_transmission_with, encode_transmission,
};
use hush_store::{
    EntityId, NotifierCreds, QueueMode, QueueRecord, QueueStatus, QueueStore, ServiceParty,
    ServiceRecord, SqliteOptions, SqliteStore, StoreError,
};
use hush_transport::{ClientCertificate, ClientConfig, ServiceCredentials, TransportClient};
use rand::RngCore;
use smp_server::server::RelayOptions;
use smp_server::testing::{TestRelay, init_dirs, loopback_config};

fn rid() -> EntityId {
    let mut id = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut id);
    id
}

/// This process's user + system CPU time (/proc/self/stat, clock ticks of 10 ms).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

struct Args {
    subs: usize,
    relays: usize,
}

fn args() -> Args {
    let mut a = Args {
        subs: 100_000,
        relays: 3,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        match v[i].as_str() {
            "--subs" => a.subs = v[i + 1].parse().unwrap(),
            "--relays" => a.relays = v[i + 1].parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// One relay's queues: (recipient id, notifier id, notifier key).
type Queues = Vec<(EntityId, EntityId, Ed25519Secret)>;

async fn with_store<T>(path: &std::path::Path, f: impl AsyncFnOnce(Arc<SqliteStore>) -> T) -> T {
    let store = Arc::new(SqliteStore::open(path, SqliteOptions::default()).unwrap());
    let r = f(store.clone()).await;
    drop(store);
    r
}

/// Runs `op` for every item with up to 256 in flight, retrying `Busy`.
async fn each<I: Send + 'static>(
    store: &Arc<SqliteStore>,
    items: Vec<I>,
    op: impl Fn(Arc<SqliteStore>, &I) -> hush_store::StoreFuture<'static, ()> + Send + Sync + 'static,
) {
    let op = Arc::new(op);
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut set = tokio::task::JoinSet::new();
    for it in items {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let (store, op) = (store.clone(), op.clone());
        set.spawn(async move {
            let _p = permit;
            loop {
                match op(store.clone(), &it).await {
                    Ok(()) => break,
                    Err(StoreError::Busy) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        while set.try_join_next().is_some() {}
    }
    while set.join_next().await.is_some() {}
}

#[tokio::main]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let ca = generate_ca(SignAlgorithm::Ed25519, "ntf service CA").unwrap();
    let leaf = generate_online_cert(&ca, SignAlgorithm::Ed25519, "ntf service").unwrap();
    let cert_hash = hush_crypto::fingerprint(&ca.cert_der);
    let service_id = rid();
    let chain = vec![leaf.cert_der.clone(), ca.cert_der.clone()];

    // Relays' stores, filled directly.
    let t0 = Instant::now();
    let mut relays = Vec::new();
    let mut all_queues: Vec<Arc<Queues>> = Vec::new();
    for r in 0..a.relays {
        let paths = init_dirs(&dir.path().join(format!("relay{r}"))).unwrap();
        let config = loopback_config(&paths, 0).unwrap();
        let n = a.subs / a.relays + usize::from(r < a.subs % a.relays);
        let queues: Queues = (0..n)
            .map(|_| (rid(), rid(), Ed25519Secret::generate()))
            .collect();
        let records: Vec<QueueRecord> = queues
            .iter()
            .map(|(r, n, k)| QueueRecord {
                recipient_id: *r,
                recipient_keys: vec![k.public().to_spki_der()],
                rcv_dh_secret: [1; 32],
                sender_id: rid(),
                sender_key: None,
                mode: Some(QueueMode::Messaging),
                link: None,
                notifier: Some(NotifierCreds {
                    notifier_id: *n,
                    notifier_key: k.public().to_spki_der(),
                    rcv_ntf_dh_secret: [2; 32],
                }),
                status: QueueStatus::Active,
                updated_at: None,
            })
            .collect();
        with_store(&config.store.path, async |store| {
            each(&store, records, |s, q| {
                let q = q.clone();
                Box::pin(async move { s.create_queue(q).await })
            })
            .await;
            let sr = ServiceRecord {
                service_id,
                role: b'N',
                cert: ca.cert_der.clone(),
                cert_hash,
                created_at: 0,
            };
            assert_eq!(store.get_create_service(sr).await.unwrap(), service_id);
        })
        .await;
        relays.push(config);
        all_queues.push(Arc::new(queues));
    }
    println!(
        "setup: {} relays, {} notifier queues written to their stores in {:?}",
        a.relays,
        a.subs,
        t0.elapsed()
    );

    // Before: NSUB per queue.
    let mut running = Vec::new();
    for c in &relays {
        running.push(
            TestRelay::start(c.clone(), RelayOptions::default())
                .await
                .unwrap(),
        );
    }
    let mut conns = Vec::new();
    for (r, relay) in running.iter().enumerate() {
        let conn = TransportClient::smp()
            .unwrap()
            .connect_addr(relay.addr, &relay.fingerprint)
            .await
            .unwrap();
        let v = conn.version();
        let sid = conn.session_id().to_vec();
        let cmd = Command::NSub.encode(v);
        let ts: Vec<Vec<u8>> = all_queues[r]
            .iter()
            .enumerate()
            .map(|(i, (_, nid, key))| {
                let corr = (i as u64).to_be_bytes().repeat(3);
                let authorized = authorized_bytes(&sid, &corr, nid, &cmd);
                let sig = key.sign(&authorized);
                let t = Transmission {
                    authorization: &sig,
                    corr_id: &corr,
                    entity_id: nid,
                    command: &cmd,
                    ..Default::default()
                };
                let mut b = Vec::new();
                encode_transmission(&mut b, &t, v, true).unwrap();
                b
            })
            .collect();
        conns.push((conn, ts));
    }
    let up = uptime();
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (conn, ts) in conns {
        set.spawn(async move {
            let v = conn.version();
            let n = ts.len();
            let (mut reader, mut writer) = conn.into_split();
            let w = tokio::spawn(async move {
                for chunk in ts.chunks(135) {
                    writer.send_transmissions(chunk).await.unwrap();
                }
                writer
            });
            let mut ok = 0;
            while ok < n {
                let block = reader.recv().await.unwrap().unwrap();
                for t in block.transmissions().unwrap() {
                    let t = decode_transmission_with(t, Layout::smp(v)).unwrap();
                    assert!(t.command.starts_with(b"SOK"), "{:?}", &t.command);
                    ok += 1;
                }
            }
            drop(w.await.unwrap());
            ok
        });
    }
    let mut total = 0;
    while let Some(n) = set.join_next().await {
        total += n.unwrap();
    }
    let before = (t0.elapsed(), cpu_secs() - cpu0);
    assert_eq!(total, a.subs);
    // What the subscriptions set off afterwards (the notification flush of every subscribed
    // id) counts too: CPU again 3 s later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before_settled = cpu_secs() - cpu0;
    println!(
        "before (NSUB x{}, ≤135 per block, pipelined): {:?} wall, {:.2} s CPU ({:.1} us/subscription); load at start: {up}",
        a.subs,
        before.0,
        before.1,
        before.1 * 1e6 / a.subs as f64
    );
    for mut r in running {
        r.stop().await.unwrap();
    }

    // Associate every queue with the service (what NSUB in a service session stores).
    let t0 = Instant::now();
    for (r, c) in relays.iter().enumerate() {
        let ids: Vec<EntityId> = all_queues[r].iter().map(|(rid, _, _)| *rid).collect();
        with_store(&c.store.path, async |store| {
            each(&store, ids, move |s, rid| {
                let rid = *rid;
                Box::pin(async move {
                    s.set_queue_service(rid, ServiceParty::Notifier, Some(service_id))
                        .await
                })
            })
            .await;
        })
        .await;
    }
    println!(
        "associated all queues with the service in {:?}",
        t0.elapsed()
    );

    // After: one NSUBS per relay.
    let mut running = Vec::new();
    for c in &relays {
        running.push(
            TestRelay::start(c.clone(), RelayOptions::default())
                .await
                .unwrap(),
        );
    }
    let mut conns = Vec::new();
    for relay in &running {
        let creds = ServiceCredentials {
            role: ServiceRole::Notifier,
            cert: ClientCertificate {
                chain: chain.clone(),
                key: leaf.key.clone(),
            },
        };
        let conn = TransportClient::smp_service(ClientConfig::smp(), creds)
            .unwrap()
            .connect_addr(relay.addr, &relay.fingerprint)
            .await
            .unwrap();
        assert_eq!(conn.service().unwrap().service_id, service_id.to_vec());
        conns.push(conn);
    }
    let up = uptime();
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for mut conn in conns {
        set.spawn(async move {
            let v = conn.version();
            let svc = conn.service().unwrap().clone();
            let cmd = Command::NSubs.encode(v);
            let corr = [7u8; 24];
            let authorized = authorized_bytes(conn.session_id(), &corr, &svc.service_id, &cmd);
            let sig = svc.key.sign(&authorized);
            let t = Transmission {
                authorization: &sig,
                corr_id: &corr,
                entity_id: &svc.service_id,
                command: &cmd,
                ..Default::default()
            };
            let mut b = Vec::new();
            encode_transmission(&mut b, &t, v, true).unwrap();
            conn.send(&[b]).await.unwrap();
            loop {
                let block = conn.recv().await.unwrap().unwrap();
                for t in block.transmissions().unwrap() {
                    let t = decode_transmission_with(t, Layout::smp(v)).unwrap();
                    if t.corr_id == corr {
                        // `SOKS` SP Int64 (8 bytes, big-endian).
                        let c = t.command;
                        assert!(c.starts_with(b"SOKS ") && c.len() == 13, "{c:?}");
                        let n = i64::from_be_bytes(c[5..13].try_into().unwrap()) as usize;
                        return (n, conn);
                    }
                }
            }
        });
    }
    let mut total = 0;
    let mut keep = Vec::new();
    while let Some(r) = set.join_next().await {
        let (n, conn) = r.unwrap();
        total += n;
        keep.push(conn);
    }
    let after = (t0.elapsed(), cpu_secs() - cpu0);
    assert_eq!(total, a.subs);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_settled = cpu_secs() - cpu0;
    println!(
        "after (NSUBS x{}, SOKS total {total}): {:?} wall, {:.2} s CPU ({:.1} us/subscription); load at start: {up}",
        a.relays,
        after.0,
        after.1,
        after.1 * 1e6 / a.subs as f64
    );
    println!(
        "CPU including the 3 s after the last answer: before {before_settled:.2} s, after {after_settled:.2} s"
    );
    println!(
        "ratio before/after: wall {:.1}x, CPU {:.1}x (with the 3 s after: {:.1}x)",
        before.0.as_secs_f64() / after.0.as_secs_f64(),
        before.1 / after.1.max(0.01),
        before_settled / after_settled.max(0.01)
    );
    drop(keep);
    for mut r in running {
        r.stop().await.unwrap();
    }
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
