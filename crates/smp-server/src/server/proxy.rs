//! Acting as an SMP proxy for this relay's clients (reference §3.10, `Server.hs`
//! `processProxiedCmd`, `Client.hs` `proxySMPCommand`/`forwardSMPTransmission`).
//!
//! `PRXY server` connects (once per destination, shared by all clients) to the destination relay
//! as a proxy client (`proxyServer = T`, no block encryption) and answers `PKEY` with that
//! session's id, the relay's version range capped at v17, its certificate chain and signed
//! session key. `PFWD v cmdKey E1` (entity = that session id) wraps the client's encrypted block
//! for the relay (`RFWD`, nonce = a fresh corrId) and returns the relay's answer as `PRES`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hush_crypto::{DhSecret, cb_decrypt_no_pad, cb_encrypt_no_pad, cb_nonce};
use hush_proto::address::{ProtocolServer, TransportHost};
use hush_proto::encoding::{Large, ShortString};
use hush_proto::error::{BrokerErrorType, ErrorType, ProxyError, TransportError};
use hush_proto::smp::{BrokerMsg, Command, NonEmpty, check_server_transmission};
use hush_proto::transmission::{Transmission, decode_transmission, encode_transmission};
use hush_proto::version::{VersionRange, smp_version};
use hush_transport::{ClientConfig, ConnWriter, Protocol, TransportClient};
use tokio::sync::oneshot;

/// How long a destination relay may take to connect or to answer a forwarded command.
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);

fn broker(e: BrokerErrorType) -> ErrorType {
    ErrorType::Proxy(ProxyError::Broker(e))
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
}

impl RelayLink {
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
    /// By destination address text (hosts, port, key hash); one slot per destination, so that a
    /// slow destination only delays requests for itself.
    links: Mutex<HashMap<String, Slot>>,
    /// By the proxy ↔ relay session id (the `PFWD` entity).
    by_session: Mutex<HashMap<Vec<u8>, Arc<RelayLink>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Default for Proxy {
    fn default() -> Self {
        let config = ClientConfig {
            proxy_server: true,
            ..ClientConfig::smp()
        };
        let client = TransportClient::new(Protocol::Smp, config, None)
            .map_err(|e| tracing::error!(error = %e, "cannot set up the SMP proxy client"))
            .ok();
        Proxy {
            client,
            links: Mutex::new(HashMap::new()),
            by_session: Mutex::new(HashMap::new()),
        }
    }
}

impl Proxy {
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
            return Ok(l.clone());
        }
        let client = self.client.as_ref().ok_or(ErrorType::Internal)?;
        // No SOCKS support: onion hosts cannot be reached.
        let host = server
            .hosts()
            .iter()
            .find(|h| !matches!(h, TransportHost::Onion(_)))
            .ok_or(broker(BrokerErrorType::Host))?
            .to_text();
        let port = server.effective_port();
        let connected = tokio::time::timeout(
            RELAY_TIMEOUT,
            client.connect_addr((host.as_str(), port), server.key_hash()),
        )
        .await;
        let conn = match connected {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "proxy: cannot connect to the destination relay");
                return Err(broker(BrokerErrorType::Network));
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
        });
        let reading = link.clone();
        tokio::spawn(async move {
            while let Ok(block) = reader.recv().await {
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
