//! push-server.ini parsing (errors name the line) and `push-server init` via the binary (the
//! apns-sink binary's test is in the apns-sink crate).

use std::path::Path;
use std::process::Command;

use push_server::config::{self, Config};
use push_server::jwt::SigFormat;

fn parse(text: &str) -> Result<(Config, Vec<config::ConfigWarning>), config::ConfigError> {
    Config::parse(
        text.as_bytes(),
        Path::new("push-server.ini"),
        Path::new("/d"),
    )
}

#[test]
fn defaults_and_values() {
    let ini = config::default_ini("127.0.0.1".parse().unwrap(), 5228, "ntf", "secret");
    let (c, w) = parse(&ini).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.listen, "127.0.0.1:5228".parse().unwrap());
    assert_eq!(c.clients.get("ntf").map(String::as_str), Some("secret"));
    assert!(!c.apns.enable);
    assert_eq!(c.apns.sig_format, SigFormat::Jose);
    assert_eq!(c.apns.topic, "chat.simplex.app");
    assert_eq!(
        c.apns.prod_url.as_deref(),
        Some("https://api.push.apple.com")
    );
    assert_eq!(
        c.apns.dev_url.as_deref(),
        Some("https://api.sandbox.push.apple.com")
    );
    assert_eq!(c.apns.test_url, None);
    assert_eq!(c.outbox_file, Path::new("/d/push-outbox.sqlite"));
    assert!(c.full_sync);
    assert_eq!(c.service.concurrency, 256);
    assert!(c.metrics.is_none());

    let (c, w) = parse(
        "[APNS]\njwt_signature = der\nprod_url =\ntest_url = https://127.0.0.1:8443\nbogus = 1\n[STORE]\nsync = normal\n[NOPE]\nx = 1\n",
    )
    .unwrap();
    assert_eq!(c.apns.sig_format, SigFormat::Der);
    assert_eq!(c.apns.prod_url, None);
    assert_eq!(c.apns.test_url.as_deref(), Some("https://127.0.0.1:8443"));
    assert!(!c.full_sync);
    assert_eq!(w.len(), 2, "{w:?}");
    let w: Vec<String> = w.iter().map(ToString::to_string).collect();
    assert!(w[0].contains("line") && w.iter().any(|x| x.contains("bogus")));
}

#[test]
fn errors_name_the_line() {
    for (text, line) in [
        ("[STORE]\n\nsync = sometimes\n", 3),
        ("[TRANSPORT]\nport = 99999\n", 2),
        ("[TRANSPORT]\nhost = not-an-ip\n", 2),
        ("[APNS]\nenable = maybe\n", 2),
        ("[APNS]\njwt_signature = rsa\n", 2),
        ("[OUTBOX]\nconcurrency = -1\n", 2),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(&format!("line {line}")), "{text:?}: {e}");
    }
    assert!(parse("no section = 1\n").is_err());
}

#[test]
fn abuse_limit_keys_defaults_values_and_errors() {
    use hush_server_common::{DestinationPolicy, Rate};
    use std::time::Duration;
    // Defaults: the written file and no file at all agree.
    let ini = config::default_ini("127.0.0.1".parse().unwrap(), 5228, "ntf", "secret");
    for text in [ini.as_str(), ""] {
        let (c, _) = parse(text).unwrap();
        assert_eq!(c.limits.handshake_timeout, Duration::from_secs(15));
        assert_eq!(c.limits.max_connections, 1024);
        assert_eq!(c.limits.reserved_connections, 64);
        assert_eq!(c.limits.max_connections_per_ip, 0);
        assert!(c.limits.anonymous_registrations);
        assert_eq!(c.limits.register_rate, Rate::new(20.0, 200));
        assert_eq!(c.limits.register_rate_per_ip, Rate::new(1.0, 10));
        assert_eq!(c.service.max_anonymous_registrations, 100_000);
        assert_eq!(c.webpush.endpoints.destinations, DestinationPolicy::Public);
        assert!(!c.webpush.endpoints.allow_any_port);
        assert_eq!(c.service.webpush_endpoints, c.webpush.endpoints);
    }
    let (c, w) = parse(
        "[TRANSPORT]\nhandshake_timeout = 0.5\n\
         [WEBPUSH]\ndestinations = loopback\nallow_any_port = on\nallow_http = on\n\
         [LIMITS]\nmax_connections = 10\nreserved_connections = 3\nmax_connections_per_ip = 4\n\
         anonymous_registrations = off\nregister_rate = 0.5\nregister_burst = 7\n\
         register_rate_per_ip = 0\nregister_burst_per_ip = 2\nmax_anonymous_registrations = 9\n",
    )
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.limits.handshake_timeout, Duration::from_millis(500));
    assert_eq!(
        (c.limits.max_connections, c.limits.reserved_connections),
        (10, 3)
    );
    assert_eq!(c.limits.max_connections_per_ip, 4);
    assert!(!c.limits.anonymous_registrations);
    assert_eq!(c.limits.register_rate, Rate::new(0.5, 7));
    assert!(c.limits.register_rate_per_ip.is_unlimited());
    assert_eq!(c.service.max_anonymous_registrations, 9);
    let e = c.webpush.endpoints;
    assert!(e.destinations == DestinationPolicy::Loopback && e.allow_any_port && e.allow_http);
    assert_eq!(c.service.webpush_endpoints, e);
    for (text, want) in [
        ("[TRANSPORT]\nhandshake_timeout = 0\n", "more than 0"),
        (
            "[TRANSPORT]\nhandshake_timeout = soon\n",
            "expected seconds",
        ),
        (
            "[WEBPUSH]\ndestinations = anywhere\n",
            "not a destination policy",
        ),
        ("[WEBPUSH]\nallow_any_port = maybe\n", "on or off"),
        ("[LIMITS]\nmax_connections = 0\n", "from 1"),
        (
            "[LIMITS]\nmax_connections = 10\nreserved_connections = 10\n",
            "from 0 to 9",
        ),
        ("[LIMITS]\nregister_rate = -1\n", "per second"),
        ("[LIMITS]\nregister_rate = NaN\n", "per second"),
        ("[LIMITS]\nregister_burst = 0\n", "from 1"),
        (
            "[LIMITS]\nmax_anonymous_registrations = lots\n",
            "whole number",
        ),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("line"), "{text:?}: {e}");
    }
}

#[test]
fn init_via_the_binary_then_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("push");
    let out = Command::new(env!("CARGO_BIN_EXE_push-server"))
        .args(["--dir", d.to_str().unwrap(), "init", "--port", "5999"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fp_line = stdout
        .lines()
        .find(|l| l.starts_with("fingerprint: "))
        .unwrap();
    let fp =
        push_server::net::parse_fingerprint(fp_line.trim_start_matches("fingerprint: ")).unwrap();
    let cert = std::fs::read(d.join(config::CERT_FILE)).unwrap();
    assert_eq!(push_server::http_util::cert_fingerprint(&cert).unwrap(), fp);
    for f in [
        config::INI_FILE,
        config::KEY_FILE,
        config::HANDLE_KEY_FILE,
        "vapid.pem",
        config::FINGERPRINT_FILE,
    ] {
        assert!(d.join(f).exists(), "{f}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in [
            config::KEY_FILE,
            config::HANDLE_KEY_FILE,
            "vapid.pem",
            config::INI_FILE,
        ] {
            let mode = std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
    let (c, w) = Config::load(&d).unwrap();
    assert!(w.is_empty());
    assert_eq!(c.listen.port(), 5999);
    assert_eq!(c.clients.len(), 1);
    // A second init refuses to overwrite.
    let again = Command::new(env!("CARGO_BIN_EXE_push-server"))
        .args(["--dir", d.to_str().unwrap(), "init"])
        .output()
        .unwrap();
    assert!(!again.status.success());
}
