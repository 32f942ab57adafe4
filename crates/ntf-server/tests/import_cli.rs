//! `ntf-server import` as an operator runs it: the real binary, a directory made by `init`, the
//! hand-written reference store log (tests/fixtures/reference). The library side is tested in
//! import_reference.rs (imported tokens answer TCHK, an imported subscription pushes).

use std::path::Path;
use std::process::Output;

use hush_server_common::test_support::{dirs_command, output_text as text};

fn run(etc: &Path, var: &Path, args: &[&str]) -> Output {
    dirs_command(env!("CARGO_BIN_EXE_ntf-server"), "NTF_SERVER", etc, var)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn import_subcommand_imports_tokens_and_subscriptions_once() {
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("etc"), dir.path().join("var"));
    let init = run(&etc, &var, &["init", "--port", "0", "--push-port", "0"]);
    assert!(init.status.success(), "{}", text(&init));
    let log =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/ntf-server-store.log");
    let args = ["import", "--store-log", log.to_str().unwrap()];
    let first = run(&etc, &var, &args);
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    assert!(out.contains("Imported 3 tokens ("), "{out}");
    assert!(out.contains(" and 3 subscriptions."), "{out}");
    // A store with tokens: refused without --force.
    let again = run(&etc, &var, &args);
    assert!(!again.status.success());
    assert!(
        text(&again).to_lowercase().contains("force"),
        "{}",
        text(&again)
    );
}

#[test]
fn import_of_a_malformed_log_names_the_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("etc"), dir.path().join("var"));
    assert!(
        run(&etc, &var, &["init", "--port", "0", "--push-port", "0"])
            .status
            .success()
    );
    let bad = dir.path().join("bad.log");
    std::fs::write(&bad, "TCREATE broken\n").unwrap();
    let o = run(
        &etc,
        &var,
        &["import", "--store-log", bad.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("bad.log:1"), "{}", text(&o));
}
