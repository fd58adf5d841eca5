//! lldpad event client: a long-lived client of lldpad's control interface
//! ("clif") that attaches to the VDP22 module, decodes the VSI events lldpad
//! broadcasts to every attached client, and notices lldpad restarts.
//!
//! Owns: the event client's clif socket (a `clif::ClifSocket` bound to
//! `@/com/intel/lldpad/<pid>-ev<n>`, connected to lldpad's
//! `@/com/intel/lldpad`), the event record parser, and the
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

use super::clif::{is_event, ClifSocket};
use super::LldpadError;
use crate::exec::ExecError;
use crate::shutdown::Shutdown;
use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use super::clif::{LLDPAD_CLIF_SOCKET, LLDP_MOD_VDP22, REPLY_TIMEOUT};
/// `LldpadWatch` liveness probe period.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);

/// The event header `M000080c4E16` is 12 bytes (clif.c `EVTHEADER`).
const EVENT_PREFIX: &[u8] = b"M000080c4E";

/// VSI status bits carried in the event's `hints` above the 8-bit status
/// (`vdp22_getsm_errcode`, `VDP22_STATUS_BITS`).
const ERR_KATO: u32 = 1 << 8;
const ERR_ACKTO: u32 = 2 << 8;
const ERR_TXERR: u32 = 4 << 8;

/// What an lldpad VDP event means for the VSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VdpEventKind {
    /// The bridge confirmed an assoc/preassoc/preassoc-rr (status 0); see
    /// `VdpEvent::mode` for which.
    Associated,
    /// The VSI is gone after having been up: our own deassoc, an unsolicited
    /// deassoc from the bridge, or a keep-alive timeout (`error` set).
    Deassociated,
    /// A request did not succeed: bridge reject code, ack timeout or
    /// transmission error on a VSI that was not up. lldpad dropped the VSI.
    Failed,
}

/// One decoded VDP22 event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdpEvent {
    pub kind: VdpEventKind,
    /// Always empty when decoded from a clif event: lldpad's record carries
    /// no interface name (one lldpad, usually one VDP interface per host).
    pub ifname: String,
    /// `assoc`, `preassoc`, `preassoc-rr`, `deassoc` (lldpad shows
    /// `deassoc` for every ended VSI, including failed associations).
    pub mode: String,
    pub mgrid2: String,
    pub typeid: String,
    pub typeidver: String,
    pub uuid: String,
    /// VID (low 12 bits) of the first filter entry; PS/PCP bits dropped.
    pub vlan: Option<u16>,
    /// MAC of the first filter entry (formats 2 and 4).
    pub mac: Option<String>,
    /// Raw `hints` number: VSI status (low 8 bits) | error bits << 8.
    pub hints: Option<u32>,
    /// Decoded reason (vdptool's texts joined by "; "), None when clean.
    pub error: Option<String>,
    /// Every `filter` value as lldpad printed it (`vlan[-mac][-gid]`).
    pub filters: Vec<String>,
    /// The datagram as text (lossy UTF-8).
    pub raw: String,
}

/// Parse one clif datagram; `None` unless it is a well-formed VDP22 event
/// with at least mode and uuid. Never panics on any input.
pub fn parse_event(datagram: &[u8]) -> Option<VdpEvent> {
    let body = datagram.strip_prefix(EVENT_PREFIX)?;
    let text = std::str::from_utf8(body).ok()?;
    // After 'E' come the level digits (VDP22 always sends "16"), then the
    // 4-hex record length: use the split whose length fits what follows.
    let digits = text.bytes().take_while(|b| b.is_ascii_digit()).count();
    let record = [2, 1, 3]
        .into_iter()
        .filter(|k| *k <= digits)
        .find_map(|k| {
            let rest = text.get(k..)?;
            let len = usize::from_str_radix(rest.get(..4)?, 16).ok()?;
            let rec = rest.get(4..)?;
            // `get`: a length that ends inside a UTF-8 character is no record.
            (len > 0).then(|| rec.get(..len)).flatten()
        })?;
    let mut ev = parse_record(record)?;
    ev.raw = String::from_utf8_lossy(datagram).into_owned();
    Some(ev)
}

/// Parse one VSI record (`%02x key %04x value` repeated).
fn parse_record(rec: &str) -> Option<VdpEvent> {
    let mut ev = VdpEvent {
        kind: VdpEventKind::Failed,
        ifname: String::new(),
        mode: String::new(),
        mgrid2: String::new(),
        typeid: String::new(),
        typeidver: String::new(),
        uuid: String::new(),
        vlan: None,
        mac: None,
        hints: None,
        error: None,
        filters: Vec::new(),
        raw: String::new(),
    };
    let mut pos = 0;
    while pos < rec.len() {
        let Some((key, value, next)) = next_field(rec, pos) else {
            break; // e.g. OUI data, which has its own encoding
        };
        pos = next;
        match key {
            "mode" => ev.mode = value.to_string(),
            "mgrid2" => ev.mgrid2 = value.to_string(),
            "typeid" => ev.typeid = value.to_string(),
            "typeidver" => ev.typeidver = value.to_string(),
            "uuid" => ev.uuid = value.to_string(),
            "hints" => ev.hints = value.parse().ok(),
            "filter" => ev.filters.push(value.to_string()),
            _ => {}
        }
    }
    if ev.mode.is_empty() || ev.uuid.is_empty() {
        return None;
    }
    if let Some(first) = ev.filters.first() {
        let mut parts = first.split('-');
        ev.vlan = parts
            .next()
            .and_then(|v| v.parse::<u32>().ok())
            .and_then(|v| u16::try_from(v & 0x0fff).ok());
        ev.mac = parts.find(|p| p.contains(':')).map(str::to_string);
    }
    let status = ev.hints.unwrap_or(0);
    ev.kind = classify(&ev.mode, status);
    ev.error = describe_status(status);
    Some(ev)
}

fn next_field(rec: &str, pos: usize) -> Option<(&str, &str, usize)> {
    let klen = usize::from_str_radix(rec.get(pos..pos + 2)?, 16).ok()?;
    let kend = pos + 2 + klen;
    let key = rec.get(pos + 2..kend)?;
    let vlen = usize::from_str_radix(rec.get(kend..kend + 4)?, 16).ok()?;
    let vend = kend + 4 + vlen;
    let value = rec.get(kend + 4..vend)?;
    Some((key, value, vend))
}

fn classify(mode: &str, status: u32) -> VdpEventKind {
    let code = status & 0xff;
    if status & ERR_KATO != 0 {
        VdpEventKind::Deassociated
    } else if status & (ERR_ACKTO | ERR_TXERR) != 0 || code != 0 {
        VdpEventKind::Failed
    } else if mode == "deassoc" {
        VdpEventKind::Deassociated
    } else {
        VdpEventKind::Associated
    }
}

/// vdptool's texts for a VSI status (`hints`), joined by "; "; None when
/// the status is 0. The 4-bit bridge code is decoded even when the HARD or
/// KEEP bit is set (vdptool prints nothing then).
pub fn describe_status(status: u32) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    let resp = status & 0xff;
    let bridge = match resp {
        252 => Some("Deassoc received from switch".to_string()),
        253 => Some("Timeout Error".to_string()),
        254 => Some(
            "Command rejected by bridge and state prior to command retained (KEEP)".to_string(),
        ),
        255 | 0 => None,
        _ => {
            let text = match resp & 0x0f {
                1 => "VDP TLV Format is Invalid",
                2 => "Insufficient resources at bridge",
                3 => "Unable to contact VSI Mgr",
                4 => "Other Failures",
                5 => "Invalid VID, GroupID or MAC address field",
                0 => "",
                _ => "Unknown error",
            };
            let mut s = if text.is_empty() {
                String::new()
            } else {
                format!("Error returned by Bridge: {text} (code {})", resp & 0x0f)
            };
            for (bit, name) in [(0x10, "HARD"), (0x20, "KEEP")] {
                if resp & bit != 0 {
                    if s.is_empty() {
                        s = "Bridge status".to_string();
                    }
                    s.push_str(&format!(" [{name}]"));
                }
            }
            (!s.is_empty()).then_some(s)
        }
    };
    out.extend(bridge);
    if status & ERR_KATO != 0 {
        out.push("Keepalive Timeout".into());
    }
    if status & ERR_ACKTO != 0 {
        out.push("Ack not received from bridge".into());
    }
    if status & ERR_TXERR != 0 {
        out.push("Transmission Error".into());
    }
    if out.is_empty() && resp == 255 {
        out.push("No response from bridge".into());
    }
    (!out.is_empty()).then(|| out.join("; "))
}

fn status_text(code: u8) -> &'static str {
    match code {
        0 => "success",
        1 => "failed",
        2 => "device not found",
        3 => "agent not found",
        4 => "invalid command",
        5 => "bad parameters",
        6 => "peer not present",
        7 => "client version not compatible",
        8 => "not capable",
        9 => "not applicable",
        10 => "no access (lldpad serves uid 0 only)",
        11 => "agent not supported",
        _ => "unknown status",
    }
}

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
            Ok(_) | Err(LldpadError::Reply { .. }) => {}
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
            let status = crate::lldpad::clif::reply_status(&dgram);
            return match status {
                Some(0) => Ok(text.get(3..).unwrap_or_default().to_string()),
                Some(code) => Err(LldpadError::Reply {
                    what: format!("clif {what}"),
                    reply: format!("{text} ({})", status_text(code)),
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

/// What `LldpadWatch` tells its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // rare; boxing would only complicate callers
pub enum LldpadNotice {
    /// A VDP22 event from lldpad.
    Vdp(VdpEvent),
    /// lldpad's pid changed: it lost all VSIs and LLDP/EVB runtime state.
    /// Followed by `Attached` once the watch is registered again.
    Restarted { old_pid: u32, new_pid: u32 },
    /// lldpad is unreachable, not answering or refuses us (reason); sent once
    /// per outage. Events may be missed until the next `Attached`.
    Lost(String),
    /// Attached to lldpad's VDP22 events (at start and after every reconnect).
    Attached,
}

/// Snapshot of the watch for `status` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchStatus {
    pub attached: bool,
    pub lldpad_pid: Option<u32>,
    /// Why we are not attached (None while attached).
    pub reason: Option<String>,
    pub events: u64,
    pub restarts: u64,
    /// Panics caught on the watch's threads (each contained: the notice is
    /// dropped, or the connection is re-opened after [`PANIC_BACKOFF`]).
    pub panics: u64,
}

/// Owns an `EventClient` on the `lldpad-events` thread; calls the callback
/// from the `lldpad-notify` thread (never while holding the watch's lock).
pub struct LldpadWatch {
    stop: Shutdown,
    status: Arc<Mutex<WatchStatus>>,
    threads: Vec<JoinHandle<()>>,
}

/// Pause after a caught panic on the `lldpad-events` thread before it
/// connects again (the daemon's task runner uses the same figure).
pub const PANIC_BACKOFF: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest uninterrupted wait, so the daemon's shutdown is seen quickly.
const SLICE: Duration = Duration::from_millis(250);

impl LldpadWatch {
    /// Watch the lldpad of the current network namespace (production).
    /// Stops on `shutdown` or `stop()`.
    pub fn start<F>(shutdown: &Shutdown, on_notice: F) -> std::io::Result<LldpadWatch>
    where
        F: Fn(LldpadNotice) + Send + 'static,
    {
        Self::spawn(None, shutdown, on_notice)
    }

    /// Same for the lldpad in `/run/netns/<netns>` (tests, labs).
    pub fn start_in_netns<F>(
        netns: &str,
        shutdown: &Shutdown,
        on_notice: F,
    ) -> std::io::Result<LldpadWatch>
    where
        F: Fn(LldpadNotice) + Send + 'static,
    {
        Self::spawn(Some(netns.to_string()), shutdown, on_notice)
    }

    fn spawn<F>(
        netns: Option<String>,
        shutdown: &Shutdown,
        on_notice: F,
    ) -> std::io::Result<LldpadWatch>
    where
        F: Fn(LldpadNotice) + Send + 'static,
    {
        let stop = Shutdown::new();
        let status = Arc::new(Mutex::new(WatchStatus {
            reason: Some("not attached yet".into()),
            ..WatchStatus::default()
        }));
        let (tx, rx) = unbounded::<LldpadNotice>();
        let notify_status = status.clone();
        // Both threads contain panics the way the daemon's task runner does
        // (the callback runs host code; the worker parses lldpad's bytes):
        // a panic is logged and counted, the thread goes on.
        let notify = std::thread::Builder::new()
            .name("lldpad-notify".into())
            .spawn(move || {
                for n in rx.iter() {
                    let r = catch_unwind(AssertUnwindSafe(|| on_notice(n)));
                    if let Err(p) = r {
                        log::error!(
                            "thread lldpad-notify: panic caught, notice dropped: {}",
                            crate::manager::panic_message(&*p)
                        );
                        notify_status.lock().panics += 1;
                    }
                }
            })?;
        let mut worker = Worker {
            netns,
            daemon: shutdown.clone(),
            stop: stop.clone(),
            status: status.clone(),
            tx,
            client: None,
            last_pid: None,
            lost_reported: false,
        };
        let events = std::thread::Builder::new()
            .name("lldpad-events".into())
            .spawn(move || worker.run_contained())?;
        Ok(LldpadWatch {
            stop,
            status,
            threads: vec![events, notify],
        })
    }

    /// Name and state (`alive` / `stopped`) of the watcher's threads.
    pub fn thread_states(&self) -> Vec<(String, String)> {
        self.threads
            .iter()
            .map(|h| {
                let name = h.thread().name().unwrap_or("lldpad-watch").to_string();
                let state = if h.is_finished() { "stopped" } else { "alive" };
                (name, state.to_string())
            })
            .collect()
    }

    pub fn status(&self) -> WatchStatus {
        self.status.lock().clone()
    }

    /// Stop both threads and wait for them (pending notices are delivered).
    pub fn stop(mut self) {
        self.shutdown_threads();
    }

    fn shutdown_threads(&mut self) {
        self.stop.trigger();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for LldpadWatch {
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}

struct Worker {
    netns: Option<String>,
    daemon: Shutdown,
    stop: Shutdown,
    status: Arc<Mutex<WatchStatus>>,
    tx: Sender<LldpadNotice>,
    client: Option<EventClient>,
    last_pid: Option<u32>,
    lost_reported: bool,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.stop.is_set() || self.daemon.is_set()
    }

    /// Wait `d` unless asked to stop; true when stopping.
    fn pause(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.stopping() {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stop.wait(left.min(SLICE));
        }
    }

    fn notify(&self, n: LldpadNotice) {
        let _ = self.tx.send(n);
    }

    /// `run` until stopped; a panic drops the connection, is logged and
    /// counted, and the worker connects again after [`PANIC_BACKOFF`].
    fn run_contained(&mut self) {
        loop {
            let r = catch_unwind(AssertUnwindSafe(|| self.run()));
            let Err(p) = r else { return };
            log::error!(
                "thread lldpad-events: panic caught: {}; reconnecting",
                crate::manager::panic_message(&*p)
            );
            self.client = None;
            self.status.lock().panics += 1;
            if self.pause(PANIC_BACKOFF) {
                let mut st = self.status.lock();
                st.attached = false;
                st.reason = Some("stopped".into());
                return;
            }
        }
    }

    fn run(&mut self) {
        #[cfg(test)]
        if tests::PANIC_IN_RUN.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic in the events worker");
        }
        let mut backoff = BACKOFF_MIN;
        let mut next_ping = Instant::now() + PING_INTERVAL;
        while !self.stopping() {
            let Some(client) = self.client.as_mut() else {
                let opened = match &self.netns {
                    Some(ns) => EventClient::connect_in_netns(ns),
                    None => EventClient::connect(),
                };
                match opened {
                    Ok(c) => {
                        let pid = c.pid();
                        self.client = Some(c);
                        self.attached(pid);
                        backoff = BACKOFF_MIN;
                        next_ping = Instant::now() + PING_INTERVAL;
                    }
                    Err(e) => {
                        self.lost(e.to_string());
                        if self.pause(backoff) {
                            break;
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
                continue;
            };
            let wait = next_ping
                .saturating_duration_since(Instant::now())
                .min(SLICE);
            let mut failure = None;
            match client.recv(wait) {
                Ok(Some(ev)) => {
                    self.status.lock().events += 1;
                    self.notify(LldpadNotice::Vdp(ev));
                    continue;
                }
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
            let Some(client) = self.client.as_mut() else {
                continue;
            };
            if failure.is_none() && Instant::now() >= next_ping {
                next_ping = Instant::now() + PING_INTERVAL;
                match client.ping() {
                    Ok(pid) if Some(pid) == self.last_pid => continue,
                    Ok(_) => {} // same socket, new lldpad: re-register below
                    Err(e) => failure = Some(e),
                }
            } else if failure.is_none() {
                continue;
            }
            // Ping failed, pid changed or the socket broke: try to re-register
            // at once (a restarted lldpad is usually back within a second).
            if let Some(e) = &failure {
                log::info!("lldpad probe failed ({e}), re-attaching");
            }
            match client.reattach() {
                Ok(()) => {
                    let pid = client.pid();
                    self.attached(pid);
                    backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    self.client = None;
                    self.lost(e.to_string());
                    if self.pause(backoff) {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        let mut st = self.status.lock();
        st.attached = false;
        st.reason = Some("stopped".into());
    }

    fn attached(&mut self, pid: Option<u32>) {
        let restarted = match (self.last_pid, pid) {
            (Some(old), Some(new)) if old != new => Some((old, new)),
            _ => None,
        };
        {
            let mut st = self.status.lock();
            st.attached = true;
            st.lldpad_pid = pid;
            st.reason = None;
            if restarted.is_some() {
                st.restarts += 1;
            }
        }
        if let Some((old_pid, new_pid)) = restarted {
            log::warn!("lldpad restarted (pid {old_pid} -> {new_pid})");
            self.notify(LldpadNotice::Restarted { old_pid, new_pid });
        }
        log::info!("attached to lldpad events (pid {pid:?})");
        self.notify(LldpadNotice::Attached);
        if pid.is_some() {
            self.last_pid = pid;
        }
        self.lost_reported = false;
    }

    fn lost(&mut self, reason: String) {
        {
            let mut st = self.status.lock();
            st.attached = false;
            st.reason = Some(reason.clone());
        }
        if !self.lost_reported {
            log::warn!("lldpad events unavailable: {reason}");
            self.lost_reported = true;
            self.notify(LldpadNotice::Lost(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Make the next `Worker::run` panic (only the test below sets it).
    pub(super) static PANIC_IN_RUN: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    #[test]
    fn panics_on_the_watch_threads_are_contained() {
        // No such namespace: the worker cannot connect and says so once.
        // Its first run panics, and so does the callback: both threads go
        // on, the panics are counted, the Lost notice still arrives.
        PANIC_IN_RUN.store(true, std::sync::atomic::Ordering::SeqCst);
        let shutdown = Shutdown::new();
        let (tx, rx) = crossbeam_channel::unbounded();
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let c2 = calls.clone();
        let w = LldpadWatch::start_in_netns(
            &format!("vdp-no-such-ns-{}", std::process::id()),
            &shutdown,
            move |n| {
                if c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    panic!("injected panic in the callback");
                }
                let _ = tx.send(n);
            },
        )
        .unwrap();
        // One panic on each thread: the worker's first run, the callback's
        // first notice (Lost).
        let t = Instant::now();
        while w.status().panics < 2 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(w.status().panics, 2, "{:?}", w.status());
        assert!(w.thread_states().iter().all(|(_, s)| s == "alive"));
        assert!(w.status().reason.is_some());
        drop(rx);
        w.stop();
    }

    #[test]
    fn parses_assoc_event() {
        let d = b"M000080c4E16009704mode0005assoc06mgrid20001006typeid0001009typeidver0001004uuid00241f1e8d1c-0000-4000-8000-00000000000205hints0001006filter00183003-fa:16:3e:00:00:02-0";
        let ev = parse_event(d).expect("event");
        assert_eq!(ev.kind, VdpEventKind::Associated);
        assert_eq!(ev.uuid, "1f1e8d1c-0000-4000-8000-000000000002");
        assert_eq!(ev.vlan, Some(3003));
        assert_eq!(ev.mac.as_deref(), Some("fa:16:3e:00:00:02"));
        assert_eq!(ev.hints, Some(0));
        assert_eq!(ev.error, None);
    }

    #[test]
    fn rejects_garbage_without_panic() {
        for d in [
            &b""[..],
            b"M000080c4E",
            b"M000080c4E16",
            b"M000080c4E16ffff04mode",
            b"M000080c4E1600050",
            b"R00A",
            b"M000080c4E16\xff\xfe",
            b"M000080c4E16001204mode0005assoc",
        ] {
            assert_eq!(parse_event(d), None, "{d:?}");
        }
    }

    #[test]
    fn status_texts() {
        assert_eq!(describe_status(0), None);
        assert_eq!(
            describe_status(768).as_deref(),
            Some("Keepalive Timeout; Ack not received from bridge")
        );
        assert_eq!(
            describe_status(767).as_deref(),
            Some("Ack not received from bridge")
        );
        assert_eq!(
            describe_status(4 << 8).as_deref(),
            Some("Transmission Error")
        );
        assert_eq!(
            describe_status(21).as_deref(),
            Some("Error returned by Bridge: Invalid VID, GroupID or MAC address field (code 5) [HARD]")
        );
        assert_eq!(
            describe_status(255).as_deref(),
            Some("No response from bridge")
        );
        assert_eq!(classify("deassoc", 768), VdpEventKind::Deassociated);
        assert_eq!(classify("deassoc", 767), VdpEventKind::Failed);
        assert_eq!(classify("deassoc", 2), VdpEventKind::Failed);
        assert_eq!(classify("deassoc", 0), VdpEventKind::Deassociated);
        assert_eq!(classify("preassoc", 0), VdpEventKind::Associated);
    }
}
