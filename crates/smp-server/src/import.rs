//! `smp-server import`: migrate a reference relay (simplexmq 6.5.x) to hush.
//!
//! Reads the reference's queue store log (`smp-server-store.log`, the text records of
//! `Simplex.Messaging.Server.StoreLog`) and, optionally, its message store — the journal
//! directory (`messages/…/queue_state.<rid>.log` + `messages.<journal id>.log`, from
//! `MsgStore/Journal.hs`) or the older exported file (`smp-server-messages.log`, `v3 <rid> <msg>`
//! lines, `Server.hs` `exportMessages`) — and writes the result into any [`QueueStore`].
//!
//! The store log is replayed in memory first, in order, with the reference's semantics
//! (`StoreLog/ReadWrite.hs` `readQueueStore`): later records update earlier queues, records
//! about unknown or deleted queues are skipped with a warning, deleted queues are not imported.
//! Only then are the surviving queues created in the target (their final state, one
//! `create_queue` each), followed by their messages in order (`append_message`: the target's
//! quota applies; notifications are not imported — the notifier gets no `NMSG` for them).
//!
//! Parse errors name the file and line. A last line without its newline that does not parse
//! (the reference crashed in the middle of writing it) is skipped with a warning, as the
//! reference does when it restores messages (the reading rules shared with `ntf-server import`
//! are in [`hush_server_common::storelog`]).
//!
//! Service certificates (`NEW_SERVICE`) and the queues' associations with them (`QUEUE_SERVICE`,
//! `rsrv=`, `nsrv=`) are imported after the queues, so that a notification server presenting its
//! service certificate finds its queues (`NSUBS`). Not imported (counted in the report): an
//! association with a service that is not in the log, and a quota marker that follows fewer than
//! `quota` messages (the target can only add a marker to a full queue).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use hush_proto::encoding::base64url_token;
use hush_proto::smp::PublicKeyDer;
use hush_proto::strtext::{StrCursor, lines};
pub use hush_server_common::storelog::LogError;
use hush_server_common::storelog::{self, LogReport};
use hush_store::{
    AppendOutcome, BlockInfo, BlockNotice, BlockReason, DEFAULT_QUOTA, DhSecret, EntityId, ID_LEN,
    LinkData, MsgId, NewMessage, NotifierCreds, QueueLink, QueueMode, QueueRecord, QueueStatus,
    QueueStore, ServiceParty, ServiceRecord, StoreError,
};

/// Why an import stopped. Nothing of a failed import should be used: import into a fresh store.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read, or a line of it is not a record of the reference's format
    /// (file and line named).
    #[error(transparent)]
    Log(#[from] LogError),
    /// The target already holds queues and `force` was not given.
    #[error(
        "the target store already holds {0} queues; import into an empty store (or pass --force to add to it)"
    )]
    TargetNotEmpty(u64),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The store named by the configuration could not be opened.
    #[error("{0}")]
    Open(String),
}

/// What is being imported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Creating queues: `done` of `total`.
    Queues,
    /// Importing messages: `done` queues (or message-file lines) of `total`.
    Messages,
}

/// Progress, reported after each queue (the caller decides how often to show it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
    /// Messages stored so far.
    pub messages: u64,
}

/// Options of [`import_reference_with`].
#[derive(Clone, Copy, Debug)]
pub struct ImportOptions {
    /// Import into a store that already has queues (queues whose ids are taken are skipped).
    pub force: bool,
    /// The target's per-queue quota (`[QUEUES] queue_quota`): a reference quota marker is kept
    /// only where the queue holds this many messages.
    pub quota: usize,
    /// Operations in flight at once (the SQLite store commits them in groups).
    pub concurrency: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            force: false,
            quota: DEFAULT_QUOTA,
            concurrency: 256,
        }
    }
}

/// What was imported. Warnings name file and line, never ids or keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Store-log lines read (records, including skipped ones).
    pub log_lines: u64,
    /// Queues created in the target.
    pub queues: u64,
    /// Queues created and later deleted in the log (not imported).
    pub deleted_queues: u64,
    /// Of the imported queues: secured (sender key set), with notifier, suspended, blocked.
    pub secured: u64,
    pub with_notifier: u64,
    pub suspended: u64,
    pub blocked: u64,
    /// Queues skipped because an id was already taken in the target (`force` only).
    pub existing_skipped: u64,
    /// Services (`NEW_SERVICE`: service certificates) and queue associations with them
    /// (`QUEUE_SERVICE`, `rsrv=`, `nsrv=`) imported.
    pub services: u64,
    pub service_associations: u64,
    /// Service records or associations not imported (an association with a service that is not
    /// in the log, or one the target refused); see `warnings`.
    pub service_records_skipped: u64,
    /// Messages stored.
    pub messages: u64,
    /// Quota markers stored / dropped (queue below the target's quota).
    pub quota_markers: u64,
    pub quota_markers_dropped: u64,
    /// Messages refused by the target's quota.
    pub messages_over_quota: u64,
    /// Messages of queues that are not in the store log (or deleted there).
    pub messages_without_queue: u64,
    /// Truncated last lines skipped.
    pub truncated_lines: u64,
    /// Records skipped with a warning (unknown queue, duplicate id, …); see `warnings`.
    pub records_skipped: u64,
    /// The first 100 warnings.
    pub warnings: Vec<String>,
}

hush_server_common::log_report!(ImportReport);

/// [`import_reference_with`] with the default options (refuses a non-empty target).
pub async fn import_reference(
    store_log: &Path,
    msg_store: Option<&Path>,
    target: &dyn QueueStore,
    progress: impl FnMut(Progress),
) -> Result<ImportReport, ImportError> {
    import_reference_with(
        store_log,
        msg_store,
        target,
        ImportOptions::default(),
        progress,
    )
    .await
}

/// Imports the reference relay's store log `store_log` and message store `msg_store` (a journal
/// directory or a `smp-server-messages.log` file) into `target`.
pub async fn import_reference_with(
    store_log: &Path,
    msg_store: Option<&Path>,
    target: &dyn QueueStore,
    opts: ImportOptions,
    mut progress: impl FnMut(Progress),
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let existing = target.stats().await?.queues;
    if existing > 0 && !opts.force {
        return Err(ImportError::TargetNotEmpty(existing));
    }
    let store_log = storelog::start_backup(store_log, "relay", &mut report);
    let text = storelog::read(&store_log)?;
    let Replayed {
        queues,
        services,
        assoc,
    } = replay_store_log(&store_log, &text, &mut report)?;
    let total = queues.len() as u64;
    let width = opts.concurrency.max(1);

    // 1. queues
    let mut done = 0u64;
    let mut imported: HashSet<EntityId> = HashSet::with_capacity(queues.len());
    let jobs = queues.into_iter().map(|q| {
        Box::pin(async move {
            let rid = q.recipient_id;
            let flags = (
                q.sender_key.is_some(),
                q.notifier.is_some(),
                q.status == QueueStatus::Off,
                matches!(q.status, QueueStatus::Blocked(_)),
            );
            let r = retry_busy(|| target.create_queue(q.clone())).await;
            (rid, flags, r)
        }) as Job<'_, CreateOutcome>
    });
    run_window(jobs, width, |(rid, flags, r): CreateOutcome| {
        match r {
            Ok(()) => {
                imported.insert(rid);
                report.queues += 1;
                report.secured += u64::from(flags.0);
                report.with_notifier += u64::from(flags.1);
                report.suspended += u64::from(flags.2);
                report.blocked += u64::from(flags.3);
            }
            Err(StoreError::DuplicateId) if opts.force => {
                report.existing_skipped += 1;
            }
            Err(e) => return Err(e.into()),
        }
        done += 1;
        progress(Progress {
            phase: Phase::Queues,
            done,
            total,
            messages: 0,
        });
        Ok(())
    })
    .await?;

    // 2. services and the queues' associations with them
    import_services(target, services, assoc, &imported, &mut report).await?;

    // 3. messages
    if let Some(m) = msg_store {
        let meta = std::fs::metadata(m).map_err(|source| LogError::io(m, source))?;
        if meta.is_dir() {
            import_journal(m, target, &imported, opts, &mut report, &mut progress).await?;
        } else {
            import_v3_file(m, target, &imported, opts, &mut report, &mut progress).await?;
        }
    }
    Ok(report)
}

async fn import_services(
    target: &dyn QueueStore,
    services: Vec<ServiceRecord>,
    assoc: HashMap<EntityId, [Option<EntityId>; 2]>,
    imported: &HashSet<EntityId>,
    report: &mut ImportReport,
) -> Result<(), ImportError> {
    // log id → the id the target keeps (the same, unless the certificate was already there)
    let mut ids: HashMap<EntityId, EntityId> = HashMap::new();
    for s in services {
        let log_id = s.service_id;
        match retry_busy(|| target.get_create_service(s.clone())).await {
            Ok(id) => {
                ids.insert(log_id, id);
                report.services += 1;
            }
            Err(e) => {
                report.service_records_skipped += 1;
                report.warn(format!("a service was not imported: {e}"));
            }
        }
    }
    let mut assoc: Vec<_> = assoc
        .into_iter()
        .filter(|(rid, _)| imported.contains(rid))
        .collect();
    assoc.sort();
    for (rid, sides) in assoc {
        for (party, sid) in [
            (ServiceParty::Recipient, sides[0]),
            (ServiceParty::Notifier, sides[1]),
        ] {
            let Some(sid) = sid else { continue };
            let Some(&id) = ids.get(&sid) else {
                report.service_records_skipped += 1;
                report.warn(
                    "a queue's association with a service that is not in the store log was dropped"
                        .into(),
                );
                continue;
            };
            match retry_busy(|| target.set_queue_service(rid, party, Some(id))).await {
                Ok(()) => report.service_associations += 1,
                Err(e) => {
                    report.service_records_skipped += 1;
                    report.warn(format!(
                        "a queue's service association was not imported: {e}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `smp-server import`: imports into the store the relay's configuration names (SQLite file
/// `[STORE_LOG] store_path`, or PostgreSQL with `store_queues = database`), with its quota
/// (`[QUEUES] queue_quota`). Run it while the relay is stopped.
pub async fn import_into_configured_store(
    config: &crate::Config,
    store_log: &Path,
    msg_store: Option<&Path>,
    force: bool,
    progress: impl FnMut(Progress),
) -> Result<ImportReport, ImportError> {
    let quota = config.limits.queue_quota;
    let opts = ImportOptions {
        force,
        quota,
        ..ImportOptions::default()
    };
    if let Some(db) = &config.store.database {
        let pg = hush_store::PgStore::connect(hush_store::PgOptions {
            url: db.connection.clone(),
            schema: db.schema.clone(),
            pool_size: db.pool_size,
            quota,
            ..hush_store::PgOptions::default()
        })
        .await
        .map_err(|e| {
            // the connection string may hold a password: name only the schema
            ImportError::Open(format!(
                "cannot open the PostgreSQL database (schema {}): {e}",
                db.schema
            ))
        })?;
        return import_reference_with(store_log, msg_store, &pg, opts, progress).await;
    }
    if !config.store.enable {
        return Err(ImportError::Open(
            "[STORE_LOG] enable = off: the relay keeps queues in memory only, there is nothing to import into"
                .into(),
        ));
    }
    let path = &config.store.path;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        hush_server_common::private_start::prepare_private_dir(dir, "relay data directory")
            .map_err(|e| {
                ImportError::Open(format!(
                    "cannot create data directory {}: {e}",
                    dir.display()
                ))
            })?;
    }
    let sqlite = hush_store::SqliteStore::open(
        path,
        hush_store::SqliteOptions {
            sync: match config.store.sync {
                crate::config::SyncPolicy::Full => hush_store::SyncPolicy::Full,
                crate::config::SyncPolicy::Normal => hush_store::SyncPolicy::Normal,
            },
            quota,
            cache_queues: config.store.cache_queues,
            ..hush_store::SqliteOptions::default()
        },
    )
    .map_err(|e| ImportError::Open(format!("cannot open the store {}: {e}", path.display())))?;
    import_reference_with(store_log, msg_store, &sqlite, opts, progress).await
}

/// A progress printer for the CLI: `imported N/M queues` (and messages) on stderr, at most once
/// a second, and always for the last queue of a phase.
pub fn stderr_progress() -> impl FnMut(Progress) {
    storelog::stderr_progress(
        |p: &Progress| p.done == p.total,
        |p| match p.phase {
            Phase::Queues => format!("imported {}/{} queues", p.done, p.total),
            Phase::Messages => format!(
                "imported messages of {}/{} queues ({} messages)",
                p.done, p.total, p.messages
            ),
        },
    )
}

// ------------------------------------------------------------------------------------------
// Store log

/// One store-log record (`StoreLog.hs` `StoreLogRecord`).
#[derive(Debug)]
enum Record {
    /// The queue and its service associations (`rsrv=`, `nsrv=`).
    Create(Box<QueueRecord>, [Option<EntityId>; 2]),
    Link(EntityId, QueueLink),
    DeleteLink(EntityId),
    Secure(EntityId, Vec<u8>),
    Keys(EntityId, Vec<Vec<u8>>),
    Notifier(EntityId, NotifierCreds, Option<EntityId>),
    Suspend(EntityId),
    Block(EntityId, BlockInfo),
    Unblock(EntityId),
    Delete(EntityId),
    DeleteNotifier(EntityId),
    Time(EntityId, i64),
    NewService(Box<ServiceRecord>),
    QueueService(EntityId, ServiceParty, Option<EntityId>),
}

impl Record {
    fn recipient_id(&self) -> Option<&EntityId> {
        match self {
            Record::Create(..) | Record::NewService(_) => None,
            Record::Link(r, _)
            | Record::DeleteLink(r)
            | Record::Secure(r, _)
            | Record::Keys(r, _)
            | Record::Notifier(r, _, _)
            | Record::Suspend(r)
            | Record::Block(r, _)
            | Record::Unblock(r)
            | Record::Delete(r)
            | Record::DeleteNotifier(r)
            | Record::Time(r, _)
            | Record::QueueService(r, _, _) => Some(r),
        }
    }
}

/// The replayed queues: records by recipient id with the reference's id indexes.
#[derive(Default)]
struct Replay {
    queues: HashMap<EntityId, (u64, QueueRecord)>,
    senders: HashSet<EntityId>,
    notifiers: HashSet<EntityId>,
    links: HashSet<EntityId>,
    seq: u64,
    /// `NEW_SERVICE` records, in order (one per certificate hash).
    services: Vec<ServiceRecord>,
    /// recipient id → (recipient side, notifier side) service ids.
    assoc: HashMap<EntityId, [Option<EntityId>; 2]>,
}

/// What the store log replays to.
struct Replayed {
    queues: Vec<QueueRecord>,
    services: Vec<ServiceRecord>,
    assoc: HashMap<EntityId, [Option<EntityId>; 2]>,
}

fn side(p: ServiceParty) -> usize {
    match p {
        ServiceParty::Recipient => 0,
        ServiceParty::Notifier => 1,
    }
}

fn replay_store_log(
    path: &Path,
    text: &[u8],
    report: &mut ImportReport,
) -> Result<Replayed, ImportError> {
    let mut st = Replay::default();
    storelog::replay(path, text, report, parse_record, |report, rec| {
        apply(&mut st, rec, report)
    })?;
    let mut out: Vec<(u64, QueueRecord)> = st.queues.into_values().collect();
    out.sort_by_key(|(seq, _)| *seq);
    Ok(Replayed {
        queues: out.into_iter().map(|(_, q)| q).collect(),
        services: st.services,
        assoc: st.assoc,
    })
}

/// Applies a record as the reference's STM queue store does; `Err` = skipped with a warning.
fn apply(st: &mut Replay, rec: Record, report: &mut ImportReport) -> Result<(), String> {
    if let Record::Create(q, services) = rec {
        if st.queues.contains_key(&q.recipient_id)
            || st.senders.contains(&q.sender_id)
            || q.notifier
                .as_ref()
                .is_some_and(|n| st.notifiers.contains(&n.notifier_id))
            || q.link
                .as_ref()
                .is_some_and(|l| st.links.contains(&l.link_id))
        {
            return Err("CREATE: duplicate queue id, record skipped".into());
        }
        st.senders.insert(q.sender_id);
        if let Some(n) = &q.notifier {
            st.notifiers.insert(n.notifier_id);
        }
        if let Some(l) = &q.link {
            st.links.insert(l.link_id);
        }
        st.seq += 1;
        if services != [None, None] {
            st.assoc.insert(q.recipient_id, services);
        }
        st.queues.insert(q.recipient_id, (st.seq, *q));
        return Ok(());
    }
    if let Record::NewService(r) = rec {
        // getCreateService: one service per certificate
        if st.services.iter().any(|s| s.cert_hash == r.cert_hash) {
            return Err("NEW_SERVICE: certificate already registered, record skipped".into());
        }
        st.services.push(*r);
        return Ok(());
    }
    let Some(rid) = rec.recipient_id().copied() else {
        return Ok(());
    };
    let Some((_, q)) = st.queues.get_mut(&rid) else {
        return Err("record for a queue that does not exist (or was deleted), skipped".into());
    };
    match rec {
        Record::Create(..) | Record::NewService(_) => {}
        Record::Link(_, link) => {
            if let Some(old) = &q.link
                && old.link_id != link.link_id
            {
                st.links.remove(&old.link_id);
            }
            if q.link.as_ref().map(|l| l.link_id) != Some(link.link_id)
                && !st.links.insert(link.link_id)
            {
                return Err("LINK: duplicate link id, record skipped".into());
            }
            q.link = Some(link);
        }
        Record::DeleteLink(_) => {
            if let Some(l) = q.link.take() {
                st.links.remove(&l.link_id);
            }
        }
        Record::Secure(_, key) => match &q.sender_key {
            Some(k) if *k != key => {
                return Err("SECURE: queue already secured with another key, skipped".into());
            }
            _ => q.sender_key = Some(key),
        },
        Record::Keys(_, keys) => q.recipient_keys = keys,
        Record::Notifier(_, creds, service) => {
            if q.notifier.as_ref().map(|n| n.notifier_id) != Some(creds.notifier_id)
                && st.notifiers.contains(&creds.notifier_id)
            {
                return Err("NOTIFIER: duplicate notifier id, skipped".into());
            }
            if let Some(old) = q.notifier.take() {
                st.notifiers.remove(&old.notifier_id);
            }
            st.notifiers.insert(creds.notifier_id);
            q.notifier = Some(creds);
            st.assoc.entry(rid).or_default()[1] = service;
        }
        Record::Suspend(_) => q.status = QueueStatus::Off,
        Record::Block(_, info) => q.status = QueueStatus::Blocked(info),
        Record::Unblock(_) => q.status = QueueStatus::Active,
        Record::Delete(_) => {
            if let Some((_, q)) = st.queues.remove(&rid) {
                st.senders.remove(&q.sender_id);
                if let Some(n) = q.notifier {
                    st.notifiers.remove(&n.notifier_id);
                }
                if let Some(l) = q.link {
                    st.links.remove(&l.link_id);
                }
                report.deleted_queues += 1;
            }
            st.assoc.remove(&rid);
        }
        Record::DeleteNotifier(_) => {
            if let Some(n) = q.notifier.take() {
                st.notifiers.remove(&n.notifier_id);
            }
            if let Some(a) = st.assoc.get_mut(&rid) {
                a[1] = None;
            }
        }
        Record::Time(_, t) => q.updated_at = Some(t),
        Record::QueueService(_, party, service) => {
            if party == ServiceParty::Notifier && q.notifier.is_none() {
                return Err("QUEUE_SERVICE: the queue has no notifier, skipped".into());
            }
            st.assoc.entry(rid).or_default()[side(party)] = service;
        }
    }
    Ok(())
}

/// The importer's pieces of the reference's record syntax, on the shared cursor.
trait Cur {
    fn id(&mut self, what: &str) -> Result<EntityId, String>;
    fn secret(&mut self, what: &str) -> Result<DhSecret, String>;
    fn key(&mut self, what: &str) -> Result<Vec<u8>, String>;
    fn keys(&mut self, what: &str) -> Result<Vec<Vec<u8>>, String>;
}

impl Cur for StrCursor<'_> {
    fn id(&mut self, what: &str) -> Result<EntityId, String> {
        let v = self.b64(what)?;
        <[u8; ID_LEN]>::try_from(v.as_slice())
            .map_err(|_| format!("{what}: {} bytes, expected {ID_LEN}", v.len()))
    }

    fn secret(&mut self, what: &str) -> Result<DhSecret, String> {
        let v = self.b64(what)?;
        <[u8; 32]>::try_from(v.as_slice()).map_err(|_| {
            format!(
                "{what}: {} bytes, expected a 32-byte X25519 secret",
                v.len()
            )
        })
    }

    fn key(&mut self, what: &str) -> Result<Vec<u8>, String> {
        let v = self.b64(what)?;
        PublicKeyDer::auth_key(v.clone()).map_err(|e| format!("{what}: {e}"))?;
        Ok(v)
    }

    fn keys(&mut self, what: &str) -> Result<Vec<Vec<u8>>, String> {
        let mut out = vec![self.key(what)?];
        while self.opt(",") {
            let k = self.key(what)?;
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }
}

fn parse_record(line: &str) -> Result<Record, String> {
    let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut c = StrCursor { s: rest };
    let r = match tag {
        "CREATE" => {
            c.lit("rid=")?;
            let rid = c.id("recipient id")?;
            c.lit(" ")?;
            let (q, services) = queue_rec(&mut c, rid)?;
            Record::Create(Box::new(q), services)
        }
        "LINK" => {
            let rid = c.id("recipient id")?;
            c.lit(" ")?;
            let link_id = c.id("link id")?;
            c.lit(" ")?;
            Record::Link(rid, link(&mut c, link_id)?)
        }
        "LDELETE" => Record::DeleteLink(c.id("recipient id")?),
        "SECURE" => {
            let rid = c.id("recipient id")?;
            c.lit(" ")?;
            Record::Secure(rid, c.key("sender key")?)
        }
        "KEYS" => {
            let rid = c.id("recipient id")?;
            c.lit(" ")?;
            Record::Keys(rid, c.keys("recipient key")?)
        }
        "NOTIFIER" => {
            let rid = c.id("recipient id")?;
            c.lit(" ")?;
            let (n, service) = ntf_creds(&mut c)?;
            Record::Notifier(rid, n, service)
        }
        "SUSPEND" => Record::Suspend(c.id("recipient id")?),
        "BLOCK" => {
            let rid = c.id("recipient id")?;
            c.lit(" ")?;
            Record::Block(rid, blocking_info(&mut c)?)
        }
        "UNBLOCK" => Record::Unblock(c.id("recipient id")?),
        "DELETE" => Record::Delete(c.id("recipient id")?),
        "NDELETE" => Record::DeleteNotifier(c.id("recipient id")?),
        "TIME" => {
            let rid = c.id("recipient id")?;
            c.lit(" ")?;
            Record::Time(rid, c.int("time")?)
        }
        "NEW_SERVICE" => Record::NewService(Box::new(service_rec(&mut c)?)),
        "QUEUE_SERVICE" => {
            let rid = c.id("recipient id")?;
            c.lit(" ")?;
            let party = if c.opt("R") {
                ServiceParty::Recipient
            } else if c.opt("N") {
                ServiceParty::Notifier
            } else {
                return Err("bad service party (R or N)".into());
            };
            c.lit(" ")?;
            let service = if c.at_b64() {
                Some(c.id("service id")?)
            } else {
                None
            };
            Record::QueueService(rid, party, service)
        }
        _ => {
            return Err(format!(
                "unknown record `{}`",
                tag.chars().take(20).collect::<String>()
            ));
        }
    };
    c.end()?;
    Ok(r)
}

/// `QueueRec` (`StoreLog.hs` `instance StrEncoding QueueRec`).
fn queue_rec(
    c: &mut StrCursor<'_>,
    recipient_id: EntityId,
) -> Result<(QueueRecord, [Option<EntityId>; 2]), String> {
    let mut services = [None, None];
    c.lit("rk=")?;
    let recipient_keys = c.keys("recipient key")?;
    c.lit(" rdh=")?;
    let rcv_dh_secret = c.secret("rdh")?;
    c.lit(" sid=")?;
    let sender_id = c.id("sender id")?;
    c.lit(" sk=")?;
    let sender_key = if c.at_b64() {
        Some(c.key("sender key")?)
    } else {
        None
    };
    let mode = if c.opt(" sndSecure=") {
        Some(if c.bool("sndSecure")? {
            QueueMode::Messaging
        } else {
            QueueMode::Contact
        })
    } else if c.opt(" queue_mode=") {
        if c.opt("M") {
            Some(QueueMode::Messaging)
        } else if c.opt("C") {
            Some(QueueMode::Contact)
        } else {
            return Err("bad queue_mode (M or C)".into());
        }
    } else {
        None
    };
    let link = if c.opt(" link_id=") {
        let id = c.id("link id")?;
        c.lit(" queue_data=")?;
        Some(link(c, id)?)
    } else {
        None
    };
    let notifier = if c.opt(" notifier=") {
        let (n, service) = ntf_creds(c)?;
        services[1] = service;
        Some(n)
    } else {
        None
    };
    let updated_at = if c.opt(" updated_at=") {
        Some(c.int("updated_at")?)
    } else {
        None
    };
    let status = if c.opt(" status=") {
        if c.opt("active") {
            QueueStatus::Active
        } else if c.opt("off") {
            QueueStatus::Off
        } else if c.opt("blocked,") {
            QueueStatus::Blocked(blocking_info(c)?)
        } else {
            return Err("bad status".into());
        }
    } else {
        QueueStatus::Active
    };
    if c.opt(" rsrv=") {
        services[0] = Some(c.id("service id")?);
    }
    Ok((
        QueueRecord {
            recipient_id,
            recipient_keys,
            rcv_dh_secret,
            sender_id,
            sender_key,
            mode,
            link,
            notifier,
            status,
            updated_at,
        },
        services,
    ))
}

fn link(c: &mut StrCursor<'_>, link_id: EntityId) -> Result<QueueLink, String> {
    let fixed = c.b64("fixed link data")?;
    c.lit(" ")?;
    let user = c.b64("user link data")?;
    Ok(QueueLink {
        link_id,
        data: LinkData { fixed, user },
    })
}

/// `NtfCreds`: `<notifier id> <notifier key> <rcv ntf dh secret>[ nsrv=<service id>]`.
fn ntf_creds(c: &mut StrCursor<'_>) -> Result<(NotifierCreds, Option<EntityId>), String> {
    let notifier_id = c.id("notifier id")?;
    c.lit(" ")?;
    let notifier_key = c.key("notifier key")?;
    c.lit(" ")?;
    let rcv_ntf_dh_secret = c.secret("notifier dh secret")?;
    let service = if c.opt(" nsrv=") {
        Some(c.id("service id")?)
    } else {
        None
    };
    Ok((
        NotifierCreds {
            notifier_id,
            notifier_key,
            rcv_ntf_dh_secret,
        },
        service,
    ))
}

/// `ServiceRec` (`QueueStore.hs`): `service_id=<id> role=<M|N|P> cert=<DER,…> cert_hash=<sha256>
/// created_at=<t>`. The identity certificate is the only one of the chain or its second (as the
/// relay takes it at the handshake); `cert_hash` is its SHA-256 (`getFingerprint … HashSHA256`).
fn service_rec(c: &mut StrCursor<'_>) -> Result<ServiceRecord, String> {
    c.lit("service_id=")?;
    let service_id = c.id("service id")?;
    c.lit(" role=")?;
    let role = match c.s.bytes().next() {
        Some(r @ (b'M' | b'N' | b'P')) => r,
        _ => return Err("bad service role (M, N or P)".into()),
    };
    c.s = &c.s[1..];
    c.lit(" cert=")?;
    let mut chain = vec![c.b64("certificate")?];
    while c.opt(",") {
        chain.push(c.b64("certificate")?);
    }
    let cert = match chain.len() {
        1 => chain.swap_remove(0),
        _ => chain.swap_remove(1),
    };
    c.lit(" cert_hash=")?;
    let hash = c.b64("certificate hash")?;
    let cert_hash = <[u8; 32]>::try_from(hash.as_slice())
        .map_err(|_| format!("cert_hash: {} bytes, expected 32 (SHA-256)", hash.len()))?;
    c.lit(" created_at=")?;
    let created_at = c.int("created_at")?;
    Ok(ServiceRecord {
        service_id,
        role,
        cert,
        cert_hash,
        created_at,
    })
}

/// `BlockingInfo`: `reason=spam|content[,notice={"ttl":n}]`.
fn blocking_info(c: &mut StrCursor<'_>) -> Result<BlockInfo, String> {
    c.lit("reason=")?;
    let reason = if c.opt("spam") {
        BlockReason::Spam
    } else if c.opt("content") {
        BlockReason::Content
    } else {
        return Err("bad block reason (spam or content)".into());
    };
    let notice = if c.opt(",notice=") {
        let end =
            c.s.find('}')
                .ok_or_else(|| "bad block notice JSON".to_string())?;
        let json = &c.s[..=end];
        c.s = &c.s[end + 1..];
        Some(notice(json).ok_or_else(|| format!("bad block notice JSON `{json}`"))?)
    } else {
        None
    };
    Ok(BlockInfo { reason, notice })
}

/// `ClientNotice` as aeson writes it: `{}`, `{"ttl":null}` or `{"ttl":<n>}`.
fn notice(json: &str) -> Option<BlockNotice> {
    let inner: String = json
        .strip_prefix('{')?
        .strip_suffix('}')?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    if inner.is_empty() {
        return Some(BlockNotice { ttl: None });
    }
    let v = inner.strip_prefix("\"ttl\":")?;
    if v == "null" {
        return Some(BlockNotice { ttl: None });
    }
    Some(BlockNotice {
        ttl: Some(v.parse().ok()?),
    })
}

// ------------------------------------------------------------------------------------------
// Messages

/// A message of the reference's message store (`Protocol.hs` `instance StrEncoding Message`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum RefMessage {
    Message(NewMessage),
    Quota { msg_id: MsgId, ts: i64 },
}

fn parse_message(c: &mut StrCursor<'_>) -> Result<RefMessage, String> {
    let msg_id = c.id("message id")?;
    c.lit(" ")?;
    let ts = c.int("message ts")?;
    c.lit(" ")?;
    if c.opt("quota") {
        c.end()?;
        return Ok(RefMessage::Quota { msg_id, ts });
    }
    let mut flags = 0u8;
    if c.opt("flags=") {
        flags = u8::from(c.bool("flags")?);
        // MsgFlags' parser ignores what follows the first flag up to the space
        let n = c.s.find(' ').ok_or("expected message body")?;
        c.s = &c.s[n + 1..];
    }
    let body = if c.s.is_empty() {
        Vec::new()
    } else {
        c.b64("message body")?
    };
    c.end()?;
    Ok(RefMessage::Message(NewMessage {
        msg_id,
        ts,
        flags,
        body,
    }))
}

/// Per-queue message import result.
#[derive(Default)]
struct MsgCounts {
    messages: u64,
    markers: u64,
    markers_dropped: u64,
    over_quota: u64,
    too_large: u64,
}

/// Appends one queue's messages in order.
async fn append_all(
    target: &dyn QueueStore,
    rid: EntityId,
    msgs: Vec<RefMessage>,
    quota: usize,
) -> Result<MsgCounts, StoreError> {
    let mut n = MsgCounts::default();
    for m in msgs {
        match m {
            RefMessage::Message(msg) => {
                match retry_busy(|| target.append_message(rid, msg.clone(), None)).await {
                    Ok(AppendOutcome::Appended { .. }) => n.messages += 1,
                    Ok(AppendOutcome::QuotaExceeded { .. }) => n.over_quota += 1,
                    Err(StoreError::MessageTooLarge(_)) => n.too_large += 1,
                    Err(e) => return Err(e),
                }
            }
            RefMessage::Quota { msg_id, ts } => {
                if retry_busy(|| target.message_count(rid)).await? < quota {
                    n.markers_dropped += 1;
                    continue;
                }
                let marker = NewMessage {
                    msg_id,
                    ts,
                    flags: 0,
                    body: Vec::new(),
                };
                match retry_busy(|| target.append_message(rid, marker.clone(), None)).await? {
                    AppendOutcome::QuotaExceeded { marker_added: true } => n.markers += 1,
                    _ => n.markers_dropped += 1,
                }
            }
        }
    }
    Ok(n)
}

fn add_counts(report: &mut ImportReport, n: &MsgCounts) {
    report.messages += n.messages;
    report.quota_markers += n.markers;
    report.quota_markers_dropped += n.markers_dropped;
    report.messages_over_quota += n.over_quota;
    if n.over_quota > 0 {
        report.warn(format!(
            "a queue: {} messages refused by the queue quota",
            n.over_quota
        ));
    }
    if n.too_large > 0 {
        report.records_skipped += n.too_large;
        report.warn(format!(
            "a queue: {} messages larger than the maximum body skipped",
            n.too_large
        ));
    }
}

/// The journal store: every `queue_state.<rid>.log` under `dir`.
async fn import_journal(
    dir: &Path,
    target: &dyn QueueStore,
    imported: &HashSet<EntityId>,
    opts: ImportOptions,
    report: &mut ImportReport,
    progress: &mut impl FnMut(Progress),
) -> Result<(), ImportError> {
    let mut states = Vec::new();
    find_queue_states(dir, &mut states)?;
    states.sort();
    let mut loaded = Vec::with_capacity(states.len());
    for (path, rid) in states {
        if !imported.contains(&rid) {
            // reference: "queue … does not exist" warning; the folder holds no live queue
            let msgs = read_journal_queue(&path, report)?;
            if !msgs.is_empty() {
                report.messages_without_queue += msgs.len() as u64;
                tracing::debug!(path = %path.display(), "messages of a queue not in the store log");
                report.warn(format!(
                    "{} messages of a journal queue that is not in the store log skipped",
                    msgs.len()
                ));
            }
            continue;
        }
        loaded.push((path, rid));
    }
    let total = loaded.len() as u64;
    let mut done = 0u64;
    let quota = opts.quota;
    // journals are read one queue at a time, inside the job (bounded memory)
    let mut read_errors: Vec<ImportError> = Vec::new();
    let mut to_run = Vec::with_capacity(loaded.len());
    for (path, rid) in loaded {
        let msgs = match read_journal_queue(&path, report) {
            Ok(m) => m,
            Err(e) => {
                read_errors.push(e);
                break;
            }
        };
        to_run.push((path, rid, msgs));
        if to_run.len() >= opts.concurrency.max(1) * 4 {
            run_message_jobs(
                std::mem::take(&mut to_run),
                target,
                quota,
                opts,
                report,
                progress,
                &mut done,
                total,
            )
            .await?;
        }
    }
    run_message_jobs(
        to_run, target, quota, opts, report, progress, &mut done, total,
    )
    .await?;
    if let Some(e) = read_errors.pop() {
        return Err(e);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_message_jobs(
    jobs: Vec<(PathBuf, EntityId, Vec<RefMessage>)>,
    target: &dyn QueueStore,
    quota: usize,
    opts: ImportOptions,
    report: &mut ImportReport,
    progress: &mut impl FnMut(Progress),
    done: &mut u64,
    total: u64,
) -> Result<(), ImportError> {
    let futs = jobs.into_iter().map(|(path, rid, msgs)| {
        Box::pin(async move { (path, append_all(target, rid, msgs, quota).await) })
            as Job<'_, (PathBuf, Result<MsgCounts, StoreError>)>
    });
    run_window(
        futs,
        opts.concurrency.max(1),
        |(path, r): (PathBuf, Result<MsgCounts, StoreError>)| {
            let n = r?;
            tracing::debug!(path = %path.display(), "queue messages imported");
            add_counts(report, &n);
            *done += 1;
            progress(Progress {
                phase: Phase::Messages,
                done: *done,
                total,
                messages: report.messages,
            });
            Ok(())
        },
    )
    .await
}

fn find_queue_states(dir: &Path, out: &mut Vec<(PathBuf, EntityId)>) -> Result<(), ImportError> {
    let io = |source| LogError::io(dir, source);
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let path = e.path();
        if e.file_type().map_err(io)?.is_dir() {
            find_queue_states(&path, out)?;
            continue;
        }
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rid) = name
            .strip_prefix("queue_state.")
            .and_then(|r| r.strip_suffix(".log"))
        else {
            continue;
        };
        let rid = base64url_token(rid)
            .ok()
            .filter(|(_, rest)| rest.is_empty())
            .and_then(|(v, _)| <[u8; ID_LEN]>::try_from(v.as_slice()).ok());
        if let Some(rid) = rid {
            out.push((path, rid));
        }
    }
    Ok(())
}

/// `JournalState`: `<journal id>,<msgPos>,<msgCount>,<bytePos>,<byteCount>`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JournalState {
    journal_id: String,
    msg_pos: u64,
    msg_count: u64,
    byte_pos: u64,
    byte_count: u64,
}

/// `MsgQueueState` (`Journal.hs`): `write=<js> read=<js> canWrite=T|F size=<n>`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct QueueState {
    write: JournalState,
    read: JournalState,
    size: u64,
}

fn parse_queue_state(line: &str) -> Result<QueueState, String> {
    fn js(c: &mut StrCursor<'_>) -> Result<JournalState, String> {
        let n = c.s.find(',').ok_or("bad journal state")?;
        let journal_id = c.s[..n].to_string();
        c.s = &c.s[n..];
        let mut v = [0u64; 4];
        for x in &mut v {
            c.lit(",")?;
            *x = u64::try_from(c.int("journal position")?).map_err(|_| "negative position")?;
        }
        Ok(JournalState {
            journal_id,
            msg_pos: v[0],
            msg_count: v[1],
            byte_pos: v[2],
            byte_count: v[3],
        })
    }
    let mut c = StrCursor { s: line };
    c.lit("write=")?;
    let write = js(&mut c)?;
    c.lit(" read=")?;
    let read = js(&mut c)?;
    c.lit(" canWrite=")?;
    c.bool("canWrite")?;
    c.lit(" size=")?;
    let size = u64::try_from(c.int("size")?).map_err(|_| "negative size")?;
    c.end()?;
    Ok(QueueState { write, read, size })
}

/// `validQueueState` (`Journal.hs`).
fn valid_state(st: &QueueState) -> bool {
    let (rs, ws) = (&st.read, &st.write);
    let always = rs.msg_pos <= rs.msg_count
        && rs.byte_pos <= rs.byte_count
        && ws.msg_pos == ws.msg_count
        && ws.byte_pos == ws.byte_count;
    if rs.journal_id == ws.journal_id {
        always
            && rs.msg_pos <= ws.msg_pos
            && rs.msg_count == ws.msg_count
            && rs.byte_pos <= ws.byte_pos
            && rs.byte_count == ws.byte_count
            && st.size == rs.msg_count - rs.msg_pos
    } else {
        always && st.size + rs.msg_pos == ws.msg_count + rs.msg_count
    }
}

/// One queue's undelivered messages from its journal folder (`getJournalQueueMessages`).
fn read_journal_queue(
    state_path: &Path,
    report: &mut ImportReport,
) -> Result<Vec<RefMessage>, ImportError> {
    // a `.bak` beside the state file is the reference's backup taken before rewriting it
    let bak = PathBuf::from(format!("{}.bak", state_path.display()));
    let path = if bak.exists() {
        bak
    } else {
        state_path.to_path_buf()
    };
    let text = storelog::read(&path)?;
    let all: Vec<(usize, &[u8], bool)> = lines(&text).collect();
    // the last line, or the one before it if the last does not parse (`useLastLine`)
    let mut state = None;
    for (i, (line_no, line, _)) in all.iter().enumerate().rev().take(2) {
        match storelog::utf8(line).and_then(parse_queue_state) {
            Ok(st) => {
                state = Some((*line_no, st));
                break;
            }
            Err(_) if i + 1 == all.len() && all.len() > 1 => {
                tracing::debug!(path = %path.display(), line_no, "invalid last queue state");
                report.warn(format!(
                    "a journal queue state file: invalid last line {line_no}, using the previous line"
                ));
            }
            Err(_) if i + 1 == all.len() => {
                // `invalid 1-line queue state - initialized`: the queue is empty
                tracing::debug!(path = %path.display(), "invalid 1-line queue state");
                report.warn(
                    "a journal queue state file has one invalid line: queue taken as empty".into(),
                );
                return Ok(Vec::new());
            }
            Err(msg) => return Err(LogError::parse(&path, *line_no, msg).into()),
        }
    }
    let Some((line_no, st)) = state else {
        return Ok(Vec::new());
    };
    if !valid_state(&st) {
        return Err(LogError::parse(&path, line_no, "inconsistent queue state").into());
    }
    if st.size == 0 {
        return Ok(Vec::new());
    }
    let dir = state_path.parent().unwrap_or(Path::new("."));
    let mut msgs = read_journal_range(
        dir,
        &st.read.journal_id,
        st.read.byte_pos,
        st.read.byte_count,
    )?;
    if st.read.journal_id != st.write.journal_id {
        msgs.extend(read_journal_range(
            dir,
            &st.write.journal_id,
            0,
            st.write.byte_pos,
        )?);
    }
    Ok(msgs)
}

fn read_journal_range(
    dir: &Path,
    journal_id: &str,
    from: u64,
    to: u64,
) -> Result<Vec<RefMessage>, ImportError> {
    if to <= from {
        return Ok(Vec::new());
    }
    let path = dir.join(format!("messages.{journal_id}.log"));
    let text = storelog::read(&path)?;
    let (from, to) = (from as usize, to as usize);
    if to > text.len() {
        let msg = format!(
            "journal is {} bytes, the queue state expects {to}",
            text.len()
        );
        return Err(LogError::parse(&path, 0, msg).into());
    }
    let first_line = text[..from].iter().filter(|&&c| c == b'\n').count();
    let mut out = Vec::new();
    for (n, line, _) in lines(&text[from..to]) {
        let m = storelog::utf8(line)
            .and_then(|s| parse_message(&mut StrCursor { s }))
            .map_err(|msg| LogError::parse(&path, first_line + n, msg))?;
        out.push(m);
    }
    Ok(out)
}

/// The exported message file: `v3 <rid> <message>` lines, grouped by queue.
async fn import_v3_file(
    path: &Path,
    target: &dyn QueueStore,
    imported: &HashSet<EntityId>,
    opts: ImportOptions,
    report: &mut ImportReport,
    progress: &mut impl FnMut(Progress),
) -> Result<(), ImportError> {
    let text = storelog::read(path)?;
    // group consecutive lines of one queue; a queue seen again later is appended after
    let mut groups: Vec<(EntityId, Vec<RefMessage>)> = Vec::new();
    let mut index: HashMap<EntityId, usize> = HashMap::new();
    let parse = |s: &str| {
        let mut c = StrCursor { s };
        c.lit("v3 ")?;
        let rid = c.id("recipient id")?;
        c.lit(" ")?;
        Ok((rid, parse_message(&mut c)?))
    };
    storelog::each_record(path, &text, report, parse, |report, line_no, (rid, m)| {
        if !imported.contains(&rid) {
            report.messages_without_queue += 1;
            report.warn(format!(
                "{}:{line_no}: message of a queue not in the store log skipped",
                path.display()
            ));
            return;
        }
        match index.get(&rid) {
            Some(&i) => groups[i].1.push(m),
            None => {
                index.insert(rid, groups.len());
                groups.push((rid, vec![m]));
            }
        }
    })?;
    let total = groups.len() as u64;
    let mut done = 0u64;
    let jobs = groups
        .into_iter()
        .map(|(rid, msgs)| (path.to_path_buf(), rid, msgs))
        .collect();
    run_message_jobs(
        jobs, target, opts.quota, opts, report, progress, &mut done, total,
    )
    .await
}

// ------------------------------------------------------------------------------------------
// Running store operations concurrently (the SQLite store commits concurrent writes together)

/// (recipient id, (secured, notifier, off, blocked), result) of one `create_queue`.
type CreateOutcome = (EntityId, (bool, bool, bool, bool), Result<(), StoreError>);

type Job<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs `jobs` with at most `width` in flight, handing each result to `done` as it completes.
async fn run_window<'a, T>(
    mut jobs: impl Iterator<Item = Job<'a, T>>,
    width: usize,
    mut done: impl FnMut(T) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let mut inflight: Vec<Job<'a, T>> = Vec::with_capacity(width);
    loop {
        while inflight.len() < width {
            match jobs.next() {
                Some(j) => inflight.push(j),
                None => break,
            }
        }
        if inflight.is_empty() {
            return Ok(());
        }
        let out = std::future::poll_fn(|cx| {
            for i in 0..inflight.len() {
                if let Poll::Ready(v) = inflight[i].as_mut().poll(cx) {
                    drop(inflight.swap_remove(i));
                    return Poll::Ready(v);
                }
            }
            Poll::Pending
        })
        .await;
        done(out)?;
    }
}

/// Retries an operation the store shed ([`StoreError::Busy`]) after a short pause.
async fn retry_busy<'s, T, F>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> hush_store::StoreFuture<'s, T>,
{
    let mut pause = Duration::from_millis(5);
    loop {
        match op().await {
            Err(StoreError::Busy) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_formats() {
        let id = hush_proto::encoding::base64url_encode(&[7u8; 24]);
        let m = parse_message(&mut StrCursor {
            s: &format!("{id} 1700000000 flags=T aGVsbG8="),
        })
        .unwrap();
        let RefMessage::Message(m) = m else { panic!() };
        assert_eq!(
            (m.ts, m.flags, m.body.as_slice()),
            (1700000000, 1, &b"hello"[..])
        );
        let q = parse_message(&mut StrCursor {
            s: &format!("{id} 5 quota"),
        })
        .unwrap();
        assert_eq!(
            q,
            RefMessage::Quota {
                msg_id: [7; 24],
                ts: 5
            }
        );
        // flags may be absent (old logs): no notification
        let RefMessage::Message(m) = parse_message(&mut StrCursor {
            s: &format!("{id} 5 aGk="),
        })
        .unwrap() else {
            panic!()
        };
        assert_eq!(m.flags, 0);
        assert!(
            parse_message(&mut StrCursor {
                s: &format!("{id} x quota")
            })
            .is_err()
        );
    }

    #[test]
    fn notices() {
        assert_eq!(notice("{}"), Some(BlockNotice { ttl: None }));
        assert_eq!(notice("{\"ttl\":60}"), Some(BlockNotice { ttl: Some(60) }));
        assert_eq!(notice("{\"ttl\":null}"), Some(BlockNotice { ttl: None }));
        assert_eq!(notice("{\"x\":1}"), None);
    }

    #[test]
    fn queue_state_validity() {
        let st =
            parse_queue_state("write=abc,2,2,20,20 read=abc,1,2,10,20 canWrite=T size=1").unwrap();
        assert!(valid_state(&st));
        let bad =
            parse_queue_state("write=abc,2,2,20,20 read=abc,1,2,10,20 canWrite=T size=2").unwrap();
        assert!(!valid_state(&bad));
        assert!(
            parse_queue_state("write=abc,2,2,20 read=abc,1,2,10,20 canWrite=T size=1").is_err()
        );
    }
}
