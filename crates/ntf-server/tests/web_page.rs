//! The ntf-server's information page (`[INFORMATION]`, `[WEB]`; the same implementation as
//! smp-server's, in hush-server-common): config errors, and a started server serving the page over
//! HTTP and HTTPS with its statistics updated. (The reference ntf-server has no page.)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use ntf_server::PolicyMode;
use ntf_server::config::{Config, Paths};

fn paths() -> Paths {
    Paths {
        config_dir: "/c".into(),
        data_dir: "/d".into(),
    }
}

#[test]
fn web_and_information_keys_are_read_and_checked() {
    let (c, w) = Config::parse(
        paths(),
        b"[INFORMATION]\nsource_code = https://x\noperator = Ntf Op\n\
          [WEB]\nstatic_path = www\nhttp = 127.0.0.1:8000\n",
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.information.operator.as_deref(), Some("Ntf Op"));
    let web = c.web.unwrap();
    assert_eq!(web.static_path, std::path::Path::new("/d/www"));
    assert_eq!(web.http, Some("127.0.0.1:8000".parse().unwrap()));
    for (ini, want) in [
        (
            &b"[WEB]\nstatic_path = www\nhttp = port\n"[..],
            "/c/ntf-server.ini: line 3: [WEB] http = \"port\": expected a TCP port",
        ),
        (
            b"[WEB]\nhttp = 8000\n",
            "/c/ntf-server.ini: line 2: [WEB] http = \"8000\": needs static_path",
        ),
        (
            b"[INFORMATION]\ncomplaints_pgp_fingerprint = AB\n",
            "/c/ntf-server.ini: line 2: [INFORMATION] complaints_pgp_fingerprint = \"AB\": a PGP fingerprint needs",
        ),
    ] {
        let e = Config::parse(paths(), ini).unwrap_err().to_string();
        assert!(e.starts_with(want), "got {e}, want {want}");
    }
    let (_, w) = Config::parse(paths(), b"[INFORMATION]\nserver_country = Germany\n").unwrap();
    assert!(
        w.iter()
            .any(|w| w.line == 2 && w.message.contains("ISO 3166")),
        "{w:?}"
    );
    // The template has both sections, commented out.
    let t = ntf_server::config::ini_template(443, None, true);
    assert!(t.contains("\n[WEB]\n# The server information page"));
    assert!(t.contains("\n[INFORMATION]\n"));
    let (c, w) = Config::parse(paths(), t.as_bytes()).unwrap();
    assert!(w.is_empty() && c.web.is_none(), "{w:?}");
}

fn get(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: ntf.example.test\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn get_tls(addr: SocketAddr) -> String {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut s = b.build().connect("localhost", tcp).unwrap();
    s.write_all(b"GET /index.html HTTP/1.1\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_server_serves_its_page_over_http_and_https() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let mut cfg = ntf_config(dir.path(), false, PolicyMode::default());
    cfg.host = Some("ntf.example.test".into());
    let (info_cfg, _) = Config::parse(
        cfg.paths.clone(),
        format!(
            "[INFORMATION]\nsource_code = https://example.com/hush\noperator = Push <Op>\n\
             [WEB]\nstatic_path = {}\nhttp = 127.0.0.1:0\nhttps = 127.0.0.1:0\nrefresh_interval = 1\n",
            dir.path().join("www").display()
        )
        .as_bytes(),
    )
    .unwrap();
    cfg.information = info_cfg.information;
    cfg.web = info_cfg.web;
    let (trigger, shutdown) = hush_server_common::shutdown_channel();
    let s = ntf_server::start(cfg, push.gw.clone(), shutdown)
        .await
        .unwrap();
    let (http, https) = (s.web_http_addr.unwrap(), s.web_https_addr.unwrap());
    let fp = hush_proto::encoding::base64url_encode(&s.fingerprint);
    let mut c = NtfClient::connect(s.addrs[0], &s.fingerprint).await;
    let task = tokio::spawn(s.wait());
    let mut d = Device::new(31);
    register(&mut c, &push, &mut d).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = tokio::task::spawn_blocking(move || get(http))
            .await
            .unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        if page.contains("<dd id=\"stat-tokens-created\">1</dd>") {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "statistics never updated: {page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(page.contains("<h1>Notification server</h1>"), "{page}");
    assert!(
        page.contains("<dd id=\"operator\">Push &lt;Op&gt;</dd>"),
        "{page}"
    );
    // ntf_config's port is 0: the address shows the configured port, as the ini says it.
    assert!(
        page.contains(&format!(
            "id=\"server-address\">ntf://{fp}@ntf.example.test:0</code>"
        )),
        "{page}"
    );
    let tls_page = tokio::task::spawn_blocking(move || get_tls(https))
        .await
        .unwrap();
    assert!(tls_page.starts_with("HTTP/1.1 200 OK\r\n"), "{tls_page}");
    assert!(tls_page.contains("Push &lt;Op&gt;"));
    assert!(dir.path().join("www/index.html").exists());
    trigger.trigger();
    task.await.unwrap().unwrap();
}
