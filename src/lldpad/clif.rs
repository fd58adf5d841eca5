//! lldpad control interface ("clif") transport and query client.
//!
//! Owns: `ClifSocket`, the datagram socket shared by the event client
//! (`events.rs`) and `ClifQuery` (bound to `@/com/intel/lldpad/<pid>-<tag><n>`,
//! connected to lldpad's `@/com/intel/lldpad`, optionally created inside
//! `/run/netns/<ns>`), `ClifQuery`, which sends the exact "get" datagram
//! `vdptool -t ... -R` sends (`wire::Command`) and returns lldpad's `R`
//! line, and `ClifSet`, which sends the exact "set" datagram of
//! `vdptool -T [-W]` and returns lldpad's status and, for `-W`, the VSI's
//! own event (`SetReply`), all without spawning a process.
//! Calls: libc/nix socket calls and `setns` only (no external commands).
//!
//! Transport facts (openlldp `clif.c` `clif_request`, `ctrl_iface.c`
//! `ctrl_iface_receive`; checked live with strace, see
//! `tests/lldpad_clif_query.rs`); the datagrams themselves are
//! `super::wire`'s:
//! - lldpad answers with one datagram, no trailing NUL, built in a
//!   4096-byte buffer (`MAX_CLIF_MSGBUF`), so a list of more than ~26 VSIs
//!   comes back empty, exactly as through vdptool.
//! - lldpad only serves uid 0: others get the 3-byte `R0a` (cmd_no_access).
//! - A client that never attaches (`A...`) receives no events; stray ones
//!   are skipped anyway.

use super::LldpadError;
use crate::exec::ExecError;
use crate::task::ThreadName;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, connect as sock_connect, recvmsg, send, setsockopt, socket, sockopt, AddressFamily,
    ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, UnixCredentials,
};
use parking_lot::Mutex;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// lldpad's abstract control socket name (without the leading NUL).
pub const LLDPAD_CLIF_SOCKET: &str = "/com/intel/lldpad";
use super::wire::{is_event, reply_status, Command, VdpEvent};
pub(crate) use super::wire::{LLDP_MOD_VDP22, STATUS_NO_ACCESS};
/// How long to wait for lldpad's answer to one request (clif's
/// `CMD_RESPONSE_TIMEOUT` is 2 s).
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

const MAX_DATAGRAM: usize = 8192;

static CLIENT_SEQ: AtomicU32 = AtomicU32::new(0);

pub(crate) fn sock_err(op: &str, err: impl std::fmt::Display) -> LldpadError {
    LldpadError::Exec(ExecError::Spawn {
        cmd: format!("lldpad control socket {op}"),
        err: err.to_string(),
    })
}

/// A clif datagram socket bound to a unique abstract name. Datagrams not
/// sent by uid 0 are dropped on receipt.
#[derive(Debug)]
pub(crate) struct ClifSocket {
    fd: OwnedFd,
    local_name: String,
}

impl ClifSocket {
    /// New socket bound to `@/com/intel/lldpad/<pid>-<tag><n>`, created in
    /// `/run/netns/<netns>` when given (a socket keeps its namespace, so only
    /// creation needs setns). Not connected yet.
    pub(crate) fn open(netns: Option<&str>, tag: &str) -> Result<ClifSocket, LldpadError> {
        let Some(ns) = netns else {
            return Self::open_here(tag);
        };
        if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." {
            return Err(sock_err("setns", format!("bad netns name {ns:?}")));
        }
        let path = format!("/run/netns/{ns}");
        let tag = tag.to_string();
        let handle = std::thread::Builder::new()
            .name(ThreadName::LldpadNetns.to_string())
            .spawn(move || {
                let f = std::fs::File::open(&path)
                    .map_err(|e| sock_err("setns", format!("{path}: {e}")))?;
                nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| sock_err("setns", format!("{path}: {e}")))?;
                Self::open_here(&tag)
            })
            .map_err(|e| sock_err("setns thread", e))?;
        handle
            .join()
            .map_err(|_| sock_err("setns thread", "panicked"))?
    }

    fn open_here(tag: &str) -> Result<ClifSocket, LldpadError> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| sock_err("socket", e))?;
        setsockopt(&fd, sockopt::PassCred, &true).map_err(|e| sock_err("SO_PASSCRED", e))?;
        // vdptool/lldptool bind "<sock>/<pid>"; the suffix keeps ours distinct
        // from theirs and from our own other clients.
        let name = format!(
            "{LLDPAD_CLIF_SOCKET}/{}-{tag}{}",
            std::process::id(),
            CLIENT_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(|e| sock_err("address", e))?;
        bind(fd.as_raw_fd(), &addr).map_err(|e| sock_err(&format!("bind @{name}"), e))?;
        Ok(ClifSocket {
            fd,
            local_name: name,
        })
    }

    /// Our own abstract socket name (without the leading NUL).
    pub(crate) fn local_name(&self) -> &str {
        &self.local_name
    }

    /// (Re)connect to whatever lldpad now owns `@/com/intel/lldpad`.
    /// Re-connecting purges the receive queue (read it first if needed).
    pub(crate) fn connect(&self) -> Result<(), LldpadError> {
        let addr = UnixAddr::new_abstract(LLDPAD_CLIF_SOCKET.as_bytes())
            .map_err(|e| sock_err("address", e))?;
        sock_connect(self.fd.as_raw_fd(), &addr).map_err(|e| {
            if e == Errno::ECONNREFUSED {
                sock_err(
                    &format!("connect @{LLDPAD_CLIF_SOCKET}"),
                    format!("{e} (lldpad is not running in this network namespace)"),
                )
            } else {
                sock_err(&format!("connect @{LLDPAD_CLIF_SOCKET}"), e)
            }
        })
    }

    /// Send one datagram without blocking.
    pub(crate) fn send(&self, data: &[u8], what: &str) -> Result<(), LldpadError> {
        send(self.fd.as_raw_fd(), data, MsgFlags::MSG_DONTWAIT)
            .map(|_| ())
            .map_err(|e| sock_err(&format!("send {what}"), e))
    }

    /// Next datagram from a uid-0 sender before `deadline`, or None.
    pub(crate) fn read_until(&self, deadline: Instant) -> Result<Option<Vec<u8>>, LldpadError> {
        loop {
            if let Some(d) = self.read_one()? {
                return Ok(Some(d));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = left.as_millis().clamp(1, 60_000) as u16;
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(sock_err("poll", e)),
            }
        }
    }

    /// One datagram without blocking; datagrams not sent by root are dropped.
    pub(crate) fn read_one(&self) -> Result<Option<Vec<u8>>, LldpadError> {
        loop {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let mut cmsg = nix::cmsg_space!(UnixCredentials);
            let (n, uid, truncated) = {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let msg = match recvmsg::<()>(
                    self.fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(m) => m,
                    Err(Errno::EAGAIN) => return Ok(None),
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(sock_err("recv", e)),
                };
                let mut uid = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmCredentials(cred) = c {
                            uid = Some(cred.uid());
                        }
                    }
                }
                (msg.bytes, uid, msg.flags.contains(MsgFlags::MSG_TRUNC))
            };
            if uid != Some(0) {
                log::warn!("lldpad control socket: dropping datagram from uid {uid:?}");
                continue;
            }
            if truncated {
                log::warn!("lldpad control socket: dropping truncated datagram");
                continue;
            }
            buf.truncate(n);
            return Ok(Some(buf));
        }
    }
}

/// A non-attached clif client for VDP22 queries: one socket, reused across
/// calls, created lazily (and again after a timeout or socket error);
/// concurrent callers are serialized by a mutex.
#[derive(Debug)]
pub struct ClifQuery {
    netns: Option<String>,
    timeout: Duration,
    sock: Mutex<Option<ClifSocket>>,
}

impl ClifQuery {
    /// Client of the lldpad in the current network namespace (production).
    /// Nothing is opened until the first query.
    pub fn new() -> ClifQuery {
        ClifQuery {
            netns: None,
            timeout: REPLY_TIMEOUT,
            sock: Mutex::new(None),
        }
    }

    /// Client of the lldpad in `/run/netns/<netns>` (tests, labs).
    pub fn in_netns(netns: &str) -> ClifQuery {
        ClifQuery {
            netns: Some(netns.to_string()),
            ..ClifQuery::new()
        }
    }

    /// Same, with another reply timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ClifQuery {
        self.timeout = timeout;
        self
    }

    /// Send a get (`Command::get`) and return lldpad's `R` line exactly
    /// as `vdptool -R` prints it.
    pub fn get(&self, cmd: &Command) -> Result<String, LldpadError> {
        let dgram = cmd.datagram().ok_or_else(|| LldpadError::Reply {
            what: "clif query".into(),
            reply: format!("cannot encode a query for {:?}", cmd.ifname),
        })?;
        self.request(&dgram)
    }

    /// Send a "get" datagram (`Command::datagram`) and return lldpad's
    /// `R` line. Errors: socket / timeout (`Exec`), `R0a` no access and
    /// other status-only answers (`Reply`, see `is_no_access`).
    pub fn request(&self, cmd: &str) -> Result<String, LldpadError> {
        let what = "get (VDP22 query)";
        let mut guard = self.sock.lock();
        for attempt in 0..2 {
            if guard.is_none() {
                let s = ClifSocket::open(self.netns.as_deref(), "q")?;
                s.connect()?;
                *guard = Some(s);
            }
            let Some(sock) = guard.as_ref() else {
                continue;
            };
            // Leftovers (a late answer to an earlier request) must not be
            // taken for this answer.
            while let Ok(Some(_)) = sock.read_one() {}
            match sock.send(cmd.as_bytes(), what) {
                Ok(()) => {}
                Err(e) => {
                    // lldpad restarted: its new socket needs a new connect.
                    *guard = None;
                    if attempt == 0 {
                        continue;
                    }
                    return Err(e);
                }
            }
            return match self.wait_reply(sock, cmd, what) {
                Ok(r) => Ok(r),
                Err(e) => {
                    if matches!(e, LldpadError::Exec(_)) {
                        // Timeout or socket error: a late answer must not
                        // reach the next caller; start afresh next time.
                        *guard = None;
                    }
                    Err(e)
                }
            };
        }
        Err(sock_err("send", "lldpad unreachable"))
    }

    fn wait_reply(&self, sock: &ClifSocket, cmd: &str, what: &str) -> Result<String, LldpadError> {
        // The answer echoes the command header from 'C' to the ifname.
        let iflen = cmd
            .get(21..23)
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        let echo = cmd.as_bytes().get(9..23 + iflen).unwrap_or_default();
        let deadline = Instant::now() + self.timeout;
        loop {
            let Some(d) = sock.read_until(deadline)? else {
                return Err(LldpadError::Exec(ExecError::Timeout {
                    cmd: format!("lldpad control socket {what}"),
                    after: self.timeout,
                }));
            };
            if is_event(&d) || d.len() < 3 || d[0] != b'R' {
                continue;
            }
            let text = String::from_utf8_lossy(&d).into_owned();
            if d.len() == 3 {
                // Status only: refused before the command was looked at.
                let status = reply_status(&d);
                let why = match status {
                    Some(STATUS_NO_ACCESS) => " (no access: lldpad serves uid 0 only)",
                    _ => "",
                };
                return Err(LldpadError::Refused {
                    what: format!("clif {what}"),
                    status: status.unwrap_or(0xff),
                    reply: format!("{text}{why}"),
                });
            }
            if d[3..].starts_with(echo) {
                return Ok(text);
            }
            log::debug!("lldpad control socket: ignoring unmatched answer {text:?}");
        }
    }
}

/// What lldpad did with an associate / deassociate sent over its control
/// socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetReply {
    /// lldpad refused the command (nothing was sent to the bridge): its
    /// status and the line vdptool prints for it (`FAILED: <status text>`).
    Refused { status: u8, text: String },
    /// lldpad took it. `event` = the VSI's first event within the wait
    /// (a `-W` request), None without `-W` or when none came in time (as
    /// vdptool's empty `-W` output).
    Taken { event: Option<Box<VdpEvent>> },
}

/// How long a `-W` request waits for the VSI's event (vdptool's 5 s).
pub(crate) const EVENT_WAIT: Duration = Duration::from_secs(5);

/// A clif client for VDP22 "set" requests (associate / deassociate): the
/// exact datagram `vdptool -T` sends (`Command::datagram`), the verdict
/// from lldpad's reply and, with `-W`, from the VSI's own event (matched
/// by uuid, unlike vdptool which prints the interface's first event).
/// Each request uses its own socket, attached to VDP22 events only while
/// it waits and detached (`D`) at the end, so no attached socket is ever
/// left unread (an unread attached client can hang lldpad, see `events`).
/// Requests of different VSIs may run at once.
#[derive(Debug, Clone)]
pub struct ClifSet {
    netns: Option<String>,
    reply_timeout: Duration,
    event_wait: Duration,
}

impl ClifSet {
    /// Client of the lldpad in the current network namespace (production).
    pub fn new() -> ClifSet {
        ClifSet {
            netns: None,
            reply_timeout: REPLY_TIMEOUT,
            event_wait: EVENT_WAIT,
        }
    }

    /// Client of the lldpad in `/run/netns/<netns>` (tests, labs).
    pub fn in_netns(netns: &str) -> ClifSet {
        ClifSet {
            netns: Some(netns.to_string()),
            ..ClifSet::new()
        }
    }

    /// Same, with another event wait for `-W` requests.
    pub fn with_event_wait(mut self, wait: Duration) -> ClifSet {
        self.event_wait = wait;
        self
    }

    /// Send a set (`Command::set`) for VSI `uuid`. `Err`: the socket
    /// could not be used (lldpad not running here, no reply in time, `R0a`
    /// no access: see `is_no_access`), so vdptool should be tried.
    pub fn send(&self, cmd: &Command, uuid: &str) -> Result<SetReply, LldpadError> {
        let what = format!("set {} (VDP22)", cmd.mode.as_str());
        let dgram = cmd.datagram().ok_or_else(|| LldpadError::Reply {
            what: "clif set".into(),
            reply: format!("cannot encode a request for {:?}", cmd.ifname),
        })?;
        let sock = ClifSocket::open(self.netns.as_deref(), "s")?;
        sock.connect()?;
        let mut held = AttachedSocket {
            sock,
            attached: false,
        };
        if cmd.wait {
            let attach = format!("A{LLDP_MOD_VDP22:x}");
            held.sock.send(attach.as_bytes(), "A (attach)")?;
            held.attached = true;
            let r = self.reply(&held.sock, b"A", "A (attach)", uuid, &mut None)?;
            if let Some(status) = reply_status(&r).filter(|s| *s != 0) {
                return Err(refusal("A (attach)", status, &r));
            }
        }
        held.sock.send(dgram.as_bytes(), &what)?;
        let iflen = dgram
            .get(21..23)
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        let echo = dgram.as_bytes().get(9..23 + iflen).unwrap_or_default();
        let mut event = None;
        let r = self.reply(&held.sock, echo, &what, uuid, &mut event)?;
        let status = reply_status(&r).unwrap_or(0xff);
        if r.len() == 3 && status == STATUS_NO_ACCESS {
            return Err(refusal(&what, status, &r));
        }
        if status != 0 {
            return Ok(SetReply::Refused {
                status,
                text: format!("FAILED: {}", super::wire::status_text(status)),
            });
        }
        if cmd.wait && event.is_none() {
            let deadline = Instant::now() + self.event_wait;
            while event.is_none() {
                let Some(d) = held.sock.read_until(deadline)? else {
                    break;
                };
                event = own_event(&d, uuid);
            }
        }
        Ok(SetReply::Taken { event })
    }

    /// lldpad's `R` answer whose text after the status starts with
    /// `echo` (or a status-only answer); the VSI's event, should it come
    /// first, goes to `event`.
    fn reply(
        &self,
        sock: &ClifSocket,
        echo: &[u8],
        what: &str,
        uuid: &str,
        event: &mut Option<Box<VdpEvent>>,
    ) -> Result<Vec<u8>, LldpadError> {
        let deadline = Instant::now() + self.reply_timeout;
        loop {
            let Some(d) = sock.read_until(deadline)? else {
                return Err(LldpadError::Exec(ExecError::Timeout {
                    cmd: format!("lldpad control socket {what}"),
                    after: self.reply_timeout,
                }));
            };
            if is_event(&d) {
                if event.is_none() {
                    *event = own_event(&d, uuid);
                }
                continue;
            }
            if d.len() < 3 || d[0] != b'R' {
                continue;
            }
            if d.len() == 3 || d[3..].starts_with(echo) {
                return Ok(d);
            }
        }
    }
}

impl Default for ClifSet {
    fn default() -> Self {
        ClifSet::new()
    }
}

/// The VSI's own event, its error text as vdptool prints it (so a verdict
/// reads the same whichever way the request went).
fn own_event(d: &[u8], uuid: &str) -> Option<Box<VdpEvent>> {
    let mut ev = super::wire::parse_event(d).filter(|ev| ev.uuid.eq_ignore_ascii_case(uuid))?;
    ev.error = vdptool_error_text(ev.hints.unwrap_or(0));
    Some(Box::new(ev))
}

/// The error lines vdptool prints for a VSI status (`print_vsi_err_msg`),
/// joined by "; " as `vdptool::parse_events` joins them: the bridge's
/// code 1..5 only when no HARD/KEEP bit is set (vdptool does not mask
/// them), then the internal errors.
pub(crate) fn vdptool_error_text(status: u32) -> Option<String> {
    use super::wire::{ERR_ACKTO, ERR_KATO, ERR_TXERR};
    let mut lines: Vec<&str> = Vec::new();
    let bridge = match status & 0xff {
        1 => Some("VDP TLV Format is Invalid"),
        2 => Some("Insufficient resources at bridge"),
        3 => Some("Unable to contact VSI Mgr"),
        4 => Some("Other Failures"),
        5 => Some("Invalid VID, GroupID or MAC address field"),
        _ => None,
    };
    let bridge = bridge.map(|t| format!("Error returned by Bridge: {t}"));
    if let Some(b) = &bridge {
        lines.push(b);
    }
    for (bit, text) in [
        (ERR_KATO, "Internal Error : Keepalive Timeout"),
        (ERR_ACKTO, "Internal Error : Ack not received from bridge"),
        (ERR_TXERR, "Internal Error : Transmission Error"),
    ] {
        if status & bit != 0 {
            lines.push(text);
        }
    }
    (!lines.is_empty()).then(|| lines.join("; "))
}

fn refusal(what: &str, status: u8, reply: &[u8]) -> LldpadError {
    let text = String::from_utf8_lossy(reply);
    LldpadError::Refused {
        what: format!("clif {what}"),
        status,
        reply: match status {
            STATUS_NO_ACCESS => format!("{text} (no access: lldpad serves uid 0 only)"),
            _ => text.into_owned(),
        },
    }
}

/// A request's socket; detaches from events when dropped.
struct AttachedSocket {
    sock: ClifSocket,
    attached: bool,
}

impl Drop for AttachedSocket {
    fn drop(&mut self) {
        if self.attached {
            let _ = self.sock.send(b"D", "D (detach)");
        }
    }
}

impl Default for ClifQuery {
    fn default() -> Self {
        ClifQuery::new()
    }
}

/// True when `e` is lldpad refusing this client (`R0a`, not uid 0): the
/// socket path cannot work for this process, use vdptool (through the
/// root helper) instead.
pub fn is_no_access(e: &LldpadError) -> bool {
    matches!(
        e,
        LldpadError::Refused {
            status: STATUS_NO_ACCESS,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_reads_like_vdptool() {
        assert_eq!(vdptool_error_text(0), None);
        assert_eq!(
            vdptool_error_text(2).as_deref(),
            Some("Error returned by Bridge: Insufficient resources at bridge")
        );
        // HARD bit set: vdptool prints no bridge line
        assert_eq!(vdptool_error_text(0x12), None);
        assert_eq!(
            vdptool_error_text((1 << 8) | (2 << 8)).as_deref(),
            Some(
                "Internal Error : Keepalive Timeout; Internal Error : Ack not received from bridge"
            )
        );
    }

    #[test]
    fn no_access_is_recognised() {
        assert!(is_no_access(&LldpadError::Refused {
            what: "x".into(),
            status: 0x0a,
            reply: "R0a (no access)".into()
        }));
        assert!(!is_no_access(&LldpadError::Refused {
            what: "x".into(),
            status: 1,
            reply: "R01".into()
        }));
        assert!(!is_no_access(&LldpadError::Reply {
            what: "x".into(),
            reply: "R0a".into()
        }));
    }
}
