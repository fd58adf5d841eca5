//! lldpad control interface ("clif") transport and query client.
//!
//! Owns: `ClifSocket`, the datagram socket shared by the event client
//! (`events.rs`) and `ClifQuery` (bound to `@/com/intel/lldpad/<pid>-<tag><n>`,
//! connected to lldpad's `@/com/intel/lldpad`, optionally created inside
//! `/run/netns/<ns>`), and `ClifQuery`, which sends the exact "get" command
//! `vdptool -t ... -R` sends and returns lldpad's `R` line, without spawning
//! a process.
//! Calls: libc/nix socket calls and `setns` only (no external commands).
//!
//! Wire facts (openlldp `vdptool.c` `render_cmd`, `clif.c` `clif_request`,
//! `ctrl_iface.c` `ctrl_iface_receive`; checked live with strace, see
//! `tests/lldpad_clif_query.rs`):
//! - vdptool's command is the `M` line `vdptool -R` echoes:
//!   `M` `%08x` module (`000080c4`) `C` `%1x` clif version (3) `%02x` cmd
//!   (01 = get) `%08x` ops `%02x` ifname length, ifname, `%02x` type (02 =
//!   nearest customer bridge) `%08x` TLV id (VDP22 mode: preassoc 1,
//!   preassoc-rr 2, assoc 3, deassoc 4), then per `-c key=value`:
//!   `%02x` key `%04x` value. ops = local 0x01 | arg 0x04 | config 0x10
//!   (`00000015`) when there are `-c` arguments, else `00000001`.
//! - lldpad answers with one datagram `R` + 2-hex status + the command
//!   header echoed (`C3...ifname`) + data, no trailing NUL; the answer is
//!   built in a 4096-byte buffer (`MAX_CLIF_MSGBUF`), so a list of more than
//!   ~26 VSIs comes back empty, exactly as through vdptool.
//! - lldpad only serves uid 0: others get the 3-byte `R0a` (cmd_no_access).
//! - A client that never attaches (`A...`) receives no events; stray ones
//!   are skipped anyway.

use super::LldpadError;
use crate::exec::ExecError;
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
/// lldpad module id of VDP22 (`LLDP_MOD_VDP22`).
pub const LLDP_MOD_VDP22: u32 = 0x80c4;
/// How long to wait for lldpad's answer to one request (clif's
/// `CMD_RESPONSE_TIMEOUT` is 2 s).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// lldpad's `cmd_no_access` status: it refuses clients that are not uid 0.
pub const STATUS_NO_ACCESS: u8 = 0x0a;

const MAX_DATAGRAM: usize = 8192;
/// clif version, command "get" (`cmd_gettlv`), type nearest customer bridge.
const CLIF_VERSION: u8 = 3;
const CMD_GET: u8 = 1;
const TYPE_NCB: u8 = 2;
const OP_LOCAL: u32 = 0x01;
const OP_ARG: u32 = 0x04;
const OP_CONFIG: u32 = 0x10;

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
pub struct ClifSocket {
    fd: OwnedFd,
    local_name: String,
}

impl ClifSocket {
    /// New socket bound to `@/com/intel/lldpad/<pid>-<tag><n>`, created in
    /// `/run/netns/<netns>` when given (a socket keeps its namespace, so only
    /// creation needs setns). Not connected yet.
    pub fn open(netns: Option<&str>, tag: &str) -> Result<ClifSocket, LldpadError> {
        let Some(ns) = netns else {
            return Self::open_here(tag);
        };
        if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." {
            return Err(sock_err("setns", format!("bad netns name {ns:?}")));
        }
        let path = format!("/run/netns/{ns}");
        let tag = tag.to_string();
        let handle = std::thread::Builder::new()
            .name("lldpad-netns".into())
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
    pub fn local_name(&self) -> &str {
        &self.local_name
    }

    /// (Re)connect to whatever lldpad now owns `@/com/intel/lldpad`.
    /// Re-connecting purges the receive queue (read it first if needed).
    pub fn connect(&self) -> Result<(), LldpadError> {
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
    pub fn send(&self, data: &[u8], what: &str) -> Result<(), LldpadError> {
        send(self.fd.as_raw_fd(), data, MsgFlags::MSG_DONTWAIT)
            .map(|_| ())
            .map_err(|e| sock_err(&format!("send {what}"), e))
    }

    /// Next datagram from a uid-0 sender before `deadline`, or None.
    pub fn read_until(&self, deadline: Instant) -> Result<Option<Vec<u8>>, LldpadError> {
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
    pub fn read_one(&self) -> Result<Option<Vec<u8>>, LldpadError> {
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

/// True for an lldpad event datagram (`E...` or `M<module>E...`).
/// The 2-hex-digit status of an `R` reply datagram (`R00...`), read from
/// the bytes (never from lossily decoded text); None when it has none.
pub fn reply_status(d: &[u8]) -> Option<u8> {
    if d.first() != Some(&b'R') {
        return None;
    }
    let hex = std::str::from_utf8(d.get(1..3)?).ok()?;
    u8::from_str_radix(hex, 16).ok()
}

pub fn is_event(d: &[u8]) -> bool {
    d.first() == Some(&b'E') || (d.first() == Some(&b'M') && d.get(9) == Some(&b'E'))
}

/// VDP22 TLV id of a `-V` name, as vdptool looks it up.
pub fn vdp22_tlv_id(name: &str) -> Option<u32> {
    match name.to_ascii_lowercase().as_str() {
        "preassoc" => Some(1),
        "preassoc-rr" => Some(2),
        "assoc" => Some(3),
        "deassoc" => Some(4),
        _ => None,
    }
}

/// The VDP22 "get" command datagram vdptool sends for
/// `vdptool -t -i IFNAME -V TLV [-c key=value ...]` (what `-R` echoes as
/// its `M` line). `None` when a field does not fit the clif encoding
/// (ifname > 255 bytes, key > 255, value > 65535, unknown TLV name).
pub fn get_command(ifname: &str, tlv: &str, args: &[(&str, &str)]) -> Option<String> {
    let tlvid = vdp22_tlv_id(tlv)?;
    if ifname.len() > 0xff {
        return None;
    }
    let ops = if args.is_empty() {
        OP_LOCAL
    } else {
        OP_LOCAL | OP_ARG | OP_CONFIG
    };
    let mut cmd = format!(
        "M{LLDP_MOD_VDP22:08x}C{CLIF_VERSION:1x}{CMD_GET:02x}{ops:08x}{:02x}{ifname}{TYPE_NCB:02x}{tlvid:08x}",
        ifname.len()
    );
    for (k, v) in args {
        if k.len() > 0xff || v.len() > 0xffff {
            return None;
        }
        cmd.push_str(&format!("{:02x}{k}{:04x}{v}", k.len(), v.len()));
    }
    Some(cmd)
}

/// The command for a vdptool query argv as built by `vdptool::query_argv`
/// / `vdptool::list_argv`: `vdptool -t -i IF [-R] -V TLV [-c key=value]...`.
/// `None` for anything else (other options, `-T`, `-n`, missing `-i`/`-V`,
/// `-c` without `=`), so the caller runs vdptool instead.
pub fn command_for_query_argv(argv: &[String]) -> Option<String> {
    let mut it = argv.iter();
    if it.next().map(String::as_str) != Some(super::vdptool::VDPTOOL) {
        return None;
    }
    let (mut get, mut ifname, mut tlv) = (false, None, None);
    let mut args: Vec<(&str, &str)> = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-t" => get = true,
            "-R" => {}
            "-i" => ifname = Some(it.next()?.as_str()),
            "-V" => tlv = Some(it.next()?.as_str()),
            "-c" => args.push(it.next()?.split_once('=')?),
            _ => return None,
        }
    }
    if !get {
        return None;
    }
    get_command(ifname?, tlv?, &args)
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

    /// The VDP22 query `vdptool -t -i IFNAME -R -V MODE -c mode=MODE
    /// -c mgrid2=.. -c typeid=.. -c typeidver=.. [-c uuid=UUID]`; returns
    /// the `R` line exactly as `vdptool -R` prints it.
    pub fn query(
        &self,
        ifname: &str,
        mode: &str,
        mgrid2: &str,
        typeid: &str,
        typeidver: &str,
        uuid: Option<&str>,
    ) -> Result<String, LldpadError> {
        let mut args = vec![
            ("mode", mode),
            ("mgrid2", mgrid2),
            ("typeid", typeid),
            ("typeidver", typeidver),
        ];
        if let Some(u) = uuid {
            args.push(("uuid", u));
        }
        let cmd = get_command(ifname, mode, &args).ok_or_else(|| LldpadError::Reply {
            what: "clif query".into(),
            reply: format!("cannot encode a query for {ifname:?} mode {mode:?}"),
        })?;
        self.request(&cmd)
    }

    /// Send a "get" command (as built by `get_command`) and return lldpad's
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
                return Err(LldpadError::Reply {
                    what: format!("clif {what}"),
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

impl Default for ClifQuery {
    fn default() -> Self {
        ClifQuery::new()
    }
}

/// True when `e` is lldpad refusing this client (`R0a`, not uid 0): the
/// socket path cannot work for this process, use vdptool (through the
/// root helper) instead.
pub fn is_no_access(e: &LldpadError) -> bool {
    matches!(e, LldpadError::Reply { reply, .. } if reply.starts_with("R0a"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn command_matches_vdptool_echo() {
        // The M line vdptool -R printed (notes lldpad-vdp22.md §2).
        let uuid = "7af441dd-253b-4772-8cf1-a4cfef18efe5";
        let want = format!(
            "M000080c4C3010000001505pn-s0020000000304mode0005assoc06mgrid20001006typeid0001009typeidver0001004uuid0024{uuid}"
        );
        let argv = s(&[
            "vdptool",
            "-t",
            "-i",
            "pn-s0",
            "-R",
            "-V",
            "assoc",
            "-c",
            "mode=assoc",
            "-c",
            "mgrid2=0",
            "-c",
            "typeid=0",
            "-c",
            "typeidver=0",
            "-c",
            &format!("uuid={uuid}"),
        ]);
        assert_eq!(command_for_query_argv(&argv).as_deref(), Some(&*want));
        assert_eq!(
            get_command(
                "pn-s0",
                "assoc",
                &[
                    ("mode", "assoc"),
                    ("mgrid2", "0"),
                    ("typeid", "0"),
                    ("typeidver", "0"),
                    ("uuid", uuid)
                ]
            )
            .as_deref(),
            Some(&*want)
        );
    }

    #[test]
    fn refuses_what_it_cannot_encode() {
        assert_eq!(
            command_for_query_argv(&s(&["vdptool", "-T", "-i", "x", "-V", "assoc"])),
            None
        );
        assert_eq!(
            command_for_query_argv(&s(&["vdptool", "-t", "-i", "x", "-W", "-V", "assoc"])),
            None
        );
        assert_eq!(
            command_for_query_argv(&s(&["vdptool", "-t", "-V", "assoc"])),
            None
        );
        assert_eq!(
            command_for_query_argv(&s(&["vdptool", "-t", "-i", "x", "-V", "evb"])),
            None
        );
        assert_eq!(
            command_for_query_argv(&s(&[
                "vdptool", "-t", "-i", "x", "-V", "assoc", "-c", "mode"
            ])),
            None
        );
        assert_eq!(
            command_for_query_argv(&s(&["lldptool", "-t", "-i", "x", "-V", "assoc"])),
            None
        );
        assert_eq!(
            command_for_query_argv(&s(&["vdptool", "-t", "-i", "x", "-R", "-V", "assoc"]))
                .as_deref(),
            Some("M000080c4C3010000000101x0200000003")
        );
    }

    #[test]
    fn no_access_is_recognised() {
        assert!(is_no_access(&LldpadError::Reply {
            what: "x".into(),
            reply: "R0a (no access)".into()
        }));
        assert!(!is_no_access(&LldpadError::Reply {
            what: "x".into(),
            reply: "R01".into()
        }));
    }
}
