//! The server information page (`[INFORMATION]`, `[WEB]`): configuration errors, the `init`
//! template, and the real `smp-server` binary serving the page over HTTP and HTTPS, checked with a
//! plain client and (when `/usr/bin/chromium` exists; required when `CI` is set) a headless
//! Chromium whose dumped DOM is checked and whose screenshot is kept under
//! `target/test-artifacts/`.

mod common;

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use hush_crypto::X25519Secret;
use hush_proto::smp::{BrokerMsg, Command};
use smp_server::ServerPaths;
use smp_server::config::{Config, ConfigError};

const PASSWORD: &str = "pagetest-s3cret";

fn parse(ini: &str) -> Result<Config, ConfigError> {
    let paths = ServerPaths {
        config_dir: "/cfg".into(),
        data_dir: "/data".into(),
    };
    Config::parse(ini.as_bytes(), Path::new("/cfg/smp-server.ini"), paths).map(|(c, _)| c)
}

#[test]
fn web_and_information_errors_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[WEB]\nstatic_path = www\nhttp = eighty\n",
            "/cfg/smp-server.ini: line 3: [WEB] http = \"eighty\": expected a TCP port",
        ),
        (
            "[WEB]\n# no static_path\nhttps = 8443\n",
            "/cfg/smp-server.ini: line 3: [WEB] https = \"8443\": needs static_path",
        ),
        (
            "[WEB]\nstatic_path = www\nhttps = 8443\ncert = web.crt\n",
            "/cfg/smp-server.ini: line 4: [WEB] cert = \"web.crt\": needs key too",
        ),
        (
            "[WEB]\nstatic_path = www\nrefresh_interval = 0\n",
            "/cfg/smp-server.ini: line 3: [WEB] refresh_interval = \"0\": expected a whole number of seconds from 1 to 86400",
        ),
        (
            "[INFORMATION]\nsource_code = https://x\nadmin_pgp = https://keys/a.asc\n",
            "/cfg/smp-server.ini: line 3: [INFORMATION] admin_pgp = \"https://keys/a.asc\": a PGP key needs admin_pgp_fingerprint too",
        ),
        (
            "[TRANSPORT]\nport = 5223,443\n[WEB]\nstatic_path = www\nhttps = 443\n",
            "/cfg/smp-server.ini: line 5: [WEB] https = \"443\": is also an SMP port",
        ),
    ];
    for (ini, want) in cases {
        let e = parse(ini).unwrap_err().to_string();
        assert!(e.starts_with(want), "{ini:?}\n got: {e}\nwant: {want}");
    }
    let c = parse("[WEB]\nstatic_path = www\nhttp = 8000\n").unwrap();
    let w = c.web.clone().unwrap();
    assert_eq!(w.static_path, Path::new("/data/www"));
    assert_eq!(w.http, Some("0.0.0.0:8000".parse().unwrap()));
    assert!(
        c.summary()
            .iter()
            .any(|l| l == "server page: /data/www (served by http on 0.0.0.0:8000)")
    );
}

#[test]
fn init_template_has_the_web_section_commented_out() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let text = std::fs::read_to_string(paths.ini_file()).unwrap();
    let web = text.split("\n[WEB]\n").nth(1).expect("[WEB] section");
    for key in [
        "static_path",
        "http",
        "https",
        "cert",
        "key",
        "refresh_interval",
    ] {
        assert!(
            web.lines().any(|l| l.starts_with(&format!("# {key} = "))),
            "{key} in {web}"
        );
    }
    let (c, warnings) = Config::load(paths).unwrap();
    assert_eq!(c.web, None);
    assert!(warnings.iter().all(|w| w.section != "WEB"), "{warnings:?}");
}

/// The binary with a `[WEB]` config: stdout lines until the page URLs are printed.
struct PageServer {
    child: std::process::Child,
    smp: SocketAddr,
    http: SocketAddr,
    https: SocketAddr,
}

impl Drop for PageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_page_server(paths: &ServerPaths) -> PageServer {
    let mut child = std::process::Command::new(binary())
        .arg("--config-dir")
        .arg(&paths.config_dir)
        .arg("--data-dir")
        .arg(&paths.data_dir)
        .arg("start")
        .arg("--log-level")
        .arg("warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut smp, mut http, mut https) = (None, None, None);
    while smp.is_none() || http.is_none() || https.is_none() {
        let line = lines
            .next()
            .expect("smp-server exited before serving the page")
            .unwrap();
        if let Some(a) = line.strip_prefix("Listening on ") {
            smp = Some(a.trim().parse().unwrap());
        } else if let Some(a) = line.strip_prefix("Server page on http://") {
            http = Some(a.trim_end_matches('/').parse().unwrap());
        } else if let Some(a) = line.strip_prefix("Server page on https://") {
            https = Some(a.trim_end_matches('/').parse().unwrap());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    PageServer {
        child,
        smp: smp.unwrap(),
        http: http.unwrap(),
        https: https.unwrap(),
    }
}

/// One HTTP/1.1 request over `stream`; returns (status line, head, body).
fn exchange(mut stream: impl Read + Write, request: &str) -> (String, String, String) {
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, head.to_string(), body.to_string())
}

fn http(addr: SocketAddr, request: &str) -> (String, String, String) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    exchange(s, request)
}

fn https(addr: SocketAddr, request: &str) -> (String, String, String, Vec<u8>) {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    // The relay's own certificate (signed by its offline CA): pinned below instead.
    b.set_verify(SslVerifyMode::NONE);
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = b.build().connect("localhost", tcp).unwrap();
    let leaf = tls.ssl().peer_certificate().unwrap().to_der().unwrap();
    tls.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, head.to_string(), body.to_string(), leaf)
}

const GET: &str = "GET / HTTP/1.1\r\nHost: relay.example.test\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_the_page_over_http_and_https_and_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let www = dir.path().join("www");
    let www_text = www.to_str().unwrap().to_string();
    ini_for_binary(
        &paths,
        &[
            ("TRANSPORT", "host", "relay.example.test"),
            ("AUTH", "create_password", PASSWORD),
            (
                "INFORMATION",
                "source_code",
                "https://example.com/hush-fork",
            ),
            ("INFORMATION", "operator", "Example <Relay> & Co"),
            ("INFORMATION", "operator_country", "nl"),
            ("INFORMATION", "website", "https://relay.example.test/about"),
            ("INFORMATION", "admin_email", "admin@relay.example.test"),
            ("INFORMATION", "hosting", "Hoster GmbH"),
            ("INFORMATION", "hosting_country", "DE"),
            ("INFORMATION", "hosting_type", "dedicated"),
            ("WEB", "static_path", &www_text),
            ("WEB", "http", "127.0.0.1:0"),
            ("WEB", "https", "127.0.0.1:0"),
            ("WEB", "refresh_interval", "1"),
        ],
    );
    let server = start_page_server(&paths);
    let fp = fingerprint(&paths);
    // The page shows the address without the password (port 0 here, as configured).
    let address = smp_server::init::server_address(&fp, None, &["relay.example.test".into()], 0);
    assert!(!address.contains(PASSWORD));

    // Two queues, so that the statistics have a figure that is not the start-up zero.
    let mut c = TestClient::connect(server.smp, &fp).await;
    for _ in 0..2 {
        let key = AuthKey::ed25519();
        let dh = X25519Secret::generate();
        let mut req = new_request(&key, &dh, NewOpts::default(), None);
        if let Command::New(r) = &mut req {
            r.basic_auth = Some(hush_proto::address::BasicAuth::new(PASSWORD).unwrap());
        }
        assert!(matches!(
            c.cmd(Some(&key), &[], req).await,
            BrokerMsg::Ids(_)
        ));
    }
    let want_stat = "<dd id=\"stat-queues-created\">2</dd>";
    let http_addr = server.http;
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (status, head, body) = tokio::task::spawn_blocking(move || http(http_addr, GET))
            .await
            .unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "{head}");
        if body.contains(want_stat) {
            assert!(
                head.contains("Content-Type: text/html; charset=utf-8"),
                "{head}"
            );
            assert!(
                head.contains("Content-Security-Policy: default-src 'none'"),
                "{head}"
            );
            assert!(
                head.contains(&format!("Content-Length: {}", body.len())),
                "{head}"
            );
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "statistics never updated:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body.contains("<dd id=\"operator\">Example &lt;Relay&gt; &amp; Co (NL)</dd>"),
        "{body}"
    );
    assert!(
        body.contains(&format!("id=\"server-address\">{address}</code>")),
        "{body}"
    );
    assert!(
        body.contains("href=\"https://example.com/hush-fork\""),
        "{body}"
    );
    assert!(
        body.contains("href=\"mailto:admin@relay.example.test\""),
        "{body}"
    );
    assert!(
        body.contains("<dd id=\"hosting\">Hoster GmbH (DE)</dd>"),
        "{body}"
    );
    assert!(
        body.contains("<dd>Yes</dd>"),
        "password to create queues: {body}"
    );
    assert!(
        !body.contains(PASSWORD),
        "the create_password must not be published"
    );
    assert!(!body.contains("<script"), "{body}");

    // The files on disk: the page (public, 0644) and the style sheet.
    let on_disk = std::fs::read_to_string(www.join("index.html")).unwrap();
    assert!(on_disk.contains("Example &lt;Relay&gt; &amp; Co"));
    assert_eq!(
        hush_server_common::private::mode_of(&www.join("index.html")).unwrap(),
        0o644
    );
    assert_eq!(
        std::fs::read_to_string(www.join("style.css")).unwrap(),
        hush_server_common::web::STYLE_CSS
    );

    // Only GET/HEAD of the known files.
    let (s, _, css) = http(http_addr, "GET /style.css HTTP/1.1\r\n\r\n");
    assert_eq!(s, "HTTP/1.1 200 OK");
    assert!(css.contains("font"));
    let (s, head, b) = http(http_addr, "HEAD / HTTP/1.1\r\n\r\n");
    assert_eq!(s, "HTTP/1.1 200 OK");
    assert!(b.is_empty() && head.contains("Content-Length: "), "{head}");
    for path in [
        "/smp-server.ini",
        "/../config/smp-server.ini",
        "/www/index.html",
    ] {
        let (s, _, _) = http(http_addr, &format!("GET {path} HTTP/1.1\r\n\r\n"));
        assert_eq!(s, "HTTP/1.1 404 Not Found", "{path}");
    }
    let (s, head, _) = http(http_addr, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(s, "HTTP/1.1 405 Method Not Allowed");
    assert!(head.contains("Allow: GET, HEAD"));
    let huge = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "a".repeat(20_000));
    let (s, _, _) = http(http_addr, &huge);
    assert_eq!(s, "HTTP/1.1 431 Request Header Fields Too Large");

    // HTTPS with the relay's own TLS certificate.
    let https_addr = server.https;
    let (s, head, tls_body, leaf) = https(https_addr, GET);
    assert_eq!(s, "HTTP/1.1 200 OK", "{head}");
    assert!(tls_body.contains(&address));
    assert!(tls_body.contains("Example &lt;Relay&gt; &amp; Co"));
    let server_crt = hush_crypto::cert::load_cert_chain_pem(&paths.server_cert()).unwrap();
    assert_eq!(leaf, server_crt[0], "HTTPS must use the relay's server.crt");

    browser_check(http_addr, &address);
    drop(c);
    drop(server);
}

/// A self-signed ECDSA P-256 certificate for `localhost` (what an operator's `cert`/`key` would be,
/// e.g. from Let's Encrypt): PEM certificate and key.
fn web_cert() -> (Vec<u8>, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let key = PKey::from_ec_key(
        EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
    )
    .unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (
        b.build().to_pem().unwrap(),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_operators_cert_and_key_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let paths = init_dirs(dir.path());
    let (cert, key) = web_cert();
    // Relative cert/key paths are under the configuration directory.
    std::fs::write(paths.config_dir.join("web.crt"), &cert).unwrap();
    std::fs::write(paths.config_dir.join("web.key"), &key).unwrap();
    ini_for_binary(
        &paths,
        &[
            ("TRANSPORT", "host", "relay.example.test"),
            (
                "INFORMATION",
                "source_code",
                "https://example.com/hush-fork",
            ),
            ("INFORMATION", "operator", "TLS Operator"),
            ("WEB", "static_path", "www"),
            ("WEB", "http", "127.0.0.1:0"),
            ("WEB", "https", "127.0.0.1:0"),
            ("WEB", "cert", "web.crt"),
            ("WEB", "key", "web.key"),
        ],
    );
    let server = start_page_server(&paths);
    assert!(paths.data_dir.join("www/index.html").exists());
    let https_addr = server.https;
    let (s, head, body, leaf) = tokio::task::spawn_blocking(move || https(https_addr, GET))
        .await
        .unwrap();
    assert_eq!(s, "HTTP/1.1 200 OK", "{head}");
    assert!(
        body.contains("<dd id=\"operator\">TLS Operator</dd>"),
        "{body}"
    );
    let want = openssl::x509::X509::from_pem(&cert)
        .unwrap()
        .to_der()
        .unwrap();
    assert_eq!(leaf, want, "HTTPS must use [WEB] cert");

    let Some(chromium) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is missing: CI must install it");
        }
        eprintln!("SKIPPED the browser part: /usr/bin/chromium is not installed");
        return;
    };
    let profile = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut dump = std::process::Command::new(chromium);
    dump.arg("--headless")
        .arg("--no-sandbox")
        .arg("--disable-gpu")
        .arg("--disable-dev-shm-usage")
        .arg("--no-first-run")
        // Self-signed here; an operator's real certificate would be trusted.
        .arg("--ignore-certificate-errors")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("https://localhost:{}/", https_addr.port()));
    let (ok, dom, err) = run_limited(&mut dump, Duration::from_secs(90));
    assert!(ok, "chromium --dump-dom failed: {err}");
    assert!(
        dom.contains("<dd id=\"operator\">TLS Operator</dd>"),
        "{dom}"
    );
    assert!(dom.contains("smp://"), "{dom}");
    drop(server);
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs `cmd` with a time limit; returns its stdout.
fn run_limited(cmd: &mut std::process::Command, limit: Duration) -> (bool, String, String) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let ok = loop {
        match child.try_wait().unwrap() {
            Some(status) => break status.success(),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    (ok, t_out.join().unwrap(), t_err.join().unwrap())
}

fn browser_check(http_addr: SocketAddr, address: &str) {
    let Some(chromium) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "chromium is missing: CI must install it (.ci/run does: apt-get install chromium)"
            );
        }
        eprintln!("SKIPPED the browser part: /usr/bin/chromium is not installed (CI installs it)");
        return;
    };
    let url = format!("http://{http_addr}/");
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let profile = tempfile::tempdir_in(&tmp).unwrap();
    let base = |c: &mut std::process::Command| {
        c.arg("--headless")
            .arg("--no-sandbox")
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .arg("--no-first-run")
            .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut dump = std::process::Command::new(&chromium);
    base(&mut dump);
    dump.arg("--dump-dom").arg(&url);
    let (ok, dom, err) = run_limited(&mut dump, Duration::from_secs(90));
    assert!(ok, "chromium --dump-dom failed: {err}");
    assert!(dom.contains("Example &lt;Relay&gt; &amp; Co (NL)"), "{dom}");
    assert!(dom.contains(address), "{dom}");
    assert!(
        dom.contains("<dd id=\"stat-queues-created\">2</dd>"),
        "{dom}"
    );
    assert!(!dom.contains(PASSWORD));

    let shot = tmp.join("smp-server-page.png");
    let _ = std::fs::remove_file(&shot);
    let mut screenshot = std::process::Command::new(&chromium);
    base(&mut screenshot);
    screenshot
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,900")
        .arg("--hide-scrollbars")
        .arg(&url);
    let (ok, _, err) = run_limited(&mut screenshot, Duration::from_secs(90));
    assert!(ok, "chromium --screenshot failed: {err}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    // Kept as a test artifact: <target>/test-artifacts/smp-server-page.png.
    let artifacts = tmp.parent().unwrap().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::copy(&shot, artifacts.join("smp-server-page.png")).unwrap();
    eprintln!(
        "screenshot: {}",
        artifacts.join("smp-server-page.png").display()
    );
}
