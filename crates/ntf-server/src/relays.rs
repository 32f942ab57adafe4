//! Where the server's relay connections may go (`[SUBSCRIBER] relay_destinations`): `SNEW`
//! names a relay and the server then connects to it, so an unchecked address makes the server a
//! scanner of the operator's network. [`check_server`] answers `SNEW` at once for a relay not
//! yet in use; [`CheckedConnector`], the relay pool's connector, checks again at every
//! connection attempt: it resolves each host once, keeps only the addresses the policy allows
//! and connects to those addresses (never to the name again), so a DNS answer that changes
//! between the check and the connection (rebinding) cannot reach a refused address.
//!
//! With `[SUBSCRIBER] socks_proxy` (Tor) the connector follows the reference's `socks_mode`,
//! `host_mode` and `required_host_mode` ([`hush_transport::NetworkConfig`]): a relay reached
//! through the proxy is named to the proxy unresolved (no local DNS lookup, `.onion` hosts
//! work); the policy then applies to the relay hosts given as IP addresses only, as the proxy
//! resolves names (Tor exits refuse private destinations themselves).

use std::time::Duration;

use hush_client::{ClientConfig, ClientError, ConnectFuture, Connector, SmpClient};
use hush_proto::address::{ProtocolServer, TransportHost};
use hush_server_common::{DestinationPolicy, DestinationRefused, resolve_checked};
use hush_transport::{NetworkConfig, TransportClient};

/// Bound on the name lookup of the `SNEW` check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The hosts of `server` a connection may try (`.onion` needs a SOCKS proxy: skipped).
fn hosts(server: &ProtocolServer) -> impl Iterator<Item = String> + '_ {
    server.hosts().iter().filter_map(|h| match h {
        TransportHost::Onion(_) => None,
        h => Some(h.to_text()),
    })
}

/// `Err` when every (non-onion) host of `server` resolves only to addresses `policy` refuses.
/// A host that does not resolve (in [`CHECK_TIMEOUT`]) is not refused here: the connector
/// checks again when it connects. A relay that `network` reaches through the SOCKS proxy is
/// never looked up here (the proxy resolves it: a local lookup would leak the name to the local
/// resolver, which `socks_mode = always` promises not to do); only an IP-literal host is checked.
pub async fn check_server(
    server: &ProtocolServer,
    policy: DestinationPolicy,
    network: &NetworkConfig,
) -> Result<(), DestinationRefused> {
    if network.socks_proxy.is_some() {
        match network.route(server.hosts()) {
            Ok(route) if route.proxy.is_some() => {
                return match route.host {
                    TransportHost::Ipv4(a) => policy.check(std::net::IpAddr::from(*a)),
                    TransportHost::Ipv6(a) => policy.check(std::net::IpAddr::V6(*a)),
                    _ => Ok(()),
                };
            }
            Ok(_) => {}
            // No host the configuration may use: the connector refuses it at connection time.
            Err(_) => return Ok(()),
        }
    }
    let port = server.effective_port();
    let mut refused = None;
    let mut any = false;
    for host in hosts(server) {
        any = true;
        match tokio::time::timeout(CHECK_TIMEOUT, resolve_checked(&host, port, policy)).await {
            Ok(Ok(_)) | Ok(Err(DestinationRefused::Unresolved)) | Err(_) => return Ok(()),
            Ok(Err(e)) => refused = Some(e),
        }
    }
    match refused {
        Some(e) if any => Err(e),
        _ => Ok(()),
    }
}

/// The relay pool's connector: TCP + TLS + SMP handshake like hush-client's `TlsConnector`,
/// but only to addresses `policy` allows, resolved once per attempt.
#[derive(Clone, Debug)]
pub struct CheckedConnector {
    transport: TransportClient,
    policy: DestinationPolicy,
    network: NetworkConfig,
    /// Connections are notifier service sessions.
    service: bool,
}

impl CheckedConnector {
    /// Direct connections only.
    pub fn new(policy: DestinationPolicy) -> Result<Self, ClientError> {
        Self::with_network(policy, NetworkConfig::direct())
    }

    /// With a SOCKS proxy and host choice (`[SUBSCRIBER] socks_proxy`, `socks_mode`,
    /// `host_mode`, `required_host_mode`).
    pub fn with_network(
        policy: DestinationPolicy,
        network: NetworkConfig,
    ) -> Result<Self, ClientError> {
        Ok(CheckedConnector {
            transport: TransportClient::smp()?,
            policy,
            network,
            service: false,
        })
    }

    /// In a notifier service session (`[SUBSCRIBER] use_service_credentials = on`): the TLS
    /// client certificate is the service certificate, `NSUB`s carry the service signature
    /// and the pool resubscribes with one `NSUBS` per relay.
    pub fn with_service(
        mut self,
        credentials: hush_transport::ServiceCredentials,
    ) -> Result<Self, ClientError> {
        self.transport =
            TransportClient::smp_service(hush_transport::ClientConfig::smp(), credentials)?;
        self.service = true;
        Ok(self)
    }

    /// The connector `config` asks for: its destination policy and network, and the service
    /// credentials (from `<config dir>/service`, created when absent) when
    /// `use_service_credentials` is on.
    pub fn for_config(config: &crate::config::Config) -> Result<Self, String> {
        let c = Self::with_network(config.relay_destinations, config.network.clone())
            .map_err(|e| e.to_string())?;
        if !config.use_service_credentials {
            return Ok(c);
        }
        let creds = crate::init::service_credentials(&config.paths.config_dir)
            .map_err(|e| format!("service certificate: {e}"))?;
        c.with_service(creds).map_err(|e| e.to_string())
    }

    /// Through the proxy when the configuration routes `server` there; `None`: direct.
    async fn connect_via_proxy(
        &self,
        server: &ProtocolServer,
        config: &ClientConfig,
    ) -> Option<Result<(SmpClient, hush_client::EventReceiver), ClientError>> {
        self.network.socks_proxy.as_ref()?;
        let route = match self.network.route(server.hosts()) {
            Ok(r) => r,
            // permanent: the pool forgets the subscription
            Err(e) => return Some(Err(ClientError::Address(e.to_string()))),
        };
        let proxy = route.proxy?;
        let ip = match route.host {
            TransportHost::Ipv4(a) => Some(std::net::IpAddr::from(*a)),
            TransportHost::Ipv6(a) => Some(std::net::IpAddr::V6(*a)),
            _ => None,
        };
        if let Some(ip) = ip
            && let Err(e) = self.policy.check(ip)
        {
            return Some(Err(ClientError::Address(e.to_string())));
        }
        let port = server.effective_port();
        Some(
            self.transport
                .connect_socks(proxy, route.host, port, server.key_hash())
                .await
                .map(|conn| SmpClient::from_connection(conn, Some(server.clone()), config.clone()))
                .map_err(ClientError::from),
        )
    }

    async fn connect_to(
        &self,
        server: &ProtocolServer,
        config: &ClientConfig,
    ) -> Result<(SmpClient, hush_client::EventReceiver), ClientError> {
        if server.key_hash().len() != 32 {
            return Err(ClientError::Address("key hash must be 32 bytes".into()));
        }
        if let Some(r) = self.connect_via_proxy(server, config).await {
            return r;
        }
        let port = server.effective_port();
        let mut last = None;
        for host in hosts(server) {
            let addrs = match resolve_checked(&host, port, self.policy).await {
                Ok(a) => a,
                // A failed lookup may succeed later: not a permanent error.
                Err(DestinationRefused::Unresolved) => {
                    last = Some(ClientError::from(hush_transport::TransportError::Io(
                        std::io::Error::other("relay host did not resolve"),
                    )));
                    continue;
                }
                // Refused by the policy: permanent (the pool forgets the subscription).
                Err(e) => {
                    last = Some(ClientError::Address(e.to_string()));
                    continue;
                }
            };
            match self
                .transport
                .connect_addr(&addrs[..], server.key_hash())
                .await
            {
                Ok(conn) => {
                    return Ok(SmpClient::from_connection(
                        conn,
                        Some(server.clone()),
                        config.clone(),
                    ));
                }
                Err(e) => last = Some(ClientError::from(e)),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Address("no reachable (non-onion) host".into())))
    }
}

impl Connector for CheckedConnector {
    fn connect<'a>(
        &'a self,
        server: &'a ProtocolServer,
        config: &'a ClientConfig,
    ) -> ConnectFuture<'a> {
        Box::pin(self.connect_to(server, config))
    }

    fn is_service(&self) -> bool {
        self.service
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_transport::SocksProxy;

    const KEY: &str = "LcJUMfVhwD8yxjAiSaDzzGF3-kLG4Uh0Fl_ZIjrRwjI=";

    fn server(host: &str) -> ProtocolServer {
        ProtocolServer::parse(&format!("smp://{KEY}@{host}:5223")).unwrap()
    }

    fn via_tor() -> NetworkConfig {
        NetworkConfig::all_via(SocksProxy::new("127.0.0.1:9050".parse().unwrap()))
    }

    #[tokio::test]
    async fn names_routed_through_the_proxy_are_not_looked_up_locally() {
        // `localhost` resolves locally to a loopback address, which the public policy refuses:
        // a refusal here would mean the name was looked up on this host.
        let named = server("localhost");
        assert!(matches!(
            check_server(&named, DestinationPolicy::Public, &NetworkConfig::direct()).await,
            Err(DestinationRefused::AllRefused(_))
        ));
        assert_eq!(
            check_server(&named, DestinationPolicy::Public, &via_tor()).await,
            Ok(())
        );
        // An IP literal needs no lookup: still checked through the proxy.
        let literal = server("127.0.0.1");
        assert!(matches!(
            check_server(&literal, DestinationPolicy::Public, &via_tor()).await,
            Err(DestinationRefused::Class(_))
        ));
        assert_eq!(
            check_server(&literal, DestinationPolicy::Loopback, &via_tor()).await,
            Ok(())
        );
    }
}
