//! Three real `ntf-server` processes on one PostgreSQL schema (127.0.0.1:5432, database `test`,
//! a schema of its own, dropped at the end; the test FAILS if PostgreSQL is down), three relays,
//! one push-server (over the network, shared: duplicates are suppressed by job id) in front of
//! apns-sink. Tokens and subscriptions are created through all three instances; each relay is
//! subscribed by the one instance holding its lease. Messages are sent to every queue without
//! pause; one instance is SIGKILLed in the middle. Asserted: its relays are taken over by the
//! others within 30 s, notifications continue, and the device's re-check (GET of every message
//! of every queue) finds every message sent during the outage and after it in some push.

#[path = "common/binary.rs"]
mod binary;
mod common;

#[path = "common/pg.rs"]
mod pg;

use pg::{PG_URL, PgSchema, pg};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use binary::{Running as Instance, push_dir, register, sink_with_topics, start};
use common::*;
use hush_proto::ntf::{NtfResponse, SubStatus};

/// Test size; the benchmark runs the same test with `HUSH_NTF_MULTI_DEVICES=30
/// HUSH_NTF_MULTI_QUEUES=1000 HUSH_NTF_MULTI_LEASE_TTL=15` (30,000 subscriptions, the default
/// lease).
fn param(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn ntf_init(dir: &Path) -> (PathBuf, PathBuf) {
    let (etc, var, _) = binary::ntf_init(dir);
    (etc, var)
}

fn set_ini(etc: &Path, extra: &str) {
    let ini = etc.join("ntf-server.ini");
    let text = std::fs::read_to_string(&ini).unwrap();
    let mut text = text
        .replace("[TRANSPORT]\n", "[TRANSPORT]\nbind = 127.0.0.1\n")
        .replace(
            "relay_destinations = public",
            "relay_destinations = loopback",
        )
        .replace("mode = budget", "mode = reference");
    // no limit on TNEW (all devices register from 127.0.0.1)
    for (k, v) in [
        ("token_rate", "0"),
        ("token_rate_per_connection", "0"),
        ("token_rate_per_ip", "0"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{k} = ")))
            .unwrap()
            .to_string();
        text = text.replace(&format!("{line}\n"), &format!("{k} = {v}\n"));
    }
    // [STORE_LOG] and [PUSH] keys go into the existing sections
    let (store, push) = extra.split_once("[PUSH]\n").unwrap();
    let text = text
        .replace("[STORE_LOG]\n", &format!("[STORE_LOG]\n{store}"))
        .replace("[PUSH]\n", &format!("[PUSH]\n{push}"));
    std::fs::write(&ini, text).unwrap();
}

/// relay address → (owner instance id, lease current).
async fn leases(db: &tokio_postgres::Client, schema: &str) -> HashMap<String, (String, bool)> {
    db.query(
        &format!("SELECT server, owner, expires_at > now() FROM {schema}.relay_leases"),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2))))
    .collect()
}

async fn active_subs(db: &tokio_postgres::Client, schema: &str) -> i64 {
    db.query_one(
        &format!("SELECT count(*) FROM {schema}.subscriptions WHERE status = $1"),
        &[&SubStatus::Active.to_text()],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_one_killed_mid_stream() {
    init_tracing();
    let devices_n = param("HUSH_NTF_MULTI_DEVICES", 30).clamp(1, 250) as u8;
    let queues_n = param("HUSH_NTF_MULTI_QUEUES", 10) as usize;
    let lease_ttl = param("HUSH_NTF_MULTI_LEASE_TTL", 5);
    let db = pg().await;
    let schema = PgSchema::new("multi");
    let dir = tempfile::tempdir().unwrap();

    // push side: sink + one push-server over the network
    let s = Arc::new(sink_with_topics(&["chat.simplex.app"]).await);
    let pdir = dir.path().join("push");
    std::fs::create_dir_all(&pdir).unwrap();
    let cred = push_dir(&pdir, &s);
    let (pcfg, _) = push_server::config::Config::load(&pdir).unwrap();
    let push = push_server::cli::start(&pcfg).await.unwrap();
    let pfp = std::fs::read_to_string(pdir.join("fingerprint")).unwrap();

    // three relays
    let mut relays = Vec::new();
    for i in 0..3 {
        let rdir = dir.path().join(format!("relay{i}"));
        std::fs::create_dir_all(&rdir).unwrap();
        let mut rc = relay_config(&rdir);
        // the test creates all queues from one connection per relay
        rc.limits.new_queues_per_minute = 0;
        rc.limits.new_queues_per_minute_per_ip = 0;
        relays.push(Relay::start(rc).await);
    }

    // three ntf-server processes on one schema
    let mut insts: Vec<Option<Instance>> = Vec::new();
    for i in 0..3 {
        let ndir = dir.path().join(format!("ntf{i}"));
        let (etc, var) = ntf_init(&ndir);
        set_ini(
            &etc,
            &format!(
                "db_connection = {PG_URL}\ndb_schema = {}\ndb_pool_size = 4\nlease_ttl = {lease_ttl}\n\
                 [PUSH]\nmode = remote\nhost = 127.0.0.1\nport = {}\nfingerprint = {}\ncredential = {cred}\n",
                schema.0,
                push.addr.port(),
                pfp.trim()
            ),
        );
        insts.push(Some(start(&etc, &var, true)));
    }
    let ids: Vec<String> = insts
        .iter()
        .map(|i| i.as_ref().unwrap().id.clone().unwrap())
        .collect();

    // devices registered and their queues subscribed through all three instances (device n
    // through instance n % 3), queues spread over the relays; devices set up concurrently
    let mut smps = Vec::new();
    for r in &relays {
        smps.push(r.client().await);
    }
    let servers: Vec<_> = relays.iter().map(|r| r.server.clone()).collect();
    let setup_t = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..devices_n {
        let inst = insts[n as usize % 3].as_ref().unwrap();
        let (addr, fp) = (inst.addr, inst.fp);
        let (s, smps, servers) = (s.clone(), smps.clone(), servers.clone());
        tasks.push(tokio::spawn(async move {
            let (mut c, d) = register(addr, &fp, &s, n + 1).await;
            let mut qs = Vec::new();
            for k in 0..queues_n {
                let r = (n as usize + k) % 3;
                let q = Queue::new(&smps[r], &servers[r]).await;
                let (_, resp) = c.cmd(Some(&d.key), b"", &q.snew(&d.token_id)).await;
                assert!(matches!(resp, NtfResponse::SubId { .. }), "{resp:?}");
                qs.push((r, q));
            }
            (d, qs)
        }));
    }
    let mut devices = Vec::new();
    let mut queues: Vec<(usize, usize, Queue)> = Vec::new(); // (device, relay, queue)
    for t in tasks {
        let (d, qs) = t.await.unwrap();
        for (r, q) in qs {
            queues.push((devices.len(), r, q));
        }
        devices.push(d);
    }
    let by_notifier: HashMap<(usize, Vec<u8>), usize> = queues
        .iter()
        .enumerate()
        .map(|(i, (d, _, q))| ((*d, q.ntf.notifier_id.clone()), i))
        .collect();
    let total = queues.len() as i64;
    // every subscription ACTIVE (subscribed by its relay's lease holder), each instance
    // holding one relay
    let t0 = Instant::now();
    loop {
        let l = leases(&db, &schema.0).await;
        let owners: HashSet<&String> = l.values().filter(|(_, ok)| *ok).map(|(o, _)| o).collect();
        let active = active_subs(&db, &schema.0).await;
        if active == total && l.len() == 3 && owners.len() == 3 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60 + total as u64 / 100),
            "setup: {active}/{total} active, leases {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "setup: {total} subscriptions ACTIVE over 3 relays / 3 instances in {:?}",
        setup_t.elapsed()
    );

    // the stream: one message every 10 ms, round-robin over all queues; body = unix ms
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        let targets: Vec<(hush_client::SmpClient, Vec<u8>)> = queues
            .iter()
            .map(|(_, r, q)| (smps[*r].clone(), q.q.snd_id.clone()))
            .collect();
        tokio::spawn(async move {
            let mut sent = 0usize;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (smp, snd) = &targets[i % targets.len()];
                let body = unix_ms().to_string();
                smp.send(snd, None, true, body.as_bytes()).await.unwrap();
                sent += 1;
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    // SIGKILL the instance holding relay 0
    let l = leases(&db, &schema.0).await;
    let victim_id = l[&relays[0].server.to_text()].0.clone();
    let victim = ids.iter().position(|i| *i == victim_id).unwrap();
    let victim_relays: Vec<String> = l
        .iter()
        .filter(|(_, (o, _))| *o == victim_id)
        .map(|(r, _)| r.clone())
        .collect();
    let mut v = insts[victim].take().unwrap();
    let killed_at = unix_ms();
    v.child.0.kill().unwrap(); // SIGKILL
    v.child.0.wait().unwrap();
    drop(v);
    let kill = Instant::now();

    // its relays get another live owner
    let takeover = loop {
        let l = leases(&db, &schema.0).await;
        let moved = victim_relays
            .iter()
            .all(|r| l.get(r).is_some_and(|(o, ok)| *ok && *o != victim_id));
        if moved {
            break kill.elapsed();
        }
        assert!(
            kill.elapsed() < Duration::from_secs(30),
            "not taken over within 30 s: {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let taken_at = killed_at + takeover.as_millis() as u64;
    // notifications continue for a while after the takeover
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.await.unwrap();
    let stopped_at = unix_ms();

    // the device's re-check: GET every message of every queue; each must be named (msgId) by
    // some push item of its device's token
    let mut drained: Vec<Vec<(Vec<u8>, u64)>> = Vec::new();
    for (_, r, q) in &queues {
        let mut msgs = Vec::new();
        while let Some(raw) = smps[*r].get(&q.q.rcv_id, &q.q.rcv_key).await.unwrap() {
            let m = raw.decrypt(&q.q.rcv_dh_secret).unwrap();
            let hush_client::RcvMsgBody::Message { body, .. } = m.body else {
                panic!("quota marker: a queue filled up")
            };
            let at: u64 = std::str::from_utf8(&body).unwrap().parse().unwrap();
            msgs.push((m.msg_id.clone(), at));
            smps[*r]
                .ack(&q.q.rcv_id, &q.q.rcv_key, &m.msg_id)
                .await
                .unwrap();
        }
        drained.push(msgs);
    }
    // msgId → when its first push reached the sink (unix ms), per queue
    let mut pushed: HashMap<usize, HashMap<Vec<u8>, u64>> = HashMap::new();
    let mut job_ids: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut missing: Vec<(usize, u64)>;
    let mut total_msgs;
    loop {
        pushed.clear();
        job_ids.clear();
        for (di, d) in devices.iter().enumerate() {
            for p in s.sink.received_for(&d.token_hex) {
                if let PushContent::Messages(items) = d.decode(&p) {
                    *job_ids.entry(p.apns_id.clone()).or_default() += 1;
                    for it in items {
                        let Some(&qi) = by_notifier.get(&(di, it.queue.notifier_id.clone())) else {
                            continue;
                        };
                        let q = &queues[qi].2;
                        let meta = hush_client::decrypt_nmsg(
                            &q.ntf.rcv_ntf_dh_secret,
                            &it.nonce,
                            &it.enc_meta,
                        )
                        .unwrap();
                        let at = pushed
                            .entry(qi)
                            .or_default()
                            .entry(meta.msg_id.to_vec())
                            .or_insert(p.received_at_ms);
                        *at = (*at).min(p.received_at_ms);
                    }
                }
            }
        }
        missing = Vec::new();
        total_msgs = 0;
        for (qi, msgs) in drained.iter().enumerate() {
            let got = pushed.get(&qi);
            for (id, at) in msgs {
                total_msgs += 1;
                if !got.is_some_and(|g| g.contains_key(id)) {
                    missing.push((queues[qi].1, *at));
                }
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // notifications of the victim's relays sent during the outage: when they were pushed
    let victim_relay_idx: Vec<usize> = (0..3)
        .filter(|r| victim_relays.contains(&relays[*r].server.to_text()))
        .collect();
    let mut outage_msgs = 0;
    let mut recovered_at = killed_at;
    for (qi, msgs) in drained.iter().enumerate() {
        if !victim_relay_idx.contains(&queues[qi].1) {
            continue;
        }
        for (id, at) in msgs {
            if *at > killed_at && *at <= taken_at {
                outage_msgs += 1;
                if let Some(p) = pushed.get(&qi).and_then(|g| g.get(id)) {
                    recovered_at = recovered_at.max(*p);
                }
            }
        }
    }
    let dup = job_ids.values().filter(|n| **n > 1).count();
    eprintln!(
        "sent {sent} messages in {} ms; re-checked {total_msgs}; instance killed; its {} relay(s) \
         taken over after {takeover:?}; {outage_msgs} notifications of the outage on them, the \
         last pushed {} ms after the kill; {} message pushes, {dup} job ids delivered twice; \
         missing (relay, sent ms after kill): {:?}",
        stopped_at - (killed_at - 3000),
        victim_relays.len(),
        recovered_at - killed_at,
        job_ids.values().sum::<usize>(),
        missing
            .iter()
            .map(|(r, at)| (*r, *at as i64 - killed_at as i64))
            .collect::<Vec<_>>()
    );
    assert_eq!(total_msgs, sent, "every message sent is in its queue");
    assert!(
        outage_msgs > 0,
        "the stream reached the victim's relays during the outage"
    );
    // Only a notification the relay had already handed to the killed process's socket may be
    // lost (the kernel discards it with the process): at most a few, within 300 ms of the kill.
    let outside: Vec<_> = missing
        .iter()
        .filter(|(_, at)| *at + 300 < killed_at || *at > killed_at + 300)
        .collect();
    assert!(
        outside.is_empty(),
        "notifications lost outside the kill window: {outside:?}"
    );
    assert!(missing.len() <= 3, "{missing:?}");
    assert!(takeover < Duration::from_secs(30));

    drop(insts);
    for r in relays {
        r.stop().await;
    }
    push.stop().await;
}
