//! Acting as an SMP proxy for this relay's clients (reference §3.10, `Server.hs`
//! `processProxiedCmd`, `Client.hs` `proxySMPCommand`/`forwardSMPTransmission`).
//!
//! `PRXY server` connects (once per destination, shared by all clients) to the destination relay
//! as a proxy client (`proxyServer = T`, no block encryption) and answers `PKEY` with that
//! session's id, the relay's version range capped at v17, its certificate chain and signed
//! session key. `PFWD v cmdKey E1` (entity = that session id) wraps the client's encrypted block
//! for the relay (`RFWD`, nonce = a fresh corrId) and returns the relay's answer as `PRES`.
//!
//! Abuse limits (hush; the reference connects anywhere, without caps): a destination is resolved
//! once and connected to only at the addresses `[PROXY] destinations` allows (public only by
//! default, so `PRXY` is no scanner of the operator's private network); at most
//! `max_relay_links` links are open at once; a link unused for `idle_timeout` is closed. A
//! refused destination or a full link table gets `PROXY BROKER NETWORK`, as an unreachable
//! destination does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use hush_crypto::{DhSecret, cb_decrypt_no_pad, cb_encrypt_no_pad, cb_nonce};
use hush_proto::address::{ProtocolServer, TransportHost};
use hush_proto::encoding::{Large, ShortString};
use hush_proto::error::{BrokerErrorType, ErrorType, ProxyError, TransportError};
use hush_proto::smp::{BrokerMsg, Command, NonEmpty, check_server_transmission};
use hush_proto::transmission::{Transmission, decode_transmission, encode_transmission};
use hush_proto::version::{VersionRange, smp_version};
use hush_transport::{ClientConfig, ConnWriter, Protocol, TransportClient};
use tokio::sync::oneshot;

use crate::Metrics;
use crate::config::ProxyConfig;

/// How long a destination relay may take to connect or to answer a forwarded command.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

fn broker(e: BrokerErrorType) -> ErrorType {
    ErrorType::Proxy(ProxyError::Broker(e))
}

/// `PROXY BROKER NETWORK`: the destination could not be connected to (also the answer when the
/// destination policy or a link cap refuses it, so that refusals look like unreachable hosts).
pub fn network_error() -> ErrorType {
    broker(BrokerErrorType::Network)
}

/// Why a `PRXY` was refused before any connection attempt (the `type` of
/// `hush_smp_proxy_refused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `[PROXY] destinations` does not allow any address of the destination.
    Destination,
    /// `[PROXY] max_relay_links` links are open.
    Links,
    /// The client connection already uses `[PROXY] max_links_per_client` destinations.
    ClientLinks,
}

fn transport(e: TransportError) -> ErrorType {
    broker(BrokerErrorType::Transport(e))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One proxy connection to a destination relay.
pub struct RelayLink {
    session_id: Vec<u8>,
    version: u16,
    server_versions: VersionRange,
    chain: Vec<Vec<u8>>,
    signed_key: Option<Vec<u8>>,
    secret: Option<DhSecret>,
    writer: tokio::sync::Mutex<ConnWriter>,
    waiters: Mutex<HashMap<Vec<u8>, oneshot::Sender<BrokerMsg>>>,
    alive: AtomicBool,
    /// When the link was last used (idle links are closed).
    last_used: Mutex<Instant>,
}

impl RelayLink {
    fn touch(&self) {
        *lock(&self.last_used) = Instant::now();
    }

    fn idle_since(&self) -> Instant {
        *lock(&self.last_used)
    }

    /// Sends `cmd` (no authorization, no entity) and waits for the answer with its corrId.
    async fn request(&self, corr: &[u8], cmd: &Command) -> Result<BrokerMsg, ErrorType> {
        let command = cmd.encode(self.version);
        let t = Transmission {
            session_id: &self.session_id,
            ..Transmission::new(corr, &[], &command)
        };
        let mut bytes = Vec::new();
        encode_transmission(&mut bytes, &t, self.version, true)
            .map_err(|_| transport(TransportError::LargeMsg))?;
        let (tx, rx) = oneshot::channel();
        self.touch();
        lock(&self.waiters).insert(corr.to_vec(), tx);
        let sent = {
            let mut w = self.writer.lock().await;
            tokio::time::timeout(RELAY_TIMEOUT, w.send_transmissions(&[bytes])).await
        };
        match sent {
            Ok(Ok(too_large)) if too_large.is_empty() => {}
            Ok(Ok(_)) => {
                lock(&self.waiters).remove(corr);
                return Err(transport(TransportError::LargeMsg));
            }
            _ => {
                lock(&self.waiters).remove(corr);
                self.alive.store(false, Ordering::Relaxed);
                return Err(broker(BrokerErrorType::Network));
            }
        }
        match tokio::time::timeout(RELAY_TIMEOUT, rx).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(_)) => Err(broker(BrokerErrorType::Network)),
            Err(_) => {
                lock(&self.waiters).remove(corr);
                Err(broker(BrokerErrorType::Timeout))
            }
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<RelayLink>>>>;

/// The proxy's connections to destination relays.
pub struct Proxy {
    client: Option<TransportClient>,
    config: ProxyConfig,
    metrics: Metrics,
    /// By destination address text (hosts, port, key hash); one slot per destination, so that a
    /// slow destination only delays requests for itself.
    links: Mutex<HashMap<String, Slot>>,
    /// By the proxy ↔ relay session id (the `PFWD` entity).
    by_session: Arc<Mutex<HashMap<Vec<u8>, Arc<RelayLink>>>>,
    /// Links open or being opened (at most `max_relay_links`).
    open_links: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

/// Gives a reserved place under `max_relay_links` back when dropped (unless kept).
struct LinkReservation<'a> {
    open_links: &'a AtomicUsize,
    metrics: &'a Metrics,
    kept: bool,
}

impl Drop for LinkReservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.open_links.fetch_sub(1, Ordering::AcqRel);
            self.metrics.proxy_links.dec();
        }
    }
}

impl Proxy {
    pub fn new(config: ProxyConfig, metrics: Metrics) -> Self {
        let client_config = ClientConfig {
            proxy_server: true,
            ..ClientConfig::smp()
        };
        let client = TransportClient::new(Protocol::Smp, client_config, None)
            .map_err(|e| tracing::error!(error = %e, "cannot set up the SMP proxy client"))
            .ok();
        Proxy {
            client,
            config,
            metrics,
            links: Mutex::new(HashMap::new()),
            by_session: Arc::new(Mutex::new(HashMap::new())),
            open_links: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Counts a refused `PRXY` (`hush_smp_proxy_refused`).
    pub fn refused(&self, why: Refusal) {
        let t = match why {
            Refusal::Destination => "destination",
            Refusal::Links => "links",
            Refusal::ClientLinks => "client_links",
        };
        self.metrics
            .proxy_refused
            .get_or_create(&[("type", t)])
            .inc();
    }

    /// Links open now (or being opened).
    pub fn open_links(&self) -> usize {
        self.open_links.load(Ordering::Acquire)
    }

    /// Whether the destination with address text `destination` has an open link (or one being
    /// opened).
    pub fn has_live_link(&self, destination: &str) -> bool {
        let Some(slot) = lock(&self.links).get(destination).cloned() else {
            return false;
        };
        match slot.try_lock() {
            Ok(l) => l.as_ref().is_some_and(|l| l.alive.load(Ordering::Relaxed)),
            // being connected right now
            Err(_) => true,
        }
    }

    /// Reserves a place under `max_relay_links`.
    fn reserve_link(&self) -> Option<LinkReservation<'_>> {
        let max = self.config.max_relay_links;
        self.open_links
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.metrics.proxy_links.inc();
        Some(LinkReservation {
            open_links: &self.open_links,
            metrics: &self.metrics,
            kept: false,
        })
    }

    /// The addresses of `server` the destination policy allows: its hosts (onion hosts cannot be
    /// reached without SOCKS) resolved once, in order; the first host with allowed addresses wins.
    async fn destination_addrs(
        &self,
        server: &ProtocolServer,
    ) -> Result<Vec<SocketAddr>, ErrorType> {
        let port = server.effective_port();
        let mut any_host = false;
        for h in server.hosts() {
            if matches!(h, TransportHost::Onion(_)) {
                continue;
            }
            any_host = true;
            let host = h.to_text();
            match hush_server_common::resolve_checked(&host, port, self.config.destinations).await {
                Ok(addrs) => return Ok(addrs),
                // The reason names the address class, never the host.
                Err(e) => tracing::debug!(reason = %e, "proxy: destination host refused"),
            }
        }
        if !any_host {
            return Err(broker(BrokerErrorType::Host));
        }
        self.refused(Refusal::Destination);
        Err(network_error())
    }

    /// The SOCKS proxy and host for `server` when `[PROXY] socks_proxy` routes it through the
    /// proxy (`None`: a direct connection). A host given as an IP address is checked against
    /// `destinations` here, as direct connections are.
    fn socks_route<'a>(
        &'a self,
        server: &'a ProtocolServer,
    ) -> Result<Option<(&'a hush_transport::SocksProxy, &'a TransportHost)>, String> {
        let net = &self.config.network;
        if net.socks_proxy.is_none() {
            return Ok(None);
        }
        let route = net.route(server.hosts()).map_err(|e| e.to_string())?;
        let Some(proxy) = route.proxy else {
            return Ok(None);
        };
        let ip = match route.host {
            TransportHost::Ipv4(a) => Some(std::net::IpAddr::from(*a)),
            TransportHost::Ipv6(a) => Some(std::net::IpAddr::V6(*a)),
            _ => None,
        };
        if let Some(ip) = ip {
            self.config
                .destinations
                .check(ip)
                .map_err(|e| e.to_string())?;
        }
        Ok(Some((proxy, route.host)))
    }

    /// The live link to `server`, connecting if needed.
    async fn link(&self, server: &ProtocolServer) -> Result<Arc<RelayLink>, ErrorType> {
        let slot: Slot = {
            let mut links = lock(&self.links);
            links.retain(|_, s| {
                // keep slots in use and slots holding a live link
                Arc::strong_count(s) > 1
                    || s.try_lock()
                        .is_ok_and(|l| l.as_ref().is_some_and(|l| l.alive.load(Ordering::Relaxed)))
            });
            links.entry(server.to_text()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if let Some(l) = slot.as_ref()
            && l.alive.load(Ordering::Relaxed)
        {
            l.touch();
            return Ok(l.clone());
        }
        let client = self.client.as_ref().ok_or(ErrorType::Internal)?;
        // Through the SOCKS proxy (`[PROXY] socks_proxy`) when the configuration routes this
        // destination there: the proxy resolves the name (no local lookup; `.onion` works), so
        // the destination policy applies to hosts given as IP addresses only.
        let socks = match self.socks_route(server) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(reason = %e, "proxy: no usable destination host");
                return Err(broker(BrokerErrorType::Host));
            }
        };
        let addrs = match socks {
            Some(_) => Vec::new(),
            None => tokio::time::timeout(RELAY_TIMEOUT, self.destination_addrs(server))
                .await
                .map_err(|_| broker(BrokerErrorType::Timeout))??,
        };
        let Some(mut reservation) = self.reserve_link() else {
            tracing::debug!("proxy: max_relay_links reached");
            self.refused(Refusal::Links);
            return Err(network_error());
        };
        // Connect to the checked addresses only (no second lookup of the host name).
        let connecting = async {
            if let Some((proxy, host)) = socks {
                return client
                    .connect_socks(proxy, host, server.effective_port(), server.key_hash())
                    .await
                    .map_err(Some);
            }
            let mut last = None;
            for a in &addrs {
                match client.connect_addr(*a, server.key_hash()).await {
                    Ok(c) => return Ok(c),
                    Err(e) => last = Some(e),
                }
            }
            Err(last)
        };
        let conn = match tokio::time::timeout(RELAY_TIMEOUT, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                if let Some(e) = e {
                    tracing::debug!(error = %e, "proxy: cannot connect to the destination relay");
                }
                return Err(network_error());
            }
            Err(_) => return Err(broker(BrokerErrorType::Timeout)),
        };
        let session_id = conn.session_id().to_vec();
        let version = conn.version();
        let server_versions = conn.info().server_versions;
        let chain = conn.server_cert_chain().to_vec();
        let signed_key = conn.server_signed_key().map(<[u8]>::to_vec);
        let secret = conn.session_secret().cloned();
        let (mut reader, writer) = conn.into_split();
        let link = Arc::new(RelayLink {
            session_id: session_id.clone(),
            version,
            server_versions,
            chain,
            signed_key,
            secret,
            writer: tokio::sync::Mutex::new(writer),
            waiters: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            last_used: Mutex::new(Instant::now()),
        });
        // From here the reader task gives the reserved place back when the link ends.
        reservation.kept = true;
        let reading = link.clone();
        let idle = self.config.idle_timeout;
        let open_links = self.open_links.clone();
        let by_session = self.by_session.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            loop {
                let deadline = reading.idle_since() + idle;
                let block = tokio::select! {
                    r = reader.recv() => match r {
                        Ok(b) => b,
                        Err(_) => break,
                    },
                    _ = tokio::time::sleep_until(deadline) => {
                        if reading.idle_since() + idle > Instant::now() {
                            continue;
                        }
                        if !lock(&reading.waiters).is_empty() {
                            // a request is waiting for its answer: in use
                            reading.touch();
                            continue;
                        }
                        tracing::debug!("proxy: closing an idle link");
                        break;
                    }
                };
                let Ok(block) = block else { continue };
                let Ok(ts) = block.transmissions() else {
                    continue;
                };
                for t in ts {
                    let Ok(t) = decode_transmission(t, reading.version, true) else {
                        continue;
                    };
                    let Ok(m) = check_server_transmission(&t, reading.version, &reading.session_id)
                    else {
                        continue;
                    };
                    if let Some(w) = lock(&reading.waiters).remove(t.corr_id) {
                        let _ = w.send(m);
                    }
                }
            }
            reading.alive.store(false, Ordering::Relaxed);
            lock(&reading.waiters).clear();
            lock(&by_session).remove(&reading.session_id);
            drop(reader);
            if let Ok(mut w) =
                tokio::time::timeout(Duration::from_secs(5), reading.writer.lock()).await
            {
                let _ = tokio::time::timeout(Duration::from_secs(5), w.shutdown()).await;
            }
            open_links.fetch_sub(1, Ordering::AcqRel);
            metrics.proxy_links.dec();
        });
        *slot = Some(link.clone());
        let mut by_session = lock(&self.by_session);
        by_session.retain(|_, l| l.alive.load(Ordering::Relaxed));
        by_session.insert(session_id, link.clone());
        Ok(link)
    }

    /// `PRXY`: the `PKEY` for `server`.
    pub async fn session(&self, server: &ProtocolServer) -> Result<BrokerMsg, ErrorType> {
        let link = self.link(server).await?;
        let vr = link
            .server_versions
            .intersect(&smp_version::PROXIED_RANGE)
            .filter(|_| link.version >= smp_version::SENDING_PROXY)
            .ok_or(transport(TransportError::Version))?;
        let signed_key = link
            .signed_key
            .as_ref()
            .ok_or(transport(TransportError::NoAuth))?;
        let chain: Vec<Large> = link
            .chain
            .iter()
            .filter_map(|c| Large::new(c.clone()).ok())
            .collect();
        Ok(BrokerMsg::PKey {
            session_id: ShortString::new(link.session_id.clone())
                .map_err(|_| ErrorType::Internal)?,
            version_range: vr,
            cert_chain: NonEmpty::new(chain).ok_or(transport(TransportError::NoAuth))?,
            signed_key: Large::new(signed_key.clone()).map_err(|_| ErrorType::Internal)?,
        })
    }

    /// `PFWD`: forward `enc` (the client's encrypted block) to the relay of session `session_id`.
    pub async fn forward(
        &self,
        session_id: &[u8],
        corr: &[u8],
        version: u16,
        key_der: &[u8],
        enc: &[u8],
    ) -> Result<BrokerMsg, ErrorType> {
        let link = lock(&self.by_session)
            .get(session_id)
            .filter(|l| l.alive.load(Ordering::Relaxed))
            .cloned()
            .ok_or(ErrorType::Proxy(ProxyError::NoSession))?;
        link.touch();
        if link.version < smp_version::SENDING_PROXY {
            return Err(transport(TransportError::Version));
        }
        let secret = link
            .secret
            .as_ref()
            .ok_or(transport(TransportError::NoAuth))?;
        let mut payload = Vec::with_capacity(4 + corr.len() + key_der.len() + enc.len());
        payload.push(corr.len() as u8);
        payload.extend_from_slice(corr);
        payload.extend_from_slice(&version.to_be_bytes());
        payload.push(key_der.len() as u8);
        payload.extend_from_slice(key_der);
        payload.extend_from_slice(enc);
        let rfwd_corr = hush_crypto::random_nonce();
        let e2 = cb_encrypt_no_pad(secret, &cb_nonce(&rfwd_corr), &payload);
        match link.request(&rfwd_corr, &Command::RFwd(e2)).await? {
            BrokerMsg::RRes(f2) => {
                let mut nonce = cb_nonce(&rfwd_corr);
                nonce.reverse();
                let fr = cb_decrypt_no_pad(secret, &nonce, &f2).map_err(|_| ErrorType::Crypto)?;
                let mut p = hush_proto::Parser::new(&fr);
                let fwd_corr = p.short_string().map_err(|_| ErrorType::Crypto)?;
                if fwd_corr != corr {
                    return Err(broker(BrokerErrorType::Unexpected(
                        hush_proto::error::short_text("correlation id"),
                    )));
                }
                Ok(BrokerMsg::PRes(p.tail().to_vec()))
            }
            BrokerMsg::Err(e) => Err(ErrorType::Proxy(ProxyError::Protocol(Box::new(e)))),
            other => Err(broker(BrokerErrorType::Unexpected(
                hush_proto::error::short_text(other.tag()),
            ))),
        }
    }
}
