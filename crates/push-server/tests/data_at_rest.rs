//! Data at rest: `push-server init` writes its keys, credentials and ini 0600 into a 0700
//! directory (a pre-existing 0755 one is tightened); `start` tightens a directory that was
//! loosened again and creates the outbox (device tokens) and its -wal/-shm 0600.

#![cfg(unix)]

use hush_server_common::private::{mode_of, set_mode};
use push_server::config::{self, Config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_and_start_keep_the_directory_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("push");
    std::fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o755).unwrap();
    push_server::cli::init(&dir, "127.0.0.1".parse().unwrap(), 0, "ntf").unwrap();
    assert_eq!(mode_of(&dir).unwrap(), 0o700, "directory after init");
    for f in [
        config::KEY_FILE,
        config::HANDLE_KEY_FILE,
        config::INI_FILE,
        "vapid.pem",
    ] {
        assert_eq!(mode_of(&dir.join(f)).unwrap(), 0o600, "{f}");
    }
    // No temporary files are left beside them.
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.starts_with('.'), "left over: {name}");
    }

    set_mode(&dir, 0o755).unwrap();
    let (cfg, _) = Config::load(&dir).unwrap();
    let running = push_server::cli::start(&cfg).await.unwrap();
    assert_eq!(mode_of(&dir).unwrap(), 0o700, "directory after start");
    for f in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{f}", cfg.outbox_file.display()));
        assert_eq!(mode_of(&p).unwrap(), 0o600, "{}", p.display());
    }
    running.stop().await;
}

#[test]
fn handle_key_is_private_and_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("handle.key");
    let key = push_server::HandleKey::generate();
    key.save(&p).unwrap();
    assert_eq!(mode_of(&p).unwrap(), 0o600);
    let before = std::fs::read(&p).unwrap();
    assert!(push_server::HandleKey::generate().save(&p).is_err());
    assert_eq!(std::fs::read(&p).unwrap(), before);
}
