//! ntf-server.ini problems are reported as by the other servers (hush_server_common::config):
//! unknown keys are warnings with their line, booleans are `on`/`off` only, numbers out of range
//! are errors naming file, line, section and key (the checks: hush_server_common::test_support).

use hush_server_common::test_support::{check_on_off, check_out_of_range, check_unknown_key};
use ntf_server::config::{Config, ConfigError, ConfigWarning, Paths};

const FILE: &str = "/cfg/ntf-server.ini";

fn parse(text: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let paths = Paths {
        config_dir: "/cfg".into(),
        data_dir: "/data".into(),
    };
    Config::parse(paths, text.as_bytes())
}

#[test]
fn unknown_key_is_warned_with_its_line() {
    check_unknown_key(
        FILE,
        parse,
        "[STORE_LOG]\nenable = on\ncolour = blue\n",
        "warning: /cfg/ntf-server.ini: line 3: [STORE_LOG] colour: unknown key; ignored",
    );
    // Reference keys hush does not implement are warned about too, never silently dropped.
    let (_, w) = parse("[STORE_LOG]\nlog_stats = on\n[NOPE]\nk = v\n").unwrap();
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!((w[0].line, w[0].key.as_deref()), (2, Some("log_stats")));
    assert!(w[0].message.contains("does not implement"), "{w:?}");
    assert_eq!(w[1].to_string(), "line 3: [NOPE]: unknown section; ignored");
}

#[test]
fn booleans_are_on_or_off_only() {
    check_on_off(FILE, parse, "STORE_LOG", "enable", |c| c.store_enable);
}

#[test]
fn out_of_range_number_names_file_line_section_and_key() {
    check_out_of_range(
        FILE,
        parse,
        "STORE_LOG",
        "db_pool_size",
        "1001",
        "a whole number from 1 to 1000",
    );
}
