//! The servers of an abuse run as separate processes, from a chosen binary directory (so that
//! the same tool measures an older build and the current one). Each server is initialised by
//! its **own** `init` command (its configuration is whatever that version writes), then a few
//! keys are set for loopback use (free ports, no metrics) plus the caller's `--set` overrides.
//! Nothing here writes a key that an older server does not know unless the caller asks.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use hush_proto::address::ServerWithAuth;

use crate::LoadError;
use crate::procfs::{MemStatus, mem_status};
use crate::relay::rewrite_ini;

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One ini override: `<server>:<SECTION>.<key>=<value>` (server: smp, ntf, push).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IniSet {
    pub server: String,
    pub section: String,
    pub key: String,
    pub value: String,
}

impl IniSet {
    pub fn parse(s: &str) -> Result<IniSet, String> {
        let (server, rest) = s
            .split_once(':')
            .ok_or("expected <smp|ntf|push>:<SECTION>.<key>=<value>")?;
        let (path, value) = rest.split_once('=').ok_or("missing =<value>")?;
        let (section, key) = path.split_once('.').ok_or("expected SECTION.key")?;
        if !matches!(server, "smp" | "ntf" | "push") {
            return Err(format!("unknown server {server} (smp, ntf or push)"));
        }
        Ok(IniSet {
            server: server.into(),
            section: section.trim().into(),
            key: key.trim().into(),
            value: value.trim().into(),
        })
    }
}

fn sets_for<'a>(sets: &'a [IniSet], server: &str) -> Vec<(&'a str, &'a str, String)> {
    sets.iter()
        .filter(|s| s.server == server)
        .map(|s| (s.section.as_str(), s.key.as_str(), s.value.clone()))
        .collect()
}

/// A server process; SIGTERM (then SIGKILL after 5 s) when stopped or dropped.
#[derive(Debug)]
pub struct ServerProc {
    pub name: &'static str,
    child: Child,
    pub log: PathBuf,
}

impl ServerProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Exit status text if it exited.
    pub fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(s)) => Some(s.to_string()),
            _ => None,
        }
    }

    pub fn mem(&self) -> Option<MemStatus> {
        mem_status(self.pid()).ok()
    }

    #[allow(unsafe_code)] // kill(2) on our own child, SAFETY below
    pub fn stop(&mut self) {
        if !self.alive() {
            return;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_init(mut cmd: Command, what: &str) -> Result<String, LoadError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LoadError::Relay(format!("{what} init: {e}")))?;
    if !out.status.success() {
        return Err(LoadError::Relay(format!(
            "{what} init failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts `cmd` (stderr to `log`), waits until `pick` accepts a stdout line, keeps draining
/// stdout afterwards. Returns the process and every value `pick` produced until `done`.
fn start_proc(
    name: &'static str,
    mut cmd: Command,
    log: &Path,
    want: usize,
    pick: impl Fn(&str) -> Option<String> + Send + 'static,
) -> Result<(ServerProc, Vec<String>), LoadError> {
    let log_file = std::fs::File::create(log)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .map_err(|e| LoadError::Relay(format!("{name}: {e}")))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err(LoadError::Relay(format!("{name}: no stdout")));
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(v) = pick(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut proc = ServerProc {
        name,
        child,
        log: log.to_path_buf(),
    };
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    while got.len() < want {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(v) => got.push(v),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !proc.alive() || left.is_zero() {
                    proc.stop();
                    return Err(LoadError::Relay(format!(
                        "{name} did not start (see {})",
                        log.display()
                    )));
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                proc.stop();
                return Err(LoadError::Relay(format!(
                    "{name} exited before listening (see {})",
                    log.display()
                )));
            }
        }
    }
    Ok((proc, got))
}

fn bin(dir: &Path, name: &str) -> Result<PathBuf, LoadError> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(LoadError::Relay(format!("no {name} in {}", dir.display())))
    }
}

/// A spawned relay.
#[derive(Debug)]
pub struct Relay {
    pub proc: ServerProc,
    pub addr: SocketAddr,
    pub server: ServerWithAuth,
    pub dir: PathBuf,
}

/// `smp-server init --no-password` (SQLite store) in `dir`, `[TRANSPORT] port = 0`, bind
/// 127.0.0.1, metrics off, `[LIMITS] max_connections`, then the `smp:` overrides.
pub fn relay(
    bin_dir: &Path,
    dir: &Path,
    max_connections: usize,
    sets: &[IniSet],
) -> Result<Relay, LoadError> {
    let exe = bin(bin_dir, "smp-server")?;
    let config = dir.join("config");
    let data = dir.join("data");
    let mut init = Command::new(&exe);
    init.arg("--config-dir")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["init", "--no-password", "-y", "--ip", "127.0.0.1"]);
    run_init(init, "smp-server")?;
    let ini = config.join("smp-server.ini");
    let mut set = vec![
        ("TRANSPORT", "port", "0".to_string()),
        ("TRANSPORT", "bind", "127.0.0.1".to_string()),
        ("METRICS", "enable", "off".to_string()),
        ("LIMITS", "max_connections", max_connections.to_string()),
    ];
    set.extend(sets_for(sets, "smp"));
    rewrite_ini(&ini, &set)?;
    let paths = smp_server::ServerPaths {
        config_dir: config.clone(),
        data_dir: data.clone(),
    };
    let fp = smp_server::init::check_fingerprint(&paths)
        .map_err(|e| LoadError::Relay(format!("fingerprint: {e}")))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--config-dir")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["start", "--log-level", "warn"]);
    let (proc, got) = start_proc("smp-server", cmd, &dir.join("smp-server.log"), 1, |l| {
        l.strip_prefix("Listening on ")
            .map(|a| a.trim().to_string())
    })?;
    let addr: SocketAddr = got[0]
        .parse()
        .map_err(|_| LoadError::Relay(format!("bad address {}", got[0])))?;
    let text = format!(
        "smp://{}@127.0.0.1:{}",
        hush_proto::encoding::base64url_encode(&fp),
        addr.port()
    );
    let server = ServerWithAuth::parse(&text).map_err(|e| LoadError::Address(e.to_string()))?;
    Ok(Relay {
        proc,
        addr,
        server,
        dir: dir.to_path_buf(),
    })
}

/// apns-sink + push-server (+ optionally an ntf-server using it remotely).
#[derive(Debug)]
pub struct PushStack {
    pub sink: ServerProc,
    pub sink_addr: SocketAddr,
    pub sink_read: SocketAddr,
    pub push: ServerProc,
    pub push_addr: SocketAddr,
    /// SHA-256 of the push-server's certificate.
    pub push_fingerprint: [u8; 32],
    /// The `[CLIENTS]` credential `init` created (name `ntf`).
    pub credential: String,
    pub dir: PathBuf,
}

const TEAM_ID: &str = "LOADGEN001";
const KEY_ID: &str = "LOADGENK01";

/// apns-sink (its own certificate, provider tokens checked against a fresh ES256 key) and
/// `push-server init` in `dir/push`, `[APNS]` test endpoint = the sink, then the `push:`
/// overrides.
pub fn push_stack(bin_dir: &Path, dir: &Path, sets: &[IniSet]) -> Result<PushStack, LoadError> {
    let sink_exe = bin(bin_dir, "apns-sink")?;
    let push_exe = bin(bin_dir, "push-server")?;
    let pdir = dir.join("push");
    std::fs::create_dir_all(dir)?;
    let key = push_server::jwt::Es256Key::generate()
        .and_then(|k| k.to_pkcs8_pem())
        .map_err(|e| LoadError::Relay(format!("APNs key: {e}")))?;
    let key_file = dir.join("apns-key.p8");
    std::fs::write(&key_file, &key)?;
    let cert = dir.join("apns-sink.crt");
    let mut cmd = Command::new(&sink_exe);
    cmd.arg("start")
        .args(["--listen", "127.0.0.1:0", "--read-listen", "127.0.0.1:0"])
        .arg("--jwt-key")
        .arg(&key_file)
        .args(["--key-id", KEY_ID, "--team-id", TEAM_ID])
        .arg("--cert-out")
        .arg(&cert)
        .env("RUST_LOG", "warn");
    let (sink, got) = start_proc("apns-sink", cmd, &dir.join("apns-sink.log"), 3, |l| {
        if let Some(a) = l.strip_prefix("apns-sink listening on ") {
            Some(format!("L{}", a.trim()))
        } else if let Some(a) = l.strip_prefix("read API on http://") {
            Some(format!("R{}", a.trim().trim_end_matches("/received")))
        } else {
            l.starts_with("certificate written")
                .then(|| "C".to_string())
        }
    })?;
    let find = |p: char| -> Result<SocketAddr, LoadError> {
        got.iter()
            .find_map(|v| v.strip_prefix(p).and_then(|a| a.parse().ok()))
            .ok_or_else(|| LoadError::Relay("apns-sink addresses".into()))
    };
    let (sink_addr, sink_read) = (find('L')?, find('R')?);

    let mut init = Command::new(&push_exe);
    init.arg("--dir").arg(&pdir).args([
        "init",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--client-name",
        "ntf",
    ]);
    run_init(init, "push-server")?;
    std::fs::copy(&key_file, pdir.join("apns-key.p8"))?;
    let ini = pdir.join(push_server::config::INI_FILE);
    let text = std::fs::read_to_string(&ini)?;
    let credential = ini_value(&text, "CLIENTS", "ntf")
        .ok_or_else(|| LoadError::Relay("no ntf credential in push-server.ini".into()))?;
    let mut set = vec![
        ("APNS", "enable", "on".to_string()),
        ("APNS", "team_id", TEAM_ID.to_string()),
        ("APNS", "key_id", KEY_ID.to_string()),
        ("APNS", "key_file", "apns-key.p8".to_string()),
        ("APNS", "prod_url", String::new()),
        ("APNS", "dev_url", String::new()),
        (
            "APNS",
            "test_url",
            format!("https://127.0.0.1:{}", sink_addr.port()),
        ),
        ("APNS", "test_ca_file", cert.display().to_string()),
        // The payloads the ntf-server builds (verification pushes) must pass.
        ("APNS", "max_payload", "8192".to_string()),
    ];
    set.extend(sets_for(sets, "push"));
    rewrite_ini(&ini, &set)?;
    let fp_text = std::fs::read_to_string(pdir.join(push_server::config::FINGERPRINT_FILE))?;
    let push_fingerprint = push_api::parse_fingerprint(fp_text.trim())
        .ok_or_else(|| LoadError::Relay("push-server fingerprint".into()))?;
    let mut cmd = Command::new(&push_exe);
    cmd.arg("--dir")
        .arg(&pdir)
        .arg("start")
        .env("RUST_LOG", "warn");
    let (push, got) = start_proc("push-server", cmd, &dir.join("push-server.log"), 1, |l| {
        l.strip_prefix("push-server listening on ")
            .map(|a| a.trim().to_string())
    })?;
    let push_addr = got[0]
        .parse()
        .map_err(|_| LoadError::Relay(format!("bad address {}", got[0])))?;
    Ok(PushStack {
        sink,
        sink_addr,
        sink_read,
        push,
        push_addr,
        push_fingerprint,
        credential,
        dir: pdir,
    })
}

/// A spawned ntf-server (push-server remote).
#[derive(Debug)]
pub struct Ntf {
    pub proc: ServerProc,
    pub addr: SocketAddr,
    pub key_hash: [u8; 32],
    pub dir: PathBuf,
}

/// `ntf-server init` in `dir/ntf`, port 0 on 127.0.0.1, `[PUSH] mode = remote` to `push`,
/// `[POLICY] mode = reference` (every notification pushed at once), then the `ntf:`
/// overrides.
pub fn ntf(
    bin_dir: &Path,
    dir: &Path,
    push: &PushStack,
    sets: &[IniSet],
) -> Result<Ntf, LoadError> {
    let exe = bin(bin_dir, "ntf-server")?;
    let ndir = dir.join("ntf");
    let config = ndir.join("config");
    let data = ndir.join("data");
    let mut init = Command::new(&exe);
    init.arg("--config-dir")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["init", "-y", "--sign-algorithm", "ED25519"]);
    run_init(init, "ntf-server")?;
    let ini = config.join("ntf-server.ini");
    let mut set = vec![
        ("TRANSPORT", "port", "0".to_string()),
        ("TRANSPORT", "bind", "127.0.0.1".to_string()),
        ("METRICS", "enable", "off".to_string()),
        ("POLICY", "mode", "reference".to_string()),
        ("PUSH", "mode", "remote".to_string()),
        ("PUSH", "host", "127.0.0.1".to_string()),
        ("PUSH", "port", push.push_addr.port().to_string()),
        ("PUSH", "fingerprint", hex::encode(push.push_fingerprint)),
        ("PUSH", "credential", push.credential.clone()),
    ];
    set.extend(sets_for(sets, "ntf"));
    rewrite_ini(&ini, &set)?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--config-dir")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["start", "--log-level", "warn"]);
    let (proc, got) = start_proc("ntf-server", cmd, &dir.join("ntf-server.log"), 2, |l| {
        if let Some(a) = l.strip_prefix("Listening on ") {
            Some(format!("L{}", a.trim()))
        } else {
            l.strip_prefix("Fingerprint: ")
                .map(|f| format!("F{}", f.trim()))
        }
    })?;
    let addr: SocketAddr = got
        .iter()
        .find_map(|v| v.strip_prefix('L').and_then(|a| a.parse().ok()))
        .ok_or_else(|| LoadError::Relay("ntf-server address".into()))?;
    let key_hash: [u8; 32] = got
        .iter()
        .find_map(|v| v.strip_prefix('F'))
        .and_then(|f| hush_proto::encoding::base64url_decode(f).ok())
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| LoadError::Relay("ntf-server fingerprint".into()))?;
    Ok(Ntf {
        proc,
        addr,
        key_hash,
        dir: ndir,
    })
}

/// `key = value` in `[section]` of ini text.
pub fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut cur = "";
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            cur = t.trim_matches(|c| c == '[' || c == ']');
            continue;
        }
        if cur == section
            && let Some((k, v)) = t.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Total size of the files under `dir` (bytes).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_overrides_and_ini_values() {
        let s = IniSet::parse("ntf:POLICY.mode = budget").unwrap();
        assert_eq!(
            (s.server.as_str(), s.section.as_str(), s.key.as_str()),
            ("ntf", "POLICY", "mode")
        );
        assert_eq!(s.value, "budget");
        assert!(IniSet::parse("x:A.b=c").is_err());
        assert!(IniSet::parse("smp:Ab=c").is_err());
        assert!(IniSet::parse("smp:A.b").is_err());
        let t = "[A]\nx = 1\n[CLIENTS]\n# c\nntf = abc=\n";
        assert_eq!(ini_value(t, "CLIENTS", "ntf").as_deref(), Some("abc="));
        assert_eq!(ini_value(t, "A", "y"), None);
    }
}
