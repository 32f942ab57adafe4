//! `smp-server` binary: CLI dispatch (reference §7.1). Library errors are typed; this file turns them
//! into messages and exit codes with anyhow.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use clap::Parser;
use smp_server::cli::{CertArgs, Cli, Command, DeleteArgs, ImportArgs, InitArgs, StartArgs};
use smp_server::config::Config;
use smp_server::init::{self, InitOptions, PasswordChoice};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Init(a) => cmd_init(&cli, a),
        Command::Start(a) => cmd_start(&cli, a),
        Command::Cert(a) => cmd_cert(&cli, a),
        Command::Delete(a) => cmd_delete(&cli, a),
        Command::Import(a) => cmd_import(&cli, a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Asks a yes/no question on the terminal; anything but `y`/`yes` (or end of input) is a no.
fn confirm(question: &str) -> bool {
    print!("{question} [y/N]: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    match std::io::stdin().lock().read_line(&mut answer) {
        Ok(0) | Err(_) => false,
        Ok(_) => matches!(answer.trim(), "y" | "Y" | "yes" | "YES"),
    }
}

fn cmd_init(cli: &Cli, a: &InitArgs) -> anyhow::Result<()> {
    let paths = cli.paths();
    let password = match (&a.password, a.no_password) {
        (Some(p), _) => PasswordChoice::Given(p.clone()),
        (None, true) => PasswordChoice::None,
        (None, false) => PasswordChoice::Random,
    };
    if !a.yes
        && !confirm(&format!(
            "Initialize an SMP server with configuration in {} and data in {}?",
            paths.config_dir.display(),
            paths.data_dir.display()
        ))
    {
        bail!("server NOT initialized (use -y to skip this question)");
    }
    let opts = InitOptions {
        paths: paths.clone(),
        fqdn: a.fqdn.clone(),
        ip: a.ip,
        password,
        sign_algorithm: a.sign_algorithm.into(),
        port: a.port,
        control_port: a.control_port,
        store_log: !a.disable_store_log,
        force: a.force,
    };
    let out = init::init(&opts)?;
    println!(
        "Server initialized; add server information in {}.",
        out.ini_file.display()
    );
    println!("Run `smp-server start` to start the server.");
    println!("----------");
    println!("Store the CA private key securely and delete it from the server.");
    println!(
        "If the TLS credentials are compromised, `smp-server cert` signs new ones with it, keeping the"
    );
    println!(
        "same server identity. CA private key: {}",
        paths.ca_key().display()
    );
    println!("----------");
    println!("Fingerprint: {}", init::fingerprint_text(&out.fingerprint));
    println!("Server address: {}", out.address);
    Ok(())
}

fn cmd_cert(cli: &Cli, a: &CertArgs) -> anyhow::Result<()> {
    let paths = cli.paths();
    let fp = init::rotate_cert(&paths, a.sign_algorithm.map(Into::into), a.cn.as_deref())?;
    println!("Generated new server credentials.");
    println!("Fingerprint (unchanged): {}", init::fingerprint_text(&fp));
    Ok(())
}

fn cmd_delete(cli: &Cli, a: &DeleteArgs) -> anyhow::Result<()> {
    let paths = cli.paths();
    if !a.yes {
        println!(
            "WARNING: deleting the server makes all its queues unreachable, because the server identity \
             (certificate fingerprint) is lost. THIS CANNOT BE UNDONE!"
        );
        if !confirm("Delete the server?") {
            bail!("server NOT deleted");
        }
    }
    let d = init::delete(&paths)?;
    println!("Deleted {} files and directories.", d.removed.len());
    for dir in d.kept_dirs {
        println!(
            "Kept {} because it holds files smp-server did not create.",
            dir.display()
        );
    }
    Ok(())
}

fn cmd_start(cli: &Cli, a: &StartArgs) -> anyhow::Result<()> {
    hush_server_common::init_logging("RUST_LOG", &a.log_level).context("invalid --log-level")?;
    let paths = cli.paths();
    if !paths.ini_file().exists() && !paths.ca_cert().exists() {
        // First run: initialize with the defaults of `smp-server init -y` (random create_password,
        // certificates for 127.0.0.1, store log on) so that `smp-server start` alone gives a server.
        println!(
            "No configuration in {}: initializing a new server (as `smp-server init -y`).",
            paths.config_dir.display()
        );
        let out = init::init(&InitOptions {
            paths: paths.clone(),
            fqdn: None,
            ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            password: PasswordChoice::Random,
            sign_algorithm: hush_crypto::SignAlgorithm::Ed25519,
            port: smp_server::config::DEFAULT_PORT,
            control_port: None,
            store_log: true,
            force: false,
        })?;
        println!("Configuration written to {}.", out.ini_file.display());
        println!("Fingerprint: {}", init::fingerprint_text(&out.fingerprint));
    }
    let (config, warnings) = Config::load(paths.clone())?;
    hush_server_common::config::print_warnings(&paths.ini_file(), &warnings);
    let fp = init::check_fingerprint(&paths)?;
    let port = config
        .transport
        .ports
        .first()
        .copied()
        .unwrap_or(smp_server::config::DEFAULT_PORT);
    println!(
        "Server address: {}",
        init::server_address(
            &fp,
            config.auth.create_password.as_ref(),
            &config.transport.hosts,
            port
        )
    );
    for line in config.summary() {
        println!("{line}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let (trigger, shutdown) = smp_server::shutdown_channel();
        tokio::spawn(async move {
            hush_server_common::wait_for_signal().await;
            tracing::info!("shutting down");
            trigger.trigger();
        });
        let options = smp_server::server::RelayOptions {
            print_listening: true,
            ..Default::default()
        };
        smp_server::server::start(config, shutdown, options)
            .await?
            .wait()
            .await
    })?;
    Ok(())
}

/// `import`: a reference relay's store log and messages into the configured store.
fn cmd_import(cli: &Cli, a: &ImportArgs) -> anyhow::Result<()> {
    let paths = cli.paths();
    let (config, warnings) = Config::load(paths.clone())?;
    hush_server_common::config::print_warnings(&paths.ini_file(), &warnings);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let r = rt.block_on(smp_server::import::import_into_configured_store(
        &config,
        &a.store_log,
        a.messages.as_deref(),
        a.force,
        smp_server::import::stderr_progress(),
    ))?;
    println!(
        "Imported {} queues ({} secured, {} with a notifier, {} suspended, {} blocked), {} services with {} queue associations, {} messages and {} quota markers.",
        r.queues,
        r.secured,
        r.with_notifier,
        r.suspended,
        r.blocked,
        r.services,
        r.service_associations,
        r.messages,
        r.quota_markers
    );
    for (n, what) in [
        (r.deleted_queues, "queues deleted in the log (not imported)"),
        (r.existing_skipped, "queues already in the store (skipped)"),
        (
            r.messages_over_quota,
            "messages over the queue quota (not stored)",
        ),
        (
            r.messages_without_queue,
            "messages of queues not in the log (skipped)",
        ),
        (r.quota_markers_dropped, "quota markers dropped"),
        (r.records_skipped, "log records skipped"),
        (
            r.service_records_skipped,
            "service records or associations skipped",
        ),
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
