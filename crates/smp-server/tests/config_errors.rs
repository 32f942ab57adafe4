//! smp-server.ini problems are reported as by the other servers (hush_server_common::config):
//! unknown keys are warnings with their line, booleans are `on`/`off` only, numbers out of range
//! are errors naming file, line, section and key.

use std::path::Path;

use smp_server::ServerPaths;
use smp_server::config::{Config, ConfigError, ConfigWarning};

const FILE: &str = "/cfg/smp-server.ini";

fn parse(text: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let paths = ServerPaths {
        config_dir: "/cfg".into(),
        data_dir: "/data".into(),
    };
    Config::parse(text.as_bytes(), Path::new(FILE), paths)
}

#[test]
fn unknown_key_is_warned_with_its_line() {
    let (_, w) = parse("[STORE_LOG]\nenable = on\ncolour = blue\n").unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(
        hush_server_common::config::warning_line(Path::new(FILE), &w[0]),
        "warning: /cfg/smp-server.ini: line 3: [STORE_LOG] colour: unknown key; ignored"
    );
}

#[test]
fn booleans_are_on_or_off_only() {
    let (c, _) = parse("[STORE_LOG]\nenable = off\n").unwrap();
    assert!(!c.store.enable);
    let (c, _) = parse("[STORE_LOG]\nenable = on\n").unwrap();
    assert!(c.store.enable);
    for bad in ["yes", "no", "true", "false", "On"] {
        let e = parse(&format!("[STORE_LOG]\nenable = {bad}\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{FILE}: line 2: [STORE_LOG] enable = \"{bad}\": expected on or off")
        );
    }
}

#[test]
fn out_of_range_number_names_file_line_section_and_key() {
    let e = parse("[TRANSPORT]\n\nhandshake_timeout = 601\n").unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.key(), Some(("TRANSPORT", "handshake_timeout")));
    assert_eq!(
        e.to_string(),
        format!(
            "{FILE}: line 3: [TRANSPORT] handshake_timeout = \"601\": \
             expected a whole number from 1 to 600"
        )
    );
}
