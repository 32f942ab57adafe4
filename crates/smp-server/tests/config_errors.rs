//! smp-server.ini problems are reported as by the other servers (hush_server_common::config):
//! unknown keys are warnings with their line, booleans are `on`/`off` only, numbers out of range
//! are errors naming file, line, section and key (the checks: hush_server_common::test_support).

use std::path::Path;

use hush_server_common::test_support::{check_on_off, check_out_of_range, check_unknown_key};
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
    check_unknown_key(
        FILE,
        parse,
        "[STORE_LOG]\nenable = on\ncolour = blue\n",
        "warning: /cfg/smp-server.ini: line 3: [STORE_LOG] colour: unknown key; ignored",
    );
}

#[test]
fn booleans_are_on_or_off_only() {
    check_on_off(FILE, parse, "STORE_LOG", "enable", |c| c.store.enable);
}

#[test]
fn out_of_range_number_names_file_line_section_and_key() {
    check_out_of_range(
        FILE,
        parse,
        "TRANSPORT",
        "handshake_timeout",
        "601",
        "a whole number from 1 to 600",
    );
}
