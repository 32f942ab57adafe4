//! push-server.ini problems are reported as by the other servers (hush_server_common::config):
//! unknown keys are warnings with their line, booleans are `on`/`off` only, numbers out of range
//! are errors naming file, line, section and key.

use std::path::Path;

use push_server::config::{Config, ConfigError, ConfigWarning};

const FILE: &str = "/cfg/push-server.ini";

fn parse(text: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    Config::parse(text.as_bytes(), Path::new(FILE), Path::new("/cfg"))
}

#[test]
fn unknown_key_is_warned_with_its_line() {
    let (_, w) = parse("[APNS]\nenable = on\ncolour = blue\n[CLIENTS]\nntf = secret\n").unwrap();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(
        hush_server_common::config::warning_line(Path::new(FILE), &w[0]),
        "warning: /cfg/push-server.ini: line 3: [APNS] colour: unknown key; ignored"
    );
}

#[test]
fn booleans_are_on_or_off_only() {
    let (c, _) = parse("[APNS]\nenable = off\n").unwrap();
    assert!(!c.apns.enable);
    let (c, _) = parse("[APNS]\nenable = on\n").unwrap();
    assert!(c.apns.enable);
    for bad in ["yes", "no", "true", "false", "On"] {
        let e = parse(&format!("[APNS]\nenable = {bad}\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{FILE}: line 2: [APNS] enable = \"{bad}\": expected on or off")
        );
    }
}

#[test]
fn out_of_range_number_names_file_line_section_and_key() {
    let e = parse("[LIMITS]\n\nmax_connections = 0\n").unwrap_err();
    assert_eq!(e.line(), Some(3));
    assert_eq!(e.key(), Some(("LIMITS", "max_connections")));
    assert_eq!(
        e.to_string(),
        format!(
            "{FILE}: line 3: [LIMITS] max_connections = \"0\": \
             expected a whole number from 1 to 1000000"
        )
    );
}
