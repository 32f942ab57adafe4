//! Helpers the servers' integration tests share (feature `test-support`, enabled only in the
//! servers' `[dev-dependencies]`; never in a server build):
//!
//! * running a server binary as an operator does: [`dirs_command`] (`--config-dir` /
//!   `--data-dir` without the environment of the developer's shell), [`run_ok`] (`init`),
//!   [`spawn_lines`] (`start`, as a [`Killed`] child: killed and reaped when the test ends, also
//!   on panic), [`output_text`];
//! * reading what `start` prints: [`stdout_lines`], [`wait_for_lines`], [`after`];
//! * the configuration-error checks every server's `config_errors` test makes:
//!   [`check_unknown_key`], [`check_on_off`], [`check_out_of_range`];
//! * a line client for a control port: [`ControlClient`].

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::str::FromStr;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::config::{ConfigError, ConfigWarning, warning_line};

/// A spawned server, killed and reaped when dropped (also when the test panics).
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `exe --config-dir etc --data-dir var`, without the variables that would override those
/// directories or the log level (`<env_prefix>_CFG_PATH`, `<env_prefix>_LOG_PATH`, `RUST_LOG`):
/// e.g. `dirs_command(env!("CARGO_BIN_EXE_smp-server"), "SMP_SERVER", &etc, &var)`.
pub fn dirs_command(exe: &str, env_prefix: &str, etc: &Path, var: &Path) -> Command {
    let mut c = Command::new(exe);
    c.arg("--config-dir")
        .arg(etc)
        .arg("--data-dir")
        .arg(var)
        .env_remove(format!("{env_prefix}_CFG_PATH"))
        .env_remove(format!("{env_prefix}_LOG_PATH"))
        .env_remove("RUST_LOG");
    c
}

/// Runs `cmd` to its end with stdin closed and asserts that it succeeded (`what` failed: its
/// stdout and stderr otherwise); returns its stdout.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Spawns `cmd` with stdin closed and stdout piped (stderr as `cmd` says: inherited unless
/// set) as a [`Killed`] child, and the lines of its stdout ([`stdout_lines`]).
pub fn spawn_lines(cmd: &mut Command) -> (Killed, Receiver<String>) {
    let mut child = Killed(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = stdout_lines(&mut child.0);
    (child, rx)
}

/// A finished command's stdout followed by its stderr (for assertions on what it said).
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The lines of a spawned child's stdout (taken from it; spawn it with `Stdio::piped()`), read
/// by a thread until the child closes it, so that a test can wait for a line with a timeout.
pub fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Hands each line of `rx` to `f` until it returns `Some`; `Err` with the lines seen when no
/// line came for `timeout` (or stdout was closed) before that.
pub fn wait_for_lines<T>(
    rx: &Receiver<String>,
    timeout: Duration,
    mut f: impl FnMut(&str) -> Option<T>,
) -> Result<T, Vec<String>> {
    let mut seen = Vec::new();
    loop {
        let Ok(line) = rx.recv_timeout(timeout) else {
            return Err(seen);
        };
        if let Some(v) = f(&line) {
            return Ok(v);
        }
        seen.push(line);
    }
}

/// What follows `prefix` in `line`, trimmed and parsed (`after::<SocketAddr>(l, "Listening on ")`);
/// `None` if the line does not start with `prefix`. Panics if the rest does not parse.
pub fn after<T: FromStr>(line: &str, prefix: &str) -> Option<T>
where
    T::Err: std::fmt::Debug,
{
    let rest = line.strip_prefix(prefix)?.trim();
    Some(
        rest.parse()
            .unwrap_or_else(|e| panic!("{prefix}{rest}: {e:?}")),
    )
}

type Parsed<C> = Result<(C, Vec<ConfigWarning>), ConfigError>;

/// `text` has one unknown key and nothing else wrong: it parses with exactly one warning, shown
/// as `warning` (`warning: <file>: line N: [SECTION] key: unknown key; ignored`).
pub fn check_unknown_key<C>(
    file: &str,
    parse: impl Fn(&str) -> Parsed<C>,
    text: &str,
    warning: &str,
) {
    let (_, w) = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(warning_line(Path::new(file), &w[0]), warning);
}

/// `[section] key` takes `on` and `off` only: `on`/`off` read as true/false (`get`), and
/// `yes`, `no`, `true`, `false`, `On` are errors naming file, line, section and key.
pub fn check_on_off<C>(
    file: &str,
    parse: impl Fn(&str) -> Parsed<C>,
    section: &str,
    key: &str,
    get: impl Fn(&C) -> bool,
) {
    for (v, want) in [("off", false), ("on", true)] {
        let (c, _) =
            parse(&format!("[{section}]\n{key} = {v}\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(get(&c), want, "[{section}] {key} = {v}");
    }
    for bad in ["yes", "no", "true", "false", "On"] {
        let Err(e) = parse(&format!("[{section}]\n{key} = {bad}\n")) else {
            panic!("[{section}] {key} = {bad} accepted");
        };
        assert_eq!(
            e.to_string(),
            format!("{file}: line 2: [{section}] {key} = \"{bad}\": expected on or off")
        );
    }
}

/// `[section] key = value` on line 3 is out of range: the error names file, line, section and
/// key, and says `expected` (e.g. `a whole number from 1 to 600`).
pub fn check_out_of_range<C>(
    file: &str,
    parse: impl Fn(&str) -> Parsed<C>,
    section: &str,
    key: &str,
    value: &str,
    expected: &str,
) {
    let Err(e) = parse(&format!("[{section}]\n\n{key} = {value}\n")) else {
        panic!("[{section}] {key} = {value} accepted");
    };
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.key(), Some((section, key)));
    assert_eq!(
        e.to_string(),
        format!("{file}: line 3: [{section}] {key} = \"{value}\": expected {expected}")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_parses_what_follows_the_prefix() {
        let a: Option<std::net::SocketAddr> = after("Listening on 127.0.0.1:5 ", "Listening on ");
        assert_eq!(a, Some(([127, 0, 0, 1], 5).into()));
        assert_eq!(after::<u16>("Fingerprint: x", "Listening on "), None);
    }

    #[test]
    fn lines_are_waited_for_and_a_closed_stdout_returns_what_was_seen() {
        let (_child, rx) =
            spawn_lines(Command::new("sh").args(["-c", "echo one; echo two; echo three"]));
        let t = Duration::from_secs(20);
        assert_eq!(wait_for_lines(&rx, t, |l| (l == "two").then_some(2)), Ok(2));
        assert_eq!(
            wait_for_lines(&rx, t, |l| (l == "four").then_some(4)),
            Err(vec!["three".to_string()])
        );
    }

    #[test]
    #[should_panic(expected = "init failed:\nout\n\nerr\n")]
    fn run_ok_fails_with_what_the_command_said() {
        assert_eq!(
            run_ok(Command::new("sh").args(["-c", "echo ok"]), "echo"),
            "ok\n"
        );
        run_ok(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            "init",
        );
    }

    #[test]
    fn output_text_is_stdout_then_stderr() {
        let o = Command::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .output()
            .unwrap();
        assert_eq!(output_text(&o), "out\nerr\n");
    }
}

/// A client of a hush control port (`crate::control`): one command per line, one reply line each.
#[derive(Debug)]
pub struct ControlClient {
    rd: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
}

impl ControlClient {
    /// Connects without reading the banner.
    pub async fn raw(addr: std::net::SocketAddr) -> ControlClient {
        let (rd, wr) = tokio::net::TcpStream::connect(addr)
            .await
            .expect("control port connects")
            .into_split();
        ControlClient {
            rd: tokio::io::BufReader::new(rd),
            wr,
        }
    }

    /// Connects and checks the two banner lines (`<name> control port`, the help hint).
    pub async fn connect(addr: std::net::SocketAddr, name: &str) -> ControlClient {
        let mut c = ControlClient::raw(addr).await;
        assert_eq!(
            c.line().await.as_deref(),
            Some(format!("{name} control port").as_str())
        );
        assert_eq!(
            c.line().await.as_deref(),
            Some("'help' for supported commands")
        );
        c
    }

    /// The next line (without its `\n`; 10 s at most), or `None` at EOF or after a reset.
    pub async fn line(&mut self) -> Option<String> {
        use tokio::io::AsyncBufReadExt;
        let mut s = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), self.rd.read_line(&mut s))
            .await
            .expect("no reply")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        assert_eq!(s.pop(), Some('\n'), "{s:?}");
        Some(s)
    }

    /// Sends `l` and a newline.
    pub async fn send(&mut self, l: &str) {
        self.send_bytes(l.as_bytes())
            .await
            .expect("control port write");
        self.send_bytes(b"\n").await.expect("control port write");
    }

    /// Sends raw bytes (a partial or over-long line); the server may have closed already.
    pub async fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.wr.write_all(b).await
    }

    /// Sends a command and returns its reply line.
    pub async fn cmd(&mut self, l: &str) -> String {
        self.send(l).await;
        self.line().await.expect("connection closed")
    }
}
