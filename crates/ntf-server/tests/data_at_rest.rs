//! Data at rest: the ntf-server's SQLite store (tokens, subscriptions) and its directory are
//! private from creation; a looser existing directory is tightened when the store opens.

#![cfg(unix)]

use hush_server_common::private::{mode_of, set_mode};
use ntf_server::{Store, StoreMode};

#[test]
fn store_file_wal_shm_and_directory_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    set_mode(&data, 0o755).unwrap();
    let path = data.join("ntf-server-store.db");
    let store = Store::open(&StoreMode::Sqlite(path.clone())).unwrap();
    assert!(store.is_persistent());
    assert_eq!(mode_of(&data).unwrap(), 0o700, "data directory");
    for f in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{f}", path.display()));
        assert_eq!(mode_of(&p).unwrap(), 0o600, "{}", p.display());
    }
    drop(store);
    // A store file left world-readable is tightened on the next open.
    set_mode(&path, 0o644).unwrap();
    let _store = Store::open(&StoreMode::Sqlite(path.clone())).unwrap();
    assert_eq!(mode_of(&path).unwrap(), 0o600);
}
