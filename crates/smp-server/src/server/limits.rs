//! Per-connection budgets for what a client that needs no password can make the relay do:
//! queue creations (`[LIMITS] new_queues_per_minute`) and the distinct destination relays it has
//! the proxy keep connections to (`[PROXY] max_links_per_client`). Only the connection's own task
//! touches them; nothing is allocated until the first `NEW` or `PRXY` (idle connections are the
//! relay's main memory cost).

use std::time::Instant;

use hush_server_common::limits::{IpKey, TokenBucket};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ConnLimits(Option<Box<Inner>>, Option<IpKey>);

#[derive(Debug, Default)]
struct Inner {
    new_queues: Option<TokenBucket>,
    /// Destination address texts this connection has proxied to (those whose proxy link has
    /// closed are dropped when room is needed).
    proxy_destinations: Vec<String>,
}

impl ConnLimits {
    /// A connection's budgets, for a peer at `peer` (the key of the per-address limits).
    pub fn for_peer(peer: IpKey) -> Self {
        ConnLimits(None, Some(peer))
    }

    /// The peer's address key (`None` for connections made in tests without one).
    pub fn peer(&self) -> Option<IpKey> {
        self.1
    }

    fn inner(&mut self) -> &mut Inner {
        self.0.get_or_insert_with(Box::default)
    }

    /// Takes one queue creation from a budget of `per_minute` at once, refilled at `per_minute`
    /// a minute. `per_minute == 0`: no limit.
    pub fn allow_new_queue(&mut self, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let now = Instant::now();
        self.inner()
            .new_queues
            .get_or_insert_with(|| TokenBucket::new(f64::from(per_minute) / 60.0, per_minute, now))
            .try_take(now)
    }

    /// Whether this connection may use a proxy link to `destination`: yes if it already does,
    /// or if fewer than `max` of the destinations it used still have an open link (`live`).
    pub fn allow_proxy_destination(
        &mut self,
        destination: &str,
        max: usize,
        live: impl Fn(&str) -> bool,
    ) -> bool {
        let dests = &mut self.inner().proxy_destinations;
        if dests.iter().any(|d| d == destination) {
            return true;
        }
        if dests.len() >= max {
            dests.retain(|d| live(d));
        }
        if dests.len() >= max {
            return false;
        }
        dests.push(destination.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_queue_budget() {
        let mut l = ConnLimits::default();
        assert!((0..5).all(|_| l.allow_new_queue(5)));
        assert!(!l.allow_new_queue(5));
        let mut off = ConnLimits::default();
        assert!((0..10_000).all(|_| off.allow_new_queue(0)));
        assert!(off.0.is_none(), "no limit allocates nothing");
    }

    #[test]
    fn proxy_destination_budget() {
        let mut l = ConnLimits::default();
        assert!(l.allow_proxy_destination("a", 2, |_| true));
        assert!(l.allow_proxy_destination("b", 2, |_| true));
        assert!(l.allow_proxy_destination("a", 2, |_| true));
        assert!(!l.allow_proxy_destination("c", 2, |_| true));
        // once "a"'s link has closed, its place is free
        assert!(l.allow_proxy_destination("c", 2, |d| d != "a"));
        assert!(!l.allow_proxy_destination("d", 2, |_| true));
    }
}
