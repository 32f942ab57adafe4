//! `hush up`: the whole stack in one process — SMP relay, ntf-server, push-server and a local
//! APNs look-alike (apns-sink) — with embedded storage (SQLite) under one data directory.
//!
//! Layout of the data directory (created and initialized on first run):
//!
//! ```text
//! <data dir>/relay/      smp-server.ini, CA + server certificates, fingerprint, SQLite store
//! <data dir>/ntf/        ntf-server.ini, certificates, SQLite store
//! <data dir>/push/       push-server.ini, TLS certificate, handle key, VAPID key, outbox,
//!                        apns-key.p8 (the provider key the sink verifies), apns-sink.crt/.key
//! <data dir>/addresses.json   what was printed at start (read by `hush init` and `hush device`)
//! ```
//!
//! Ports (loopback only) are `--port-base` + offset: relay +0, ntf-server +1, push-server +2,
//! apns-sink (HTTP/2 TLS) +3, apns-sink read API (plain HTTP) +4. Default base 5223, so
//! 5223..5227. `--port-base 0` binds free ports (the printed addresses show which).
//!
//! The ntf-server reaches the push-server in process ([`push_server::InProcessGateway`]); the
//! push-server also listens on its own TLS port for split-mode devices registering push handles.
//! hush up overrides the `[APNS]` section of `push-server.ini` at start so that the `AT` (test)
//! provider points at the bundled sink.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use hush_server_common::private::write_private;
use serde::{Deserialize, Serialize};

/// Default first port (the SMP default port).
pub const DEFAULT_PORT_BASE: u16 = 5223;
/// APNs provider-token identity used between the bundled push-server and sink.
pub const SINK_TEAM_ID: &str = "HUSHTEAM01";
pub const SINK_KEY_ID: &str = "HUSHKEY001";
/// File with the printed addresses.
pub const ADDRESSES_FILE: &str = "addresses.json";

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Everything `hush up` prints, also saved as `addresses.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Addresses {
    /// `smp://<fingerprint>@127.0.0.1:<port>`.
    pub smp: String,
    /// `ntf://<fingerprint>@127.0.0.1:<port>`.
    pub ntf: String,
    /// push-server TLS listener (`host:port`) and its certificate fingerprint (base64url).
    pub push_server: String,
    pub push_fingerprint: String,
    /// apns-sink HTTP/2 endpoint.
    pub apns_sink: String,
    /// apns-sink read API (`GET /received?after=<seq>&wait_ms=<ms>`).
    pub apns_sink_read: String,
}

impl Addresses {
    pub fn load(data_dir: &Path) -> anyhow::Result<Addresses> {
        let f = data_dir.join(ADDRESSES_FILE);
        let text = std::fs::read_to_string(&f)
            .with_context(|| format!("cannot read {} (is `hush up` running?)", f.display()))?;
        serde_json::from_str(&text).with_context(|| format!("bad {}", f.display()))
    }
}

/// Options of `hush up`.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub data_dir: PathBuf,
    /// 0 = free ports.
    pub port_base: u16,
    /// Tests and demos only: periodic (`TCRN`) pushes every few seconds instead of every 20
    /// minutes (see [`DEV_FAST_PERIODIC`]).
    pub dev_fast_periodic: bool,
}

/// `--dev-fast-periodic` (tests and demos only): the ntf-server sweeps for due periodic pushes
/// every 0.5 s (reference 300 s), a `TCRN` minute lasts 0.1 s (reference 60 s; `TCRN 20` then
/// means every 2 s) and the shortest accepted interval is 1 minute (reference 20). The
/// `ntf-server.ini` on disk keeps its values; this only overrides them for this run.
pub const DEV_FAST_PERIODIC: (Duration, Duration, u16) =
    (Duration::from_millis(500), Duration::from_millis(100), 1);

/// The default data directory: `$XDG_DATA_HOME/hush` if set, else `./hush-data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("hush"),
        _ => PathBuf::from("hush-data"),
    }
}

fn port(base: u16, offset: u16) -> anyhow::Result<u16> {
    if base == 0 {
        return Ok(0);
    }
    base.checked_add(offset)
        .context("--port-base too high (five consecutive ports are needed)")
}

/// Port written into the generated ini files (overridden at every start).
fn init_port(base: u16, offset: u16) -> u16 {
    let b = if base == 0 { DEFAULT_PORT_BASE } else { base };
    b.saturating_add(offset)
}

struct Dirs {
    relay: PathBuf,
    ntf: PathBuf,
    push: PathBuf,
}

fn dirs(data: &Path) -> Dirs {
    Dirs {
        relay: data.join("relay"),
        ntf: data.join("ntf"),
        push: data.join("push"),
    }
}

/// First-run initialization of every component that is missing. Returns lines to print.
fn init_if_needed(data: &Path, base: u16) -> anyhow::Result<Vec<String>> {
    let d = dirs(data);
    let mut out = Vec::new();
    // Private (0700): it holds every component's keys and stores. A looser existing directory
    // is tightened (logged at info); the components do the same for their own directories.
    hush_server_common::private_start::prepare_private_dir(data, "hush up data directory")
        .with_context(|| format!("cannot create {}", data.display()))?;
    let relay_paths = smp_server::ServerPaths {
        config_dir: d.relay.clone(),
        data_dir: d.relay.clone(),
    };
    if !relay_paths.ini_file().exists() {
        smp_server::init::init(&smp_server::init::InitOptions {
            paths: relay_paths.clone(),
            fqdn: None,
            ip: LOCALHOST,
            // Loopback only: anyone on this machine may create queues.
            password: smp_server::init::PasswordChoice::None,
            sign_algorithm: hush_crypto::SignAlgorithm::Ed25519,
            port: init_port(base, 0),
            control_port: None,
            store_log: true,
            force: false,
        })
        .context("relay init")?;
        out.push(format!("initialized relay in {}", d.relay.display()));
    }
    let ntf_paths = ntf_server::Paths {
        config_dir: d.ntf.clone(),
        data_dir: d.ntf.clone(),
    };
    if !ntf_paths.ini_file().exists() {
        ntf_server::init::init(&ntf_server::init::InitOptions {
            paths: ntf_paths,
            common_name: "127.0.0.1".into(),
            sign_algorithm: hush_crypto::SignAlgorithm::Ed25519,
            port: init_port(base, 1),
            control: None,
            store_log: true,
            force: false,
        })
        .context("ntf-server init")?;
        out.push(format!("initialized ntf-server in {}", d.ntf.display()));
    }
    if !d.push.join(push_server::config::INI_FILE).exists() {
        push_server::cli::init(&d.push, LOCALHOST, init_port(base, 2), "ntf")
            .context("push-server init")?;
        let key = push_server::jwt::Es256Key::generate()
            .and_then(|k| k.to_pkcs8_pem())
            .map_err(|e| anyhow::anyhow!("APNs key: {e}"))?;
        let path = d.push.join("apns-key.p8");
        write_private(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
        let (cert, key) = push_server::http_util::self_signed_cert(
            "apns-sink",
            &["localhost", "127.0.0.1"],
            3650,
        )
        .map_err(|e| anyhow::anyhow!("apns-sink certificate: {e}"))?;
        std::fs::write(d.push.join("apns-sink.crt"), &cert)?;
        let path = d.push.join("apns-sink.key");
        write_private(&path, &key).with_context(|| format!("cannot write {}", path.display()))?;
        out.push(format!(
            "initialized push-server and apns-sink in {}",
            d.push.display()
        ));
    }
    Ok(out)
}

/// A running stack.
pub struct Stack {
    pub addresses: Addresses,
    /// How the relay hands notifications to the ntf-server (`[NOTIFICATIONS] delivery` of
    /// its smp-server.ini; adaptive by default).
    pub relay_delivery: smp_server::server::notify::NtfDelivery,
    trigger: smp_server::ShutdownTrigger,
    relay: smp_server::server::Relay,
    ntf: ntf_server::NtfServer<push_server::InProcessGateway>,
    push: push_server::cli::Running,
    sink: apns_sink::SinkHandle,
}

/// Initializes (first run) and starts every component; returns once all are listening.
pub async fn start(opts: &UpOptions) -> anyhow::Result<(Stack, Vec<String>)> {
    let base = opts.port_base;
    let data = &opts.data_dir;
    let notes = init_if_needed(data, base)?;
    let d = dirs(data);

    // apns-sink
    let p8 = std::fs::read(d.push.join("apns-key.p8")).context("apns-key.p8")?;
    let public = push_server::jwt::Es256Key::from_pem(&p8)
        .and_then(|k| k.public_pem())
        .map_err(|e| anyhow::anyhow!("apns-key.p8: {e}"))?;
    let mut sink_cfg =
        apns_sink::SinkConfig::new(SocketAddr::new(LOCALHOST, port(base, 3)?), public);
    sink_cfg.read_listen = Some(SocketAddr::new(LOCALHOST, port(base, 4)?));
    sink_cfg.key_id = Some(SINK_KEY_ID.into());
    sink_cfg.team_id = Some(SINK_TEAM_ID.into());
    sink_cfg.tls = Some((
        std::fs::read(d.push.join("apns-sink.crt")).context("apns-sink.crt")?,
        std::fs::read(d.push.join("apns-sink.key")).context("apns-sink.key")?,
    ));
    let sink = apns_sink::start(sink_cfg).await.context("apns-sink")?;
    let read_addr = sink.read_addr.context("apns-sink read API not bound")?;

    // push-server (APNs test provider → the sink)
    let (mut push_cfg, warnings) =
        push_server::config::Config::load(&d.push).context("push-server.ini")?;
    for w in warnings {
        tracing::warn!("push-server.ini: {w}");
    }
    push_cfg.listen = SocketAddr::new(LOCALHOST, port(base, 2)?);
    push_cfg.apns.enable = true;
    push_cfg.apns.team_id = SINK_TEAM_ID.into();
    push_cfg.apns.key_id = SINK_KEY_ID.into();
    push_cfg.apns.key_file = d.push.join("apns-key.p8");
    push_cfg.apns.prod_url = None;
    push_cfg.apns.dev_url = None;
    push_cfg.apns.test_url = Some(format!("https://127.0.0.1:{}", sink.addr.port()));
    push_cfg.apns.test_ca_file = Some(d.push.join("apns-sink.crt"));
    // A loopback-only development stack: a UnifiedPush distributor on this machine may be used.
    push_cfg.webpush.endpoints.destinations = push_server::DestinationPolicy::Loopback;
    push_cfg.webpush.endpoints.allow_any_port = true;
    // Every device of this stack registers from 127.0.0.1: a per-address registration limit would
    // be the global one ([LIMITS] register_rate still applies).
    push_cfg.limits.register_rate_per_ip.per_second = 0.0;
    let push = push_server::cli::start(&push_cfg)
        .await
        .context("push-server")?;
    let push_fp = std::fs::read_to_string(d.push.join(push_server::config::FINGERPRINT_FILE))
        .context("push-server fingerprint")?
        .trim()
        .to_string();

    let (trigger, shutdown) = smp_server::shutdown_channel();

    // relay
    let relay_paths = smp_server::ServerPaths {
        config_dir: d.relay.clone(),
        data_dir: d.relay.clone(),
    };
    let (mut relay_cfg, warnings) =
        smp_server::Config::load(relay_paths.clone()).context("smp-server.ini")?;
    for w in &warnings {
        tracing::warn!("smp-server.ini: {w}");
    }
    let relay_fp = smp_server::init::check_fingerprint(&relay_paths)?;
    relay_cfg.transport.ports = vec![port(base, 0)?];
    relay_cfg.transport.bind = vec![LOCALHOST];
    relay_cfg.transport.control_port = None;
    relay_cfg.metrics.enable = false;
    // Every relay of this stack is on loopback: let the relay's SMP proxy reach them.
    relay_cfg.proxy.destinations = smp_server::config::DestinationPolicy::Loopback;
    let relay_delivery = relay_cfg.notifications.delivery;
    let relay_opts = smp_server::server::RelayOptions {
        shutdown_grace: Duration::from_secs(5),
        ..Default::default()
    };
    let relay = smp_server::server::start(relay_cfg, shutdown.clone(), relay_opts)
        .await
        .context("relay")?;
    let relay_addr = *relay.addrs.first().context("relay bound no address")?;

    // ntf-server (push-server in process)
    let ntf_paths = ntf_server::Paths {
        config_dir: d.ntf.clone(),
        data_dir: d.ntf.clone(),
    };
    let (mut ntf_cfg, warnings) = ntf_server::Config::load(ntf_paths).context("ntf-server.ini")?;
    for w in warnings {
        tracing::warn!("ntf-server.ini: {w}");
    }
    ntf_cfg.ports = vec![port(base, 1)?];
    ntf_cfg.bind = vec![LOCALHOST];
    ntf_cfg.control_port = None;
    ntf_cfg.metrics_addr = None;
    // the relay of `hush up` listens on 127.0.0.1: the ntf-server must be allowed to connect
    ntf_cfg.relay_destinations = ntf_cfg
        .relay_destinations
        .max(ntf_server::DestinationPolicy::Loopback);
    // every device of this development stack connects from 127.0.0.1
    ntf_cfg.token_rate_per_ip = hush_server_common::Rate::new(0.0, 0);
    ntf_cfg.push_remote = false;
    if opts.dev_fast_periodic {
        let (sweep, minute, min_minutes) = DEV_FAST_PERIODIC;
        ntf_cfg.cron_sweep = sweep;
        ntf_cfg.cron_minute = minute;
        ntf_cfg.cron_min_minutes = min_minutes;
    }
    let gateway = Arc::new(push_server::InProcessGateway::new(
        push.service.clone(),
        "ntf",
    ));
    let ntf = ntf_server::start(ntf_cfg, gateway, shutdown.clone())
        .await
        .context("ntf-server")?;
    let ntf_addr = *ntf.addrs.first().context("ntf-server bound no address")?;

    let b64 = hush_proto::encoding::base64url_encode;
    let addresses = Addresses {
        smp: smp_server::init::server_address(
            &relay_fp,
            None,
            &["127.0.0.1".to_string()],
            relay_addr.port(),
        ),
        ntf: format!(
            "ntf://{}@127.0.0.1:{}",
            b64(&ntf.fingerprint),
            ntf_addr.port()
        ),
        push_server: push.addr.to_string(),
        push_fingerprint: push_fp,
        apns_sink: format!("https://{}", sink.addr),
        apns_sink_read: format!("http://{read_addr}/received"),
    };
    let text = serde_json::to_string_pretty(&addresses)?;
    std::fs::write(data.join(ADDRESSES_FILE), text)?;
    Ok((
        Stack {
            addresses,
            relay_delivery,
            trigger,
            relay,
            ntf,
            push,
            sink,
        },
        notes,
    ))
}

impl Stack {
    /// Graceful stop: relay and ntf-server finish in-flight work and flush their stores, the
    /// push-server finishes deliveries, the sink closes.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.trigger.trigger();
        let (r, n) = tokio::join!(self.relay.wait(), self.ntf.wait());
        self.push.stop().await;
        drop(self.sink);
        r.context("relay")?;
        n.context("ntf-server")?;
        Ok(())
    }
}

/// `hush up`.
pub async fn run(opts: UpOptions) -> anyhow::Result<()> {
    if opts.data_dir.as_os_str().is_empty() {
        bail!("empty --data-dir");
    }
    // Registered before "ready" is printed: a SIGTERM sent as soon as a caller sees it must stop
    // the stack cleanly, not kill it with the default action.
    let mut signals = hush_server_common::StopSignals::install()?;
    let (stack, notes) = start(&opts).await?;
    for n in notes {
        println!("{n}");
    }
    let a = &stack.addresses;
    println!("hush up: data in {}", opts.data_dir.display());
    println!("relay:           {}", a.smp);
    println!("ntf-server:      {}", a.ntf);
    println!(
        "push-server:     {} (fingerprint {})",
        a.push_server, a.push_fingerprint
    );
    println!("apns-sink:       {}", a.apns_sink);
    println!("apns-sink read:  {}", a.apns_sink_read);
    if opts.dev_fast_periodic {
        println!("dev: fast periodic pushes (TCRN minute = 0.1 s, sweep every 0.5 s; tests only)");
    }
    println!("ready (ctrl-c or SIGTERM to stop)");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    signals.recv().await;
    println!("stopping");
    stack.stop().await?;
    println!("stopped");
    Ok(())
}
