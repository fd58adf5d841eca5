//! The pid file (flock'ed, `O_NOFOLLOW`) and the reopenable log file.
//!
//! Owns: both files. Calls the file system.

use super::*;

// ----- pid file ----------------------------------------------------------------

/// The pid file and single-instance guard: an exclusive `flock` on the
/// file, held for the daemon's life (the open file is kept), so a second
/// agent started at the same moment loses atomically and a stale file (a
/// crashed agent, any live process's pid in it, a zombie) is simply not
/// locked. Opened with `O_NOFOLLOW`: a symlink planted at the path is
/// refused, never followed. Removed on clean exit (drop).
#[derive(Debug)]
pub(crate) struct PidFile {
    path: PathBuf,
    /// Holds the lock.
    _file: std::fs::File,
}

impl PidFile {
    /// Lock `path` (creating it, mode 0644) and write our pid into it.
    pub(crate) fn acquire(path: &Path) -> Result<PidFile, DaemonError> {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err(format!(
                "opening pid file {} (a symlink is refused)",
                path.display()
            )))?;
        let meta = file
            .metadata()
            .map_err(io_err(format!("pid file {}", path.display())))?;
        if !meta.is_file() {
            return Err(DaemonError::Io {
                what: format!("pid file {}", path.display()),
                err: io::Error::other("not a regular file"),
            });
        }
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = (&file).take(32).read_to_string(&mut text);
                return Err(DaemonError::AlreadyRunning {
                    path: path.to_path_buf(),
                    pid: text.trim().parse().unwrap_or(0),
                });
            }
            return Err(DaemonError::Io {
                what: format!("locking pid file {}", path.display()),
                err,
            });
        }
        let me = std::process::id();
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(format!("{me}\n").as_bytes()))
            .map_err(io_err(format!("writing {}", path.display())))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // We hold the lock: the file is ours.
        let _ = std::fs::remove_file(&self.path);
    }
}

// ----- log file ----------------------------------------------------------------

/// Append-mode log file that can be reopened (SIGHUP, after logrotate).
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

/// The log file: appended to, created 0640, never through a symlink.
pub(super) fn open_append(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl LogFile {
    pub fn open(path: &Path) -> io::Result<Arc<LogFile>> {
        Ok(Arc::new(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(open_append(path)?),
        }))
    }

    /// Reopen the file by name (the old one may have been rotated away).
    pub fn reopen(&self) -> io::Result<()> {
        let f = open_append(&self.path)?;
        *self.file.lock() = f;
        Ok(())
    }

    /// A writer for `env_logger::Target::Pipe`.
    pub fn writer(self: &Arc<Self>) -> LogWriter {
        LogWriter(self.clone())
    }
}

/// `Write` handle on a [`LogFile`].
pub struct LogWriter(Arc<LogFile>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.file.lock().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.file.lock().flush()
    }
}
