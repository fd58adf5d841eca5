//! Controller link (docs/protocol.md): the blocking HTTP client the manager uses
//! to reach the controller — RPC calls (`POST {url}/v1/rpc/{method}`), the
//! event long-poll (`GET {url}/v1/agents/{host}/events`) and the pending
//! results that must never be lost (`pending` submodule).
//!
//! Owns: the HTTP agent (ureq, rustls: system CA store + `server.ca_file`),
//! the bearer token, the pending-result store and the link status. Calls
//! `model`, `config`, `manager::link` / `manager::host` types; nothing else.
//!
//! Rules kept here:
//! - success is HTTP 200 with a JSON object holding `result`; anything else
//!   (other status, transport error, timeout, bad/huge body) is a failed call;
//! - every call is bounded by `server.timeout_s` (events: `events_wait_s +
//!   timeout_s`); bodies above [`MAX_BODY`] are refused;
//! - `save_uplink` / `update_vm_result` that fail are kept (memory + file),
//!   newest per key, and retried by `retry_pending` with exponential backoff
//!   ([`BACKOFF_MIN`] doubling to [`BACKOFF_MAX`]); calls for one key are
//!   never in flight twice, so an old kept result cannot overtake a newer one;
//! - a call that failed without an answer may still be applied by a slow
//!   controller after a newer one for its key was delivered: the key's next
//!   delivered call is then sent once more [`REORDER_WINDOW_TIMEOUTS`] ×
//!   `server.timeout_s` after the failure (`reorder` submodule);
//! - an empty long-poll answer that comes back at once although `wait > 0`
//!   is reported as an error, so a caller that backs off on errors never
//!   spins against a controller that does not hold polls;
//! - `update_vm_result` sends `local_vlan` and `vdp_vlan` together: when at
//!   least one is known both are sent, an unknown one as `-1`; when neither
//!   is known both are left out (as the original agent does).

mod answers;
pub(crate) mod pending;
mod reorder;
mod setup;
pub use answers::{parse_events, parse_uplink_result};
pub use setup::preflight;
use setup::{check_url, read_token, tls_config};

use crate::config::Config;
use crate::manager::link::{ControllerEvent, ControllerLink, LinkError, LinkFailure, LinkStatus};
use crate::model::TopoReport;
use crate::model::{ctime_now, UplinkInfo, VmResult};
use crate::task::ThreadName;
use parking_lot::{Condvar, Mutex};
use pending::{PendingCall, PendingStore};
use reorder::ReorderGuard;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest response body accepted from the controller.
pub(crate) const MAX_BODY: u64 = 16 * 1024 * 1024;
/// An empty long-poll answer faster than this (when `wait > 0`) is an error.
pub(crate) const EARLY_EMPTY: Duration = Duration::from_millis(500);
/// First retry delay of kept results after a failure.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The reorder guard's window in `server.timeout_s` (at least 3 s): a call
/// that failed without an answer and is applied by the controller later
/// than this after the failure can still leave an older result in place
/// (until the next re-report).
pub(crate) const REORDER_WINDOW_TIMEOUTS: u32 = 3;
/// Longest retry delay of kept results.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How many kept calls one delivery round sends at once (a bulk resync
/// hands over one result per port: sent one after the other, 1000 results
/// took ~4 s against the reference controller, ~1.8 s four at a time,
/// ~1 s eight at a time: its state file's group commit answers the calls
/// of one write together; docs/bench.md).
pub(crate) const DELIVERY_LANES: usize = 8;

/// Why a `Controller` could not be built.
#[derive(Debug)]
pub enum ControllerError {
    Url { url: String, msg: String },
    TokenFile { path: PathBuf, msg: String },
    CaFile { path: PathBuf, msg: String },
    StateDir { path: PathBuf, err: std::io::Error },
    Tls(String),
}

impl fmt::Display for ControllerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControllerError::Url { url, msg } => write!(f, "server.url {url}: {msg}"),
            ControllerError::TokenFile { path, msg } => {
                write!(f, "server.token_file {}: {msg}", path.display())
            }
            ControllerError::CaFile { path, msg } => {
                write!(f, "server.ca_file {}: {msg}", path.display())
            }
            ControllerError::StateDir { path, err } => {
                write!(f, "state dir {}: {err}", path.display())
            }
            ControllerError::Tls(m) => write!(f, "TLS setup: {m}"),
        }
    }
}

impl std::error::Error for ControllerError {}

struct LinkState {
    last_ok: Option<String>,
    last_error: Option<String>,
    pending: PendingStore,
    backoff: Duration,
    next_retry: Instant,
    /// The in-memory store differs from the file (written once per
    /// delivery round, not per result).
    dirty: bool,
    /// Snapshots of the store taken for writing, numbered.
    snapshots: u64,
    /// Keys with a failed attempt and the confirmations due.
    reorder: ReorderGuard,
}

/// The production `ControllerLink`.
pub struct Controller {
    base: String,
    host_id: String,
    token: Option<String>,
    agent: ureq::Agent,
    timeout: Duration,
    /// `REORDER_WINDOW_TIMEOUTS` × `timeout`, at least 3 s.
    reorder_window: Duration,
    events_wait_s: u64,
    state: Mutex<LinkState>,
    /// Keys (`uplink`, `vm:<port>`) whose call is on the wire right now.
    inflight: Mutex<HashSet<String>>,
    inflight_cv: Condvar,
    gen: AtomicU64,
    /// Rung when a result is handed over for delivery.
    work: Condvar,
    work_flag: Mutex<bool>,
    /// How often the kept-results file was written (status and tests: one
    /// write per delivery round, not one per result).
    writes: AtomicU64,
    /// Held while the kept-results file is written; the number of the
    /// snapshot on file. Lock order: `state` is never taken while `file`
    /// is held, and `file` never while `state` is.
    file: Mutex<u64>,
}

/// Releases an in-flight key on drop.
struct KeyGuard<'a> {
    ctl: &'a Controller,
    key: String,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut set = self.ctl.inflight.lock();
        set.remove(&self.key);
        self.ctl.inflight_cv.notify_all();
    }
}

/// Percent-encode one URL path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Read a response body, refusing more than [`MAX_BODY`] bytes.
fn read_body(resp: ureq::Response) -> Result<Vec<u8>, LinkFailure> {
    if let Some(len) = resp
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len > MAX_BODY {
            return Err(LinkFailure::Answer(format!(
                "response body of {len} bytes exceeds {MAX_BODY}"
            )));
        }
    }
    let mut buf = Vec::new();
    resp.into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut buf)
        .map_err(|e| LinkFailure::Transport(format!("reading response body: {e}")))?;
    if buf.len() as u64 > MAX_BODY {
        return Err(LinkFailure::Answer(format!(
            "response body exceeds {MAX_BODY} bytes"
        )));
    }
    Ok(buf)
}

/// Short, printable excerpt of a body for error texts.
fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Turn a ureq outcome into the response body of a 200 answer.
fn ok_body(res: Result<ureq::Response, ureq::Error>) -> Result<Vec<u8>, LinkFailure> {
    let http = |code: u16, resp: ureq::Response| LinkFailure::Http {
        code,
        excerpt: excerpt(&read_body(resp).unwrap_or_default()),
    };
    match res {
        Ok(resp) if resp.status() == 200 => read_body(resp),
        Ok(resp) => Err(http(resp.status(), resp)),
        Err(ureq::Error::Status(code, resp)) => Err(http(code, resp)),
        Err(ureq::Error::Transport(t)) => Err(LinkFailure::Transport(t.to_string())),
    }
}

impl Controller {
    /// Build the link: read the token, set up TLS, create `state_dir` and
    /// reload kept results from `{state_dir}/pending-results.json`.
    pub fn new(cfg: &Config, host_id: String) -> Result<Controller, ControllerError> {
        let s = &cfg.server;
        let base = check_url(&s.url)?;
        let token = match &s.token_file {
            Some(p) => Some(read_token(p)?),
            None => None,
        };
        let mut builder = ureq::AgentBuilder::new()
            .redirects(0)
            .timeout_connect(Duration::from_secs(s.timeout_s.max(1)))
            .user_agent(&format!("vdp-agent/{}", crate::VERSION));
        builder = builder.tls_config(tls_config(s.ca_file.as_ref())?);
        let state_dir = cfg.paths.state_dir.clone();
        std::fs::create_dir_all(&state_dir).map_err(|err| ControllerError::StateDir {
            path: state_dir.clone(),
            err,
        })?;
        let pending = PendingStore::load(&state_dir);
        let gen = pending.max_gen() + 1;
        Ok(Controller {
            base,
            host_id,
            token,
            agent: builder.build(),
            timeout: Duration::from_secs(s.timeout_s.max(1)),
            reorder_window: Duration::from_secs(
                (s.timeout_s.max(1) * u64::from(REORDER_WINDOW_TIMEOUTS)).max(3),
            ),
            events_wait_s: s.events_wait_s,
            state: Mutex::new(LinkState {
                last_ok: None,
                last_error: None,
                pending,
                backoff: BACKOFF_MIN,
                next_retry: Instant::now(),
                dirty: false,
                snapshots: 0,
                reorder: ReorderGuard::default(),
            }),
            file: Mutex::new(0),
            inflight: Mutex::new(HashSet::new()),
            inflight_cv: Condvar::new(),
            gen: AtomicU64::new(gen),
            work: Condvar::new(),
            work_flag: Mutex::new(false),
            writes: AtomicU64::new(0),
        })
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    fn note_ok(&self) {
        let mut st = self.state.lock();
        st.last_ok = Some(ctime_now());
        st.backoff = BACKOFF_MIN;
        st.next_retry = Instant::now();
    }

    fn note_err(&self, what: &str, cause: LinkFailure) -> LinkError {
        let e = LinkError::new(what, cause);
        log::warn!("controller call failed: {e}");
        self.state.lock().last_error = Some(e.to_string());
        e
    }

    /// One RPC call; `Ok` holds the `result` value of a 200 answer.
    fn rpc(&self, method: &str, context: &Value, args: &Value) -> Result<Value, LinkError> {
        let url = format!("{}/v1/rpc/{}", self.base, path_segment(method));
        let body = json!({"context": context, "args": args}).to_string();
        let mut req = self
            .agent
            .post(&url)
            .timeout(self.timeout)
            .set("Content-Type", "application/json")
            .set("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let started = Instant::now();
        let outcome = ok_body(req.send_string(&body)).and_then(|b| {
            let v: Value = serde_json::from_slice(&b)
                .map_err(|e| LinkFailure::Answer(format!("answer is not JSON: {e}")))?;
            match v {
                Value::Object(mut o) => o
                    .remove("result")
                    .ok_or_else(|| LinkFailure::Answer("answer has no 'result'".into())),
                _ => Err(LinkFailure::Answer("answer is not a JSON object".into())),
            }
        });
        crate::metrics::rpc_done(method, started.elapsed(), outcome.is_ok());
        match outcome {
            Ok(v) => {
                self.note_ok();
                Ok(v)
            }
            Err(cause) => Err(self.note_err(method, cause)),
        }
    }

    /// Claim `key` for sending; waits while another call for it is on the wire.
    fn claim(&self, key: &str) -> KeyGuard<'_> {
        let mut set = self.inflight.lock();
        while set.contains(key) {
            self.inflight_cv.wait(&mut set);
        }
        set.insert(key.to_string());
        KeyGuard {
            ctl: self,
            key: key.to_string(),
        }
    }

    /// Claim `key` only if it is free.
    fn try_claim(&self, key: &str) -> Option<KeyGuard<'_>> {
        let mut set = self.inflight.lock();
        if set.contains(key) {
            return None;
        }
        set.insert(key.to_string());
        Some(KeyGuard {
            ctl: self,
            key: key.to_string(),
        })
    }

    /// Write the kept-results file: a snapshot taken under the state
    /// lock, written (fsync, rename) outside it, so result hand-overs and
    /// deliveries never wait for the disk. A snapshot older than the one
    /// on file is not written.
    fn persist(&self) {
        let (n, path, data) = {
            let mut st = self.state.lock();
            st.dirty = false;
            st.snapshots += 1;
            (
                st.snapshots,
                st.pending.path().to_path_buf(),
                st.pending.encode(),
            )
        };
        let failed = {
            let mut on_file = self.file.lock();
            if *on_file >= n {
                return;
            }
            self.writes.fetch_add(1, Ordering::Relaxed);
            match data.and_then(|d| crate::fsutil::write_atomic(&path, &d)) {
                Ok(()) => {
                    *on_file = n;
                    false
                }
                Err(e) => {
                    log::error!(
                        "cannot write {}: {e} (kept results stay in memory)",
                        path.display()
                    );
                    true
                }
            }
        };
        if failed {
            self.state.lock().dirty = true;
        }
    }

    /// Hand a result call to the delivery thread: kept (newest per key
    /// wins) and sent by `retry_pending`, so the caller — the queue worker —
    /// never waits for the controller.
    fn hand_over(&self, key: String, method: &str, context: Value, args: Value) {
        let gen = self.gen.fetch_add(1, Ordering::SeqCst);
        let call = PendingCall::new(key, method, context, args, gen);
        {
            let mut st = self.state.lock();
            if st.pending.keep(call) {
                st.dirty = true;
            }
        }
        *self.work_flag.lock() = true;
        self.work.notify_all();
    }

    /// Send a result call now; keep it when it fails.
    fn deliver(
        &self,
        key: String,
        method: &str,
        context: Value,
        args: Value,
    ) -> Result<Value, LinkError> {
        let _guard = self.claim(&key);
        // Numbered after the claim: calls for one key go out in number order.
        let gen = self.gen.fetch_add(1, Ordering::SeqCst);
        let outcome = self.rpc(method, &context, &args);
        let call = PendingCall::new(key, method, context, args, gen);
        match outcome {
            Ok(v) => {
                let changed = {
                    let mut st = self.state.lock();
                    st.reorder.delivered(&call, self.reorder_window);
                    st.pending.delivered(&call.key, gen)
                };
                if changed {
                    self.persist();
                }
                Ok(v)
            }
            Err(e) => {
                let mut st = self.state.lock();
                let now = Instant::now();
                if reorder::may_have_arrived(&e.failure) {
                    st.reorder.failed(&call.key, now);
                }
                let changed = st.pending.keep(call);
                if st.next_retry <= now {
                    st.next_retry = now + st.backoff;
                }
                drop(st);
                if changed {
                    self.persist();
                }
                Err(LinkError { kept: true, ..e })
            }
        }
    }

    /// One delivery round: every kept call whose backoff expired, oldest
    /// first, sent by up to [`DELIVERY_LANES`] `result-send` threads at once
    /// (each key is in the round once and claimed while on the wire, so a
    /// port's calls never overtake each other). The first failure ends the
    /// round: no lane takes a new call, the backoff doubles. The threads
    /// are scoped: they end with the round, each call bounded by
    /// `server.timeout_s`. Returns how many calls are still kept.
    fn deliver_round(&self) -> usize {
        self.queue_confirmations();
        let due = {
            let st = self.state.lock();
            if st.pending.is_empty() {
                return 0;
            }
            if Instant::now() < st.next_retry {
                return st.pending.len();
            }
            let mut due = st.pending.snapshot();
            due.sort_by_key(|c| c.gen);
            due
        };
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let lane = || {
            while !failed.load(Ordering::SeqCst) {
                let Some(call) = due.get(next.fetch_add(1, Ordering::SeqCst)) else {
                    return;
                };
                if !self.deliver_kept(call) {
                    failed.store(true, Ordering::SeqCst);
                }
            }
        };
        let lanes = due.len().clamp(1, DELIVERY_LANES);
        if lanes == 1 {
            lane();
        } else {
            std::thread::scope(|s| {
                for _ in 1..lanes {
                    let spawned = std::thread::Builder::new()
                        .name(ThreadName::ResultSend.as_str().into())
                        .spawn_scoped(s, lane);
                    if let Err(e) = spawned {
                        log::warn!("cannot start a {} thread: {e}", ThreadName::ResultSend);
                        break;
                    }
                }
                lane();
            });
        }
        if failed.load(Ordering::SeqCst) {
            // Next try after the current backoff (1 s after the first
            // failure), doubling up to BACKOFF_MAX.
            let mut st = self.state.lock();
            st.next_retry = Instant::now() + st.backoff;
            st.backoff = (st.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        }
        self.state.lock().pending.len()
    }

    /// Keep the reorder guard's due confirmations for delivery (with new
    /// numbers, so they count as the key's newest calls).
    fn queue_confirmations(&self) {
        let mut st = self.state.lock();
        let now = Instant::now();
        if st.reorder.next_due().is_none_or(|t| t > now) {
            return;
        }
        let LinkState {
            reorder, pending, ..
        } = &mut *st;
        let due = reorder.take_due(now, |k| pending.get(k).is_some());
        for mut call in due {
            log::info!(
                "sending {} ({}) again: an earlier attempt failed without an answer and may \
                 have reached the controller after it",
                call.method,
                call.key
            );
            call.gen = self.gen.fetch_add(1, Ordering::SeqCst);
            if st.pending.keep(call) {
                st.dirty = true;
            }
        }
    }

    /// Send one kept call of a round unless another call for its key is on
    /// the wire or it was replaced or delivered meanwhile; false when the
    /// controller failed it.
    fn deliver_kept(&self, call: &PendingCall) -> bool {
        let Some(_guard) = self.try_claim(&call.key) else {
            return true;
        };
        if self.state.lock().pending.get(&call.key).map(|c| c.gen) != Some(call.gen) {
            return true;
        }
        match self.rpc(&call.method, &call.context, &call.args) {
            Ok(_) => {
                log::info!("delivered kept {} ({})", call.method, call.key);
                let mut st = self.state.lock();
                st.reorder.delivered(call, self.reorder_window);
                if st.pending.delivered(&call.key, call.gen) {
                    st.dirty = true;
                }
                true
            }
            Err(e) => {
                if reorder::may_have_arrived(&e.failure) {
                    self.state.lock().reorder.failed(&call.key, Instant::now());
                }
                false
            }
        }
    }

    /// How many times the kept-results file was written.
    pub fn pending_writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Path of the pending-results file (for tests and status).
    pub fn pending_path(&self) -> PathBuf {
        self.state.lock().pending.path().to_path_buf()
    }
}

/// `true`/`false` results; anything else counts as `false`.
fn result_bool(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

impl ControllerLink for Controller {
    fn heartbeat(&self) -> Result<(), LinkError> {
        let args = json!({"when": ctime_now(), "agent": self.host_id});
        self.rpc("heartbeat", &json!({}), &args).map(|_| ())
    }

    fn request_uplink_info(&self) -> Result<Option<UplinkInfo>, LinkError> {
        let args = json!({"agent": self.host_id});
        let v = self.rpc("request_uplink_info", &json!({}), &args)?;
        parse_uplink_result(&v)
            .map_err(|e| self.note_err("request_uplink_info", LinkFailure::Answer(e)))
    }

    fn save_uplink(
        &self,
        uplink: &str,
        veth_intf: &str,
        memb_port_list: Option<String>,
        fail_reason: &str,
    ) -> Result<bool, LinkError> {
        let args = json!({
            "agent": self.host_id,
            "uplink": uplink,
            "veth_intf": veth_intf,
            "memb_port_list": memb_port_list,
            "fail_reason": fail_reason,
        });
        self.deliver("uplink".into(), "save_uplink", json!({}), args)
            .map(|v| result_bool(&v))
    }

    fn update_vm_result(
        &self,
        port_uuid: &str,
        result: VmResult,
        local_vlan: Option<u16>,
        vdp_vlan: Option<u16>,
        fail_reason: Option<&str>,
    ) -> Result<(), LinkError> {
        let mut args = json!({
            "port_uuid": port_uuid,
            "result": result.as_str(),
            "fail_reason": fail_reason,
        });
        // Both VLANs whenever one is known (-1 for the other), and on every
        // SUCCESS as the original (a down of a network's last port: -1/-1).
        if result == VmResult::Success || local_vlan.is_some() || vdp_vlan.is_some() {
            let vlan = |v: Option<u16>| v.map(i64::from).unwrap_or(-1);
            args["local_vlan"] = json!(vlan(local_vlan));
            args["vdp_vlan"] = json!(vlan(vdp_vlan));
        }
        let context = json!({"agent": self.host_id});
        crate::metrics::vm_result_handed(port_uuid);
        self.hand_over(format!("vm:{port_uuid}"), "update_vm_result", context, args);
        Ok(())
    }

    fn save_topo_disc_params(&self, r: &TopoReport) -> Result<bool, LinkError> {
        let mut cfgs = serde_json::Map::new();
        if let Some(m) = &r.bond_member_ports {
            cfgs.insert("bond_member_ports".into(), json!(m));
        }
        if let Some(b) = &r.bond_interface {
            cfgs.insert("bond_interface".into(), json!(b));
        }
        let args = json!({
            "host": self.host_id,
            "protocol_interface": r.protocol_interface,
            "heartbeat": ctime_now(),
            "phy_interface": r.phy_interface,
            "remote_evb_cfgd": r.remote_evb_cfgd,
            "remote_evb_mode": r.remote_evb_mode,
            "remote_mgmt_addr": r.remote_mgmt_addr,
            "remote_system_desc": r.remote_system_desc,
            "remote_system_name": r.remote_system_name,
            "remote_port": r.remote_port,
            "remote_chassis_id_mac": r.remote_chassis_id_mac,
            "remote_port_id_mac": r.remote_port_id_mac,
            "configurations": Value::Object(cfgs).to_string(),
        });
        self.rpc("save_topo_disc_params", &json!({}), &args)
            .map(|v| result_bool(&v))
    }

    fn poll_events(&self, after: u64) -> Result<Vec<ControllerEvent>, LinkError> {
        let wait = self.events_wait_s;
        let url = format!(
            "{}/v1/agents/{}/events?after={after}&wait={wait}",
            self.base,
            path_segment(&self.host_id)
        );
        let mut req = self
            .agent
            .get(&url)
            .timeout(self.timeout + Duration::from_secs(wait))
            .set("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let started = Instant::now();
        let outcome = ok_body(req.call()).and_then(|b| {
            let v: Value = serde_json::from_slice(&b)
                .map_err(|e| LinkFailure::Answer(format!("answer is not JSON: {e}")))?;
            let evs = parse_events(&v, after).map_err(LinkFailure::Answer)?;
            if evs.is_empty() && wait > 0 && started.elapsed() < EARLY_EMPTY {
                // A controller that does not hold the poll would make the
                // caller spin; report it so the caller backs off.
                return Err(LinkFailure::Answer(format!(
                    "empty answer at once (the controller did not hold the poll for wait={wait})"
                )));
            }
            Ok(evs)
        });
        crate::metrics::rpc_done("events", started.elapsed(), outcome.is_ok());
        match outcome {
            Ok(evs) => {
                self.note_ok();
                Ok(evs)
            }
            Err(cause) => Err(self.note_err("events", cause)),
        }
    }

    fn retry_pending(&self) -> usize {
        let left = self.deliver_round();
        let dirty = self.state.lock().dirty;
        if dirty {
            self.persist();
        }
        left
    }

    fn wait_for_work(&self, max: Duration) {
        let mut flag = self.work_flag.lock();
        if !*flag {
            let _ = self.work.wait_for(&mut flag, max);
        }
        *flag = false;
    }

    fn status(&self) -> LinkStatus {
        let st = self.state.lock();
        LinkStatus {
            last_ok: st.last_ok.clone(),
            last_error: st.last_error.clone(),
            pending_results: st.pending.len(),
        }
    }
}

#[cfg(test)]
mod tests;
