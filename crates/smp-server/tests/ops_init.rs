//! The real `smp-server` binary: init, cert, delete, start refusals, help, in temp dirs.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use openssl::x509::X509;
use sha2::{Digest, Sha256};
use smp_server::ServerPaths;
use smp_server::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_smp-server");

struct Dirs {
    _tmp: tempfile::TempDir,
    cfg: PathBuf,
    data: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("etc");
    let data = tmp.path().join("var");
    Dirs {
        _tmp: tmp,
        cfg,
        data,
    }
}

impl Dirs {
    fn paths(&self) -> ServerPaths {
        ServerPaths {
            config_dir: self.cfg.clone(),
            data_dir: self.data.clone(),
        }
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config-dir")
            .arg(&self.cfg)
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env_remove("SMP_SERVER_CFG_PATH")
            .env_remove("SMP_SERVER_LOG_PATH")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }
    fn file(&self, name: &str) -> PathBuf {
        self.cfg.join(name)
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn expect_ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// base64url (padded) of SHA-256 of the DER of the certificate in `pem_file`, computed independently.
fn ca_fingerprint(pem_file: &Path) -> String {
    let cert = X509::from_pem(&std::fs::read(pem_file).unwrap()).unwrap();
    let digest = Sha256::digest(cert.to_der().unwrap());
    let std = openssl::base64::encode_block(&digest);
    std.replace('+', "-").replace('/', "_")
}

/// Parses a printed address with the client-side parser (hush-proto) and checks its parts.
fn check_address(addr: &str, fp: &str, password: Option<&str>, hosts: &[&str], port: u16) {
    let a = hush_proto::address::ServerWithAuth::parse(addr)
        .unwrap_or_else(|e| panic!("{addr:?} does not parse: {e:?}"));
    assert_eq!(hush_b64(a.server.key_hash()), fp);
    assert_eq!(a.auth.as_ref().map(|p| p.as_str()), password);
    let got: Vec<String> = a.server.hosts().iter().map(|h| h.to_string()).collect();
    assert_eq!(got, hosts);
    assert_eq!(a.server.effective_port(), port);
}

fn hush_b64(b: &[u8]) -> String {
    openssl::base64::encode_block(b)
        .replace('+', "-")
        .replace('/', "_")
}

fn line_with<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_identity_config_and_prints_the_address() {
    let d = dirs();
    let out = expect_ok(&d.run(&["init", "-n", "relay.example.com", "-y", "--control-port"]));
    for f in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "fingerprint",
        "smp-server.ini",
    ] {
        assert!(d.file(f).is_file(), "{f} missing");
    }
    assert!(d.data.is_dir());
    #[cfg(unix)]
    {
        assert_eq!(mode(&d.file("ca.key")), 0o600);
        assert_eq!(mode(&d.file("server.key")), 0o600);
        assert_eq!(mode(&d.file("smp-server.ini")), 0o600);
    }
    // fingerprint file = base64url(SHA-256(CA DER)) + newline.
    let fp = ca_fingerprint(&d.file("ca.crt"));
    assert_eq!(fp.len(), 44);
    assert_eq!(
        std::fs::read_to_string(d.file("fingerprint")).unwrap(),
        format!("{fp}\n")
    );
    // The server certificate is signed by the CA, with the FQDN as CN; the CA is a CA.
    let ca = X509::from_pem(&std::fs::read(d.file("ca.crt")).unwrap()).unwrap();
    let srv = X509::from_pem(&std::fs::read(d.file("server.crt")).unwrap()).unwrap();
    assert!(srv.verify(&ca.public_key().unwrap()).unwrap());
    let cn = srv
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .unwrap()
        .data()
        .to_string()
        .unwrap();
    assert_eq!(cn, "relay.example.com");
    assert_eq!(ca.public_key().unwrap().id(), openssl::pkey::Id::ED25519);

    // Printed address: smp://<fp>:<random password>@relay.example.com (port 5223 omitted).
    assert_eq!(line_with(&out, "Fingerprint: "), fp);
    let addr = line_with(&out, "Server address: ");
    let rest = addr.strip_prefix(&format!("smp://{fp}:")).unwrap();
    let (pwd, host) = rest.split_once('@').unwrap();
    assert_eq!(host, "relay.example.com");
    assert_eq!(pwd.len(), 44, "random 32-byte base64url password");
    check_address(addr, &fp, Some(pwd), &["relay.example.com"], 5223);

    // The written config loads cleanly and holds what was printed.
    let (cfg, warnings) = Config::load(d.paths()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(cfg.auth.create_password.unwrap().as_str(), pwd);
    assert_eq!(cfg.transport.control_port, Some(5224));
    assert!(cfg.auth.control_port_admin_password.is_some());
    assert!(cfg.auth.control_port_user_password.is_some());
    assert_ne!(
        cfg.auth.control_port_admin_password,
        cfg.auth.control_port_user_password
    );
    assert_eq!(cfg.transport.hosts, vec!["relay.example.com"]);
    assert_eq!(cfg.transport.ports, vec![5223]);
}

#[test]
fn init_options_password_port_algorithm() {
    let d = dirs();
    let out = expect_ok(&d.run(&[
        "init",
        "--ip",
        "192.0.2.7",
        "--password",
        "open-sesame",
        "--port",
        "7443",
        "--sign-algorithm",
        "ED448",
        "--disable-store-log",
        "-y",
    ]));
    let fp = ca_fingerprint(&d.file("ca.crt"));
    assert_eq!(
        line_with(&out, "Server address: "),
        format!("smp://{fp}:open-sesame@192.0.2.7:7443")
    );
    check_address(
        line_with(&out, "Server address: "),
        &fp,
        Some("open-sesame"),
        &["192.0.2.7"],
        7443,
    );
    let ca = X509::from_pem(&std::fs::read(d.file("ca.crt")).unwrap()).unwrap();
    assert_eq!(ca.public_key().unwrap().id(), openssl::pkey::Id::ED448);
    let (cfg, _) = Config::load(d.paths()).unwrap();
    assert_eq!(cfg.transport.ports, vec![7443]);
    assert!(!cfg.store.enable);
    assert_eq!(cfg.transport.control_port, None);

    let d = dirs();
    let out = expect_ok(&d.run(&["init", "--no-password", "-y"]));
    let fp = ca_fingerprint(&d.file("ca.crt"));
    // Loopback IP and no FQDN: a placeholder host, as the reference prints.
    assert_eq!(
        line_with(&out, "Server address: "),
        format!("smp://{fp}@<hostnames>")
    );
    let (cfg, _) = Config::load(d.paths()).unwrap();
    assert!(cfg.auth.create_password.is_none());
}

#[test]
fn init_refuses_to_overwrite_unless_forced() {
    let d = dirs();
    expect_ok(&d.run(&["init", "-y"]));
    let fp = std::fs::read_to_string(d.file("fingerprint")).unwrap();
    let o = d.run(&["init", "-y"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already initialized"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(d.file("fingerprint")).unwrap(), fp);

    expect_ok(&d.run(&["init", "-y", "--force"]));
    assert_ne!(std::fs::read_to_string(d.file("fingerprint")).unwrap(), fp);
}

#[test]
fn init_without_yes_and_no_answer_does_nothing() {
    let d = dirs();
    let o = d.run(&["init"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("NOT initialized"));
    assert!(!d.file("ca.crt").exists());
}

#[test]
fn init_rejects_bad_input() {
    let d = dirs();
    let o = d.run(&["init", "-y", "--password", "has@sign"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("'@'"), "{}", stderr(&o));
    let o = d.run(&["init", "-y", "--password", "x", "--no-password"]);
    assert!(!o.status.success());
    let o = d.run(&["init", "-y", "-n", "bad host/name"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid host"), "{}", stderr(&o));
    let o = d.run(&["init", "-y", "--sign-algorithm", "rsa"]);
    assert!(!o.status.success());
    assert!(!d.file("ca.crt").exists());
}

#[test]
fn env_vars_select_directories() {
    let d = dirs();
    let o = Command::new(BIN)
        .args(["init", "-y", "--no-password"])
        .env("SMP_SERVER_CFG_PATH", &d.cfg)
        .env("SMP_SERVER_LOG_PATH", &d.data)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    expect_ok(&o);
    assert!(d.file("fingerprint").is_file());
    assert!(d.data.is_dir());
}

#[test]
fn cert_rotates_the_online_certificate_and_keeps_the_fingerprint() {
    let d = dirs();
    expect_ok(&d.run(&["init", "-n", "relay.example.com", "-y"]));
    let fp = std::fs::read_to_string(d.file("fingerprint")).unwrap();
    let ca_pem = std::fs::read(d.file("ca.crt")).unwrap();
    let old_crt = std::fs::read(d.file("server.crt")).unwrap();
    let old_key = std::fs::read(d.file("server.key")).unwrap();

    let out = expect_ok(&d.run(&["cert"]));
    assert!(out.contains(fp.trim()), "{out}");
    assert_eq!(std::fs::read_to_string(d.file("fingerprint")).unwrap(), fp);
    assert_eq!(std::fs::read(d.file("ca.crt")).unwrap(), ca_pem);
    let new_crt = std::fs::read(d.file("server.crt")).unwrap();
    assert_ne!(new_crt, old_crt);
    assert_ne!(std::fs::read(d.file("server.key")).unwrap(), old_key);
    #[cfg(unix)]
    assert_eq!(mode(&d.file("server.key")), 0o600);
    let ca = X509::from_pem(&ca_pem).unwrap();
    let srv = X509::from_pem(&new_crt).unwrap();
    assert!(srv.verify(&ca.public_key().unwrap()).unwrap());
    // CN and algorithm carried over; the new key matches the new certificate.
    let cn = srv
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .unwrap()
        .data()
        .to_string()
        .unwrap();
    assert_eq!(cn, "relay.example.com");
    let key =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(d.file("server.key")).unwrap())
            .unwrap();
    assert!(srv.public_key().unwrap().public_eq(&key));
    assert!(!d.cfg.join("server.crt.new").exists());

    // With options: new CN and algorithm.
    expect_ok(&d.run(&["cert", "--cn", "other.example.com", "-a", "ed448"]));
    let srv = X509::from_pem(&std::fs::read(d.file("server.crt")).unwrap()).unwrap();
    assert_eq!(srv.public_key().unwrap().id(), openssl::pkey::Id::ED448);
    assert!(srv.verify(&ca.public_key().unwrap()).unwrap());

    // Without the CA key it cannot sign.
    std::fs::remove_file(d.file("ca.key")).unwrap();
    let o = d.run(&["cert"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("ca.key"), "{}", stderr(&o));
}

/// Runs `start`, waits until it has either exited or printed the server address (it then passed the
/// fingerprint check), then stops it. Returns (exited?, stdout, stderr).
fn start_briefly(d: &Dirs) -> (Option<std::process::ExitStatus>, String, String) {
    let mut child = d
        .cmd(&["start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut stdout = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut exited = false;
    let mut timed_out = false;
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap_or(0);
        stdout.push_str(&line);
        if line.starts_with("Server address: ") {
            // Passed the checks. The relay core may be a placeholder that exits, or a real server.
            std::thread::sleep(Duration::from_millis(300));
            break;
        }
        if n == 0 {
            exited = true;
            break;
        }
        if Instant::now() > deadline {
            timed_out = true;
            break;
        }
    }
    let status = if exited {
        child.wait().ok()
    } else {
        child.try_wait().unwrap()
    };
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    stdout.push_str(&rest);
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        !timed_out,
        "start neither exited nor printed:\n{stdout}\n{stderr}"
    );
    (status, stdout, stderr)
}

/// Makes a freshly initialized server safe to start in parallel tests: loopback only, any free port,
/// no metrics endpoint on the fixed default port.
fn ephemeral_ports(d: &Dirs) {
    let ini = d.file("smp-server.ini");
    let text = std::fs::read_to_string(&ini).unwrap();
    assert!(text.contains("\nport = 5223\n") && text.contains("\nenable = on\naddress = "));
    let text = text
        .replace("\nport = 5223\n", "\nport = 0\nbind = 127.0.0.1\n")
        .replace("\nenable = on\naddress = ", "\nenable = off\naddress = ");
    std::fs::write(&ini, text).unwrap();
}

#[test]
fn start_checks_config_and_fingerprint() {
    let d = dirs();
    expect_ok(&d.run(&["init", "-n", "relay.example.com", "--password", "pw", "-y"]));
    ephemeral_ports(&d);
    let fp = ca_fingerprint(&d.file("ca.crt"));

    // Valid setup: the address is printed (the fingerprint check passed) before the relay runs.
    let (_, out, _) = start_briefly(&d);
    assert!(
        line_with(&out, "Server address: ")
            .starts_with(&format!("smp://{fp}:pw@relay.example.com")),
        "{out}"
    );

    // A tampered fingerprint file: refuse to start, say why.
    std::fs::write(d.file("fingerprint"), "AAAA\n").unwrap();
    let (status, out, err) = start_briefly(&d);
    assert!(!status.expect("must exit").success());
    assert!(!out.contains("Server address"));
    assert!(
        err.contains("does not match the saved fingerprint"),
        "{err}"
    );
    assert!(err.contains("refusing to start"), "{err}");

    // A different CA certificate with the old fingerprint file: refuse too.
    std::fs::write(d.file("fingerprint"), format!("{fp}\n")).unwrap();
    let other = dirs();
    expect_ok(&other.run(&["init", "-y"]));
    std::fs::copy(other.file("ca.crt"), d.file("ca.crt")).unwrap();
    let (status, _, err) = start_briefly(&d);
    assert!(!status.expect("must exit").success());
    assert!(
        err.contains("does not match the saved fingerprint"),
        "{err}"
    );

    // Garbage CA file: a clear error naming it.
    std::fs::write(d.file("ca.crt"), "not a certificate").unwrap();
    let (status, _, err) = start_briefly(&d);
    assert!(!status.expect("must exit").success());
    assert!(err.contains("ca.crt"), "{err}");

    // Missing fingerprint file.
    std::fs::remove_file(d.file("fingerprint")).unwrap();
    let (status, _, err) = start_briefly(&d);
    assert!(!status.expect("must exit").success());
    assert!(err.contains("fingerprint"), "{err}");
}

/// Data at rest: `init` makes the configuration and data directories 0700 (a pre-existing 0755
/// data directory is tightened), keys and the ini 0600; `start` tightens a data directory that
/// was loosened again (logged at info) and creates the message store and its -wal/-shm 0600.
#[cfg(unix)]
#[test]
fn init_and_start_keep_the_data_private() {
    use std::os::unix::fs::PermissionsExt;
    let set =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let d = dirs();
    std::fs::create_dir_all(&d.data).unwrap();
    set(&d.data, 0o755);
    expect_ok(&d.run(&["init", "-y"]));
    assert_eq!(mode(&d.data), 0o700, "data directory after init");
    assert_eq!(mode(&d.cfg), 0o700, "new configuration directory");
    for f in ["ca.key", "server.key", "smp-server.ini"] {
        assert_eq!(mode(&d.file(f)), 0o600, "{f}");
    }
    ephemeral_ports(&d);
    set(&d.data, 0o755);

    let mut child = d
        .cmd(&["start"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stdout = String::new();
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap_or(0);
        stdout.push_str(&line);
        if line.starts_with("Listening on ") {
            break;
        }
        assert!(
            n > 0 && Instant::now() < deadline,
            "relay did not start:\n{stdout}"
        );
    }
    let store = d.data.join("smp-server-store.db");
    // Read the modes while the relay runs (its -wal/-shm exist), assert after stopping it.
    let data_mode = mode(&d.data);
    let store_modes: Vec<(String, Option<u32>)> = ["", "-wal", "-shm"]
        .iter()
        .map(|f| {
            let p = PathBuf::from(format!("{}{f}", store.display()));
            let m = std::fs::metadata(&p)
                .ok()
                .map(|m| m.permissions().mode() & 0o777);
            (p.display().to_string(), m)
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(data_mode, 0o700, "data directory after start");
    for (p, m) in store_modes {
        assert_eq!(m, Some(0o600), "{p}");
    }
    assert!(
        err.contains("relay data directory") && err.contains("tightened to 0700"),
        "no info line about the tightened directory:\n{err}"
    );
}

#[test]
fn start_reports_config_errors_with_file_and_line() {
    let d = dirs();
    expect_ok(&d.run(&["init", "-y"]));
    let ini = d.file("smp-server.ini");
    let mut text = std::fs::read_to_string(&ini).unwrap();
    text.push_str("\n[LIMITS2]\nfoo = bar\n");
    text = text.replace("port = 5223", "port = 5223,http");
    std::fs::write(&ini, &text).unwrap();
    let line = text.lines().position(|l| l == "port = 5223,http").unwrap() + 1;
    let (status, out, err) = start_briefly(&d);
    assert!(!status.expect("must exit").success());
    assert!(!out.contains("Server address"));
    assert!(
        err.contains(&format!("smp-server.ini: line {line}: [TRANSPORT] port")),
        "{err}"
    );

    // An enormous line: refused with the line number, no panic.
    let mut big = std::fs::read(&ini).unwrap();
    big.extend_from_slice(b"\n[INFORMATION]\nwebsite = ");
    big.extend(std::iter::repeat_n(b'w', 2 * 1024 * 1024));
    std::fs::write(&ini, &big).unwrap();
    let (status, _, err) = start_briefly(&d);
    assert!(!status.expect("must exit").success());
    assert!(
        err.contains("line is") && err.contains("over the limit"),
        "{err}"
    );
    assert!(!err.contains("panicked"));

    // Missing config.
    std::fs::remove_file(&ini).unwrap();
    let (status, _, err) = start_briefly(&d);
    assert!(!status.expect("must exit").success());
    assert!(err.contains("smp-server.ini: cannot read"), "{err}");
}

#[test]
fn unknown_keys_are_warned_about_at_start() {
    let d = dirs();
    expect_ok(&d.run(&["init", "-y"]));
    ephemeral_ports(&d);
    let ini = d.file("smp-server.ini");
    let mut text = std::fs::read_to_string(&ini).unwrap();
    text.push_str("\n[TRANSPORT2]\n");
    std::fs::write(&ini, &text).unwrap();
    let (_, out, err) = start_briefly(&d);
    assert!(out.contains("Server address"), "{out}\n{err}");
    assert!(
        err.contains("TRANSPORT2") && err.contains("unknown section"),
        "{err}"
    );
}

#[test]
fn delete_removes_what_init_created() {
    let d = dirs();
    expect_ok(&d.run(&["init", "-y"]));
    std::fs::write(d.data.join("smp-server-store.db"), b"x").unwrap();

    // Without -y and without an answer nothing is deleted.
    let o = d.run(&["delete"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("CANNOT BE UNDONE"));
    assert!(d.file("ca.crt").exists());

    expect_ok(&d.run(&["delete", "-y"]));
    assert!(!d.cfg.exists());
    assert!(!d.data.exists());

    // Foreign files survive, and their directory is kept.
    let d = dirs();
    expect_ok(&d.run(&["init", "-y"]));
    std::fs::write(d.cfg.join("operator-notes.txt"), b"keep me").unwrap();
    let out = expect_ok(&d.run(&["delete", "-y"]));
    assert!(out.contains("Kept"), "{out}");
    assert!(d.cfg.join("operator-notes.txt").exists());
    assert!(!d.file("ca.key").exists());
    assert!(!d.file("smp-server.ini").exists());
}

#[test]
fn help_texts_explain_every_option() {
    let d = dirs();
    let top = expect_ok(&d.run(&["--help"]));
    for s in [
        "init",
        "start",
        "cert",
        "delete",
        "--config-dir",
        "SMP_SERVER_CFG_PATH",
        "--data-dir",
        "SMP_SERVER_LOG_PATH",
    ] {
        assert!(top.contains(s), "top help lacks {s}:\n{top}");
    }
    let init = expect_ok(&d.run(&["init", "--help"]));
    for s in [
        "--fqdn",
        "-n",
        "--ip",
        "--password",
        "--no-password",
        "--sign-algorithm",
        "ed25519",
        "ed448",
        "--port",
        "--control-port",
        "--disable-store-log",
        "--force",
        "-y",
        "random",
    ] {
        assert!(init.contains(s), "init help lacks {s}:\n{init}");
    }
    let cert = expect_ok(&d.run(&["cert", "--help"]));
    assert!(cert.contains("--sign-algorithm") && cert.contains("--cn"));
    let delete = expect_ok(&d.run(&["delete", "--help"]));
    assert!(delete.contains("CANNOT BE UNDONE") && delete.contains("-y"));
}
