//! `push-server.ini`: typed configuration, read with the INI reader shared by the servers
//! ([`hush_server_common::ini`]); `push-server init` writes a commented file ([`default_ini`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hush_server_common::config::{KnownKeys, Reader};
use hush_server_common::ini::Ini;

use crate::jwt::SigFormat;
use crate::net::ServerLimits;
use crate::provider::webpush::EndpointPolicy;
use crate::service::ServiceConfig;
use hush_server_common::{DestinationPolicy, Rate};

pub const INI_FILE: &str = "push-server.ini";
pub const CERT_FILE: &str = "push-server.crt";
pub const KEY_FILE: &str = "push-server.key";
pub const FINGERPRINT_FILE: &str = "fingerprint";
pub const HANDLE_KEY_FILE: &str = "handle.key";
pub const DEFAULT_PORT: u16 = push_api::DEFAULT_PORT;

#[derive(Debug, Clone)]
pub struct ApnsSection {
    pub enable: bool,
    pub topic: String,
    pub team_id: String,
    pub key_id: String,
    pub key_file: PathBuf,
    pub sig_format: SigFormat,
    pub jwt_refresh: Duration,
    /// `AP`, `AD`, `AT` endpoints (`None` = that environment is not served).
    pub prod_url: Option<String>,
    pub dev_url: Option<String>,
    pub test_url: Option<String>,
    /// CA (PEM) for `test_url` (the apns-sink certificate).
    pub test_ca_file: Option<PathBuf>,
    /// Payload limit enforced before sending (Apple documents 4096 bytes).
    pub max_payload: usize,
}

#[derive(Debug, Clone)]
pub struct WebPushSection {
    pub enable: bool,
    pub vapid_key_file: PathBuf,
    pub subject: String,
    pub allow_http: bool,
    pub ca_file: Option<PathBuf>,
    /// `destinations` (public) and `allow_any_port` (off), with `allow_http`.
    pub endpoints: EndpointPolicy,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub outbox_file: PathBuf,
    pub full_sync: bool,
    pub listen: SocketAddr,
    pub clients: HashMap<String, String>,
    pub apns: ApnsSection,
    pub webpush: WebPushSection,
    pub service: ServiceConfig,
    pub metrics: Option<SocketAddr>,
    /// `[LIMITS]` and `[TRANSPORT] handshake_timeout`.
    pub limits: ServerLimits,
}

pub use hush_server_common::config::{ConfigError, ConfigWarning};

const KNOWN: &[(&str, &[&str])] = &[
    ("STORE", &["outbox_file", "sync"]),
    ("TRANSPORT", &["host", "port", "handshake_timeout"]),
    ("CLIENTS", &[]),
    (
        "APNS",
        &[
            "enable",
            "topic",
            "team_id",
            "key_id",
            "key_file",
            "jwt_signature",
            "jwt_refresh_minutes",
            "prod_url",
            "dev_url",
            "test_url",
            "test_ca_file",
            "max_payload",
        ],
    ),
    (
        "WEBPUSH",
        &[
            "enable",
            "vapid_key_file",
            "subject",
            "allow_http",
            "ca_file",
            "destinations",
            "allow_any_port",
        ],
    ),
    (
        "LIMITS",
        &[
            "max_connections",
            "reserved_connections",
            "max_connections_per_ip",
            "anonymous_registrations",
            "register_rate",
            "register_burst",
            "register_rate_per_ip",
            "register_burst_per_ip",
            "max_anonymous_registrations",
        ],
    ),
    (
        "OUTBOX",
        &[
            "retry_base_ms",
            "retry_max_seconds",
            "default_ttl_seconds",
            "concurrency",
            "dedup_window_seconds",
            "max_pending",
            "registration_ttl_days",
        ],
    ),
    ("METRICS", &["enable", "host", "port"]),
];

const KEYS: KnownKeys = KnownKeys {
    sections: KNOWN,
    // [CLIENTS]: one line per ntf-server, name = credential.
    open_sections: &["CLIENTS"],
    reference_only: &[],
};

/// `value`, or `default` when the key is absent.
fn or<T>(value: Result<Option<T>, ConfigError>, default: T) -> Result<T, ConfigError> {
    Ok(value?.unwrap_or(default))
}

impl Config {
    /// Reads `<dir>/push-server.ini`. Returns the configuration and warnings (unknown keys).
    pub fn load(dir: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let file = dir.join(INI_FILE);
        let ini = hush_server_common::config::load(&file)?;
        Config::read(&ini, &file, dir)
    }

    pub fn parse(
        bytes: &[u8],
        file: &Path,
        dir: &Path,
    ) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let ini = hush_server_common::config::parse(bytes, file)?;
        Config::read(&ini, file, dir)
    }

    fn read(
        ini: &Ini,
        file: &Path,
        dir: &Path,
    ) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let mut r = Reader::new(ini, file);
        r.check_keys(&KEYS);
        let full_sync = or(
            r.parse_with("STORE", "sync", |v| match v {
                "full" => Ok(true),
                "normal" => Ok(false),
                _ => Err("expected `full` or `normal`".into()),
            }),
            true,
        )?;
        let host = or(r.ip_addr("TRANSPORT", "host"), IpAddr::from([127, 0, 0, 1]))?;
        let port = or(r.number("TRANSPORT", "port", 0, u16::MAX), DEFAULT_PORT)?;
        let clients = ini
            .section("CLIENTS")
            .map(|s| {
                s.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let sig_format = or(
            r.parse_with("APNS", "jwt_signature", |v| {
                SigFormat::parse(v).ok_or_else(|| "expected `jose` or `der`".into())
            }),
            SigFormat::Jose,
        )?;
        // An empty URL switches that APNs environment off.
        let url = |k: &str, default: Option<&str>| -> Option<String> {
            match r.get("APNS", k) {
                None => default.map(str::to_string),
                Some(e) if e.value.is_empty() => None,
                Some(e) => Some(e.value.clone()),
            }
        };
        let path = |s: &str, k: &str, default: &str| {
            r.path(s, k, dir).unwrap_or_else(|| dir.join(default))
        };
        let apns = ApnsSection {
            enable: or(r.on_off("APNS", "enable"), false)?,
            topic: r
                .string("APNS", "topic")
                .unwrap_or_else(|| "chat.simplex.app".into()),
            team_id: r.string("APNS", "team_id").unwrap_or_default(),
            key_id: r.string("APNS", "key_id").unwrap_or_default(),
            key_file: path("APNS", "key_file", "apns-key.p8"),
            sig_format,
            jwt_refresh: Duration::from_secs(
                60 * or(r.number("APNS", "jwt_refresh_minutes", 1, 1440), 30u64)?,
            ),
            prod_url: url("prod_url", Some("https://api.push.apple.com")),
            dev_url: url("dev_url", Some("https://api.sandbox.push.apple.com")),
            test_url: url("test_url", None),
            test_ca_file: r.path("APNS", "test_ca_file", dir),
            max_payload: or(
                r.number("APNS", "max_payload", 1, 1 << 20),
                crate::provider::apns::MAX_PAYLOAD,
            )?,
        };
        let destinations = or(
            r.parse_with("WEBPUSH", "destinations", DestinationPolicy::parse),
            DestinationPolicy::Public,
        )?;
        let allow_http = or(r.on_off("WEBPUSH", "allow_http"), false)?;
        let endpoints = EndpointPolicy {
            destinations,
            allow_any_port: or(r.on_off("WEBPUSH", "allow_any_port"), false)?,
            allow_http,
        };
        let webpush = WebPushSection {
            enable: or(r.on_off("WEBPUSH", "enable"), false)?,
            vapid_key_file: path("WEBPUSH", "vapid_key_file", "vapid.pem"),
            subject: r.string("WEBPUSH", "subject").unwrap_or_default(),
            allow_http,
            ca_file: r.path("WEBPUSH", "ca_file", dir),
            endpoints,
        };
        let dl = ServerLimits::default();
        const L: &str = "LIMITS";
        let max_connections = or(
            r.number(L, "max_connections", 1, 1_000_000),
            dl.max_connections,
        )?;
        let reserved_connections = or(
            r.number(L, "reserved_connections", 0, max_connections - 1),
            dl.reserved_connections.min(max_connections - 1),
        )?;
        // A rate in events per second (0 = no limit) and its burst.
        let rate = |k: &str, burst: &str, default: Rate| -> Result<Rate, ConfigError> {
            Ok(Rate::new(
                or(r.rate(L, k), default.per_second)?,
                or(r.number(L, burst, 1, 1_000_000), default.burst)?,
            ))
        };
        let limits = ServerLimits {
            max_connections,
            reserved_connections,
            max_connections_per_ip: or(
                r.number(L, "max_connections_per_ip", 0, 1_000_000),
                dl.max_connections_per_ip,
            )?,
            handshake_timeout: or(
                r.positive_seconds("TRANSPORT", "handshake_timeout", Duration::from_secs(3600)),
                dl.handshake_timeout,
            )?,
            anonymous_registrations: or(
                r.on_off(L, "anonymous_registrations"),
                dl.anonymous_registrations,
            )?,
            register_rate: rate("register_rate", "register_burst", dl.register_rate)?,
            register_rate_per_ip: rate(
                "register_rate_per_ip",
                "register_burst_per_ip",
                dl.register_rate_per_ip,
            )?,
        };
        let d = ServiceConfig::default();
        const O: &str = "OUTBOX";
        const DAY: u64 = 86_400;
        let service = ServiceConfig {
            retry_base: Duration::from_millis(or(
                r.number(O, "retry_base_ms", 1, 3_600_000),
                1000u64,
            )?),
            retry_max: Duration::from_secs(or(
                r.number(O, "retry_max_seconds", 1, 7 * DAY),
                600u64,
            )?),
            default_ttl: Duration::from_secs(or(
                r.number(O, "default_ttl_seconds", 1, 365 * DAY),
                d.default_ttl.as_secs(),
            )?),
            // 0 is taken as 1, as before.
            concurrency: or(r.number(O, "concurrency", 0, 100_000), d.concurrency)?.max(1),
            dedup_window: Duration::from_secs(or(
                r.number(O, "dedup_window_seconds", 0, 365 * DAY),
                d.dedup_window.as_secs(),
            )?),
            poll_interval: d.poll_interval,
            max_pending: or(r.number(O, "max_pending", 1, 1_000_000_000), d.max_pending)?,
            registration_ttl: Duration::from_secs(
                DAY * or(r.number(O, "registration_ttl_days", 1, 3650), 60u64)?,
            ),
            webpush_endpoints: endpoints,
            max_anonymous_registrations: or(
                r.number(L, "max_anonymous_registrations", 0, u64::MAX),
                d.max_anonymous_registrations,
            )?,
        };
        let outbox_file = path("STORE", "outbox_file", "push-outbox.sqlite");
        let metrics = if or(r.on_off("METRICS", "enable"), false)? {
            let host = or(r.ip_addr("METRICS", "host"), IpAddr::from([127, 0, 0, 1]))?;
            let port = or(r.number("METRICS", "port", 0, u16::MAX), 5229)?;
            if !host.is_loopback()
                && let Some(e) = r.get("METRICS", "host")
            {
                r.warn_at(
                    Some(e),
                    "METRICS",
                    "host",
                    "metrics are served without authentication on a non-loopback address",
                );
            }
            Some(SocketAddr::new(host, port))
        } else {
            None
        };
        let cfg = Config {
            dir: dir.to_path_buf(),
            outbox_file,
            full_sync,
            listen: SocketAddr::new(host, port),
            clients,
            apns,
            webpush,
            service,
            metrics,
            limits,
        };
        Ok((cfg, r.into_warnings()))
    }
}

/// The commented `push-server.ini` written by `push-server init`.
pub fn default_ini(host: IpAddr, port: u16, client_name: &str, credential: &str) -> String {
    format!(
        "# push-server configuration (hush). Lines starting with # are comments.

[STORE]
# Outbox database (pending pushes survive restarts). Relative paths are inside this directory.
outbox_file = push-outbox.sqlite
# full: fsync every commit (survives power loss); normal: survives a process crash only.
sync = full

[TRANSPORT]
# Listener for ntf-servers (submit jobs, read feedback) and devices (register push handles):
# TLS 1.3 with the certificate {CERT_FILE}; clients pin the SHA-256 in the file `{FINGERPRINT_FILE}`.
host = {host}
port = {port}
# Seconds a new connection has for the TLS handshake and its first request (and an anonymous
# connection between requests); then it is closed.
handshake_timeout = 15

[CLIENTS]
# One line per ntf-server: name = bearer credential (keep this file private).
{client_name} = {credential}

[APNS]
enable = off
# App bundle id (apns-topic).
topic = chat.simplex.app
team_id =
key_id =
# ES256 key from Apple (.p8, PKCS#8 PEM).
key_file = apns-key.p8
# jose: 64-byte r||s as Apple documents (default); der: DER SEQUENCE as the reference sends.
jwt_signature = jose
# Provider token refresh, minutes (clamped to 20..50).
jwt_refresh_minutes = 30
# Endpoints for the NTF providers AP (prod), AD (dev) and AT (test); empty = not served.
prod_url = https://api.push.apple.com
dev_url = https://api.sandbox.push.apple.com
# test_url = https://127.0.0.1:8443
# CA (PEM) that signs the test endpoint's certificate (apns-sink writes apns-sink.crt).
# test_ca_file = apns-sink.crt
# Payload limit checked before sending. Apple documents 4096 bytes; note that the reference
# ntf-server's verification and message payloads (3072-byte padding) are about 4.2-4.3 KB.
max_payload = 4096

[WEBPUSH]
enable = off
# VAPID key (P-256, PEM); `push-server init` creates one.
vapid_key_file = vapid.pem
# VAPID contact (mailto: or https:).
subject = mailto:admin@example.org
# Allow http:// endpoints (a UnifiedPush distributor on this machine).
allow_http = off
# Endpoint addresses a device may make this server POST to, checked at registration and on the
# address actually connected to at delivery: public (default), loopback (also 127.0.0.0/8, ::1)
# or private (also RFC 1918, CGNAT, unique-local and link-local ranges).
destinations = public
# off: only port 443 (80 for http://); on: any port.
allow_any_port = off

[OUTBOX]
retry_base_ms = 1000
retry_max_seconds = 600
default_ttl_seconds = 86400
# Deliveries in flight at once (each waits one round trip to the provider): pushes/s is at most
# this divided by the round trip. APNs accepts up to 500 concurrent requests per connection.
concurrency = 256
dedup_window_seconds = 604800
# Load shedding: refuse new jobs (ntf-servers retry) while this many are pending.
max_pending = 1000000
# Split mode: stored registrations (long Web Push endpoints) unused this many days are dropped.
registration_ttl_days = 60

[LIMITS]
# Concurrent connections; the last `reserved_connections` of them are kept for ntf-servers that
# authenticated with a [CLIENTS] credential (anonymous peers, e.g. devices registering, get the rest).
max_connections = 1024
reserved_connections = 64
# Concurrent connections from one IPv4 address or IPv6 /64 (0 = no cap).
max_connections_per_ip = 0
# Devices register push handles without credential (split mode). off: only authenticated clients.
anonymous_registrations = on
# Registrations without credential: per second (0 = no limit) and burst, for the whole server and
# per IPv4 address or IPv6 /64. Over the limit the device gets the error `rate_limited`.
register_rate = 20
register_burst = 200
register_rate_per_ip = 1
register_burst_per_ip = 10
# Stored registrations without credential (long Web Push endpoints); at the cap a device gets the
# error `capacity` until unused ones expire (registration_ttl_days).
max_anonymous_registrations = 100000

[METRICS]
enable = off
host = 127.0.0.1
port = 5229
"
    )
}
