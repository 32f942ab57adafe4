//! The dispatcher: takes due jobs from the outbox, resolves handles, sends through the provider,
//! and applies [`PushError::action`]: done, retry with exponential backoff and jitter, or finished
//! with feedback for the ntf-server.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc, watch};

use crate::error::{Action, PushError};
use crate::gateway::{FeedbackEvent, FeedbackReason, GatewayError, SubmitOutcome};
use crate::handle::{HandleError, HandleKey, PushHandle, Sealed};
use crate::job::{DeviceAddress, PushJob, PushTarget};
use crate::metrics::Metrics;
use crate::outbox::{LeasedJob, Outbox, OutboxError, Stored};
use crate::provider::webpush::EndpointPolicy;
use crate::provider::{Delivery, Providers, Route};

/// Dispatcher settings.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// First retry delay; doubles per attempt.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Lifetime of a job without `expires_at`.
    pub default_ttl: Duration,
    /// Concurrent deliveries (in-flight provider requests). Each holds its slot for one round
    /// trip to the provider, so pushes/s ≤ concurrency ÷ round trip: with 64, a few ms of round
    /// trip over the one HTTP/2 connection to APNs capped a 2-core host at ≈ 7,500 pushes/s;
    /// 256 gave 13,000–14,000 (BENCHMARKS.md). APNs allows 500 concurrent streams per
    /// connection (its SETTINGS frame); more requests than the peer allows wait in the HTTP/2
    /// client.
    pub concurrency: usize,
    /// How long a delivered job id is remembered for deduplication.
    pub dedup_window: Duration,
    /// Longest idle sleep between outbox polls.
    pub poll_interval: Duration,
    /// Load shedding: `submit` answers `unavailable` while this many jobs are pending.
    pub max_pending: u64,
    /// Stored registrations (long Web Push subscriptions) unused this long are dropped.
    pub registration_ttl: Duration,
    /// Web Push endpoints a registration may name (checked again at delivery by the provider).
    pub webpush_endpoints: EndpointPolicy,
    /// Most stored registrations made without credential (`[LIMITS] max_anonymous_registrations`).
    pub max_anonymous_registrations: u64,
}

/// Default `[OUTBOX] concurrency` (see [`ServiceConfig::concurrency`]).
pub const DEFAULT_CONCURRENCY: usize = 256;

/// Default `[LIMITS] max_anonymous_registrations`.
pub const DEFAULT_MAX_ANONYMOUS_REGISTRATIONS: u64 = 100_000;

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            default_ttl: Duration::from_secs(24 * 3600),
            concurrency: DEFAULT_CONCURRENCY,
            dedup_window: Duration::from_secs(7 * 24 * 3600),
            poll_interval: Duration::from_secs(5),
            max_pending: 1_000_000,
            registration_ttl: Duration::from_secs(60 * 24 * 3600),
            webpush_endpoints: EndpointPolicy::default(),
            max_anonymous_registrations: DEFAULT_MAX_ANONYMOUS_REGISTRATIONS,
        }
    }
}

struct Inner {
    outbox: Outbox,
    providers: Providers,
    handle_key: HandleKey,
    metrics: Metrics,
    cfg: ServiceConfig,
    /// Wakes the dispatcher for jobs in the outbox table (submitted without a direct slot,
    /// rescheduled).
    wake: Notify,
    /// Jobs handed straight from `submit` to the dispatcher: stored already leased, so the
    /// dispatcher needs no outbox transaction (and no poll) to start delivering them.
    direct: mpsc::Sender<LeasedJob>,
    /// The dispatcher's end of `direct` (taken when it starts).
    direct_rx: std::sync::Mutex<Option<mpsc::Receiver<LeasedJob>>>,
    /// Outbox updates after a provider answered: a delivery slot is freed as soon as the
    /// provider answers, not after the commit of its outcome (which this bounds instead).
    finishing: Arc<Semaphore>,
    /// The running dispatcher's delivery slots: `submit` starts a job's delivery itself when one
    /// is free (no hop through the dispatcher task). Closed when the dispatcher stops.
    slots: std::sync::OnceLock<Arc<Semaphore>>,
    /// Serialises "read the stored count, set the gauge" so that a stale read never overwrites
    /// a newer count (`push_anonymous_registrations`).
    anonymous_gauge: tokio::sync::Mutex<()>,
}

impl Inner {
    /// Sets `push_anonymous_registrations` to the count stored in the outbox.
    async fn refresh_anonymous_gauge(&self) {
        let _serial = self.anonymous_gauge.lock().await;
        if let Ok(n) = self.outbox.anonymous_registrations().await {
            self.metrics
                .anonymous_registrations
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// Jobs handed from `submit` to the dispatcher in memory (committed already leased) that may
/// wait for a delivery slot at once.
const DIRECT_QUEUE: usize = 4096;

/// Outbox updates of answered deliveries that may wait for their commit at once.
const FINISHING: usize = 1024;

/// The push service (cheap to clone). Start its dispatcher with [`PushService::spawn_dispatcher`].
#[derive(Clone)]
pub struct PushService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PushService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushService(..)")
    }
}

fn storage(e: OutboxError) -> GatewayError {
    GatewayError::Storage(e.to_string())
}

/// Backoff for the `attempts`-th failure: `base · 2^(attempts-1)` capped at `max`, then a random
/// value in `[d/2, d]` (jitter), and at least `min`.
pub fn backoff(cfg: &ServiceConfig, attempts: u32, min: Option<Duration>) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let d = cfg
        .retry_base
        .saturating_mul(1u32 << exp)
        .min(cfg.retry_max);
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let jittered = if ms >= 2 {
        ms / 2 + rand::random::<u64>() % (ms / 2 + 1)
    } else {
        ms
    };
    Duration::from_millis(jittered).max(min.unwrap_or_default())
}

impl PushService {
    pub fn new(
        outbox: Outbox,
        providers: Providers,
        handle_key: HandleKey,
        metrics: Metrics,
        cfg: ServiceConfig,
    ) -> PushService {
        // Bounded: beyond it `submit` stores the job for the dispatcher's outbox poll instead
        // (a job through the table costs a second transaction to lease it and a read of its
        // payload back: a burst of a few thousand pushes stays on the direct path; at most
        // DIRECT_QUEUE jobs, ≈4 KB each, wait in memory).
        let (direct, direct_rx) =
            mpsc::channel(cfg.concurrency.max(1).saturating_mul(4).max(DIRECT_QUEUE));
        PushService {
            inner: Arc::new(Inner {
                outbox,
                providers,
                handle_key,
                metrics,
                cfg,
                wake: Notify::new(),
                direct,
                direct_rx: std::sync::Mutex::new(Some(direct_rx)),
                finishing: Arc::new(Semaphore::new(FINISHING)),
                slots: std::sync::OnceLock::new(),
                anonymous_gauge: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn outbox(&self) -> &Outbox {
        &self.inner.outbox
    }

    /// Accepts a job from `client` (durable when this returns `Queued`).
    pub async fn submit(&self, client: &str, job: PushJob) -> Result<SubmitOutcome, GatewayError> {
        job.validate()
            .map_err(|e| GatewayError::InvalidJob(e.to_string()))?;
        let now = crate::unix_now();
        let deadline = job
            .expires_at
            .unwrap_or(now + self.inner.cfg.default_ttl.as_secs());
        if deadline < now {
            return Err(GatewayError::InvalidJob("job already expired".into()));
        }
        let pending = u64::try_from(self.inner.metrics.outbox_length.get()).unwrap_or(0);
        if pending >= self.inner.cfg.max_pending {
            return Err(GatewayError::Unavailable("outbox full, retry later".into()));
        }
        // A free direct slot: the job is committed already leased and handed to the dispatcher
        // after the commit (no lease transaction, no poll). Otherwise the dispatcher leases it
        // from the table.
        let slot = self.inner.direct.try_reserve().ok();
        let stored = self
            .inner
            .outbox
            .submit_as(client, &job, deadline, crate::unix_now_ms(), slot.is_some())
            .await
            .map_err(storage)?;
        let outcome = match stored {
            Stored::Queued(row) => {
                self.inner.metrics.submitted("queued");
                self.inner.metrics.outbox_length.inc();
                match slot {
                    Some(slot) => {
                        let leased = LeasedJob {
                            row,
                            job,
                            client: client.to_string(),
                            deadline,
                            attempts: 0,
                        };
                        // A free delivery slot: deliver from here; else the dispatcher takes it.
                        match self
                            .inner
                            .slots
                            .get()
                            .and_then(|s| s.clone().try_acquire_owned().ok())
                        {
                            Some(permit) => self.spawn_delivery(leased, permit),
                            None => slot.send(leased),
                        }
                    }
                    None => self.inner.wake.notify_one(),
                }
                SubmitOutcome::Queued
            }
            Stored::Duplicate => {
                self.inner.metrics.submitted("duplicate");
                SubmitOutcome::Duplicate
            }
        };
        Ok(outcome)
    }

    /// Split mode: seals a device address into a push handle, for a trusted caller (an
    /// authenticated ntf-server, or in process): no cap. Addresses too long for an inline handle
    /// (most Web Push endpoints) are stored and the handle seals the registration id. A Web Push
    /// endpoint must pass the destination policy ([`GatewayError::DestinationRefused`]).
    pub async fn register(&self, address: &DeviceAddress) -> Result<PushHandle, GatewayError> {
        self.register_as(address, false).await
    }

    /// Like [`Self::register`], for a peer without credential (a device): a registration that
    /// must be stored counts against `max_anonymous_registrations` ([`GatewayError::Capacity`]
    /// at the cap, nothing stored). Rate limits are the listener's ([`crate::net`]).
    pub async fn register_anonymous(
        &self,
        address: &DeviceAddress,
    ) -> Result<PushHandle, GatewayError> {
        self.register_as(address, true).await
    }

    async fn register_as(
        &self,
        address: &DeviceAddress,
        anonymous: bool,
    ) -> Result<PushHandle, GatewayError> {
        let bad = |e: HandleError| GatewayError::InvalidJob(e.to_string());
        if let DeviceAddress::WebPush(sub) = address
            && let Err(e) = self
                .inner
                .cfg
                .webpush_endpoints
                .check_registration(&sub.endpoint)
                .await
        {
            self.inner.metrics.refused("destination");
            return Err(GatewayError::DestinationRefused(e));
        }
        let h = match self.inner.handle_key.seal(address) {
            Ok(h) => h,
            Err(HandleError::TooLong(_)) => {
                let cap = anonymous.then_some(self.inner.cfg.max_anonymous_registrations);
                let id = match self
                    .inner
                    .outbox
                    .store_registration(address, crate::unix_now(), cap)
                    .await
                {
                    Ok(id) => id,
                    Err(OutboxError::Full) => {
                        self.inner.metrics.refused("anonymous_cap");
                        return Err(GatewayError::Capacity(format!(
                            "this push-server stores no more registrations without credential \
                             ({} stored, [LIMITS] max_anonymous_registrations); unused ones expire \
                             after [OUTBOX] registration_ttl_days, retry later",
                            self.inner.cfg.max_anonymous_registrations
                        )));
                    }
                    Err(e) => return Err(storage(e)),
                };
                if anonymous {
                    self.inner.refresh_anonymous_gauge().await;
                }
                self.inner.handle_key.seal_registration(&id).map_err(bad)?
            }
            Err(e) => return Err(bad(e)),
        };
        self.inner.metrics.handles_registered.inc();
        Ok(h)
    }

    /// Resolves a job target to a device address.
    async fn resolve<'a>(
        &self,
        target: &'a PushTarget,
    ) -> Result<std::borrow::Cow<'a, DeviceAddress>, PushError> {
        use std::borrow::Cow;
        match target {
            PushTarget::Device(a) => Ok(Cow::Borrowed(a)),
            PushTarget::Handle(h) => match self.inner.handle_key.open_sealed(h) {
                Ok(Sealed::Address(a)) => Ok(Cow::Owned(a)),
                Ok(Sealed::Registration(id)) => {
                    match self.inner.outbox.registration(id, crate::unix_now()).await {
                        Ok(Some(a)) => Ok(Cow::Owned(a)),
                        // Dropped after long disuse: the device must register again.
                        Ok(None) => Err(PushError::InvalidToken {
                            reason: crate::error::InvalidReason::Unregistered,
                            detail: "registration expired".into(),
                        }),
                        Err(e) => Err(PushError::Connection(format!("outbox: {e}"))),
                    }
                }
                Err(_) => Err(PushError::BadHandle),
            },
        }
    }

    pub async fn feedback(
        &self,
        client: &str,
        after: u64,
        max: u32,
    ) -> Result<Vec<FeedbackEvent>, GatewayError> {
        self.inner
            .outbox
            .feedback(client, after, max.min(1000))
            .await
            .map_err(storage)
    }

    pub async fn ack_feedback(&self, client: &str, up_to: u64) -> Result<(), GatewayError> {
        self.inner
            .outbox
            .ack_feedback(client, up_to)
            .await
            .map_err(storage)
    }

    /// Runs the dispatcher until `shutdown` becomes true. In-flight deliveries are awaited.
    pub fn spawn_dispatcher(&self, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.dispatch(shutdown).await })
    }

    async fn dispatch(self, mut shutdown: watch::Receiver<bool>) {
        let inner = &self.inner;
        let concurrency = inner.cfg.concurrency.max(1);
        let direct_rx = inner.direct_rx.lock().ok().and_then(|mut r| r.take());
        let Some(mut direct_rx) = direct_rx else {
            tracing::error!("push dispatcher already running");
            return;
        };
        let permits = Arc::new(Semaphore::new(concurrency));
        let _ = inner.slots.set(permits.clone());
        if let Ok(n) = inner.outbox.len().await {
            inner
                .metrics
                .outbox_length
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut last_prune = 0u64;
        // The outbox table may hold due jobs (at start: jobs from before a restart).
        let mut check_table = true;
        let mut next_check = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = crate::unix_now();
            if now >= last_prune + 3600 {
                last_prune = now;
                let before = now.saturating_sub(inner.cfg.dedup_window.as_secs());
                if let Err(e) = inner.outbox.prune_done(before).await {
                    tracing::warn!("outbox prune failed: {e}");
                }
                let unused = now.saturating_sub(inner.cfg.registration_ttl.as_secs());
                if let Err(e) = inner.outbox.prune_registrations(unused).await {
                    tracing::warn!("registration prune failed: {e}");
                }
                inner.refresh_anonymous_gauge().await;
            }
            // Jobs handed over by `submit` first: they are leased already.
            while let Ok(job) = direct_rx.try_recv() {
                let permit = tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => None,
                    p = permits.clone().acquire_owned() => p.ok(),
                };
                let Some(permit) = permit else { break };
                self.spawn_delivery(job, permit);
            }
            if *shutdown.borrow() {
                break;
            }
            if check_table || tokio::time::Instant::now() >= next_check {
                let free = permits.available_permits();
                if free == 0 {
                    tokio::select! {
                        _ = shutdown.wait_for(|s| *s) => break,
                        p = permits.clone().acquire_owned() => drop(p),
                    }
                    continue;
                }
                let due = match inner.outbox.lease_due(crate::unix_now_ms(), free).await {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!("outbox read failed: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if due.len() < free {
                    // The table has nothing more due now: next look when its earliest job is
                    // due (or after `poll_interval`), or when woken.
                    check_table = false;
                    if due.is_empty() {
                        // Idle: re-synchronise the gauge (inc/dec can race with submit).
                        if let Ok(n) = inner.outbox.len().await {
                            inner
                                .metrics
                                .outbox_length
                                .set(i64::try_from(n).unwrap_or(i64::MAX));
                        }
                    }
                    let sleep = match inner.outbox.next_due().await {
                        Ok(Some(at)) => {
                            Duration::from_millis(at.saturating_sub(crate::unix_now_ms()))
                        }
                        _ => inner.cfg.poll_interval,
                    }
                    .min(inner.cfg.poll_interval);
                    next_check = tokio::time::Instant::now() + sleep;
                } else {
                    check_table = true;
                }
                for job in due {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    self.spawn_delivery(job, permit);
                }
                if check_table {
                    continue;
                }
            }
            let job = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                _ = inner.wake.notified() => None,
                _ = tokio::time::sleep_until(next_check) => None,
                job = direct_rx.recv() => match job {
                    Some(job) => Some(job),
                    None => break,
                },
            };
            match job {
                None => check_table = true,
                Some(job) => {
                    let permit = tokio::select! {
                        _ = shutdown.wait_for(|s| *s) => break,
                        p = permits.clone().acquire_owned() => p,
                    };
                    let Ok(permit) = permit else { break };
                    self.spawn_delivery(job, permit);
                }
            }
        }
        // Wait for in-flight deliveries (their jobs stay leased only in memory: the outbox clears
        // leases when it is opened again; so do jobs still in the direct channel). While this
        // waits, released slots go to it, not to `submit`; then no more deliveries start from
        // `submit` (its jobs wait in the direct channel).
        let _all = permits
            .acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX))
            .await;
        permits.close();
        // and for the outbox updates of answered deliveries
        let _ = inner
            .finishing
            .acquire_many(u32::try_from(FINISHING).unwrap_or(u32::MAX))
            .await;
    }

    fn spawn_delivery(&self, job: LeasedJob, permit: tokio::sync::OwnedSemaphorePermit) {
        let this = self.clone();
        tokio::spawn(async move { this.deliver(job, permit).await });
    }

    /// Sends one job; `permit` (a delivery slot) is released once the provider answered, the
    /// outbox update then runs under a `finishing` permit.
    async fn deliver(&self, leased: LeasedJob, permit: tokio::sync::OwnedSemaphorePermit) {
        let inner = &self.inner;
        let LeasedJob {
            row,
            job,
            client,
            deadline,
            attempts,
        } = leased;
        let now = crate::unix_now();
        let (provider, result) = if now > deadline {
            ("none", Err(PushError::Expired))
        } else {
            let address = self.resolve(&job.target).await;
            match address {
                Err(e) => ("handle", Err(e)),
                Ok(address) => {
                    let label = address.provider_label();
                    match inner.providers.route(&address) {
                        Err(e) => (label, Err(e)),
                        Ok(Route::Null) => (label, Ok(())),
                        Ok(Route::Send(p)) => {
                            let d = Delivery {
                                job_id: job.job_id,
                                kind: job.kind,
                                address: &address,
                                payload: &job.payload,
                                push_type: job.push_type,
                                priority: job.priority,
                                expires_at: job.expires_at,
                                collapse_id: job.collapse_id.as_deref(),
                            };
                            (label, p.send(d).await)
                        }
                    }
                }
            }
        };
        let id = job.job_id;
        let _finishing = inner.finishing.clone().acquire_owned().await;
        drop(permit);
        let stored = match result {
            Ok(()) => {
                inner.metrics.sent(provider);
                inner.metrics.outbox_length.dec();
                tracing::debug!(%provider, job = %id, "push accepted");
                let feedback =
                    job.report_delivery
                        .then_some((client, job.target, FeedbackReason::Delivered));
                inner
                    .outbox
                    .finish(row, id, crate::unix_now(), feedback)
                    .await
            }
            Err(e) => {
                e.log(provider, &id);
                let label = e.metric_label();
                match e.action() {
                    Action::Retry { min_delay } => {
                        let attempts = attempts.saturating_add(1);
                        let delay = backoff(&inner.cfg, attempts, min_delay);
                        let next_ms = crate::unix_now_ms()
                            .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                        if next_ms / 1000 > deadline {
                            inner.metrics.failed(provider, "expired");
                            inner.metrics.outbox_length.dec();
                            inner
                                .outbox
                                .finish(
                                    row,
                                    id,
                                    crate::unix_now(),
                                    Some((
                                        client,
                                        job.target,
                                        FeedbackReason::Failed("expired".into()),
                                    )),
                                )
                                .await
                        } else {
                            inner.metrics.retry(provider, label);
                            let r = inner.outbox.reschedule(row, next_ms, attempts, label).await;
                            // the dispatcher's next look at the table may be later than this
                            inner.wake.notify_one();
                            r
                        }
                    }
                    Action::Invalidate(reason) => {
                        inner.metrics.failed(provider, label);
                        inner.metrics.outbox_length.dec();
                        inner
                            .outbox
                            .finish(
                                row,
                                id,
                                crate::unix_now(),
                                Some((client, job.target, FeedbackReason::InvalidToken(reason))),
                            )
                            .await
                    }
                    Action::Drop => {
                        inner.metrics.failed(provider, label);
                        inner.metrics.outbox_length.dec();
                        inner
                            .outbox
                            .finish(
                                row,
                                id,
                                crate::unix_now(),
                                Some((client, job.target, FeedbackReason::Failed(label.into()))),
                            )
                            .await
                    }
                }
            }
        };
        if let Err(e) = stored {
            // The job stays in the outbox (leased until restart, then re-sent: at-least-once).
            tracing::error!(job = %id, "outbox update failed: {e}");
        }
    }
}
