//! The delivery policy (design §1 "Notification policy"): which kind of push a notification
//! becomes, and when. Pure and sans-IO: time comes in as milliseconds of an injected clock, so
//! the rules are tested with a virtual clock.
//!
//! * [`PolicyMode::Reference`]: every notification is pushed at once as a `mutable-content` alert
//!   with a generic text (what the reference NTF server does, §5.7). No silent pushes.
//! * [`PolicyMode::Budget`] (default): per token at most `silent_per_window` silent background
//!   pushes in any sliding `window` (default 3 per hour). Beyond that, visible content-free
//!   alerts, at most one per `alert_interval` (default 10 min). A notification that arrives
//!   inside the interval is not pushed at once: one push is scheduled at the end of the interval
//!   and every later notification until then is coalesced into it. Nothing is dropped, because
//!   every push carries the token's latest ≤ 6 notifications (built when the push is sent).
//!
//! A scheduled push that becomes due is silent if the window has room again, an alert otherwise.

use std::collections::VecDeque;
use std::time::Duration;

/// Policy configuration (`[POLICY]` in `ntf-server.ini`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyMode {
    Budget(BudgetConfig),
    Reference,
}

impl Default for PolicyMode {
    fn default() -> Self {
        PolicyMode::Budget(BudgetConfig::default())
    }
}

/// Parameters of [`PolicyMode::Budget`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetConfig {
    /// Silent background pushes allowed per token in any sliding `window`.
    pub silent_per_window: u32,
    pub window: Duration,
    /// Minimum time between two visible alerts of one token.
    pub alert_interval: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            silent_per_window: 3,
            window: Duration::from_secs(3600),
            alert_interval: Duration::from_secs(600),
        }
    }
}

/// How a push is presented on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushStyle {
    /// Background push (`content-available`, priority 5): the app wakes up silently.
    Silent,
    /// Visible, content-free `mutable-content` alert with a generic text.
    Alert,
}

/// What to do with a notification now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Push now.
    Push(PushStyle),
    /// Nothing now: schedule a push at `at_ms` (call [`Policy::on_due`] then).
    Deferred { at_ms: u64 },
    /// Nothing now: a push is already scheduled at `at_ms` and will carry this notification.
    Coalesced { at_ms: u64 },
}

impl Decision {
    /// Metric label of the decision.
    pub const fn label(&self) -> &'static str {
        match self {
            Decision::Push(PushStyle::Silent) => "silent",
            Decision::Push(PushStyle::Alert) => "alert",
            Decision::Deferred { .. } => "deferred",
            Decision::Coalesced { .. } => "coalesced",
        }
    }
}

/// Per-token policy state (kept in memory; after a restart a token starts with a full budget).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenBudget {
    /// Times of the silent pushes inside the current window, oldest first.
    silent: VecDeque<u64>,
    last_alert: Option<u64>,
    pending_at: Option<u64>,
}

impl TokenBudget {
    /// When a scheduled push is due, if any.
    pub fn pending_at(&self) -> Option<u64> {
        self.pending_at
    }

    /// Silent pushes counted in the window ending at `now`.
    pub fn silent_in_window(&self, now: u64, window_ms: u64) -> usize {
        self.silent
            .iter()
            .filter(|t| now.saturating_sub(**t) < window_ms)
            .count()
    }
}

/// The policy (stateless apart from its configuration; per-token state is a [`TokenBudget`]).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    mode: PolicyMode,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Policy {
    pub fn new(mode: PolicyMode) -> Policy {
        Policy { mode }
    }

    pub fn mode(&self) -> &PolicyMode {
        &self.mode
    }

    /// A notification for the token arrived at `now_ms`.
    pub fn on_notification(&self, st: &mut TokenBudget, now_ms: u64) -> Decision {
        let b = match &self.mode {
            PolicyMode::Reference => return Decision::Push(PushStyle::Alert),
            PolicyMode::Budget(b) => b,
        };
        if let Some(at_ms) = st.pending_at {
            return Decision::Coalesced { at_ms };
        }
        Self::prune(st, b, now_ms);
        if st.silent.len() < b.silent_per_window as usize {
            st.silent.push_back(now_ms);
            return Decision::Push(PushStyle::Silent);
        }
        match st.last_alert {
            Some(last) if now_ms < last.saturating_add(ms(b.alert_interval)) => {
                let at_ms = last.saturating_add(ms(b.alert_interval));
                st.pending_at = Some(at_ms);
                Decision::Deferred { at_ms }
            }
            _ => {
                st.last_alert = Some(now_ms);
                Decision::Push(PushStyle::Alert)
            }
        }
    }

    /// The scheduled push of the token may be due at `now_ms`: returns how to push it, or `None`
    /// if nothing is scheduled or it is not due yet.
    pub fn on_due(&self, st: &mut TokenBudget, now_ms: u64) -> Option<PushStyle> {
        let at = st.pending_at?;
        if now_ms < at {
            return None;
        }
        st.pending_at = None;
        let PolicyMode::Budget(b) = &self.mode else {
            return Some(PushStyle::Alert);
        };
        Self::prune(st, b, now_ms);
        if st.silent.len() < b.silent_per_window as usize {
            st.silent.push_back(now_ms);
            Some(PushStyle::Silent)
        } else {
            st.last_alert = Some(now_ms);
            Some(PushStyle::Alert)
        }
    }

    /// True when the state carries no information any more at `now_ms` (no scheduled push, no
    /// silent push in the window, no alert inside the interval): it can be dropped, a fresh
    /// [`TokenBudget`] behaves the same.
    pub fn is_idle(&self, st: &TokenBudget, now_ms: u64) -> bool {
        let PolicyMode::Budget(b) = &self.mode else {
            return true;
        };
        st.pending_at.is_none()
            && st.silent_in_window(now_ms, ms(b.window)) == 0
            && st
                .last_alert
                .is_none_or(|t| now_ms.saturating_sub(t) >= ms(b.alert_interval))
    }

    fn prune(st: &mut TokenBudget, b: &BudgetConfig, now_ms: u64) {
        let window = ms(b.window);
        while st
            .silent
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= window)
        {
            st.silent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    /// A virtual clock driving one token through a sequence of notification times, firing
    /// scheduled pushes when they are due (before any notification at the same instant).
    fn run(policy: &Policy, times_ms: &[u64], end_ms: u64) -> Vec<(u64, PushStyle)> {
        let mut st = TokenBudget::default();
        let mut pushes = Vec::new();
        let fire_until = |st: &mut TokenBudget, t: u64, pushes: &mut Vec<(u64, PushStyle)>| {
            while let Some(at) = st.pending_at()
                && at <= t
            {
                let s = policy.on_due(st, at).unwrap();
                pushes.push((at, s));
            }
        };
        for &t in times_ms {
            fire_until(&mut st, t, &mut pushes);
            if let Decision::Push(s) = policy.on_notification(&mut st, t) {
                pushes.push((t, s));
            }
        }
        fire_until(&mut st, end_ms, &mut pushes);
        pushes
    }

    #[test]
    fn budget_ten_messages_in_one_hour() {
        let p = Policy::new(PolicyMode::default());
        // 10 messages, 6 minutes apart: 0, 6, …, 54 min.
        let times: Vec<u64> = (0..10).map(|i| i * 6 * MIN).collect();
        let pushes = run(&p, &times, 70 * MIN);
        let silent: Vec<u64> = pushes
            .iter()
            .filter(|(_, s)| *s == PushStyle::Silent)
            .map(|(t, _)| *t / MIN)
            .collect();
        let alerts: Vec<u64> = pushes
            .iter()
            .filter(|(_, s)| *s == PushStyle::Alert)
            .map(|(t, _)| *t / MIN)
            .collect();
        // Exactly the budget of silent pushes, the first three messages.
        assert_eq!(silent, vec![0, 6, 12]);
        // Then alerts at most every 10 minutes: 18 (at once), 24→28, 30→38 (36 coalesced),
        // 42→48, 48→58 (54 coalesced).
        assert_eq!(alerts, vec![18, 28, 38, 48, 58]);
        for w in alerts.windows(2) {
            assert!(w[1] - w[0] >= 10);
        }
        assert_eq!(pushes.len(), 8, "10 notifications → 3 silent + 5 alerts");
    }

    #[test]
    fn budget_burst_is_coalesced() {
        let p = Policy::new(PolicyMode::default());
        let mut st = TokenBudget::default();
        let mut d = Vec::new();
        for i in 0..10 {
            d.push(p.on_notification(&mut st, i * 1000));
        }
        assert_eq!(d[0..3], [Decision::Push(PushStyle::Silent); 3]);
        assert_eq!(d[3], Decision::Push(PushStyle::Alert));
        let at = 3000 + 10 * MIN;
        assert_eq!(d[4], Decision::Deferred { at_ms: at });
        for x in &d[5..] {
            assert_eq!(*x, Decision::Coalesced { at_ms: at });
        }
        assert_eq!(p.on_due(&mut st, at - 1), None);
        assert_eq!(p.on_due(&mut st, at), Some(PushStyle::Alert));
        assert_eq!(p.on_due(&mut st, at + 1), None, "fires once");
    }

    #[test]
    fn budget_window_slides() {
        let p = Policy::new(PolicyMode::default());
        let mut st = TokenBudget::default();
        for i in 0..3 {
            assert_eq!(
                p.on_notification(&mut st, i),
                Decision::Push(PushStyle::Silent)
            );
        }
        assert_eq!(
            p.on_notification(&mut st, 10),
            Decision::Push(PushStyle::Alert)
        );
        // One hour after the first silent push, one slot is free again.
        assert_eq!(
            p.on_notification(&mut st, 60 * MIN),
            Decision::Push(PushStyle::Silent)
        );
        assert_eq!(st.silent_in_window(60 * MIN, 60 * MIN), 3);
    }

    #[test]
    fn idle_state_can_be_dropped() {
        let p = Policy::new(PolicyMode::default());
        let mut st = TokenBudget::default();
        assert!(p.is_idle(&st, 0));
        p.on_notification(&mut st, 0);
        assert!(!p.is_idle(&st, 59 * MIN));
        assert!(p.is_idle(&st, 60 * MIN));
        for t in 0..4 {
            p.on_notification(&mut st, 61 * MIN + t);
        }
        assert!(!p.is_idle(&st, 61 * MIN + 5), "alert interval running");
        p.on_notification(&mut st, 61 * MIN + 6);
        assert!(st.pending_at().is_some());
        assert!(!p.is_idle(&st, 200 * MIN), "scheduled push pending");
        assert!(Policy::new(PolicyMode::Reference).is_idle(&st, 0));
    }

    #[test]
    fn due_push_uses_freed_budget() {
        let p = Policy::new(PolicyMode::Budget(BudgetConfig {
            silent_per_window: 1,
            window: Duration::from_millis(100),
            alert_interval: Duration::from_millis(1000),
        }));
        let mut st = TokenBudget::default();
        assert_eq!(
            p.on_notification(&mut st, 0),
            Decision::Push(PushStyle::Silent)
        );
        assert_eq!(
            p.on_notification(&mut st, 1),
            Decision::Push(PushStyle::Alert)
        );
        assert_eq!(
            p.on_notification(&mut st, 2),
            Decision::Deferred { at_ms: 1001 }
        );
        assert_eq!(p.on_due(&mut st, 1001), Some(PushStyle::Silent));
    }

    #[test]
    fn reference_alerts_every_notification() {
        let p = Policy::new(PolicyMode::Reference);
        let times: Vec<u64> = (0..10).map(|i| i * 6 * MIN).collect();
        let pushes = run(&p, &times, 70 * MIN);
        assert_eq!(pushes.len(), 10);
        assert!(pushes.iter().all(|(_, s)| *s == PushStyle::Alert));
        let mut st = TokenBudget::default();
        for t in 0..100 {
            assert_eq!(
                p.on_notification(&mut st, t),
                Decision::Push(PushStyle::Alert)
            );
        }
    }

    proptest::proptest! {
        /// Under any arrival pattern: silent pushes never exceed the budget in any window,
        /// alerts are at least `alert_interval` apart, and every notification is covered by a
        /// push at or after its arrival (nothing dropped).
        #[test]
        fn budget_invariants(gaps in proptest::collection::vec(0u64..20 * MIN, 1..60),
                             n in 0u32..5) {
            let cfg = BudgetConfig { silent_per_window: n, ..BudgetConfig::default() };
            let p = Policy::new(PolicyMode::Budget(cfg.clone()));
            let mut t = 0;
            let times: Vec<u64> = gaps.iter().map(|g| { t += g; t }).collect();
            let end = t + 2 * ms(cfg.alert_interval);
            let pushes = run(&p, &times, end);
            let silent: Vec<u64> = pushes.iter().filter(|x| x.1 == PushStyle::Silent).map(|x| x.0).collect();
            for (i, s) in silent.iter().enumerate() {
                let in_window = silent[..=i].iter().filter(|x| s - **x < ms(cfg.window)).count();
                proptest::prop_assert!(in_window <= n as usize);
            }
            let alerts: Vec<u64> = pushes.iter().filter(|x| x.1 == PushStyle::Alert).map(|x| x.0).collect();
            for w in alerts.windows(2) {
                proptest::prop_assert!(w[1] - w[0] >= ms(cfg.alert_interval));
            }
            for a in &times {
                proptest::prop_assert!(pushes.iter().any(|(pt, _)| pt >= a),
                    "notification at {a} not covered");
            }
        }
    }
}
