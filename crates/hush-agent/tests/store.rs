//! Client database: everything survives close/reopen of the real file; schema version and
//! migrations; corrupt or foreign files give clear errors, never panics.

use hush_agent::ratchet::{Ratchet, RatchetVersions, x3dh_inviter, x3dh_joiner};
use hush_agent::store::{
    ConnMode, ConnStatus, OutboxKind, RcvQueue, SCHEMA_VERSION, SndQueue, Store, StoreError,
};
use hush_client::{AuthAlgorithm, AuthKey, NotifierCreds};
use hush_crypto::{DhSecret, X448Secret, X25519Secret};
use hush_proto::address::{ProtocolServer, QueueMode};

fn server() -> ProtocolServer {
    ProtocolServer::parse("smp://AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=@127.0.0.1:5001")
        .unwrap()
}

fn ratchet() -> Ratchet {
    let (r1, r2, s1, s2) = (
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
    );
    let p = x3dh_joiner(&s1, &s2, &r1.public().unwrap(), &r2.public().unwrap()).unwrap();
    let _ = x3dh_inviter(&r1, &r2, &s1.public().unwrap(), &s2.public().unwrap()).unwrap();
    let mut r = Ratchet::init_joiner(
        RatchetVersions {
            current: 3,
            max_supported: 3,
        },
        &r2.public().unwrap(),
        X448Secret::generate().unwrap(),
        &p,
    )
    .unwrap();
    r.encrypt(b"advance", 64).unwrap();
    r
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let r = ratchet();
    let rcv_key = AuthKey::generate(AuthAlgorithm::Ed25519).unwrap();
    let snd_key = AuthKey::generate(AuthAlgorithm::Ed448).unwrap();
    let ntf_key = AuthKey::generate(AuthAlgorithm::X25519).unwrap();
    let e2e = X25519Secret::generate();
    let (r1, r2) = (
        X448Secret::generate().unwrap(),
        X448Secret::generate().unwrap(),
    );
    let (conn, sq_id) = {
        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.tx(|tx| {
            let conn = tx.create_connection(ConnMode::Invitation, ConnStatus::Joined, 7)?;
            tx.set_x3dh_keys(conn, &r1, &r2)?;
            tx.set_ratchet(conn, &r)?;
            tx.set_last_snd(conn, 41, b"snd-hash")?;
            tx.set_last_rcv(conn, 17, b"rcv-hash")?;
            tx.set_peer_info(conn, b"peer")?;
            tx.set_own_info(conn, b"own")?;
            tx.add_rcv_queue(&RcvQueue {
                conn_id: conn,
                server: server(),
                rcv_id: vec![1; 24],
                snd_id: vec![2; 24],
                rcv_key: rcv_key.clone(),
                rcv_dh_secret: DhSecret::from_bytes([3; 32]),
                e2e_priv: e2e.clone(),
                e2e_secret: None,
                queue_mode: Some(QueueMode::Messaging),
                smp_client_version: 4,
                notifier: None,
            })?;
            tx.set_rcv_notifier(
                &server(),
                &[1; 24],
                Some(&NotifierCreds {
                    notifier_id: vec![8; 24],
                    notifier_key: ntf_key.clone(),
                    rcv_ntf_dh_secret: DhSecret::from_bytes([7; 32]),
                }),
            )?;
            tx.set_rcv_e2e_secret(&server(), &[1; 24], &DhSecret::from_bytes([9; 32]))?;
            let sq_id = tx.add_snd_queue(&SndQueue {
                snd_queue_id: 0,
                conn_id: conn,
                server: server(),
                snd_id: vec![4; 24],
                snd_key: snd_key.clone(),
                e2e_priv: e2e.clone(),
                e2e_secret: DhSecret::from_bytes([5; 32]),
                secured: false,
                smp_client_version: 4,
            })?;
            tx.push_outbox(conn, sq_id, 42, OutboxKind::Message, b"body 42")?;
            tx.push_outbox(conn, sq_id, 43, OutboxKind::Message, b"body 43")?;
            tx.add_rcv_msg(
                conn,
                b"hash",
                18,
                &server(),
                &[1; 24],
                b"srv-id",
                Some(b"hi"),
                false,
            )?;
            Ok::<_, StoreError>((conn, sq_id))
        })
        .unwrap()
    };
    // a failed transaction leaves nothing behind
    {
        let mut s = Store::open(&path).unwrap();
        let r: Result<(), StoreError> = s.tx(|tx| {
            tx.set_last_snd(conn, 99, b"x")?;
            Err(StoreError::NotFound("rollback"))
        });
        assert!(r.is_err());
    }
    let mut s = Store::open(&path).unwrap();
    s.tx(|tx| {
        let c = tx.connection(conn)?;
        assert_eq!(c.mode, ConnMode::Invitation);
        assert_eq!(c.status, ConnStatus::Joined);
        assert_eq!(
            (c.last_snd_id, c.last_snd_hash.as_slice()),
            (41, &b"snd-hash"[..])
        );
        assert_eq!(
            (c.last_rcv_id, c.last_rcv_hash.as_slice()),
            (17, &b"rcv-hash"[..])
        );
        assert_eq!(c.peer_info.as_deref(), Some(&b"peer"[..]));
        assert_eq!(c.own_info.as_deref(), Some(&b"own"[..]));
        // set_ratchet clears the X3DH keys
        assert!(c.x3dh_keys.is_none());
        assert!(c.ratchet.unwrap() == r);
        let q = tx.rcv_queue(&server(), &[1; 24])?.unwrap();
        assert_eq!(q.snd_id, vec![2; 24]);
        assert_eq!(q.e2e_secret.unwrap().as_bytes(), &[9; 32]);
        assert_eq!(q.rcv_dh_secret.as_bytes(), &[3; 32]);
        let n = q.notifier.unwrap();
        assert_eq!(n.notifier_id, vec![8; 24]);
        assert_eq!(n.rcv_ntf_dh_secret.as_bytes(), &[7; 32]);
        assert_eq!(
            n.notifier_key.public_der().unwrap(),
            ntf_key.public_der().unwrap()
        );
        assert_eq!(*q.e2e_priv.to_bytes(), *e2e.to_bytes());
        assert_eq!(
            q.rcv_key.public_der().unwrap(),
            rcv_key.public_der().unwrap()
        );
        let sq = tx.snd_queue(sq_id)?;
        assert_eq!(
            sq.snd_key.public_der().unwrap(),
            snd_key.public_der().unwrap()
        );
        assert!(!sq.secured);
        tx.set_snd_secured(sq_id)?;
        let head = tx.outbox_head(sq_id)?.unwrap();
        assert_eq!((head.msg_id, head.body.as_slice()), (42, &b"body 42"[..]));
        tx.delete_outbox(head.outbox_id)?;
        assert_eq!(tx.outbox_head(sq_id)?.unwrap().msg_id, 43);
        let m = tx.rcv_msg_by_hash(conn, b"hash")?.unwrap();
        assert_eq!(
            (m.msg_id, m.body.as_deref(), m.acked),
            (18, Some(&b"hi"[..]), false)
        );
        tx.ack_rcv_msg(conn, 18)?;
        let m = tx.rcv_msg(conn, 18)?.unwrap();
        assert!(m.acked && m.body.is_none());
        Ok::<_, StoreError>(())
    })
    .unwrap();
    drop(s);
    let mut s = Store::open(&path).unwrap();
    s.tx(|tx| {
        assert!(tx.snd_queue(sq_id)?.secured);
        assert_eq!(tx.outbox_len()?, 1);
        tx.delete_connection(conn)?;
        assert!(tx.rcv_queue(&server(), &[1; 24])?.is_none());
        assert_eq!(tx.outbox_len()?, 0, "cascade");
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn garbage_file_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x5au8; 8192]).unwrap();
    match Store::open(&path) {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn damaged_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    {
        let mut s = Store::open(&path).unwrap();
        s.tx(|tx| {
            for _ in 0..200 {
                tx.create_connection(ConnMode::Invitation, ConnStatus::Created, 7)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    }
    // checkpoint the WAL into the main file, then damage the main file's pages
    {
        let c = rusqlite_open(&path);
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8192);
    for b in &mut bytes[4096..8192] {
        *b = 0xff;
    }
    std::fs::write(&path, bytes).unwrap();
    let _ = std::fs::remove_file(path.with_extension("db-wal"));
    match Store::open(&path) {
        Err(StoreError::Corrupt(_)) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn rusqlite_open(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn foreign_and_newer_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite_open(&foreign)
        .execute_batch("CREATE TABLE t (x INTEGER);")
        .unwrap();
    assert!(matches!(Store::open(&foreign), Err(StoreError::Corrupt(_))));

    let newer = dir.path().join("newer.db");
    drop(Store::open(&newer).unwrap());
    rusqlite_open(&newer)
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    match Store::open(&newer) {
        Err(StoreError::TooNew {
            found: 99,
            supported,
        }) => assert_eq!(supported, SCHEMA_VERSION),
        other => panic!("expected TooNew, got {other:?}"),
    }
}

#[test]
fn bad_stored_values_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let conn = {
        let mut s = Store::open(&path).unwrap();
        s.tx(|tx| tx.create_connection(ConnMode::Invitation, ConnStatus::Created, 7))
            .unwrap()
    };
    let c = rusqlite_open(&path);
    c.execute(
        "UPDATE connections SET ratchet = x'01020304', status = 'created' WHERE conn_id = ?1",
        [conn],
    )
    .unwrap();
    drop(c);
    let mut s = Store::open(&path).unwrap();
    let r = s.tx(|tx| tx.connection(conn));
    assert!(matches!(r, Err(StoreError::BadValue(_))), "{r:?}");
    let c = rusqlite_open(&path);
    c.execute(
        "UPDATE connections SET ratchet = NULL, status = 'weird' WHERE conn_id = ?1",
        [conn],
    )
    .unwrap();
    let r = s.tx(|tx| tx.connection(conn));
    assert!(matches!(r, Err(StoreError::BadValue(_))), "{r:?}");
}

/// A database at schema version 1 (before receipts) is migrated to the current version in
/// place, keeping its data.
#[test]
fn migrates_version_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let conn = {
        let mut s = Store::open(&path).unwrap();
        s.tx(|tx| {
            let c = tx.create_connection(ConnMode::Invitation, ConnStatus::Connected, 7)?;
            tx.set_last_snd(c, 5, b"h")?;
            Ok::<_, StoreError>(c)
        })
        .unwrap()
    };
    // turn it back into what version 1 created (undoing versions 3 and 2)
    rusqlite_open(&path)
        .execute_batch(
            "DROP TABLE ratchet_key_hashes; ALTER TABLE connections DROP COLUMN ratchet_sync;
             ALTER TABLE rcv_queues DROP COLUMN switch_status;
             ALTER TABLE rcv_queues DROP COLUMN replaces_rcv_id;
             ALTER TABLE rcv_queues DROP COLUMN sender_key;
             ALTER TABLE snd_queues DROP COLUMN switch_status;
             ALTER TABLE snd_queues DROP COLUMN replaces_id;
             ALTER TABLE snd_queues DROP COLUMN active;
             DROP TABLE snd_msgs; ALTER TABLE rcv_msgs DROP COLUMN msg_hash; PRAGMA user_version = 1;",
        )
        .unwrap();
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 3);
    s.tx(|tx| {
        assert_eq!(tx.connection(conn)?.last_snd_id, 5);
        tx.add_snd_msg(conn, 6, b"hash6")?;
        assert_eq!(tx.take_snd_msg(conn, 6)?.as_deref(), Some(&b"hash6"[..]));
        assert_eq!(tx.take_snd_msg(conn, 6)?, None);
        Ok::<_, StoreError>(())
    })
    .unwrap();
}

#[test]
fn unopenable_path_is_not_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let r = Store::open(dir.path().join("no/such/dir/agent.db"));
    assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
}

/// The client database (keys, ratchets) and its -wal/-shm are 0600 from creation; a file left
/// world-readable is tightened on open.
#[cfg(unix)]
#[test]
fn database_wal_and_shm_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    {
        let mut s = Store::open(&path).unwrap();
        s.tx(|tx| {
            tx.create_connection(ConnMode::Invitation, ConnStatus::Created, 7)?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
        for f in ["agent.db", "agent.db-wal", "agent.db-shm"] {
            assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Store::open(&path).unwrap());
    assert_eq!(mode(&path), 0o600);
}
