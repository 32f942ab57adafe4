//! Caps on what an unauthenticated peer can make a server do: token-bucket rate limits (one
//! bucket, or one per key such as a peer address), concurrent connections per peer address, and a
//! throttle for the warn log lines that abuse itself would otherwise flood.
//!
//! Peer addresses are keyed by [`IpKey`]: an IPv4 address, or the /64 prefix of an IPv6 address
//! (one IPv6 host usually owns a whole /64, so per-address limits would be no limit at all).
//! Keyed tables are bounded: when full, idle entries are dropped, and a key that still finds no
//! room shares one overflow entry, so a peer with many addresses cannot grow memory without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The per-peer key of limits: an IPv4 address or the /64 of an IPv6 address (IPv4-mapped IPv6
/// addresses count as their IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpKey {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
    /// The shared entry of keys that found no room in a full table.
    Overflow,
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    IpKey::V6Prefix(o[..8].try_into().expect("8 bytes"))
                }
            },
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` banked. Time is passed in, so the
/// bucket is testable and usable with any clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `rate` ≤ 0 means no refill (only the burst, ever).
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        Self {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True if the bucket is full at `now` (an idle entry a keyed table may drop).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// A rate limit as configured: `rate` per second with a `burst`. `rate == 0` disables the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Self { per_second, burst }
    }
    pub fn is_unlimited(&self) -> bool {
        self.per_second <= 0.0
    }
}

/// One shared rate limit (e.g. all `TNEW`s of a server), safe to use from many tasks.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    bucket: Mutex<TokenBucket>,
}

impl RateLimiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            bucket: Mutex::new(TokenBucket::new(
                rate.per_second,
                rate.burst,
                Instant::now(),
            )),
        }
    }
    /// True if the action may go ahead now.
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }
    pub fn allow_at(&self, now: Instant) -> bool {
        self.rate.is_unlimited() || lock(&self.bucket).try_take(now)
    }
}

/// One rate limit per key (e.g. per peer address), with at most `max_keys` entries.
#[derive(Debug)]
pub struct KeyedRateLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: Mutex<HashMap<K, TokenBucket>>,
    overflow: Mutex<Option<TokenBucket>>,
}

impl<K: Hash + Eq + Clone> KeyedRateLimiter<K> {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys: max_keys.max(1),
            buckets: Mutex::new(HashMap::new()),
            overflow: Mutex::new(None),
        }
    }

    pub fn allow(&self, key: &K) -> bool {
        self.allow_at(key, Instant::now())
    }

    pub fn allow_at(&self, key: &K, now: Instant) -> bool {
        if self.rate.is_unlimited() {
            return true;
        }
        let mut buckets = lock(&self.buckets);
        if let Some(b) = buckets.get_mut(key) {
            return b.try_take(now);
        }
        if buckets.len() >= self.max_keys {
            buckets.retain(|_, b| !b.is_full(now));
        }
        if buckets.len() < self.max_keys {
            let mut b = TokenBucket::new(self.rate.per_second, self.rate.burst, now);
            let ok = b.try_take(now);
            buckets.insert(key.clone(), b);
            return ok;
        }
        drop(buckets);
        lock(&self.overflow)
            .get_or_insert_with(|| TokenBucket::new(self.rate.per_second, self.rate.burst, now))
            .try_take(now)
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.buckets).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Concurrent connections per peer address ([`IpKey`]), capped at `per_ip` each (0 = no cap).
/// [`IpConnLimiter::try_acquire`] returns a guard that gives the slot back when dropped.
#[derive(Debug, Clone)]
pub struct IpConnLimiter {
    inner: Arc<IpConnInner>,
}

#[derive(Debug)]
struct IpConnInner {
    per_ip: u32,
    counts: Mutex<HashMap<IpKey, u32>>,
}

/// A connection's slot in an [`IpConnLimiter`]; dropping it frees the slot.
#[derive(Debug)]
pub struct IpConnGuard {
    inner: Option<(Arc<IpConnInner>, IpKey)>,
}

impl IpConnLimiter {
    pub fn new(per_ip: u32) -> Self {
        Self {
            inner: Arc::new(IpConnInner {
                per_ip,
                counts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A slot for one more connection from `ip`, or `None` if it already has `per_ip`.
    pub fn try_acquire(&self, ip: IpAddr) -> Option<IpConnGuard> {
        if self.inner.per_ip == 0 {
            return Some(IpConnGuard { inner: None });
        }
        let key = IpKey::from(ip);
        let mut counts = lock(&self.inner.counts);
        let n = counts.entry(key).or_insert(0);
        if *n >= self.inner.per_ip {
            return None;
        }
        *n += 1;
        Some(IpConnGuard {
            inner: Some((self.inner.clone(), key)),
        })
    }

    /// Connections currently held from `ip`'s key.
    pub fn count(&self, ip: IpAddr) -> u32 {
        lock(&self.inner.counts)
            .get(&IpKey::from(ip))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for IpConnGuard {
    fn drop(&mut self) {
        if let Some((inner, key)) = self.inner.take() {
            let mut counts = lock(&inner.counts);
            if let Some(n) = counts.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&key);
                }
            }
        }
    }
}

/// Admission of a new connection under `max_connections` (a semaphore) and
/// `max_connections_per_ip` (an [`IpConnLimiter`]), the same step in every listener. A refusal
/// names the limit (for the server's metric label) and carries whether a warn line may be logged
/// now (at most one a minute per limit, with how many were held back), so the servers keep their
/// own metric names and wording but not their own copies of the logic.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<tokio::sync::Semaphore>,
    per_ip: IpConnLimiter,
    logs: [LogThrottle; 2],
}

/// The place of an admitted connection; dropping it frees both slots.
#[derive(Debug)]
pub struct Admitted {
    pub permit: tokio::sync::OwnedSemaphorePermit,
    pub ip: IpConnGuard,
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    MaxConnections,
    PerIp,
}

impl Refused {
    /// The configuration key of the limit (also the metric label the servers use).
    pub fn key(&self) -> &'static str {
        match self {
            Refused::MaxConnections => "max_connections",
            Refused::PerIp => "max_connections_per_ip",
        }
    }
}

impl Admission {
    pub fn new(max_connections: usize, per_ip: u32) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(max_connections.max(1))),
            per_ip: IpConnLimiter::new(per_ip),
            logs: [
                LogThrottle::new(Duration::from_secs(60)),
                LogThrottle::new(Duration::from_secs(60)),
            ],
        }
    }

    /// A place for a connection from `ip`, or the limit that refused it and `Some(held back)`
    /// when a warn line may be logged now.
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted, (Refused, Option<u64>)> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Err((Refused::MaxConnections, self.logs[0].check()));
        };
        match self.per_ip.try_acquire(ip) {
            Some(ip) => Ok(Admitted { permit, ip }),
            None => Err((Refused::PerIp, self.logs[1].check())),
        }
    }
}

/// Lets a log line through at most once per `interval`, counting what it held back, so that a
/// flood ("connection limit reached") is visible without flooding the log.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` if a line may be logged now (with how many were held back since the
    /// last one), `None` if this one is held back.
    pub fn check(&self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    pub fn check_at(&self, now: Instant) -> Option<u64> {
        let mut st = lock(&self.state);
        match st.0 {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                st.1 += 1;
                None
            }
            _ => {
                let held = st.1;
                *st = (Some(now), 0);
                Some(held)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(400)));
        assert!(b.try_take(t0 + Duration::from_millis(500)));
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(100);
        assert!(b.is_full(later));
        let n = (0..10).filter(|_| b.try_take(later)).count();
        assert_eq!(n, 3);
    }

    #[test]
    fn shared_limiter_and_unlimited() {
        let t0 = Instant::now();
        let l = RateLimiter::new(Rate::new(1.0, 2));
        let n = (0..10).filter(|_| l.allow_at(t0)).count();
        assert_eq!(n, 2);
        let u = RateLimiter::new(Rate::new(0.0, 0));
        assert!((0..1000).all(|_| u.allow_at(t0)));
    }

    #[test]
    fn keyed_limits_are_per_key_and_bounded() {
        let t0 = Instant::now();
        let l: KeyedRateLimiter<u32> = KeyedRateLimiter::new(Rate::new(1.0, 2), 4);
        assert!(l.allow_at(&1, t0) && l.allow_at(&1, t0) && !l.allow_at(&1, t0));
        assert!(l.allow_at(&2, t0));
        for k in 3..100 {
            l.allow_at(&k, t0);
        }
        assert!(l.len() <= 4);
        // Keys past the cap share one overflow bucket: at most its burst gets through.
        let through = (1000..1100).filter(|k| l.allow_at(k, t0)).count();
        assert!(through <= 2, "{through}");
        // Once entries are idle (full again) they are dropped to make room.
        let later = t0 + Duration::from_secs(10);
        assert!(l.allow_at(&5000, later));
        assert!(l.len() <= 4);
    }

    #[test]
    fn ip_keys_group_ipv6_by_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::from(a), IpKey::from(b));
        assert_ne!(IpKey::from(a), IpKey::from(c));
        let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(IpKey::from(m), IpKey::V4([10, 0, 0, 1]));
    }

    #[test]
    fn conn_limiter_caps_and_releases() {
        let l = IpConnLimiter::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let g1 = l.try_acquire(ip).unwrap();
        let _g2 = l.try_acquire(ip).unwrap();
        assert!(l.try_acquire(ip).is_none());
        assert!(l.try_acquire(other).is_some());
        drop(g1);
        assert_eq!(l.count(ip), 1);
        assert!(l.try_acquire(ip).is_some());
        let off = IpConnLimiter::new(0);
        let guards: Vec<_> = (0..100).map(|_| off.try_acquire(ip).unwrap()).collect();
        assert_eq!(guards.len(), 100);
    }

    #[test]
    fn admission_checks_both_limits_and_throttles_warns() {
        let a = Admission::new(2, 1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let first = a.admit(ip).unwrap();
        assert_eq!(a.admit(ip).unwrap_err(), (Refused::PerIp, Some(0)));
        assert_eq!(a.admit(ip).unwrap_err(), (Refused::PerIp, None));
        let _second = a.admit(other).unwrap();
        assert_eq!(
            a.admit(other).unwrap_err(),
            (Refused::MaxConnections, Some(0))
        );
        drop(first);
        assert!(a.admit(ip).is_ok());
        assert_eq!(Refused::PerIp.key(), "max_connections_per_ip");
    }

    #[test]
    fn log_throttle_counts_suppressed() {
        let t0 = Instant::now();
        let t = LogThrottle::new(Duration::from_secs(60));
        assert_eq!(t.check_at(t0), Some(0));
        assert_eq!(t.check_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.check_at(t0 + Duration::from_secs(2)), None);
        assert_eq!(t.check_at(t0 + Duration::from_secs(61)), Some(2));
    }
}
