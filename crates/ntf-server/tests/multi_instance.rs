//! Three real `ntf-server` processes on one PostgreSQL schema (127.0.0.1:5432, database `test`,
//! a schema of its own, dropped at the end; the test FAILS if PostgreSQL is down), three relays,
//! one push-server (over the network, shared: duplicates are suppressed by job id) in front of
//! apns-sink. Tokens and subscriptions are created through all three instances; each relay is
//! subscribed by the one instance holding its lease. Messages are sent to every queue without
//! pause; one instance is SIGKILLed in the middle. Asserted: its relays are taken over by the
//! others within 30 s, notifications continue, and the device's re-check (GET of every message
//! of every queue) finds every message sent during the outage and after it in some push.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hush_proto::ntf::{NtfCommand, NtfResponse, SubStatus};
use push_server::apns_sink::{self, SinkConfig, SinkHandle};
use push_server::jwt::Es256Key;

const PG_URL: &str = "postgresql://postgres@127.0.0.1:5432/test";
const DEVICES: u8 = 30;
const QUEUES_PER_DEVICE: usize = 10;
const LEASE_TTL_SECS: u64 = 5;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ntf-server"))
}

struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

async fn pg() -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must be running at 127.0.0.1:5432 (this test does not skip)");
    tokio::spawn(conn);
    c
}

struct Sink {
    sink: SinkHandle,
    key: Es256Key,
}

/// A push-server configuration directory whose APNs test endpoint is the sink; returns the
/// credential of client `ntf1` (shared by the three instances).
fn push_dir(dir: &Path, s: &Sink) -> String {
    let out = push_server::cli::init(dir, "127.0.0.1".parse().unwrap(), 0, "ntf1").unwrap();
    std::fs::write(dir.join("apns-key.p8"), s.key.to_pkcs8_pem().unwrap()).unwrap();
    std::fs::write(dir.join("apns-sink.crt"), &s.sink.cert_pem).unwrap();
    let ini = format!(
        "[STORE]\noutbox_file = push-outbox.sqlite\nsync = normal\n\
         [TRANSPORT]\nhost = 127.0.0.1\nport = 0\n\
         [CLIENTS]\nntf1 = {cred}\n\
         [APNS]\nenable = on\ntopic = chat.simplex.app\nteam_id = 5NN7GUYB6T\nkey_id = KEYID12345\n\
         key_file = apns-key.p8\nprod_url =\ndev_url =\ntest_url = https://127.0.0.1:{port}\n\
         test_ca_file = apns-sink.crt\n",
        cred = out.credential,
        port = s.sink.addr.port(),
    );
    std::fs::write(dir.join("push-server.ini"), ini).unwrap();
    out.credential
}

fn ntf_init(dir: &Path) -> (PathBuf, PathBuf) {
    let (etc, var) = (dir.join("etc"), dir.join("var"));
    let out = Command::new(bin())
        .arg("--config-dir")
        .arg(&etc)
        .arg("--data-dir")
        .arg(&var)
        .args(["init", "-y", "--port", "0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

struct Instance {
    child: Child,
    addr: std::net::SocketAddr,
    fp: [u8; 32],
    id: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(etc: &Path, var: &Path) -> Instance {
    let mut child = Command::new(bin())
        .arg("--config-dir")
        .arg(etc)
        .arg("--data-dir")
        .arg(var)
        .args(["start", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut fp, mut id) = (None, None, None);
    while addr.is_none() || fp.is_none() || id.is_none() {
        let line = lines.next().expect("ntf-server exited").unwrap();
        if let Some(a) = line.strip_prefix("Listening on ") {
            addr = Some(a.trim().parse().unwrap());
        }
        if let Some(f) = line.strip_prefix("Fingerprint: ") {
            fp = Some(
                hush_proto::encoding::base64url_decode(f.trim())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            );
        }
        if let Some(i) = line.strip_prefix("Instance: ") {
            id = Some(i.trim().to_string());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Instance {
        child,
        addr: addr.unwrap(),
        fp: fp.unwrap(),
        id: id.unwrap(),
    }
}

/// TNEW → verification push → TVFY through instance `inst`.
async fn register(inst: &Instance, s: &Sink, n: u8) -> (NtfClient, Device) {
    let mut c = NtfClient::connect(inst.addr, &inst.fp).await;
    let mut d = Device::new(n);
    let (_, resp) = tnew(&mut c, &d).await;
    let NtfResponse::TknId {
        token_id,
        server_dh_key,
    } = resp
    else {
        panic!("{resp:?}")
    };
    d.token_id = token_id;
    let srv = hush_crypto::X25519Public::from_spki_der(server_dh_key.as_bytes()).unwrap();
    d.dh_secret = Some(d.dh.dh(&srv));
    let deadline = Instant::now() + WAIT;
    let p = loop {
        if let Some(p) = s.sink.received_for(&d.token_hex).pop() {
            break p;
        }
        assert!(Instant::now() < deadline, "no verification push");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let PushContent::Verification(code) = d.decode(&p) else {
        panic!()
    };
    let (_, resp) = c
        .cmd(Some(&d.key), &d.token_id, &NtfCommand::Tvfy { code })
        .await;
    assert_eq!(resp, NtfResponse::Ok);
    (c, d)
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
    let db = pg().await;
    let schema = Schema(format!(
        "ntf_t_multi_{}_{:08x}",
        std::process::id(),
        u32::from_be_bytes(hush_crypto::random_nonce()[..4].try_into().unwrap())
    ));
    let dir = tempfile::tempdir().unwrap();

    // push side: sink + one push-server over the network
    let key = Es256Key::generate().unwrap();
    let mut scfg = SinkConfig::new("127.0.0.1:0".parse().unwrap(), key.public_pem().unwrap());
    scfg.topics = vec!["chat.simplex.app".into()];
    let s = Sink {
        sink: apns_sink::start(scfg).await.unwrap(),
        key,
    };
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
        relays.push(Relay::start(relay_config(&rdir)).await);
    }

    // three ntf-server processes on one schema
    let mut insts: Vec<Option<Instance>> = Vec::new();
    for i in 0..3 {
        let ndir = dir.path().join(format!("ntf{i}"));
        let (etc, var) = ntf_init(&ndir);
        set_ini(
            &etc,
            &format!(
                "db_connection = {PG_URL}\ndb_schema = {}\ndb_pool_size = 4\nlease_ttl = {LEASE_TTL_SECS}\n\
                 [PUSH]\nmode = remote\nhost = 127.0.0.1\nport = {}\nfingerprint = {}\ncredential = {cred}\n",
                schema.0,
                push.addr.port(),
                pfp.trim()
            ),
        );
        insts.push(Some(start(&etc, &var)));
    }
    let ids: Vec<String> = insts
        .iter()
        .map(|i| i.as_ref().unwrap().id.clone())
        .collect();

    // devices registered and queues subscribed round-robin over the instances
    let smps: Vec<_> = futures_join(relays.iter().map(|r| r.client())).await;
    let mut devices = Vec::new();
    let mut queues: Vec<(usize, usize, Queue)> = Vec::new(); // (device, relay, queue)
    for n in 0..DEVICES {
        let inst = insts[n as usize % 3].as_ref().unwrap();
        let (mut c, d) = register(inst, &s, n + 1).await;
        for k in 0..QUEUES_PER_DEVICE {
            let r = (n as usize + k) % 3;
            let q = Queue::new(&smps[r], &relays[r].server).await;
            let (_, resp) = c.cmd(Some(&d.key), b"", &q.snew(&d.token_id)).await;
            assert!(matches!(resp, NtfResponse::SubId { .. }), "{resp:?}");
            queues.push((devices.len(), r, q));
        }
        devices.push(d);
    }
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
            t0.elapsed() < Duration::from_secs(60),
            "setup: {active}/{total} active, leases {l:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // the stream: one message every 10 ms, round-robin over all queues; body = ms since start
    let start_at = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        let targets: Vec<(usize, hush_client::SmpClient, Vec<u8>)> = queues
            .iter()
            .map(|(_, r, q)| (*r, smps[*r].clone(), q.q.snd_id.clone()))
            .collect();
        tokio::spawn(async move {
            let mut sent = 0usize;
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (_, smp, snd) = &targets[i % targets.len()];
                let body = format!("{}", start_at.elapsed().as_millis());
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
    let killed_at = start_at.elapsed();
    v.child.kill().unwrap(); // SIGKILL
    v.child.wait().unwrap();
    drop(v);
    let kill = Instant::now();

    // its relays get another live owner, and their subscriptions become ACTIVE again
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
    eprintln!("relays of the killed instance taken over after {takeover:?}");
    // notifications continue for a while after the takeover
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.await.unwrap();
    let stopped_at = start_at.elapsed();

    // wait for the pushes to settle: every queue's messages appear in pushes, or time out
    tokio::time::sleep(Duration::from_secs(3)).await;

    // the device's re-check: GET every message of every queue; each must be named (msgId) by
    // some push item of its device's token
    let mut pushed: HashMap<(usize, Vec<u8>), HashSet<Vec<u8>>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut missing: Vec<(usize, u128)>;
    let mut total_msgs;
    let mut drained: Vec<Vec<(Vec<u8>, u128)>> = Vec::new();
    for (_, r, q) in &queues {
        let mut msgs = Vec::new();
        while let Some(raw) = smps[*r].get(&q.q.rcv_id, &q.q.rcv_key).await.unwrap() {
            let m = raw.decrypt(&q.q.rcv_dh_secret).unwrap();
            let hush_client::RcvMsgBody::Message { body, .. } = m.body else {
                panic!("quota marker: a queue filled up")
            };
            let at: u128 = std::str::from_utf8(&body).unwrap().parse().unwrap();
            msgs.push((m.msg_id.clone(), at));
            smps[*r]
                .ack(&q.q.rcv_id, &q.q.rcv_key, &m.msg_id)
                .await
                .unwrap();
        }
        drained.push(msgs);
    }
    loop {
        for (di, d) in devices.iter().enumerate() {
            for p in s.sink.received_for(&d.token_hex) {
                if let PushContent::Messages(items) = d.decode(&p) {
                    for it in items {
                        let Some((_, _, q)) = queues
                            .iter()
                            .find(|(dd, _, q)| *dd == di && q.queue_ntf() == it.queue)
                        else {
                            continue;
                        };
                        let meta = hush_client::decrypt_nmsg(
                            &q.ntf.rcv_ntf_dh_secret,
                            &it.nonce,
                            &it.enc_meta,
                        )
                        .unwrap();
                        pushed
                            .entry((di, q.ntf.notifier_id.clone()))
                            .or_default()
                            .insert(meta.msg_id.to_vec());
                    }
                }
            }
        }
        missing = Vec::new();
        total_msgs = 0;
        for ((di, r, q), msgs) in queues.iter().zip(&drained) {
            let got = pushed.get(&(*di, q.ntf.notifier_id.clone()));
            for (id, at) in msgs {
                total_msgs += 1;
                if !got.is_some_and(|g| g.contains(id)) {
                    missing.push((*r, *at));
                }
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let k = killed_at.as_millis();
    eprintln!(
        "sent {sent}, re-checked {total_msgs}, killed at {k} ms, stopped at {} ms, missing {:?}",
        stopped_at.as_millis(),
        missing
    );
    assert_eq!(total_msgs, sent, "every message sent is in its queue");
    // Only a notification the relay had already handed to the killed process's socket may be
    // lost (the kernel discards it with the process): at most a few, within 300 ms of the kill.
    let outside: Vec<_> = missing
        .iter()
        .filter(|(_, at)| *at + 300 < k || *at > k + 300)
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

/// Awaits the futures one after another (a handful of relay clients).
async fn futures_join<F: std::future::Future>(it: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in it {
        out.push(f.await);
    }
    out
}
