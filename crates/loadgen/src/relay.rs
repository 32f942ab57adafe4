//! A relay for measurements: the real `smp-server` binary in its own process, initialised in a
//! fresh directory (as `smp-server init --no-password`), listening on 127.0.0.1:<free port>.

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hush_proto::address::ServerWithAuth;
use smp_server::ServerPaths;
use smp_server::init::{InitOptions, PasswordChoice};

use crate::LoadError;

/// How to start the relay.
#[derive(Clone, Debug)]
pub struct RelaySpawn {
    /// The `smp-server` binary (use the release build for figures).
    pub binary: PathBuf,
    /// Directory for `config/` and `data/`; must not already hold a server.
    pub dir: PathBuf,
    /// `[LIMITS] max_connections`.
    pub max_connections: usize,
    /// `[STORE_LOG] enable` (on = SQLite store, the default of `smp-server init`).
    pub store_log: bool,
    /// `--log-level` of the relay.
    pub log_level: String,
}

/// A running relay process; stopped with SIGTERM (then waited for) when dropped.
#[derive(Debug)]
pub struct SpawnedRelay {
    child: Child,
    pub addr: SocketAddr,
    pub server: ServerWithAuth,
}

impl SpawnedRelay {
    pub fn start(spec: &RelaySpawn) -> Result<SpawnedRelay, LoadError> {
        let paths = ServerPaths {
            config_dir: spec.dir.join("config"),
            data_dir: spec.dir.join("data"),
        };
        smp_server::init::init(&InitOptions {
            paths: paths.clone(),
            fqdn: None,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            password: PasswordChoice::None,
            sign_algorithm: hush_crypto::SignAlgorithm::Ed25519,
            port: 5223,
            control_port: None,
            store_log: spec.store_log,
            force: false,
        })
        .map_err(|e| LoadError::Relay(format!("init in {}: {e}", spec.dir.display())))?;
        rewrite_ini(
            &paths.ini_file(),
            &[
                ("TRANSPORT", "port", "0".to_string()),
                ("TRANSPORT", "bind", "127.0.0.1".to_string()),
                ("METRICS", "enable", "off".to_string()),
                (
                    "LIMITS",
                    "max_connections",
                    spec.max_connections.to_string(),
                ),
                // Every measurement client connects from 127.0.0.1.
                ("LIMITS", "new_queues_per_minute_per_ip", "0".to_string()),
            ],
        )?;
        let fp = smp_server::init::check_fingerprint(&paths)
            .map_err(|e| LoadError::Relay(format!("fingerprint: {e}")))?;

        let mut child = Command::new(&spec.binary)
            .arg("--config-dir")
            .arg(&paths.config_dir)
            .arg("--data-dir")
            .arg(&paths.data_dir)
            .arg("start")
            .arg("--log-level")
            .arg(&spec.log_level)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| LoadError::Relay(format!("{}: {e}", spec.binary.display())))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(LoadError::Relay("no stdout pipe".into()));
        };
        let mut lines = std::io::BufReader::new(stdout).lines();
        let addr: SocketAddr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(a) = line.strip_prefix("Listening on ") {
                        match a.trim().parse() {
                            Ok(a) => break a,
                            Err(_) => {
                                let _ = child.kill();
                                return Err(LoadError::Relay(format!("bad address line: {line}")));
                            }
                        }
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(LoadError::Relay("exited before listening".into()));
                }
            }
        };
        // Keep draining stdout so that the relay never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let text = format!(
            "smp://{}@127.0.0.1:{}",
            hush_proto::encoding::base64url_encode(&fp),
            addr.port()
        );
        let server = ServerWithAuth::parse(&text).map_err(|e| LoadError::Address(e.to_string()))?;
        Ok(SpawnedRelay {
            child,
            addr,
            server,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for the process (SIGKILL if `kill` cannot be run).
    pub fn stop(&mut self) {
        let term = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for SpawnedRelay {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// Sets `key = value` in `[section]` of an ini file (replacing an existing line, or adding it
/// right after the section header; the section is appended when missing).
pub fn rewrite_ini(ini: &Path, set: &[(&str, &str, String)]) -> Result<(), LoadError> {
    let text = std::fs::read_to_string(ini)?;
    std::fs::write(ini, rewrite_ini_text(&text, set))?;
    Ok(())
}

/// The text transformation of [`rewrite_ini`].
pub fn rewrite_ini_text(text: &str, set: &[(&str, &str, String)]) -> String {
    let mut out = String::new();
    let mut section = String::new();
    let mut seen_sections: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t.trim_matches(|c| c == '[' || c == ']').to_string();
        }
        let key = t.split('=').next().unwrap_or("").trim();
        let replaced = !t.starts_with('#')
            && !t.starts_with(';')
            && set.iter().any(|(s, k, _)| *s == section && *k == key);
        if !replaced {
            out.push_str(line);
            out.push('\n');
        }
        if t.starts_with('[') {
            seen_sections.push(section.clone());
            for (s, k, v) in set {
                if *s == section {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
    }
    for (s, k, v) in set {
        if !seen_sections.iter().any(|x| x == s) {
            out.push_str(&format!("\n[{s}]\n{k} = {v}\n"));
            seen_sections.push((*s).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_rewrite_replaces_and_adds() {
        let text =
            "[TRANSPORT]\n# port = 1\nport = 5223\nhost = x\n[LIMITS]\nmax_connections = 10000\n";
        let out = rewrite_ini_text(
            text,
            &[
                ("TRANSPORT", "port", "0".into()),
                ("LIMITS", "max_connections", "20000".into()),
                ("METRICS", "enable", "off".into()),
            ],
        );
        assert_eq!(
            out,
            "[TRANSPORT]\nport = 0\n# port = 1\nhost = x\n[LIMITS]\nmax_connections = 20000\n\n[METRICS]\nenable = off\n"
        );
    }
}
