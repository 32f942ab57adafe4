//! smp-server.ini parsing: defaults, every key, warnings, errors naming file/line/key, limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use smp_server::config::{
    BasicAuth, BlockQuota, Config, ConfigError, HostingType, InactiveClients, SyncPolicy,
};
use smp_server::ini::{IniError, MAX_FILE_LEN, MAX_LINE_LEN};
use smp_server::init::{IniTemplate, ini_content};
use smp_server::{ConfigWarning, ServerPaths};

fn paths() -> ServerPaths {
    ServerPaths {
        config_dir: PathBuf::from("/cfg"),
        data_dir: PathBuf::from("/data"),
    }
}

fn parse(text: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    Config::parse(text.as_bytes(), Path::new("/cfg/smp-server.ini"), paths())
}

fn parse_ok(text: &str) -> (Config, Vec<ConfigWarning>) {
    match parse(text) {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn empty_file_gives_reference_defaults() {
    let (c, w) = parse_ok("");
    assert!(w.is_empty());
    assert_eq!(c, Config::defaults(paths()));
    assert!(c.store.enable);
    assert_eq!(c.store.sync, SyncPolicy::Full);
    assert_eq!(c.store.path, PathBuf::from("/data/smp-server-store.db"));
    assert_eq!(c.store.message_expiration, Duration::from_secs(21 * 86400));
    assert!(c.store.expire_messages_on_start);
    assert!(c.store.expire_messages_on_send);
    assert_eq!(
        c.store.notification_expiration,
        Duration::from_secs(24 * 3600)
    );
    assert!(c.auth.new_queues);
    assert!(c.auth.create_password.is_none());
    assert_eq!(c.auth.daily_block_queue_quota, BlockQuota::PerDay(20));
    assert_eq!(c.transport.ports, vec![5223]);
    assert_eq!(c.transport.control_port, None);
    assert_eq!(
        c.transport.listen_addrs(),
        vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5223)]
    );
    assert_eq!(c.inactive_clients, None);
    assert_eq!(c.limits.queue_quota, 128);
    assert_eq!(c.limits.client_queue_blocks, 128);
    assert!(!c.metrics.enable);
    assert_eq!(c.metrics.address, "127.0.0.1:5225".parse().unwrap());
}

const FULL: &str = "\
# comment
[INFORMATION]
source_code = https://example.com/hush
server_country = de
operator = Example Ltd
hosting_type = dedicated

[STORE_LOG]
enable = off
store_path = relay.db
sync = normal
expire_messages_days = 7
expire_messages_on_start = off
expire_messages_on_send = off
expire_ntfs_hours = 12

[AUTH]
new_queues = off
create_password = s3cret=
control_port_admin_password = adminpw
control_port_user_password: userpw
daily_block_queue_quota = -1

[TRANSPORT]
host = relay.example.com,abcdef.onion
port = 5223,443
bind = 127.0.0.1, ::1
control_port = 6000
log_tls_errors = on

[INACTIVE_CLIENTS]
disconnect = on
ttl = 100
check_interval = 10

[LIMITS]
max_connections = 50
queue_quota = 16
client_queue_blocks = 4

[METRICS]
enable = on
address = 127.0.0.1:9100
";

#[test]
fn every_key_is_read() {
    let (c, w) = parse_ok(FULL);
    assert!(w.is_empty(), "unexpected warnings: {w:?}");
    assert_eq!(
        c.information.source_code.as_deref(),
        Some("https://example.com/hush")
    );
    assert_eq!(c.information.server_country.as_deref(), Some("DE"));
    assert_eq!(c.information.operator.as_deref(), Some("Example Ltd"));
    assert_eq!(c.information.hosting_type, Some(HostingType::Dedicated));
    assert!(!c.store.enable);
    assert_eq!(c.store.path, PathBuf::from("/data/relay.db"));
    assert_eq!(c.store.sync, SyncPolicy::Normal);
    assert_eq!(c.store.message_expiration, Duration::from_secs(7 * 86400));
    assert!(!c.store.expire_messages_on_start);
    assert!(!c.store.expire_messages_on_send);
    assert_eq!(
        c.store.notification_expiration,
        Duration::from_secs(12 * 3600)
    );
    assert!(!c.auth.new_queues);
    assert_eq!(c.auth.create_password.as_ref().unwrap().as_str(), "s3cret=");
    assert_eq!(
        c.auth
            .control_port_admin_password
            .as_ref()
            .unwrap()
            .as_str(),
        "adminpw"
    );
    assert_eq!(
        c.auth.control_port_user_password.as_ref().unwrap().as_str(),
        "userpw"
    );
    assert_eq!(c.auth.daily_block_queue_quota, BlockQuota::Forbidden);
    assert_eq!(c.transport.hosts, vec!["relay.example.com", "abcdef.onion"]);
    assert_eq!(c.transport.ports, vec![5223, 443]);
    assert_eq!(c.transport.listen_addrs().len(), 4);
    assert_eq!(c.transport.control_port, Some(6000));
    assert_eq!(
        c.transport.control_addr(),
        Some("127.0.0.1:6000".parse().unwrap())
    );
    assert!(c.transport.log_tls_errors);
    assert_eq!(
        c.inactive_clients,
        Some(InactiveClients {
            ttl: Duration::from_secs(100),
            check_interval: Duration::from_secs(10)
        })
    );
    assert_eq!(c.limits.max_connections, 50);
    assert_eq!(c.limits.queue_quota, 16);
    assert_eq!(c.limits.client_queue_blocks, 4);
    assert!(c.metrics.enable);
    assert_eq!(c.metrics.address, "127.0.0.1:9100".parse().unwrap());
}

#[test]
fn init_template_parses_without_warnings() {
    let admin = BasicAuth::new("adm").unwrap();
    let user = BasicAuth::new("usr").unwrap();
    let pwd = BasicAuth::new("pw").unwrap();
    for (control, password, store_log) in [
        (Some((5224, &admin, &user)), Some(&pwd), true),
        (None, None, false),
    ] {
        let hosts = vec!["relay.example.com".to_string()];
        let text = ini_content(&IniTemplate {
            hosts: &hosts,
            port: 7000,
            create_password: password,
            control,
            store_log,
        });
        let (c, w) = parse_ok(&text);
        assert!(w.is_empty(), "warnings for the generated file: {w:?}");
        assert_eq!(c.transport.ports, vec![7000]);
        assert_eq!(c.transport.hosts, hosts);
        assert_eq!(c.auth.create_password, password.cloned());
        assert_eq!(c.transport.control_port, control.map(|c| c.0));
        assert_eq!(c.store.enable, store_log);
        // init writes expire_messages_on_send = off and disconnect = on, as the reference does.
        assert!(!c.store.expire_messages_on_send);
        assert!(c.inactive_clients.is_some());
        assert!(c.metrics.enable);
    }
}

#[test]
fn unknown_and_reference_only_keys_are_warnings_with_lines() {
    let (c, w) = parse_ok(
        "[TRANSPORT]\nport = 7000\ncolour = blue\nwebsockets = off\n[PROXY]\nown_server_domains = example.com\n[WHATEVER]\nx = 1\n",
    );
    assert_eq!(c.transport.ports, vec![7000]);
    assert_eq!(w.len(), 4, "{w:?}");
    assert_eq!((w[0].line, w[0].key.as_deref()), (3, Some("colour")));
    assert!(w[0].message.contains("unknown key"));
    assert_eq!((w[1].line, w[1].key.as_deref()), (4, Some("websockets")));
    assert!(w[1].message.contains("does not implement"));
    // [PROXY] is read (destinations, link caps, SOCKS); own_server_domains is a reference key
    // hush ignores.
    assert_eq!(
        (w[2].line, w[2].key.as_deref()),
        (6, Some("own_server_domains"))
    );
    assert!(w[2].message.contains("does not implement"));
    assert_eq!((w[3].line, w[3].section.as_str()), (7, "WHATEVER"));
    assert!(w[3].message.contains("unknown section"));
    assert!(w[0].to_string().contains("line 3"));
}

#[test]
fn control_port_without_passwords_warns() {
    let (_, w) = parse_ok("[TRANSPORT]\ncontrol_port = 5224\n");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].line, 2);
    assert!(w[0].message.contains("no control_port_admin_password"));
}

#[test]
fn non_loopback_metrics_address_warns() {
    let (c, w) = parse_ok("[METRICS]\nenable = on\naddress = 0.0.0.0:9100\n");
    assert_eq!(c.metrics.address.port(), 9100);
    assert_eq!(w.len(), 1);
    assert!(w[0].message.contains("non-loopback"));
}

/// Each malformed value is an error whose message names the file, the line and the key.
#[test]
fn malformed_values_name_file_line_and_key() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("[STORE_LOG]\nenable = yes\n", "STORE_LOG", 2, "enable"),
        ("[STORE_LOG]\n\nsync = always\n", "STORE_LOG", 3, "sync"),
        (
            "[STORE_LOG]\nexpire_messages_days = -3\n",
            "STORE_LOG",
            2,
            "expire_messages_days",
        ),
        (
            "[STORE_LOG]\nexpire_messages_days = 0\n",
            "STORE_LOG",
            2,
            "expire_messages_days",
        ),
        (
            "[STORE_LOG]\nexpire_ntfs_hours = lots\n",
            "STORE_LOG",
            2,
            "expire_ntfs_hours",
        ),
        ("[STORE_LOG]\nstore_path =\n", "STORE_LOG", 2, "store_path"),
        ("[AUTH]\nnew_queues = 1\n", "AUTH", 2, "new_queues"),
        (
            "[AUTH]\ndaily_block_queue_quota = -2\n",
            "AUTH",
            2,
            "daily_block_queue_quota",
        ),
        ("[TRANSPORT]\nport = 5223,http\n", "TRANSPORT", 2, "port"),
        ("[TRANSPORT]\nport = 70000\n", "TRANSPORT", 2, "port"),
        ("[TRANSPORT]\nport = 5223,5223\n", "TRANSPORT", 2, "port"),
        ("[TRANSPORT]\nport =\n", "TRANSPORT", 2, "port"),
        ("[TRANSPORT]\nhost = a b\n", "TRANSPORT", 2, "host"),
        ("[TRANSPORT]\nhost = a.com,,b.com\n", "TRANSPORT", 2, "host"),
        ("[TRANSPORT]\nbind = localhost\n", "TRANSPORT", 2, "bind"),
        (
            "[TRANSPORT]\ncontrol_port = x\n",
            "TRANSPORT",
            2,
            "control_port",
        ),
        (
            "[TRANSPORT]\nlog_tls_errors = true\n",
            "TRANSPORT",
            2,
            "log_tls_errors",
        ),
        (
            "[INACTIVE_CLIENTS]\nttl = 0\n",
            "INACTIVE_CLIENTS",
            2,
            "ttl",
        ),
        (
            "[INACTIVE_CLIENTS]\ncheck_interval = 1h\n",
            "INACTIVE_CLIENTS",
            2,
            "check_interval",
        ),
        (
            "[INACTIVE_CLIENTS]\ndisconnect = maybe\n",
            "INACTIVE_CLIENTS",
            2,
            "disconnect",
        ),
        (
            "[LIMITS]\nmax_connections = 0\n",
            "LIMITS",
            2,
            "max_connections",
        ),
        ("[LIMITS]\nqueue_quota = many\n", "LIMITS", 2, "queue_quota"),
        (
            "[LIMITS]\nclient_queue_blocks = 99999999999999999999999\n",
            "LIMITS",
            2,
            "client_queue_blocks",
        ),
        ("[METRICS]\naddress = localhost\n", "METRICS", 2, "address"),
        ("[METRICS]\nenable = 1\n", "METRICS", 2, "enable"),
    ];
    assert_eq!(cases.len(), 25);
    for (text, section, line, key) in cases {
        let err = match parse(text) {
            Err(e) => e,
            Ok(_) => panic!("accepted {text:?}"),
        };
        assert_eq!(err.line(), Some(*line), "{text:?}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("/cfg/smp-server.ini"), "{msg}");
        assert!(msg.contains(&format!("line {line}")), "{msg}");
        assert!(msg.contains(&format!("[{section}] {key}")), "{msg}");
    }
}

#[test]
fn bad_passwords_are_errors_that_do_not_echo_the_value() {
    for bad in ["has space", "a@b", "a:b", "a/b", "ünïcode"] {
        let text = format!("[AUTH]\ncreate_password = {bad}\n");
        let err = parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("line 2") && msg.contains("create_password"),
            "{msg}"
        );
        assert!(!msg.contains(bad), "secret echoed: {msg}");
    }
    let long = "x".repeat(256);
    assert!(parse(&format!("[AUTH]\ncontrol_port_admin_password = {long}\n")).is_err());
    // Debug never shows a password.
    let (c, _) = parse_ok("[AUTH]\ncreate_password = topsecret\n");
    assert!(!format!("{c:?}").contains("topsecret"));
}

#[test]
fn syntax_errors_name_file_and_line() {
    for (text, line) in [
        ("[AUTH]\nnew_queues\n", 2),
        ("new_queues = on\n", 1),
        ("[AUTH\n", 1),
        ("[AUTH]\nnew_queues = on\nnew_queues = off\n", 3),
        ("[AUTH]\n\n= on\n", 3),
    ] {
        let err = parse(text).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        assert_eq!(err.line(), Some(line));
        let msg = err.to_string();
        assert!(msg.starts_with("/cfg/smp-server.ini: line "), "{msg}");
    }
}

#[test]
fn invalid_utf8_is_an_error_naming_the_line() {
    let err = Config::parse(
        b"[TRANSPORT]\nhost = caf\xe9\n",
        Path::new("/cfg/smp-server.ini"),
        paths(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Syntax {
            error: IniError::InvalidUtf8 { line: 2 },
            ..
        }
    ));
    assert!(err.to_string().contains("line 2: not valid UTF-8"));
}

#[test]
fn enormous_line_in_a_real_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = ServerPaths {
        config_dir: dir.path().to_path_buf(),
        data_dir: dir.path().join("data"),
    };
    // 3 MiB on one line (under the file limit, far over the line limit).
    let mut text = b"[INFORMATION]\nsource_code = x\n[TRANSPORT]\nhost = ".to_vec();
    text.extend(std::iter::repeat_n(b'a', 3 * 1024 * 1024));
    text.push(b'\n');
    std::fs::write(p.ini_file(), &text).unwrap();
    let err = Config::load(p.clone()).unwrap_err();
    match &err {
        ConfigError::Syntax {
            file,
            error: IniError::LineTooLong { line, len, max },
        } => {
            assert_eq!(file, &p.ini_file());
            assert_eq!(*line, 4);
            assert_eq!(*len, 3 * 1024 * 1024 + "host = ".len());
            assert_eq!(*max, MAX_LINE_LEN);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("smp-server.ini: line 4: line is"), "{msg}");
    // The message stays short however long the line was.
    assert!(msg.len() < 300);

    // A file over the size limit is refused before it is read.
    let big = vec![b'#'; MAX_FILE_LEN + 10];
    std::fs::write(p.ini_file(), &big).unwrap();
    let err = Config::load(p.clone()).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Syntax {
            error: IniError::FileTooLarge { .. },
            ..
        }
    ));

    // A long but legal value in an error message is truncated.
    let val = "9".repeat(10_000);
    let err = parse(&format!("[LIMITS]\nqueue_quota = {val}\n")).unwrap_err();
    assert!(err.to_string().len() < 400);
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = ServerPaths {
        config_dir: dir.path().join("nope"),
        data_dir: dir.path().join("data"),
    };
    let err = Config::load(p).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(err.to_string().contains("nope/smp-server.ini: cannot read"));
}

#[test]
fn information_checks_are_warnings() {
    let (c, w) = parse_ok("[INFORMATION]\noperator = X\nserver_country = Germany\n");
    assert_eq!(c.information.server_country, None);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w.iter()
            .any(|w| w.line == 3 && w.message.contains("ISO 3166"))
    );
    assert!(w.iter().any(|w| w.message.contains("source_code")));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Config::parse(&bytes, Path::new("x.ini"), paths());
    }

    #[test]
    fn never_panics_on_ini_shaped_input(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("[STORE_LOG]".to_string()),
                Just("[TRANSPORT]".to_string()),
                Just("[AUTH]".to_string()),
                Just("[LIMITS]".to_string()),
                Just("[METRICS]".to_string()),
                Just("[INACTIVE_CLIENTS]".to_string()),
                "[a-z_]{1,24} ?[=:] ?[ -~]{0,40}",
                "(port|host|bind|enable|sync|ttl|address|control_port|queue_quota|create_password) = [ -~]{0,30}",
            ],
            0..24,
        )
    ) {
        let text = lines.join("\n");
        if let Err(e) = Config::parse(text.as_bytes(), Path::new("x.ini"), paths()) {
            // Every error that is about a line names a line inside the file.
            if let Some(l) = e.line() {
                prop_assert!(l >= 1 && l <= lines.len().max(1));
            }
        }
    }
}

#[test]
fn summary_says_what_runs_without_secrets() {
    let (c, _) = parse_ok(FULL);
    let text = c.summary().join("\n");
    for s in [
        "listening on 127.0.0.1:5223, 127.0.0.1:443, [::1]:5223, [::1]:443",
        "store: memory only",
        "expiring messages after 7 days",
        "expiring clients inactive for 100 seconds every 10 seconds",
        "creating new queues NOT allowed",
        "control port: 127.0.0.1:6000",
        "metrics: http://127.0.0.1:9100/metrics",
    ] {
        assert!(text.contains(s), "missing {s:?} in\n{text}");
    }
    assert!(!text.contains("s3cret") && !text.contains("adminpw") && !text.contains("userpw"));
    let (c, _) = parse_ok("[AUTH]\ncreate_password = pw1\n");
    let text = c.summary().join("\n");
    assert!(text.contains("creating new queues requires password"));
    assert!(text.contains("store: /data/smp-server-store.db (sync full)"));
    assert!(text.contains("not expiring inactive clients"));
    assert!(text.contains("source code is not specified"));
    assert!(!text.contains("pw1"));
}

proptest! {
    /// The config password type accepts exactly what the protocol's BasicAuth accepts.
    #[test]
    fn password_rules_match_the_protocol(s in "[ -~\u{80}-\u{10ff}]{0,40}|[!-~]{250,260}") {
        let ours = BasicAuth::new(&s);
        let proto = hush_proto::address::BasicAuth::new(s.clone());
        prop_assert_eq!(ours.is_ok(), proto.is_ok(), "{:?}", s);
        if let Ok(p) = ours {
            prop_assert_eq!(p.as_str(), s.as_str());
            prop_assert!(p.matches(s.as_bytes()));
            let longer = format!("{}x", s);
            prop_assert!(!p.matches(longer.as_bytes()));
        }
    }
}
