//! `loadgen idle`: N TLS connections to a relay, each creating and subscribing (`SUB`) its queues,
//! then sitting idle; the relay's resident memory before, right after, and after a settle time
//! gives the cost of one idle subscribed connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hush_client::{ClientConfig, EventReceiver, NewQueueParams, SmpClient, TlsConnector};
use hush_proto::address::ServerWithAuth;
use hush_transport::TransportClient;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::LoadError;
use crate::procfs::{MemStatus, mem_status};

#[derive(Clone, Debug)]
pub struct IdleOptions {
    pub server: ServerWithAuth,
    /// The relay's pid, to read its memory (`None`: connect only, no memory figures).
    pub relay_pid: Option<u32>,
    pub connections: usize,
    pub queues_per_conn: usize,
    /// Connections being opened at the same time.
    pub concurrency: usize,
    /// How long to wait after the last `SUB` before the "settled" reading.
    pub settle: Duration,
    /// Print progress to stderr.
    pub progress: bool,
}

/// Relay memory at one moment, with the number of its open fds.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub mem: MemStatus,
    pub fds: usize,
}

#[derive(Clone, Debug)]
pub struct IdleReport {
    pub connections: usize,
    pub queues: usize,
    /// Connections still open after the settle time.
    pub alive_after_settle: usize,
    pub connect_time: Duration,
    pub relay_before: Option<Reading>,
    /// After the first half of the connections: (connections open, reading).
    pub relay_half: Option<(usize, Reading)>,
    pub relay_after: Option<Reading>,
    pub relay_settled: Option<Reading>,
    /// After every connection was closed (and 2 s passed).
    pub relay_closed: Option<Reading>,
    /// This process (the clients) before and after: client-side cost, for information.
    pub client_before: MemStatus,
    pub client_settled: MemStatus,
}

impl IdleReport {
    /// Relay VmRSS growth per connection (settled − before), kB.
    pub fn relay_kb_per_conn(&self) -> Option<f64> {
        let (b, s) = (self.relay_before?, self.relay_settled?);
        Some(per(s.mem.vm_rss_kb, b.mem.vm_rss_kb, self.connections))
    }

    /// Relay VmRSS growth per connection over the second half (settled − half-way), kB: the
    /// marginal cost of one more connection.
    pub fn relay_marginal_kb_per_conn(&self) -> Option<f64> {
        let ((n, h), s) = (self.relay_half?, self.relay_settled?);
        Some(per(
            s.mem.vm_rss_kb,
            h.mem.vm_rss_kb,
            self.connections.saturating_sub(n),
        ))
    }

    /// Relay RssAnon growth per connection (settled − before), kB.
    pub fn relay_anon_kb_per_conn(&self) -> Option<f64> {
        let (b, s) = (self.relay_before?, self.relay_settled?);
        Some(per(s.mem.rss_anon_kb, b.mem.rss_anon_kb, self.connections))
    }

    pub fn client_kb_per_conn(&self) -> f64 {
        per(
            self.client_settled.vm_rss_kb,
            self.client_before.vm_rss_kb,
            self.connections,
        )
    }

    /// Human-readable report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let line = |s: &mut String, name: &str, r: &Option<Reading>| {
            if let Some(r) = r {
                s.push_str(&format!(
                    "  relay {name:<9} VmRSS {:>9} kB  RssAnon {:>9} kB  VmHWM {:>9} kB  fds {:>6}  threads {}\n",
                    r.mem.vm_rss_kb, r.mem.rss_anon_kb, r.mem.vm_hwm_kb, r.fds, r.mem.threads
                ));
            }
        };
        s.push_str(&format!(
            "idle: {} connections, {} queues subscribed, opened in {:.1} s, {} alive after settle\n",
            self.connections,
            self.queues,
            self.connect_time.as_secs_f64(),
            self.alive_after_settle
        ));
        line(&mut s, "before", &self.relay_before);
        if let Some((n, r)) = &self.relay_half {
            line(&mut s, &format!("at {n}"), &Some(*r));
        }
        line(&mut s, "after", &self.relay_after);
        line(&mut s, "settled", &self.relay_settled);
        line(&mut s, "closed", &self.relay_closed);
        if let (Some(v), Some(a)) = (self.relay_kb_per_conn(), self.relay_anon_kb_per_conn()) {
            s.push_str(&format!(
                "  relay per connection (settled - before): {v:.2} kB VmRSS, {a:.2} kB RssAnon (target <= 16 kB)\n"
            ));
        }
        if let Some(m) = self.relay_marginal_kb_per_conn() {
            s.push_str(&format!(
                "  relay marginal per connection (second half: settled - half-way): {m:.2} kB VmRSS\n"
            ));
        }
        s.push_str(&format!(
            "  client (this process) per connection: {:.2} kB VmRSS\n",
            self.client_kb_per_conn()
        ));
        s
    }
}

fn per(after: u64, before: u64, n: usize) -> f64 {
    (after as f64 - before as f64) / n.max(1) as f64
}

fn reading(pid: Option<u32>) -> Result<Option<Reading>, LoadError> {
    match pid {
        None => Ok(None),
        Some(p) => Ok(Some(Reading {
            mem: mem_status(p)?,
            fds: crate::procfs::open_fds(p)?,
        })),
    }
}

type Conn = (SmpClient, EventReceiver);

/// Where the connections come from: the kernel's choice, or source addresses taken in turn
/// (one address has at most the ~28,000 ports of `ip_local_port_range` towards one relay port).
#[derive(Clone)]
struct Dialer {
    connector: Arc<TlsConnector>,
    /// (relay address, transport, source addresses) when sources are given.
    from: Option<(SocketAddr, Arc<TransportClient>, Arc<[IpAddr]>)>,
}

impl Dialer {
    fn new(server: &ServerWithAuth, sources: &[IpAddr]) -> Result<Dialer, LoadError> {
        let connector = Arc::new(TlsConnector::new()?);
        if sources.is_empty() {
            return Ok(Dialer {
                connector,
                from: None,
            });
        }
        let host = server
            .server
            .hosts()
            .first()
            .map(|h| h.to_text())
            .ok_or_else(|| LoadError::Address("no host".into()))?;
        let addr = relay_socket_addr(&host, server.server.effective_port())?;
        let transport = Arc::new(TransportClient::smp().map_err(hush_client::ClientError::from)?);
        Ok(Dialer {
            connector,
            from: Some((addr, transport, sources.into())),
        })
    }

    async fn connect(
        &self,
        server: &ServerWithAuth,
        config: &ClientConfig,
        n: usize,
    ) -> Result<Conn, LoadError> {
        match &self.from {
            None => Ok(self.connector.connect_to(&server.server, config).await?),
            Some((addr, transport, sources)) => {
                let ip = sources[n % sources.len()];
                let tcp = crate::abuse::clients::tcp_from(*addr, Some(ip)).await?;
                let conn = transport
                    .connect(tcp, server.server.key_hash())
                    .await
                    .map_err(hush_client::ClientError::from)?;
                Ok(SmpClient::from_connection(
                    conn,
                    Some(server.server.clone()),
                    config.clone(),
                ))
            }
        }
    }
}

/// The relay's socket address from an IP host (source addresses need one).
fn relay_socket_addr(host: &str, port: u16) -> Result<SocketAddr, LoadError> {
    let ip: IpAddr = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| LoadError::Address(format!("source addresses need an IP host, not {host}")))?;
    Ok(SocketAddr::new(ip, port))
}

/// Parses `127.0.0.1,127.0.0.2` or a range `127.0.0.1-127.0.0.4` (last octet only).
pub fn parse_sources(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            None => out.push(part.parse().map_err(|_| format!("bad address {part}"))?),
            Some((a, b)) => {
                let a: std::net::Ipv4Addr = a.parse().map_err(|_| format!("bad address {a}"))?;
                let b: std::net::Ipv4Addr = b.parse().map_err(|_| format!("bad address {b}"))?;
                let (oa, ob) = (a.octets(), b.octets());
                if oa[..3] != ob[..3] || oa[3] > ob[3] {
                    return Err(format!(
                        "range {part}: same first three octets, ascending last one"
                    ));
                }
                for last in oa[3]..=ob[3] {
                    out.push(IpAddr::V4(std::net::Ipv4Addr::new(
                        oa[0], oa[1], oa[2], last,
                    )));
                }
            }
        }
    }
    Ok(out)
}

async fn open_one(
    dialer: Dialer,
    server: Arc<ServerWithAuth>,
    queues: usize,
    n: usize,
) -> Result<Conn, LoadError> {
    let config = ClientConfig {
        event_buffer: 16,
        send_buffer: 16,
        command_timeout: Duration::from_secs(60),
    };
    let (client, events) = dialer.connect(&server, &config, n).await?;
    let mut created = Vec::with_capacity(queues);
    for _ in 0..queues {
        let q = client
            .create_queue(NewQueueParams {
                subscribe: false,
                basic_auth: server.auth.clone(),
                ..NewQueueParams::default()
            })
            .await?;
        created.push(q);
    }
    let subs: Vec<(&[u8], &hush_client::AuthKey)> = created
        .iter()
        .map(|q| (q.rcv_id.as_slice(), &q.rcv_key))
        .collect();
    for r in client.subscribe_many(&subs).await {
        r?;
    }
    Ok((client, events))
}

/// Opens `count` more connections (at most `opts.concurrency` at a time) into `conns`.
async fn open_batch(
    opts: &IdleOptions,
    dialer: &Dialer,
    server: &Arc<ServerWithAuth>,
    count: usize,
    conns: &mut Vec<Conn>,
    started: Instant,
) -> Result<(), LoadError> {
    let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let mut set = JoinSet::new();
    let mut first_err = None;
    let mut record = |r: Result<Result<Conn, LoadError>, tokio::task::JoinError>,
                      conns: &mut Vec<Conn>| match r {
        Ok(Ok(c)) => {
            conns.push(c);
            if opts.progress && conns.len().is_multiple_of(1000) {
                eprintln!(
                    "  {} connections subscribed ({:.1} s)",
                    conns.len(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Ok(Err(e)) => {
            first_err.get_or_insert(e);
        }
        Err(e) => {
            first_err.get_or_insert(LoadError::Relay(format!("task: {e}")));
        }
    };
    for _ in 0..count {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LoadError::Relay("semaphore closed".into()))?;
        let (c, s, q) = (dialer.clone(), server.clone(), opts.queues_per_conn);
        let n = conns.len() + set.len();
        set.spawn(async move {
            let r = open_one(c, s, q, n).await;
            drop(permit);
            r
        });
        while let Some(r) = set.try_join_next() {
            record(r, conns);
        }
    }
    while let Some(r) = set.join_next().await {
        record(r, conns);
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs the idle measurement; the connections are closed before it returns.
pub async fn run_idle(opts: &IdleOptions) -> Result<IdleReport, LoadError> {
    run_idle_from(opts, &[]).await
}

/// [`run_idle`] with the connections made from `sources` in turn (none: the kernel's choice).
pub async fn run_idle_from(
    opts: &IdleOptions,
    sources: &[IpAddr],
) -> Result<IdleReport, LoadError> {
    let me = std::process::id();
    let client_before = mem_status(me)?;
    let relay_before = reading(opts.relay_pid)?;
    let dialer = Dialer::new(&opts.server, sources)?;
    let server = Arc::new(opts.server.clone());
    let started = Instant::now();
    let mut conns: Vec<Conn> = Vec::with_capacity(opts.connections);
    // Two halves, with a reading in between: the growth over the second half is the marginal
    // cost of a connection, free of one-time costs (threads, allocator arenas, caches).
    let half = opts.connections / 2;
    let mut relay_half = None;
    for count in [half, opts.connections - half] {
        let r = open_batch(opts, &dialer, &server, count, &mut conns, started).await;
        if let Err(e) = r {
            for (c, _) in &conns {
                c.abort();
            }
            return Err(e);
        }
        if relay_half.is_none() {
            relay_half = Some((conns.len(), reading(opts.relay_pid)?));
        }
    }
    let connect_time = started.elapsed();
    let relay_after = reading(opts.relay_pid)?;
    if opts.progress {
        eprintln!(
            "  all {} connections subscribed; settling {} s",
            conns.len(),
            opts.settle.as_secs()
        );
    }
    tokio::time::sleep(opts.settle).await;
    let relay_settled = reading(opts.relay_pid)?;
    let client_settled = mem_status(me)?;
    let alive_after_settle = conns.iter().filter(|(c, _)| !c.is_closed()).count();
    for (c, _) in &conns {
        c.abort();
    }
    drop(conns);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let relay_closed = reading(opts.relay_pid)?;
    Ok(IdleReport {
        connections: opts.connections,
        queues: opts.connections * opts.queues_per_conn,
        alive_after_settle,
        connect_time,
        relay_before,
        relay_half: relay_half.and_then(|(n, r)| r.map(|r| (n, r))),
        relay_after,
        relay_settled,
        relay_closed,
        client_before,
        client_settled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses() {
        let ips = |v: &[&str]| -> Vec<IpAddr> { v.iter().map(|s| s.parse().unwrap()).collect() };
        assert_eq!(
            parse_sources("127.0.0.1, 127.0.0.9").unwrap(),
            ips(&["127.0.0.1", "127.0.0.9"])
        );
        assert_eq!(
            parse_sources("127.0.0.2-127.0.0.4,::1").unwrap(),
            ips(&["127.0.0.2", "127.0.0.3", "127.0.0.4", "::1"])
        );
        assert!(
            parse_sources("127.0.0.4-127.0.0.2")
                .unwrap_err()
                .contains("ascending")
        );
        assert!(
            parse_sources("127.0.0.1-127.0.1.2")
                .unwrap_err()
                .contains("octets")
        );
        assert!(
            parse_sources("localhost")
                .unwrap_err()
                .contains("bad address")
        );
        assert_eq!(parse_sources("").unwrap(), Vec::<IpAddr>::new());
        assert_eq!(
            relay_socket_addr("127.0.0.1", 5223).unwrap(),
            "127.0.0.1:5223".parse().unwrap()
        );
        assert!(relay_socket_addr("relay.example", 5223).is_err());
    }
}
