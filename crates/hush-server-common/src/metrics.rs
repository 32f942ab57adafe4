//! The one metrics endpoint of hush's servers (smp-server, ntf-server, push-server) and the
//! metric types they share.
//!
//! [`serve`] answers `GET /metrics` (and `HEAD`) with the OpenMetrics text of an [`Exposition`]
//! (a `prometheus-client` registry, plus an optional hook run before each encoding for values
//! computed at scrape time): HTTP/1.1 via hyper, one request per connection, other paths 404,
//! other methods 405, a request head over [`MAX_REQUEST_HEAD`] 431, a malformed one 400. At most [`Limits::max_scrapes`] connections are served at once (a permit is
//! taken before `accept`: more wait in the kernel backlog); a client must send its request head
//! within [`Limits::header_read_timeout`], and a whole connection lasts at most
//! [`Limits::connection_timeout`]. The listener address is the server's (loopback by default in
//! each server's configuration); nothing here logs a peer address.
//!
//! Metric types beside `prometheus-client`'s:
//!
//! * [`UntypedCounter`]: a monotonic count exported under its registered name as type `unknown`
//!   (the reference servers' counters have no `_total` suffix, which an OpenMetrics `counter` must
//!   have; `rate()` works on either);
//! * [`AtomicGauge`]: a gauge that is a plain shared `AtomicU64` (`store`, `load`, `fetch_add`);
//! * [`Children`]: the children of a labelled family for a fixed list of label values, each looked
//!   up once and kept, so that counting on a hot path is one atomic add (no lock, no map lookup).

use std::convert::Infallible;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::{AcceptBackoff, Shutdown};

/// The servers build their registries with this crate's `prometheus-client` (no second copy).
pub use prometheus_client;

/// Content type of a `/metrics` answer (OpenMetrics text 1.0.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Largest accepted request head (request line + headers; larger: `431`). hyper's smallest.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// A monotonic counter exported under its exact registered name (no `_total` suffix), typed
/// `unknown` (Prometheus text 0.0.4 called it `untyped`). Clones share the count.
#[derive(Debug, Clone, Default)]
pub struct UntypedCounter(Counter);

impl UntypedCounter {
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn inc_by(&self, n: u64) {
        self.0.inc_by(n);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

impl TypedMetric for UntypedCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for UntypedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0.get())
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A gauge that is a shared `AtomicU64`: set with `store`, read with `load`, moved with
/// `fetch_add`/`fetch_sub` (through `Deref`). Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct AtomicGauge(Arc<AtomicU64>);

impl std::ops::Deref for AtomicGauge {
    type Target = AtomicU64;
    fn deref(&self) -> &AtomicU64 {
        &self.0
    }
}

impl TypedMetric for AtomicGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for AtomicGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0.load(std::sync::atomic::Ordering::Relaxed))
    }
    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The children of a labelled [`Family`] for label values from a fixed list, by index: each is
/// looked up in the family once (at its first use, or at once with [`Children::create_all`]) and
/// kept, so that later updates are an atomic add on the kept child, with no lock and no map
/// lookup. Values outside the list go to the family itself ([`Children::family`]).
pub struct Children<S, M, C = fn() -> M> {
    family: Family<S, M, C>,
    slots: Box<[OnceLock<M>]>,
}

impl<S, M, C> std::fmt::Debug for Children<S, M, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Children")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl<S, M, C> Children<S, M, C>
where
    S: Clone + Hash + Eq,
    M: Clone,
    C: MetricConstructor<M>,
{
    /// `n` slots over `family` (register a clone of `family`: they share their children).
    pub fn new(family: Family<S, M, C>, n: usize) -> Self {
        Self {
            family,
            slots: (0..n).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Child `i`, created in the family with the labels `labels()` at its first use.
    ///
    /// # Panics
    /// If `i` is not below the `n` given to [`Children::new`] (a programming error: indexes come
    /// from the caller's fixed list).
    pub fn get(&self, i: usize, labels: impl FnOnce() -> S) -> &M {
        self.slots[i].get_or_init(|| self.family.get_or_create_owned(&labels()))
    }

    /// Creates every child now (a scrape then shows each at zero), `labels(i)` giving child `i`'s
    /// labels.
    pub fn create_all(&self, labels: impl Fn(usize) -> S) {
        for i in 0..self.slots.len() {
            self.get(i, || labels(i));
        }
    }

    /// The family, for values outside the fixed list.
    pub fn family(&self) -> &Family<S, M, C> {
        &self.family
    }
}

type ScrapeHook = Arc<dyn Fn() + Send + Sync>;

/// What `/metrics` answers: a registry and an optional hook run before each encoding (for
/// values computed at scrape time, e.g. gauges filled from a count). Cheap to clone.
#[derive(Clone)]
pub struct Exposition {
    registry: Arc<Registry>,
    on_scrape: Option<ScrapeHook>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("on_scrape", &self.on_scrape.is_some())
            .finish_non_exhaustive()
    }
}

impl Exposition {
    pub fn new(registry: Registry) -> Self {
        Self {
            registry: Arc::new(registry),
            on_scrape: None,
        }
    }

    /// Runs `hook` before each encoding (it must be quick: it runs on the scrape's task).
    pub fn on_scrape(mut self, hook: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_scrape = Some(Arc::new(hook));
        self
    }

    /// The OpenMetrics text of every metric (ending with `# EOF`).
    pub fn encode(&self) -> String {
        if let Some(hook) = &self.on_scrape {
            hook();
        }
        let mut out = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Writing to a String cannot fail; keep the scrape well-formed if it ever does.
            out.clear();
            out.push_str("# encoding error\n# EOF\n");
        }
        out
    }
}

/// Bounds of the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel backlog.
    pub max_scrapes: usize,
    /// Time a client has to send its request head (hyper `header_read_timeout`).
    pub header_read_timeout: Duration,
    /// Longest life of one connection (a client that reads the answer too slowly).
    pub connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_scrapes: 16,
            header_read_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `/metrics` on `listener` with the default [`Limits`] until `shutdown` fires.
pub async fn serve(listener: TcpListener, exposition: Exposition, shutdown: Shutdown) {
    serve_with(listener, exposition, shutdown, Limits::default()).await;
}

/// [`serve`] with explicit limits.
pub async fn serve_with(
    listener: TcpListener,
    exposition: Exposition,
    mut shutdown: Shutdown,
    limits: Limits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_scrapes.max(1)));
    let mut backoff = AcceptBackoff::new("metrics");
    loop {
        let permit = tokio::select! {
            _ = shutdown.wait() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let Some((tcp, _peer)) = crate::accept(&listener, &mut backoff, &mut shutdown).await else {
            return;
        };
        let exposition = exposition.clone();
        tokio::spawn(async move {
            let mut tcp = tcp;
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let exposition = exposition.clone();
                async move { Ok::<_, Infallible>(respond(&req, &exposition)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_REQUEST_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(&mut tcp), svc);
            let served = tokio::time::timeout(limits.connection_timeout, conn).await;
            match served {
                Err(_) => tracing::debug!("metrics connection timed out"),
                // a silent client: nothing was answered, nothing to linger for
                Ok(Err(e)) if e.is_timeout() => {}
                Ok(_) => {
                    // an answer (or an error status for a bad request) was written: let the
                    // client read it before the socket closes (no reset over unread input)
                    let _ = tcp.shutdown().await;
                    linger(&mut tcp).await;
                }
            }
            drop(permit);
        });
    }
}

/// Reads and drops what the client is still sending (at most 1 MiB, 1 s) so that closing the
/// socket does not reset the connection before the client has read the answer.
async fn linger(tcp: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut left: usize = 1024 * 1024;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while left > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

fn respond<B>(req: &Request<B>, exposition: &Exposition) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 Not Found\n".into(),
        )
    } else if req.method() == Method::GET || req.method() == Method::HEAD {
        (StatusCode::OK, CONTENT_TYPE, exposition.encode())
    } else {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "405 Method Not Allowed\n".into(),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown_channel;
    use prometheus_client::metrics::gauge::Gauge;
    use std::net::SocketAddr;
    use std::time::Instant;

    /// One request on a new connection: (status line, content type, body); `None` when the
    /// server closed the connection without answering.
    async fn request(addr: SocketAddr, head: &str) -> Option<(String, String, String)> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        read_response(&mut s).await
    }

    async fn read_response(s: &mut TcpStream) -> Option<(String, String, String)> {
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.lines().next().unwrap_or_default().to_string();
        let ctype = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        Some((status, ctype, body.to_string()))
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
    }

    #[tokio::test]
    async fn endpoint_statuses_content_type_cap_and_header_timeout() {
        let mut registry = Registry::default();
        let c = UntypedCounter::default();
        let g = AtomicGauge::default();
        let live = Gauge::<i64>::default();
        registry.register("hush_test_events", "Events", c.clone());
        registry.register("hush_test_level", "Level", g.clone());
        registry.register("hush_test_live", "Set at scrape time", live.clone());
        c.inc_by(3);
        g.store(7, std::sync::atomic::Ordering::Relaxed);
        let scrapes = Arc::new(AtomicU64::new(0));
        let hook_scrapes = scrapes.clone();
        let exposition = Exposition::new(registry).on_scrape(move || {
            let n = hook_scrapes.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            live.set(100 + n as i64);
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = shutdown_channel();
        let timeout = Duration::from_millis(1500);
        let limits = Limits {
            max_scrapes: 2,
            header_read_timeout: timeout,
            connection_timeout: Duration::from_secs(30),
        };
        let server = tokio::spawn(serve_with(listener, exposition, shutdown, limits));

        let (status, ctype, body) = request(addr, &get("/metrics")).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(ctype, CONTENT_TYPE);
        assert!(body.contains("# TYPE hush_test_events unknown\n"), "{body}");
        assert!(body.contains("\nhush_test_events 3\n"), "{body}");
        assert!(body.contains("# TYPE hush_test_level gauge\n"), "{body}");
        assert!(body.contains("\nhush_test_level 7\n"), "{body}");
        // the hook ran before this encoding
        assert!(body.contains("\nhush_test_live 101\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        let (status, _, _) = request(addr, &get("/metrics?x=1")).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let (status, _, body) = request(addr, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(
            status.starts_with("HTTP/1.1 200") && body.is_empty(),
            "{status} {body}"
        );

        let (status, ctype, _) = request(addr, &get("/")).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 404"), "{status}");
        assert!(ctype.starts_with("text/plain"), "{ctype}");
        let (status, _, _) = request(addr, &get("/metricsx")).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 404"), "{status}");
        let post = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(post.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        let raw = String::from_utf8(raw).unwrap();
        assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
        assert!(
            raw.to_ascii_lowercase()
                .contains("\r\nallow: get, head\r\n"),
            "{raw}"
        );
        assert_eq!(scrapes.load(std::sync::atomic::Ordering::Relaxed), 3);

        // Two clients that never send a request hold both permits: a third is not answered...
        let started = Instant::now();
        let mut idle1 = TcpStream::connect(addr).await.unwrap();
        let mut idle2 = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(get("/metrics").as_bytes()).await.unwrap();
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte)).await;
        assert!(early.is_err(), "answered beyond the cap: {early:?}");
        // ...until the header read timeout closes the silent ones (without an answer)...
        for idle in [&mut idle1, &mut idle2] {
            let mut rest = Vec::new();
            let r = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut rest))
                .await
                .expect("a silent client must be closed");
            assert!(r.is_err() || !String::from_utf8_lossy(&rest).contains(" 200 "));
            assert!(
                started.elapsed() >= timeout - Duration::from_millis(100),
                "closed before the header read timeout: {:?}",
                started.elapsed()
            );
        }
        // ...and then the waiting one is served.
        let (status, _, body) =
            tokio::time::timeout(Duration::from_secs(20), read_response(&mut third))
                .await
                .unwrap()
                .unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(body.contains("hush_test_events 3"), "{body}");

        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        // the listener is closed with the server
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn children_are_created_once_and_shared_with_the_family() {
        let family = Family::<[(&'static str, &'static str); 1], UntypedCounter>::default();
        let mut registry = Registry::default();
        registry.register("hush_test_by", "By value", family.clone());
        let children = Children::new(family, 2);
        let values = ["a", "b"];
        let exposition = Exposition::new(registry);
        // nothing created yet: the family is empty, not exported
        assert_eq!(exposition.encode(), "# EOF\n");
        children.get(0, || [("v", values[0])]).inc();
        children.get(0, || unreachable!("created already")).inc();
        assert_eq!(children.get(0, || [("v", "a")]).get(), 2);
        assert_eq!(
            children.family().get_or_create(&[("v", "a")]).get(),
            2,
            "the kept child is the family's"
        );
        children.create_all(|i| [("v", values[i])]);
        let text = exposition.encode();
        assert!(text.contains("hush_test_by{v=\"a\"} 2\n"), "{text}");
        assert!(text.contains("hush_test_by{v=\"b\"} 0\n"), "{text}");
    }
}
