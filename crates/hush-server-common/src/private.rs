//! Private files and directories: key files, databases and data directories are created with their
//! final mode (files 0600, directories 0700) so that they are never readable by others, not even for
//! the instant between `create` and `chmod`. Files are written in full, fsync'd, and replace the
//! old file atomically (write to a temporary sibling, fsync, rename, fsync the directory), so a crash
//! leaves either the old or the new contents, never a truncated key.
//!
//! Every component (servers, the agent's client database, the CLI's profile) uses these functions;
//! there is no second copy.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;
/// Mode of private directories.
pub const DIR_MODE: u32 = 0o700;

/// Writes `data` to `path` as a private file (0600): the data goes to a temporary sibling created
/// with mode 0600, is fsync'd, renamed over `path`, and the directory is fsync'd. An existing file
/// at `path` is replaced (its old mode does not survive).
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = create_private_file(&tmp, true)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a new private file (0600) at `path` and returns it open for writing; fails if it exists
/// unless `truncate` is set (then an existing file is truncated and its mode set to 0600).
pub fn create_private_file(path: &Path, truncate: bool) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true);
    if truncate {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    opts.mode(FILE_MODE);
    let f = opts.open(path)?;
    // `mode` only applies to a file this call created; an existing one is tightened here.
    #[cfg(unix)]
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Makes sure a database (or other) file that a library will open exists as a private file: creates
/// it empty with mode 0600 if missing, else tightens its mode to 0600. SQLite creates its `-wal`
/// and `-shm` files with the mode of the database file, so they are private too.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_private()
        .open(path)
    {
        Ok(f) => {
            f.sync_all()?;
            sync_dir(parent_dir(path))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => set_mode(path, FILE_MODE),
        Err(e) => Err(e),
    }
}

/// Creates `path` (and missing parents) as a private directory (0700); an existing directory's
/// mode is tightened to 0700. Missing parents are created with 0700 too.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(path)?;
    set_mode(path, DIR_MODE)
}

/// Sets the permission bits of `path` (no-op off Unix).
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// The permission bits of `path` (for tests and `doctor`-style checks).
#[cfg(unix)]
pub fn mode_of(path: &Path) -> io::Result<u32> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// fsync of a directory, so that a rename or a new entry in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        #[cfg(unix)]
        self.mode(FILE_MODE);
        self
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn write_private_creates_0600_and_replaces() {
        let dir = tempdir();
        let p = dir.join("key");
        write_private(&p, b"one").unwrap();
        assert_eq!(mode_of(&p).unwrap(), 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"one");
        // An existing world-readable file is replaced by a private one.
        set_mode(&p, 0o644).unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(mode_of(&p).unwrap(), 0o600);
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("key")]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn private_dir_and_file_modes() {
        let dir = tempdir();
        let d = dir.join("a/b");
        create_private_dir(&d).unwrap();
        assert_eq!(mode_of(&d).unwrap(), 0o700);
        assert_eq!(mode_of(&dir.join("a")).unwrap(), 0o700);
        set_mode(&d, 0o755).unwrap();
        create_private_dir(&d).unwrap();
        assert_eq!(mode_of(&d).unwrap(), 0o700);
        let f = d.join("db.sqlite");
        ensure_private_file(&f).unwrap();
        assert_eq!(mode_of(&f).unwrap(), 0o600);
        set_mode(&f, 0o666).unwrap();
        ensure_private_file(&f).unwrap();
        assert_eq!(mode_of(&f).unwrap(), 0o600);
        assert!(
            create_private_file(&f, false).is_err(),
            "create_new must refuse an existing file"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "hush-private-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }
}
