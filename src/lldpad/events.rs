//! lldpad event client: a long-lived client of lldpad's control interface
//! ("clif") that attaches to the VDP22 module, decodes the VSI events lldpad
//! broadcasts to every attached client, and notices lldpad restarts.
//!
//! Owns: the event client's clif socket (a `clif::ClifSocket` bound to
//! `@/com/intel/lldpad/<pid>-ev<n>`, connected to lldpad's
//! `@/com/intel/lldpad`) and the
//! `LldpadWatch` thread pair (`lldpad-events` reads the socket and probes
//! liveness; `lldpad-notify` runs the user callback).
//! Calls: `super::clif` (socket transport; no external commands),
//! `crate::shutdown::Shutdown` for waiting. Never calls lldptool/vdptool.
//!
//! Wire facts (lldpad `ctrl_iface.c`, `clif.c`, `qbg/vdp22_cmds.c`,
//! `qbg/vdp_ascii.c`; all checked live, fixtures in `tests/fixtures/clif/`):
//! - Requests are ASCII datagrams: `P` (ping) → `R00PPONG<pid>`,
//!   `A80c4` (attach to module 0x80c4 = VDP22) → `R00A`, `D` (detach) → `R00D`.
//!   `R` + 2 hex digits is the status (`lldpad_status.h`); lldpad only
//!   serves uid 0 (others get `R0a`, cmd_no_access).
//! - Events: `M000080c4` `E16` then `%04x` record length and the record:
//!   fields `%02x key %04x value`: mode, mgrid2, typeid, typeidver, uuid,
//!   hints (= VSI status | smi error bits << 8), filter (one per entry).
//!   The record carries no interface name.
//! - lldpad writes to clients with blocking sends, and unread datagrams stay
//!   charged to lldpad's send buffer: an attached client that stops reading
//!   **hangs lldpad** after ~140 unread events (seen live: lldpad blocked in
//!   `sock_alloc_send_pskb`, `lldptool -p` timed out, until the client
//!   went away). `LldpadWatch` therefore drains the socket on its own thread
//!   and hands notices to the callback through an unbounded channel; direct
//!   `EventClient` users must keep calling `recv` or drop the client
//!   (dropping sends a detach).

use super::clif::ClifSocket;
use super::wire::is_event;
use super::LldpadError;
use crate::exec::ExecError;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub(crate) use super::clif::{LLDP_MOD_VDP22, REPLY_TIMEOUT};
/// `LldpadWatch` liveness probe period.
pub(crate) const PING_INTERVAL: Duration = Duration::from_secs(1);

mod watch;
use super::wire::status_text;
pub use super::wire::{parse_event, VdpEvent, VdpEventKind};
pub use watch::{LldpadNotice, LldpadWatch};

/// A client of lldpad's control interface, attached to VDP22 events.
///
/// While attached, keep calling `recv` (see the module doc: a client that
/// stops reading can hang lldpad). The socket is connected, so the kernel
/// only delivers datagrams from lldpad's socket, and datagrams not sent by
/// uid 0 are dropped as well.
#[derive(Debug)]
pub struct EventClient {
    sock: ClifSocket,
    netns: Option<String>,
    pid: Option<u32>,
    attached: bool,
    queued: VecDeque<VdpEvent>,
}

impl EventClient {
    /// Connect to the lldpad of the current network namespace and attach.
    pub fn connect() -> Result<EventClient, LldpadError> {
        Self::open(None)
    }

    /// Same, but the socket is created inside `/run/netns/<netns>` (tests,
    /// labs). A socket keeps its namespace, so only creation needs setns.
    pub fn connect_in_netns(netns: &str) -> Result<EventClient, LldpadError> {
        Self::open(Some(netns.to_string()))
    }

    fn open(netns: Option<String>) -> Result<EventClient, LldpadError> {
        let sock = ClifSocket::open(netns.as_deref(), "ev")?;
        let mut c = EventClient {
            sock,
            netns,
            pid: None,
            attached: false,
            queued: VecDeque::new(),
        };
        c.reattach()?;
        Ok(c)
    }

    /// lldpad's pid as of the last successful ping/attach.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// Our own abstract socket name (without the leading NUL).
    pub fn local_name(&self) -> &str {
        self.sock.local_name()
    }

    /// The network namespace given to `connect_in_netns`.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Wait up to `timeout` for the next VDP22 event. `Ok(None)` on timeout.
    /// Does not probe lldpad: call `ping` for liveness. `Err` only on
    /// socket errors.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<VdpEvent>, LldpadError> {
        if let Some(ev) = self.queued.pop_front() {
            return Ok(Some(ev));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let Some(dgram) = self.read_until(deadline)? else {
                return Ok(None);
            };
            if is_event(&dgram) {
                match parse_event(&dgram) {
                    Some(ev) => return Ok(Some(ev)),
                    None => log::warn!(
                        "lldpad: ignoring undecodable event {:?}",
                        String::from_utf8_lossy(&dgram)
                    ),
                }
            } else {
                log::debug!(
                    "lldpad: ignoring stray reply {:?}",
                    String::from_utf8_lossy(&dgram)
                );
            }
        }
    }

    /// Liveness probe: clif `P`; returns lldpad's pid. A different pid than
    /// before means lldpad restarted and forgot our attachment (and every
    /// VSI): call `reattach`. `Err` when lldpad is gone or does not answer
    /// within `REPLY_TIMEOUT`.
    pub fn ping(&mut self) -> Result<u32, LldpadError> {
        let payload = self.request(b"P", b'P', "P (ping)")?;
        let pid = payload
            .strip_prefix("PPONG")
            .and_then(|p| p.trim_end_matches('\0').trim().parse::<u32>().ok())
            .ok_or_else(|| LldpadError::Reply {
                what: "clif ping".into(),
                reply: format!("R00{payload}"),
            })?;
        self.pid = Some(pid);
        Ok(pid)
    }

    /// (Re)connect the socket to whatever lldpad now owns
    /// `@/com/intel/lldpad`, detach any old registration, attach to VDP22
    /// events and refresh the pid.
    pub fn reattach(&mut self) -> Result<(), LldpadError> {
        self.attached = false;
        // Re-connecting a datagram socket purges its receive queue: keep
        // what is already there.
        while let Ok(Some(d)) = self.read_one() {
            if let Some(ev) = is_event(&d).then(|| parse_event(&d)).flatten() {
                self.queued.push_back(ev);
            }
        }
        self.sock.connect()?;
        self.ping()?;
        // lldpad keeps one registration per attach, duplicates included:
        // drop a possible old one first ("R01D" when there was none).
        match self.request(b"D", b'D', "D (detach)") {
            Ok(_) | Err(LldpadError::Reply { .. }) | Err(LldpadError::Refused { .. }) => {}
            Err(e) => return Err(e),
        }
        let attach = format!("A{LLDP_MOD_VDP22:x}");
        self.request(attach.as_bytes(), b'A', &format!("{attach} (attach)"))?;
        self.attached = true;
        Ok(())
    }

    /// Send one request and wait for its `R<status>` reply; events that
    /// arrive meanwhile are queued for `recv`. Returns the text after the
    /// status.
    fn request(&mut self, cmd: &[u8], expect: u8, what: &str) -> Result<String, LldpadError> {
        self.sock.send(cmd, what)?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let Some(dgram) = self.read_until(deadline)? else {
                return Err(LldpadError::Exec(ExecError::Timeout {
                    cmd: format!("lldpad control socket {what}"),
                    after: REPLY_TIMEOUT,
                }));
            };
            if is_event(&dgram) {
                if let Some(ev) = parse_event(&dgram) {
                    self.queued.push_back(ev);
                }
                continue;
            }
            if dgram.len() < 3 || dgram[0] != b'R' {
                continue;
            }
            if dgram.len() > 3 && dgram[3] != expect {
                continue; // late reply to an earlier, timed-out request
            }
            let text = String::from_utf8_lossy(&dgram).into_owned();
            let status = super::wire::reply_status(&dgram);
            return match status {
                Some(0) => Ok(text.get(3..).unwrap_or_default().to_string()),
                Some(code) => Err(LldpadError::Refused {
                    what: format!("clif {what}"),
                    status: code,
                    reply: match code {
                        super::wire::STATUS_NO_ACCESS => format!(
                            "{text} ({}: no access, lldpad serves uid 0 only)",
                            status_text(code)
                        ),
                        _ => format!("{text} ({})", status_text(code)),
                    },
                }),
                None => Err(LldpadError::Reply {
                    what: format!("clif {what}"),
                    reply: text,
                }),
            };
        }
    }

    /// Next datagram from a uid-0 sender before `deadline`, or None.
    fn read_until(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, LldpadError> {
        self.sock.read_until(deadline)
    }

    /// One datagram without blocking; datagrams not sent by root are dropped.
    fn read_one(&mut self) -> Result<Option<Vec<u8>>, LldpadError> {
        self.sock.read_one()
    }
}

impl Drop for EventClient {
    fn drop(&mut self) {
        if self.attached {
            // Best effort; lldpad also drops a registration after 10 failed sends.
            let _ = self.sock.send(b"D", "D (detach)");
        }
    }
}

#[cfg(test)]
mod tests;
