//! Status interface (docs/protocol.md): the document, the unix-socket server the
//! daemon runs, the client used by `vdp-agent status`, and the readable
//! table.
//!
//! Owns: the listening socket `{run_dir}/vdp-agent.sock`. Calls nothing of
//! the daemon: the server is handed a closure that builds the document.
//!
//! Protocol (decision): the client connects, writes one line `status\n`,
//! the server answers with one (pretty-printed) JSON document followed by
//! `\n` and closes.
//! Any other request gets `{"error": "unknown request"}`. Each connection
//! is served with 2 s read/write timeouts so a stuck client cannot block
//! the server thread for long. The socket is created mode 0600 (root-only
//! like the daemon); a stale socket file is removed at start unless a live
//! daemon still answers on it.

use crate::manager::link::LinkStatus;
use crate::manager::UplinkSnapshot;
use crate::model::VsiStatus;
use crate::task::ThreadName;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

/// `queues` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub(crate) struct QueueLens {
    pub main: usize,
    pub err: usize,
}

/// The whole status document, in docs/protocol.md key order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StatusDoc {
    pub host_id: String,
    pub version: String,
    pub uplink: UplinkSnapshot,
    pub vsis: Vec<VsiStatus>,
    pub queues: QueueLens,
    pub threads: BTreeMap<String, String>,
    pub server: LinkStatus,
    /// Extension (README): host-side facts, e.g. `commands_spawned` (every
    /// privileged command the agent ran, for `scripts/bench`) and the lldpad
    /// event client's state.
    pub host: BTreeMap<String, serde_json::Value>,
    /// Extension (README "Status interface"): facts for `status --check`,
    /// `controller_error_age_s` (seconds since the last failed controller
    /// call, null when none failed).
    pub health: BTreeMap<String, serde_json::Value>,
}

/// Errors of the status client and server.
#[derive(Debug)]
pub enum StatusError {
    /// Nothing listens on the socket: the daemon is not running.
    NotRunning {
        path: PathBuf,
        err: io::Error,
    },
    /// A live daemon already serves this socket.
    InUse {
        path: PathBuf,
    },
    Io {
        what: String,
        err: io::Error,
    },
    BadReply {
        msg: String,
    },
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::NotRunning { path, err }
                if err.kind() == io::ErrorKind::PermissionDenied =>
            {
                write!(
                    f,
                    "permission denied on {} (the status socket is root's only: run as root)",
                    path.display()
                )
            }
            StatusError::NotRunning { path, err } => write!(
                f,
                "vdp-agent is not running (cannot connect to {}: {err})",
                path.display()
            ),
            StatusError::InUse { path } => write!(
                f,
                "status socket {} is served by another running vdp-agent",
                path.display()
            ),
            StatusError::Io { what, err } => write!(f, "{what}: {err}"),
            StatusError::BadReply { msg } => write!(f, "bad reply from vdp-agent: {msg}"),
        }
    }
}

impl std::error::Error for StatusError {}

const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The listening side, owned by the daemon's `status-server` thread.
pub(crate) struct StatusServer {
    listener: UnixListener,
    path: PathBuf,
    /// Clients being served right now.
    active: Arc<AtomicUsize>,
}

impl StatusServer {
    /// Bind `path` (mode 0600), removing a stale socket file first.
    pub(crate) fn bind(path: &Path) -> Result<StatusServer, StatusError> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(StatusError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(|err| StatusError::Io {
                what: format!("removing stale socket {}", path.display()),
                err,
            })?;
        }
        // Bound under a temporary name, made 0600, then renamed into
        // place: the socket never appears at `path` with the umask's mode
        // (a client, or a test, looking right after it appears saw 0755).
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("sock");
        let tmp = path.with_file_name(format!(".{name}.bind.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let io = |what: String| move |err| StatusError::Io { what, err };
        let listener =
            UnixListener::bind(&tmp).map_err(io(format!("binding {}", tmp.display())))?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(io(format!("chmod 0600 {}", tmp.display())))
            .and_then(|()| {
                std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))
            });
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        listener
            .set_nonblocking(true)
            .map_err(|err| StatusError::Io {
                what: "set_nonblocking on status socket".into(),
                err,
            })?;
        Ok(StatusServer {
            listener,
            path: path.to_path_buf(),
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Wait up to `wait` for one client and hand it to a short-lived
    /// `status-client` thread that serves it with `doc()`. One idle or
    /// dribbling client never holds the others: each has
    /// [`CLIENT_DEADLINE`] for its request line, and at most
    /// [`MAX_CLIENTS`] are served at once (beyond that a new connection is
    /// closed at once). Returns Ok(false) when no client came.
    #[cfg(test)]
    pub(crate) fn serve_one(&self, wait: Duration, doc: &StatusFn) -> io::Result<bool> {
        self.serve_one_until(wait, doc, None)
    }

    /// `serve_one`, returning at once when `stop` (e.g.
    /// `Shutdown::wake_fd`) becomes readable.
    pub(crate) fn serve_one_until(
        &self,
        wait: Duration,
        doc: &StatusFn,
        stop: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> io::Result<bool> {
        let srv = crate::serve::Server {
            listener: &self.listener,
            active: &self.active,
            max: MAX_CLIENTS,
            name: ThreadName::StatusClient,
        };
        let doc = doc.clone();
        crate::serve::accept_one(
            &srv,
            wait,
            stop,
            |l| l.accept().map(|(s, _)| s),
            move |stream| {
                if let Err(e) = answer(&stream, &*doc) {
                    // A client that went away is its own problem.
                    log::debug!("status client: {e}");
                }
            },
        )
    }
}

/// What the status server calls to build the document.
pub(crate) type StatusFn = Arc<dyn Fn() -> StatusDoc + Send + Sync>;

/// Most status clients served at once.
pub(crate) const MAX_CLIENTS: usize = 16;
/// How long a client may take to send its request line (in total).
pub(crate) const CLIENT_DEADLINE: Duration = Duration::from_secs(1);

fn answer(stream: &UnixStream, doc: &dyn Fn() -> StatusDoc) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let deadline = std::time::Instant::now() + CLIENT_DEADLINE;
    let mut line = Vec::new();
    let mut buf = [0u8; 64];
    let mut r = stream;
    while !line.contains(&b'\n') && line.len() < 256 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request line too slow",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match r.read(&mut buf)? {
            0 => break,
            n => line.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&line);
    let reply = if line.lines().next().map(str::trim) == Some("status") {
        serde_json::to_string_pretty(&doc()).unwrap_or_else(|e| {
            serde_json::json!({"error": format!("cannot encode status: {e}")}).to_string()
        })
    } else {
        serde_json::json!({"error": "unknown request"}).to_string()
    };
    let mut w = stream;
    w.write_all(reply.as_bytes())?;
    w.write_all(b"\n")?;
    Ok(())
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Ask the daemon listening on `path` for its status document: the text
/// exactly as the daemon wrote it (pretty-printed, keys in
/// docs/protocol.md order, for `status --json`) and its parsed value.
pub fn query_raw(path: &Path) -> Result<(String, Value), StatusError> {
    let stream = UnixStream::connect(path).map_err(|err| StatusError::NotRunning {
        path: path.to_path_buf(),
        err,
    })?;
    let io = |what: &str| {
        let what = what.to_string();
        move |err| StatusError::Io { what, err }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io("set timeout"))?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io("set timeout"))?;
    (&stream)
        .write_all(b"status\n")
        .map_err(io("sending status request"))?;
    let mut reply = String::new();
    (&stream)
        .take(16 << 20)
        .read_to_string(&mut reply)
        .map_err(io("reading status reply"))?;
    let v: Value = serde_json::from_str(reply.trim())
        .map_err(|e| StatusError::BadReply { msg: e.to_string() })?;
    if let Some(e) = v.get("error") {
        return Err(StatusError::BadReply { msg: e.to_string() });
    }
    Ok((reply.trim_end().to_string(), v))
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) if x.is_empty() => "-".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

/// The readable form of a status document (`status` without `--json`).
pub fn render_table(v: &Value) -> String {
    let mut out = String::new();
    let g = |path: &[&str]| -> Value {
        let mut cur = v;
        for p in path {
            cur = match cur.get(p) {
                Some(x) => x,
                None => return Value::Null,
            };
        }
        cur.clone()
    };
    out.push_str(&format!("host_id:         {}\n", s(&g(&["host_id"]))));
    out.push_str(&format!("version:         {}\n", s(&g(&["version"]))));
    out.push_str(&format!(
        "uplink:          {} (veth {}, detected {})\n",
        s(&g(&["uplink", "phy"])),
        s(&g(&["uplink", "veth"])),
        s(&g(&["uplink", "detected"]))
    ));
    out.push_str(&format!(
        "uplink reason:   {}\n",
        s(&g(&["uplink", "fail_reason"]))
    ));
    out.push_str(&format!(
        "queues:          main {}, err {}\n",
        s(&g(&["queues", "main"])),
        s(&g(&["queues", "err"]))
    ));
    out.push_str(&format!(
        "server:          last ok {}, pending results {}\n",
        s(&g(&["server", "last_ok"])),
        s(&g(&["server", "pending_results"]))
    ));
    out.push_str(&format!(
        "server error:    {}\n",
        s(&g(&["server", "last_error"]))
    ));
    if let Value::Object(m) = g(&["host"]) {
        if !m.is_empty() {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{k} {}", s(v))).collect();
            out.push_str(&format!("host:            {}\n", items.join(", ")));
        }
    }
    out.push_str("threads:\n");
    if let Value::Object(m) = g(&["threads"]) {
        for (name, state) in m {
            out.push_str(&format!("  {:<16} {}\n", name, s(&state)));
        }
    }
    let vsis = g(&["vsis"]);
    let list = vsis.as_array().cloned().unwrap_or_default();
    out.push_str(&format!("vsis: {}\n", list.len()));
    if !list.is_empty() {
        out.push_str(&format!(
            "  {:<36}  {:<17}  {:>8}  {:>5}  {:>5}  {:<11}  {:<11}  {}\n",
            "PORT", "MAC", "SEGMENT", "LOCAL", "VDP", "MODE", "RESULT", "REASON"
        ));
        for x in list {
            let f = |k: &str| s(x.get(k).unwrap_or(&Value::Null));
            out.push_str(&format!(
                "  {:<36}  {:<17}  {:>8}  {:>5}  {:>5}  {:<11}  {:<11}  {}\n",
                f("port_uuid"),
                f("mac"),
                f("segmentation_id"),
                f("local_vlan"),
                f("vdp_vlan"),
                f("mode"),
                f("result"),
                f("fail_reason")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(path: &Path) -> Result<Value, StatusError> {
        query_raw(path).map(|(_, v)| v)
    }

    fn doc() -> StatusDoc {
        StatusDoc {
            host_id: "compute1".into(),
            version: "0.1.0".into(),
            uplink: UplinkSnapshot {
                phy: Some("eth2".into()),
                veth: Some("LLDPLeth2".into()),
                detected: true,
                fail_reason: String::new(),
            },
            vsis: vec![VsiStatus {
                port_uuid: "11111111-2222-3333-4444-555555555555".into(),
                mac: "fa:16:3e:00:00:01".into(),
                net_uuid: "n".into(),
                segmentation_id: 30001,
                local_vlan: Some(1),
                vdp_vlan: Some(3003),
                result: "SUCCESS".into(),
                fail_reason: None,
                mode: "assoc".into(),
            }],
            queues: QueueLens { main: 0, err: 1 },
            threads: [("heartbeat".to_string(), "alive".to_string())].into(),
            server: LinkStatus::default(),
            host: Default::default(),
            health: Default::default(),
        }
    }

    #[test]
    fn document_has_contract_keys_in_order() {
        let s = serde_json::to_string(&doc()).unwrap();
        let keys = [
            "host_id", "version", "uplink", "vsis", "queues", "threads", "server",
        ];
        let mut pos = 0;
        for k in keys {
            let p = s.find(&format!("\"{k}\"")).unwrap();
            assert!(p >= pos, "{k} out of order in {s}");
            pos = p;
        }
        let v: Value = serde_json::from_str(&s).unwrap();
        for k in ["phy", "veth", "detected", "fail_reason"] {
            assert!(v["uplink"].get(k).is_some(), "{k}");
        }
        for k in ["last_ok", "last_error", "pending_results"] {
            assert!(v["server"].get(k).is_some(), "{k}");
        }
        assert_eq!(v["vsis"][0]["vdp_vlan"], 3003);
        let t = render_table(&v);
        assert!(
            t.contains("eth2")
                && t.contains("3003")
                && t.contains("heartbeat")
                && t.contains(" MODE ")
                && t.contains(" assoc "),
            "{t}"
        );
    }

    #[test]
    fn server_and_client_round_trip_and_stale_socket() {
        let dir = std::env::temp_dir().join(format!("co-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vdp-agent.sock");
        // stale file from a dead daemon
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        assert!(matches!(query(&path), Err(StatusError::NotRunning { .. })));
        let srv = StatusServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            StatusServer::bind(&path),
            Err(StatusError::InUse { .. })
        ));
        let doc: StatusFn = Arc::new(doc);
        let p2 = path.clone();
        let t = std::thread::spawn(move || query(&p2));
        // The first connection in the backlog is the dead probe of the
        // InUse check above: the server must survive it.
        for _ in 0..40 {
            if t.is_finished() {
                break;
            }
            srv.serve_one(Duration::from_millis(100), &doc).unwrap();
        }
        let v = t.join().unwrap().unwrap();
        assert_eq!(v["host_id"], "compute1");
        assert_eq!(v["queues"]["err"], 1);
        assert!(!srv.serve_one(Duration::from_millis(10), &doc).unwrap());

        // Ten idle clients (connected, never writing) and one dribbling
        // one hold nobody: a real query is answered within 100 ms.
        let idle: Vec<UnixStream> = (0..10)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let drib = UnixStream::connect(&path).unwrap();
        (&drib).write_all(b"st").unwrap();
        for _ in 0..11 {
            srv.serve_one(Duration::from_millis(50), &doc).unwrap();
        }
        let p2 = path.clone();
        let t0 = std::time::Instant::now();
        let t = std::thread::spawn(move || query(&p2));
        while !t.is_finished() && t0.elapsed() < Duration::from_secs(3) {
            srv.serve_one(Duration::from_millis(10), &doc).unwrap();
        }
        let took = t0.elapsed();
        assert!(t.join().unwrap().is_ok());
        assert!(
            took < Duration::from_millis(100),
            "status took {took:?} with idle clients"
        );
        drop((idle, drib));
        drop(srv);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
