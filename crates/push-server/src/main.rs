//! `push-server` binary.

use clap::Parser as _;
use push_server::cli::{self, Cli, Command};
use push_server::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Cli::parse();
    match args.command {
        Command::Init {
            host,
            port,
            client_name,
        } => {
            let out = cli::init(&args.dir, host, port, &client_name)?;
            println!("push-server initialised in {}", args.dir.display());
            println!("fingerprint: {}", out.fingerprint);
            println!(
                "ntf-server credential for `{}` is in [CLIENTS] of push-server.ini",
                out.client_name
            );
        }
        Command::Start => {
            let (cfg, warnings) = Config::load(&args.dir)?;
            for w in warnings {
                eprintln!("warning: push-server.ini {w}");
            }
            let running = cli::start(&cfg).await?;
            // Machine-readable line (tests and `hush up` read it).
            println!("push-server listening on {}", running.addr);
            if let Some(m) = running.metrics_addr {
                println!("metrics on http://{m}/metrics");
            }
            wait_for_signal().await;
            tracing::info!("shutting down");
            running.stop().await;
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
