//! Command line (reference §7.1 `ntf-server init|start|delete`).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Paths;

#[derive(Debug, Parser)]
#[command(
    name = "ntf-server",
    version,
    about = "hush notification server (NTF v3)"
)]
pub struct Cli {
    /// Configuration directory (certificates, ntf-server.ini).
    #[arg(
        long,
        env = "NTF_SERVER_CFG_PATH",
        default_value = "/etc/opt/simplex-notifications"
    )]
    pub config_dir: PathBuf,
    /// Data directory (store).
    #[arg(
        long,
        env = "NTF_SERVER_LOG_PATH",
        default_value = "/var/opt/simplex-notifications"
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn paths(&self) -> Paths {
        Paths {
            config_dir: self.config_dir.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create certificates and ntf-server.ini.
    Init(InitArgs),
    /// Run the server.
    Start(StartArgs),
    /// Delete configuration, certificates and the store.
    Delete(DeleteArgs),
    /// Import a reference ntf-server's store log (tokens and subscriptions) into the store this
    /// configuration names (SQLite or PostgreSQL). Run it with both servers stopped. Refuses a
    /// store that already holds tokens unless --force.
    Import(ImportArgs),
}

/// `ntf-server import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The reference's store log (ntf-server-store.log; its `.start` file is used instead when the
    /// reference was stopped while compacting it).
    #[arg(long, value_name = "FILE")]
    pub store_log: std::path::PathBuf,
    /// Import into a store that already holds tokens (tokens with the same ids are replaced).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SignAlg {
    #[value(name = "ED448")]
    Ed448,
    #[value(name = "ED25519")]
    Ed25519,
}

impl From<SignAlg> for hush_crypto::SignAlgorithm {
    fn from(a: SignAlg) -> Self {
        match a {
            SignAlg::Ed448 => hush_crypto::SignAlgorithm::Ed448,
            SignAlg::Ed25519 => hush_crypto::SignAlgorithm::Ed25519,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Server host name (written into the online certificate).
    #[arg(long, short = 'n')]
    pub fqdn: Option<String>,
    /// Server IP (certificate common name when no --fqdn).
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: String,
    /// Certificate signature algorithm (the reference's ntf-server defaults to ED448).
    #[arg(long, value_enum, default_value = "ED448")]
    pub sign_algorithm: SignAlg,
    #[arg(long, default_value_t = crate::config::DEFAULT_PORT)]
    pub port: u16,
    /// Enable the control port (default 5227) with random passwords.
    #[arg(long, num_args = 0..=1, default_missing_value = "5227")]
    pub control_port: Option<u16>,
    /// Memory-only store.
    #[arg(long)]
    pub disable_store_log: bool,
    /// Port of the in-process push-server that init configures in `<config dir>/push`
    /// (listening on 127.0.0.1; 0 = any free port).
    #[arg(long, default_value_t = crate::init::DEFAULT_PUSH_PORT)]
    pub push_port: u16,
    #[arg(long)]
    pub force: bool,
    /// Non-interactive.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Log filter (RUST_LOG syntax).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[arg(short = 'y', long)]
    pub yes: bool,
}
