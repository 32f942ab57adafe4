//! `push-server` binary.

use clap::Parser as _;
use push_server::cli::{self, Cli, Command};
use push_server::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hush_server_common::init_logging("RUST_LOG", "info")?;
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
            hush_server_common::config::print_warnings(
                &args.dir.join(push_server::config::INI_FILE),
                &warnings,
            );
            let running = cli::start(&cfg).await?;
            // Machine-readable line (tests and `hush up` read it).
            println!("push-server listening on {}", running.addr);
            if !cfg.apns.enable && !cfg.webpush.enable {
                println!(
                    "No push provider is enabled ([APNS] and [WEBPUSH] enable = off in {}): \
                     jobs are accepted but no push is delivered",
                    args.dir.join(push_server::config::INI_FILE).display()
                );
            }
            if let Some(m) = running.metrics_addr {
                println!("metrics on http://{m}/metrics");
            }
            hush_server_common::wait_for_signal().await;
            tracing::info!("shutting down");
            running.stop().await;
        }
    }
    Ok(())
}
