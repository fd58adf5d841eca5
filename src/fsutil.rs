//! File-creation rules for everything the daemon writes as root (pid file
//! aside, see `daemon::PidFile`): state files are replaced atomically
//! through a temp file created with `O_CREAT | O_EXCL | O_NOFOLLOW` under a
//! random name in the same directory (a planted file or symlink is never
//! opened, let alone followed), removed on every error path and, after a
//! crash, at the next start; directories the daemon writes into must not
//! be world-writable.
//!
//! Owns nothing. Calls only the file system and `getrandom(2)`.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Prefix of temp files: `.<name>.tmp.` + random hex.
fn temp_prefix(path: &Path) -> Option<String> {
    Some(format!(".{}.tmp.", path.file_name()?.to_str()?))
}

fn random_hex() -> String {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Not random, still unique within the process; O_EXCL keeps it safe.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (t as u64 ^ u64::from(std::process::id())).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Replace `path` with `data` atomically: a fresh private temp file (mode
/// 0600), fsync, rename. Nothing is left behind on failure.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, true)
}

/// [`write_atomic`] without the fsync: a reader, or the writer after a
/// kill, sees the old or the new contents (the rename is atomic), but a
/// machine crash may lose the last writes. For the lab controller's state.
#[cfg(feature = "lab")]
pub(crate) fn write_atomic_unsynced(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, false)
}

fn replace(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let prefix = temp_prefix(path)
        .ok_or_else(|| io::Error::other(format!("{}: no file name", path.display())))?;
    let tmp: PathBuf = dir.join(format!("{prefix}{}", random_hex()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Remove temp files `write_atomic` left for `path` (a crash between
/// create and rename). Returns how many were removed.
pub(crate) fn remove_stale_temps(path: &Path) -> usize {
    let (Some(dir), Some(prefix)) = (path.parent(), temp_prefix(path)) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_str().is_some_and(|s| s.starts_with(&prefix))
            && std::fs::remove_file(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Why a directory the daemon writes into is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirRefused {
    NotADirectory(PathBuf),
    WorldWritable(PathBuf),
}

impl std::fmt::Display for DirRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirRefused::NotADirectory(p) => write!(f, "{} is not a directory", p.display()),
            DirRefused::WorldWritable(p) => write!(f, "{} is world-writable", p.display()),
        }
    }
}

impl std::error::Error for DirRefused {}

/// An existing directory the daemon writes into must not be writable by
/// everyone (a local user could plant files or links there). A missing
/// one is fine (the daemon creates it 0750).
pub fn check_private_dir(path: &Path) -> Result<(), DirRefused> {
    let world_writable = |m: &std::fs::Metadata| m.permissions().mode() & 0o002 != 0;
    let meta = match std::fs::symlink_metadata(path) {
        // A link is judged by what it points to.
        Ok(m) if m.file_type().is_symlink() => std::fs::metadata(path),
        other => other,
    };
    match meta {
        Ok(m) if !m.is_dir() => Err(DirRefused::NotADirectory(path.to_path_buf())),
        Ok(m) if world_writable(&m) => Err(DirRefused::WorldWritable(path.to_path_buf())),
        Ok(_) => Ok(()),
        // A dangling link is no directory; a missing path is created later.
        Err(_) if std::fs::symlink_metadata(path).is_ok() => {
            Err(DirRefused::NotADirectory(path.to_path_buf()))
        }
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fsu-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn atomic_write_private_and_clean() {
        let d = dir("w");
        let p = d.join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "no temp left");
        // A write that fails after the temp file was written (the rename
        // onto a non-empty directory fails, as root too) leaves no temp.
        let d2 = d.join("taken");
        std::fs::create_dir_all(d2.join("inside")).unwrap();
        assert!(write_atomic(&d2, b"three").is_err());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2, "no temp left");
        // Stale temps of a crashed run are removed.
        std::fs::write(d.join(".state.json.tmp.deadbeef"), "x").unwrap();
        assert_eq!(remove_stale_temps(&p), 1);
        assert!(p.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn world_writable_dirs_refused() {
        let d = dir("ww");
        assert!(check_private_dir(&d).is_ok());
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            check_private_dir(&d),
            Err(DirRefused::WorldWritable(d.clone()))
        );
        assert!(check_private_dir(&d.join("missing")).is_ok());
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o750)).unwrap();
        let file = d.join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(
            check_private_dir(&file),
            Err(DirRefused::NotADirectory(file.clone()))
        );
        let dangling = d.join("dangling");
        std::os::unix::fs::symlink(d.join("nowhere"), &dangling).unwrap();
        assert_eq!(
            check_private_dir(&dangling),
            Err(DirRefused::NotADirectory(dangling.clone()))
        );
        let link = d.join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(check_private_dir(&link).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}
