//! Command line of `smp-server` (reference §7.1), parsed with clap.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{BasicAuth, DEFAULT_PORT, ServerPaths};

/// Default configuration directory (env `SMP_SERVER_CFG_PATH`).
pub const DEFAULT_CONFIG_DIR: &str = "/etc/opt/hush/smp";
/// Default data directory (env `SMP_SERVER_LOG_PATH`).
pub const DEFAULT_DATA_DIR: &str = "/var/opt/hush/smp";

#[derive(Debug, Parser)]
#[command(
    name = "smp-server",
    version,
    about = "hush SMP relay: a SimpleX Messaging Protocol (v18) server",
    long_about = "hush SMP relay: a SimpleX Messaging Protocol (v18) server.\n\n\
        Typical use: `smp-server init --fqdn relay.example.com -y` once, then `smp-server start`.\n\
        The configuration directory holds smp-server.ini, the certificates and the fingerprint; \
        the data directory holds the message store."
)]
pub struct Cli {
    /// Configuration directory: smp-server.ini, ca.crt, ca.key, server.crt, server.key, fingerprint.
    #[arg(long, global = true, env = "SMP_SERVER_CFG_PATH", default_value = DEFAULT_CONFIG_DIR)]
    pub config_dir: PathBuf,

    /// Data directory: the message and queue store.
    #[arg(long, global = true, env = "SMP_SERVER_LOG_PATH", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn paths(&self) -> ServerPaths {
        ServerPaths {
            config_dir: self.config_dir.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the server identity (CA and TLS certificates, fingerprint) and a commented smp-server.ini.
    Init(InitArgs),
    /// Check the configuration and certificates, then run the relay. On first run (no
    /// smp-server.ini and no ca.crt in the config directory) it first initializes the server with
    /// the defaults of `init -y` and prints the address.
    Start(StartArgs),
    /// Replace the online TLS certificate (server.crt/server.key) with a new one signed by the same CA;
    /// the fingerprint and so the server address do not change. Needs ca.key.
    Cert(CertArgs),
    /// Delete the configuration and the server's data files. THIS CANNOT BE UNDONE: the server
    /// identity is lost and every queue on it becomes unreachable.
    Delete(DeleteArgs),
    /// Import a reference relay's store (its queue store log, and its messages: the journal
    /// directory or smp-server-messages.log) into the store this configuration names (SQLite
    /// or PostgreSQL). Run it with both relays stopped. Refuses a store that already has queues
    /// unless --force.
    Import(ImportArgs),
}

/// `smp-server import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The reference's queue store log (smp-server-store.log; its `.start` file is used instead
    /// when the reference was stopped while compacting it).
    #[arg(long, value_name = "FILE")]
    pub store_log: PathBuf,
    /// The reference's messages: the journal directory (messages/) or smp-server-messages.log.
    #[arg(long, value_name = "DIR|FILE")]
    pub messages: Option<PathBuf>,
    /// Import into a store that already holds queues (queues whose ids are taken are skipped).
    #[arg(long)]
    pub force: bool,
}

/// Signature algorithm of the certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lower")]
pub enum SignAlg {
    /// Ed25519 (default).
    Ed25519,
    /// Ed448.
    Ed448,
}

impl From<SignAlg> for hush_crypto::SignAlgorithm {
    fn from(a: SignAlg) -> Self {
        match a {
            SignAlg::Ed25519 => hush_crypto::SignAlgorithm::Ed25519,
            SignAlg::Ed448 => hush_crypto::SignAlgorithm::Ed448,
        }
    }
}

fn parse_password(s: &str) -> Result<BasicAuth, String> {
    BasicAuth::new(s)
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Server's fully qualified domain name: the common name of the TLS certificate and the host of
    /// the printed server address.
    #[arg(short = 'n', long, value_name = "FQDN")]
    pub fqdn: Option<String>,

    /// Server's IP address, used as certificate common name and address host when --fqdn is not given.
    #[arg(long, value_name = "IP", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub ip: IpAddr,

    /// Password clients need to create queues on this server ([AUTH] create_password); it becomes
    /// part of the server address. Printable ASCII without whitespace, '@', ':' and '/'.
    /// Default: a random 32-byte password.
    #[arg(long, value_name = "PASSWORD", value_parser = parse_password, conflicts_with = "no_password")]
    pub password: Option<BasicAuth>,

    /// Allow anyone to create queues (no create_password; recommended for public servers).
    #[arg(long)]
    pub no_password: bool,

    /// Signature algorithm of the CA and TLS certificates.
    #[arg(short = 'a', long, value_enum, ignore_case = true, default_value_t = SignAlg::Ed25519)]
    pub sign_algorithm: SignAlg,

    /// TCP port to serve SMP on ([TRANSPORT] port).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Enable the loopback control port (default port 5224) with random admin and user passwords.
    #[arg(long, value_name = "PORT", num_args = 0..=1, default_missing_value = DEFAULT_CONTROL_PORT_STR)]
    pub control_port: Option<u16>,

    /// Keep queues and messages in memory only ([STORE_LOG] enable = off): they are lost on restart.
    #[arg(long)]
    pub disable_store_log: bool,

    /// Overwrite an existing configuration (the old server identity is lost).
    #[arg(long)]
    pub force: bool,

    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// `DEFAULT_CONTROL_PORT` as text for clap (kept in sync by a unit test).
const DEFAULT_CONTROL_PORT_STR: &str = "5224";

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info`, `debug`, `smp_server=debug`);
    /// env RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct CertArgs {
    /// Signature algorithm of the new certificate (default: that of the current server.crt).
    #[arg(short = 'a', long, value_enum, ignore_case = true)]
    pub sign_algorithm: Option<SignAlg>,

    /// Common name of the new certificate (default: that of the current server.crt).
    #[arg(long, value_name = "FQDN")]
    pub cn: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CONTROL_PORT;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        assert_eq!(DEFAULT_CONTROL_PORT_STR, DEFAULT_CONTROL_PORT.to_string());
    }

    #[test]
    fn parses_init_options() {
        let cli = Cli::try_parse_from([
            "smp-server",
            "--config-dir",
            "/tmp/c",
            "init",
            "-n",
            "relay.example.com",
            "--password",
            "secret",
            "-a",
            "ED448",
            "--control-port",
            "-y",
        ])
        .unwrap();
        let Command::Init(a) = cli.command else {
            panic!("not init")
        };
        assert_eq!(a.fqdn.as_deref(), Some("relay.example.com"));
        assert_eq!(a.password.unwrap().as_str(), "secret");
        assert_eq!(a.sign_algorithm, SignAlg::Ed448);
        assert_eq!(a.control_port, Some(DEFAULT_CONTROL_PORT));
        assert!(a.yes);
        assert_eq!(cli.config_dir, PathBuf::from("/tmp/c"));
    }

    #[test]
    fn rejects_bad_password_and_conflicts() {
        assert!(Cli::try_parse_from(["smp-server", "init", "--password", "a@b"]).is_err());
        assert!(
            Cli::try_parse_from(["smp-server", "init", "--password", "ab", "--no-password"])
                .is_err()
        );
    }
}
