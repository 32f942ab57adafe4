//! Which network destinations a server may be made to connect to by an unauthenticated peer.
//!
//! Three servers open outgoing connections on a peer's word: the ntf-server subscribes to the relay
//! named in `SNEW`, the relay's proxy connects to the relay named in `PRXY`, and the push-server
//! delivers to the Web Push endpoint of a registration. Unchecked, each is a scanner of the
//! operator's private network. [`DestinationPolicy`] says which address ranges are allowed (public
//! only by default; tests and `hush up` allow loopback), and [`resolve_checked`] resolves a host
//! once and returns only allowed socket addresses, which the caller connects to directly (no
//! second DNS lookup, so a rebinding DNS server cannot swap in a private address afterwards).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What kind of range an IP address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Globally routable.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918, carrier-grade NAT 100.64.0.0/10, IPv6 unique local fc00::/7, deprecated site-local.
    Private,
    /// 169.254.0.0/16, fe80::/10 (cloud metadata services live here).
    LinkLocal,
    /// Unspecified, broadcast, multicast, documentation, benchmarking and reserved ranges: never a
    /// legitimate destination.
    Reserved,
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrClass::Public => "public",
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::LinkLocal => "link-local",
            AddrClass::Reserved => "reserved",
        })
    }
}

/// The class of an IP address (IPv4-mapped, IPv4-compatible and NAT64 IPv6 addresses are classed
/// by the IPv4 address they carry).
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (127, _, _) => AddrClass::Loopback,
        (10, _, _) => AddrClass::Private,
        (172, 16..=31, _) => AddrClass::Private,
        (192, 168, _) => AddrClass::Private,
        (100, 64..=127, _) => AddrClass::Private,
        (169, 254, _) => AddrClass::LinkLocal,
        (0, _, _) => AddrClass::Reserved,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddrClass::Reserved,
        (198, 18..=19, _) => AddrClass::Reserved,
        (224..=255, _, _) => AddrClass::Reserved,
        _ => AddrClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    if ip.is_unspecified() {
        return AddrClass::Reserved;
    }
    // ::a.b.c.d (deprecated IPv4-compatible) and 64:ff9b::/96 (NAT64) reach an IPv4 host.
    if s[..6] == [0, 0, 0, 0, 0, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return classify_v4(v4);
    }
    match s[0] {
        0xfc00..=0xfdff => AddrClass::Private,
        0xfec0..=0xfeff => AddrClass::Private,
        0xfe80..=0xfebf => AddrClass::LinkLocal,
        0xff00..=0xffff => AddrClass::Reserved,
        0x2001 if s[1] == 0x0db8 => AddrClass::Reserved,
        0x0100 if s[1..4] == [0, 0, 0] => AddrClass::Reserved,
        // Only 2000::/3 is allocated for global unicast.
        0x2000..=0x3fff => AddrClass::Public,
        _ => AddrClass::Reserved,
    }
}

/// Which destinations are allowed. Ordered: each level allows what the one before it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum DestinationPolicy {
    /// Public addresses only (the default for every server).
    #[default]
    Public,
    /// Public and loopback (tests, `hush up`, a relay next to its ntf-server on one host).
    Loopback,
    /// Public, loopback, private and link-local (a deployment inside one private network).
    Private,
}

impl DestinationPolicy {
    /// The configuration words: `public`, `loopback`, `private`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(Self::Public),
            "loopback" => Ok(Self::Loopback),
            "private" => Ok(Self::Private),
            other => Err(format!(
                "{other:?} is not a destination policy; use public (public addresses only), \
                 loopback (public and 127.0.0.0/8, ::1) or private (also private and link-local ranges)"
            )),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Loopback => "loopback",
            Self::Private => "private",
        }
    }

    /// Whether `ip` may be connected to.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match classify(ip) {
            AddrClass::Public => true,
            AddrClass::Loopback => *self >= Self::Loopback,
            AddrClass::Private | AddrClass::LinkLocal => *self >= Self::Private,
            AddrClass::Reserved => false,
        }
    }

    /// `Ok` if `ip` may be connected to, else the refusal (which names the class, not the address).
    pub fn check(&self, ip: IpAddr) -> Result<(), DestinationRefused> {
        if self.allows(ip) {
            Ok(())
        } else {
            Err(DestinationRefused::Class(classify(ip)))
        }
    }
}

impl fmt::Display for DestinationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a destination was refused. Its text never contains the host or address (they may identify
/// a user's relay), so it can be logged at any level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationRefused {
    #[error("destination is a {0} address, not allowed by the destination policy")]
    Class(AddrClass),
    #[error("destination host did not resolve")]
    Unresolved,
    #[error("destination resolves only to addresses the destination policy does not allow ({0})")]
    AllRefused(AddrClass),
    #[error("destination port {0} is not allowed")]
    Port(u16),
    #[error("onion destinations need a SOCKS proxy, which is not configured")]
    Onion,
}

/// Resolves `host:port` once and returns the socket addresses `policy` allows, in resolver order.
/// An IP literal is checked without a lookup. Connect to the returned addresses, never to `host`
/// again (a second lookup could return another address).
pub async fn resolve_checked(
    host: &str,
    port: u16,
    policy: DestinationPolicy,
) -> Result<Vec<SocketAddr>, DestinationRefused> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        policy.check(ip)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if bare.ends_with(".onion") {
        return Err(DestinationRefused::Onion);
    }
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|_| DestinationRefused::Unresolved)?
        .collect();
    filter_allowed(&resolved, policy)
}

/// The addresses of `resolved` that `policy` allows (an error naming the class of the first refused
/// one if none is left).
pub fn filter_allowed(
    resolved: &[SocketAddr],
    policy: DestinationPolicy,
) -> Result<Vec<SocketAddr>, DestinationRefused> {
    let Some(first) = resolved.first() else {
        return Err(DestinationRefused::Unresolved);
    };
    let allowed: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| policy.allows(a.ip()))
        .collect();
    if allowed.is_empty() {
        Err(DestinationRefused::AllRefused(classify(first.ip())))
    } else {
        Ok(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> AddrClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn classes() {
        for (s, want) in [
            ("8.8.8.8", AddrClass::Public),
            ("1.1.1.1", AddrClass::Public),
            ("127.0.0.1", AddrClass::Loopback),
            ("127.255.0.9", AddrClass::Loopback),
            ("10.1.2.3", AddrClass::Private),
            ("172.16.0.1", AddrClass::Private),
            ("172.31.255.255", AddrClass::Private),
            ("172.32.0.1", AddrClass::Public),
            ("192.168.1.1", AddrClass::Private),
            ("100.64.0.1", AddrClass::Private),
            ("100.128.0.1", AddrClass::Public),
            ("169.254.169.254", AddrClass::LinkLocal),
            ("0.0.0.0", AddrClass::Reserved),
            ("255.255.255.255", AddrClass::Reserved),
            ("224.0.0.1", AddrClass::Reserved),
            ("192.0.2.7", AddrClass::Reserved),
            ("::1", AddrClass::Loopback),
            ("::", AddrClass::Reserved),
            ("::ffff:127.0.0.1", AddrClass::Loopback),
            ("::ffff:10.0.0.1", AddrClass::Private),
            ("::ffff:8.8.8.8", AddrClass::Public),
            ("::127.0.0.1", AddrClass::Loopback),
            ("64:ff9b::a9fe:a9fe", AddrClass::LinkLocal),
            ("fd00::1", AddrClass::Private),
            ("fe80::1", AddrClass::LinkLocal),
            ("ff02::1", AddrClass::Reserved),
            ("2001:db8::1", AddrClass::Reserved),
            ("2606:4700::1111", AddrClass::Public),
        ] {
            assert_eq!(c(s), want, "{s}");
        }
    }

    #[test]
    fn policy_levels() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let lan: IpAddr = "192.168.0.10".parse().unwrap();
        let ll: IpAddr = "169.254.169.254".parse().unwrap();
        let public: IpAddr = "9.9.9.9".parse().unwrap();
        let bcast: IpAddr = "255.255.255.255".parse().unwrap();
        let p = DestinationPolicy::Public;
        assert!(p.allows(public) && !p.allows(lo) && !p.allows(lan) && !p.allows(ll));
        assert_eq!(
            p.check(lo),
            Err(DestinationRefused::Class(AddrClass::Loopback))
        );
        let l = DestinationPolicy::Loopback;
        assert!(l.allows(public) && l.allows(lo) && !l.allows(lan) && !l.allows(ll));
        let a = DestinationPolicy::Private;
        assert!(a.allows(public) && a.allows(lo) && a.allows(lan) && a.allows(ll));
        for p in [l, a, DestinationPolicy::Public] {
            assert!(!p.allows(bcast));
        }
        assert_eq!(DestinationPolicy::parse(" Loopback ").unwrap(), l);
        assert!(
            DestinationPolicy::parse("all")
                .unwrap_err()
                .contains("not a destination policy")
        );
        assert_eq!(DestinationPolicy::default(), DestinationPolicy::Public);
    }

    #[tokio::test]
    async fn resolve_checks_literals_and_names() {
        assert_eq!(
            resolve_checked("127.0.0.1", 5223, DestinationPolicy::Public).await,
            Err(DestinationRefused::Class(AddrClass::Loopback))
        );
        assert_eq!(
            resolve_checked("[::1]", 5223, DestinationPolicy::Loopback).await,
            Ok(vec!["[::1]:5223".parse().unwrap()])
        );
        // "localhost" resolves (from /etc/hosts) to loopback only: refused under Public.
        assert!(matches!(
            resolve_checked("localhost", 443, DestinationPolicy::Public).await,
            Err(DestinationRefused::AllRefused(AddrClass::Loopback))
        ));
        let ok = resolve_checked("localhost", 443, DestinationPolicy::Loopback)
            .await
            .unwrap();
        assert!(ok.iter().all(|a| a.ip().is_loopback() && a.port() == 443));
        assert_eq!(
            resolve_checked("abcdefgh.onion", 5223, DestinationPolicy::Private).await,
            Err(DestinationRefused::Onion)
        );
        // Refusal texts never contain the address.
        let e = DestinationPolicy::Public
            .check("10.9.8.7".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(!e.contains("10.9.8.7") && e.contains("private"), "{e}");
    }
}
