//! `ntf-server import`: migrate a reference notification server (simplexmq 6.5.x) to hush.
//!
//! Reads the reference's store log (`ntf-server-store.log`, the text records of
//! `Simplex.Messaging.Notifications.Server.StoreLog`: tokens and subscriptions), replays it in
//! memory in order with the reference's semantics (`readNtfStore`) and writes the surviving
//! tokens and subscriptions into a hush ntf [`Store`] (memory, SQLite or PostgreSQL).
//!
//! What the reference does not keep and hush needs is filled in: the client's DH public key from
//! `TNEW` (`client_dh_key`, only stored by hush) is left empty — a repeated `TNEW` is still
//! checked against the imported DH secret; `created_at` is the token's `updatedAt` (or the import
//! time); the periodic-push clock (`cron_sent_at`) starts at the import time; a token counts as
//! verified (`was_active`) when it is ACTIVE or has subscriptions. Last notifications are not in
//! the reference's store log. Service associations (`SERVICE`, `service=`/`serviceAssoc=`) are
//! counted and dropped.
//!
//! Parse errors name the file and line; a last line without its newline that does not parse
//! (the reference killed while writing it) is skipped with a warning (the reading rules shared
//! with `smp-server import` are in [`hush_server_common::storelog`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use hush_crypto::X25519Secret;
use hush_proto::encoding::Parser;
use hush_proto::ntf::{
    DeviceToken, PrivateKeyDer, PublicKeyDer, PushProvider, SmpQueueNtf, SubStatus, TokenStatus,
};
use hush_proto::strtext::StrCursor;
use hush_server_common::storelog;
pub use hush_server_common::storelog::LogError;
use zeroize::Zeroizing;

use crate::store::{Device, Store, SubRec, TokenRec};

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The store log could not be read, or a line of it is not a record (file and line named).
    #[error(transparent)]
    Log(#[from] LogError),
    /// The target already holds tokens and `force` was not given.
    #[error(
        "the target store already holds {0} tokens; import into an empty store (or pass --force to add to it)"
    )]
    TargetNotEmpty(usize),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The configuration names no store to import into.
    #[error("{0}")]
    Open(String),
}

/// What is being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Tokens,
    Subscriptions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub done: u64,
    pub total: u64,
}

/// Options of [`import_reference_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ImportOptions {
    /// Import into a store that already has tokens (same ids are replaced).
    pub force: bool,
}

/// What was imported. Warnings name file and line, never ids, tokens or keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub log_lines: u64,
    /// Tokens / subscriptions written to the target.
    pub tokens: u64,
    pub subscriptions: u64,
    /// Tokens removed in the log (`TDELETE`, or another registration of the device activated).
    pub deleted_tokens: u64,
    /// Subscriptions removed in the log (`SDELETE`, or with their token).
    pub deleted_subscriptions: u64,
    /// Of the imported tokens: ACTIVE, with a periodic interval (`TCRN`).
    pub active_tokens: u64,
    pub cron_tokens: u64,
    /// `SERVICE` records and service associations (not imported).
    pub service_records_skipped: u64,
    /// Records skipped with a warning (unknown token or subscription, …).
    pub records_skipped: u64,
    pub truncated_lines: u64,
    /// The first 100 warnings.
    pub warnings: Vec<String>,
}

hush_server_common::log_report!(ImportReport);

/// [`import_reference_with`] with the default options (refuses a non-empty target).
pub async fn import_reference(
    store_log: &Path,
    target: &Store,
    progress: impl FnMut(Progress),
) -> Result<ImportReport, ImportError> {
    import_reference_with(store_log, target, ImportOptions::default(), progress).await
}

/// Imports the reference ntf-server's store log into `target`; returns once it is durable.
pub async fn import_reference_with(
    store_log: &Path,
    target: &Store,
    opts: ImportOptions,
    mut progress: impl FnMut(Progress),
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport::default();
    let existing = target.counts().tokens;
    if existing > 0 && !opts.force {
        return Err(ImportError::TargetNotEmpty(existing));
    }
    let store_log = storelog::start_backup(store_log, "server", &mut report);
    let text = storelog::read(&store_log)?;
    let mut st = Replay::default();
    storelog::replay(
        &store_log,
        &text,
        &mut report,
        parse_record,
        |report, rec| apply(&mut st, rec, report),
    )?;
    let now = crate::unix_now();

    let mut with_subs: HashSet<Vec<u8>> = HashSet::new();
    let mut subs: Vec<(u64, SubRec)> = st.subs.into_values().collect();
    subs.sort_by_key(|(s, _)| *s);
    for (_, s) in &subs {
        with_subs.insert(s.token_id.clone());
    }
    let mut tokens: Vec<(u64, RefToken)> = st.tokens.into_values().collect();
    tokens.sort_by_key(|(s, _)| *s);

    write_all(target, Phase::Tokens, tokens, &mut progress, |(_, t)| {
        let was_active = t.status == TokenStatus::Active || with_subs.contains(&t.id);
        report.active_tokens += u64::from(t.status == TokenStatus::Active);
        report.cron_tokens += u64::from(t.cron_interval > 0);
        target.put_token(TokenRec {
            id: t.id,
            device: Device::Token(t.token),
            verify_key: t.verify_key,
            client_dh_key: Vec::new(),
            server_dh_key: t.server_dh_key,
            dh_secret: t.dh_secret,
            status: t.status,
            reg_code: t.reg_code,
            cron_interval: t.cron_interval,
            cron_sent_at: now,
            created_at: t.updated_at.unwrap_or(now),
            was_active,
        });
        report.tokens += 1;
    })
    .await;
    write_all(
        target,
        Phase::Subscriptions,
        subs,
        &mut progress,
        |(_, s)| {
            target.put_sub(s);
            report.subscriptions += 1;
        },
    )
    .await;
    target.sync().await?;
    Ok(report)
}

/// Writes `items` into the target with `put`, yielding to the store's writer every 1000
/// (`throttle`) and reporting `phase` progress after each.
async fn write_all<T>(
    target: &Store,
    phase: Phase,
    items: Vec<T>,
    progress: &mut impl FnMut(Progress),
    mut put: impl FnMut(T),
) {
    let total = items.len() as u64;
    for (i, item) in items.into_iter().enumerate() {
        put(item);
        if i % 1000 == 999 {
            target.throttle().await;
        }
        progress(Progress {
            phase,
            done: i as u64 + 1,
            total,
        });
    }
}

/// `ntf-server import`: imports into the store the server's configuration names (SQLite, or
/// PostgreSQL with `[STORE_LOG] db_connection`). Run it while the ntf-server is stopped.
pub async fn import_into_configured_store(
    config: &crate::Config,
    store_log: &Path,
    force: bool,
    progress: impl FnMut(Progress),
) -> Result<ImportReport, ImportError> {
    let mode = config.store_mode();
    if matches!(mode, crate::StoreMode::Memory) {
        return Err(ImportError::Open(
            "[STORE_LOG] enable = off: the server keeps tokens in memory only, there is nothing to import into"
                .into(),
        ));
    }
    let store = Store::open_async(&mode).await?;
    import_reference_with(store_log, &store, ImportOptions { force }, progress).await
}

/// A progress printer for the CLI: `imported N/M tokens` / `subscriptions` on stderr, at most
/// once a second, and always for the last one of a phase.
pub fn stderr_progress() -> impl FnMut(Progress) {
    storelog::stderr_progress(
        |p: &Progress| p.done == p.total,
        |p| {
            let what = match p.phase {
                Phase::Tokens => "tokens",
                Phase::Subscriptions => "subscriptions",
            };
            format!("imported {}/{} {what}", p.done, p.total)
        },
    )
}

// ------------------------------------------------------------------------------------------

/// A token as the reference keeps it (`NtfTknRec`).
#[derive(Clone)]
struct RefToken {
    id: Vec<u8>,
    token: DeviceToken,
    status: TokenStatus,
    verify_key: Vec<u8>,
    server_dh_key: Zeroizing<[u8; 32]>,
    dh_secret: Zeroizing<[u8; 32]>,
    reg_code: Vec<u8>,
    cron_interval: u16,
    updated_at: Option<i64>,
}

/// One record (`NtfStoreLogRecord`).
enum Record {
    CreateToken(Box<RefToken>),
    TokenStatus(Vec<u8>, TokenStatus),
    UpdateToken(Vec<u8>, DeviceToken, Vec<u8>),
    TokenCron(Vec<u8>, u16),
    DeleteToken(Vec<u8>),
    UpdateTokenTime(Vec<u8>, i64),
    /// The subscription and whether a service association was dropped.
    CreateSubscription(Box<SubRec>, bool),
    SubscriptionStatus(Vec<u8>, SubStatus, bool),
    DeleteSubscription(Vec<u8>),
    SetNtfService,
}

#[derive(Default)]
struct Replay {
    tokens: HashMap<Vec<u8>, (u64, RefToken)>,
    subs: HashMap<Vec<u8>, (u64, SubRec)>,
    seq: u64,
}

impl Replay {
    fn delete_token(&mut self, id: &[u8], report: &mut ImportReport) {
        if self.tokens.remove(id).is_some() {
            report.deleted_tokens += 1;
        }
        let before = self.subs.len();
        self.subs.retain(|_, (_, s)| s.token_id != id);
        report.deleted_subscriptions += (before - self.subs.len()) as u64;
    }
}

const NO_TOKEN: &str = "record for a token that does not exist (or was deleted), skipped";
const NO_SUB: &str = "record for a subscription that does not exist (or was deleted), skipped";

/// Applies a record as the reference's `readNtfStore` does; `Err` = skipped with a warning.
fn apply(st: &mut Replay, rec: Record, report: &mut ImportReport) -> Result<(), String> {
    match rec {
        Record::CreateToken(t) => {
            st.seq += 1;
            if st.tokens.contains_key(&t.id) {
                return Err("TCREATE: duplicate token id, record skipped".into());
            }
            st.tokens.insert(t.id.clone(), (st.seq, *t));
        }
        Record::TokenStatus(id, status) => {
            let (_, t) = st.tokens.get_mut(&id).ok_or(NO_TOKEN)?;
            t.status = status;
            if status == TokenStatus::Active {
                // stmRemoveInactiveTokenRegistrations: the device's other registrations go
                let device = t.token.clone();
                let others: Vec<Vec<u8>> = st
                    .tokens
                    .iter()
                    .filter(|(k, (_, o))| **k != id && o.token == device)
                    .map(|(k, _)| k.clone())
                    .collect();
                for o in others {
                    st.delete_token(&o, report);
                }
            }
        }
        Record::UpdateToken(id, token, reg_code) => {
            let (_, t) = st.tokens.get_mut(&id).ok_or(NO_TOKEN)?;
            t.token = token;
            t.reg_code = reg_code;
            t.status = TokenStatus::Registered;
        }
        Record::TokenCron(id, interval) => {
            st.tokens.get_mut(&id).ok_or(NO_TOKEN)?.1.cron_interval = interval;
        }
        Record::DeleteToken(id) => {
            if !st.tokens.contains_key(&id) {
                return Err(NO_TOKEN.into());
            }
            st.delete_token(&id, report);
        }
        Record::UpdateTokenTime(id, t) => {
            st.tokens.get_mut(&id).ok_or(NO_TOKEN)?.1.updated_at = Some(t);
        }
        Record::CreateSubscription(s, service) => {
            report.service_records_skipped += u64::from(service);
            if !st.tokens.contains_key(&s.token_id) {
                return Err("SCREATE: no such token, subscription skipped".into());
            }
            st.seq += 1;
            st.subs.insert(s.id.clone(), (st.seq, *s));
        }
        Record::SubscriptionStatus(id, status, service) => {
            report.service_records_skipped += u64::from(service);
            st.subs.get_mut(&id).ok_or(NO_SUB)?.1.status = status;
        }
        Record::DeleteSubscription(id) => {
            if st.subs.remove(&id).is_some() {
                report.deleted_subscriptions += 1;
            }
        }
        Record::SetNtfService => report.service_records_skipped += 1,
    }
    Ok(())
}

/// The importer's pieces of the reference's record syntax, on the shared cursor.
trait Cur {
    fn device_token(&mut self) -> Result<DeviceToken, String>;
    fn token_status(&mut self) -> Result<TokenStatus, String>;
    fn sub_status(&mut self) -> Result<SubStatus, String>;
    fn secret(&mut self, what: &str) -> Result<Zeroizing<[u8; 32]>, String>;
}

impl Cur for StrCursor<'_> {
    /// `DeviceToken`: `apns_null test_ntf_token` or `<provider> <lowercase hex>`.
    fn device_token(&mut self) -> Result<DeviceToken, String> {
        if self.opt("apns_null test_ntf_token") {
            return Ok(DeviceToken {
                provider: PushProvider::ApnsNull,
                token: b"test_ntf_token".to_vec(),
            });
        }
        let name = self.word().to_string();
        let provider = PushProvider::from_name(&name)
            .filter(|p| *p != PushProvider::PushHandle)
            .ok_or_else(|| format!("bad push provider `{name}`"))?;
        self.lit(" ")?;
        let n = self
            .s
            .bytes()
            .take_while(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
            .count();
        if n % 2 == 1 {
            return Err("odd number of hex characters in the device token".into());
        }
        let token = self.s.as_bytes()[..n].to_vec();
        self.s = &self.s[n..];
        Ok(DeviceToken { provider, token })
    }

    fn token_status(&mut self) -> Result<TokenStatus, String> {
        let w = self.word();
        TokenStatus::parse_text(w).map_err(|_| format!("bad token status `{w}`"))
    }

    /// `NtfSubStatus`; `ERR <text>` takes the rest of the line (as the reference's parser).
    fn sub_status(&mut self) -> Result<SubStatus, String> {
        if self.s.starts_with("ERR ") {
            let s = SubStatus::parse_text(self.s).map_err(|_| "bad subscription status")?;
            self.s = "";
            return Ok(s);
        }
        let w = self.word();
        SubStatus::parse_text(w).map_err(|_| format!("bad subscription status `{w}`"))
    }

    fn secret(&mut self, what: &str) -> Result<Zeroizing<[u8; 32]>, String> {
        let v = Zeroizing::new(self.b64(what)?);
        <[u8; 32]>::try_from(v.as_slice())
            .map(Zeroizing::new)
            .map_err(|_| format!("{what}: {} bytes, expected 32", v.len()))
    }
}

fn parse_record(line: &str) -> Result<Record, String> {
    let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut c = StrCursor { s: rest };
    let r = match tag {
        "TCREATE" => Record::CreateToken(Box::new(token_rec(&mut c)?)),
        "TSTATUS" => {
            let id = c.b64("token id")?;
            c.lit(" ")?;
            Record::TokenStatus(id, c.token_status()?)
        }
        "TUPDATE" => {
            let id = c.b64("token id")?;
            c.lit(" ")?;
            let token = c.device_token()?;
            c.lit(" ")?;
            Record::UpdateToken(id, token, c.b64("registration code")?)
        }
        "TCRON" => {
            let id = c.b64("token id")?;
            c.lit(" ")?;
            let n = c.int("cron interval")?;
            let n = u16::try_from(n).map_err(|_| "cron interval out of range".to_string())?;
            Record::TokenCron(id, n)
        }
        "TDELETE" => Record::DeleteToken(c.b64("token id")?),
        "TTIME" => {
            let id = c.b64("token id")?;
            c.lit(" ")?;
            Record::UpdateTokenTime(id, c.int("time")?)
        }
        "SCREATE" => {
            let (s, service) = sub_rec(&mut c)?;
            Record::CreateSubscription(Box::new(s), service)
        }
        "SSTATUS" => {
            let id = c.b64("subscription id")?;
            c.lit(" ")?;
            let status = c.sub_status()?;
            let service = if c.opt(" service=") {
                c.bool("service")?
            } else {
                false
            };
            Record::SubscriptionStatus(id, status, service)
        }
        "SDELETE" => Record::DeleteSubscription(c.b64("subscription id")?),
        "SERVICE" => {
            // `SERVICE <smp server> service=<off|service id>`: not kept by hush
            if !c.s.starts_with("smp://") || !c.s.contains(" service=") {
                return Err("bad SERVICE record".into());
            }
            c.s = "";
            Record::SetNtfService
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

/// `NtfTknRec` (`Store/Types.hs`).
fn token_rec(c: &mut StrCursor<'_>) -> Result<RefToken, String> {
    c.lit("tknId=")?;
    let id = c.b64("token id")?;
    c.lit(" token=")?;
    let token = c.device_token()?;
    c.lit(" tokenStatus=")?;
    let status = c.token_status()?;
    c.lit(" verifyKey=")?;
    let verify_key = c.b64("verify key")?;
    PublicKeyDer::auth_key(verify_key.clone()).map_err(|e| format!("verify key: {e}"))?;
    c.lit(" dhKeys=")?;
    let public = c.b64("dh public key")?;
    c.lit(" ")?;
    let private = Zeroizing::new(c.b64("dh private key")?);
    let server =
        X25519Secret::from_pkcs8_der(&private).map_err(|e| format!("dh private key: {e}"))?;
    if server.public().to_spki_der() != public {
        return Err("dhKeys: the public key does not belong to the private key".into());
    }
    c.lit(" dhSecret=")?;
    let dh_secret = c.secret("dh secret")?;
    c.lit(" regCode=")?;
    let reg_code = c.b64("registration code")?;
    c.lit(" cron=")?;
    let cron = c.int("cron interval")?;
    let cron_interval = u16::try_from(cron).map_err(|_| "cron interval out of range")?;
    let updated_at = if c.opt(" updatedAt=") {
        Some(c.int("updatedAt")?)
    } else {
        None
    };
    Ok(RefToken {
        id,
        token,
        status,
        verify_key,
        server_dh_key: server.to_bytes(),
        dh_secret,
        reg_code,
        cron_interval,
        updated_at,
    })
}

/// `NtfSubRec` (`Store/Types.hs`); the flag says whether `serviceAssoc=T` was dropped.
fn sub_rec(c: &mut StrCursor<'_>) -> Result<(SubRec, bool), String> {
    c.lit("subId=")?;
    let id = c.b64("subscription id")?;
    c.lit(" smpQueue=")?;
    let mut p = Parser::new(c.s.as_bytes());
    let queue = SmpQueueNtf::parse_prefix(&mut p).map_err(|e| format!("smpQueue: {e}"))?;
    c.s = &c.s[p.position()..];
    c.lit(" notifierKey=")?;
    let key = c.b64("notifier key")?;
    let key = PrivateKeyDer::new(key).map_err(|e| format!("notifier key: {e}"))?;
    c.lit(" tknId=")?;
    let token_id = c.b64("token id")?;
    c.lit(" subStatus=")?;
    let status = c.sub_status()?;
    let service = if c.opt(" serviceAssoc=") {
        c.bool("serviceAssoc")?
    } else {
        false
    };
    Ok((
        SubRec {
            id,
            token_id,
            queue,
            notifier_key: Zeroizing::new(key.as_der().to_vec()),
            status,
        },
        service,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_tokens() {
        let mut c = StrCursor {
            s: "apns_test 0a1b tail",
        };
        let t = c.device_token().unwrap();
        assert_eq!(
            (t.provider, t.token),
            (PushProvider::ApnsTest, b"0a1b".to_vec())
        );
        assert!(
            StrCursor { s: "apns_test 0a1" }.device_token().is_err(),
            "odd hex"
        );
        assert!(StrCursor { s: "fcm 0a" }.device_token().is_err());
        let mut c = StrCursor {
            s: "INVALID,BAD rest",
        };
        assert_eq!(
            c.token_status().unwrap(),
            TokenStatus::Invalid(Some(hush_proto::ntf::InvalidReason::BadToken))
        );
        let mut c = StrCursor {
            s: "ERR SMP AUTH service=T",
        };
        assert_eq!(
            c.sub_status().unwrap(),
            SubStatus::Err(b"SMP AUTH service=T".to_vec())
        );
        assert!(c.s.is_empty());
    }
}
