//! Outgoing connections through a SOCKS5 proxy (e.g. Tor): the CONNECT command of RFC 1928
//! with "no authentication" or RFC 1929 username/password, and the reference's rules for which
//! host of a server address to use and when to go through the proxy (`socks_proxy`,
//! `socks_mode`, `host_mode`, `required_host_mode` of the reference's ntf-server `[SUBSCRIBER]`
//! and smp-server `[PROXY]` sections).
//!
//! * [`SocksProxy`] parses the reference's syntax: `[user:password@ | @]host[:port]`, host an
//!   IPv4 or IPv6 address (`[::1]`) or `localhost`, default `127.0.0.1:9050`. Without a
//!   credential prefix the connection is isolated by credentials ([`SocksAuth::Isolate`], the
//!   reference's default): a username derived from this process's random session value and
//!   the destination, so that Tor (`IsolateSOCKSAuth`, on by default) uses separate circuits for
//!   separate relays; `@host:port` sends no credentials.
//! * [`NetworkConfig::route`] picks the host (`host_mode = onion` prefers the `.onion` host
//!   of an address with several hosts when a proxy is configured, `public` the first other
//!   one; `required_host_mode` fails instead of falling back) and whether the proxy is used
//!   (`socks_mode = always`, or `onion`: only for `.onion` hosts).
//! * [`socks5_connect`] opens the TCP connection through the proxy; the destination name is
//!   sent to the proxy unresolved (no local DNS lookup of relay names, none for `.onion`).
//!
//! [`crate::TransportClient::connect_server`] combines them with TLS and the hello.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use hush_proto::address::TransportHost;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::TransportError;

/// The reference's default SOCKS port (Tor).
pub const DEFAULT_SOCKS_PORT: u16 = 9050;

/// Credentials sent to the proxy.
#[derive(Clone, PartialEq, Eq)]
pub enum SocksAuth {
    /// Username/password derived per destination (stream isolation); the default.
    Isolate,
    /// No authentication (`@host:port`).
    Null,
    /// A fixed username and password (`user:password@host:port`).
    Username { username: String, password: String },
}

impl std::fmt::Debug for SocksAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocksAuth::Isolate => f.write_str("Isolate"),
            SocksAuth::Null => f.write_str("Null"),
            // the password is not printed
            SocksAuth::Username { username, .. } => write!(f, "Username({username:?}, ***)"),
        }
    }
}

/// A SOCKS5 proxy and the credentials to use with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocksProxy {
    pub addr: SocketAddr,
    pub auth: SocksAuth,
}

impl SocksProxy {
    /// A proxy at `addr` with isolation by credentials.
    pub fn new(addr: SocketAddr) -> SocksProxy {
        SocksProxy {
            addr,
            auth: SocksAuth::Isolate,
        }
    }

    /// Parses `[user:password@ | @]host[:port]` (see the module docs).
    pub fn parse(s: &str) -> Result<SocksProxy, String> {
        let s = s.trim();
        let (auth, rest) = match s.rfind('@') {
            None => (SocksAuth::Isolate, s),
            Some(0) => (SocksAuth::Null, &s[1..]),
            Some(i) => {
                let (cred, rest) = (&s[..i], &s[i + 1..]);
                let (u, p) = cred
                    .split_once(':')
                    .ok_or("SOCKS credentials must be user:password@")?;
                if u.is_empty() || u.len() > 255 || p.len() > 255 {
                    return Err("SOCKS username must be 1..255 bytes, password at most 255".into());
                }
                (
                    SocksAuth::Username {
                        username: u.to_string(),
                        password: p.to_string(),
                    },
                    rest,
                )
            }
        };
        let default_host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or("missing ] after an IPv6 address")?;
            let ip: IpAddr = h.parse().map_err(|_| format!("bad IPv6 address {h:?}"))?;
            (Some(ip), after)
        } else {
            let (h, after) = match rest.find(':') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let ip = match h {
                "" => None,
                "localhost" => Some(default_host),
                h => Some(h.parse::<IpAddr>().map_err(|_| {
                    format!("SOCKS5 host must be an IPv4 or IPv6 address, not {h:?}")
                })?),
            };
            (ip, after)
        };
        let port = match port {
            "" => DEFAULT_SOCKS_PORT,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("bad SOCKS5 port {p:?}"))?,
        };
        Ok(SocksProxy {
            addr: SocketAddr::new(host.unwrap_or(default_host), port),
            auth,
        })
    }

    /// The credentials for a connection to `host:port` (`None`: no authentication).
    fn credentials(&self, host: &str, port: u16) -> Option<(Vec<u8>, Vec<u8>)> {
        match &self.auth {
            SocksAuth::Null => None,
            SocksAuth::Username { username, password } => {
                Some((username.as_bytes().to_vec(), password.as_bytes().to_vec()))
            }
            SocksAuth::Isolate => {
                let mut h = openssl::sha::Sha256::new();
                h.update(session_value());
                h.update(format!("@{host}:{port}").as_bytes());
                let user = hush_proto::encoding::base64url_encode_unpadded(&h.finish());
                // Tor isolates by the whole (username, password) pair; a password of one
                // character because some proxies refuse an empty one.
                Some((user.into_bytes(), b"x".to_vec()))
            }
        }
    }
}

/// This process's random value for isolation usernames (a new one per process, as the
/// reference's session timestamp).
fn session_value() -> &'static [u8; 32] {
    static V: OnceLock<[u8; 32]> = OnceLock::new();
    V.get_or_init(|| {
        let mut b = [0u8; 32];
        // falls back to the time only if the system RNG fails
        if openssl::rand::rand_bytes(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            b[..16].copy_from_slice(&t.to_le_bytes());
        }
        b
    })
}

/// When the proxy is used (`socks_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SocksMode {
    /// For every destination.
    Always,
    /// Only for `.onion` hosts (the reference servers' default).
    #[default]
    Onion,
}

impl SocksMode {
    pub fn parse(s: &str) -> Result<SocksMode, String> {
        match s.trim() {
            "always" => Ok(SocksMode::Always),
            "onion" => Ok(SocksMode::Onion),
            s => Err(format!("socks_mode must be always or onion, not {s:?}")),
        }
    }
}

/// Which host of an address with several hosts (`host_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostMode {
    /// The first host that is not `.onion` (the reference servers' default).
    #[default]
    Public,
    /// The `.onion` host when a SOCKS proxy is configured, else the public one (the reference's
    /// `onion`, i.e. `HMOnionViaSocks`).
    Onion,
}

impl HostMode {
    pub fn parse(s: &str) -> Result<HostMode, String> {
        match s.trim() {
            "public" => Ok(HostMode::Public),
            "onion" => Ok(HostMode::Onion),
            s => Err(format!("host_mode must be public or onion, not {s:?}")),
        }
    }
}

/// How outgoing connections reach servers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    pub socks_proxy: Option<SocksProxy>,
    pub socks_mode: SocksMode,
    pub host_mode: HostMode,
    /// Fail when the address has no host of the preferred kind (instead of using its first host).
    pub required_host_mode: bool,
}

/// How to reach a server: the host chosen and, if any, the proxy to go through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub host: &'a TransportHost,
    pub proxy: Option<&'a SocksProxy>,
}

/// The address has no host this configuration can use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// `required_host_mode`: no host of the preferred kind (reference `PCEIncompatibleHost`).
    #[error("no host of the required kind (required_host_mode)")]
    IncompatibleHost,
    /// A `.onion` host without a SOCKS proxy.
    #[error("an .onion host needs a SOCKS proxy")]
    OnionWithoutProxy,
    #[error("the server address has no host")]
    NoHost,
}

impl NetworkConfig {
    /// Direct connections only (no proxy): the default.
    pub fn direct() -> NetworkConfig {
        NetworkConfig::default()
    }

    /// Everything through `proxy` (the client's `--socks-proxy`: `socks_mode = always`,
    /// `host_mode = onion`).
    pub fn all_via(proxy: SocksProxy) -> NetworkConfig {
        NetworkConfig {
            socks_proxy: Some(proxy),
            socks_mode: SocksMode::Always,
            host_mode: HostMode::Onion,
            required_host_mode: false,
        }
    }

    /// One line for a server's start-up output (never the credentials); `None` without a proxy.
    pub fn describe(&self) -> Option<String> {
        let p = self.socks_proxy.as_ref()?;
        let auth = match p.auth {
            SocksAuth::Isolate => "isolation credentials",
            SocksAuth::Null => "no credentials",
            SocksAuth::Username { .. } => "fixed credentials",
        };
        Some(format!(
            "SOCKS5 proxy {} ({auth}), socks_mode {}, host_mode {}{}",
            p.addr,
            match self.socks_mode {
                SocksMode::Always => "always",
                SocksMode::Onion => "onion",
            },
            match self.host_mode {
                HostMode::Public => "public",
                HostMode::Onion => "onion",
            },
            if self.required_host_mode {
                ", required_host_mode on"
            } else {
                ""
            }
        ))
    }

    /// Picks the host of `hosts` (reference `chooseTransportHost`) and whether the proxy is
    /// used for it (reference `transportClientConfig`).
    pub fn route<'a>(&'a self, hosts: &'a [TransportHost]) -> Result<Route<'a>, RouteError> {
        let is_onion = |h: &&TransportHost| matches!(h, TransportHost::Onion(_));
        let onion = hosts.iter().find(is_onion);
        let public = hosts.iter().find(|h| !is_onion(h));
        let preferred = match (self.host_mode, &self.socks_proxy) {
            (HostMode::Onion, Some(_)) => onion,
            _ => public,
        };
        let host = match preferred {
            Some(h) => h,
            None if self.required_host_mode => return Err(RouteError::IncompatibleHost),
            None => hosts.first().ok_or(RouteError::NoHost)?,
        };
        let onion_host = matches!(host, TransportHost::Onion(_));
        let proxy = match (self.socks_mode, &self.socks_proxy) {
            (SocksMode::Always, Some(p)) => Some(p),
            (SocksMode::Onion, Some(p)) if onion_host => Some(p),
            _ => None,
        };
        if onion_host && proxy.is_none() {
            return Err(RouteError::OnionWithoutProxy);
        }
        Ok(Route { host, proxy })
    }
}

fn socks_err(msg: impl Into<String>) -> TransportError {
    TransportError::Io(std::io::Error::other(format!("SOCKS5: {}", msg.into())))
}

/// RFC 1928 reply codes.
fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

/// TCP connection to `host:port` through `proxy` (CONNECT; the name is resolved by the proxy).
/// Not bounded in time: callers bound it with their connect timeout.
pub async fn socks5_connect(
    proxy: &SocksProxy,
    host: &TransportHost,
    port: u16,
) -> Result<TcpStream, TransportError> {
    let mut s = TcpStream::connect(proxy.addr).await?;
    let _ = s.set_nodelay(true);
    let target = match host {
        TransportHost::Ipv4(a) => Ipv4Addr::from(*a).to_string(),
        TransportHost::Ipv6(a) => a.to_string(),
        TransportHost::Onion(n) | TransportHost::Domain(n) => n.clone(),
    };
    let creds = proxy.credentials(&target, port);
    // greeting: the one method we use
    let method = if creds.is_some() { 2 } else { 0 };
    s.write_all(&[5, 1, method]).await?;
    let mut r = [0u8; 2];
    s.read_exact(&mut r).await?;
    if r[0] != 5 {
        return Err(socks_err("the proxy does not speak SOCKS5"));
    }
    if r[1] != method {
        return Err(socks_err(if method == 2 {
            "the proxy refused username/password authentication"
        } else {
            "the proxy requires authentication"
        }));
    }
    if let Some((u, p)) = creds {
        // RFC 1929: both fit in 255 bytes (checked by parse; isolation names are 43 bytes)
        let mut m = Vec::with_capacity(3 + u.len() + p.len());
        m.push(1);
        m.push(u.len() as u8);
        m.extend_from_slice(&u);
        m.push(p.len() as u8);
        m.extend_from_slice(&p);
        s.write_all(&m).await?;
        s.read_exact(&mut r).await?;
        if r[1] != 0 {
            return Err(socks_err("authentication failed"));
        }
    }
    let mut req = vec![5, 1, 0];
    match host {
        TransportHost::Ipv4(a) => {
            req.push(1);
            req.extend_from_slice(a);
        }
        TransportHost::Ipv6(a) => {
            req.push(4);
            req.extend_from_slice(&a.octets());
        }
        TransportHost::Onion(n) | TransportHost::Domain(n) => {
            let n = n.as_bytes();
            if n.is_empty() || n.len() > 255 {
                return Err(socks_err("host name longer than 255 bytes"));
            }
            req.push(3);
            req.push(n.len() as u8);
            req.extend_from_slice(n);
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Err(socks_err("bad reply"));
    }
    if head[1] != 0 {
        return Err(socks_err(format!(
            "CONNECT failed: {} ({})",
            reply_text(head[1]),
            head[1]
        )));
    }
    // the bound address, unused
    let skip = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await?;
            l[0] as usize + 2
        }
        _ => return Err(socks_err("bad address type in reply")),
    };
    let mut rest = vec![0u8; skip];
    s.read_exact(&mut rest).await?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn onion() -> TransportHost {
        TransportHost::Onion("abcdefghijklmnop.onion".into())
    }

    fn public() -> TransportHost {
        TransportHost::Domain("relay.example.com".into())
    }

    #[test]
    fn parses_the_reference_syntax() {
        let p = SocksProxy::parse("").unwrap();
        assert_eq!(p.addr, "127.0.0.1:9050".parse().unwrap());
        assert_eq!(p.auth, SocksAuth::Isolate);
        let p = SocksProxy::parse(":9150").unwrap();
        assert_eq!(p.addr, "127.0.0.1:9150".parse().unwrap());
        let p = SocksProxy::parse("localhost:9050").unwrap();
        assert_eq!(p.addr, "127.0.0.1:9050".parse().unwrap());
        let p = SocksProxy::parse("@10.0.0.1").unwrap();
        assert_eq!(
            (p.addr, p.auth),
            ("10.0.0.1:9050".parse().unwrap(), SocksAuth::Null)
        );
        let p = SocksProxy::parse("u:secret@[::1]:1080").unwrap();
        assert_eq!(p.addr, "[::1]:1080".parse().unwrap());
        assert!(!format!("{p:?}").contains("secret"));
        assert_eq!(
            p.auth,
            SocksAuth::Username {
                username: "u".into(),
                password: "secret".into()
            }
        );
        for bad in [
            "tor.example.com:9050",
            "127.0.0.1:0",
            "127.0.0.1:x",
            "user@127.0.0.1",
            "[::1",
        ] {
            assert!(SocksProxy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn isolation_usernames_differ_per_destination() {
        let p = SocksProxy::new("127.0.0.1:9050".parse().unwrap());
        let a = p.credentials("a.onion", 5223).unwrap();
        let b = p.credentials("b.onion", 5223).unwrap();
        assert_ne!(a.0, b.0);
        assert_eq!(a, p.credentials("a.onion", 5223).unwrap());
        assert!(a.0.len() <= 255);
    }

    /// CONNECT by name through the test proxy, with isolation credentials; an unmapped name
    /// is refused with the proxy's reply code.
    #[tokio::test]
    async fn connects_through_a_socks5_proxy() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let map = [("relay.invalid".to_string(), echo_addr)].into();
        let proxy = testing::MappingProxy::start(map).await.unwrap();
        let p = SocksProxy::new(proxy.addr);
        let host = TransportHost::Domain("relay.invalid".into());
        let mut s = socks5_connect(&p, &host, 5223).await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
        let other = TransportHost::Domain("other.invalid".into());
        let e = socks5_connect(&p, &other, 5223).await.unwrap_err();
        assert!(e.to_string().contains("host unreachable"), "{e}");
        let null = SocksProxy {
            auth: SocksAuth::Null,
            ..p.clone()
        };
        socks5_connect(&null, &host, 443).await.unwrap();
        let r = proxy.requests();
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[0].host.as_str(), r[0].port, r[0].mapped),
            ("relay.invalid", 5223, true)
        );
        assert!(!r[1].mapped);
        // isolation: one username per destination, none with `@`
        let (u0, u1) = (
            r[0].username.clone().unwrap(),
            r[1].username.clone().unwrap(),
        );
        assert_ne!(u0, u1);
        assert_eq!(r[2].username, None);
    }

    #[test]
    fn host_and_proxy_choice_follows_the_reference() {
        let proxy = SocksProxy::new("127.0.0.1:9050".parse().unwrap());
        let both = [public(), onion()];
        // no proxy: public host, direct; an onion-only address cannot be reached
        let direct = NetworkConfig::direct();
        assert_eq!(
            direct.route(&both).unwrap(),
            Route {
                host: &both[0],
                proxy: None
            }
        );
        assert_eq!(
            direct.route(&[onion()]).unwrap_err(),
            RouteError::OnionWithoutProxy
        );
        // the servers' defaults with a proxy (socks_mode onion, host_mode public)
        let servers = NetworkConfig {
            socks_proxy: Some(proxy.clone()),
            ..Default::default()
        };
        let r = servers.route(&both).unwrap();
        assert_eq!((r.host, r.proxy), (&both[0], None));
        let only_onion = [onion()];
        let r = servers.route(&only_onion).unwrap();
        assert_eq!((r.host, r.proxy), (&only_onion[0], Some(&proxy)));
        // host_mode onion: the onion host of an address with several, through the proxy
        let onion_mode = NetworkConfig {
            host_mode: HostMode::Onion,
            ..servers.clone()
        };
        let r = onion_mode.route(&both).unwrap();
        assert_eq!((r.host, r.proxy), (&both[1], Some(&proxy)));
        // required_host_mode: no fallback to the first host
        let required = NetworkConfig {
            required_host_mode: true,
            ..onion_mode.clone()
        };
        let only_public = [public()];
        assert_eq!(
            required.route(&only_public).unwrap_err(),
            RouteError::IncompatibleHost
        );
        let r = onion_mode.route(&only_public).unwrap();
        assert_eq!((r.host, r.proxy), (&only_public[0], None));
        // socks_mode always: the public host through the proxy too
        let always = NetworkConfig::all_via(proxy.clone());
        let r = always.route(&only_public).unwrap();
        assert_eq!((r.host, r.proxy), (&only_public[0], Some(&proxy)));
        assert_eq!(direct.describe(), None);
        let d = NetworkConfig {
            socks_proxy: Some(SocksProxy::parse("u:secret@127.0.0.1:9150").unwrap()),
            ..always.clone()
        }
        .describe()
        .unwrap();
        assert_eq!(
            d,
            "SOCKS5 proxy 127.0.0.1:9150 (fixed credentials), socks_mode always, host_mode onion"
        );
        // host_mode onion without a proxy: public (HMOnionViaSocks)
        let no_proxy = NetworkConfig {
            host_mode: HostMode::Onion,
            ..Default::default()
        };
        assert_eq!(no_proxy.route(&both).unwrap().host, &both[0]);
    }
}

/// A SOCKS5 proxy for tests (loopback): CONNECT only, "no authentication" or any
/// username/password; it maps destination host names (and addresses, as text) to real socket
/// addresses, refuses anything else with "host unreachable", and records every request, so a
/// test can give a server an address that does not resolve (`relay.invalid`, `….onion`) and
/// prove that the connection went through the proxy.
pub mod testing {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// One CONNECT the proxy received.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct SocksRequest {
        /// The destination as sent (a name, or an address as text).
        pub host: String,
        pub port: u16,
        /// The username, when the client authenticated.
        pub username: Option<String>,
        /// Whether the name was in the map (the connection went on).
        pub mapped: bool,
    }

    /// The running proxy (stops when dropped).
    pub struct MappingProxy {
        pub addr: SocketAddr,
        requests: Arc<Mutex<Vec<SocksRequest>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for MappingProxy {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl MappingProxy {
        /// Listens on 127.0.0.1; `map`: destination host → where to connect.
        pub async fn start(map: HashMap<String, SocketAddr>) -> std::io::Result<MappingProxy> {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (map, reqs) = (Arc::new(map), requests.clone());
            let task = tokio::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    let (map, reqs) = (map.clone(), reqs.clone());
                    tokio::spawn(async move {
                        let _ = serve(s, &map, &reqs).await;
                    });
                }
            });
            Ok(MappingProxy {
                addr,
                requests,
                task,
            })
        }

        /// The requests so far.
        pub fn requests(&self) -> Vec<SocksRequest> {
            self.requests.lock().map(|r| r.clone()).unwrap_or_default()
        }
    }

    async fn serve(
        mut s: TcpStream,
        map: &HashMap<String, SocketAddr>,
        reqs: &Mutex<Vec<SocksRequest>>,
    ) -> std::io::Result<()> {
        // whole 16 KB blocks pass through: no Nagle delay on either leg
        let _ = s.set_nodelay(true);
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await?;
        let mut methods = vec![0u8; b[1] as usize];
        s.read_exact(&mut methods).await?;
        let mut username = None;
        if methods.contains(&2) {
            s.write_all(&[5, 2]).await?;
            s.read_exact(&mut b).await?;
            let mut u = vec![0u8; b[1] as usize];
            s.read_exact(&mut u).await?;
            let mut l = [0u8; 1];
            s.read_exact(&mut l).await?;
            let mut p = vec![0u8; l[0] as usize];
            s.read_exact(&mut p).await?;
            username = Some(String::from_utf8_lossy(&u).into_owned());
            s.write_all(&[1, 0]).await?;
        } else {
            s.write_all(&[5, 0]).await?;
        }
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await?;
        let host = match head[3] {
            1 => {
                let mut a = [0u8; 4];
                s.read_exact(&mut a).await?;
                std::net::Ipv4Addr::from(a).to_string()
            }
            4 => {
                let mut a = [0u8; 16];
                s.read_exact(&mut a).await?;
                std::net::Ipv6Addr::from(a).to_string()
            }
            _ => {
                let mut l = [0u8; 1];
                s.read_exact(&mut l).await?;
                let mut n = vec![0u8; l[0] as usize];
                s.read_exact(&mut n).await?;
                String::from_utf8_lossy(&n).into_owned()
            }
        };
        let mut p = [0u8; 2];
        s.read_exact(&mut p).await?;
        let target = map.get(&host).copied();
        if let Ok(mut r) = reqs.lock() {
            r.push(SocksRequest {
                host,
                port: u16::from_be_bytes(p),
                username,
                mapped: target.is_some(),
            });
        }
        let ok = [5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let Some(target) = target else {
            s.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
            return Ok(());
        };
        let mut out = match TcpStream::connect(target).await {
            Ok(o) => o,
            Err(_) => {
                s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
                return Ok(());
            }
        };
        let _ = out.set_nodelay(true);
        s.write_all(&ok).await?;
        tokio::io::copy_bidirectional(&mut s, &mut out).await?;
        Ok(())
    }
}
