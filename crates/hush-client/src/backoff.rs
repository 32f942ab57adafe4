//! Exponential backoff with jitter for reconnects.

use std::time::Duration;

use rand::Rng;

/// Reconnect delays: `initial × multiplier^n`, capped at `max`, each reduced by up to
/// `jitter` (a fraction, 0..=1) at random so that many clients do not reconnect in step.
#[derive(Clone, Debug, PartialEq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub jitter: f64,
}

impl Default for BackoffConfig {
    /// 1 s doubling up to 60 s, up to 30 % jitter.
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.3,
        }
    }
}

/// Backoff state for one relay.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// Back to the initial delay (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Delays handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The un-jittered delay of the next attempt.
    pub fn base_delay(&self) -> Duration {
        let c = &self.config;
        let factor = c.multiplier.max(1.0).powi(self.attempt.min(64) as i32);
        let secs = (c.initial.as_secs_f64() * factor).min(c.max.as_secs_f64());
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(c.max)
    }

    /// The next delay, with `unit` ∈ [0, 1) choosing the jitter (0 = no reduction).
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let base = self.base_delay();
        self.attempt = self.attempt.saturating_add(1);
        let jitter = self.config.jitter.clamp(0.0, 1.0) * unit.clamp(0.0, 1.0);
        base.mul_f64(1.0 - jitter)
    }

    /// The next delay with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        let unit: f64 = rand::thread_rng().r#gen();
        self.next_delay_with(unit)
    }
}
