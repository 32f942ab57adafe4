//! `ntf-server.ini` (reference §7.3 sections and keys, plus hush's `[POLICY]`, `[PUSH]` and
//! `[METRICS]`), read with the strict INI reader shared by the servers
//! ([`hush_server_common::ini`]). Unknown keys are warnings naming their line; bad values are
//! errors naming their line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hush_server_common::config::{KnownKeys, Reader};
use hush_server_common::ini::{Entry, Ini};
use hush_server_common::{BasicAuth, DestinationPolicy, Rate};

use crate::control::ControlAuth;
use crate::core::{
    CoreOptions, DEFAULT_SUB_CAPS, DEFAULT_TOKEN_RATE, DEFAULT_TOKEN_RATE_PER_CONNECTION,
    DEFAULT_TOKEN_RATE_PER_IP,
};
use crate::policy::{BudgetConfig, PolicyMode};
use crate::store::{StoreMode, SubCaps};

pub const INI_FILE: &str = "ntf-server.ini";
pub const STORE_FILE: &str = "ntf-server-store.db";
pub const DEFAULT_PORT: u16 = 443;
/// Default `[TRANSPORT] handshake_timeout` (seconds): TLS handshake + NTF hello.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 15;

/// Default `[METRICS] address` port (`enable = on` without `address`): 127.0.0.1:5230, beside
/// the in-process push-server's 5228 ([`crate::init::DEFAULT_PUSH_PORT`]).
pub const DEFAULT_METRICS_PORT: u16 = 5230;

/// Where the server keeps its files (reference `/etc/opt/simplex-notifications`,
/// `/var/opt/simplex-notifications`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    pub fn ini_file(&self) -> PathBuf {
        self.config_dir.join(INI_FILE)
    }
}

/// How pushes reach the push-server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushConfig {
    /// The push-server runs in the same process: the embedder passes the gateway, or the
    /// binary starts one from the push-server configuration directory `[PUSH] config_dir`.
    InProcess { config_dir: Option<PathBuf> },
    /// A separate push-server over TLS, pinned by certificate fingerprint.
    Remote {
        host: String,
        port: u16,
        fingerprint: [u8; 32],
        credential: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub paths: Paths,
    /// `[STORE_LOG] enable`: SQLite file in the data directory; off = memory only.
    pub store_enable: bool,
    /// `[STORE_LOG] db_file` (default `<data dir>/ntf-server-store.db`).
    pub store_file: Option<PathBuf>,
    /// `[STORE_LOG] db_connection` (with `enable = on`): PostgreSQL instead of SQLite, shared by
    /// several instances; `db_schema`, `db_pool_size`, `lease_ttl` complete it.
    pub store_db: Option<crate::store::PgConfig>,
    /// `db_schema`, `db_pool_size`, `lease_ttl` (used with `db_connection`).
    pub store_db_options: crate::store::PgConfig,
    pub host: Option<String>,
    pub ports: Vec<u16>,
    pub bind: Vec<IpAddr>,
    pub log_tls_errors: bool,
    pub control_port: Option<u16>,
    pub control_admin_password: Option<BasicAuth>,
    pub control_user_password: Option<BasicAuth>,
    /// `[INACTIVE_CLIENTS] disconnect = on` → ttl.
    pub inactive_ttl: Option<Duration>,
    pub max_connections: usize,
    /// `[TRANSPORT] handshake_timeout`: a new connection must finish TLS and the NTF hello in
    /// this time (relay: the same key).
    pub handshake_timeout: Duration,
    /// `[LIMITS] max_connections_per_ip` (0 = no cap): concurrent connections from one IPv4
    /// address or IPv6 /64 (relay: the same key).
    pub max_connections_per_ip: u32,
    /// `[LIMITS] token_rate`, `token_burst`: `TNEW`/`TRPL` of the whole server.
    pub token_rate: Rate,
    /// `[LIMITS] token_rate_per_connection`, `token_burst_per_connection`.
    pub token_rate_per_connection: Rate,
    /// `[LIMITS] token_rate_per_ip`, `token_burst_per_ip`: all connections from one IPv4 address
    /// or IPv6 /64 together.
    pub token_rate_per_ip: Rate,
    /// `[LIMITS] unverified_token_ttl` (seconds): tokens never verified are deleted after it.
    pub unverified_token_ttl: Duration,
    /// `[LIMITS] tokens_per_device`.
    pub tokens_per_device: usize,
    /// `[LIMITS] subscriptions_per_token`, `relays_per_token`, `max_relays`.
    pub sub_caps: SubCaps,
    /// `[SUBSCRIBER] relay_destinations`: `public` (default), `loopback` or `private`.
    pub relay_destinations: DestinationPolicy,
    /// `[SUBSCRIBER] use_service_credentials` (default off): connect to relays in a notifier
    /// service session with the certificate in `<config dir>/service` (made by `init`, or at
    /// the first start with it on), so that one `NSUBS` per relay resubscribes every
    /// notifier the relay associated with the service.
    pub use_service_credentials: bool,
    pub metrics_addr: Option<SocketAddr>,
    /// `[POLICY] mode = reference`.
    pub policy_reference: bool,
    /// `[POLICY]` budget parameters (used unless `policy_reference`).
    pub budget: BudgetConfig,
    pub alert_text: String,
    /// `[POLICY] cron_sweep` (seconds): how often tokens are checked for due periodic pushes
    /// (reference 300).
    pub cron_sweep: Duration,
    /// `[POLICY] cron_min_minutes`: shortest `TCRN` interval accepted (reference 20).
    pub cron_min_minutes: u16,
    /// `[POLICY] cron_minute_seconds`: length of one `TCRN` minute (reference 60; a test/demo
    /// knob — shorter values make periodic pushes observable in seconds).
    pub cron_minute: Duration,
    pub feedback_interval: Duration,
    /// `[PUSH] payload_padding` (bytes of padded push data).
    pub payload_padding: usize,
    /// `[SUBSCRIBER] socks_proxy`, `socks_mode`, `host_mode`, `required_host_mode` (the
    /// reference's keys and defaults: proxy only for `.onion` hosts, public hosts preferred).
    pub network: hush_transport::NetworkConfig,
    /// `[SUBSCRIBER]` reconnect backoff.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// `[PUSH] mode = remote`, with its `host`, `port`, `fingerprint`, `credential`.
    pub push_remote: bool,
    pub push_host: String,
    pub push_port: u16,
    pub push_fingerprint: [u8; 32],
    pub push_credential: String,
    /// `[PUSH] config_dir`: push-server configuration for `mode = in_process` in the binary.
    pub push_config_dir: Option<PathBuf>,
    /// `[INFORMATION]` (the smp-server's keys; published on the server page with `source_code`).
    pub information: hush_server_common::web::ServerInformation,
    /// `[WEB]`: the server information page (hush-server-common `web`); `None` without
    /// `static_path`.
    pub web: Option<hush_server_common::web::WebConfig>,
}

impl Config {
    pub fn defaults(paths: Paths) -> Config {
        Config {
            paths,
            store_enable: true,
            store_file: None,
            store_db: None,
            store_db_options: crate::store::PgConfig::default(),
            host: None,
            ports: vec![DEFAULT_PORT],
            bind: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            log_tls_errors: false,
            control_port: None,
            control_admin_password: None,
            control_user_password: None,
            inactive_ttl: None,
            max_connections: 65_536,
            handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            max_connections_per_ip: 0,
            token_rate: DEFAULT_TOKEN_RATE,
            token_rate_per_connection: DEFAULT_TOKEN_RATE_PER_CONNECTION,
            token_rate_per_ip: DEFAULT_TOKEN_RATE_PER_IP,
            unverified_token_ttl: Duration::from_secs(86_400),
            tokens_per_device: 8,
            sub_caps: DEFAULT_SUB_CAPS,
            relay_destinations: DestinationPolicy::Public,
            use_service_credentials: false,
            metrics_addr: None,
            policy_reference: false,
            budget: BudgetConfig::default(),
            alert_text: crate::payload::DEFAULT_ALERT_TEXT.to_string(),
            cron_sweep: Duration::from_secs(300),
            cron_min_minutes: 20,
            cron_minute: Duration::from_secs(60),
            feedback_interval: Duration::from_secs(5),
            payload_padding: crate::payload::DEFAULT_PAYLOAD_PAD,
            network: hush_transport::NetworkConfig::direct(),
            reconnect_initial: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            push_remote: false,
            push_host: String::new(),
            push_port: 0,
            push_fingerprint: [0; 32],
            push_credential: String::new(),
            push_config_dir: None,
            information: Default::default(),
            web: None,
        }
    }

    pub fn policy(&self) -> PolicyMode {
        if self.policy_reference {
            PolicyMode::Reference
        } else {
            PolicyMode::Budget(self.budget.clone())
        }
    }

    pub fn push(&self) -> PushConfig {
        if self.push_remote {
            PushConfig::Remote {
                host: self.push_host.clone(),
                port: self.push_port,
                fingerprint: self.push_fingerprint,
                credential: self.push_credential.clone(),
            }
        } else {
            PushConfig::InProcess {
                config_dir: self.push_config_dir.clone(),
            }
        }
    }

    pub fn store_mode(&self) -> StoreMode {
        if !self.store_enable {
            return StoreMode::Memory;
        }
        if let Some(db) = &self.store_db {
            return StoreMode::Postgres(db.clone());
        }
        StoreMode::Sqlite(
            self.store_file
                .clone()
                .unwrap_or_else(|| self.paths.data_dir.join(STORE_FILE)),
        )
    }

    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let mut v = Vec::new();
        for ip in &self.bind {
            for p in &self.ports {
                v.push(SocketAddr::new(*ip, *p));
            }
        }
        v
    }

    pub fn core_options(&self) -> CoreOptions {
        CoreOptions {
            policy: self.policy(),
            alert_text: self.alert_text.clone(),
            cron_sweep: self.cron_sweep,
            cron_min_minutes: self.cron_min_minutes,
            cron_minute: self.cron_minute,
            feedback_interval: self.feedback_interval,
            payload_padding: self.payload_padding,
            token_rate: self.token_rate,
            unverified_token_ttl: self.unverified_token_ttl,
            tokens_per_device: self.tokens_per_device,
            sub_caps: self.sub_caps,
            relay_destinations: self.relay_destinations,
            relay_network: self.network.clone(),
            ..CoreOptions::default()
        }
    }

    pub fn pool_config(&self) -> hush_client::PoolConfig {
        hush_client::PoolConfig {
            backoff: hush_client::BackoffConfig {
                initial: self.reconnect_initial,
                max: self.reconnect_max,
                ..Default::default()
            },
            // Notification bursts: a large event buffer (the reference's push queue is 32768).
            event_buffer: 32_768,
            ..Default::default()
        }
    }

    pub fn control_auth(&self) -> ControlAuth {
        ControlAuth {
            admin: self.control_admin_password.clone(),
            user: self.control_user_password.clone(),
        }
    }

    /// Reads `<config dir>/ntf-server.ini`.
    pub fn load(paths: Paths) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let file = paths.ini_file();
        let ini = hush_server_common::config::load(&file)?;
        Config::read(paths, &ini, &file)
    }

    /// Parses ini text; returns the config and warnings.
    pub fn parse(paths: Paths, bytes: &[u8]) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let file = paths.ini_file();
        let ini = hush_server_common::config::parse(bytes, &file)?;
        Config::read(paths, &ini, &file)
    }

    fn read(
        paths: Paths,
        ini: &Ini,
        file: &Path,
    ) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let mut r = Reader::new(ini, file);
        r.check_keys(&KEYS);
        let mut c = Config::defaults(paths);
        for s in &ini.sections {
            for e in &s.entries {
                apply(&mut c, &r, &s.name, e)?;
            }
        }
        // [INFORMATION] and [WEB]: one implementation with the other servers.
        c.information = r.information()?;
        c.web = r.web(&c.paths.data_dir, &c.paths.config_dir)?;
        match c.store_db.take() {
            Some(db) if c.store_enable => {
                c.store_db = Some(crate::store::PgConfig {
                    connection: db.connection,
                    ..c.store_db_options.clone()
                })
            }
            Some(_) => r.warn_at(
                ini.get("STORE_LOG", "db_connection"),
                "STORE_LOG",
                "db_connection",
                "ignored with enable = off (memory only)",
            ),
            None => {}
        }
        if let Some(a) = c.metrics_addr
            && !a.ip().is_loopback()
        {
            r.warn_at(
                ini.get("METRICS", "address"),
                "METRICS",
                "address",
                "metrics are served without authentication on a non-loopback address",
            );
        }
        // Built without the embedded push-server (`--no-default-features`): only a remote one.
        #[cfg(not(feature = "embedded-push"))]
        if !c.push_remote {
            let mode = ini.get("PUSH", "mode");
            return Err(ConfigError::Value {
                file: file.to_path_buf(),
                line: mode.map_or(0, |e| e.line),
                section: "PUSH".into(),
                key: "mode".into(),
                value: mode.map_or_else(|| "in_process (default)".into(), |e| e.value.clone()),
                reason: "this ntf-server is built without the in-process push-server (cargo \
                         feature `embedded-push`): set mode = remote with the host, port, \
                         fingerprint and credential of a push-server"
                    .into(),
            });
        }
        if let (Some(_), None) = (c.control_port, &c.control_admin_password) {
            r.warn_at(
                ini.get("TRANSPORT", "control_port"),
                "TRANSPORT",
                "control_port",
                "control port without admin password: only public commands",
            );
        }
        Ok((c, r.into_warnings()))
    }
}

pub use hush_server_common::config::{ConfigError, ConfigWarning};

/// Keys of `ntf-server.ini`, per section ([`apply`] reads each of them).
const KNOWN: &[(&str, &[&str])] = &[
    (
        "STORE_LOG",
        &[
            "enable",
            "db_file",
            "db_connection",
            "db_schema",
            "db_pool_size",
            "lease_ttl",
        ],
    ),
    (
        "AUTH",
        &["control_port_admin_password", "control_port_user_password"],
    ),
    (
        "TRANSPORT",
        &[
            "host",
            "port",
            "bind",
            "log_tls_errors",
            "websockets",
            "control_port",
            "max_connections",
            "handshake_timeout",
        ],
    ),
    (
        "LIMITS",
        &[
            "max_connections_per_ip",
            "token_rate",
            "token_burst",
            "token_rate_per_ip",
            "token_burst_per_ip",
            "token_rate_per_connection",
            "token_burst_per_connection",
            "unverified_token_ttl",
            "tokens_per_device",
            "subscriptions_per_token",
            "relays_per_token",
            "max_relays",
        ],
    ),
    (
        "SUBSCRIBER",
        &[
            "relay_destinations",
            "socks_proxy",
            "socks_mode",
            "host_mode",
            "required_host_mode",
            "use_service_credentials",
            "reconnect_initial",
            "reconnect_max",
        ],
    ),
    ("INACTIVE_CLIENTS", &["disconnect", "ttl"]),
    ("METRICS", &["enable", "address"]),
    (
        "POLICY",
        &[
            "mode",
            "silent_per_window",
            "window",
            "alert_interval",
            "alert_text",
            "cron_sweep",
            "cron_min_minutes",
            "cron_minute_seconds",
            "feedback_interval",
        ],
    ),
    (
        "PUSH",
        &[
            "mode",
            "host",
            "port",
            "fingerprint",
            "payload_padding",
            "config_dir",
            "credential",
        ],
    ),
    ("INFORMATION", hush_server_common::web::INFORMATION_KEYS),
    ("WEB", hush_server_common::web::WEB_KEYS),
];

/// Reference keys hush reads past, with their own warning.
const REFERENCE_ONLY: &[(&str, &[&str])] = &[
    (
        "STORE_LOG",
        &[
            "db_deleted_ttl",
            "db_store_log",
            "log_stats",
            "prometheus_interval",
            "restore_last_ntfs",
        ],
    ),
    ("SUBSCRIBER", &["own_server_domains"]),
    ("INACTIVE_CLIENTS", &["check_interval"]),
];

const KEYS: KnownKeys = KnownKeys {
    sections: KNOWN,
    open_sections: &[],
    reference_only: REFERENCE_ONLY,
};

/// Seconds, fractions allowed: the widest range any key takes.
const MAX_SECS: Duration = Duration::from_secs(1_000_000_000);
/// Upper bound of counts (caps per token, relays).
const MAX_COUNT: usize = 1_000_000_000;

/// Applies one entry; `Ok(false)` = a key it does not read (warned about by
/// [`Reader::check_keys`] when it is not in [`KNOWN`]).
fn apply(c: &mut Config, r: &Reader, section: &str, e: &Entry) -> Result<bool, ConfigError> {
    let v = e.value.as_str();
    let bad = |reason: &str| r.error(section, e, reason);
    let onoff = || r.on_off_at(section, e);
    let secs = || r.seconds_at(section, e, Duration::ZERO, MAX_SECS);
    let positive_secs = || r.positive_seconds_at(section, e, MAX_SECS);
    let count = || r.number_at(section, e, 1, MAX_COUNT);
    let rate = || r.rate_at(section, e);
    let burst = || r.number_at(section, e, 1, u32::MAX);
    match (section, e.key.as_str()) {
        ("STORE_LOG", "enable") => c.store_enable = onoff()?,
        ("STORE_LOG", "db_file") => c.store_file = Some(PathBuf::from(v)),
        ("STORE_LOG", "db_connection") => {
            let url = v.starts_with("postgresql://") || v.starts_with("postgres://");
            let key_value = v.contains('=') && !v.contains("://");
            if !(url || key_value) || v.chars().any(|c| c.is_control()) {
                // The value may hold a password: never repeated.
                return Err(r.error_redacted(
                    section,
                    e,
                    "expected a PostgreSQL connection string: \
                     postgresql://user[:password]@host[:port]/database or host=... dbname=...",
                ));
            }
            c.store_db = Some(crate::store::PgConfig {
                connection: v.to_string(),
                ..crate::store::PgConfig::default()
            });
        }
        ("STORE_LOG", "db_schema") => {
            if !crate::store::postgres::valid_schema(v) {
                return Err(bad(
                    "expected a schema name: lowercase letters, digits and _, \
                     not starting with a digit, at most 63 characters",
                ));
            }
            c.store_db_options.schema = v.to_string();
        }
        ("STORE_LOG", "db_pool_size") => {
            c.store_db_options.pool_size = r.number_at(section, e, 1, 1000)?
        }
        ("STORE_LOG", "lease_ttl") => {
            let d = r.positive_seconds_at(section, e, Duration::from_secs(3600))?;
            c.store_db_options.lease = crate::store::Lease::from_ttl(d);
        }
        ("AUTH", "control_port_admin_password") => {
            c.control_admin_password =
                Some(BasicAuth::new(v).map_err(|m| r.error_redacted(section, e, m))?)
        }
        ("AUTH", "control_port_user_password") => {
            c.control_user_password =
                Some(BasicAuth::new(v).map_err(|m| r.error_redacted(section, e, m))?)
        }
        ("TRANSPORT", "host") => c.host = Some(v.to_string()),
        ("TRANSPORT", "port") => {
            c.ports = v
                .split(',')
                .map(|p| p.trim().parse::<u16>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad("expected port numbers separated by commas"))?;
            if c.ports.is_empty() {
                return Err(bad("no port"));
            }
        }
        ("TRANSPORT", "bind") => {
            c.bind = v
                .split(',')
                .map(|p| p.trim().parse::<IpAddr>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad("expected IP addresses separated by commas"))?;
        }
        ("TRANSPORT", "log_tls_errors") => c.log_tls_errors = onoff()?,
        ("TRANSPORT", "websockets") => {
            if onoff()? {
                return Err(bad("websockets are not supported"));
            }
        }
        ("TRANSPORT", "control_port") => {
            c.control_port = Some(r.number_at(section, e, 0, u16::MAX)?)
        }
        ("TRANSPORT", "max_connections") => {
            c.max_connections = r.number_at(section, e, 1, 10_000_000)?
        }
        ("TRANSPORT", "handshake_timeout") => c.handshake_timeout = positive_secs()?,
        ("LIMITS", "max_connections_per_ip") => {
            c.max_connections_per_ip = r.number_at(section, e, 0, u32::MAX)?
        }
        ("LIMITS", "token_rate") => c.token_rate.per_second = rate()?,
        ("LIMITS", "token_burst") => c.token_rate.burst = burst()?,
        ("LIMITS", "token_rate_per_ip") => c.token_rate_per_ip.per_second = rate()?,
        ("LIMITS", "token_burst_per_ip") => c.token_rate_per_ip.burst = burst()?,
        ("LIMITS", "token_rate_per_connection") => c.token_rate_per_connection.per_second = rate()?,
        ("LIMITS", "token_burst_per_connection") => c.token_rate_per_connection.burst = burst()?,
        ("LIMITS", "unverified_token_ttl") => c.unverified_token_ttl = positive_secs()?,
        ("LIMITS", "tokens_per_device") => c.tokens_per_device = count()?,
        ("LIMITS", "subscriptions_per_token") => c.sub_caps.per_token = count()?,
        ("LIMITS", "relays_per_token") => c.sub_caps.relays_per_token = count()?,
        ("LIMITS", "max_relays") => c.sub_caps.relays = count()?,
        ("SUBSCRIBER", "relay_destinations") => {
            c.relay_destinations = DestinationPolicy::parse(v).map_err(|m| bad(&m))?
        }
        ("SUBSCRIBER", "socks_proxy") => {
            c.network.socks_proxy =
                // The message never repeats the value: it may hold a SOCKS password.
                Some(hush_transport::SocksProxy::parse(v).map_err(|m| r.error_redacted(section, e, m))?)
        }
        ("SUBSCRIBER", "socks_mode") => {
            c.network.socks_mode = hush_transport::SocksMode::parse(v).map_err(|m| bad(&m))?
        }
        ("SUBSCRIBER", "host_mode") => {
            c.network.host_mode = hush_transport::HostMode::parse(v).map_err(|m| bad(&m))?
        }
        ("SUBSCRIBER", "required_host_mode") => c.network.required_host_mode = onoff()?,
        ("SUBSCRIBER", "use_service_credentials") => c.use_service_credentials = onoff()?,
        ("SUBSCRIBER", "reconnect_initial") => c.reconnect_initial = secs()?,
        ("SUBSCRIBER", "reconnect_max") => c.reconnect_max = secs()?,
        ("INACTIVE_CLIENTS", "disconnect") => {
            c.inactive_ttl = if onoff()? {
                Some(c.inactive_ttl.unwrap_or(Duration::from_secs(43_200)))
            } else {
                None
            }
        }
        ("INACTIVE_CLIENTS", "ttl") => {
            let d = secs()?;
            if c.inactive_ttl.is_some() {
                c.inactive_ttl = Some(d);
            }
        }
        ("METRICS", "enable") => {
            if !onoff()? {
                c.metrics_addr = None;
            } else if c.metrics_addr.is_none() {
                // Not 5228: that is the in-process push-server's port (`init`).
                c.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], DEFAULT_METRICS_PORT)));
            }
        }
        ("METRICS", "address") => {
            c.metrics_addr = Some(
                v.parse()
                    .map_err(|_| bad("expected ip:port (IPv6 as [ip]:port)"))?,
            )
        }
        ("POLICY", "mode") => match v {
            "budget" => c.policy_reference = false,
            "reference" => c.policy_reference = true,
            _ => return Err(bad("expected budget or reference")),
        },
        ("POLICY", "silent_per_window") => {
            c.budget.silent_per_window = r.number_at(section, e, 0, u32::MAX)?;
        }
        ("POLICY", "window") => {
            c.budget.window = secs()?;
        }
        ("POLICY", "alert_interval") => {
            c.budget.alert_interval = secs()?;
        }
        ("POLICY", "alert_text") => {
            if v.is_empty() || v.len() > 200 {
                return Err(bad("1..200 characters"));
            }
            c.alert_text = v.to_string();
        }
        ("POLICY", "cron_sweep") => c.cron_sweep = secs()?,
        ("POLICY", "cron_min_minutes") => {
            c.cron_min_minutes = r.number_at(section, e, 1, u16::MAX)?;
        }
        ("POLICY", "cron_minute_seconds") => {
            c.cron_minute = r.seconds_at(section, e, Duration::from_millis(10), MAX_SECS)?;
        }
        ("POLICY", "feedback_interval") => c.feedback_interval = secs()?,
        ("PUSH", "mode") => match v {
            "in_process" => c.push_remote = false,
            "remote" => c.push_remote = true,
            _ => return Err(bad("expected in_process or remote")),
        },
        ("PUSH", "host") => c.push_host = v.to_string(),
        ("PUSH", "port") => c.push_port = r.number_at(section, e, 0, u16::MAX)?,
        ("PUSH", "fingerprint") => {
            c.push_fingerprint = push_api::parse_fingerprint(v)
                .ok_or_else(|| bad("expected 64 hex digits or base64url"))?
        }
        ("PUSH", "payload_padding") => {
            c.payload_padding = r.number_at(section, e, 1024, 8192)?;
        }
        ("PUSH", "config_dir") => c.push_config_dir = Some(PathBuf::from(v)),
        ("PUSH", "credential") => c.push_credential = v.to_string(),
        ("INFORMATION", k) if hush_server_common::web::INFORMATION_KEYS.contains(&k) => {}
        ("WEB", k) if hush_server_common::web::WEB_KEYS.contains(&k) => {}
        _ => return Ok(false),
    }
    Ok(true)
}

/// The commented ini that `ntf-server init` writes.
pub fn ini_template(port: u16, control: Option<(u16, &str, &str)>, store: bool) -> String {
    let onoff = |b: bool| if b { "on" } else { "off" };
    let mut s = String::new();
    s.push_str(&format!(
        "[STORE_LOG]\n# Persist tokens, subscriptions and last notifications (SQLite in the data directory).\n# off: memory only; clients re-create their tokens and subscriptions after a restart.\nenable = {}\n\n",
        onoff(store)
    ));
    s.push_str(
        "# PostgreSQL instead of SQLite (with enable = on): several ntf-server instances may share\n\
         # one schema; each relay is subscribed by one live instance (a lease, taken over by\n\
         # another instance lease_ttl seconds after its holder stops renewing it).\n\
         # db_connection = postgresql://ntf@/ntf_server_store\n\
         # db_schema = ntf_server\n\
         # db_pool_size = 10\n\
         # lease_ttl = 15\n\n",
    );
    s.push_str("[AUTH]\n");
    if let Some((_, admin, user)) = control {
        s.push_str(&format!(
            "control_port_admin_password = {admin}\ncontrol_port_user_password = {user}\n"
        ));
    }
    s.push_str(&format!(
        "\n[TRANSPORT]\n# host = ntf.example.com\nport = {port}\nlog_tls_errors = off\nwebsockets = off\n\
         # Seconds a new connection has for the TLS handshake and the NTF hello.\n\
         handshake_timeout = {DEFAULT_HANDSHAKE_TIMEOUT_SECS}\n"
    ));
    if let Some((p, _, _)) = control {
        s.push_str(&format!("control_port = {p}\n"));
    }
    s.push_str(
        "\n[SUBSCRIBER]\n# Reconnect backoff to SMP relays (seconds).\nreconnect_initial = 1\nreconnect_max = 60\n\
         # Relay addresses SNEW may name: public (public addresses only), loopback (also\n\
         # 127.0.0.0/8 and ::1: a relay on this host, tests) or private (also private and\n\
         # link-local ranges: a deployment inside one private network).\n\
         relay_destinations = public\n\
         # SOCKS5 proxy (e.g. Tor) for connections to relays: [user:password@]ip:port (default\n\
         # port 9050; without credentials each relay gets its own isolation credentials, `@ip:port`\n\
         # sends none). socks_mode: onion (default: only for .onion relay hosts) or always.\n\
         # host_mode: public (default) or onion (the .onion host of a relay with several hosts,\n\
         # when socks_proxy is set); required_host_mode = on: no fallback to another host.\n\
         # socks_proxy = 127.0.0.1:9050\n# socks_mode = onion\n# host_mode = public\n\
         # required_host_mode = off\n\
         # use_service_credentials = on: relays know this server by its service certificate\n\
         # (<config dir>/service, made by init): after a restart one NSUBS per relay subscribes\n\
         # every queue again instead of one NSUB per queue (relays with SMP v16+).\n\
         # use_service_credentials = off\n\n\
         [LIMITS]\n\
         # Concurrent connections from one IPv4 address or IPv6 /64 (0 = no cap).\n\
         max_connections_per_ip = 0\n\
         # TNEW/TRPL (each sends a verification push): per second and burst, for the whole\n\
         # server and for one connection (0 = no limit); beyond them ERR QUOTA.\n\
         token_rate = 10\ntoken_burst = 200\n\
         token_rate_per_connection = 0.1\ntoken_burst_per_connection = 10\n\
         # The same for all connections from one IPv4 address or IPv6 /64 together (more\n\
         # connections buy no more tokens; one address cannot drain the server-wide rate).\n\
         token_rate_per_ip = 1\ntoken_burst_per_ip = 20\n\
         # Seconds after TNEW when a token never verified is deleted.\n\
         unverified_token_ttl = 86400\n\
         # Tokens of one device token / push handle: a further TNEW evicts the oldest\n\
         # never-verified one (ERR QUOTA if all are verified; apns_null test tokens: no cap).\n\
         tokens_per_device = 8\n\
         # Subscriptions of one token, distinct relays of one token, relays in total (ERR QUOTA).\n\
         subscriptions_per_token = 4096\nrelays_per_token = 64\nmax_relays = 4096\n\n\
         [INACTIVE_CLIENTS]\ndisconnect = off\n# ttl = 43200\n# check_interval = 3600\n\n\
         [METRICS]\nenable = off\n# address = 127.0.0.1:5230\n\n\
         [POLICY]\n# budget: at most silent_per_window silent pushes per token per window (seconds),\n\
         # then visible content-free alerts at most every alert_interval seconds (coalesced).\n\
         # reference: every notification is an alert at once (like the reference server).\n\
         mode = budget\nsilent_per_window = 3\nwindow = 3600\nalert_interval = 600\n\
         alert_text = You have a new message\n\
         # Periodic (TCRN) pushes: sweep interval (seconds), shortest accepted interval (minutes)\n\
         # and the length of a TCRN minute (seconds). Reference: 300, 20, 60. Shorter values are\n\
         # for tests and demos (`hush up --dev-fast-periodic`).\n\
         cron_sweep = 300\ncron_min_minutes = 20\ncron_minute_seconds = 60\n\n\
         [PUSH]\n# Padded size of encrypted push data: 2880 keeps message pushes under APNs' 4096-byte\n\
         # limit; 3072 makes them byte-identical to the reference server's (≈4.3 KB).\npayload_padding = 2880\n\
         # in_process: the push-server runs in this process, configured in config_dir (default:\n\
         # the directory `push` next to this file, which `ntf-server init` creates with no push\n\
         # provider enabled: enable [APNS] or [WEBPUSH] in push/push-server.ini to deliver pushes).\n\
         # remote: a separate push-server (host, port, fingerprint, credential).\n\
         # mode = in_process\n# config_dir = /etc/opt/hush/ntf/push\n# mode = remote\n# host = 127.0.0.1\n# port = 5229\n# fingerprint = <push-server certificate SHA-256>\n# credential = <bearer credential>\n",
    );
    s.push_str(
        "\n[INFORMATION]\n\
         # Published on the server page ([WEB]) once source_code is set (AGPLv3: publish the source\n\
         # code you run). The keys of smp-server's [INFORMATION]: usage_conditions,\n\
         # condition_amendments, server_country, operator, operator_country, website, admin_email,\n\
         # admin_simplex, admin_pgp (+ admin_pgp_fingerprint), complaints_*, hosting,\n\
         # hosting_country, hosting_type.\n\
         # source_code = https://example.com/your/hush/fork\n# operator =\n# website =\n\n\
         [WEB]\n\
         # The server information page ([INFORMATION], the server address and statistics) as static\n\
         # HTML + CSS written to static_path (relative: under the data directory), updated every\n\
         # refresh_interval seconds, and served on http / https (a port or IP:PORT). HTTPS uses this\n\
         # server's TLS certificate unless cert and key name PEM files.\n\
         # static_path = www\n# http = 8000\n# https = 8443\n# cert = web.crt\n# key = web.key\n\
         # refresh_interval = 60\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> Paths {
        Paths {
            config_dir: "/c".into(),
            data_dir: "/d".into(),
        }
    }

    #[test]
    fn template_parses_to_defaults() {
        let t = ini_template(443, Some((5227, "adminpw", "userpw")), true);
        let (c, w) = Config::parse(paths(), t.as_bytes()).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.ports, vec![443]);
        assert_eq!(c.control_port, Some(5227));
        assert_eq!(c.policy(), PolicyMode::default());
        assert_eq!(
            c.store_mode(),
            StoreMode::Sqlite("/d/ntf-server-store.db".into())
        );
        // the limits written in the template are the defaults
        let d = Config::defaults(paths());
        assert_eq!(c.token_rate, d.token_rate);
        assert_eq!(c.token_rate_per_connection, d.token_rate_per_connection);
        assert_eq!(c.token_rate_per_ip, d.token_rate_per_ip);
        assert_eq!(c.unverified_token_ttl, d.unverified_token_ttl);
        assert_eq!(c.tokens_per_device, d.tokens_per_device);
        assert_eq!(c.sub_caps, d.sub_caps);
        assert_eq!(c.relay_destinations, d.relay_destinations);
        assert_eq!(c.handshake_timeout, d.handshake_timeout);
        assert_eq!(c.max_connections_per_ip, d.max_connections_per_ip);
        assert!(c.control_admin_password.unwrap().matches(b"adminpw"));
    }

    #[test]
    fn metrics_default_address_is_not_the_in_process_push_servers_port() {
        let (c, _) = Config::parse(paths(), b"[METRICS]\nenable = on\n").unwrap();
        let addr = c.metrics_addr.expect("enabled");
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), DEFAULT_METRICS_PORT);
        assert_ne!(addr.port(), crate::init::DEFAULT_PUSH_PORT);
    }

    #[test]
    fn abuse_limits() {
        let (c, _) = Config::parse(paths(), b"").unwrap();
        assert_eq!(c.relay_destinations, DestinationPolicy::Public);
        assert_eq!(c.handshake_timeout, Duration::from_secs(15));
        assert_eq!(c.max_connections_per_ip, 0);
        let o = c.core_options();
        assert_eq!(o.token_rate, DEFAULT_TOKEN_RATE);
        assert_eq!(o.unverified_token_ttl, Duration::from_secs(86_400));
        assert_eq!(o.tokens_per_device, 8);
        assert_eq!(o.sub_caps, DEFAULT_SUB_CAPS);
        let t =
            b"[SUBSCRIBER]\nrelay_destinations = loopback\n[TRANSPORT]\nhandshake_timeout = 0.5\n\
            [LIMITS]\nmax_connections_per_ip = 3\ntoken_rate = 2\ntoken_burst = 4\n\
            token_rate_per_connection = 0\ntoken_burst_per_connection = 1\n\
            unverified_token_ttl = 1.5\ntokens_per_device = 2\nsubscriptions_per_token = 5\n\
            relays_per_token = 6\nmax_relays = 7\n";
        let (c, w) = Config::parse(paths(), t).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert!(!c.use_service_credentials, "off by default");
        assert!(
            Config::parse(paths(), b"[SUBSCRIBER]\nuse_service_credentials = on\n")
                .unwrap()
                .0
                .use_service_credentials
        );
        assert_eq!(c.relay_destinations, DestinationPolicy::Loopback);
        assert_eq!(c.handshake_timeout, Duration::from_millis(500));
        assert_eq!(c.max_connections_per_ip, 3);
        assert_eq!(c.token_rate, Rate::new(2.0, 4));
        assert!(c.token_rate_per_connection.is_unlimited());
        let o = c.core_options();
        assert_eq!(o.unverified_token_ttl, Duration::from_millis(1500));
        assert_eq!(o.tokens_per_device, 2);
        assert_eq!(
            o.sub_caps,
            SubCaps {
                per_token: 5,
                relays_per_token: 6,
                relays: 7
            }
        );
        assert_eq!(o.relay_destinations, DestinationPolicy::Loopback);
    }

    #[test]
    fn periodic_push_knobs() {
        let (c, _) = Config::parse(paths(), b"").unwrap();
        let o = c.core_options();
        assert_eq!(
            (o.cron_sweep, o.cron_min_minutes, o.cron_minute),
            (Duration::from_secs(300), 20, Duration::from_secs(60))
        );
        let t = b"[POLICY]\ncron_sweep = 0.5\ncron_min_minutes = 1\ncron_minute_seconds = 0.1\n";
        let (c, w) = Config::parse(paths(), t).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let o = c.core_options();
        assert_eq!(
            (o.cron_sweep, o.cron_min_minutes, o.cron_minute),
            (Duration::from_millis(500), 1, Duration::from_millis(100))
        );
    }

    /// Without the `embedded-push` feature, `[PUSH] mode = in_process` (explicit or the default)
    /// is a configuration error naming the key; `mode = remote` loads.
    #[cfg(not(feature = "embedded-push"))]
    #[test]
    fn in_process_push_is_refused_without_the_embedded_push_server() {
        let e = Config::parse(paths(), b"[PUSH]\nmode = in_process\n").unwrap_err();
        assert_eq!(e.key(), Some(("PUSH", "mode")));
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("embedded-push"), "{e}");
        let e = Config::parse(paths(), b"").unwrap_err();
        assert_eq!(e.key(), Some(("PUSH", "mode")));
        assert!(e.to_string().contains("mode = remote"), "{e}");
    }

    #[test]
    fn policy_and_push_sections() {
        let t = b"[POLICY]\nmode = reference\n[PUSH]\nmode = remote\nhost = h\nport = 7\nfingerprint = 0000000000000000000000000000000000000000000000000000000000000001\ncredential = c\n[STORE_LOG]\nenable = off\n[X]\ny = 1\n";
        let (c, w) = Config::parse(paths(), t).unwrap();
        assert_eq!(c.policy(), PolicyMode::Reference);
        assert_eq!(c.store_mode(), StoreMode::Memory);
        let PushConfig::Remote {
            host,
            port,
            fingerprint,
            credential,
        } = c.push()
        else {
            panic!()
        };
        assert_eq!(
            (host.as_str(), port, fingerprint[31], credential.as_str()),
            ("h", 7, 1, "c")
        );
        assert_eq!(w.len(), 1);
        let t = b"[POLICY]\nsilent_per_window = 5\nwindow = 2.5\nalert_interval = 0.5\n";
        let (c, _) = Config::parse(paths(), t).unwrap();
        assert_eq!(
            c.policy(),
            PolicyMode::Budget(BudgetConfig {
                silent_per_window: 5,
                window: Duration::from_millis(2500),
                alert_interval: Duration::from_millis(500)
            })
        );
        for bad in [
            &b"[POLICY]\nmode = x\n"[..],
            b"[TRANSPORT]\nport = a\n",
            b"[POLICY]\nwindow = -1\n",
            b"[POLICY]\ncron_min_minutes = 0\n",
            b"[POLICY]\ncron_min_minutes = 70000\n",
            b"[POLICY]\ncron_minute_seconds = 0\n",
            b"[SUBSCRIBER]\nrelay_destinations = everywhere\n",
            b"[TRANSPORT]\nhandshake_timeout = 0\n",
            b"[LIMITS]\ntoken_burst = 0\n",
            b"[LIMITS]\ntoken_rate = -1\n",
            b"[LIMITS]\ntokens_per_device = 0\n",
            b"[LIMITS]\nsubscriptions_per_token = x\n",
            b"[LIMITS]\nunverified_token_ttl = 0\n",
        ] {
            let e = Config::parse(paths(), bad).unwrap_err();
            assert!(
                e.to_string().starts_with("/c/ntf-server.ini: line 2: ["),
                "{e}"
            );
        }
    }

    #[test]
    fn socks_keys() {
        use hush_transport::{HostMode, SocksAuth, SocksMode};
        let (c, _) = Config::parse(paths(), b"").unwrap();
        assert_eq!(c.network, hush_transport::NetworkConfig::direct());
        let t = b"[SUBSCRIBER]\nsocks_proxy = u:p@127.0.0.1:9150\nsocks_mode = always\n\
            host_mode = onion\nrequired_host_mode = on\n";
        let (c, w) = Config::parse(paths(), t).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let p = c.network.socks_proxy.as_ref().unwrap();
        assert_eq!(p.addr, "127.0.0.1:9150".parse().unwrap());
        assert!(matches!(p.auth, SocksAuth::Username { .. }));
        assert_eq!(c.network.socks_mode, SocksMode::Always);
        assert_eq!(c.network.host_mode, HostMode::Onion);
        assert!(c.network.required_host_mode);
        let (c, _) = Config::parse(paths(), b"[SUBSCRIBER]\nsocks_proxy = :9050\n").unwrap();
        assert_eq!(c.network.socks_mode, SocksMode::Onion);
        assert_eq!(c.network.host_mode, HostMode::Public);
        for bad in [
            &b"[SUBSCRIBER]\nsocks_proxy = tor.example:9050\n"[..],
            b"[SUBSCRIBER]\nsocks_mode = sometimes\n",
            b"[SUBSCRIBER]\nhost_mode = tor\n",
            b"[SUBSCRIBER]\nrequired_host_mode = maybe\n",
        ] {
            let e = Config::parse(paths(), bad).unwrap_err();
            assert!(
                e.to_string().starts_with("/c/ntf-server.ini: line 2: ["),
                "{e}"
            );
        }
        // init writes them, commented
        let t = ini_template(443, None, true);
        assert!(t.contains("# socks_proxy = 127.0.0.1:9050"));
    }

    #[test]
    fn postgres_store_keys() {
        let ini = b"[STORE_LOG]\nenable = on\ndb_schema = ntf_2\n\
            db_connection = postgresql://u:secret@db.example/ntf\ndb_pool_size = 3\nlease_ttl = 9\n";
        let (c, w) = Config::parse(paths(), ini).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let StoreMode::Postgres(db) = c.store_mode() else {
            panic!("not PostgreSQL")
        };
        assert_eq!(db.schema, "ntf_2");
        assert_eq!(db.pool_size, 3);
        assert_eq!(db.lease.ttl, Duration::from_secs(9));
        assert!(!format!("{c:?}").contains("secret"));
        // defaults: the reference's schema and pool size
        let (c, _) = Config::parse(
            paths(),
            b"[STORE_LOG]\ndb_connection = host=/run/pg dbname=ntf\n",
        )
        .unwrap();
        let StoreMode::Postgres(db) = c.store_mode() else {
            panic!("not PostgreSQL")
        };
        assert_eq!((db.schema.as_str(), db.pool_size), ("ntf_server", 10));
        // without db_connection: SQLite; with enable = off: memory and a warning
        let (c, _) = Config::parse(paths(), b"[STORE_LOG]\ndb_schema = x\n").unwrap();
        assert!(matches!(c.store_mode(), StoreMode::Sqlite(_)));
        let (c, w) = Config::parse(
            paths(),
            b"[STORE_LOG]\nenable = off\ndb_connection = postgresql://h/d\n",
        )
        .unwrap();
        assert_eq!(c.store_mode(), StoreMode::Memory);
        assert_eq!(w.len(), 1, "{w:?}");
        // bad values: the message never repeats the connection string
        let e = Config::parse(
            paths(),
            b"[STORE_LOG]\ndb_connection = mysql://u:secret@h\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("db_connection") && !e.contains("secret"), "{e}");
        for bad in [
            &b"[STORE_LOG]\ndb_schema = Bad\n"[..],
            b"[STORE_LOG]\ndb_pool_size = 0\n",
            b"[STORE_LOG]\nlease_ttl = 0\n",
        ] {
            assert!(Config::parse(paths(), bad).is_err());
        }
        // init writes the keys, commented
        let t = ini_template(443, None, true);
        for k in [
            "# db_connection = ",
            "# db_schema = ntf_server",
            "# db_pool_size = 10",
            "# lease_ttl = 15",
        ] {
            assert!(t.contains(k), "{k}");
        }
        let (c, _) = Config::parse(paths(), t.as_bytes()).unwrap();
        assert!(matches!(c.store_mode(), StoreMode::Sqlite(_)));
    }
}
