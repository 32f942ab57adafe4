//! Typed `smp-server.ini` (reference §7.2 sections and keys where they apply, plus hush's own
//! `[LIMITS]` and `[METRICS]`, and `store_path`/`sync` in `[STORE_LOG]`).
//!
//! Storage: by default queues and messages live in an embedded SQLite file (`store_path`), or in
//! memory with `enable = off`. With the reference's `[STORE_LOG] store_queues = database` they live
//! in PostgreSQL instead: `db_connection` (default `postgresql://smp@/smp_server_store`),
//! `db_schema` (default `smp_server`, created if missing) and `db_pool_size` (default 10) say where
//! and how ([`DatabaseConfig`]). `store_queues = memory` (the reference's other value) keeps the
//! embedded SQLite store.
//!
//! [`Config::load`] reads the file, [`Config::parse`] parses bytes. Unknown keys and reference keys hush
//! does not implement are warnings ([`ConfigWarning`]); malformed values are errors that name the file,
//! the line and the key ([`ConfigError`]). Nothing here panics on file content.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ini::Ini;
use hush_server_common::config::KnownKeys;

/// Default SMP port (reference §2.1).
pub const DEFAULT_PORT: u16 = 5223;
/// Default control port (reference §7.5).
pub const DEFAULT_CONTROL_PORT: u16 = 5224;
/// Default Prometheus endpoint (hush; loopback only).
pub const DEFAULT_METRICS_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5225);
/// Reference `defMsgExpirationDays`.
pub const DEFAULT_EXPIRE_MESSAGES_DAYS: u32 = 21;
/// Reference `defNtfExpirationHours`.
pub const DEFAULT_EXPIRE_NTFS_HOURS: u32 = 24;
/// Reference `defaultInactiveClientExpiration` ttl, seconds.
pub const DEFAULT_INACTIVE_TTL_SECS: u64 = 21600;
/// Reference `defaultInactiveClientExpiration` checkInterval, seconds.
pub const DEFAULT_INACTIVE_CHECK_SECS: u64 = 3600;
/// Reference `defaultMsgQueueQuota`.
pub const DEFAULT_QUEUE_QUOTA: usize = 128;
/// Reference `tbqSize` (per-client queue of blocks).
pub const DEFAULT_CLIENT_QUEUE_BLOCKS: usize = 128;
/// hush default for concurrent client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Reference default `daily_block_queue_quota`.
pub const DEFAULT_DAILY_BLOCK_QUEUE_QUOTA: i64 = 20;
/// hush default `[TRANSPORT] handshake_timeout`, seconds: TLS handshake + SMP hello exchange of a
/// new connection (the reference allows 60 s for TLS, then 120 s for the hello).
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 15;
/// hush default `[LIMITS] max_connections_per_ip`: 0 = no per-address cap.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 0;
/// hush default `[LIMITS] new_queues_per_minute_per_ip` (per IPv4 address / IPv6 /64, without
/// `create_password`): bounds an attacker who reconnects to get a fresh per-connection budget.
pub const DEFAULT_NEW_QUEUES_PER_MINUTE_PER_IP: u32 = 1000;
/// hush default `[LIMITS] new_queues_per_minute` (per connection, without `create_password`).
pub const DEFAULT_NEW_QUEUES_PER_MINUTE: u32 = 100;
/// hush default `[PROXY] max_relay_links`: outgoing proxy connections to destination relays.
pub const DEFAULT_PROXY_MAX_RELAY_LINKS: usize = 1000;
/// hush default `[PROXY] max_links_per_client`: distinct destination relays one client
/// connection may have this relay keep proxy connections to.
pub const DEFAULT_PROXY_MAX_LINKS_PER_CLIENT: usize = 32;
/// hush default `[PROXY] idle_timeout`, seconds: an unused proxy connection is closed after this.
pub const DEFAULT_PROXY_IDLE_TIMEOUT_SECS: u64 = 300;

/// File names inside the config directory (reference §7.1).
pub const INI_FILE: &str = "smp-server.ini";
pub const CA_CERT_FILE: &str = "ca.crt";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVER_CERT_FILE: &str = "server.crt";
pub const SERVER_KEY_FILE: &str = "server.key";
pub const FINGERPRINT_FILE: &str = "fingerprint";
/// Default store file name inside the data directory.
pub const STORE_FILE: &str = "smp-server-store.db";

/// Where the server keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPaths {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl ServerPaths {
    pub fn ini_file(&self) -> PathBuf {
        self.config_dir.join(INI_FILE)
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.config_dir.join(CA_CERT_FILE)
    }
    pub fn ca_key(&self) -> PathBuf {
        self.config_dir.join(CA_KEY_FILE)
    }
    pub fn server_cert(&self) -> PathBuf {
        self.config_dir.join(SERVER_CERT_FILE)
    }
    pub fn server_key(&self) -> PathBuf {
        self.config_dir.join(SERVER_KEY_FILE)
    }
    pub fn fingerprint_file(&self) -> PathBuf {
        self.config_dir.join(FINGERPRINT_FILE)
    }
}

/// `[AUTH]` passwords; the type lives in `hush-server-common` (shared with ntf-server).
pub use hush_server_common::BasicAuth;
/// `[PROXY] destinations`; the type lives in `hush-server-common` (shared with ntf-server and
/// push-server).
pub use hush_server_common::DestinationPolicy;

/// `[STORE_LOG] sync`: how hard the store pushes writes to disk before the server acknowledges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fsync on every commit (SQLite `synchronous=FULL`): nothing acknowledged is lost on power loss.
    Full,
    /// WAL `synchronous=NORMAL`: survives a process crash; the last commits may be lost on power loss.
    Normal,
}

/// `[INFORMATION]` (reference `ServerPublicInfo`, published only when `source_code` is set) and
/// `[WEB]` (the server information page): the types and readers live in `hush-server-common`
/// (shared with ntf-server).
pub use hush_server_common::web::{HostingType, ServerInformation, WebConfig};

/// `[STORE_LOG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `enable` (default on): persist queues and messages; off = memory only, lost on restart.
    pub enable: bool,
    /// `store_path` (hush): the store file; relative paths are relative to the data directory.
    pub path: PathBuf,
    /// `sync` (hush): `full` (default) or `normal`.
    pub sync: SyncPolicy,
    /// `cache_queues` (hush, SQLite only): queue records kept in memory (65,536; 0 = no cache).
    /// While all queues fit in half of it, all are loaded at start and an unknown id costs the
    /// same as a known one (SECURITY.md).
    pub cache_queues: usize,
    /// `expire_messages_days` (21).
    pub message_expiration: Duration,
    /// `expire_messages_on_start` (on).
    pub expire_messages_on_start: bool,
    /// `expire_messages_on_send` (code default on; `init` writes off).
    pub expire_messages_on_send: bool,
    /// `expire_ntfs_hours` (24).
    pub notification_expiration: Duration,
    /// `store_queues = database`: PostgreSQL instead of SQLite (then `path` and `sync` are unused).
    pub database: Option<DatabaseConfig>,
}

/// Default `[STORE_LOG] cache_queues` (hush-store's own default).
pub const DEFAULT_CACHE_QUEUES: usize = 65_536;

/// Reference default `db_connection`.
pub const DEFAULT_DB_CONNECTION: &str = "postgresql://smp@/smp_server_store";
/// Reference default `db_schema`.
pub const DEFAULT_DB_SCHEMA: &str = "smp_server";
/// Reference default `db_pool_size`.
pub const DEFAULT_DB_POOL_SIZE: usize = 10;

/// `[STORE_LOG] db_connection`, `db_schema`, `db_pool_size` (used with `store_queues = database`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// PostgreSQL connection string (`postgresql://user[:password]@host[:port]/db` or libpq
    /// `key=value` form). May hold a password: never printed.
    pub connection: String,
    /// Schema holding the tables: `[a-z_][a-z0-9_]*`, at most 63 bytes.
    pub schema: String,
    /// Connections in the pool (1..=1000).
    pub pool_size: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            connection: DEFAULT_DB_CONNECTION.into(),
            schema: DEFAULT_DB_SCHEMA.into(),
            pool_size: DEFAULT_DB_POOL_SIZE,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("connection", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// `[AUTH] daily_block_queue_quota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockQuota {
    Unlimited,
    Forbidden,
    PerDay(u32),
}

/// `[AUTH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// `new_queues` (on).
    pub new_queues: bool,
    /// `create_password`: required in `NEW` (and to use this server as a proxy) when set.
    pub create_password: Option<BasicAuth>,
    pub control_port_admin_password: Option<BasicAuth>,
    pub control_port_user_password: Option<BasicAuth>,
    /// `daily_block_queue_quota` (20; 0 = unlimited, -1 = blocking forbidden).
    pub daily_block_queue_quota: BlockQuota,
}

/// `[TRANSPORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// `host`: comma-separated host names, only used to print the server address.
    pub hosts: Vec<String>,
    /// `port`: comma-separated TCP ports to serve SMP on (default 5223). Port 0 = any free port (tests).
    pub ports: Vec<u16>,
    /// `bind` (hush): comma-separated addresses to listen on (default `0.0.0.0`).
    pub bind: Vec<IpAddr>,
    /// `control_port`: loopback control port; absent = no control port.
    pub control_port: Option<u16>,
    /// `log_tls_errors` (off).
    pub log_tls_errors: bool,
    /// `handshake_timeout` (hush, seconds, 15): time a new connection has for the TLS handshake
    /// and the SMP hello exchange together; after it the socket is closed.
    pub handshake_timeout: Duration,
    /// `accept_service_credentials` (on, as the reference): accept v16 service sessions (a client
    /// TLS certificate, `NSUBS`); off: a client declaring a service is refused in the handshake.
    pub accept_service_credentials: bool,
}

impl TransportConfig {
    /// Every (address, port) pair to listen on.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.bind
            .iter()
            .flat_map(|ip| self.ports.iter().map(|p| SocketAddr::new(*ip, *p)))
            .collect()
    }
    /// Loopback address of the control port, if enabled.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control_port
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
    }
}

/// `[INACTIVE_CLIENTS]` when `disconnect = on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InactiveClients {
    /// `ttl` seconds (21600): disconnect clients without subscriptions inactive this long.
    pub ttl: Duration,
    /// `check_interval` seconds (3600).
    pub check_interval: Duration,
}

/// `[LIMITS]` (hush).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `max_connections` (10000): concurrent client connections; more are refused at accept.
    pub max_connections: usize,
    /// `queue_quota` (128): messages stored per queue before `SEND` gets `ERR QUOTA`.
    pub queue_quota: usize,
    /// `client_queue_blocks` (128): blocks queued per client connection (reference `tbqSize`).
    pub client_queue_blocks: usize,
    /// `max_connections_per_ip` (0 = no cap): concurrent connections from one IPv4 address or
    /// one IPv6 /64; more are closed at accept.
    pub max_connections_per_ip: u32,
    /// `new_queues_per_minute` (100; 0 = no limit): queues one connection may create, as a burst
    /// and then per minute, when no `create_password` is set; over it `NEW` gets `ERR QUOTA`.
    pub new_queues_per_minute: u32,
    /// `new_queues_per_minute_per_ip` (1000; 0 = no limit): the same budget for all connections
    /// from one IPv4 address or IPv6 /64 together (reconnecting does not renew it).
    pub new_queues_per_minute_per_ip: u32,
}

/// `[PROXY]`: this relay as an SMP proxy for its clients (`PRXY`/`PFWD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `destinations` (hush; `public`): which destination addresses `PRXY` may make this relay
    /// connect to: `public`, `loopback` (also 127.0.0.0/8, ::1) or `private` (also private and
    /// link-local ranges). A refused destination gets `PROXY BROKER NETWORK`.
    pub destinations: DestinationPolicy,
    /// `max_relay_links` (hush; 1000): open proxy connections to destination relays in total.
    pub max_relay_links: usize,
    /// `max_links_per_client` (hush; 32): distinct destinations with an open proxy connection that
    /// one client connection may use.
    pub max_links_per_client: usize,
    /// `idle_timeout` (hush, seconds; 300): a proxy connection unused this long is closed.
    pub idle_timeout: Duration,
    /// `socks_proxy`, `socks_mode`, `host_mode`, `required_host_mode` (the reference's keys and
    /// defaults: no proxy; with one, used for `.onion` destination hosts only, public hosts
    /// preferred).
    pub network: hush_transport::NetworkConfig,
}

/// `[NOTIFICATIONS]` (hush): when pending `NMSG`s go to the notifier subscriber (the ntf-server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationsConfig {
    /// `delivery = adaptive` (default; `max_delay_ms`, 10): a notification after a quiet period
    /// leaves at once, under load at most `max_delay_ms` after the previous flush so that
    /// notifications share blocks. `delivery = fixed` (`interval_ms`, 1500): every interval, as
    /// the reference does.
    pub delivery: crate::server::notify::NtfDelivery,
}

/// `[METRICS]` (hush): the Prometheus text endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `enable` (off when absent; `init` writes on).
    pub enable: bool,
    /// `address` (127.0.0.1:5225).
    pub address: SocketAddr,
}

/// The whole configuration of one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub paths: ServerPaths,
    pub information: ServerInformation,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub transport: TransportConfig,
    pub inactive_clients: Option<InactiveClients>,
    pub limits: Limits,
    pub proxy: ProxyConfig,
    pub notifications: NotificationsConfig,
    pub metrics: MetricsConfig,
    /// `[WEB]`: the server information page; `None` without `static_path` (no page).
    pub web: Option<WebConfig>,
}

impl Config {
    /// The built-in defaults (what an empty file gives).
    pub fn defaults(paths: ServerPaths) -> Config {
        let store_path = paths.data_dir.join(STORE_FILE);
        Config {
            paths,
            information: ServerInformation::default(),
            store: StoreConfig {
                enable: true,
                path: store_path,
                sync: SyncPolicy::Full,
                cache_queues: DEFAULT_CACHE_QUEUES,
                message_expiration: Duration::from_secs(
                    86400 * u64::from(DEFAULT_EXPIRE_MESSAGES_DAYS),
                ),
                expire_messages_on_start: true,
                expire_messages_on_send: true,
                notification_expiration: Duration::from_secs(
                    3600 * u64::from(DEFAULT_EXPIRE_NTFS_HOURS),
                ),
                database: None,
            },
            auth: AuthConfig {
                new_queues: true,
                create_password: None,
                control_port_admin_password: None,
                control_port_user_password: None,
                daily_block_queue_quota: BlockQuota::PerDay(DEFAULT_DAILY_BLOCK_QUEUE_QUOTA as u32),
            },
            transport: TransportConfig {
                hosts: Vec::new(),
                ports: vec![DEFAULT_PORT],
                bind: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
                control_port: None,
                log_tls_errors: false,
                handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
                accept_service_credentials: true,
            },
            inactive_clients: None,
            limits: Limits {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                queue_quota: DEFAULT_QUEUE_QUOTA,
                client_queue_blocks: DEFAULT_CLIENT_QUEUE_BLOCKS,
                max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
                new_queues_per_minute: DEFAULT_NEW_QUEUES_PER_MINUTE,
                new_queues_per_minute_per_ip: DEFAULT_NEW_QUEUES_PER_MINUTE_PER_IP,
            },
            proxy: ProxyConfig {
                destinations: DestinationPolicy::Public,
                max_relay_links: DEFAULT_PROXY_MAX_RELAY_LINKS,
                max_links_per_client: DEFAULT_PROXY_MAX_LINKS_PER_CLIENT,
                idle_timeout: Duration::from_secs(DEFAULT_PROXY_IDLE_TIMEOUT_SECS),
                network: hush_transport::NetworkConfig::direct(),
            },
            notifications: NotificationsConfig {
                delivery: crate::server::notify::NtfDelivery::DEFAULT,
            },
            metrics: MetricsConfig {
                enable: false,
                address: DEFAULT_METRICS_ADDR,
            },
            web: None,
        }
    }

    /// What `start` prints about the configuration (no secrets).
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        let listen: Vec<String> = self
            .transport
            .listen_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        out.push(format!("listening on {}", listen.join(", ")));
        out.push(if let Some(db) = &self.store.database {
            format!(
                "store: PostgreSQL (schema {}, pool of {} connections)",
                db.schema, db.pool_size
            )
        } else if self.store.enable {
            format!(
                "store: {} (sync {})",
                self.store.path.display(),
                match self.store.sync {
                    SyncPolicy::Full => "full",
                    SyncPolicy::Normal => "normal",
                }
            )
        } else {
            "store: memory only (queues and messages are lost on restart)".to_string()
        });
        out.push(format!(
            "expiring messages after {} days",
            self.store.message_expiration.as_secs() / 86400
        ));
        out.push(match self.inactive_clients {
            Some(i) => format!(
                "expiring clients inactive for {} seconds every {} seconds",
                i.ttl.as_secs(),
                i.check_interval.as_secs()
            ),
            None => "not expiring inactive clients".to_string(),
        });
        out.push(format!(
            "creating new queues {}",
            match (self.auth.new_queues, &self.auth.create_password) {
                (false, _) => "NOT allowed",
                (true, Some(_)) => "requires password",
                (true, None) => "allowed",
            }
        ));
        out.push(format!(
            "connections: at most {}{}, handshake within {} s",
            self.limits.max_connections,
            match self.limits.max_connections_per_ip {
                0 => String::new(),
                n => format!(" ({n} per IPv4 address or IPv6 /64)"),
            },
            self.transport.handshake_timeout.as_secs()
        ));
        out.push(format!(
            "proxy destinations: {} addresses",
            self.proxy.destinations
        ));
        if let Some(d) = self.proxy.network.describe() {
            out.push(format!("proxy to relays through {d}"));
        }
        if let Some(a) = self.transport.control_addr() {
            out.push(format!("control port: {a}"));
        }
        if self.metrics.enable {
            out.push(format!("metrics: http://{}/metrics", self.metrics.address));
        }
        if let Some(w) = &self.web {
            let mut served = Vec::new();
            if let Some(a) = w.http {
                served.push(format!("http on {a}"));
            }
            if let Some(a) = w.https {
                served.push(format!("https on {a}"));
            }
            out.push(format!(
                "server page: {}{}",
                w.static_path.display(),
                if served.is_empty() {
                    String::new()
                } else {
                    format!(" (served by {})", served.join(", "))
                }
            ));
        }
        if self.information.source_code.is_none() {
            out.push(
                "warning: server source code is not specified; add source_code to [INFORMATION]"
                    .to_string(),
            );
        }
        out
    }

    /// Reads and parses `paths.ini_file()`.
    pub fn load(paths: ServerPaths) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let file = paths.ini_file();
        let ini = hush_server_common::config::load(&file)?;
        Config::read(&ini, &file, paths)
    }

    /// Parses the bytes of an INI file; `file` is only used in messages.
    pub fn parse(
        bytes: &[u8],
        file: &Path,
        paths: ServerPaths,
    ) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let ini = hush_server_common::config::parse(bytes, file)?;
        Config::read(&ini, file, paths)
    }

    fn read(
        ini: &Ini,
        file: &Path,
        paths: ServerPaths,
    ) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let mut r = Reader(hush_server_common::config::Reader::new(ini, file));
        let mut cfg = Config::defaults(paths);
        r.check_keys(&KEYS);
        cfg.information = r.information()?;
        cfg.web = r.web(&cfg.paths.data_dir, &cfg.paths.config_dir)?;
        r.read_store(&mut cfg)?;
        r.read_auth(&mut cfg.auth)?;
        r.read_transport(&mut cfg.transport)?;
        r.read_inactive(&mut cfg)?;
        r.read_limits(&mut cfg.limits)?;
        r.read_proxy(&mut cfg.proxy)?;
        r.read_notifications(&mut cfg.notifications)?;
        r.read_metrics(&mut cfg.metrics)?;
        r.check_web_ports(&cfg)?;
        if cfg.transport.control_port.is_some()
            && cfg.auth.control_port_admin_password.is_none()
            && cfg.auth.control_port_user_password.is_none()
        {
            r.warn_at(
                ini.get("TRANSPORT", "control_port"),
                "TRANSPORT",
                "control_port",
                "control port is enabled but [AUTH] has no control_port_admin_password or \
                 control_port_user_password: every command that needs a role will be refused",
            );
        }
        Ok((cfg, r.0.into_warnings()))
    }
}

pub(crate) use hush_server_common::config::read_bounded;
pub use hush_server_common::config::{ConfigError, ConfigWarning};

/// Keys hush understands, per section.
const KNOWN: &[(&str, &[&str])] = &[
    ("INFORMATION", hush_server_common::web::INFORMATION_KEYS),
    (
        "STORE_LOG",
        &[
            "enable",
            "store_path",
            "sync",
            "cache_queues",
            "expire_messages_days",
            "expire_messages_on_start",
            "expire_messages_on_send",
            "expire_ntfs_hours",
            "store_queues",
            "db_connection",
            "db_schema",
            "db_pool_size",
        ],
    ),
    (
        "AUTH",
        &[
            "new_queues",
            "create_password",
            "control_port_admin_password",
            "control_port_user_password",
            "daily_block_queue_quota",
        ],
    ),
    (
        "TRANSPORT",
        &[
            "host",
            "port",
            "bind",
            "control_port",
            "log_tls_errors",
            "handshake_timeout",
            "accept_service_credentials",
        ],
    ),
    ("INACTIVE_CLIENTS", &["disconnect", "ttl", "check_interval"]),
    (
        "LIMITS",
        &[
            "max_connections",
            "queue_quota",
            "client_queue_blocks",
            "max_connections_per_ip",
            "new_queues_per_minute",
            "new_queues_per_minute_per_ip",
        ],
    ),
    (
        "PROXY",
        &[
            "destinations",
            "max_relay_links",
            "max_links_per_client",
            "idle_timeout",
            "socks_proxy",
            "socks_mode",
            "host_mode",
            "required_host_mode",
        ],
    ),
    (
        "NOTIFICATIONS",
        &["delivery", "max_delay_ms", "interval_ms"],
    ),
    ("METRICS", &["enable", "address"]),
    ("WEB", hush_server_common::web::WEB_KEYS),
];

/// Reference keys (and sections) that hush reads past with a specific warning.
const REFERENCE_ONLY: &[(&str, &[&str])] = &[
    (
        "STORE_LOG",
        &[
            "store_messages",
            "db_store_log",
            "db_deleted_ttl",
            "restore_messages",
            "log_stats",
            "prometheus_interval",
        ],
    ),
    ("TRANSPORT", &["websockets"]),
    ("PROXY", &["own_server_domains", "client_concurrency"]),
];
const KEYS: KnownKeys = KnownKeys {
    sections: KNOWN,
    open_sections: &[],
    reference_only: REFERENCE_ONLY,
};

/// A PostgreSQL schema name hush accepts (the same rule as `hush_store::PgStore`).
fn valid_schema(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

/// The shared typed reader ([`hush_server_common::config::Reader`]) with the sections of
/// `smp-server.ini` as methods.
struct Reader<'a>(hush_server_common::config::Reader<'a>);

impl<'a> std::ops::Deref for Reader<'a> {
    type Target = hush_server_common::config::Reader<'a>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reader<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Reader<'_> {
    fn password(&self, key: &'static str) -> Result<Option<BasicAuth>, ConfigError> {
        match self.get("AUTH", key) {
            None => Ok(None),
            Some(e) => BasicAuth::new(&e.value)
                .map(Some)
                // The message never repeats the value: it is a secret.
                .map_err(|reason| self.error_redacted("AUTH", e, reason)),
        }
    }

    fn read_store(&mut self, cfg: &mut Config) -> Result<(), ConfigError> {
        const S: &str = "STORE_LOG";
        let st = &mut cfg.store;
        if let Some(v) = self.on_off(S, "enable")? {
            st.enable = v;
        }
        if let Some(e) = self.get(S, "store_path") {
            if e.value.is_empty() {
                return Err(self.error(S, e, "expected a file path"));
            }
            st.path = cfg.paths.data_dir.join(&e.value);
        }
        if let Some(e) = self.get(S, "sync") {
            st.sync = match e.value.as_str() {
                "full" => SyncPolicy::Full,
                "normal" => SyncPolicy::Normal,
                _ => return Err(self.error(S, e, "expected `full` or `normal`")),
            };
        }
        if let Some(n) = self.number::<usize>(S, "cache_queues", 0, 100_000_000)? {
            st.cache_queues = n;
        }
        if let Some(d) = self.number::<u32>(S, "expire_messages_days", 1, 36500)? {
            st.message_expiration = Duration::from_secs(86400 * u64::from(d));
        }
        if let Some(v) = self.on_off(S, "expire_messages_on_start")? {
            st.expire_messages_on_start = v;
        }
        if let Some(v) = self.on_off(S, "expire_messages_on_send")? {
            st.expire_messages_on_send = v;
        }
        if let Some(h) = self.number::<u32>(S, "expire_ntfs_hours", 1, 24 * 365)? {
            st.notification_expiration = Duration::from_secs(3600 * u64::from(h));
        }
        self.read_database(cfg)
    }

    /// `store_queues`, `db_connection`, `db_schema`, `db_pool_size`.
    fn read_database(&mut self, cfg: &mut Config) -> Result<(), ConfigError> {
        const S: &str = "STORE_LOG";
        let use_db = match self.get(S, "store_queues") {
            None => false,
            Some(e) => {
                match e.value.as_str() {
                    "memory" => false,
                    "database" => {
                        if !cfg.store.enable {
                            return Err(self.error(
                                S,
                                e,
                                "`database` needs `enable = on` (off keeps everything in memory)",
                            ));
                        }
                        true
                    }
                    _ => {
                        return Err(self.error(S, e, "expected `memory` (the embedded SQLite store) or `database` (PostgreSQL)",
                    ));
                    }
                }
            }
        };
        let mut db = DatabaseConfig::default();
        if let Some(e) = self.get(S, "db_connection") {
            let v = e.value.as_str();
            let url = v.starts_with("postgresql://") || v.starts_with("postgres://");
            let key_value = v.contains('=') && !v.contains("://");
            if !(url || key_value) || v.chars().any(|c| c.is_control()) {
                // The value may hold a password: never repeated in the message.
                return Err(self.error_redacted(
                    S,
                    e,
                    "expected a PostgreSQL connection string: \
                     postgresql://user[:password]@host[:port]/database or host=... dbname=...",
                ));
            }
            db.connection = v.to_string();
        }
        if let Some(e) = self.get(S, "db_schema") {
            if !valid_schema(&e.value) {
                return Err(self.error(
                    S,
                    e,
                    "expected a schema name: lowercase letters, digits and _, \
                     not starting with a digit, at most 63 characters",
                ));
            }
            db.schema = e.value.clone();
        }
        if let Some(n) = self.number::<usize>(S, "db_pool_size", 1, 1000)? {
            db.pool_size = n;
        }
        if use_db {
            cfg.store.database = Some(db);
        } else {
            for key in ["db_connection", "db_schema", "db_pool_size"] {
                if let Some(e) = self.get(S, key) {
                    self.warn_at(
                        Some(e),
                        S,
                        key,
                        "used only with `store_queues = database`; ignored",
                    );
                }
            }
        }
        Ok(())
    }

    fn read_auth(&mut self, auth: &mut AuthConfig) -> Result<(), ConfigError> {
        if let Some(v) = self.on_off("AUTH", "new_queues")? {
            auth.new_queues = v;
        }
        auth.create_password = self.password("create_password")?;
        auth.control_port_admin_password = self.password("control_port_admin_password")?;
        auth.control_port_user_password = self.password("control_port_user_password")?;
        if let Some(q) = self.number::<i64>("AUTH", "daily_block_queue_quota", -1, 1_000_000)? {
            auth.daily_block_queue_quota = match q {
                -1 => BlockQuota::Forbidden,
                0 => BlockQuota::Unlimited,
                n => BlockQuota::PerDay(u32::try_from(n).unwrap_or(u32::MAX)),
            };
        }
        Ok(())
    }

    fn read_transport(&mut self, t: &mut TransportConfig) -> Result<(), ConfigError> {
        const S: &str = "TRANSPORT";
        if let Some(e) = self.get(S, "host") {
            let mut hosts = Vec::new();
            for h in e.value.split(',').map(str::trim) {
                if !valid_host(h) {
                    return Err(self.error(
                        S,
                        e,
                        format!(
                            "{h:?} is not a host name or IP address (comma-separated list expected)"
                        ),
                    ));
                }
                hosts.push(h.to_string());
            }
            t.hosts = hosts;
        }
        if let Some(e) = self.get(S, "port") {
            let mut ports = Vec::new();
            for p in e.value.split(',').map(str::trim) {
                let port: u16 =
                    p.parse().map_err(|_| {
                        self.error(S, e, format!(
                            "{p:?} is not a TCP port (comma-separated list of 0..65535 expected)"
                        ),
                    )
                    })?;
                if ports.contains(&port) && port != 0 {
                    return Err(self.error(S, e, format!("port {port} is listed twice")));
                }
                ports.push(port);
            }
            t.ports = ports;
        }
        if let Some(e) = self.get(S, "bind") {
            let mut addrs = Vec::new();
            for a in e.value.split(',').map(str::trim) {
                let ip: IpAddr = a.parse().map_err(|_| {
                    self.error(
                        S,
                        e,
                        format!("{a:?} is not an IP address (comma-separated list expected)"),
                    )
                })?;
                addrs.push(ip);
            }
            t.bind = addrs;
        }
        if let Some(e) = self.get(S, "control_port") {
            let port: u16 = e
                .value
                .parse()
                .map_err(|_| self.error(S, e, "expected a TCP port from 0 to 65535"))?;
            t.control_port = Some(port);
        }
        if let Some(v) = self.on_off(S, "log_tls_errors")? {
            t.log_tls_errors = v;
        }
        if let Some(v) = self.number::<u64>(S, "handshake_timeout", 1, 600)? {
            t.handshake_timeout = Duration::from_secs(v);
        }
        if let Some(v) = self.on_off(S, "accept_service_credentials")? {
            t.accept_service_credentials = v;
        }
        Ok(())
    }

    fn read_inactive(&mut self, cfg: &mut Config) -> Result<(), ConfigError> {
        const S: &str = "INACTIVE_CLIENTS";
        let ttl = self.number::<u64>(S, "ttl", 1, 10 * 365 * 86400)?;
        let check = self.number::<u64>(S, "check_interval", 1, 10 * 365 * 86400)?;
        cfg.inactive_clients = match self.on_off(S, "disconnect")? {
            Some(true) => Some(InactiveClients {
                ttl: Duration::from_secs(ttl.unwrap_or(DEFAULT_INACTIVE_TTL_SECS)),
                check_interval: Duration::from_secs(check.unwrap_or(DEFAULT_INACTIVE_CHECK_SECS)),
            }),
            _ => None,
        };
        Ok(())
    }

    fn read_limits(&mut self, l: &mut Limits) -> Result<(), ConfigError> {
        const S: &str = "LIMITS";
        if let Some(v) = self.number::<usize>(S, "max_connections", 1, 10_000_000)? {
            l.max_connections = v;
        }
        if let Some(v) = self.number::<usize>(S, "queue_quota", 1, 1_000_000)? {
            l.queue_quota = v;
        }
        if let Some(v) = self.number::<usize>(S, "client_queue_blocks", 1, 65_536)? {
            l.client_queue_blocks = v;
        }
        if let Some(v) = self.number::<u32>(S, "max_connections_per_ip", 0, 10_000_000)? {
            l.max_connections_per_ip = v;
        }
        if let Some(v) = self.number::<u32>(S, "new_queues_per_minute", 0, 1_000_000)? {
            l.new_queues_per_minute = v;
        }
        if let Some(v) = self.number::<u32>(S, "new_queues_per_minute_per_ip", 0, 100_000_000)? {
            l.new_queues_per_minute_per_ip = v;
        }
        Ok(())
    }

    fn read_proxy(&mut self, p: &mut ProxyConfig) -> Result<(), ConfigError> {
        const S: &str = "PROXY";
        if let Some(e) = self.get(S, "destinations") {
            p.destinations =
                DestinationPolicy::parse(&e.value).map_err(|reason| self.error(S, e, reason))?;
        }
        if let Some(v) = self.number::<usize>(S, "max_relay_links", 1, 1_000_000)? {
            p.max_relay_links = v;
        }
        if let Some(v) = self.number::<usize>(S, "max_links_per_client", 1, 100_000)? {
            p.max_links_per_client = v;
        }
        if let Some(v) = self.number::<u64>(S, "idle_timeout", 1, 30 * 86400)? {
            p.idle_timeout = Duration::from_secs(v);
        }
        if let Some(e) = self.get(S, "socks_proxy") {
            // The message never repeats the value: it may hold a SOCKS password.
            p.network.socks_proxy = Some(
                hush_transport::SocksProxy::parse(&e.value)
                    .map_err(|reason| self.error_redacted(S, e, reason))?,
            );
        }
        if let Some(e) = self.get(S, "socks_mode") {
            p.network.socks_mode = hush_transport::SocksMode::parse(&e.value)
                .map_err(|reason| self.error(S, e, reason))?;
        }
        if let Some(e) = self.get(S, "host_mode") {
            p.network.host_mode = hush_transport::HostMode::parse(&e.value)
                .map_err(|reason| self.error(S, e, reason))?;
        }
        if let Some(v) = self.on_off(S, "required_host_mode")? {
            p.network.required_host_mode = v;
        }
        Ok(())
    }

    fn read_notifications(&mut self, n: &mut NotificationsConfig) -> Result<(), ConfigError> {
        use crate::server::notify::NtfDelivery;
        const S: &str = "NOTIFICATIONS";
        let fixed = match self.get(S, "delivery") {
            None => false,
            Some(e) => match e.value.trim() {
                "adaptive" => false,
                "fixed" => true,
                _ => {
                    return Err(self.error(
                        S,
                        e,
                        "expected adaptive (at once when quiet, batched under load) or fixed \
                         (every interval_ms, as the reference)",
                    ));
                }
            },
        };
        let max_delay = self.number::<u64>(S, "max_delay_ms", 1, 10_000)?;
        let interval = self.number::<u64>(S, "interval_ms", 10, 600_000)?;
        n.delivery = if fixed {
            NtfDelivery::Fixed {
                interval: Duration::from_millis(interval.unwrap_or(1500)),
            }
        } else {
            match max_delay {
                Some(ms) => NtfDelivery::Adaptive {
                    max_delay: Duration::from_millis(ms),
                },
                None => NtfDelivery::DEFAULT,
            }
        };
        Ok(())
    }

    /// The reference can serve `[WEB] https` on an SMP port (told apart by ALPN); hush serves the
    /// page on its own ports only, so a port shared with `[TRANSPORT] port` is a clear error here
    /// instead of "address in use" at start.
    fn check_web_ports(&self, cfg: &Config) -> Result<(), ConfigError> {
        let Some(w) = &cfg.web else {
            return Ok(());
        };
        for (key, addr) in [("http", w.http), ("https", w.https)] {
            if let Some(a) = addr
                && a.port() != 0
                && cfg.transport.ports.contains(&a.port())
                && let Some(e) = self.get("WEB", key)
            {
                return Err(self.error(
                    "WEB",
                    e,
                    "is also an SMP port in [TRANSPORT] port: hush serves the page on its own \
                     port (the reference's HTTPS on the SMP port is not supported)",
                ));
            }
        }
        Ok(())
    }

    fn read_metrics(&mut self, m: &mut MetricsConfig) -> Result<(), ConfigError> {
        const S: &str = "METRICS";
        if let Some(v) = self.on_off(S, "enable")? {
            m.enable = v;
        }
        if let Some(e) = self.get(S, "address") {
            m.address = e
                .value
                .parse()
                .map_err(|_| self.error(S, e, "expected IP:PORT, e.g. 127.0.0.1:5225"))?;
            if !m.address.ip().is_loopback() {
                self.warn_at(
                    Some(e),
                    S,
                    "address",
                    "metrics are served without authentication on a non-loopback address",
                );
            }
        }
        Ok(())
    }
}

/// Host names as the reference accepts them in server addresses (§2.1): no whitespace and none of
/// `:#,;/@` outside brackets; `[v6]` and bare IPv6 are allowed.
pub fn valid_host(h: &str) -> bool {
    if h.is_empty() || h.len() > 255 {
        return false;
    }
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    if h.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    h.chars().all(|c| {
        c.is_ascii_graphic() && !matches!(c, ':' | '#' | ',' | ';' | '/' | '@' | '[' | ']')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(ini: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let paths = ServerPaths {
            config_dir: "/cfg".into(),
            data_dir: "/data".into(),
        };
        Config::parse(ini.as_bytes(), Path::new("smp-server.ini"), paths)
    }

    fn value_error(ini: &str) -> (usize, String, String) {
        match parse(ini) {
            Err(e @ ConfigError::Value { .. }) => {
                let msg = e.to_string();
                let ConfigError::Value { line, key, .. } = e else {
                    unreachable!()
                };
                (line, key.into(), msg)
            }
            other => panic!("expected a value error for {ini:?}, got {other:?}"),
        }
    }

    #[test]
    fn database_store_with_defaults() {
        let (c, w) = parse("[STORE_LOG]\nstore_queues = database\n").unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.store.database,
            Some(DatabaseConfig {
                connection: "postgresql://smp@/smp_server_store".into(),
                schema: "smp_server".into(),
                pool_size: 10,
            })
        );
        assert!(c.summary().iter().any(|l| l.contains("PostgreSQL")));
    }

    #[test]
    fn database_store_with_every_key() {
        let ini = "[STORE_LOG]\nstore_queues = database\n\
                   db_connection = postgres://u:secret@db.example:5433/x\n\
                   db_schema = relay_1\ndb_pool_size = 3\n";
        let (c, w) = parse(ini).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let db = c.store.database.clone().unwrap();
        assert_eq!(db.connection, "postgres://u:secret@db.example:5433/x");
        assert_eq!(db.schema, "relay_1");
        assert_eq!(db.pool_size, 3);
        // the password is never printed
        assert!(!format!("{c:?}").contains("secret"));
        assert!(!c.summary().join("\n").contains("secret"));
        // libpq key=value form
        let (c, _) = parse(
            "[STORE_LOG]\nstore_queues = database\ndb_connection = host=/run/pg dbname=smp\n",
        )
        .unwrap();
        assert_eq!(
            c.store.database.unwrap().connection,
            "host=/run/pg dbname=smp"
        );
    }

    #[test]
    fn memory_or_absent_keeps_sqlite_and_warns_about_unused_db_keys() {
        let (c, w) = parse("").unwrap();
        assert_eq!(c.store.database, None);
        let (c, w2) = parse("[STORE_LOG]\nstore_queues = memory\n").unwrap();
        assert_eq!(c.store.database, None);
        assert!(w.is_empty() && w2.is_empty(), "{w:?} {w2:?}");
        let (c, w) = parse("[STORE_LOG]\nstore_queues = memory\n\ndb_schema = other\n").unwrap();
        assert_eq!(c.store.database, None);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, 4);
        assert_eq!(w[0].key.as_deref(), Some("db_schema"));
        assert!(w[0].message.contains("store_queues = database"));
        // no longer "reference key hush does not implement"
        assert!(!w[0].message.contains("does not implement"));
    }

    #[test]
    fn bad_database_values_name_line_and_key() {
        let cases: &[(&str, usize, &str)] = &[
            ("[STORE_LOG]\nstore_queues = postgres\n", 2, "store_queues"),
            ("[STORE_LOG]\nstore_queues =\n", 2, "store_queues"),
            (
                "[STORE_LOG]\nenable = off\nstore_queues = database\n",
                3,
                "store_queues",
            ),
            (
                "[STORE_LOG]\n\ndb_connection = mysql://x@y/z\n",
                3,
                "db_connection",
            ),
            ("[STORE_LOG]\ndb_connection =\n", 2, "db_connection"),
            ("[STORE_LOG]\ndb_schema = Smp\n", 2, "db_schema"),
            ("[STORE_LOG]\ndb_schema = 1smp\n", 2, "db_schema"),
            ("[STORE_LOG]\ndb_schema = a;drop\n", 2, "db_schema"),
            ("[STORE_LOG]\ndb_schema =\n", 2, "db_schema"),
            ("[STORE_LOG]\ndb_pool_size = 0\n", 2, "db_pool_size"),
            ("[STORE_LOG]\ndb_pool_size = -1\n", 2, "db_pool_size"),
            ("[STORE_LOG]\ndb_pool_size = ten\n", 2, "db_pool_size"),
            ("[STORE_LOG]\ndb_pool_size = 1001\n", 2, "db_pool_size"),
        ];
        for (ini, line, key) in cases {
            let (l, k, msg) = value_error(ini);
            assert_eq!((l, k.as_str()), (*line, *key), "{ini:?}: {msg}");
            assert!(msg.contains(&format!("line {line}")), "{msg}");
            assert!(msg.contains(key), "{msg}");
        }
        let long = format!("[STORE_LOG]\ndb_schema = {}\n", "a".repeat(64));
        assert_eq!(value_error(&long).1, "db_schema");
        let ok = format!("[STORE_LOG]\ndb_schema = {}\n", "a".repeat(63));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn abuse_limit_keys_defaults_and_values() {
        let (c, w) = parse("").unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert!(
            c.transport.accept_service_credentials,
            "on by default, as the reference"
        );
        assert_eq!(c.transport.handshake_timeout, Duration::from_secs(15));
        assert_eq!(c.limits.max_connections_per_ip, 0);
        assert_eq!(c.limits.new_queues_per_minute, 100);
        assert_eq!(c.proxy.destinations, DestinationPolicy::Public);
        assert_eq!(c.proxy.max_relay_links, 1000);
        assert_eq!(c.proxy.max_links_per_client, 32);
        assert_eq!(c.proxy.idle_timeout, Duration::from_secs(300));
        let ini = "[TRANSPORT]\nhandshake_timeout = 5\naccept_service_credentials = off\n\
                   [LIMITS]\nmax_connections_per_ip = 50\n\
                   new_queues_per_minute = 0\n[PROXY]\ndestinations = loopback\n\
                   max_relay_links = 7\nmax_links_per_client = 3\nidle_timeout = 60\n\
                   client_concurrency = 16\n";
        let (c, w) = parse(ini).unwrap();
        assert_eq!(c.transport.handshake_timeout, Duration::from_secs(5));
        assert!(!c.transport.accept_service_credentials);
        assert_eq!(c.limits.max_connections_per_ip, 50);
        assert_eq!(c.limits.new_queues_per_minute, 0);
        assert_eq!(c.proxy.destinations, DestinationPolicy::Loopback);
        assert_eq!(c.proxy.max_relay_links, 7);
        assert_eq!(c.proxy.max_links_per_client, 3);
        assert_eq!(c.proxy.idle_timeout, Duration::from_secs(60));
        // a reference [PROXY] key hush does not implement: a warning, not an error
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].key.as_deref(), Some("client_concurrency"));
        let text = c.summary().join("\n");
        assert!(text.contains("50 per IPv4 address"), "{text}");
        assert!(text.contains("proxy destinations: loopback"), "{text}");
    }

    #[test]
    fn proxy_socks_keys() {
        use hush_transport::{HostMode, SocksMode};
        let (c, _) = parse("").unwrap();
        assert_eq!(c.proxy.network, hush_transport::NetworkConfig::direct());
        let ini = "[PROXY]\nsocks_proxy = @127.0.0.1:9150\nsocks_mode = always\n\
                   host_mode = onion\nrequired_host_mode = on\n";
        let (c, w) = parse(ini).unwrap();
        assert!(w.is_empty(), "{w:?}");
        let p = c.proxy.network.socks_proxy.as_ref().unwrap();
        assert_eq!(p.addr, "127.0.0.1:9150".parse().unwrap());
        assert_eq!(p.auth, hush_transport::SocksAuth::Null);
        assert_eq!(c.proxy.network.socks_mode, SocksMode::Always);
        assert_eq!(c.proxy.network.host_mode, HostMode::Onion);
        assert!(c.proxy.network.required_host_mode);
        let text = c.summary().join("\n");
        assert!(
            text.contains("proxy to relays through SOCKS5 proxy 127.0.0.1:9150 (no credentials)"),
            "{text}"
        );
        // the reference's defaults with only socks_proxy: onion hosts only, public preferred
        let (c, _) = parse("[PROXY]\nsocks_proxy = :9050\n").unwrap();
        assert_eq!(c.proxy.network.socks_mode, SocksMode::Onion);
        assert_eq!(c.proxy.network.host_mode, HostMode::Public);
        for (ini, key) in [
            ("[PROXY]\nsocks_proxy = tor.example:9050\n", "socks_proxy"),
            ("[PROXY]\nsocks_mode = often\n", "socks_mode"),
            ("[PROXY]\nhost_mode = tor\n", "host_mode"),
            (
                "[PROXY]\nrequired_host_mode = yes please\n",
                "required_host_mode",
            ),
        ] {
            let e = parse(ini).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("line 2"), "{e}");
        }
    }

    #[test]
    fn bad_abuse_limit_values_name_line_and_key() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "[TRANSPORT]\nhandshake_timeout = 0\n",
                2,
                "handshake_timeout",
                "1 to 600",
            ),
            (
                "[TRANSPORT]\nhandshake_timeout = 601\n",
                2,
                "handshake_timeout",
                "1 to 600",
            ),
            (
                "[TRANSPORT]\nhandshake_timeout = 1.5\n",
                2,
                "handshake_timeout",
                "whole number",
            ),
            (
                "[LIMITS]\nmax_connections_per_ip = -1\n",
                2,
                "max_connections_per_ip",
                "whole number",
            ),
            (
                "[LIMITS]\nnew_queues_per_minute = many\n",
                2,
                "new_queues_per_minute",
                "whole number",
            ),
            (
                "[PROXY]\ndestinations = all\n",
                2,
                "destinations",
                "not a destination policy",
            ),
            (
                "[PROXY]\n\nmax_relay_links = 0\n",
                3,
                "max_relay_links",
                "1 to",
            ),
            (
                "[PROXY]\nmax_links_per_client = 0\n",
                2,
                "max_links_per_client",
                "1 to",
            ),
            ("[PROXY]\nidle_timeout = 0\n", 2, "idle_timeout", "1 to"),
        ];
        for (ini, line, key, why) in cases {
            let (l, k, msg) = value_error(ini);
            assert_eq!((l, k.as_str()), (*line, *key), "{ini:?}: {msg}");
            assert!(msg.contains(why), "{msg}");
        }
    }

    #[test]
    fn bad_db_connection_is_not_repeated() {
        let (_, _, msg) = value_error("[STORE_LOG]\ndb_connection = mysql://u:hunter2@h/d\n");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn cache_queues_is_read_and_bounded() {
        let (c, _) = parse("").unwrap();
        assert_eq!(c.store.cache_queues, DEFAULT_CACHE_QUEUES);
        let (c, _) = parse("[STORE_LOG]\ncache_queues = 0\n").unwrap();
        assert_eq!(c.store.cache_queues, 0);
        let (c, _) = parse("[STORE_LOG]\ncache_queues = 2000000\n").unwrap();
        assert_eq!(c.store.cache_queues, 2_000_000);
        let (l, k, _) = value_error("[STORE_LOG]\ncache_queues = lots\n");
        assert_eq!((l, k.as_str()), (2, "cache_queues"));
        let (l, k, _) = value_error("[STORE_LOG]\ncache_queues = 100000001\n");
        assert_eq!((l, k.as_str()), (2, "cache_queues"));
    }
}
