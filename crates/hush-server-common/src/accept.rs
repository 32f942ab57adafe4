//! The accept loop step shared by every listener of hush's servers: accept a connection, and on an
//! accept error (usually EMFILE/ENFILE) log it at warn level (never the peer address) and back off
//! (10 ms doubling up to 1 s, reset by the next success) instead of spinning, all cancelled by
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::Shutdown;

/// The first back-off after an accept error.
pub const BACKOFF_START: Duration = Duration::from_millis(10);
/// The longest back-off after repeated accept errors.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The back-off state of one listener, with the name used in its warn log.
#[derive(Debug, Clone)]
pub struct AcceptBackoff {
    name: &'static str,
    next: Duration,
}

impl AcceptBackoff {
    /// A fresh back-off for the listener called `name` in logs ("smp", "control port", ...).
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            next: BACKOFF_START,
        }
    }

    /// The delay the next accept error will wait.
    pub fn next_delay(&self) -> Duration {
        self.next
    }

    fn success(&mut self) {
        self.next = BACKOFF_START;
    }

    fn failure(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

/// Accepts the next connection on `listener`; `None` once `shutdown` fires (also while backing off).
pub async fn accept(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
    shutdown: &mut Shutdown,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => return None,
            a = listener.accept() => a,
        };
        if let Some(conn) = handle(accepted, backoff, shutdown.wait()).await? {
            return Some(conn);
        }
    }
}

/// [`accept`] for servers whose stop signal is another future: `stop()` makes a fresh future that
/// resolves when the server must stop (it is created for each wait, so it need not be cancel-safe
/// beyond one use).
pub async fn accept_until<F, Fut>(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
    mut stop: F,
) -> Option<(TcpStream, SocketAddr)>
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    loop {
        let accepted = tokio::select! {
            _ = stop() => return None,
            a = listener.accept() => a,
        };
        if let Some(conn) = handle(accepted, backoff, stop()).await? {
            return Some(conn);
        }
    }
}

/// `Some(Some(conn))` on success, `Some(None)` after backing off from an error, `None` on stop.
async fn handle<Fut: Future>(
    accepted: std::io::Result<(TcpStream, SocketAddr)>,
    backoff: &mut AcceptBackoff,
    stop: Fut,
) -> Option<Option<(TcpStream, SocketAddr)>> {
    match accepted {
        Ok(conn) => {
            backoff.success();
            Some(Some(conn))
        }
        Err(e) => {
            tracing::warn!(listener = backoff.name, error = %e, "accept failed");
            let delay = backoff.failure();
            tokio::select! {
                _ = stop => None,
                _ = tokio::time::sleep(delay) => Some(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown_channel;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = AcceptBackoff::new("test");
        let delays: Vec<_> = (0..9).map(|_| b.failure()).collect();
        assert_eq!(delays[0], Duration::from_millis(10));
        assert_eq!(delays[1], Duration::from_millis(20));
        assert_eq!(delays[6], Duration::from_millis(640));
        assert_eq!(delays[7], BACKOFF_MAX);
        assert_eq!(delays[8], BACKOFF_MAX);
        b.success();
        assert_eq!(b.next_delay(), BACKOFF_START);
    }

    #[tokio::test]
    async fn accepts_then_stops_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, mut shutdown) = shutdown_channel();
        let mut backoff = AcceptBackoff::new("test");
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (_tcp, peer) = accept(&listener, &mut backoff, &mut shutdown)
            .await
            .unwrap();
        assert!(peer.ip().is_loopback());
        let _c = client.await.unwrap();
        trigger.trigger();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            accept(&listener, &mut backoff, &mut shutdown),
        )
        .await
        .unwrap();
        assert!(r.is_none());
    }

    #[tokio::test]
    async fn accept_until_stops_on_its_signal() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut backoff = AcceptBackoff::new("test");
        tx.send(true).unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            accept_until(&listener, &mut backoff, || {
                let mut rx = rx.clone();
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                }
            }),
        )
        .await
        .unwrap();
        assert!(r.is_none());
    }
}
