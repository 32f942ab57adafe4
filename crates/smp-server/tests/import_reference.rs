//! `smp-server import`: a store log and message stores written by hand in the reference's
//! formats (tests/fixtures/reference, see its README.md) are imported into a real SQLite store,
//! then a real relay serves them and clients use the imported queues over SMP.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use hush_crypto::{DhSecret, Ed25519Secret};
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, Command};
use hush_store::{
    EntityId, LinkData, Message, QueueMode, QueueStatus, QueueStore, ServiceParty, SqliteOptions,
    SqliteStore,
};
use sha2::{Digest, Sha256};
use smp_server::import::{
    ImportError, ImportOptions, ImportReport, LogError, Phase, Progress, import_reference,
    import_reference_with,
};

const QUOTA: usize = 4;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(p)
}

/// The fixture's ids and secrets (`make_fixture.py`: the first bytes of sha256("<tag><n>")).
fn h(tag: &str, n: u32, size: usize) -> Vec<u8> {
    Sha256::digest(format!("{tag}{n}").as_bytes())[..size].to_vec()
}

fn id(tag: &str, n: u32) -> EntityId {
    h(tag, n, 24).try_into().unwrap()
}

fn rdh(n: u32) -> DhSecret {
    DhSecret::from_bytes(h("rdh", n, 32).try_into().unwrap())
}

/// The Ed25519 key with seed `[n; 32]` (the fixture's key number `n`).
fn key(n: u8) -> AuthKey {
    AuthKey::Ed25519(Ed25519Secret::from_seed(&[n; 32]))
}

fn opts() -> ImportOptions {
    ImportOptions {
        quota: QUOTA,
        ..ImportOptions::default()
    }
}

fn open_store(path: &Path) -> SqliteStore {
    SqliteStore::open(
        path,
        SqliteOptions {
            quota: QUOTA,
            ..SqliteOptions::default()
        },
    )
    .unwrap()
}

/// Decrypts a `MSG` of a queue whose rcvDhSecret is `secret`: (msg id, ts, notification, body),
/// body `None` for the quota marker.
fn open_msg(secret: &DhSecret, m: &BrokerMsg) -> (Vec<u8>, i64, bool, Option<Vec<u8>>) {
    let BrokerMsg::Msg { msg_id, body } = m else {
        panic!("expected MSG, got {m:?}");
    };
    let plain = hush_crypto::decrypt_rcv_msg_body(secret, msg_id.as_bytes(), body).unwrap();
    let id = msg_id.as_bytes().to_vec();
    if let Some(rest) = plain.strip_prefix(b"QUOTA ") {
        let ts = i64::from_be_bytes(rest[..8].try_into().unwrap());
        return (id, ts, false, None);
    }
    let ts = i64::from_be_bytes(plain[..8].try_into().unwrap());
    assert_eq!(plain[9], b' ');
    (id, ts, plain[8] == b'T', Some(plain[10..].to_vec()))
}

/// `SUB` and the first message (delivered with the response or right after `OK`).
async fn sub_first(c: &mut TestClient, k: &AuthKey, rid: &[u8]) -> BrokerMsg {
    let corr = random_corr();
    c.send(Some(k), &corr, rid, &Command::Sub).await;
    match c.response_to(&corr).await {
        BrokerMsg::Sok(_) => c.event().await.1,
        m => m,
    }
}

fn expected_report(report: &ImportReport) {
    assert_eq!(report.log_lines, 29, "{report:?}");
    assert_eq!(report.queues, 9, "10 created, 1 deleted: {report:?}");
    assert_eq!(report.deleted_queues, 1);
    assert_eq!(report.secured, 5);
    assert_eq!(report.with_notifier, 2);
    assert_eq!(report.suspended, 2);
    assert_eq!(report.blocked, 1);
    assert_eq!((report.services, report.service_associations), (2, 2));
    assert_eq!(
        report.service_records_skipped, 1,
        "queue 10's rsrv= names a service not in the log"
    );
    assert_eq!(report.records_skipped, 1, "SUSPEND of an unknown queue");
    assert_eq!(report.truncated_lines, 1);
    assert_eq!(report.messages, 8, "1 + 3 + 4");
    assert_eq!(report.quota_markers, 1);
    assert_eq!(report.quota_markers_dropped, 0);
    assert_eq!(report.messages_over_quota, 0);
    assert_eq!(
        report.messages_without_queue, 1,
        "the deleted queue's message"
    );
    assert_eq!(report.existing_skipped, 0);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.ends_with("smp-server-store.log:29: incomplete last line skipped")),
        "{:?}",
        report.warnings
    );
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("smp-server-store.log:28: record for a queue that does not exist")),
        "{:?}",
        report.warnings
    );
}

#[tokio::test]
async fn journal_store_imports_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let mut config = test_config(&paths);
    config.limits.queue_quota = QUOTA;
    // the fixture's messages are from December 2025: keep them (the relay expires imported
    // messages by their original timestamps, as the reference does when it restores them)
    config.store.message_expiration = std::time::Duration::from_secs(3650 * 86400);
    let db = config.store.path.clone();
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();

    let store = open_store(&db);
    let mut events: Vec<Progress> = Vec::new();
    let report = import_reference_with(
        &fixture("smp-server-store.log"),
        Some(&fixture("messages")),
        &store,
        opts(),
        |p| events.push(p),
    )
    .await
    .unwrap();
    expected_report(&report);
    let q_last = events.iter().rfind(|p| p.phase == Phase::Queues).unwrap();
    assert_eq!((q_last.done, q_last.total), (9, 9));
    let m_last = events.last().unwrap();
    assert_eq!(
        (m_last.phase, m_last.done, m_last.total, m_last.messages),
        (Phase::Messages, 3, 3, 8)
    );

    // the records' final state
    let q1 = store.get_by_recipient(id("rid", 1)).await.unwrap().unwrap();
    assert_eq!(q1.sender_id, id("sid", 1));
    assert_eq!(q1.sender_key, Some(key(2).public_der().as_bytes().to_vec()));
    assert_eq!(q1.mode, Some(QueueMode::Messaging));
    assert_eq!(q1.updated_at, Some(1764979200));
    assert_eq!(q1.rcv_dh_secret.as_slice(), rdh(1).as_bytes());
    let n1 = q1.notifier.unwrap();
    assert_eq!(n1.notifier_id, id("nid", 1));
    assert_eq!(n1.rcv_ntf_dh_secret.to_vec(), h("ndh", 1, 32));
    let q2 = store.get_by_recipient(id("rid", 2)).await.unwrap().unwrap();
    assert_eq!(
        q2.recipient_keys,
        vec![
            key(5).public_der().as_bytes().to_vec(),
            key(6).public_der().as_bytes().to_vec()
        ]
    );
    assert_eq!(q2.mode, Some(QueueMode::Messaging), "sndSecure=T");
    assert_eq!(q2.sender_key, None, "the truncated SECURE was not applied");
    let q3 = store.get_by_recipient(id("rid", 3)).await.unwrap().unwrap();
    assert_eq!(q3.mode, Some(QueueMode::Contact));
    let l3 = q3.link.unwrap();
    assert_eq!(l3.link_id, id("lnk", 3));
    assert_eq!(
        l3.data,
        LinkData {
            fixed: b"fixed-3".to_vec(),
            user: b"user-3".to_vec()
        }
    );
    assert_eq!(
        store
            .get_by_link(id("lnk", 3))
            .await
            .unwrap()
            .unwrap()
            .recipient_id,
        id("rid", 3)
    );
    assert!(
        store.get_by_link(id("lnk", 4)).await.unwrap().is_none(),
        "LDELETE"
    );
    let q6 = store.get_by_recipient(id("rid", 6)).await.unwrap().unwrap();
    let QueueStatus::Blocked(b6) = q6.status else {
        panic!("{:?}", q6.status)
    };
    assert_eq!(b6.notice.unwrap().ttl, Some(86400));
    let q7 = store.get_by_recipient(id("rid", 7)).await.unwrap().unwrap();
    assert_eq!(q7.status, QueueStatus::Active, "UNBLOCK");
    assert!(
        store
            .get_by_recipient(id("rid", 8))
            .await
            .unwrap()
            .is_none(),
        "DELETE"
    );
    assert!(store.get_by_sender(id("sid", 8)).await.unwrap().is_none());
    let q9 = store.get_by_recipient(id("rid", 9)).await.unwrap().unwrap();
    assert!(q9.notifier.is_none(), "NDELETE");
    assert!(store.get_by_notifier(id("nid", 9)).await.unwrap().is_none());
    let q10 = store
        .get_by_recipient(id("rid", 10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q10.status, QueueStatus::Off);
    assert_eq!(q10.updated_at, Some(1764806400));
    assert_eq!(
        store
            .get_by_notifier(id("nid", 10))
            .await
            .unwrap()
            .unwrap()
            .recipient_id,
        id("rid", 10)
    );
    assert_eq!(store.message_count(id("rid", 3)).await.unwrap(), QUOTA + 1);
    // service associations: queue 1's recipient side (QUEUE_SERVICE), queue 10's notifier side
    // (nsrv=); queue 2's was removed, queue 9's went with its notifier (NDELETE)
    let svc = |rid, party| store.get_queue_service(id("rid", rid), party);
    assert_eq!(
        svc(1, ServiceParty::Recipient).await.unwrap(),
        Some(id("srv", 1))
    );
    assert_eq!(
        svc(10, ServiceParty::Notifier).await.unwrap(),
        Some(id("srv", 2))
    );
    assert_eq!(svc(10, ServiceParty::Recipient).await.unwrap(), None);
    assert_eq!(svc(2, ServiceParty::Recipient).await.unwrap(), None);
    assert_eq!(svc(9, ServiceParty::Notifier).await.unwrap(), None);
    assert_eq!(
        store
            .service_queue_count(id("srv", 2), ServiceParty::Notifier)
            .await
            .unwrap(),
        1
    );

    // a second import into the now non-empty store is refused
    let again = import_reference(&fixture("smp-server-store.log"), None, &store, |_| {}).await;
    assert!(
        matches!(again, Err(ImportError::TargetNotEmpty(9))),
        "{again:?}"
    );
    drop(store);

    // a real relay on the imported store
    let server = TestServer::start(config).await;
    let mut r = server.connect().await;

    // queue 1: the recipient key SUBscribes and gets the imported message
    let m = sub_first(&mut r, &key(1), &id("rid", 1)).await;
    let (mid, ts, ntf, body) = open_msg(&rdh(1), &m);
    assert_eq!(mid, h("msg1-", 1, 24));
    assert_eq!((ts, ntf), (1764979300, true));
    assert_eq!(body.unwrap(), b"hello from the reference");
    // the sender of the secured queue can SEND with its imported key
    let mut s = server.connect().await;
    assert_eq!(
        s.cmd(
            Some(&key(2)),
            &id("sid", 1),
            send_cmd(b"after the move", false)
        )
        .await,
        BrokerMsg::Ok
    );
    // ... and not with another key
    assert_err(
        &s.cmd(Some(&key(9)), &id("sid", 1), send_cmd(b"x", false))
            .await,
        ErrorType::Auth,
    );
    let m = r.cmd(Some(&key(1)), &id("rid", 1), ack(&mid)).await;
    let (_, _, _, body) = open_msg(&rdh(1), &m);
    assert_eq!(body.unwrap(), b"after the move");
    // the notifier id works with the imported notifier key
    let mut n = server.connect().await;
    assert!(matches!(
        n.cmd(Some(&key(3)), &id("nid", 1), Command::NSub).await,
        BrokerMsg::Sok(_) | BrokerMsg::Ok
    ));
    // a removed notifier (NDELETE) does not
    assert_err(
        &n.cmd(Some(&key(17)), &id("nid", 9), Command::NSub).await,
        ErrorType::Auth,
    );

    // queue 2: KEYS replaced the recipient key; messages from the read position on
    let mut r2 = server.connect().await;
    assert_err(
        &r2.cmd(Some(&key(4)), &id("rid", 2), Command::Sub).await,
        ErrorType::Auth,
    );
    let m = sub_first(&mut r2, &key(6), &id("rid", 2)).await;
    let (mid, ts, _, body) = open_msg(&rdh(2), &m);
    assert_eq!((ts, body.unwrap()), (1764979401, b"q2 message 1".to_vec()));
    let m = r2.cmd(Some(&key(6)), &id("rid", 2), ack(&mid)).await;
    assert_eq!(open_msg(&rdh(2), &m).3.unwrap(), b"q2 message 2");

    // queue 3: two journals (read and write), four messages then the quota marker
    let mut r3 = server.connect().await;
    let mut m = sub_first(&mut r3, &key(7), &id("rid", 3)).await;
    for i in 0..4 {
        let (mid, _, _, body) = open_msg(&rdh(3), &m);
        assert_eq!(body.unwrap(), format!("q3 message {i}").into_bytes());
        m = r3.cmd(Some(&key(7)), &id("rid", 3), ack(&mid)).await;
    }
    let (mid, ts, _, body) = open_msg(&rdh(3), &m);
    assert_eq!((mid, ts, body), (h("msg3-", 4, 24), 1764979504, None));

    // suspended, blocked, deleted queues
    assert_err(
        &s.cmd(Some(&key(10)), &id("sid", 5), send_cmd(b"x", false))
            .await,
        ErrorType::Auth,
    );
    let blocked = s
        .cmd(Some(&key(12)), &id("sid", 6), send_cmd(b"x", false))
        .await;
    let Some(ErrorType::Blocked(info)) = err(&blocked) else {
        panic!("expected BLOCKED, got {blocked:?}")
    };
    assert!(format!("{info:?}").contains("86400"), "{info:?}");
    assert_eq!(
        s.cmd(Some(&key(14)), &id("sid", 7), send_cmd(b"unblocked", false))
            .await,
        BrokerMsg::Ok
    );
    assert_err(
        &r.cmd(Some(&key(15)), &id("rid", 8), Command::Sub).await,
        ErrorType::Auth,
    );
    server.stop().await;
}

/// The older message store: `smp-server-messages.log` (`v3 <rid> <message>` lines).
#[tokio::test]
async fn exported_message_file_imports() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("s.db"));
    let report = import_reference_with(
        &fixture("smp-server-store.log"),
        Some(&fixture("smp-server-messages.log")),
        &store,
        opts(),
        |_| {},
    )
    .await
    .unwrap();
    expected_report(&report);
    let Some(Message::Message(head)) = store.peek_message(id("rid", 2)).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (head.msg_id.to_vec(), head.ts, head.flags, head.body),
        (h("msg2-", 1, 24), 1764979401, 0, b"q2 message 1".to_vec())
    );
    assert_eq!(store.message_count(id("rid", 3)).await.unwrap(), QUOTA + 1);
    assert!(matches!(
        store.peek_message(id("rid", 1)).await.unwrap(),
        Some(Message::Message(m)) if m.flags == 1
    ));
}

/// Writes `text` to a file in `dir` and imports it as a store log into a fresh memory store.
async fn import_text(dir: &Path, name: &str, text: &str) -> Result<ImportReport, ImportError> {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    let store = hush_store::MemoryStore::new(QUOTA);
    import_reference(&p, None, &store, |_| {}).await
}

fn parse_err(r: Result<ImportReport, ImportError>) -> (String, usize, String) {
    match r {
        Err(ImportError::Log(LogError::Parse { file, line, msg })) => (
            file.file_name().unwrap().to_str().unwrap().to_string(),
            line,
            msg,
        ),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn fixture_lines() -> Vec<String> {
    std::fs::read_to_string(fixture("smp-server-store.log"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn malformed_logs_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = fixture_lines();
    let (first, second) = (&lines[0], &lines[1]);

    // an unknown record
    let (file, line, msg) = parse_err(
        import_text(
            dir.path(),
            "a.log",
            &format!("{first}\nRENAME abc def\n{second}\n"),
        )
        .await,
    );
    assert_eq!((file.as_str(), line), ("a.log", 2));
    assert!(msg.contains("unknown record `RENAME`"), "{msg}");
    let e = import_text(dir.path(), "a.log", &format!("{first}\nRENAME abc def\n")).await;
    assert!(
        e.unwrap_err()
            .to_string()
            .ends_with("a.log:2: unknown record `RENAME`")
    );

    // a damaged line in the middle is an error even though the file goes on
    let cut = &second[..second.len() - 10];
    let (_, line, msg) =
        parse_err(import_text(dir.path(), "b.log", &format!("{first}\n{cut}\n{first}\n")).await);
    assert_eq!(line, 2, "{msg}");
    // the same damaged line last, without its newline: skipped with a warning
    let r = import_text(dir.path(), "b.log", &format!("{first}\n{cut}"))
        .await
        .unwrap();
    assert_eq!((r.queues, r.truncated_lines), (1, 1));
    // ... but with its newline it is an error (the write completed)
    let (_, line, _) =
        parse_err(import_text(dir.path(), "b.log", &format!("{first}\n{cut}\n")).await);
    assert_eq!(line, 2);

    // a key that is not a key, a short id, a bad status, a bad notice
    let bad_key = first.replacen("rk=MCow", "rk=AAAA", 1);
    let (_, line, msg) = parse_err(import_text(dir.path(), "c.log", &format!("{bad_key}\n")).await);
    assert_eq!(line, 1);
    assert!(msg.contains("recipient key"), "{msg}");
    let rid1 = hush_proto::encoding::base64url_encode(&id("rid", 1));
    let (_, line, msg) = parse_err(
        import_text(
            dir.path(),
            "d.log",
            &format!("{first}\n{first}\nSUSPEND {}\n", &rid1[..16]),
        )
        .await,
    );
    assert_eq!(line, 3);
    assert!(msg.contains("12 bytes, expected 24"), "{msg}");
    let (_, line, msg) =
        parse_err(import_text(dir.path(), "e.log", &format!("{first} status=gone\n")).await);
    assert_eq!(line, 1);
    assert!(msg.contains("bad status"), "{msg}");
    let (_, line, msg) = parse_err(
        import_text(
            dir.path(),
            "f.log",
            &format!("{first}\nBLOCK {rid1} reason=spam,notice={{\"ttl\":\"x\"}}\n"),
        )
        .await,
    );
    assert_eq!(line, 2);
    assert!(msg.contains("notice"), "{msg}");
    // a CREATE for an existing id: skipped with a warning naming the line (reference: logged)
    let r = import_text(dir.path(), "g.log", &format!("{first}\n{first}\n"))
        .await
        .unwrap();
    assert_eq!((r.queues, r.records_skipped), (1, 1));
    assert!(r.warnings[0].ends_with("g.log:2: CREATE: duplicate queue id, record skipped"));

    // messages: a bad v3 line names its line
    let store_log = dir.path().join("store.log");
    std::fs::write(&store_log, format!("{first}\n")).unwrap();
    let v3 = std::fs::read_to_string(fixture("smp-server-messages.log")).unwrap();
    let v3_first = v3.lines().next().unwrap();
    let msgs = dir.path().join("messages.log");
    std::fs::write(&msgs, format!("{v3_first}\nv3 {rid1} zzz\n{v3_first}\n")).unwrap();
    let store = hush_store::MemoryStore::new(QUOTA);
    let (file, line, _) =
        parse_err(import_reference(&store_log, Some(&msgs), &store, |_| {}).await);
    assert_eq!((file.as_str(), line), ("messages.log", 2));
    // a journal whose state does not match its journal
    let jdir = dir.path().join("journal").join("q");
    std::fs::create_dir_all(&jdir).unwrap();
    std::fs::write(
        jdir.join(format!("queue_state.{rid1}.log")),
        "write=j,1,1,10,10 read=j,0,1,0,10 canWrite=T size=1\nwrite=j,1,1,10,10 read=j,0,1,0,10 canWrite=T size=5\n",
    )
    .unwrap();
    let store = hush_store::MemoryStore::new(QUOTA);
    let (file, line, msg) = parse_err(
        import_reference(
            &store_log,
            Some(&dir.path().join("journal")),
            &store,
            |_| {},
        )
        .await,
    );
    assert_eq!((file, line), (format!("queue_state.{rid1}.log"), 2));
    assert_eq!(msg, "inconsistent queue state");
    // a journal shorter than its state says
    std::fs::write(
        jdir.join(format!("queue_state.{rid1}.log")),
        "write=j,1,1,10,10 read=j,0,1,0,10 canWrite=T size=1\n",
    )
    .unwrap();
    std::fs::write(jdir.join("messages.j.log"), "short\n").unwrap();
    let store = hush_store::MemoryStore::new(QUOTA);
    let e = import_reference(
        &store_log,
        Some(&dir.path().join("journal")),
        &store,
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("journal is 6 bytes"), "{e}");
}

#[tokio::test]
async fn force_adds_to_a_non_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let lines = fixture_lines();
    let p = dir.path().join("one.log");
    std::fs::write(&p, format!("{}\n", lines[0])).unwrap();
    let store = hush_store::MemoryStore::new(QUOTA);
    assert_eq!(
        import_reference(&p, None, &store, |_| {})
            .await
            .unwrap()
            .queues,
        1
    );
    let r = import_reference_with(
        &fixture("smp-server-store.log"),
        None,
        &store,
        ImportOptions {
            force: true,
            ..opts()
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!((r.queues, r.existing_skipped), (8, 1));
    assert_eq!(store.stats().await.unwrap().queues, 9);
}

/// CPU seconds (user + system) of this process so far, from /proc/self/stat.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Import throughput (not a correctness test): a reference-format store log of `N` queues
/// (CREATE + SECURE + NOTIFIER + TIME each) and an exported message file with two messages for
/// every fourth queue, imported into SQLite. Run:
/// `IMPORT_QUEUES=100000 cargo test --release -p smp-server --test import_reference -- --ignored --nocapture import_throughput`
#[tokio::test]
#[ignore]
async fn import_throughput() {
    use hush_proto::encoding::base64url_encode as b64;
    let n: u32 = std::env::var("IMPORT_QUEUES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let (rk, sk, nk) = (
        b64(key(1).public_der().as_bytes()),
        b64(key(2).public_der().as_bytes()),
        b64(key(3).public_der().as_bytes()),
    );
    let mut log = String::new();
    let mut msgs = String::new();
    let body = b64(&[7u8; 200]);
    for i in 0..n {
        let rid = b64(&h("rid", i, 24));
        log.push_str(&format!(
            "CREATE rid={rid} rk={rk} rdh={} sid={} sk= queue_mode=M\nSECURE {rid} {sk}\nNOTIFIER {rid} {} {nk} {}\nTIME {rid} 1764979200\n",
            b64(&h("rdh", i, 32)),
            b64(&h("sid", i, 24)),
            b64(&h("nid", i, 24)),
            b64(&h("ndh", i, 32)),
        ));
        if i % 4 == 0 {
            for j in 0..2 {
                msgs.push_str(&format!(
                    "v3 {rid} {} {} flags=T {body}\n",
                    b64(&h(&format!("m{j}-"), i, 24)),
                    1764979300 + j
                ));
            }
        }
    }
    let (log_path, msgs_path) = (dir.path().join("store.log"), dir.path().join("msgs.log"));
    std::fs::write(&log_path, &log).unwrap();
    std::fs::write(&msgs_path, &msgs).unwrap();
    let store = open_store(&dir.path().join("s.db"));
    let t0 = std::time::Instant::now();
    let c0 = cpu_secs();
    let mut queues_done = None;
    let mut o = opts();
    if let Some(c) = std::env::var("IMPORT_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        o.concurrency = c;
    }
    println!("concurrency {}", o.concurrency);
    let report = import_reference_with(&log_path, Some(&msgs_path), &store, o, |p| {
        if p.phase == Phase::Queues && p.done == p.total {
            queues_done = Some((t0.elapsed(), cpu_secs() - c0));
        }
    })
    .await
    .unwrap();
    let (wall, cpu) = (t0.elapsed(), cpu_secs() - c0);
    let (qwall, qcpu) = queues_done.unwrap();
    assert_eq!(report.queues, u64::from(n));
    println!(
        "import of {n} queues ({} log lines, {} MB) + {} messages ({} MB): {:.2} s wall, {:.2} s CPU; \
         queues phase (parse + replay + create) {:.2} s wall, {:.2} s CPU = {:.1} us CPU/queue; \
         messages phase {:.2} s wall, {:.2} s CPU = {:.1} us CPU/message",
        report.log_lines,
        log.len() / 1_000_000,
        report.messages,
        msgs.len() / 1_000_000,
        wall.as_secs_f64(),
        cpu,
        qwall.as_secs_f64(),
        qcpu,
        qcpu * 1e6 / f64::from(n),
        (wall - qwall).as_secs_f64(),
        cpu - qcpu,
        (cpu - qcpu) * 1e6 / report.messages as f64,
    );
}

/// The reference killed while compacting its log at start leaves `<log>.start` (the complete
/// state) and an incomplete `<log>`: the reference restores from `.start`, and so does import.
#[tokio::test]
async fn start_backup_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let lines = fixture_lines();
    let log = dir.path().join("smp-server-store.log");
    std::fs::write(&log, "CREATE rid=").unwrap();
    std::fs::write(
        dir.path().join("smp-server-store.log.start"),
        format!("{}\n{}\n", lines[0], lines[1]),
    )
    .unwrap();
    let store = hush_store::MemoryStore::new(QUOTA);
    let r = import_reference(&log, None, &store, |_| {}).await.unwrap();
    assert_eq!((r.queues, r.secured, r.truncated_lines), (1, 1, 0));
    assert!(
        r.warnings[0].contains("smp-server-store.log.start exists"),
        "{:?}",
        r.warnings
    );
}

/// `store_queues = database`: the import goes to the PostgreSQL store the ini names, and a relay
/// on it serves the imported queues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_into_the_configured_postgres_store() {
    let schema = Schema::new("import");
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    ini_for_postgres(&paths, &schema, 4);
    let mut config = test_config(&paths);
    assert!(config.store.database.is_some());
    config.limits.queue_quota = QUOTA;
    config.store.message_expiration = std::time::Duration::from_secs(3650 * 86400);
    let mut last = None;
    let report = smp_server::import::import_into_configured_store(
        &config,
        &fixture("smp-server-store.log"),
        Some(&fixture("messages")),
        false,
        |p| last = Some(p),
    )
    .await
    .unwrap();
    expected_report(&report);
    assert_eq!(last.map(|p| (p.done, p.messages)), Some((3, 8)));
    // a second import is refused (the store is not empty)
    let again = smp_server::import::import_into_configured_store(
        &config,
        &fixture("smp-server-store.log"),
        None,
        false,
        |_| {},
    )
    .await;
    assert!(
        matches!(again, Err(ImportError::TargetNotEmpty(9))),
        "{again:?}"
    );

    let server = TestServer::start(config).await;
    let mut r = server.connect().await;
    let m = sub_first(&mut r, &key(1), &id("rid", 1)).await;
    assert_eq!(
        open_msg(&rdh(1), &m).3.unwrap(),
        b"hello from the reference"
    );
    let mut r3 = server.connect().await;
    let mut m = sub_first(&mut r3, &key(7), &id("rid", 3)).await;
    for _ in 0..4 {
        let (mid, _, _, body) = open_msg(&rdh(3), &m);
        assert!(body.is_some());
        m = r3.cmd(Some(&key(7)), &id("rid", 3), ack(&mid)).await;
    }
    assert_eq!(open_msg(&rdh(3), &m).3, None, "the quota marker");
    let mut n = server.connect().await;
    assert!(matches!(
        n.cmd(Some(&key(3)), &id("nid", 1), Command::NSub).await,
        BrokerMsg::Sok(_) | BrokerMsg::Ok
    ));
    drop((r, r3, n));
    server.stop().await;
}
