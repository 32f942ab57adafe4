//! `ntf-server` binary: CLI dispatch; errors become messages and exit codes (anyhow).
//!
//! With the `embedded-push` feature (default) `[PUSH] mode = in_process` starts the push-server
//! in this process; without it only `mode = remote` exists (the configuration refuses the other).

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use ntf_server::cli::{Cli, Command, ImportArgs};
use ntf_server::config::{Config, Paths, PushConfig};
use ntf_server::init::{InitError, InitOptions, control_passwords};
#[cfg(feature = "embedded-push")]
use push_server::{AnyGateway, InProcessGateway};

/// The gateway the binary hands to the server: in process or remote, or only remote in a build
/// without the embedded push-server.
#[cfg(feature = "embedded-push")]
type Gateway = AnyGateway;
#[cfg(not(feature = "embedded-push"))]
type Gateway = push_api::RemoteGateway;

#[cfg(feature = "embedded-push")]
fn remote(g: push_api::RemoteGateway) -> Gateway {
    AnyGateway::Remote(g)
}

#[cfg(not(feature = "embedded-push"))]
fn remote(g: push_api::RemoteGateway) -> Gateway {
    g
}

/// `init`'s push-server part: the in-process push-server's configuration in `<config dir>/push`;
/// returns the line to print.
#[cfg(feature = "embedded-push")]
fn init_push(paths: &Paths, port: u16) -> Result<String, InitError> {
    let pdir = paths.config_dir.join(ntf_server::init::PUSH_DIR);
    Ok(match ntf_server::init::init_push(paths, port)? {
        ntf_server::init::PushInit::Created(_) => format!(
            "Push-server (in this process) configured in {}: no push provider \
             is enabled; enable [APNS] or [WEBPUSH] in its push-server.ini",
            pdir.display()
        ),
        ntf_server::init::PushInit::Kept => {
            format!("Push-server configuration in {} kept", pdir.display())
        }
    })
}

#[cfg(not(feature = "embedded-push"))]
fn init_push(_paths: &Paths, _port: u16) -> Result<String, InitError> {
    Ok(
        "This ntf-server is built without the in-process push-server (cargo feature \
        `embedded-push`): set [PUSH] mode = remote with a push-server's host, port, fingerprint \
        and credential in ntf-server.ini"
            .to_string(),
    )
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::Init(a) => {
            let control = a.control_port.map(|p| {
                let (admin, user) = control_passwords();
                (p, admin, user)
            });
            let opts = InitOptions {
                paths: cli.paths(),
                common_name: a.fqdn.clone().unwrap_or_else(|| a.ip.clone()),
                sign_algorithm: a.sign_algorithm.into(),
                port: a.port,
                control,
                store_log: !a.disable_store_log,
                force: a.force,
            };
            ntf_server::init::init(&opts)
                .and_then(|fp| Ok((fp, init_push(&opts.paths, a.push_port)?)))
                .map(|(fp, push)| {
                    println!(
                        "Server initialized; configuration in {}",
                        opts.paths.ini_file().display()
                    );
                    println!(
                        "Fingerprint: {}",
                        hush_proto::encoding::base64url_encode(&fp)
                    );
                    let host = a.fqdn.clone().unwrap_or_else(|| a.ip.clone());
                    println!(
                        "Server address: ntf://{}@{host}:{}",
                        hush_proto::encoding::base64url_encode(&fp),
                        a.port
                    );
                    println!("{push}");
                    println!("Run `ntf-server start` to start the server.");
                })
                .map_err(anyhow::Error::from)
        }
        Command::Delete(a) => {
            if !a.yes {
                Err(anyhow::anyhow!(
                    "pass -y to delete the server (this cannot be undone)"
                ))
            } else {
                ntf_server::init::delete(&cli.paths())
                    .map(|r| println!("Deleted {} files and directories.", r.len()))
                    .map_err(anyhow::Error::from)
            }
        }
        Command::Start(a) => start(&cli, &a.log_level),
        Command::Import(a) => import(&cli, a),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn start(cli: &Cli, log_level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(log_level))
        .context("bad log level")?;
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let (config, warnings) = Config::load(cli.paths())?;
    hush_server_common::config::print_warnings(&cli.paths().ini_file(), &warnings);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let (trigger, shutdown) = hush_server_common::shutdown_channel();
        #[cfg(feature = "embedded-push")]
        let mut push_running = None;
        let gateway: Gateway = match config.push() {
            PushConfig::Remote {
                host,
                port,
                fingerprint,
                credential,
            } => remote(
                push_api::RemoteGateway::new(push_api::RemoteConfig {
                    host,
                    port,
                    fingerprint,
                    credential: Some(credential),
                    timeout: std::time::Duration::from_secs(10),
                })
                .map_err(|e| anyhow::anyhow!("push-server gateway: {e}"))?,
            ),
            #[cfg(not(feature = "embedded-push"))]
            PushConfig::InProcess { .. } => bail!(
                "[PUSH] mode = in_process: this ntf-server is built without the in-process \
                 push-server (cargo feature `embedded-push`); use mode = remote"
            ),
            #[cfg(feature = "embedded-push")]
            PushConfig::InProcess { config_dir } => {
                // Without `config_dir`: the push-server configuration `ntf-server init` wrote.
                let dir = config_dir
                    .unwrap_or_else(|| config.paths.config_dir.join(ntf_server::init::PUSH_DIR));
                if !dir.join(push_server::config::INI_FILE).exists() {
                    bail!(
                        "[PUSH] mode = in_process: no push-server configuration in {} \
                         (run `ntf-server init`, set [PUSH] config_dir to a push-server \
                         configuration directory, or use mode = remote)",
                        dir.display()
                    );
                }
                let (pcfg, warnings) = push_server::config::Config::load(&dir)
                    .map_err(|e| anyhow::anyhow!("push-server configuration: {e}"))?;
                hush_server_common::config::print_warnings(
                    &dir.join(push_server::config::INI_FILE),
                    &warnings,
                );
                let running = push_server::cli::start(&pcfg)
                    .await
                    .map_err(|e| anyhow::anyhow!("push-server: {e}"))?;
                println!("Push-server (in process) listening on {}", running.addr);
                if !pcfg.apns.enable && !pcfg.webpush.enable {
                    println!(
                        "No push provider is enabled ([APNS] and [WEBPUSH] enable = off in {}): \
                         tokens can be registered but no push is delivered",
                        dir.join(push_server::config::INI_FILE).display()
                    );
                }
                let gw = InProcessGateway::new(running.service.clone(), "ntf-server");
                push_running = Some(running);
                AnyGateway::InProcess(gw)
            }
        };
        if let Some(d) = config.network.describe() {
            println!("Relays through {d}");
        }
        let server = ntf_server::start(config, Arc::new(gateway), shutdown).await?;
        for a in &server.addrs {
            println!("Listening on {a}");
        }
        println!(
            "Fingerprint: {}",
            hush_proto::encoding::base64url_encode(&server.fingerprint)
        );
        if let Some(pg) = server.core.store.postgres() {
            // The owner name of this process's relay leases (shared PostgreSQL store).
            println!("Instance: {}", pg.instance_id());
        }
        let task = tokio::spawn(server.wait());
        wait_for_signal().await?;
        trigger.trigger();
        task.await??;
        #[cfg(feature = "embedded-push")]
        if let Some(p) = push_running {
            p.stop().await;
        }
        Ok(())
    })
}

/// SIGINT or SIGTERM.
async fn wait_for_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// `import`: a reference ntf-server's store log into the configured store.
fn import(cli: &Cli, a: &ImportArgs) -> anyhow::Result<()> {
    let (config, warnings) = Config::load(cli.paths())?;
    hush_server_common::config::print_warnings(&cli.paths().ini_file(), &warnings);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let r = rt.block_on(ntf_server::import::import_into_configured_store(
        &config,
        &a.store_log,
        a.force,
        ntf_server::import::stderr_progress(),
    ))?;
    println!(
        "Imported {} tokens ({} active, {} with periodic notifications) and {} subscriptions.",
        r.tokens, r.active_tokens, r.cron_tokens, r.subscriptions
    );
    for (n, what) in [
        (r.deleted_tokens, "tokens deleted in the log"),
        (r.deleted_subscriptions, "subscriptions deleted in the log"),
        (r.service_records_skipped, "service records (not imported)"),
        (r.records_skipped, "log records skipped"),
        (r.truncated_lines, "incomplete last lines skipped"),
    ] {
        if n > 0 {
            println!("{n} {what}");
        }
    }
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    Ok(())
}
