//! File work behind `smp-server init`, `cert`, `delete` and the fingerprint check of `start`
//! (reference §7.1).
//!
//! `init` creates the offline CA (`ca.crt`, `ca.key`), the online TLS certificate signed by it
//! (`server.crt`, `server.key`; keys 0600 from creation), the `fingerprint` file (base64url of the SHA-256 of
//! the CA certificate DER, one line) and a commented `smp-server.ini`.

use hush_server_common::private::write_private;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hush_crypto::{CertKey, SignAlgorithm};
use rand::RngCore;

use crate::config::{
    self, BasicAuth, CA_CERT_FILE, CA_KEY_FILE, DEFAULT_CONTROL_PORT, FINGERPRINT_FILE, INI_FILE,
    SERVER_CERT_FILE, SERVER_KEY_FILE, ServerPaths,
};

/// Common name of the offline CA certificate (as the reference's `openssl_ca.conf`).
pub const CA_COMMON_NAME: &str = "SMP server CA";

/// `--password` / `--no-password` choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordChoice {
    /// 32 random bytes, base64url (the reference default).
    Random,
    /// No password: anyone may create queues (recommended for public servers).
    None,
    Given(BasicAuth),
}

/// Everything `init` needs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub paths: ServerPaths,
    /// Server FQDN (certificate CN and printed address).
    pub fqdn: Option<String>,
    /// Server IP (used when there is no FQDN).
    pub ip: IpAddr,
    pub password: PasswordChoice,
    pub sign_algorithm: SignAlgorithm,
    pub port: u16,
    /// Enable the control port on this port, with random admin and user passwords.
    pub control_port: Option<u16>,
    /// `[STORE_LOG] enable`.
    pub store_log: bool,
    /// Overwrite an existing configuration.
    pub force: bool,
}

/// What `init` produced.
#[derive(Debug, Clone)]
pub struct InitOutcome {
    pub fingerprint: [u8; 32],
    pub create_password: Option<BasicAuth>,
    /// `smp://…` address to give to clients.
    pub address: String,
    pub ini_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{} already exists: the server is already initialized (use --force to overwrite it, or `smp-server delete`)",
        .0.display()
    )]
    AlreadyInitialized(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("certificate: {0}")]
    Crypto(#[from] hush_crypto::CryptoError),
    #[error("{}: {reason}", path.display())]
    BadFile { path: PathBuf, reason: String },
    #[error(
        "the CA certificate {} does not match the saved fingerprint {}: refusing to start \
         (the server identity would change; restore the original files)",
        ca.display(), fingerprint_file.display()
    )]
    FingerprintMismatch {
        ca: PathBuf,
        fingerprint_file: PathBuf,
    },
    #[error("invalid host {0:?}")]
    BadHost(String),
    #[error("{0}")]
    Password(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The text of the `fingerprint` file and of the address: base64url with padding (reference
/// `strEncode`).
pub fn fingerprint_text(fp: &[u8; 32]) -> String {
    hush_proto::encoding::base64url_encode(fp)
}

/// `smp://<fingerprint>[:password]@host1[,host2…][:port]`, port omitted when it is 5223, the
/// placeholder `<hostnames>` when there is no host (reference `printServiceInfo`, §2.1).
pub fn server_address(
    fingerprint: &[u8; 32],
    password: Option<&BasicAuth>,
    hosts: &[String],
    port: u16,
) -> String {
    hush_proto::address::render_server_address_with_auth(
        fingerprint,
        password.map(BasicAuth::as_proto),
        hosts,
        Some(port),
    )
}

fn random_base64url(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hush_proto::encoding::base64url_encode(&b)
}

/// Random `create_password`: 32 random bytes, base64url (44 characters, reference `randomBase64 32`).
pub fn random_password() -> Result<BasicAuth, InitError> {
    BasicAuth::new(&random_base64url(32)).map_err(InitError::Password)
}

/// Random control-port password: 18 random bytes, base64url (24 characters, as the reference).
fn random_control_password() -> Result<BasicAuth, InitError> {
    BasicAuth::new(&random_base64url(18)).map_err(InitError::Password)
}

fn save_cert_key(ck: &CertKey, cert: &Path, key: &Path) -> Result<(), InitError> {
    let (cert_pem, key_pem) = ck.to_pem()?;
    std::fs::write(cert, cert_pem.as_bytes()).map_err(io_err(cert))?;
    // 0600 from creation, fsync'd, atomically replaced.
    write_private(key, key_pem.as_bytes()).map_err(io_err(key))
}

/// `smp-server init`.
pub fn init(opts: &InitOptions) -> Result<InitOutcome, InitError> {
    let paths = &opts.paths;
    let ini_file = paths.ini_file();
    if !opts.force {
        for f in [
            ini_file.clone(),
            paths.ca_cert(),
            paths.ca_key(),
            paths.fingerprint_file(),
        ] {
            if f.exists() {
                return Err(InitError::AlreadyInitialized(f));
            }
        }
    }
    if let Some(h) = opts.fqdn.as_ref().filter(|h| !config::valid_host(h)) {
        return Err(InitError::BadHost(h.clone()));
    }
    // A new configuration directory is private (an existing one is the operator's: the keys and
    // the ini in it are 0600 either way); the data directory is private, tightened if it exists.
    if !paths.config_dir.is_dir() {
        hush_server_common::private::create_private_dir(&paths.config_dir)
            .map_err(io_err(&paths.config_dir))?;
    }
    hush_server_common::private_start::prepare_private_dir(&paths.data_dir, "relay data directory")
        .map_err(io_err(&paths.data_dir))?;

    let ip_text = opts.ip.to_string();
    let common_name = opts.fqdn.clone().unwrap_or_else(|| ip_text.clone());
    let ca = hush_crypto::generate_ca(opts.sign_algorithm, CA_COMMON_NAME)?;
    let online = hush_crypto::generate_online_cert(&ca, opts.sign_algorithm, &common_name)?;
    save_cert_key(&ca, &paths.ca_cert(), &paths.ca_key())?;
    save_cert_key(&online, &paths.server_cert(), &paths.server_key())?;
    let fp = hush_crypto::fingerprint(&ca.cert_der);
    let fp_file = paths.fingerprint_file();
    std::fs::write(&fp_file, format!("{}\n", fingerprint_text(&fp))).map_err(io_err(&fp_file))?;

    let create_password = match &opts.password {
        PasswordChoice::Random => Some(random_password()?),
        PasswordChoice::None => None,
        PasswordChoice::Given(p) => Some(p.clone()),
    };
    let control = match opts.control_port {
        Some(p) => Some((p, random_control_password()?, random_control_password()?)),
        None => None,
    };
    let hosts: Vec<String> = match (&opts.fqdn, opts.ip) {
        (Some(f), _) => vec![f.clone()],
        (None, ip) if ip.is_loopback() => Vec::new(),
        // IPv6 without brackets, as the reference prints hosts.
        (None, ip) => vec![ip.to_string()],
    };
    let text = ini_content(&IniTemplate {
        hosts: &hosts,
        port: opts.port,
        create_password: create_password.as_ref(),
        control: control.as_ref().map(|(p, a, u)| (*p, a, u)),
        store_log: opts.store_log,
    });
    // The ini holds passwords: keep it private like the keys.
    write_private(&ini_file, text.as_bytes()).map_err(io_err(&ini_file))?;
    let address = server_address(&fp, create_password.as_ref(), &hosts, opts.port);
    Ok(InitOutcome {
        fingerprint: fp,
        create_password,
        address,
        ini_file,
    })
}

/// Inputs of the generated `smp-server.ini`.
pub struct IniTemplate<'a> {
    pub hosts: &'a [String],
    pub port: u16,
    pub create_password: Option<&'a BasicAuth>,
    /// (control port, admin password, user password).
    pub control: Option<(u16, &'a BasicAuth, &'a BasicAuth)>,
    pub store_log: bool,
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The commented `smp-server.ini` that `init` writes.
pub fn ini_content(t: &IniTemplate<'_>) -> String {
    let mut s = String::with_capacity(4096);
    let host = if t.hosts.is_empty() {
        "<hostnames>".to_string()
    } else {
        t.hosts.join(",")
    };
    let _ = write!(
        s,
        "\
# smp-server configuration (hush). Sections and keys follow the reference SimpleX SMP server;
# [LIMITS], [METRICS], [STORE_LOG] store_path/sync, [TRANSPORT] bind/handshake_timeout and the
# [PROXY] and [NOTIFICATIONS] keys are hush additions.
# Syntax: `key = value`; lines starting with # or ; are comments; no comments after a value.

[INFORMATION]
# AGPLv3 requires that you publish the source code of the server you run, including your changes.
# Published on the server information page ([WEB] static_path, below) once source_code is set;
# without source_code or without [WEB] it is not published anywhere.
# source_code = https://example.com/your/hush/fork
# usage_conditions =
# condition_amendments =
# server_country = (ISO 3166 2-letter code)
# operator =
# operator_country =
# website =
# admin_email =
# complaints_email =
# hosting =
# hosting_country =
# hosting_type = virtual | dedicated | colocation | owned

[STORE_LOG]
# on: queues and messages are stored on disk and survive restarts; off: memory only.
enable = {store_log}

# Store file (relative paths are relative to the data directory).
# store_path = {store_file}

# Disk sync policy: `full` (fsync before acknowledging; survives power loss) or `normal`
# (survives a crash of the server process; the last writes may be lost on power loss).
sync = full

# Queue records kept in memory (store file only; 0 = none). While all queues fit in half of it,
# all are loaded at start, and looking up an unknown id costs the same as a known one.
# cache_queues = 65536

# Where queues and messages are kept: `memory` (the default: the embedded store file above)
# or `database` (PostgreSQL; store_path and sync are then unused). With `database`:
# db_connection is the PostgreSQL connection string (it may hold a password: keep this file
# private), db_schema the schema holding the tables (created if missing; lowercase letters,
# digits and _), db_pool_size the number of connections. The server refuses to start if it
# cannot reach the database.
# store_queues = memory
# db_connection = postgresql://smp@/smp_server_store
# db_schema = smp_server
# db_pool_size = 10

# Messages and notifications expiration periods.
expire_messages_days = {days}
expire_messages_on_start = on
expire_messages_on_send = off
expire_ntfs_hours = {ntf_hours}

[AUTH]
# Set new_queues to off to prohibit creating new queues (e.g. to decommission the server).
new_queues = on

# With create_password set, clients need it to create queues (and to use this server as a proxy).
# It is part of the server address given to clients: smp://fingerprint:password@host
# Share it only with the users who may create queues on this server.
",
        store_log = on_off(t.store_log),
        store_file = config::STORE_FILE,
        days = config::DEFAULT_EXPIRE_MESSAGES_DAYS,
        ntf_hours = config::DEFAULT_EXPIRE_NTFS_HOURS,
    );
    match t.create_password {
        Some(p) => {
            let _ = writeln!(s, "create_password = {}", p.as_str());
        }
        None => s.push_str(
            "# create_password = (printable ASCII without whitespace, '@', ':' and '/')\n",
        ),
    }
    s.push_str(
        "\n# Control port passwords: `auth <password>` on the control port selects the role.\n",
    );
    match t.control {
        Some((_, admin, user)) => {
            let _ = writeln!(s, "control_port_admin_password = {}", admin.as_str());
            let _ = writeln!(s, "control_port_user_password = {}", user.as_str());
        }
        None => s.push_str("# control_port_admin_password =\n# control_port_user_password =\n"),
    }
    let _ = write!(
        s,
        "
# Queues that may be blocked via the control port per day (0 = no limit, -1 = blocking forbidden).
# daily_block_queue_quota = {quota}

[TRANSPORT]
# host is only used to print the server address.
host = {host}
# Ports to serve SMP on (comma-separated).
port = {port}
# Addresses to listen on (comma-separated, hush).
# bind = 0.0.0.0
log_tls_errors = off
# Seconds a new connection has to complete the TLS handshake and the SMP hello (1..600, hush;
# the reference allows 60 + 120 s).
handshake_timeout = {hs_timeout}
# Accept service sessions (v16 client certificates: a notification server subscribes all its
# notifier queues with one NSUBS).
# accept_service_credentials = on
",
        quota = config::DEFAULT_DAILY_BLOCK_QUEUE_QUOTA,
        port = t.port,
        hs_timeout = config::DEFAULT_HANDSHAKE_TIMEOUT_SECS,
    );
    s.push_str("# Control port (always bound to 127.0.0.1).\n");
    match t.control {
        Some((p, _, _)) => {
            let _ = writeln!(s, "control_port = {p}");
        }
        None => {
            let _ = writeln!(s, "# control_port = {DEFAULT_CONTROL_PORT}");
        }
    }
    let _ = write!(
        s,
        "
[INACTIVE_CLIENTS]
# Disconnect clients without subscriptions that were inactive for ttl seconds, checking every
# check_interval seconds.
disconnect = on
ttl = {ttl}
check_interval = {check}

[LIMITS]
# Concurrent client connections.
max_connections = {maxc}
# Concurrent connections from one IPv4 address or one IPv6 /64 (0 = no cap, the default).
# Many users may share one address behind carrier-grade NAT: keep it generous, e.g. 100.
# max_connections_per_ip = 0
# Without create_password: queues one connection may create at once and then per minute
# (more get ERR QUOTA; 0 = no limit).
new_queues_per_minute = {newq}
# The same for all connections from one IPv4 address or IPv6 /64 together (reconnecting does not
# renew it; generous because many users may share one address behind carrier NAT).
new_queues_per_minute_per_ip = {newq_ip}
# Messages stored per queue before senders get ERR QUOTA.
queue_quota = {quota}
# Blocks queued for sending per client connection.
client_queue_blocks = {blocks}

[PROXY]
# Which destination relays PRXY may make this server connect to: public (public addresses only),
# loopback (also 127.0.0.0/8 and ::1) or private (also private and link-local ranges). Refused
# destinations get PROXY BROKER NETWORK, as unreachable ones do.
destinations = public
# Open proxy connections to destination relays, in total and per client connection (distinct
# destinations); an unused proxy connection is closed after idle_timeout seconds.
max_relay_links = {links}
max_links_per_client = {links_client}
idle_timeout = {proxy_idle}
# SOCKS5 proxy (e.g. Tor) for connections to destination relays: [user:password@]ip:port
# (default port 9050; without credentials each destination gets its own isolation credentials,
# `@ip:port` sends none). socks_mode: onion (default: only for .onion hosts) or always.
# host_mode: public (default) or onion (the .onion host of a relay with several hosts, when
# socks_proxy is set); required_host_mode = on: no fallback to another host.
# socks_proxy = 127.0.0.1:9050
# socks_mode = onion
# host_mode = public
# required_host_mode = off

[NOTIFICATIONS]
# When pending notifications (NMSG) go to the notification server. adaptive: at once after a quiet
# period; under load at most max_delay_ms after the previous flush, so that they share blocks.
# fixed: every interval_ms whether or not any are pending (the reference: 1500).
delivery = adaptive
max_delay_ms = 10
# interval_ms = 1500

[METRICS]
# Prometheus text endpoint: GET http://<address>/metrics (no authentication: keep it on loopback).
enable = on
address = {metrics}

[WEB]
# The server information page: [INFORMATION] (once source_code is set), the server address
# (without create_password) and statistics, as static HTML + CSS written to static_path at start
# (relative paths are relative to the data directory) and updated every refresh_interval seconds.
# Serve that directory with your own web server, or set http and/or https (a port, or IP:PORT).
# HTTPS uses this server's own TLS certificate (server.crt, signed by ca.crt: browsers warn about
# it) unless cert and key name PEM files (e.g. from Let's Encrypt; relative to this directory).
# static_path = www
# http = 8000
# https = 8443
# cert = web.crt
# key = web.key
# refresh_interval = 60
",
        ttl = config::DEFAULT_INACTIVE_TTL_SECS,
        check = config::DEFAULT_INACTIVE_CHECK_SECS,
        maxc = config::DEFAULT_MAX_CONNECTIONS,
        quota = config::DEFAULT_QUEUE_QUOTA,
        blocks = config::DEFAULT_CLIENT_QUEUE_BLOCKS,
        newq = config::DEFAULT_NEW_QUEUES_PER_MINUTE,
        newq_ip = config::DEFAULT_NEW_QUEUES_PER_MINUTE_PER_IP,
        links = config::DEFAULT_PROXY_MAX_RELAY_LINKS,
        links_client = config::DEFAULT_PROXY_MAX_LINKS_PER_CLIENT,
        proxy_idle = config::DEFAULT_PROXY_IDLE_TIMEOUT_SECS,
        metrics = config::DEFAULT_METRICS_ADDR,
    );
    s
}

/// Reads the `fingerprint` file and recomputes the CA fingerprint from `ca.crt`; they must match.
/// Returns the fingerprint.
pub fn check_fingerprint(paths: &ServerPaths) -> Result<[u8; 32], InitError> {
    let fp_file = paths.fingerprint_file();
    let saved = config::read_bounded(&fp_file, 1024).map_err(io_err(&fp_file))?;
    let saved = std::str::from_utf8(&saved)
        .map_err(|_| InitError::BadFile {
            path: fp_file.clone(),
            reason: "not valid UTF-8".into(),
        })?
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let ca_file = paths.ca_cert();
    let ca = ca_der(&ca_file)?;
    let fp = hush_crypto::fingerprint(&ca);
    if saved != fingerprint_text(&fp) {
        return Err(InitError::FingerprintMismatch {
            ca: ca_file,
            fingerprint_file: fp_file,
        });
    }
    Ok(fp)
}

fn ca_der(ca_file: &Path) -> Result<Vec<u8>, InitError> {
    let chain = hush_crypto::cert::load_cert_chain_pem(ca_file).map_err(|e| match e {
        hush_crypto::CryptoError::Io(source) => InitError::Io {
            path: ca_file.to_path_buf(),
            source,
        },
        other => InitError::BadFile {
            path: ca_file.to_path_buf(),
            reason: other.to_string(),
        },
    })?;
    match <[Vec<u8>; 1]>::try_from(chain) {
        Ok([der]) => Ok(der),
        Err(_) => Err(InitError::BadFile {
            path: ca_file.to_path_buf(),
            reason: "expected exactly one certificate".into(),
        }),
    }
}

/// `smp-server cert`: a new online certificate and key signed by the existing CA (`ca.crt` + `ca.key`).
/// The CA, and so the fingerprint, stay the same. `alg` and `common_name` default to those of the
/// current `server.crt`. Returns the (unchanged) fingerprint.
pub fn rotate_cert(
    paths: &ServerPaths,
    alg: Option<SignAlgorithm>,
    common_name: Option<&str>,
) -> Result<[u8; 32], InitError> {
    let fp = check_fingerprint(paths)?;
    let ca = CertKey::load_pem_files(&paths.ca_cert(), &paths.ca_key()).map_err(|e| {
        InitError::BadFile {
            path: paths.ca_key(),
            reason: format!("cannot load the CA certificate and key: {e}"),
        }
    })?;
    let old = paths.server_cert();
    let (old_alg, old_cn) = match (alg, common_name) {
        (Some(a), Some(cn)) => (a, cn.to_string()),
        _ => current_cert_params(&old)?,
    };
    let alg = alg.unwrap_or(old_alg);
    let cn = common_name.map(str::to_string).unwrap_or(old_cn);
    let online = hush_crypto::generate_online_cert(&ca, alg, &cn)?;
    // Write to temporary names first, then rename, so a failure never leaves a half-written pair.
    let tmp_cert = paths.config_dir.join(format!("{SERVER_CERT_FILE}.new"));
    let tmp_key = paths.config_dir.join(format!("{SERVER_KEY_FILE}.new"));
    save_cert_key(&online, &tmp_cert, &tmp_key)?;
    std::fs::rename(&tmp_key, paths.server_key()).map_err(io_err(&paths.server_key()))?;
    std::fs::rename(&tmp_cert, paths.server_cert()).map_err(io_err(&paths.server_cert()))?;
    Ok(fp)
}

fn current_cert_params(path: &Path) -> Result<(SignAlgorithm, String), InitError> {
    let bad = |reason: String| InitError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(io_err(path))?;
    let cert = openssl::x509::X509::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
    let key = cert.public_key().map_err(|e| bad(e.to_string()))?;
    let alg = match key.id() {
        openssl::pkey::Id::ED25519 => SignAlgorithm::Ed25519,
        openssl::pkey::Id::ED448 => SignAlgorithm::Ed448,
        _ => {
            return Err(bad(
                "unexpected key algorithm (expected Ed25519 or Ed448)".into()
            ));
        }
    };
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .ok_or_else(|| bad("certificate subject has no CN".into()))?
        .data()
        .to_string()
        .map_err(|e| bad(e.to_string()))?;
    Ok((alg, cn))
}

/// What `delete` removed.
#[derive(Debug, Default)]
pub struct Deleted {
    pub removed: Vec<PathBuf>,
    /// Directories left in place because they hold files hush did not create.
    pub kept_dirs: Vec<PathBuf>,
}

/// `smp-server delete`: removes the files `init` created in the config directory, the server's files
/// (`smp-server*`) in the data directory, and both directories when they end up empty. Files hush did
/// not create are left alone (so a mistaken `--config-dir /etc` does not wipe /etc).
pub fn delete(paths: &ServerPaths) -> Result<Deleted, InitError> {
    let mut out = Deleted::default();
    for name in [
        INI_FILE,
        CA_CERT_FILE,
        CA_KEY_FILE,
        SERVER_CERT_FILE,
        SERVER_KEY_FILE,
        FINGERPRINT_FILE,
        "server.crt.new",
        "server.key.new",
    ] {
        remove_file(&paths.config_dir.join(name), &mut out)?;
    }
    if let Ok(rd) = std::fs::read_dir(&paths.data_dir) {
        for entry in rd.flatten() {
            let name = entry.file_name();
            let is_ours = name.to_str().is_some_and(|n| n.starts_with("smp-server"));
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_ours && is_file {
                remove_file(&entry.path(), &mut out)?;
            }
        }
    }
    for dir in [&paths.config_dir, &paths.data_dir] {
        match std::fs::remove_dir(dir) {
            Ok(()) => out.removed.push(dir.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => out.kept_dirs.push(dir.clone()),
        }
    }
    Ok(out)
}

fn remove_file(path: &Path, out: &mut Deleted) -> Result<(), InitError> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            out.removed.push(path.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(InitError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}
