//! `apns-sink start`: a local APNs look-alike (HTTP/2 + TLS) with a plain-HTTP read API.

use std::net::SocketAddr;
use std::path::PathBuf;

use apns_sink::SinkConfig;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "apns-sink",
    version,
    about = "Local APNs look-alike for tests and `hush up`"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the sink until interrupted.
    Start {
        /// HTTP/2 TLS listener.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Plain-HTTP read API (loopback only).
        #[arg(long, default_value = "127.0.0.1:8444")]
        read_listen: SocketAddr,
        /// P-256 public key (PEM) that verifies provider tokens; a private key (e.g. the .p8) is
        /// accepted too and its public half used.
        #[arg(long)]
        jwt_key: PathBuf,
        /// Required `kid` of provider tokens.
        #[arg(long)]
        key_id: Option<String>,
        /// Required `iss` (team id) of provider tokens.
        #[arg(long)]
        team_id: Option<String>,
        /// Allowed apns-topic (repeatable; none = any).
        #[arg(long)]
        topic: Vec<String>,
        /// Payload limit in bytes.
        #[arg(long, default_value_t = 4096)]
        max_payload: usize,
        /// Hold each answer this many milliseconds (Apple's round trip over the Internet is
        /// tens of ms; 0 = answer at once).
        #[arg(long, default_value_t = 0)]
        response_delay_ms: u64,
        /// Where to write the sink's TLS certificate (PEM) for clients to trust.
        #[arg(long, default_value = "apns-sink.crt")]
        cert_out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hush_server_common::init_logging("RUST_LOG", "info")?;
    let Cmd::Start {
        listen,
        read_listen,
        jwt_key,
        key_id,
        team_id,
        topic,
        max_payload,
        response_delay_ms,
        cert_out,
    } = Cli::parse().command;
    let pem = std::fs::read(&jwt_key)?;
    let public_pem = match push_server::jwt::Es256Key::from_pem(&pem) {
        Ok(k) => k.public_pem()?,
        Err(_) => pem,
    };
    let mut cfg = SinkConfig::new(listen, public_pem);
    cfg.read_listen = Some(read_listen);
    cfg.key_id = key_id;
    cfg.team_id = team_id;
    cfg.topics = topic;
    cfg.max_payload = max_payload;
    cfg.response_delay = std::time::Duration::from_millis(response_delay_ms);
    let sink = apns_sink::start(cfg).await?;
    std::fs::write(&cert_out, &sink.cert_pem)?;
    println!("apns-sink listening on {}", sink.addr);
    if let Some(r) = sink.read_addr {
        println!("read API on http://{r}/received");
    }
    println!("certificate written to {}", cert_out.display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
