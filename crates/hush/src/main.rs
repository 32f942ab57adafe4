//! `hush`: the command line of the hush messaging stack.
//!
//! * `hush up` — relay + ntf-server + push-server + apns-sink in one process ([`up`]).
//! * `hush daemon` — the always-connected receiver with local notifications ([`daemon`]).
//! * `hush init | invite | connect | address | accept | send | chat | history | delete |
//!   group | notify | status | contacts` — a chat client on hush-agent ([`session`], [`chat`]).

mod assets;
mod chat;
mod daemon;
mod demo;
mod notify;
mod profile;
mod push;
mod session;
mod up;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use profile::{NotifyMode, Profile};
use session::{Output, Session};

#[derive(Debug, Parser)]
#[command(
    name = "hush",
    version,
    about = "hush: private messaging without user identities"
)]
struct Cli {
    /// Profile directory (agent database, contacts, history).
    #[arg(long, short = 'p', global = true, env = "HUSH_PROFILE")]
    profile: Option<PathBuf>,
    /// Output JSON lines (for scripts).
    #[arg(long, global = true)]
    json: bool,
    /// SOCKS5 proxy for every connection to relays and ntf-servers (e.g. Tor:
    /// 127.0.0.1:9050; `.onion` hosts of server addresses are preferred and reached through
    /// it). Syntax `[user:password@ | @]ip[:port]`; without credentials each server gets its
    /// own isolation credentials (separate Tor circuits).
    #[arg(long, global = true, env = "HUSH_SOCKS_PROXY", value_name = "PROXY")]
    socks_proxy: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run relay + ntf-server + push-server + apns-sink in one process (loopback).
    Up {
        /// Data directory (default $XDG_DATA_HOME/hush, else ./hush-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// First of five consecutive ports: relay, ntf-server, push-server, apns-sink, sink read
        /// API. 0 = free ports.
        #[arg(long, default_value_t = up::DEFAULT_PORT_BASE)]
        port_base: u16,
        /// Tests and demos only: periodic (TCRN) pushes every few seconds instead of every 20
        /// minutes (TCRN minute = 0.1 s, sweep every 0.5 s, shortest interval 1 minute).
        #[arg(long)]
        dev_fast_periodic: bool,
    },
    /// Create the local profile.
    Init {
        #[arg(long)]
        name: String,
        /// Relay for new queues (default: the `hush up` stack in --up-dir).
        #[arg(long)]
        relay: Option<String>,
        /// Data directory of `hush up` (to find its relay, ntf-server and apns-sink).
        #[arg(long)]
        up_dir: Option<PathBuf>,
        /// ntf-server for push notifications (default: the `hush up` stack's).
        #[arg(long)]
        ntf: Option<String>,
        /// apns-sink read API used by `hush device` (default: the `hush up` stack's).
        #[arg(long)]
        sink_read: Option<String>,
    },
    /// Device simulator: read pushes from apns-sink, decrypt, fetch with GET, print.
    Device {
        /// Stop after this many message pushes.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this long.
        #[arg(long)]
        run_for: Option<String>,
    },
    /// Print a one-time invitation: its short link (`https://<relay>/i#…`) and the full link.
    Invite {
        /// Create the queue on this relay instead of the profile's.
        #[arg(long)]
        relay: Option<String>,
    },
    /// Connect with an invitation link or a contact address, short (`/i#`, `/a#`) or full —
    /// also one a SimpleX Chat app user shared.
    Connect {
        link: String,
        #[arg(long)]
        relay: Option<String>,
    },
    /// Print this profile's contact address (created once): short link and full link.
    Address,
    /// Accept a contact request.
    Accept { name: String },
    /// Send a message to a contact.
    Send { name: String, message: Vec<String> },
    /// Interactive line-oriented chat on stdin/stdout.
    Chat,
    /// Message history with a contact (or #group).
    History {
        name: String,
        #[arg(short = 'n', default_value_t = 20)]
        limit: usize,
    },
    /// Delete a contact (its queues at the relay, too).
    Delete { name: String },
    /// Groups.
    Group {
        #[command(subcommand)]
        cmd: GroupCmd,
    },
    /// Set a contact's notification mode: connected | push | periodic | off.
    Notify {
        name: String,
        mode: String,
        /// Split mode: register the device token with the push-server and give the ntf-server
        /// only the opaque push handle.
        #[arg(long)]
        split: bool,
    },
    /// Contacts and their state.
    Contacts,
    /// What is connected, what is pending.
    Status,
    /// Two local users exchange messages; one notified by instant push, the other by the
    /// always-connected receiver; prints the latency of each path.
    Demo {
        /// Keep the demo's files here (default: a temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// The always-connected receiver.
    Daemon {
        /// PING a relay after this much silence (e.g. 600, 10m, 20s). Relays keep subscribed
        /// connections however long they are silent and drop unsubscribed ones after 6 h, so
        /// the default is 5 h; liveness and NAT state are kept by --keepalive.
        #[arg(long, default_value = "5h")]
        ping_interval: String,
        /// Kernel TCP keep-alive on the relay sockets: <idle>/<interval>/<count> (whole
        /// seconds; the TCP user timeout is idle + interval × count) or `off`. The default
        /// notices a silently vanished relay within 105 s.
        #[arg(long, default_value = "45s/15s/4")]
        keepalive: String,
        /// Longest reconnect backoff.
        #[arg(long, default_value = "60s")]
        reconnect_max: String,
        /// Command run for each new message (env: HUSH_FROM, HUSH_GROUP, HUSH_TEXT).
        #[arg(long)]
        on_message: Option<String>,
        /// Never use notify-send.
        #[arg(long)]
        no_desktop: bool,
        /// How often the idle-traffic statistics file is written.
        #[arg(long, default_value = "10m")]
        stats_interval: String,
        /// Stop after this long (measurements).
        #[arg(long)]
        run_for: Option<String>,
        /// Print the statistics of the last run and exit.
        #[arg(long)]
        stats: bool,
    },
    /// Packaging: write man pages and shell completions of hush, smp-server, ntf-server and
    /// push-server into OUT (man/, completions/{bash,zsh,fish}/).
    #[command(hide = true)]
    GenerateAssets {
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCmd {
    Create { name: String },
    Invite { group: String, name: String },
    Send { group: String, message: Vec<String> },
    List,
    Members { group: String },
}

/// Parses `600`, `600s`, `10m`, `2h`, `250ms`.
fn duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: u64 = num.parse().with_context(|| format!("bad duration {s:?}"))?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .with_context(|| format!("duration {s:?} too long"))
    };
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => secs(1)?,
        "m" | "min" => secs(60)?,
        "h" => secs(3600)?,
        _ => anyhow::bail!("bad duration unit in {s:?} (ms, s, m, h)"),
    };
    // timers add durations to "now": keep them far from overflowing
    if d > Duration::from_secs(10 * 365 * 24 * 3600) {
        anyhow::bail!("duration {s:?} too long (at most 10 years)");
    }
    Ok(d)
}

fn default_profile() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("hush").join("profile"),
        _ => PathBuf::from("hush-profile"),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUSH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let out = Output {
        json: cli.json,
        prefix: "",
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            out.error(&format!("{e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let out = Output {
        json: cli.json,
        prefix: "",
    };
    if let Some(p) = &cli.socks_proxy {
        let proxy = hush_transport::SocksProxy::parse(p)
            .map_err(|e| anyhow::anyhow!("--socks-proxy: {e}"))?;
        session::set_network(hush_transport::NetworkConfig::all_via(proxy));
    }
    let pdir = cli.profile.clone().unwrap_or_else(default_profile);
    let open = |relay: Option<String>| {
        let pdir = pdir.clone();
        async move {
            let p = Profile::open(&pdir)?;
            let r = session::relay_of(&p, relay.as_deref())?;
            Session::open(p, r, None, out).await
        }
    };
    match cli.command {
        Cmd::GenerateAssets { out } => assets::run(&out, <Cli as clap::CommandFactory>::command()),
        Cmd::Up {
            data_dir,
            port_base,
            dev_fast_periodic,
        } => {
            up::run(up::UpOptions {
                data_dir: data_dir.unwrap_or_else(up::default_data_dir),
                port_base,
                dev_fast_periodic,
            })
            .await
        }
        Cmd::Init {
            name,
            relay,
            up_dir,
            ntf,
            sink_read,
        } => {
            let stack = up::Addresses::load(&up_dir.unwrap_or_else(up::default_data_dir));
            let relay = match relay {
                Some(r) => r,
                None => stack
                    .as_ref()
                    .map_err(|e| anyhow::anyhow!("{e:#}"))?
                    .smp
                    .clone(),
            };
            let ntf = ntf.or_else(|| stack.as_ref().ok().map(|a| a.ntf.clone()));
            let sink_read =
                sink_read.or_else(|| stack.as_ref().ok().map(|a| a.apns_sink_read.clone()));
            if let Ok(a) = &stack {
                let p = Profile::open_or_create(&pdir)?;
                p.set_setting("push_server", &a.push_server)?;
                p.set_setting("push_fingerprint", &a.push_fingerprint)?;
            }
            hush_proto::address::ProtocolServer::parse(&relay)
                .map_err(|e| anyhow::anyhow!("bad relay address: {e}"))?;
            let p = Profile::open_or_create(&pdir)?;
            p.set_setting("name", &name)?;
            p.set_setting("relay", &relay)?;
            if let Some(n) = &ntf {
                p.set_setting("ntf", n)?;
            }
            if let Some(sr) = &sink_read {
                p.set_setting("sink_read", sr)?;
            }
            out.emit(
                "init",
                &format!(
                    "profile {name} in {} (relay {})",
                    pdir.display(),
                    session::short_relay(&relay)
                ),
                serde_json::json!({ "name": name, "relay": relay, "dir": pdir }),
            );
            Ok(())
        }
        Cmd::Invite { relay } => {
            let mut s = open(relay).await?;
            s.invite().await?;
            s.close().await;
            daemon::notify_running(&pdir);
            Ok(())
        }
        Cmd::Connect { link, relay } => {
            let mut s = open(relay).await?;
            s.connect(&link).await?;
            let r = s.flush(Duration::from_secs(10)).await;
            s.close().await;
            daemon::notify_running(&pdir);
            r
        }
        Cmd::Address => {
            let mut s = open(None).await?;
            s.address().await?;
            s.close().await;
            daemon::notify_running(&pdir);
            Ok(())
        }
        Cmd::Accept { name } => {
            let mut s = open(None).await?;
            let r = s.accept(&name).await;
            let r = match r {
                Ok(()) => s.flush(Duration::from_secs(10)).await,
                e => e,
            };
            s.close().await;
            daemon::notify_running(&pdir);
            r
        }
        Cmd::Send { name, message } => {
            let mut s = open(None).await?;
            let r = match s.send_text(&name, &message.join(" ")) {
                Ok(()) => s.flush(Duration::from_secs(15)).await,
                Err(e) => Err(e),
            };
            s.close().await;
            r
        }
        Cmd::Chat => {
            if let Some(pid) = daemon::running_pid(&pdir) {
                anyhow::bail!(
                    "hush daemon (pid {pid}) is receiving for this profile; stop it to chat \
                     interactively, or use one-shot commands (send, invite, connect…)"
                );
            }
            chat::run(open(None).await?).await
        }
        Cmd::Demo { dir, rounds } => demo::run(dir, rounds, cli.json).await,
        Cmd::Device { count, run_for } => {
            let p = Profile::open(&pdir)?;
            let r = session::relay_of(&p, None)?;
            push::device(
                p,
                r,
                out,
                count,
                run_for.as_deref().map(duration).transpose()?,
            )
            .await
            .map(|_| ())
        }
        Cmd::History { name, limit } => {
            let p = Profile::open(&pdir)?;
            let s = Session::open(p, placeholder_relay(&pdir)?, None, out).await?;
            let r = s.history(&name, limit);
            s.close().await;
            r
        }
        Cmd::Delete { name } => {
            let mut s = open(None).await?;
            let r = s.delete(&name).await;
            s.close().await;
            r
        }
        Cmd::Group { cmd } => {
            let mut s = open(None).await?;
            let r = match cmd {
                GroupCmd::Create { name } => s.group_create(&name),
                GroupCmd::Invite { group, name } => match s.group_invite(&group, &name) {
                    Ok(()) => s.flush(Duration::from_secs(15)).await,
                    Err(e) => Err(e),
                },
                GroupCmd::Send { group, message } => {
                    match s.group_send(&group, &message.join(" ")) {
                        Ok(_) => s.flush(Duration::from_secs(15)).await,
                        Err(e) => Err(e),
                    }
                }
                GroupCmd::List => {
                    for g in s.profile.groups()? {
                        println!("#{}", g.name);
                    }
                    Ok(())
                }
                GroupCmd::Members { group } => {
                    let g = s.profile.group_by_name(&group)?.context("no such group")?;
                    for m in s.profile.members(&g.gid)? {
                        println!("{} {}", m.name, m.status);
                    }
                    Ok(())
                }
            };
            s.close().await;
            r
        }
        Cmd::Notify { name, mode, split } => {
            let mode =
                NotifyMode::parse(&mode).context("mode: connected, push, periodic or off")?;
            let mut s = open(None).await?;
            let r = push::set_mode(&mut s, &name, mode, split).await;
            s.close().await;
            r
        }
        Cmd::Contacts => {
            let p = Profile::open(&pdir)?;
            let s = Session::open(p, placeholder_relay(&pdir)?, None, out).await?;
            let r = s.contacts();
            s.close().await;
            r
        }
        Cmd::Status => {
            let mut s = open(None).await?;
            let r = s.status().await;
            s.close().await;
            r
        }
        Cmd::Daemon {
            ping_interval,
            keepalive,
            reconnect_max,
            on_message,
            no_desktop,
            stats_interval,
            run_for,
            stats,
        } => {
            if stats {
                return daemon::print_stats(&pdir, cli.json);
            }
            let p = Profile::open(&pdir)?;
            let r = session::relay_of(&p, None)?;
            daemon::run(
                p,
                r,
                daemon::DaemonOptions {
                    ping_interval: duration(&ping_interval)?,
                    keepalive: daemon::parse_keepalive(&keepalive, duration)?,
                    reconnect_max: duration(&reconnect_max)?,
                    on_message,
                    no_desktop,
                    stats_interval: duration(&stats_interval)?,
                    run_for: run_for.as_deref().map(duration).transpose()?,
                },
                out,
            )
            .await
        }
    }
}

/// The profile's relay (local-only commands do not connect to it).
fn placeholder_relay(
    pdir: &std::path::Path,
) -> anyhow::Result<hush_proto::address::ProtocolServer> {
    let p = Profile::open(pdir)?;
    session::relay_of(&p, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("600").unwrap(), Duration::from_secs(600));
        assert_eq!(duration("20s").unwrap(), Duration::from_secs(20));
        assert_eq!(duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        for bad in [
            "",
            "m",
            "10x",
            "-1",
            "1.5s",
            "99999999999999999999",
            "999999999999999999h",
            "100000h",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
