//! push-server.ini problems are reported as by the other servers (hush_server_common::config):
//! unknown keys are warnings with their line, booleans are `on`/`off` only, numbers out of range
//! are errors naming file, line, section and key (the checks: hush_server_common::test_support).

use std::path::Path;

use hush_server_common::test_support::{check_on_off, check_out_of_range, check_unknown_key};
use push_server::config::{Config, ConfigError, ConfigWarning};

const FILE: &str = "/cfg/push-server.ini";

fn parse(text: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    Config::parse(text.as_bytes(), Path::new(FILE), Path::new("/cfg"))
}

#[test]
fn unknown_key_is_warned_with_its_line() {
    check_unknown_key(
        FILE,
        parse,
        "[APNS]\nenable = on\ncolour = blue\n[CLIENTS]\nntf = secret\n",
        "warning: /cfg/push-server.ini: line 3: [APNS] colour: unknown key; ignored",
    );
}

#[test]
fn booleans_are_on_or_off_only() {
    check_on_off(FILE, parse, "APNS", "enable", |c| c.apns.enable);
}

#[test]
fn out_of_range_number_names_file_line_section_and_key() {
    check_out_of_range(
        FILE,
        parse,
        "LIMITS",
        "max_connections",
        "0",
        "a whole number from 1 to 1000000",
    );
}
