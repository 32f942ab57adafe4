//! Data at rest: `hush up` keeps every component's keys and stores in private directories
//! (0700) and files (0600), tightening a pre-existing 0755 data directory; `hush init` creates
//! the profile directory 0700 (tightening a looser one) and its databases 0600.

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{hush, start_up};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// Every directory under `root` (and `root`) is 0700 and every file 0600, except the public
/// ones (certificates, fingerprints, the printed addresses). Returns the files checked.
fn assert_private_tree(root: &Path) -> Vec<String> {
    assert_eq!(mode(root), 0o700, "{}", root.display());
    let mut checked = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let name = e.file_name().into_string().unwrap();
        if e.file_type().unwrap().is_dir() {
            checked.extend(assert_private_tree(&p));
            continue;
        }
        let public = name.ends_with(".crt") || name == "fingerprint" || name == "addresses.json";
        if !public {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
            checked.push(name);
        }
    }
    checked
}

#[test]
fn up_and_init_keep_keys_and_databases_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("up");
    std::fs::create_dir(&data).unwrap();
    set_mode(&data, 0o755);
    let (up, relay) = start_up(dir.path());
    let checked = assert_private_tree(&data);
    for f in [
        "ca.key",
        "server.key",
        "smp-server.ini",
        "smp-server-store.db",
        "smp-server-store.db-wal",
        "ntf-server.ini",
        "ntf-server-store.db",
        "push-server.key",
        "handle.key",
        "vapid.pem",
        "apns-key.p8",
        "apns-sink.key",
        "push-outbox.sqlite",
    ] {
        assert!(
            checked.iter().any(|c| c == f),
            "{f} not found in {checked:?}"
        );
    }

    // The profile: a pre-existing 0755 directory is tightened, hush.db is private.
    let profile = dir.path().join("alice");
    std::fs::create_dir(&profile).unwrap();
    set_mode(&profile, 0o755);
    hush(&profile, &["init", "--name", "alice", "--relay", &relay]);
    assert_eq!(mode(&profile), 0o700);
    assert_eq!(mode(&profile.join("hush.db")), 0o600);
    // A command that opens the agent creates agent.db (keys, ratchets) private as well.
    hush(&profile, &["invite"]);
    let checked = assert_private_tree(&profile);
    assert!(checked.iter().any(|c| c == "agent.db"), "{checked:?}");

    up.signal(libc::SIGTERM);
    let (code, _) = up.finish(Duration::from_secs(20));
    assert_eq!(code, 0);
}
