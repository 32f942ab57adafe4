//! The SQLite file: schema, migration, load, and the writer thread.

use super::*;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
  token_id BLOB PRIMARY KEY,
  provider TEXT NOT NULL,
  device_token BLOB NOT NULL,
  verify_key BLOB NOT NULL,
  client_dh_key BLOB NOT NULL,
  server_dh_key BLOB NOT NULL,
  dh_secret BLOB NOT NULL,
  status TEXT NOT NULL,
  reg_code BLOB NOT NULL,
  cron_interval INTEGER NOT NULL,
  cron_sent_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  was_active INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS smp_servers (
  server TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS subscriptions (
  sub_id BLOB PRIMARY KEY,
  token_id BLOB NOT NULL,
  server TEXT NOT NULL REFERENCES smp_servers(server),
  notifier_id BLOB NOT NULL,
  notifier_key BLOB NOT NULL,
  status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_token ON subscriptions(token_id);
CREATE TABLE IF NOT EXISTS last_notifications (
  token_id BLOB NOT NULL,
  pos INTEGER NOT NULL,
  sub_id BLOB NOT NULL,
  item TEXT NOT NULL,
  PRIMARY KEY (token_id, pos)
);
";

pub(super) fn open_db(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Files written before `was_active` existed: add the column; a token that is ACTIVE or has
/// subscriptions (which only verified tokens could create) counts as once verified.
fn migrate(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let mut q = conn.prepare("SELECT name FROM pragma_table_info('tokens')")?;
    let cols: Vec<String> = q
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if !cols.iter().any(|c| c == "was_active") {
        conn.execute_batch(&format!(
            "ALTER TABLE tokens ADD COLUMN was_active INTEGER NOT NULL DEFAULT 0;
             UPDATE tokens SET was_active = 1 WHERE status = '{}'
               OR token_id IN (SELECT token_id FROM subscriptions);",
            TokenStatus::Active.to_text()
        ))?;
    }
    Ok(())
}

pub(super) fn load(conn: &rusqlite::Connection) -> Result<State, StoreError> {
    let mut st = State::new();
    let mut bad = 0usize;
    {
        let mut q = conn.prepare(
            "SELECT token_id, provider, device_token, verify_key, client_dh_key, server_dh_key,
                    dh_secret, status, reg_code, cron_interval, cron_sent_at, created_at, was_active
             FROM tokens",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, Vec<u8>>(5)?,
                r.get::<_, Vec<u8>>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, Vec<u8>>(8)?,
                r.get::<_, i64>(9)?,
                r.get::<_, i64>(10)?,
                r.get::<_, i64>(11)?,
                r.get::<_, bool>(12)?,
            ))
        })?;
        for row in rows {
            let (id, prov, tok, vk, cdh, sdh, dh, status, code, cron, cron_at, created, was) = row?;
            let rec = (|| {
                Some(TokenRec {
                    id,
                    device: Device::from_row(&prov, tok)?,
                    verify_key: vk,
                    client_dh_key: cdh,
                    server_dh_key: Zeroizing::new(sdh.try_into().ok()?),
                    dh_secret: Zeroizing::new(dh.try_into().ok()?),
                    status: TokenStatus::parse_text(&status).ok()?,
                    reg_code: code,
                    cron_interval: u16::try_from(cron).ok()?,
                    cron_sent_at: cron_at,
                    created_at: created,
                    was_active: was,
                })
            })();
            match rec {
                Some(t) => {
                    st.put_token(t);
                }
                None => bad += 1,
            }
        }
    }
    {
        let mut q = conn.prepare(
            "SELECT sub_id, token_id, server, notifier_id, notifier_key, status FROM subscriptions",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        for row in rows {
            let (id, token_id, server, nid, key, status) = row?;
            let rec = (|| {
                Some(SubRec {
                    id,
                    token_id,
                    queue: SmpQueueNtf {
                        server: ProtocolServer::parse(&server).ok()?,
                        notifier_id: nid,
                    },
                    notifier_key: Zeroizing::new(key),
                    status: SubStatus::parse_text(&status).ok()?,
                })
            })();
            match rec {
                Some(s) if st.tokens.contains_key(&s.token_id) => {
                    st.index_sub(&s);
                    st.subs.insert(s.id.clone(), s);
                }
                _ => bad += 1,
            }
        }
    }
    {
        let mut q = conn.prepare(
            "SELECT token_id, sub_id, item FROM last_notifications ORDER BY token_id, pos",
        )?;
        let rows = q.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (token_id, sub_id, item) = row?;
            match hush_proto::ntf::parse_pn_messages(&item)
                .ok()
                .and_then(|mut v| v.pop())
            {
                Some(data) if st.tokens.contains_key(&token_id) => {
                    st.last_ntfs
                        .entry(token_id)
                        .or_default()
                        .push_back(LastNtf { sub_id, data });
                }
                _ => bad += 1,
            }
        }
    }
    if bad > 0 {
        tracing::warn!(rows = bad, "skipped store rows that do not decode");
    }
    Ok(st)
}

fn apply(tx: &rusqlite::Transaction<'_>, op: &Op) -> Result<(), rusqlite::Error> {
    match op {
        Op::PutToken(t) => {
            let (prov, tok) = t.device.to_row();
            tx.execute(
                "INSERT OR REPLACE INTO tokens (token_id, provider, device_token, verify_key,
                   client_dh_key, server_dh_key, dh_secret, status, reg_code, cron_interval,
                   cron_sent_at, created_at, was_active)
                   VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
                rusqlite::params![
                    t.id,
                    prov,
                    tok,
                    t.verify_key,
                    t.client_dh_key,
                    t.server_dh_key.as_slice(),
                    t.dh_secret.as_slice(),
                    t.status.to_text(),
                    t.reg_code,
                    i64::from(t.cron_interval),
                    t.cron_sent_at,
                    t.created_at,
                    t.was_active
                ],
            )?;
        }
        Op::DelToken(id) => {
            tx.execute("DELETE FROM tokens WHERE token_id = ?1", [id])?;
            tx.execute("DELETE FROM subscriptions WHERE token_id = ?1", [id])?;
            tx.execute("DELETE FROM last_notifications WHERE token_id = ?1", [id])?;
        }
        Op::PutSub(s) => {
            let server = s.queue.server.to_text();
            tx.execute(
                "INSERT OR IGNORE INTO smp_servers (server) VALUES (?1)",
                [&server],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO subscriptions (sub_id, token_id, server, notifier_id,
                   notifier_key, status) VALUES (?1,?2,?3,?4,?5,?6)",
                rusqlite::params![
                    s.id,
                    s.token_id,
                    server,
                    s.queue.notifier_id,
                    s.notifier_key.as_slice(),
                    s.status.to_text()
                ],
            )?;
        }
        Op::DelSub(id) => {
            tx.execute("DELETE FROM subscriptions WHERE sub_id = ?1", [id])?;
        }
        Op::PutLastNtfs(token_id, list) => {
            tx.execute(
                "DELETE FROM last_notifications WHERE token_id = ?1",
                [token_id],
            )?;
            for (pos, n) in list.iter().enumerate() {
                tx.execute(
                    "INSERT INTO last_notifications (token_id, pos, sub_id, item) VALUES (?1,?2,?3,?4)",
                    rusqlite::params![token_id, pos as i64, n.sub_id, n.data.to_text()],
                )?;
            }
        }
    }
    Ok(())
}

pub(super) fn writer_loop(mut conn: rusqlite::Connection, w: &WriteQueue) {
    loop {
        let batch: Vec<Op> = {
            let mut q = lock(&w.q);
            while q.ops.is_empty() && !q.closed {
                q = w.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if q.ops.is_empty() {
                break;
            }
            if q.ops.len() <= MAX_BATCH {
                std::mem::take(&mut q.ops)
            } else {
                q.ops.drain(..MAX_BATCH).collect()
            }
        };
        let result = (|| -> Result<(), rusqlite::Error> {
            let tx = conn.transaction()?;
            for op in &batch {
                apply(&tx, op)?;
            }
            tx.commit()
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, "store commit failed");
        }
        let n = batch.len() as u64;
        w.committed.send_modify(|(done, _)| *done += n);
    }
    w.committed.send_modify(|(_, alive)| *alive = false);
}
