//! Start-up side of [`crate::private`]: data directories and database files that may already
//! exist from an older version (or were created by hand) with looser modes are tightened when a
//! component starts, and the change is logged at info (it is a repair, not an error).
//!
//! Used by the servers' `init` / `start`, the relay's message store, the client's profile and
//! the agent's database.

use std::io;
use std::path::{Path, PathBuf};

use crate::private::{DIR_MODE, FILE_MODE, create_private_dir, ensure_private_file};

/// If `path` exists and grants permissions beyond `mode` (any group/other bit, for example),
/// sets it to `mode` and logs at info. Returns the old permission bits when it changed them.
/// A missing `path` is not an error (`Ok(None)`).
pub fn tighten_existing(path: &Path, mode: u32, what: &str) -> io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let old = meta.permissions().mode() & 0o7777;
        if old & !mode == 0 {
            return Ok(None);
        }
        crate::private::set_mode(path, mode)?;
        tracing::info!(
            "{what} {}: permissions were {old:04o}, tightened to {mode:04o}",
            path.display()
        );
        Ok(Some(old))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode, what);
        Ok(None)
    }
}

/// A private data directory (0700): created (with missing parents, 0700) if missing; an existing
/// directory with a looser mode is tightened and that is logged at info.
///
/// A top-level directory (`/`, `/var`, `/tmp`, ...: an operator's `--data-dir /var` by mistake)
/// is never changed: that would break the system. It is logged at warn instead, and used as is.
pub fn prepare_private_dir(path: &Path, what: &str) -> io::Result<()> {
    if is_top_level(path) {
        if path.exists() {
            tracing::warn!(
                "{what} {} is a top-level directory: its permissions are left as they are; \
                 use a directory of its own (e.g. /var/opt/hush/...) so it can be private (0700)",
                path.display()
            );
            return Ok(());
        }
    } else {
        tighten_existing(path, DIR_MODE, what)?;
    }
    create_private_dir(path)
}

/// `/` or a directory directly under it (after resolving `..` and symlinks where it exists).
fn is_top_level(path: &Path) -> bool {
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    resolved.is_absolute() && resolved.components().count() <= 2
}

/// An SQLite database file about to be opened: an existing file (and its `-wal`, `-shm` and
/// `-journal` companions) with a looser mode is tightened to 0600 (logged at info); a missing
/// one is created empty with mode 0600 when `create` is set, so SQLite opens a private file
/// and creates the companions with the same mode. Returns whether the database file existed.
pub fn prepare_private_db(path: &Path, create: bool, what: &str) -> io::Result<bool> {
    let existed = path.try_exists()?;
    for p in sqlite_companions(path) {
        tighten_existing(&p, FILE_MODE, what)?;
    }
    if !existed && create {
        ensure_private_file(path)?;
    }
    Ok(existed)
}

/// `path` and the files SQLite keeps beside it.
fn sqlite_companions(path: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [
        path.to_path_buf(),
        with("-wal"),
        with("-shm"),
        with("-journal"),
    ]
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::private::{mode_of, set_mode};

    fn tempdir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("hush-private-start-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn loose_dir_is_tightened_tight_one_left_alone() {
        let root = tempdir("dir");
        let d = root.join("data");
        prepare_private_dir(&d, "data directory").unwrap();
        assert_eq!(mode_of(&d).unwrap(), 0o700);
        set_mode(&d, 0o755).unwrap();
        assert_eq!(tighten_existing(&d, DIR_MODE, "t").unwrap(), Some(0o755));
        assert_eq!(mode_of(&d).unwrap(), 0o700);
        // Already private: nothing to do.
        assert_eq!(tighten_existing(&d, DIR_MODE, "t").unwrap(), None);
        set_mode(&d, 0o750).unwrap();
        prepare_private_dir(&d, "data directory").unwrap();
        assert_eq!(mode_of(&d).unwrap(), 0o700);
        assert_eq!(
            tighten_existing(&root.join("missing"), DIR_MODE, "t").unwrap(),
            None
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn top_level_directories_are_never_changed() {
        assert!(is_top_level(Path::new("/")));
        assert!(is_top_level(Path::new("/tmp")));
        assert!(is_top_level(Path::new("/tmp/../var")));
        assert!(!is_top_level(Path::new("/var/opt/hush")));
        assert!(!is_top_level(Path::new("relative")));
        let before = mode_of(Path::new("/tmp")).unwrap();
        prepare_private_dir(Path::new("/tmp"), "data directory").unwrap();
        assert_eq!(mode_of(Path::new("/tmp")).unwrap(), before);
    }

    #[test]
    fn database_and_companions_are_private() {
        let root = tempdir("db");
        let db = root.join("x.db");
        assert!(!prepare_private_db(&db, false, "db").unwrap());
        assert!(!db.exists(), "create = false must not create the file");
        assert!(!prepare_private_db(&db, true, "db").unwrap());
        assert_eq!(mode_of(&db).unwrap(), 0o600);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
        let wal = root.join("x.db-wal");
        std::fs::write(&wal, b"").unwrap();
        set_mode(&wal, 0o644).unwrap();
        set_mode(&db, 0o664).unwrap();
        assert!(prepare_private_db(&db, true, "db").unwrap());
        assert_eq!(mode_of(&db).unwrap(), 0o600);
        assert_eq!(mode_of(&wal).unwrap(), 0o600);
        std::fs::remove_dir_all(root).unwrap();
    }
}
