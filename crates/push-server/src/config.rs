//! `push-server.ini`: typed configuration, read with the INI reader shared by the servers
//! ([`hush_server_common::ini`]); `push-server init` writes a commented file ([`default_ini`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hush_server_common::ini::{Entry, Ini, IniError};

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
pub const DEFAULT_PORT: u16 = 5228;

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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {error}", file.display())]
    Syntax { file: PathBuf, error: IniError },
    /// `detail` = `[SECTION] key = "value": reason`.
    #[error("{}: line {line}: {detail}", file.display())]
    Value {
        file: PathBuf,
        line: usize,
        detail: String,
    },
}

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

struct Reader<'a> {
    ini: &'a Ini,
    file: &'a Path,
    warnings: Vec<String>,
}

impl Reader<'_> {
    fn err(&self, e: &Entry, section: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            file: self.file.to_path_buf(),
            line: e.line,
            detail: format!("[{section}] {} = {:?}: {}", e.key, e.value, reason.into()),
        }
    }

    fn str(&self, s: &str, k: &str) -> Option<String> {
        self.ini
            .get(s, k)
            .map(|e| e.value.clone())
            .filter(|v| !v.is_empty())
    }

    fn bool(&self, s: &str, k: &str, default: bool) -> Result<bool, ConfigError> {
        match self.ini.get(s, k) {
            None => Ok(default),
            Some(e) => match e.value.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" => Ok(true),
                "off" | "false" | "no" => Ok(false),
                _ => Err(self.err(e, s, "expected on or off")),
            },
        }
    }

    fn num<T: std::str::FromStr>(&self, s: &str, k: &str, default: T) -> Result<T, ConfigError> {
        match self.ini.get(s, k) {
            None => Ok(default),
            Some(e) => e
                .value
                .parse()
                .map_err(|_| self.err(e, s, "expected a number")),
        }
    }

    /// An integer in `min..=max`.
    fn int<T>(&self, s: &str, k: &str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match self.ini.get(s, k) {
            None => Ok(default),
            Some(e) => match e.value.parse::<T>() {
                Ok(v) if v >= min && v <= max => Ok(v),
                _ => Err(self.err(e, s, format!("expected a whole number from {min} to {max}"))),
            },
        }
    }

    /// A rate in events per second (`0` = no limit).
    fn rate(&self, s: &str, k: &str, default: f64) -> Result<f64, ConfigError> {
        match self.ini.get(s, k) {
            None => Ok(default),
            Some(e) => match e.value.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(self.err(
                    e,
                    s,
                    "expected a number of events per second (0 = no limit)",
                )),
            },
        }
    }

    fn path(&self, dir: &Path, s: &str, k: &str, default: &str) -> PathBuf {
        let v = self.str(s, k).unwrap_or_else(|| default.to_string());
        dir.join(v)
    }

    fn check_keys(&mut self) {
        for sec in &self.ini.sections {
            match KNOWN.iter().find(|(n, _)| *n == sec.name) {
                None => self
                    .warnings
                    .push(format!("line {}: unknown section [{}]", sec.line, sec.name)),
                Some((name, keys)) if *name != "CLIENTS" => {
                    for e in &sec.entries {
                        if !keys.contains(&e.key.as_str()) {
                            self.warnings.push(format!(
                                "line {}: unknown key [{}] {}",
                                e.line, sec.name, e.key
                            ));
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }
}

impl Config {
    /// Reads `<dir>/push-server.ini`. Returns the configuration and warnings (unknown keys).
    pub fn load(dir: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let file = dir.join(INI_FILE);
        let bytes = std::fs::read(&file).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        Config::parse(&bytes, &file, dir)
    }

    pub fn parse(
        bytes: &[u8],
        file: &Path,
        dir: &Path,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let ini = Ini::parse(bytes).map_err(|error| ConfigError::Syntax {
            file: file.to_path_buf(),
            error,
        })?;
        let mut r = Reader {
            ini: &ini,
            file,
            warnings: Vec::new(),
        };
        r.check_keys();
        let full_sync = match ini.get("STORE", "sync") {
            None => true,
            Some(e) => match e.value.as_str() {
                "full" => true,
                "normal" => false,
                _ => return Err(r.err(e, "STORE", "expected full or normal")),
            },
        };
        let host: IpAddr = match ini.get("TRANSPORT", "host") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(e) => e
                .value
                .parse()
                .map_err(|_| r.err(e, "TRANSPORT", "expected an IP address"))?,
        };
        let port = r.num("TRANSPORT", "port", DEFAULT_PORT)?;
        let clients = ini
            .section("CLIENTS")
            .map(|s| {
                s.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let sig_format = match ini.get("APNS", "jwt_signature") {
            None => SigFormat::Jose,
            Some(e) => SigFormat::parse(&e.value)
                .ok_or_else(|| r.err(e, "APNS", "expected jose or der"))?,
        };
        let url = |k: &str, default: Option<&str>| -> Option<String> {
            match ini.get("APNS", k) {
                None => default.map(str::to_string),
                Some(e) if e.value.is_empty() => None,
                Some(e) => Some(e.value.clone()),
            }
        };
        let apns = ApnsSection {
            enable: r.bool("APNS", "enable", false)?,
            topic: r
                .str("APNS", "topic")
                .unwrap_or_else(|| "chat.simplex.app".into()),
            team_id: r.str("APNS", "team_id").unwrap_or_default(),
            key_id: r.str("APNS", "key_id").unwrap_or_default(),
            key_file: r.path(dir, "APNS", "key_file", "apns-key.p8"),
            sig_format,
            jwt_refresh: Duration::from_secs(60 * r.num("APNS", "jwt_refresh_minutes", 30u64)?),
            prod_url: url("prod_url", Some("https://api.push.apple.com")),
            dev_url: url("dev_url", Some("https://api.sandbox.push.apple.com")),
            test_url: url("test_url", None),
            test_ca_file: r.str("APNS", "test_ca_file").map(|p| dir.join(p)),
            max_payload: r.num("APNS", "max_payload", crate::provider::apns::MAX_PAYLOAD)?,
        };
        let destinations = match ini.get("WEBPUSH", "destinations") {
            None => DestinationPolicy::Public,
            Some(e) => DestinationPolicy::parse(&e.value).map_err(|m| r.err(e, "WEBPUSH", m))?,
        };
        let allow_http = r.bool("WEBPUSH", "allow_http", false)?;
        let endpoints = EndpointPolicy {
            destinations,
            allow_any_port: r.bool("WEBPUSH", "allow_any_port", false)?,
            allow_http,
        };
        let webpush = WebPushSection {
            enable: r.bool("WEBPUSH", "enable", false)?,
            vapid_key_file: r.path(dir, "WEBPUSH", "vapid_key_file", "vapid.pem"),
            subject: r.str("WEBPUSH", "subject").unwrap_or_default(),
            allow_http,
            ca_file: r.str("WEBPUSH", "ca_file").map(|p| dir.join(p)),
            endpoints,
        };
        let dl = ServerLimits::default();
        const L: &str = "LIMITS";
        let max_connections = r.int(L, "max_connections", dl.max_connections, 1, 1_000_000)?;
        let reserved_connections = r.int(
            L,
            "reserved_connections",
            dl.reserved_connections.min(max_connections - 1),
            0,
            max_connections - 1,
        )?;
        let limits = ServerLimits {
            max_connections,
            reserved_connections,
            max_connections_per_ip: r.int(
                L,
                "max_connections_per_ip",
                dl.max_connections_per_ip,
                0,
                1_000_000,
            )?,
            handshake_timeout: match ini.get("TRANSPORT", "handshake_timeout") {
                None => dl.handshake_timeout,
                Some(e) => match e.value.parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 && v <= 3600.0 => Duration::from_secs_f64(v),
                    _ => {
                        return Err(r.err(
                            e,
                            "TRANSPORT",
                            "expected seconds, more than 0 and at most 3600",
                        ));
                    }
                },
            },
            anonymous_registrations: r.bool(
                L,
                "anonymous_registrations",
                dl.anonymous_registrations,
            )?,
            register_rate: Rate::new(
                r.rate(L, "register_rate", dl.register_rate.per_second)?,
                r.int(L, "register_burst", dl.register_rate.burst, 1, 1_000_000)?,
            ),
            register_rate_per_ip: Rate::new(
                r.rate(
                    L,
                    "register_rate_per_ip",
                    dl.register_rate_per_ip.per_second,
                )?,
                r.int(
                    L,
                    "register_burst_per_ip",
                    dl.register_rate_per_ip.burst,
                    1,
                    1_000_000,
                )?,
            ),
        };
        let d = ServiceConfig::default();
        let service = ServiceConfig {
            retry_base: Duration::from_millis(r.num("OUTBOX", "retry_base_ms", 1000u64)?),
            retry_max: Duration::from_secs(r.num("OUTBOX", "retry_max_seconds", 600u64)?),
            default_ttl: Duration::from_secs(r.num(
                "OUTBOX",
                "default_ttl_seconds",
                d.default_ttl.as_secs(),
            )?),
            concurrency: r.num("OUTBOX", "concurrency", d.concurrency)?.max(1),
            dedup_window: Duration::from_secs(r.num(
                "OUTBOX",
                "dedup_window_seconds",
                d.dedup_window.as_secs(),
            )?),
            poll_interval: d.poll_interval,
            max_pending: r.num("OUTBOX", "max_pending", d.max_pending)?,
            registration_ttl: Duration::from_secs(
                24 * 3600 * r.num("OUTBOX", "registration_ttl_days", 60u64)?,
            ),
            webpush_endpoints: endpoints,
            max_anonymous_registrations: r.int(
                L,
                "max_anonymous_registrations",
                d.max_anonymous_registrations,
                0,
                u64::MAX,
            )?,
        };
        let metrics = if r.bool("METRICS", "enable", false)? {
            let host: IpAddr = match ini.get("METRICS", "host") {
                None => IpAddr::from([127, 0, 0, 1]),
                Some(e) => e
                    .value
                    .parse()
                    .map_err(|_| r.err(e, "METRICS", "expected an IP address"))?,
            };
            Some(SocketAddr::new(host, r.num("METRICS", "port", 5229u16)?))
        } else {
            None
        };
        let cfg = Config {
            dir: dir.to_path_buf(),
            outbox_file: r.path(dir, "STORE", "outbox_file", "push-outbox.sqlite"),
            full_sync,
            listen: SocketAddr::new(host, port),
            clients,
            apns,
            webpush,
            service,
            metrics,
            limits,
        };
        Ok((cfg, r.warnings))
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
concurrency = 64
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
