//! `smp-server import` as an operator runs it: the real binary, a relay directory made by
//! `init`, the hand-written reference fixtures (tests/fixtures/reference). The library side
//! (every record kind, messages served over SMP afterwards) is tested in import_reference.rs.

use std::path::Path;
use std::process::Output;

use hush_server_common::test_support::{dirs_command, output_text as text};

fn fixture(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(p)
}

fn run(etc: &Path, var: &Path, args: &[&str]) -> Output {
    dirs_command(env!("CARGO_BIN_EXE_smp-server"), "SMP_SERVER", etc, var)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn import_subcommand_imports_once_and_refuses_a_second_time_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("etc"), dir.path().join("var"));
    let init = run(&etc, &var, &["init", "-y", "--port", "0"]);
    assert!(init.status.success(), "{}", text(&init));
    let log = fixture("smp-server-store.log");
    let msgs = fixture("messages");
    let args = [
        "import",
        "--store-log",
        log.to_str().unwrap(),
        "--messages",
        msgs.to_str().unwrap(),
    ];
    let first = run(&etc, &var, &args);
    let out = text(&first);
    assert!(first.status.success(), "{out}");
    assert!(
        out.contains(
            "Imported 9 queues (5 secured, 2 with a notifier, 2 suspended, 1 blocked), 2 services"
        ),
        "{out}"
    );
    assert!(out.contains("1 queues deleted in the log"), "{out}");
    assert!(out.contains("1 incomplete last lines skipped"), "{out}");

    // The store has queues now: a second import is refused, and the store is left as it was.
    let again = run(&etc, &var, &args);
    assert!(!again.status.success());
    assert!(
        text(&again).to_lowercase().contains("force"),
        "{}",
        text(&again)
    );
    let forced = run(&etc, &var, &[&args[..], &["--force"]].concat());
    let out = text(&forced);
    assert!(forced.status.success(), "{out}");
    assert!(out.contains("Imported 0 queues"), "{out}");
    assert!(
        out.contains("9 queues already in the store (skipped)"),
        "{out}"
    );
}

#[test]
fn import_of_a_malformed_log_names_file_and_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (etc, var) = (dir.path().join("etc"), dir.path().join("var"));
    assert!(
        run(&etc, &var, &["init", "-y", "--port", "0"])
            .status
            .success()
    );
    let bad = dir.path().join("bad-store.log");
    std::fs::write(&bad, "NOT_A_RECORD something\n").unwrap();
    let o = run(
        &etc,
        &var,
        &["import", "--store-log", bad.to_str().unwrap()],
    );
    assert!(!o.status.success());
    let out = text(&o);
    assert!(out.contains("bad-store.log:1"), "{out}");
}
