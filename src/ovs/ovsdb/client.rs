//! `Monitor`: one JSON-RPC connection to ovsdb-server's unix socket
//! (`{OVS run dir}/db.sock`) with a `monitor` of the Interface and Port
//! columns of `super::monitor_request`, read on demand: a lookup first
//! applies what arrived since the last one (no thread, no polling), a wait
//! for a tag blocks in `poll(2)` on the socket and the shutdown self-pipe
//! until an update brings it. `echo` requests are answered.
//!
//! Owns the connection (created lazily, dropped on any error; the next
//! call reconnects and starts from the monitor's initial rows). Calls
//! std unix sockets and `poll(2)` only (no external commands).
//! Lock: the connection lock is held for non-blocking reads and the
//! initial answer (bounded by `CONNECT_TIMEOUT`), never across a wait.

use super::{classify, Framer, Incoming, View};
use crate::shutdown::Shutdown;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for the socket and the monitor's initial rows.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the monitor cannot answer (the caller uses its process path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsdbError(pub String);

impl std::fmt::Display for OvsdbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ovsdb monitor: {}", self.0)
    }
}

impl std::error::Error for OvsdbError {}

fn err(what: &str, e: impl std::fmt::Display) -> OvsdbError {
    OvsdbError(format!("{what}: {e}"))
}

struct Conn {
    stream: Arc<UnixStream>,
    framer: Framer,
    view: View,
}

/// See the module doc.
pub struct Monitor {
    path: PathBuf,
    conn: Mutex<Option<Conn>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("path", &self.path).finish()
    }
}

impl Conn {
    fn open(path: &Path) -> Result<Conn, OvsdbError> {
        let stream = UnixStream::connect(path).map_err(|e| err(&path.display().to_string(), e))?;
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| err("socket", e))?;
        let mut c = Conn {
            stream: Arc::new(stream),
            framer: Framer::default(),
            view: View::new(),
        };
        (&*c.stream)
            .write_all(super::monitor_request().as_bytes())
            .map_err(|e| err("send monitor", e))?;
        c.stream
            .set_nonblocking(true)
            .map_err(|e| err("socket", e))?;
        // The answer carries every monitored row.
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut initial = false;
        while !initial {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OvsdbError("no answer to monitor".into()));
            }
            wait_readable(&c.stream, None, left)?;
            initial = c.drain()?;
        }
        Ok(c)
    }

    /// Read and apply everything available now. True when the monitor's
    /// answer was among it.
    fn drain(&mut self) -> Result<bool, OvsdbError> {
        let mut answered = false;
        let mut buf = [0u8; 65536];
        loop {
            let n = match (&*self.stream).read(&mut buf) {
                Ok(0) => return Err(OvsdbError("connection closed".into())),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(answered),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(err("read", e)),
            };
            let msgs = self
                .framer
                .push(&buf[..n])
                .map_err(|e| err("stream", e.0))?;
            for m in msgs {
                match classify(&m) {
                    Incoming::Updates(u) => {
                        if m.get("method").is_none() {
                            answered = true;
                        }
                        self.view.apply(&u);
                    }
                    Incoming::MonitorError(e) => return Err(err("monitor refused", e)),
                    Incoming::Echo(reply) => {
                        // Small; the socket's buffer takes it.
                        let _ = (&*self.stream).write_all(reply.as_bytes());
                    }
                    Incoming::Other => {}
                }
            }
        }
    }
}

/// Wait until `s` is readable (or the shutdown pipe is), at most `d`.
fn wait_readable(
    s: &UnixStream,
    shutdown: Option<&Shutdown>,
    d: Duration,
) -> Result<(), OvsdbError> {
    let ms = d.as_millis().clamp(1, 60_000) as u16;
    let wake = shutdown.and_then(|s| s.wake_fd());
    let mut fds = vec![PollFd::new(s.as_fd(), PollFlags::POLLIN)];
    if let Some(w) = wake {
        fds.push(PollFd::new(w, PollFlags::POLLIN));
    }
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(err("poll", e)),
    }
}

impl Monitor {
    /// A monitor of the database at `path` (e.g. `/var/run/openvswitch/db.sock`);
    /// nothing is opened until the first call.
    pub fn new(path: impl Into<PathBuf>) -> Monitor {
        Monitor {
            path: path.into(),
            conn: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Apply what arrived, then `f` on the view. On error the connection is
    /// dropped (the next call reconnects).
    fn with_view<T>(&self, f: impl FnOnce(&View) -> T) -> Result<(T, Arc<UnixStream>), OvsdbError> {
        let mut guard = self.conn.lock();
        if guard.is_none() {
            *guard = Some(Conn::open(&self.path)?);
        }
        let Some(c) = guard.as_mut() else {
            return Err(OvsdbError("no connection".into()));
        };
        if let Err(e) = c.drain() {
            *guard = None;
            return Err(e);
        }
        Ok((f(&c.view), c.stream.clone()))
    }

    /// Name and usable tag of the interface whose `external_ids:iface-id`
    /// is `iface_id`, as the database holds them now; `Ok(None)` when no
    /// interface has it.
    pub fn lookup(&self, iface_id: &str) -> Result<Option<(String, Option<u16>)>, OvsdbError> {
        self.with_view(|v| v.lookup(iface_id)).map(|(r, _)| r)
    }

    /// Like `lookup`, waiting until `deadline` for the interface and a usable
    /// tag to appear (woken by each update, or by shutdown: then
    /// `Err("shutdown")`). Returns what is known at the end.
    pub fn wait_tag(
        &self,
        iface_id: &str,
        deadline: Instant,
        shutdown: &Shutdown,
    ) -> Result<Option<(String, Option<u16>)>, OvsdbError> {
        loop {
            let (r, stream) = self.with_view(|v| v.lookup(iface_id))?;
            if matches!(r, Some((_, Some(_)))) {
                return Ok(r);
            }
            if shutdown.is_set() {
                return Err(OvsdbError("shutdown".into()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(r);
            }
            wait_readable(&stream, Some(shutdown), left.min(Duration::from_secs(1)))?;
        }
    }

    /// (Interface rows, Port rows) in the view (0, 0 when not connected).
    pub fn rows(&self) -> (usize, usize) {
        self.conn.lock().as_ref().map_or((0, 0), |c| c.view.len())
    }
}
