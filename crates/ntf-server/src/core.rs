//! The notification server's state machine: NTF commands (reference §5.2, §5.3), the relay
//! side (§5.4: `NSUB` through the hush-client pool, status mapping, `NMSG` → last notifications)
//! and the push side (policy → payload → [`PushGateway`], periodic `TCRN` pushes, push-server
//! feedback).
//!
//! Where to look: [`Core::process_transmission`] handles one NTF transmission (no I/O but the
//! store and channels, so it is tested without sockets); [`Core::on_pool_event`] maps relay
//! events; [`dispatcher`] applies the delivery policy with a tokio clock.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hush_client::{AuthKey, PoolEvent, ServerEvent, SmpClientPool};
use hush_crypto::{PrivateKey, PublicKey, TransmissionAuth, X25519Public, X25519Secret};
use hush_proto::error::{CommandError, ErrorType};
use hush_proto::ntf::{
    InvalidReason, NtfCommand, NtfResponse, PnMessageData, SmpQueueNtf, SubStatus, TokenStatus,
    decode_ntf_transmission, encode_ntf_transmission,
};
use hush_proto::transmission::Transmission;
use hush_proto::version::ntf_version;
use hush_server_common::{DestinationPolicy, Rate, RateLimiter};
use push_api::{FeedbackReason, JobId, PushGateway, PushJob, PushKind, PushType};
use tokio::sync::{Semaphore, mpsc};
use zeroize::Zeroizing;

use crate::command::parse_command;
use crate::metrics::Metrics;
use crate::payload::{self, Presentation};
use crate::policy::{Decision, Policy, PolicyMode, PushStyle, TokenBudget};
use crate::store::{
    CapExceeded, Device, Evicted, LastNtf, RemoteChange, Store, SubCaps, SubRec, TokenRec,
};
use hush_proto::address::ProtocolServer;

/// Runtime options of the core (from the configuration).
#[derive(Clone, Debug)]
pub struct CoreOptions {
    pub policy: PolicyMode,
    /// Visible text of hush's coalesced alerts (budget mode).
    pub alert_text: String,
    /// How often tokens are checked for due periodic pushes (reference: 5 min).
    pub cron_sweep: Duration,
    /// Shortest `TCRN` interval in minutes accepted (reference: 20; shorter non-zero intervals
    /// are refused with `QUOTA`). Operator/test knob.
    pub cron_min_minutes: u16,
    /// Length of one `TCRN` minute (reference: 60 s). Test/demo knob only: shortening it makes
    /// periodic pushes observable in seconds (e.g. 100 ms turns `TCRN 20` into every 2 s).
    pub cron_minute: Duration,
    /// How often push-server feedback is polled.
    pub feedback_interval: Duration,
    /// Pushes handed to the gateway concurrently.
    pub push_concurrency: usize,
    /// `NSUB`s in flight at once when (re)subscribing many subscriptions (the client batches
    /// concurrent commands into blocks).
    pub subscribe_batch: usize,
    /// Padded size of encrypted push data ([`payload::DEFAULT_PAYLOAD_PAD`]; the reference
    /// uses [`payload::PAYLOAD_PAD`]).
    pub payload_padding: usize,
    /// `TNEW`/`TRPL` (each sends a verification push) of the whole server; refused with
    /// `ERR QUOTA` beyond it (`[LIMITS] token_rate`, `token_burst`).
    pub token_rate: Rate,
    /// Tokens never verified are deleted this long after `TNEW` (`[LIMITS] unverified_token_ttl`).
    pub unverified_token_ttl: Duration,
    /// Tokens of one device (push target): a further `TNEW` evicts the oldest never-verified one
    /// (`[LIMITS] tokens_per_device`).
    pub tokens_per_device: usize,
    /// Subscriptions per token, relays per token, relays in total (`[LIMITS]`).
    pub sub_caps: SubCaps,
    /// Which relay addresses `SNEW` may name (`[SUBSCRIBER] relay_destinations`).
    pub relay_destinations: DestinationPolicy,
    /// How relays are reached (`[SUBSCRIBER] socks_proxy`, `socks_mode`, …): the `SNEW` check
    /// does not look up names that the proxy resolves.
    pub relay_network: hush_transport::NetworkConfig,
    /// `NSUB` requests waiting for a subscriber (bounded queue; `SNEW` waits when it is full).
    pub subscribe_queue: usize,
}

impl Default for CoreOptions {
    fn default() -> Self {
        CoreOptions {
            policy: PolicyMode::default(),
            alert_text: payload::DEFAULT_ALERT_TEXT.to_string(),
            cron_sweep: Duration::from_secs(300),
            cron_min_minutes: 20,
            cron_minute: Duration::from_secs(60),
            feedback_interval: Duration::from_secs(5),
            push_concurrency: 256,
            subscribe_batch: 900,
            payload_padding: payload::DEFAULT_PAYLOAD_PAD,
            token_rate: DEFAULT_TOKEN_RATE,
            unverified_token_ttl: Duration::from_secs(86_400),
            tokens_per_device: 8,
            sub_caps: DEFAULT_SUB_CAPS,
            relay_destinations: DestinationPolicy::Public,
            relay_network: hush_transport::NetworkConfig::direct(),
            subscribe_queue: 4096,
        }
    }
}

/// Default `[LIMITS] token_rate` / `token_burst`: 10 `TNEW`/`TRPL` per second for the whole
/// server, 200 at once. Legitimate registrations are rare (install, token refresh); the rate
/// also bounds the never-verified tokens held until `unverified_token_ttl`: at most
/// 10 × 86400 ≈ 864k (a few hundred MB) with the defaults.
pub const DEFAULT_TOKEN_RATE: Rate = Rate::new(10.0, 200);
/// Default `[LIMITS] token_rate_per_connection` / `token_burst_per_connection`: one every 10 s,
/// 10 at once (a client registers a token once and replaces it rarely).
pub const DEFAULT_TOKEN_RATE_PER_CONNECTION: Rate = Rate::new(0.1, 10);
/// Default `[LIMITS] token_rate_per_ip` / `token_burst_per_ip`: one a second, 20 at once, for all
/// connections from one address (generous: devices behind one carrier NAT register rarely).
pub const DEFAULT_TOKEN_RATE_PER_IP: Rate = Rate::new(1.0, 20);
/// Default caps: 4096 subscriptions per token (a receive queue per contact and group member
/// with notifications on, two during queue rotation: hundreds of contacts and a few large
/// groups fit), 64 relays per token (queues live on the user's own configured relays: the
/// presets plus a few own ones), 4096 relays in total (one connection each).
pub const DEFAULT_SUB_CAPS: SubCaps = SubCaps {
    per_token: 4096,
    relays_per_token: 64,
    relays: 4096,
};

/// What the dispatcher is asked to do.
#[derive(Debug)]
pub(crate) enum PushRequest {
    Verification(Vec<u8>),
    /// A notification of the token: the push the policy sends for it names this notification
    /// (with the token's other newest ones), even when more arrived meanwhile.
    Notification(Vec<u8>, Box<LastNtf>),
}

/// The per-connection facts a command needs.
pub struct ConnCtx<'a> {
    pub version: u16,
    pub session_id: &'a [u8],
    pub session_key: Option<&'a X25519Secret>,
    /// The connection's own `TNEW`/`TRPL` rate limits (its own and its address's).
    pub token_limit: Option<&'a TokenLimits>,
}

/// A connection's `TNEW`/`TRPL` limits: its own bucket, and its address's bucket shared by every
/// connection from that IPv4 address or IPv6 /64 (`token_rate_per_ip`), so that opening more
/// connections does not buy more tokens and one address cannot drain the server-wide budget.
pub struct TokenLimits {
    pub connection: RateLimiter,
    pub per_ip: Option<(
        Arc<hush_server_common::KeyedRateLimiter<hush_server_common::limits::IpKey>>,
        hush_server_common::limits::IpKey,
    )>,
}

impl TokenLimits {
    fn allow(&self) -> bool {
        self.connection.allow() && self.per_ip.as_ref().is_none_or(|(l, k)| l.allow(k))
    }
}

/// Shared state of one ntf-server.
pub struct Core<G> {
    pub store: Store,
    pub metrics: Metrics,
    pub options: CoreOptions,
    pub pool: SmpClientPool,
    pub(crate) gateway: Arc<G>,
    pushes: mpsc::Sender<PushRequest>,
    subscribing: Arc<Semaphore>,
    /// `NSUB` requests for the subscriber task (bounded).
    subscribe_tx: mpsc::Sender<SubRec>,
    token_limiter: RateLimiter,
    /// PostgreSQL mode: the relays whose lease this instance holds (only those are subscribed).
    ownership: Option<Ownership>,
}

/// Relays this instance holds a lease for, and a wake-up for the lease task (a relay nobody
/// holds yet, named by `SNEW` here or elsewhere).
#[derive(Default)]
pub struct Ownership {
    held: std::sync::Mutex<HashSet<ProtocolServer>>,
    wake: tokio::sync::Notify,
}

/// A job id that is the same wherever the same push is built (several instances, a retry), so
/// that the push-server delivers it once.
fn derived_job_id(parts: &[&[u8]]) -> JobId {
    let mut b = Vec::new();
    for p in parts {
        b.extend_from_slice(&(p.len() as u32).to_be_bytes());
        b.extend_from_slice(p);
    }
    let h = hush_crypto::sha256(&b);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    JobId(id)
}

impl<G> std::fmt::Debug for Core<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    crate::unix_now()
}

/// Current Unix time in milliseconds (periodic pushes with a shortened test minute).
fn now_ms() -> i128 {
    i128::from(hush_server_common::time::unix_millis())
}

fn random_id() -> Vec<u8> {
    hush_crypto::random_nonce().to_vec()
}

fn err(e: ErrorType) -> NtfResponse {
    NtfResponse::Err(e)
}

const AUTH: NtfResponse = NtfResponse::Err(ErrorType::Auth);

/// The notifier key of a subscription as a client key.
fn auth_key(pkcs8: &[u8]) -> Option<AuthKey> {
    match PrivateKey::from_pkcs8_der(pkcs8).ok()? {
        PrivateKey::Ed25519(k) => Some(AuthKey::Ed25519(k)),
        PrivateKey::Ed448(k) => Some(AuthKey::Ed448(k)),
        PrivateKey::X25519(k) => Some(AuthKey::X25519(k)),
        PrivateKey::X448(_) => None,
    }
}

fn map_invalid(r: &push_api::InvalidReason) -> InvalidReason {
    match r {
        push_api::InvalidReason::Bad => InvalidReason::BadToken,
        push_api::InvalidReason::Topic => InvalidReason::TokenNotForTopic,
        push_api::InvalidReason::Expired => InvalidReason::ExpiredToken,
        push_api::InvalidReason::Unregistered => InvalidReason::Unregistered,
    }
}

/// SMP subscription status from an `NSUB` error (reference §5.4).
fn sub_status_for_error(e: &hush_client::ClientError) -> SubStatus {
    match e.smp_error() {
        Some(ErrorType::Auth) => SubStatus::Auth,
        Some(ErrorType::Service) => SubStatus::Service,
        Some(other) => {
            let mut b = Vec::new();
            hush_proto::encoding::Encode::encode(other, &mut b);
            SubStatus::Err(b)
        }
        None if e.is_permanent() => SubStatus::Err(e.to_string().into_bytes()),
        None => SubStatus::Pending,
    }
}

impl<G: PushGateway + 'static> Core<G> {
    /// Creates the core and spawns its background tasks (dispatcher, relay events, periodic
    /// sweep, feedback), which stop when `shutdown` fires.
    pub fn start(
        store: Store,
        options: CoreOptions,
        gateway: Arc<G>,
        pool: SmpClientPool,
        pool_events: hush_client::PoolEvents,
        shutdown: hush_server_common::Shutdown,
    ) -> (Arc<Core<G>>, Vec<tokio::task::JoinHandle<()>>) {
        let (tx, rx) = mpsc::channel(32_768);
        let (sub_tx, sub_rx) = mpsc::channel(options.subscribe_queue.max(1));
        store.set_cron_minute(options.cron_minute);
        let pg = store.postgres().cloned();
        let core = Arc::new(Core {
            ownership: pg.as_ref().map(|_| Ownership::default()),
            store,
            metrics: Metrics::new(),
            subscribing: Arc::new(Semaphore::new(options.subscribe_batch.max(1))),
            token_limiter: RateLimiter::new(options.token_rate),
            options,
            pool,
            gateway,
            pushes: tx,
            subscribe_tx: sub_tx.clone(),
        });
        let mut tasks = vec![
            tokio::spawn(dispatcher(core.clone(), rx, shutdown.clone())),
            tokio::spawn(subscriber(core.clone(), sub_rx, shutdown.clone())),
            tokio::spawn(relay_events(core.clone(), pool_events, shutdown.clone())),
            tokio::spawn(cron_loop(core.clone(), shutdown.clone())),
            tokio::spawn(feedback_loop(core.clone(), shutdown.clone())),
            tokio::spawn(gauges_loop(core.clone(), shutdown.clone())),
        ];
        if let Some(pg) = pg {
            // Several instances: subscriptions are fed relay by relay as leases are taken.
            if let Some(rx) = pg.take_remote_changes() {
                tasks.push(tokio::spawn(remote_changes(
                    core.clone(),
                    rx,
                    shutdown.clone(),
                )));
            }
            tasks.push(tokio::spawn(lease_loop(core.clone(), pg, shutdown)));
            return (core, tasks);
        }
        // Subscriptions loaded from the store, fed through the bounded queue.
        let mut subs: Vec<SubRec> = core
            .store
            .subs()
            .into_iter()
            .filter(|s| s.status.should_subscribe())
            .collect();
        if core.pool.uses_service() {
            // Service credentials: the pool gets every relay's subscriptions at once and sends
            // one NSUBS per relay, NSUB only for what that did not cover (PoolEvent::Resubscribed
            // sets the statuses). NEW ones keep their own NSUB.
            let mut by_relay: HashMap<ProtocolServer, hush_client::NotifierList> = HashMap::new();
            subs.retain(|s| {
                if s.status == SubStatus::New {
                    return true;
                }
                if let Some(k) = auth_key(&s.notifier_key) {
                    by_relay
                        .entry(s.queue.server.clone())
                        .or_default()
                        .push((s.queue.notifier_id.clone(), Arc::new(k)));
                }
                false
            });
            for (server, list) in by_relay {
                let _ = core.pool.remember_notifiers(&server, list);
            }
        }
        if !subs.is_empty() {
            tracing::info!(count = subs.len(), "resubscribing stored subscriptions");
            let mut shutdown = shutdown;
            tasks.push(tokio::spawn(async move {
                for s in subs {
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        r = sub_tx.send(s) => if r.is_err() { return },
                    }
                }
            }));
        }
        (core, tasks)
    }

    // --- commands ------------------------------------------------------------------------

    /// Processes one transmission; returns the encoded response transmission.
    pub async fn process_transmission(&self, c: &ConnCtx<'_>, bytes: &[u8]) -> Vec<u8> {
        let (corr, entity, resp) = match decode_ntf_transmission(bytes, c.version) {
            Err(_) => (Vec::new(), Vec::new(), err(ErrorType::Block)),
            Ok(t) => {
                let r = self.transmission(c, &t).await;
                let entity = if matches!(r, NtfResponse::Err(ErrorType::Block)) {
                    Vec::new()
                } else {
                    t.entity_id.to_vec()
                };
                (t.corr_id.to_vec(), entity, r)
            }
        };
        encode_response(c.session_id, &corr, &entity, &resp, c.version)
    }

    async fn transmission(&self, c: &ConnCtx<'_>, t: &Transmission<'_>) -> NtfResponse {
        if !matches!(t.authorization.len(), 0 | 64 | 80 | 114) {
            return err(ErrorType::Block);
        }
        if c.version < ntf_version::AUTH_BATCH_CMDS && t.session_id != c.session_id {
            return err(ErrorType::Session);
        }
        let sc = match parse_command(t.command, c.version) {
            Ok(x) => x,
            Err(e) => return err(e),
        };
        if let Err(e) = sc
            .cmd
            .check_credentials(!t.authorization.is_empty(), t.entity_id)
        {
            return err(e);
        }
        let auth = TransmissionAuth::parse(t.authorization).ok().flatten();
        let authorized = t.authorized(c.session_id);
        let verify = |key: Option<&[u8]>| -> bool {
            let pk = key.and_then(|k| PublicKey::from_spki_der(k).ok());
            hush_crypto::verify_transmission(
                pk.as_ref(),
                auth.as_ref(),
                c.session_key,
                &authorized,
                t.corr_id,
            )
        };
        match sc.cmd {
            NtfCommand::Ping => NtfResponse::Pong,
            NtfCommand::Tnew {
                verify_key, dh_key, ..
            } => {
                if !verify(Some(verify_key.as_bytes())) {
                    return AUTH;
                }
                let Some(device) = sc.device else {
                    return err(ErrorType::Cmd(CommandError::Syntax));
                };
                if self.token_rate_exceeded(c) {
                    return err(ErrorType::Quota);
                }
                self.tnew(device, verify_key.as_bytes(), dh_key.as_bytes())
                    .await
            }
            NtfCommand::Snew {
                token_id,
                queue,
                notifier_key,
            } => {
                let tkn = self.store.token(&token_id);
                if !verify(tkn.as_ref().map(|t| t.verify_key.as_slice())) {
                    return AUTH;
                }
                match tkn {
                    // Only tokens that were verified (reference: also INVALID/EXPIRED tokens
                    // that never were, e.g. after a rejected verification push).
                    Some(t) if t.status.allows_sub_commands() && t.was_active => {
                        self.snew(&t, queue, notifier_key.as_der()).await
                    }
                    _ => AUTH,
                }
            }
            NtfCommand::Schk | NtfCommand::Sdel => {
                let sub = self.store.sub(t.entity_id);
                let tkn = sub.as_ref().and_then(|s| self.store.token(&s.token_id));
                if !verify(tkn.as_ref().map(|t| t.verify_key.as_slice())) {
                    return AUTH;
                }
                match (sub, tkn) {
                    (Some(s), Some(tk)) if tk.status.allows_sub_commands() => {
                        if matches!(sc.cmd, NtfCommand::Schk) {
                            NtfResponse::Sub(s.status)
                        } else {
                            self.delete_sub(&s).await
                        }
                    }
                    _ => AUTH,
                }
            }
            cmd => {
                let tkn = self.store.token(t.entity_id);
                if !verify(tkn.as_ref().map(|t| t.verify_key.as_slice())) {
                    return AUTH;
                }
                let Some(tkn) = tkn else { return AUTH };
                if matches!(cmd, NtfCommand::Trpl { .. }) && self.token_rate_exceeded(c) {
                    return err(ErrorType::Quota);
                }
                self.token_command(tkn, cmd, sc.device).await
            }
        }
    }

    /// `TNEW`/`TRPL` over the connection's or the server's rate (counted in
    /// `hush_ntf_token_commands_rate_limited`).
    fn token_rate_exceeded(&self, c: &ConnCtx<'_>) -> bool {
        let ok = c.token_limit.is_none_or(|l| l.allow()) && self.token_limiter.allow();
        if !ok {
            self.metrics.token_rate_limited.inc();
            tracing::debug!("TNEW/TRPL over the rate limit");
        }
        !ok
    }

    /// Forgets the relay subscriptions of deleted tokens.
    fn forget_subs(&self, subs: Vec<SubRec>) {
        for s in subs {
            self.pool
                .forget_subscription(&s.queue.server, &s.queue.notifier_id);
            self.metrics.subscriptions_deleted.inc();
        }
    }

    fn evicted(&self, e: Evicted) {
        self.metrics.tokens_evicted.inc_by(e.tokens as u64);
        self.forget_subs(e.subs);
    }

    fn cap_refused(&self, e: CapExceeded) -> NtfResponse {
        self.metrics.cap_refused(e.label());
        tracing::debug!(cap = %e, "cap reached");
        err(ErrorType::Quota)
    }

    async fn synced(&self, r: NtfResponse) -> NtfResponse {
        match self.store.sync().await {
            Ok(()) => r,
            Err(e) => {
                tracing::error!(error = %e, "store sync failed");
                err(ErrorType::Internal)
            }
        }
    }

    async fn tnew(&self, device: Device, verify_key: &[u8], dh_key: &[u8]) -> NtfResponse {
        let Ok(client_dh) = X25519Public::from_spki_der(dh_key) else {
            return err(ErrorType::Cmd(CommandError::Syntax));
        };
        if let Some(t) = self.store.token_by_registration(&device, verify_key) {
            // Same registration: must be the same DH key, then same id, key and code.
            let server = X25519Secret::from_bytes(*t.server_dh_key);
            let dh = server.dh(&client_dh);
            if !hush_crypto::ct_eq(dh.as_bytes(), t.dh_secret.as_slice()) {
                return AUTH;
            }
            self.store.update_token(&t.id, |t| {
                let reset = matches!(
                    t.status,
                    TokenStatus::New | TokenStatus::Invalid(_) | TokenStatus::Expired
                );
                if reset {
                    t.status = TokenStatus::Registered;
                }
                reset
            });
            let r = NtfResponse::TknId {
                token_id: t.id.clone(),
                server_dh_key: match hush_proto::ntf::PublicKeyDer::dh_key(
                    server.public().to_spki_der(),
                ) {
                    Ok(k) => k,
                    Err(_) => return err(ErrorType::Internal),
                },
            };
            let r = self.synced(r).await;
            self.request_push(PushRequest::Verification(t.id)).await;
            return r;
        }
        let server = X25519Secret::generate();
        let dh = server.dh(&client_dh);
        let Ok(server_dh_key) =
            hush_proto::ntf::PublicKeyDer::dh_key(server.public().to_spki_der())
        else {
            return err(ErrorType::Internal);
        };
        let t = TokenRec {
            id: random_id(),
            device,
            verify_key: verify_key.to_vec(),
            client_dh_key: dh_key.to_vec(),
            server_dh_key: Zeroizing::new(*server.to_bytes()),
            dh_secret: Zeroizing::new(*dh.as_bytes()),
            status: TokenStatus::Registered,
            reg_code: hush_crypto::random_nonce()
                .iter()
                .chain(&hush_crypto::random_nonce()[..8])
                .copied()
                .collect(),
            cron_interval: 0,
            cron_sent_at: 0,
            created_at: now_secs(),
            was_active: false,
        };
        let id = t.id.clone();
        match self.store.add_token(t, self.options.tokens_per_device) {
            Ok(e) => self.evicted(e),
            Err(e) => return self.cap_refused(e),
        }
        self.metrics.tokens_created.inc();
        let r = self
            .synced(NtfResponse::TknId {
                token_id: id.clone(),
                server_dh_key,
            })
            .await;
        self.request_push(PushRequest::Verification(id)).await;
        r
    }

    async fn token_command(
        &self,
        t: TokenRec,
        cmd: NtfCommand,
        device: Option<Device>,
    ) -> NtfResponse {
        match cmd {
            NtfCommand::Tchk => NtfResponse::Tkn(t.status),
            NtfCommand::Tvfy { code } => {
                // Checked and changed under one store lock (a concurrent TRPL changes the code).
                let mut before = None;
                let ok = self.store.update_token(&t.id, |x| {
                    if !x.status.allows_verification() || !hush_crypto::ct_eq(&code, &x.reg_code) {
                        return false;
                    }
                    before = Some(x.status);
                    x.status = TokenStatus::Active;
                    x.was_active = true;
                    true
                });
                if !ok {
                    return AUTH;
                }
                if before != Some(TokenStatus::Active) {
                    self.metrics.tokens_verified.inc();
                }
                let device = self.store.token(&t.id).map_or(t.device, |x| x.device);
                // Activation removes other registrations of the same device.
                for other in self.store.tokens_with_device(&device) {
                    if other != t.id {
                        self.delete_token(&other);
                    }
                }
                self.synced(NtfResponse::Ok).await
            }
            NtfCommand::Trpl { .. } => {
                let Some(device) = device else {
                    return err(ErrorType::Cmd(CommandError::Syntax));
                };
                let code: Vec<u8> = hush_crypto::random_nonce()
                    .iter()
                    .chain(&hush_crypto::random_nonce()[..8])
                    .copied()
                    .collect();
                match self
                    .store
                    .replace_device(&t.id, device, code, self.options.tokens_per_device)
                {
                    None => return AUTH,
                    Some(Err(e)) => return self.cap_refused(e),
                    Some(Ok(e)) => self.evicted(e),
                }
                self.metrics.tokens_replaced.inc();
                let r = self.synced(NtfResponse::Ok).await;
                self.request_push(PushRequest::Verification(t.id)).await;
                r
            }
            NtfCommand::Tdel => {
                self.delete_token(&t.id);
                self.synced(NtfResponse::Ok).await
            }
            NtfCommand::Tcrn { minutes } => {
                if (1..self.options.cron_min_minutes).contains(&minutes) {
                    return err(ErrorType::Quota);
                }
                self.store.update_token(&t.id, |x| {
                    x.cron_interval = minutes;
                    x.cron_sent_at = now_secs();
                    true
                });
                self.synced(NtfResponse::Ok).await
            }
            _ => err(ErrorType::Cmd(CommandError::Prohibited)),
        }
    }

    fn delete_token(&self, id: &[u8]) {
        let subs = self.store.delete_token(id);
        self.forget_subs(subs);
        self.metrics.tokens_deleted.inc();
    }

    async fn snew(&self, t: &TokenRec, queue: SmpQueueNtf, notifier_key: &[u8]) -> NtfResponse {
        if let Some(s) = self.store.sub_by_queue(&queue) {
            if s.token_id == t.id && hush_crypto::ct_eq(&s.notifier_key, notifier_key) {
                if !s.status.should_subscribe() {
                    // Retry of a subscription that ended (END/DELETED/AUTH…): subscribe again.
                    self.store.set_sub_status(&s.id, SubStatus::New);
                    self.subscribe(s.clone()).await;
                }
                return NtfResponse::SubId { sub_id: s.id };
            }
            return AUTH;
        }
        if auth_key(notifier_key).is_none() {
            return err(ErrorType::Cmd(CommandError::Syntax));
        }
        // A relay already in use was checked when it was first named (and every connection
        // attempt checks again, see `relays::CheckedConnector`).
        if !self.store.relay_in_use(&queue.server)
            && let Err(e) = crate::relays::check_server(
                &queue.server,
                self.options.relay_destinations,
                &self.options.relay_network,
            )
            .await
        {
            self.metrics.destinations_refused.inc();
            tracing::debug!(error = %e, "SNEW relay address refused");
            return err(ErrorType::Cmd(CommandError::Prohibited));
        }
        let s = SubRec {
            id: random_id(),
            token_id: t.id.clone(),
            queue,
            notifier_key: Zeroizing::new(notifier_key.to_vec()),
            status: SubStatus::New,
        };
        let id = s.id.clone();
        if let Err(e) = self.store.add_sub(s.clone(), self.options.sub_caps) {
            return self.cap_refused(e);
        }
        if let Some(o) = &self.ownership
            && !self.owns(&s.queue.server)
        {
            // Perhaps a relay nobody holds yet: claim it now rather than at the next round.
            o.wake.notify_one();
        }
        self.metrics.subscriptions_created.inc();
        let r = self.synced(NtfResponse::SubId { sub_id: id }).await;
        self.subscribe(s).await;
        r
    }

    async fn delete_sub(&self, s: &SubRec) -> NtfResponse {
        self.store.delete_sub(&s.id);
        self.pool
            .forget_subscription(&s.queue.server, &s.queue.notifier_id);
        self.metrics.subscriptions_deleted.inc();
        self.synced(NtfResponse::Ok).await
    }

    // --- relay side ----------------------------------------------------------------------

    /// Whether this instance subscribes to `server` (always, unless several instances share a
    /// PostgreSQL store and another one holds the relay's lease).
    pub fn owns(&self, server: &ProtocolServer) -> bool {
        match &self.ownership {
            None => true,
            Some(o) => o
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(server),
        }
    }

    /// Relays this instance holds a lease for (PostgreSQL mode; empty otherwise).
    pub fn held_relays(&self) -> Vec<ProtocolServer> {
        match &self.ownership {
            None => Vec::new(),
            Some(o) => o
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }

    /// Subscribes (`NSUB`) in the background: queued (bounded; waits while the queue is full)
    /// for the subscriber task, which runs at most `subscribe_batch` at once. The pool
    /// remembers it and subscribes again after every reconnect. Concurrent `NSUB`s share blocks.
    pub async fn subscribe(&self, s: SubRec) {
        if self.subscribe_tx.send(s).await.is_err() {
            tracing::warn!("subscriber stopped");
        }
    }

    /// Applies one relay-pool event.
    pub async fn on_pool_event(&self, ev: PoolEvent) {
        // Several instances: on a relay this instance no longer holds, connection events and
        // END (the relay moving a subscription to the instance that took the lease over) say
        // nothing about the subscriptions' state; writing them would overwrite the holder's.
        // Notifications still arriving there are pushed (at-least-once), DELETED is final.
        let server = match &ev {
            PoolEvent::Connected { server, .. }
            | PoolEvent::ConnectFailed { server, .. }
            | PoolEvent::Disconnected { server, .. }
            | PoolEvent::Resubscribed { server, .. } => Some(server),
            PoolEvent::Event {
                server,
                event: ServerEvent::End { .. },
            } => Some(server),
            _ => None,
        };
        if server.is_some_and(|s| !self.owns(s)) {
            return;
        }
        match ev {
            PoolEvent::Connected { .. } => {
                self.metrics.smp_connected.inc();
            }
            PoolEvent::ConnectFailed { server, .. } => {
                for s in self.store.subs_on_server(&server) {
                    if s.status == SubStatus::New {
                        self.store.set_sub_status(&s.id, SubStatus::Pending);
                    }
                }
            }
            PoolEvent::Disconnected { server, .. } => {
                self.metrics.smp_disconnected.inc();
                for s in self.store.subs_on_server(&server) {
                    if s.status == SubStatus::Active {
                        self.store.set_sub_status(&s.id, SubStatus::Inactive);
                    }
                }
            }
            PoolEvent::Resubscribed { server, failed, .. } => {
                let failed: HashMap<Vec<u8>, hush_client::ClientError> =
                    failed.into_iter().collect();
                for s in self.store.subs_on_server(&server) {
                    // NEW subscriptions have their own NSUB in flight, which sets their status.
                    if !s.status.should_subscribe() || s.status == SubStatus::New {
                        continue;
                    }
                    let st = match failed.get(&s.queue.notifier_id) {
                        None => SubStatus::Active,
                        Some(e) => sub_status_for_error(e),
                    };
                    self.store.set_sub_status(&s.id, st);
                }
            }
            PoolEvent::Event { server, event } => match event {
                ServerEvent::Notification {
                    notifier_id,
                    nonce,
                    enc_meta,
                } => {
                    self.on_nmsg(
                        SmpQueueNtf {
                            server,
                            notifier_id,
                        },
                        nonce,
                        enc_meta,
                    )
                    .await
                }
                ServerEvent::End { entity_id } => {
                    self.set_status_by_queue(server, entity_id, SubStatus::End)
                }
                ServerEvent::Deleted { entity_id } => {
                    self.set_status_by_queue(server, entity_id, SubStatus::Deleted)
                }
                _ => {}
            },
        }
    }

    fn set_status_by_queue(
        &self,
        server: hush_proto::address::ProtocolServer,
        notifier_id: Vec<u8>,
        st: SubStatus,
    ) {
        let q = SmpQueueNtf {
            server,
            notifier_id,
        };
        if let Some(s) = self.store.sub_by_queue(&q) {
            self.store.set_sub_status(&s.id, st);
        }
    }

    async fn on_nmsg(&self, queue: SmpQueueNtf, nonce: [u8; 24], enc_meta: Vec<u8>) {
        self.metrics.notifications_received.inc();
        let Some((sub_id, token_id, sub_queue, true)) = self.store.ntf_route(&queue) else {
            self.metrics.notifications_dropped.inc();
            return;
        };
        let data = PnMessageData {
            queue: sub_queue,
            ntf_ts: now_secs(),
            nonce,
            enc_meta,
        };
        let own = LastNtf { sub_id, data };
        self.store.record_last_ntf(&token_id, own.clone());
        self.request_push(PushRequest::Notification(token_id, Box::new(own)))
            .await;
    }

    async fn request_push(&self, r: PushRequest) {
        if self.pushes.send(r).await.is_err() {
            tracing::warn!("push dispatcher stopped");
        }
    }

    // --- push side -----------------------------------------------------------------------

    /// Builds and submits a message push for the token's last notifications; with `own`, that
    /// notification is the push's newest item whatever arrived after it (a burst of more than
    /// [`crate::payload::MAX_PUSH_NTFS`] notifications for one token, e.g. the backlog a relay
    /// delivers after a takeover, would otherwise leave some named by no push).
    async fn push_message(
        self: &Arc<Self>,
        token_id: &[u8],
        style: PushStyle,
        own: Option<&LastNtf>,
        permits: &Arc<Semaphore>,
    ) {
        let Some(t) = self.store.token(token_id) else {
            return;
        };
        if t.status != TokenStatus::Active {
            return;
        }
        let Some(target) = t.device.target() else {
            return;
        };
        let mut list = self.store.last_ntfs(token_id);
        if let Some(own) = own {
            list.retain(|n| n.sub_id != own.sub_id);
            list.push(own.clone());
            let skip = list.len().saturating_sub(crate::payload::MAX_PUSH_NTFS);
            list.drain(..skip);
        }
        let items: Vec<PnMessageData> = list.into_iter().map(|n| n.data).collect();
        let presentation = match (&self.options.policy, style) {
            (_, PushStyle::Silent) => Presentation::Background,
            (PolicyMode::Reference, PushStyle::Alert) => Presentation::Alert {
                text: payload::REFERENCE_ALERT_TEXT,
            },
            (PolicyMode::Budget(_), PushStyle::Alert) => Presentation::Alert {
                text: &self.options.alert_text,
            },
        };
        let dh = hush_crypto::DhSecret::from_bytes(*t.dh_secret);
        let payload = match payload::message_payload(
            &dh,
            &hush_crypto::random_nonce(),
            &items,
            presentation,
            self.options.payload_padding,
        ) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "no message push");
                return;
            }
        };
        let (push_type, priority, label) = match style {
            PushStyle::Silent => (PushType::Background, Some(5), "silent"),
            PushStyle::Alert => (PushType::Alert, None, "alert"),
        };
        let style_tag: &[u8] = match style {
            PushStyle::Silent => b"silent",
            PushStyle::Alert => b"alert",
        };
        let job_id = match items.last() {
            Some(n) => derived_job_id(&[b"message", token_id, style_tag, &n.nonce]),
            None => JobId::random(),
        };
        let job = PushJob {
            job_id,
            target,
            kind: PushKind::Message,
            payload,
            push_type,
            priority,
            expires_at: None,
            collapse_id: None,
            report_delivery: false,
        };
        self.metrics.push_sent(label);
        self.submit(job, permits, |m, ok| {
            if ok {
                m.notifications_delivered.inc()
            } else {
                m.notifications_failed.inc()
            }
        })
        .await;
    }

    /// Hands a job to the gateway in a task of its own, once one of `permits` is free (the
    /// caller waits for it: at most `push_concurrency` submissions exist at once).
    async fn submit(
        self: &Arc<Self>,
        job: PushJob,
        permits: &Arc<Semaphore>,
        count: impl FnOnce(&Metrics, bool) + Send + 'static,
    ) {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let core = self.clone();
        core.metrics
            .push_queue_length
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            let _permit = permit;
            let r = core.gateway.submit(job).await;
            core.metrics
                .push_queue_length
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            if let Err(e) = &r {
                tracing::warn!(error = %e, "push submit failed");
            }
            count(&core.metrics, r.is_ok());
        });
    }

    async fn push_verification(self: &Arc<Self>, token_id: &[u8], permits: &Arc<Semaphore>) {
        let Some(t) = self.store.token(token_id) else {
            return;
        };
        let Some(target) = t.device.target() else {
            // `apns_null` (the apps' "test server" button): never pushed, but the push counts as
            // delivered, as the reference's null push client succeeds: REGISTERED → CONFIRMED.
            self.metrics.verification_delivered.inc();
            self.store.update_token(token_id, |x| {
                let registered = x.status == TokenStatus::Registered;
                if registered {
                    x.status = TokenStatus::Confirmed;
                }
                registered
            });
            return;
        };
        let dh = hush_crypto::DhSecret::from_bytes(*t.dh_secret);
        let Ok(payload) = payload::verification_payload(
            &dh,
            &hush_crypto::random_nonce(),
            &t.reg_code,
            self.options.payload_padding,
        ) else {
            return;
        };
        let job = PushJob {
            job_id: JobId::random(),
            target,
            kind: PushKind::Verification,
            payload,
            push_type: PushType::Background,
            priority: Some(5),
            expires_at: None,
            collapse_id: None,
            report_delivery: true,
        };
        self.metrics.verification_queued.inc();
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let core = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match core.gateway.submit(job).await {
                // CONFIRMED when the push-server reports that APNs accepted it (feedback).
                Ok(_) => {}
                Err(e) => {
                    core.metrics.verification_failed.inc();
                    tracing::warn!(error = %e, "verification push submit failed");
                }
            }
        });
    }

    /// Periodic pushes due now (reference: a sweep every 5 min). Walks the store's due-time
    /// index from its start: only due tokens are visited.
    pub async fn cron_sweep(self: &Arc<Self>, permits: &Arc<Semaphore>) -> usize {
        const BATCH: usize = 1024;
        let mut n = 0;
        loop {
            let due = self.store.take_due_cron(now_ms(), now_secs(), BATCH);
            let last = due.len() < BATCH;
            for t in due {
                let Some(target) = t.device.target() else {
                    continue;
                };
                // One id per token and period: instances sweeping the same period agree.
                let minute_ms = i128::try_from(self.options.cron_minute.as_millis())
                    .unwrap_or(i128::MAX)
                    .max(1);
                let period = minute_ms
                    .saturating_mul(i128::from(t.cron_interval))
                    .max(1000);
                let slot = now_ms() / period;
                let job = PushJob {
                    job_id: derived_job_id(&[b"periodic", &t.id, &slot.to_be_bytes()]),
                    target,
                    kind: PushKind::CheckMessages,
                    payload: payload::check_messages_payload(),
                    push_type: PushType::Background,
                    priority: Some(5),
                    expires_at: None,
                    collapse_id: None,
                    report_delivery: false,
                };
                self.submit(job, permits, |m, ok| {
                    if ok {
                        m.periodic_delivered.inc()
                    } else {
                        m.periodic_failed.inc()
                    }
                })
                .await;
                n += 1;
            }
            if last {
                return n;
            }
        }
    }

    /// Deletes tokens never verified within `unverified_token_ttl` of their `TNEW` (from memory
    /// and the store); returns how many.
    pub fn expire_unverified(&self) -> usize {
        const BATCH: usize = 4096;
        let ttl = i64::try_from(self.options.unverified_token_ttl.as_secs()).unwrap_or(i64::MAX);
        let ttl = if self.options.unverified_token_ttl.subsec_nanos() > 0 {
            ttl.saturating_add(1)
        } else {
            ttl
        };
        let cutoff = now_secs().saturating_sub(ttl);
        let mut total = 0;
        loop {
            let (n, subs) = self.store.expire_unverified(cutoff, BATCH);
            self.forget_subs(subs);
            total += n;
            if n < BATCH {
                break;
            }
        }
        if total > 0 {
            self.metrics.tokens_expired.inc_by(total as u64);
            tracing::info!(count = total, "expired unverified tokens");
        }
        total
    }

    /// Applies push-server feedback; returns how many events were handled. The tokens of a
    /// target come from the store's device index (no scan).
    pub async fn poll_feedback(&self, after: &mut u64) -> usize {
        let events = match self.gateway.feedback(*after, 500).await {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "feedback poll failed");
                return 0;
            }
        };
        let n = events.len();
        for ev in &events {
            *after = (*after).max(ev.seq);
            match &ev.reason {
                FeedbackReason::Delivered => {
                    // Only verification pushes ask for a delivery report (reference: the token
                    // becomes CONFIRMED when APNs accepted its verification push).
                    self.metrics.verification_delivered.inc();
                    for id in self.store.tokens_for_target(&ev.target) {
                        self.store.update_token(&id, |x| {
                            let registered = x.status == TokenStatus::Registered;
                            if registered {
                                x.status = TokenStatus::Confirmed;
                            }
                            registered
                        });
                    }
                }
                FeedbackReason::InvalidToken(r) => {
                    let reason = map_invalid(r);
                    for id in self.store.tokens_for_target(&ev.target) {
                        self.metrics.feedback_invalid.inc();
                        self.store.update_token(&id, |x| {
                            // a token awaiting verification gets no push but its verification
                            // push: the invalid token was found delivering that
                            if x.status == TokenStatus::Registered {
                                self.metrics.verification_invalid_tkn.inc();
                            }
                            x.status = TokenStatus::Invalid(Some(reason));
                            true
                        });
                    }
                }
                FeedbackReason::Failed(label) => {
                    tracing::debug!(reason = %label, "push failed permanently");
                }
            }
        }
        if n > 0 {
            let _ = self.store.sync().await;
            let _ = self.gateway.ack_feedback(*after).await;
        }
        n
    }
}

/// Encodes a response transmission (at v1 the session id is on the wire).
pub fn encode_response(
    session_id: &[u8],
    corr: &[u8],
    entity: &[u8],
    r: &NtfResponse,
    version: u16,
) -> Vec<u8> {
    let body = r.encode_for_version(version);
    let mut t = Transmission::new(corr, entity, &body);
    if version < ntf_version::AUTH_BATCH_CMDS {
        t.session_id = session_id;
    }
    let mut out = Vec::new();
    if encode_ntf_transmission(&mut out, &t, version).is_err() {
        out.clear();
    }
    out
}

/// Applies the delivery policy with the tokio clock (ms since the dispatcher started).
async fn dispatcher<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    mut rx: mpsc::Receiver<PushRequest>,
    mut shutdown: hush_server_common::Shutdown,
) {
    let policy = Policy::new(core.options.policy.clone());
    let permits = Arc::new(Semaphore::new(core.options.push_concurrency.max(1)));
    let start = tokio::time::Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut budgets: HashMap<Vec<u8>, TokenBudget> = HashMap::new();
    let mut timers: BTreeSet<(u64, Vec<u8>)> = BTreeSet::new();
    let mut cleanup = tokio::time::interval(Duration::from_secs(60));
    cleanup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = timers.first().map(|(at, _)| *at);
        let sleep = async {
            match next {
                Some(at) => {
                    tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = cleanup.tick() => {
                // per-token state that no longer matters (also of deleted tokens)
                let now = now_ms();
                budgets.retain(|_, b| !policy.is_idle(b, now));
            }
            _ = sleep => {
                let now = now_ms();
                while let Some((at, id)) = timers.first().cloned() {
                    if at > now { break; }
                    timers.remove(&(at, id.clone()));
                    let b = budgets.entry(id.clone()).or_default();
                    if let Some(style) = policy.on_due(b, now) {
                        core.metrics.policy_decision(match style {
                            PushStyle::Silent => "due_silent",
                            PushStyle::Alert => "due_alert",
                        });
                        core.push_message(&id, style, None, &permits).await;
                    }
                }
            }
            r = rx.recv() => match r {
                None => return,
                Some(PushRequest::Verification(id)) => core.push_verification(&id, &permits).await,
                Some(PushRequest::Notification(id, own)) => {
                    let now = now_ms();
                    let b = budgets.entry(id.clone()).or_default();
                    let d = policy.on_notification(b, now);
                    core.metrics.policy_decision(d.label());
                    match d {
                        Decision::Push(style) => {
                            core.push_message(&id, style, Some(&own), &permits).await
                        }
                        Decision::Deferred { at_ms } => { timers.insert((at_ms, id)); }
                        Decision::Coalesced { .. } => {}
                    }
                }
            },
        }
    }
}

/// Runs queued `NSUB`s, at most `subscribe_batch` at once: a task is spawned only with a free
/// permit, so the number of subscription tasks is bounded whatever the peers send.
async fn subscriber<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    mut rx: mpsc::Receiver<SubRec>,
    mut shutdown: hush_server_common::Shutdown,
) {
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => return,
            p = core.subscribing.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let s = tokio::select! {
            _ = shutdown.wait() => return,
            s = rx.recv() => match s {
                Some(s) => s,
                None => return,
            },
        };
        let store = core.store.clone();
        let pool = core.pool.clone();
        let metrics = core.metrics.clone();
        if !core.owns(&s.queue.server) {
            // Another instance holds this relay (or this one lost it meanwhile).
            continue;
        }
        tokio::spawn(async move {
            let _permit = permit;
            // The subscription may have been deleted while it waited.
            if store.sub(&s.id).is_none() {
                return;
            }
            let Some(key) = auth_key(&s.notifier_key) else {
                store.set_sub_status(&s.id, SubStatus::Err(b"bad notifier key".to_vec()));
                return;
            };
            let r = pool
                .subscribe_notifier(&s.queue.server, &s.queue.notifier_id, Arc::new(key))
                .await;
            // The subscription may have been deleted meanwhile.
            if store.sub(&s.id).is_none() {
                pool.forget_subscription(&s.queue.server, &s.queue.notifier_id);
                return;
            }
            match r {
                Ok(()) => {
                    metrics.smp_subscribed.inc();
                    store.set_sub_status(&s.id, SubStatus::Active);
                }
                Err(e) => {
                    metrics.smp_subscribe_errors.inc();
                    tracing::debug!(error = %e, "NSUB failed");
                    store.set_sub_status(&s.id, sub_status_for_error(&e));
                }
            }
        });
    }
}

/// Relay leases (PostgreSQL mode): every `renew` (or when woken) renews, releases and claims
/// leases; subscribes every subscription of a relay taken, forgets those of a relay lost.
async fn lease_loop<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    pg: crate::store::postgres::PgShared,
    mut shutdown: hush_server_common::Shutdown,
) {
    let Some(own) = &core.ownership else { return };
    let mut t = tokio::time::interval(pg.lease().renew);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = t.tick() => {}
            _ = own.wake.notified() => {}
        }
        let relays = core.store.relays();
        let now = match pg.lease_tick(&relays).await {
            Ok(h) => {
                if failing {
                    tracing::warn!("relay leases renewed again");
                    failing = false;
                }
                h
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot renew relay leases (database unreachable?)");
                    failing = true;
                }
                continue;
            }
        };
        let (gained, lost) = {
            let mut held = own.held.lock().unwrap_or_else(|p| p.into_inner());
            let gained: Vec<ProtocolServer> = now.difference(&held).cloned().collect();
            let lost: Vec<ProtocolServer> = held.difference(&now).cloned().collect();
            *held = now;
            (gained, lost)
        };
        for r in &lost {
            let subs = core.store.subs_on_server(r);
            tracing::info!(subscriptions = subs.len(), "relay lease given up");
            for s in subs {
                core.pool
                    .forget_subscription(&s.queue.server, &s.queue.notifier_id);
            }
        }
        for r in gained {
            let subs: Vec<SubRec> = core
                .store
                .subs_on_server(&r)
                .into_iter()
                .filter(|s| s.status.should_subscribe())
                .collect();
            tracing::info!(subscriptions = subs.len(), "relay lease taken");
            // Fed by a task of its own: a long queue must not delay the next renewal.
            let core = core.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                for s in subs {
                    tokio::select! {
                        _ = shutdown.wait() => return,
                        r = core.subscribe_tx.send(s) => if r.is_err() { return },
                    }
                }
            });
        }
    }
}

/// Subscriptions created or deleted by other instances (PostgreSQL mode).
async fn remote_changes<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    mut rx: mpsc::Receiver<RemoteChange>,
    mut shutdown: hush_server_common::Shutdown,
) {
    loop {
        let c = tokio::select! {
            _ = shutdown.wait() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        match c {
            RemoteChange::Sub(s) => {
                if core.owns(&s.queue.server) {
                    if s.status.should_subscribe() {
                        core.subscribe(s).await;
                    }
                } else if let Some(o) = &core.ownership {
                    o.wake.notify_one();
                }
            }
            RemoteChange::SubDeleted(s) => {
                core.pool
                    .forget_subscription(&s.queue.server, &s.queue.notifier_id);
            }
        }
    }
}

async fn relay_events<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    mut events: hush_client::PoolEvents,
    mut shutdown: hush_server_common::Shutdown,
) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            ev = events.recv() => match ev {
                None => return,
                Some(ev) => {
                    // back-pressure: while the store writer is far behind, relays wait
                    core.store.throttle().await;
                    core.on_pool_event(ev).await
                }
            },
        }
    }
}

async fn cron_loop<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    mut shutdown: hush_server_common::Shutdown,
) {
    let permits = Arc::new(Semaphore::new(core.options.push_concurrency.max(1)));
    let mut t = tokio::time::interval(core.options.cron_sweep.max(Duration::from_millis(10)));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = t.tick() => {
                core.expire_unverified();
                core.cron_sweep(&permits).await;
            }
        }
    }
}

async fn feedback_loop<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    mut shutdown: hush_server_common::Shutdown,
) {
    let mut after = 0u64;
    let mut t = tokio::time::interval(
        core.options
            .feedback_interval
            .max(Duration::from_millis(10)),
    );
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = t.tick() => { core.poll_feedback(&mut after).await; }
        }
    }
}

async fn gauges_loop<G: PushGateway + 'static>(
    core: Arc<Core<G>>,
    mut shutdown: hush_server_common::Shutdown,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut t = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = t.tick() => {
                let c = core.store.counts();
                core.metrics.tokens_total.store(c.tokens as u64, Relaxed);
                core.metrics.subscriptions_total.store(c.subscriptions as u64, Relaxed);
                core.metrics.last_ntfs_total.store(c.last_notifications as u64, Relaxed);
                let sc = core.store.sub_counts();
                let sessions = core.store.relays().iter().filter(|s| core.pool.connected_client(s).is_some()).count();
                core.metrics.smp_sessions.store(sessions as u64, Relaxed);
                core.metrics.subs_active.store(sc.active as u64, Relaxed);
                core.metrics.subs_pending.store(sc.pending as u64, Relaxed);
                core.metrics.relays_total.store(sc.relays as u64, Relaxed);
            }
        }
    }
}
