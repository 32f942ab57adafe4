//! The SQLite file: schema, migration, load, and the writer thread (the common group-commit
//! writer, [`hush_server_common::group_commit`], fed from the store's own append-only list).

use super::*;
use hush_server_common::group_commit::{self, Backend, Committer, Next, Ran, Savepoints, Source};
use std::path::Path;
use std::time::{Duration, Instant};

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
    // Another connection holding the file (a backup, an operator's sqlite3 shell) makes the
    // writer wait for it, not fail the batch at once.
    conn.busy_timeout(Duration::from_secs(5))?;
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

/// Runs one statement through the connection's prepared-statement cache (the writer applies
/// the same few statements for every change; parsing them each time was most of its CPU).
fn exec(
    tx: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, rusqlite::Error> {
    tx.prepare_cached(sql)?.execute(params)
}

fn apply(tx: &rusqlite::Connection, op: &Op) -> Result<(), rusqlite::Error> {
    match op {
        Op::PutToken(t) => {
            let (prov, tok) = t.device.to_row();
            exec(
                tx,
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
            exec(tx, "DELETE FROM tokens WHERE token_id = ?1", [id])?;
            exec(tx, "DELETE FROM subscriptions WHERE token_id = ?1", [id])?;
            exec(
                tx,
                "DELETE FROM last_notifications WHERE token_id = ?1",
                [id],
            )?;
        }
        Op::PutSub(s) => {
            let server = s.queue.server.to_text();
            exec(
                tx,
                "INSERT OR IGNORE INTO smp_servers (server) VALUES (?1)",
                [&server],
            )?;
            exec(
                tx,
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
            exec(tx, "DELETE FROM subscriptions WHERE sub_id = ?1", [id])?;
        }
        Op::PutLastNtfs(token_id, list) => {
            exec(
                tx,
                "DELETE FROM last_notifications WHERE token_id = ?1",
                [token_id],
            )?;
            for (pos, n) in list.iter().enumerate() {
                exec(
                    tx,
                    "INSERT INTO last_notifications (token_id, pos, sub_id, item) VALUES (?1,?2,?3,?4)",
                    rusqlite::params![token_id, pos as i64, n.sub_id, n.data.to_text()],
                )?;
            }
        }
    }
    Ok(())
}

/// For each op of `batch`: true when it is a `PutLastNtfs` followed later in the batch by another
/// `PutLastNtfs` of the same token. Such a write is replaced entirely by the later one (both
/// delete all of the token's rows and insert the full list; no other op writes those rows but
/// `DelToken`, which the later write follows), so skipping it leaves the same committed state.
pub(super) fn superseded_last_ntfs<'a>(
    batch: impl DoubleEndedIterator<Item = &'a Op> + ExactSizeIterator,
) -> Vec<bool> {
    let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    let mut out = vec![false; batch.len()];
    for (i, op) in batch.enumerate().rev() {
        if let Op::PutLastNtfs(token_id, _) = op {
            out[i] = !seen.insert(token_id.as_slice());
        }
    }
    out
}

/// One change for the writer.
pub(super) struct Job {
    op: Op,
    /// Replaced by a later change of the same batch (see [`superseded_last_ntfs`]).
    skip: bool,
}

/// The store's side of the group-commit writer. The changes of a batch run in one
/// `BEGIN IMMEDIATE … COMMIT` transaction without savepoints: a change that fails fails the
/// transaction (logged; nobody waits for a single change, [`Store::sync`] waits for the count).
struct NtfWriter {
    conn: rusqlite::Connection,
    w: Arc<WriteQueue>,
}

impl Backend for NtfWriter {
    type Job = Job;

    fn exec(&mut self, sql: &'static str) -> Result<(), String> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn savepoints(&self) -> Savepoints {
        Savepoints::Never
    }

    /// Waits while another connection holds the write lock (each attempt waits the busy
    /// timeout), so that a locked file delays the changes instead of losing them; gives up only
    /// once the store is closing.
    fn begin(&mut self) -> Result<(), String> {
        loop {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => return Ok(()),
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy && !lock(&self.w.q).closed =>
                {
                    tracing::warn!("store file locked by another connection: writer waiting");
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// A token's last-notification list is stored whole by each `PutLastNtfs`: only the
    /// batch's last one per token is written (same file content after the commit; a burst of
    /// notifications for one device is one write instead of one per notification).
    fn prepare(&mut self, batch: &mut [Job]) {
        let superseded = superseded_last_ntfs(batch.iter().map(|j| &j.op));
        for (j, s) in batch.iter_mut().zip(superseded) {
            j.skip = s;
        }
    }

    fn run(&mut self, job: &mut Job) -> Ran {
        let ok = job.skip
            || match apply(&self.conn, &job.op) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "store write failed");
                    false
                }
            };
        Ran {
            ok,
            wait_commit: true,
        }
    }

    fn fail(&mut self, _job: Job, _error: &str) {
        // Counted as done like a change of a failed commit (logged there or at BEGIN).
        self.w.committed.send_modify(|(done, _)| *done += 1);
    }

    fn after_commit(&mut self, result: &Result<(), String>, jobs: usize) {
        if let Err(e) = result {
            tracing::error!(error = %e, "store commit failed");
        }
        self.w
            .committed
            .send_modify(|(done, _)| *done += jobs as u64);
    }

    fn finish(&mut self, _job: Job, _commit: &Result<(), String>) {}
}

/// The writer's jobs: the store's list of changes (appended under the state lock, never
/// waiting; the back-pressure is [`Store::throttle`], an async wait on the backlog).
struct ChangeList(Arc<WriteQueue>);

impl Source<Job> for ChangeList {
    fn next(&mut self, batch: &mut Vec<Job>, max: usize, wait: Option<Duration>) -> Next {
        let w = &self.0;
        let deadline = wait.map(|d| Instant::now() + d);
        let mut q = lock(&w.q);
        while q.ops.is_empty() && !q.closed {
            q = match deadline {
                None => w.wake.wait(q).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Next::Timeout;
                    }
                    match w.wake.wait_timeout(q, left) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    }
                }
            };
        }
        if q.ops.is_empty() {
            return Next::Closed;
        }
        let n = q.ops.len().min(max.saturating_sub(batch.len()).max(1));
        batch.extend(q.ops.drain(..n).map(|op| Job { op, skip: false }));
        Next::Jobs
    }
}

/// The writer thread's body: batches of up to [`MAX_BATCH`] changes until the store closes and
/// every queued change is committed.
pub(super) fn writer_loop(conn: rusqlite::Connection, w: Arc<WriteQueue>) {
    let mut c = Committer::new(
        NtfWriter { conn, w: w.clone() },
        group_commit::Options {
            max_batch: MAX_BATCH,
            commit_delay: Duration::ZERO,
            busy_commit_delay: Duration::ZERO,
        },
    );
    group_commit::run(&mut c, &mut ChangeList(w.clone()));
    w.committed.send_modify(|(_, alive)| *alive = false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_list_write_of_a_token_in_a_batch_runs() {
        let put = |t: u8| Op::PutLastNtfs(vec![t; 24], Vec::new());
        let batch = [
            put(1),
            put(2),
            Op::DelToken(vec![1; 24]),
            put(1),
            Op::DelSub(vec![9; 24]),
            put(2),
            put(3),
            Op::DelToken(vec![3; 24]),
        ];
        assert_eq!(
            superseded_last_ntfs(batch.iter()),
            // token 1: the first write is replaced by the one after DelToken; token 2: the
            // first by the second; token 3's only write stays (DelToken then deletes it)
            vec![true, true, false, false, false, false, false, false]
        );
        assert!(superseded_last_ntfs([].iter()).is_empty());
    }

    /// Many list writes of one token in one batch: the file holds the newest list after a
    /// reopen (the skipped writes changed nothing).
    #[test]
    fn coalesced_list_writes_leave_the_newest_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ntf.db");
        let conn = open_db(&path).unwrap();
        let w = Arc::new(WriteQueue {
            q: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            wake_async: tokio::sync::Notify::new(),
            committed: watch::channel((0, true)).0,
        });
        let sub = |i: u8| vec![i; 24];
        let ntf = |i: u8| LastNtf {
            sub_id: sub(i),
            data: PnMessageData {
                queue: SmpQueueNtf {
                    server: ProtocolServer::parse(
                        "smp://LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=@localhost:5001",
                    )
                    .unwrap(),
                    notifier_id: vec![i; 24],
                },
                ntf_ts: i64::from(i),
                nonce: [i; 24],
                enc_meta: vec![i; 8],
            },
        };
        {
            let mut q = lock(&w.q);
            for n in 1..=20u8 {
                let first = n.saturating_sub(5).max(1);
                q.ops
                    .push(Op::PutLastNtfs(vec![7; 24], (first..=n).map(ntf).collect()));
            }
            q.closed = true;
        }
        writer_loop(conn, w.clone());
        let conn = open_db(&path).unwrap();
        let rows: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT pos, sub_id FROM last_notifications ORDER BY pos")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            (15..=20u8)
                .enumerate()
                .map(|(p, i)| (p as i64, sub(i)))
                .collect::<Vec<_>>()
        );
    }
}
