//! Private files and folders: what holds secrets or someone's file names
//! (the client's home, the server's data folder) is created with mode 0700
//! (folders) or 0600 (files), and an existing one found open to the group
//! or to others is narrowed to the owner's bits when opened, so that an
//! installation made before this rule, or under a loose umask, is repaired
//! rather than left readable.
//!
//! SQLite creates a database's `-wal`, `-shm` and `-journal` files with the
//! database file's own mode, so creating the database 0600 before SQLite
//! opens it keeps those private too; [`sqlite_file`] repairs all four.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a private folder.
pub const DIR_MODE: u32 = 0o700;
/// Mode of a private file.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` (and missing parents) as private folders, or narrows an
/// existing one to its owner's bits.
pub fn dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    narrow(path)?;
    Ok(())
}

/// Creates `path` as an empty private file if it is missing (never
/// truncating one), or narrows an existing one to its owner's bits.
pub fn file(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => narrow(path).map(drop),
        Err(e) => Err(e),
    }
}

/// [`file`] for an SQLite database, and [`narrow`] for its `-wal`,
/// `-shm` and `-journal` companions when they exist.
pub fn sqlite_file(path: &Path) -> io::Result<()> {
    file(path)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        narrow(&with_suffix(path, suffix))?;
    }
    Ok(())
}

/// Removes the group's and others' bits from `path`'s mode; returns
/// whether it had any. A missing path or a symbolic link is left alone
/// (changing a link's mode would change its target's).
pub fn narrow(path: &Path) -> io::Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode();
    if meta.file_type().is_symlink() || mode & 0o077 == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))?;
    Ok(true)
}

/// `path` with `suffix` appended to its file name (`state.sqlite-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_narrows_existing() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("a/b");
        dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);

        let f = d.join("db.sqlite");
        fs::write(&f, b"keep me").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let wal = d.join("db.sqlite-wal");
        fs::write(&wal, b"").unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o664)).unwrap();
        sqlite_file(&f).unwrap();
        assert_eq!((mode(&f), mode(&wal)), (0o600, 0o600));
        assert_eq!(fs::read(&f).unwrap(), b"keep me", "never truncated");

        let fresh = d.join("new");
        file(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
        assert!(!narrow(&d.join("missing")).unwrap());
    }
}
