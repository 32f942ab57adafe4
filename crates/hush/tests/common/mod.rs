//! Test helpers: real `hush` processes driven through stdin/stdout.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hush");

/// A running hush process with its output lines on a channel.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hush");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let n = name.to_string();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("[stderr] {l}"));
            }
            let _ = n;
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            name: name.to_string(),
        }
    }

    /// Waits for a line matching `pred`; panics with everything seen on timeout.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "{}: timed out waiting for {what}; output so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Like [`Proc::wait_for`], but a line already seen counts too.
    pub fn seen_or_wait(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        self.wait_for(what, Duration::from_secs(20), pred)
    }

    pub fn wait_line(&mut self, prefix: &str) -> String {
        let p = prefix.to_string();
        self.wait_for(prefix, Duration::from_secs(20), move |l| l.starts_with(&p))
    }

    pub fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().expect("stdin open");
        writeln!(s, "{line}").unwrap();
        s.flush().unwrap();
    }

    #[allow(unsafe_code)] // kill(2) on our own child, SAFETY below
    pub fn signal(&self, sig: i32) {
        let pid = self.child.id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Closes stdin and waits for exit (panics after `timeout`).
    pub fn finish(mut self, timeout: Duration) -> (i32, Vec<String>) {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                while let Ok(l) = self.lines.try_recv() {
                    self.seen.push(l);
                }
                return (st.code().unwrap_or(-1), std::mem::take(&mut self.seen));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit; output:\n{}",
                    self.name,
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hush up` on free ports in `dir`; returns the process and the relay address.
pub fn start_up(dir: &Path) -> (Proc, String) {
    start_up_with(dir, &[])
}

/// [`start_up`] with extra `hush up` options (e.g. `--dev-fast-periodic`).
pub fn start_up_with(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let data = dir.join("up");
    let mut args = vec![
        "up",
        "--data-dir",
        data.to_str().unwrap(),
        "--port-base",
        "0",
    ];
    args.extend_from_slice(extra);
    let mut p = Proc::spawn("up", &args, &[]);
    let relay = p.wait_line("relay:");
    p.wait_line("ready");
    let relay = relay.split_whitespace().nth(1).unwrap().to_string();
    (p, relay)
}

/// Runs a one-shot hush command; returns stdout lines (panics on failure).
pub fn hush(profile: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new(BIN)
        .arg("-p")
        .arg(profile)
        .args(args)
        .output()
        .expect("run hush");
    assert!(
        out.status.success(),
        "hush {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

pub fn profile(dir: &Path, name: &str, relay: &str) -> PathBuf {
    let p = dir.join(name);
    hush(&p, &["init", "--name", name, "--relay", relay]);
    p
}

/// `hush chat` for a profile.
pub fn chat(profile: &Path, name: &str, extra_env: &[(&str, &str)]) -> Proc {
    let mut p = Proc::spawn(name, &["-p", profile.to_str().unwrap(), "chat"], extra_env);
    p.wait_line("ready");
    p
}

/// Connects two running chats: `a` invites, `b` joins; waits for both sides.
pub fn connect(a: &mut Proc, b: &mut Proc, a_name: &str, b_name: &str) {
    a.send("/invite");
    let link = a.wait_line("invitation: ");
    let link = link.trim_start_matches("invitation: ").to_string();
    b.send(&format!("/connect {link}"));
    b.wait_line(&format!("connected: {a_name}"));
    a.wait_line(&format!("connected: {b_name}"));
}

/// A base port with five consecutive free loopback ports (for restarts on the same ports).
pub fn free_port_base() -> u16 {
    for _ in 0..200 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        if base > 65000 {
            continue;
        }
        if (0..5).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range");
}

/// `hush up` on `base` in `dir/up`.
pub fn start_up_at(dir: &Path, base: u16) -> (Proc, String) {
    let data = dir.join("up");
    let b = base.to_string();
    let mut p = Proc::spawn(
        "up",
        &[
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--port-base",
            &b,
        ],
        &[],
    );
    let relay = p.wait_line("relay:");
    p.wait_line("ready");
    let relay = relay.split_whitespace().nth(1).unwrap().to_string();
    (p, relay)
}
