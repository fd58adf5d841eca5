//! Controller link (docs/protocol.md): the blocking HTTP client the manager uses
//! to reach the controller — RPC calls (`POST {url}/v1/rpc/{method}`), the
//! event long-poll (`GET {url}/v1/agents/{host}/events`) and the pending
//! results that must never be lost (`pending` submodule).
//!
//! Owns: the HTTP agent (ureq, rustls with webpki roots + `server.ca_file`),
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
//! - an empty long-poll answer that comes back at once although `wait > 0`
//!   is reported as an error, so a caller that backs off on errors never
//!   spins against a controller that does not hold polls;
//! - `update_vm_result` sends `local_vlan` and `vdp_vlan` together: when at
//!   least one is known both are sent, an unknown one as `-1`; when neither
//!   is known both are left out (as the original agent does).

pub mod pending;

use crate::config::Config;
use crate::manager::host::TopoReport;
use crate::manager::link::{ControllerEvent, ControllerLink, LinkError, LinkStatus};
use crate::model::{ctime_now, UplinkInfo, VmResult};
use parking_lot::{Condvar, Mutex};
use pending::{PendingCall, PendingStore};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest response body accepted from the controller.
pub const MAX_BODY: u64 = 16 * 1024 * 1024;
/// An empty long-poll answer faster than this (when `wait > 0`) is an error.
pub const EARLY_EMPTY: Duration = Duration::from_millis(500);
/// First retry delay of kept results after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay of kept results.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

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
}

/// The production `ControllerLink`.
pub struct Controller {
    base: String,
    host_id: String,
    token: Option<String>,
    agent: ureq::Agent,
    timeout: Duration,
    events_wait_s: u64,
    state: Mutex<LinkState>,
    /// Keys (`uplink`, `vm:<port>`) whose call is on the wire right now.
    inflight: Mutex<HashSet<String>>,
    inflight_cv: Condvar,
    gen: AtomicU64,
    /// Rung when a result is handed over for delivery.
    work: Condvar,
    work_flag: Mutex<bool>,
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

/// Largest token file read.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

fn read_token(path: &PathBuf) -> Result<String, ControllerError> {
    let err = |msg: String| ControllerError::TokenFile {
        path: path.clone(),
        msg,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| err(e.to_string()))?;
    if text.len() as u64 > MAX_TOKEN_BYTES {
        return Err(err(format!("larger than {MAX_TOKEN_BYTES} bytes")));
    }
    let t = text.trim();
    if t.is_empty() {
        return Err(ControllerError::TokenFile {
            path: path.clone(),
            msg: "file is empty".into(),
        });
    }
    if t.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ControllerError::TokenFile {
            path: path.clone(),
            msg: "token holds spaces or control characters".into(),
        });
    }
    Ok(t.to_string())
}

/// rustls client config: webpki roots plus every certificate of `ca_file`.
fn tls_config(ca_file: &PathBuf) -> Result<Arc<rustls::ClientConfig>, ControllerError> {
    let ca_err = |msg: String| ControllerError::CaFile {
        path: ca_file.clone(),
        msg,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let pem = std::fs::read(ca_file).map_err(|e| ca_err(e.to_string()))?;
    let mut added = 0;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| ca_err(format!("bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ca_err(format!("bad certificate: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(ca_err("no certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ControllerError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
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
fn read_body(resp: ureq::Response) -> Result<Vec<u8>, String> {
    if let Some(len) = resp
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len > MAX_BODY {
            return Err(format!("response body of {len} bytes exceeds {MAX_BODY}"));
        }
    }
    let mut buf = Vec::new();
    resp.into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("reading response body: {e}"))?;
    if buf.len() as u64 > MAX_BODY {
        return Err(format!("response body exceeds {MAX_BODY} bytes"));
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
fn ok_body(res: Result<ureq::Response, ureq::Error>) -> Result<Vec<u8>, String> {
    match res {
        Ok(resp) if resp.status() == 200 => read_body(resp),
        Ok(resp) => {
            let code = resp.status();
            let body = read_body(resp).unwrap_or_default();
            Err(format!("HTTP {code}: {}", excerpt(&body)))
        }
        Err(ureq::Error::Status(code, resp)) => {
            let body = read_body(resp).unwrap_or_default();
            Err(format!("HTTP {code}: {}", excerpt(&body)))
        }
        Err(ureq::Error::Transport(t)) => Err(format!("transport: {t}")),
    }
}

/// `request_uplink_info` result: object (or JSON text of one, as the
/// original controller sent it), `{}`/`null`/empty uplink = none.
pub fn parse_uplink_result(v: &Value) -> Result<Option<UplinkInfo>, String> {
    let parsed;
    let v = match v {
        Value::Null => return Ok(None),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| format!("uplink result is text but not JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err("uplink result is not an object".into()),
    };
    let uplink = match obj.get("uplink") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("uplink result: 'uplink' is not a string".into()),
    };
    if uplink.is_empty() {
        return Ok(None);
    }
    let veth_intf = match obj.get("veth_intf") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("uplink result: 'veth_intf' is not a string".into()),
    };
    Ok(Some(UplinkInfo { uplink, veth_intf }))
}

/// Highest event number accepted (JSON-safe integers: 2^53 - 1).
pub const MAX_SEQ: u64 = (1 << 53) - 1;
/// Largest plausible jump of the event number past the cursor in one
/// answer (once the cursor is past 0).
pub const MAX_SEQ_LEAP: u64 = 1_000_000;

/// The `{"events": [...]}` envelope of a long-poll answer, judged against
/// the cursor `after` (rules in docs/protocol.md, "Event numbering"):
/// - events without a numeric `seq` or a string `type` are skipped (logged);
/// - a `seq` above [`MAX_SEQ`], or more than [`MAX_SEQ_LEAP`] past a
///   non-zero cursor, is implausible: the event is dropped (logged) and can
///   never move the cursor, so one bad number cannot deafen the agent;
/// - events with `seq <= after` are already acknowledged and dropped —
///   unless *every* usable event of the answer is strictly below the
///   cursor, which means the controller's numbering restarted: then they
///   are all returned and the caller resynchronises its cursor to them;
/// - two different events with one `seq`: the first is kept, the other
///   dropped with a log line;
/// - an answer that held events but none usable is an error (so the caller
///   backs off instead of spinning).
pub fn parse_events(body: &Value, after: u64) -> Result<Vec<ControllerEvent>, String> {
    let list = body
        .as_object()
        .ok_or("events answer is not a JSON object")?
        .get("events")
        .ok_or("events answer has no 'events'")?
        .as_array()
        .ok_or("'events' is not a list")?;
    let mut fresh = Vec::with_capacity(list.len());
    let mut old = Vec::new();
    let (mut bad, mut wild) = (0usize, 0usize);
    for (i, e) in list.iter().enumerate() {
        let seq = e.get("seq").and_then(Value::as_u64);
        let kind = e.get("type").and_then(Value::as_str);
        match (seq, kind) {
            (Some(seq), Some(kind)) => {
                if seq > MAX_SEQ || (after > 0 && seq > after.saturating_add(MAX_SEQ_LEAP)) {
                    wild += 1;
                    log::warn!(
                        "controller event seq {seq} is implausible (cursor {after}); dropped"
                    );
                    continue;
                }
                let ev = ControllerEvent {
                    seq,
                    kind: kind.to_string(),
                    payload: e.get("payload").cloned().unwrap_or(Value::Null),
                };
                if seq <= after {
                    old.push(ev);
                } else {
                    fresh.push(ev);
                }
            }
            _ => {
                bad += 1;
                log::warn!("controller event #{i} has no numeric 'seq' or string 'type'; skipped");
            }
        }
    }
    let stale = old.len();
    // Only events strictly below the cursor (none at it, which would be an
    // ordinary at-least-once repeat) mean a numbering restart.
    let restarted = !old.is_empty() && old.iter().all(|e| e.seq < after);
    let mut out = if fresh.is_empty() && restarted {
        log::warn!(
            "controller sent only events at or below the cursor {after} (its numbering \
             restarted?): resynchronising to them"
        );
        old
    } else {
        fresh
    };
    out.sort_by_key(|e| e.seq);
    let mut kept: Vec<ControllerEvent> = Vec::with_capacity(out.len());
    for ev in out {
        match kept.last() {
            Some(k) if k.seq == ev.seq => {
                if k.kind != ev.kind || k.payload != ev.payload {
                    log::warn!(
                        "controller sent two different events with seq {}; dropped the second ({})",
                        ev.seq,
                        ev.kind.chars().take(40).collect::<String>()
                    );
                }
            }
            _ => kept.push(ev),
        }
    }
    if kept.is_empty() && (bad > 0 || stale > 0 || wild > 0) {
        return Err(format!(
            "events answer held {bad} malformed, {wild} implausibly numbered and {stale} \
             already-acknowledged event(s), nothing new"
        ));
    }
    Ok(kept)
}

/// `server.url` as `scheme://HOST[:PORT][/PATH]`: a non-empty host without
/// spaces or `@`, a port 1..65535 when given.
fn check_url(url: &str) -> Result<String, ControllerError> {
    let bad = |msg: &str| ControllerError::Url {
        url: url.to_string(),
        msg: msg.to_string(),
    };
    let base = url.trim_end_matches('/').to_string();
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
        .ok_or_else(|| bad("must be http://HOST[:PORT] or https://..."))?;
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        // [v6]:port or host:port (a bare [v6] has its ':' inside brackets).
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.is_empty()
        || host.len() > 253
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@')
    {
        return Err(bad("has no valid host"));
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(bad("port must be 1..65535"));
        }
    }
    Ok(base)
}

/// Every check `Controller::new` makes of the configuration, without side
/// effects (`--check-config` runs it): the URL, the token file, the CA file.
pub fn preflight(cfg: &Config) -> Result<(), ControllerError> {
    check_url(&cfg.server.url)?;
    if let Some(p) = &cfg.server.token_file {
        read_token(p)?;
    }
    if let Some(ca) = &cfg.server.ca_file {
        tls_config(ca)?;
    }
    Ok(())
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
        if let Some(ca) = &s.ca_file {
            builder = builder.tls_config(tls_config(ca)?);
        }
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
            events_wait_s: s.events_wait_s,
            state: Mutex::new(LinkState {
                last_ok: None,
                last_error: None,
                pending,
                backoff: BACKOFF_MIN,
                next_retry: Instant::now(),
                dirty: false,
            }),
            inflight: Mutex::new(HashSet::new()),
            inflight_cv: Condvar::new(),
            gen: AtomicU64::new(gen),
            work: Condvar::new(),
            work_flag: Mutex::new(false),
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

    fn note_err(&self, what: &str, cause: &str) -> String {
        let text = format!("{what}: {cause}");
        log::warn!("controller call failed: {text}");
        self.state.lock().last_error = Some(text.clone());
        text
    }

    /// One RPC call; `Ok` holds the `result` value of a 200 answer.
    fn rpc(&self, method: &str, context: &Value, args: &Value) -> Result<Value, String> {
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
        let outcome = ok_body(req.send_string(&body)).and_then(|b| {
            let v: Value =
                serde_json::from_slice(&b).map_err(|e| format!("answer is not JSON: {e}"))?;
            match v {
                Value::Object(mut o) => o
                    .remove("result")
                    .ok_or_else(|| "answer has no 'result'".to_string()),
                _ => Err("answer is not a JSON object".into()),
            }
        });
        match outcome {
            Ok(v) => {
                self.note_ok();
                Ok(v)
            }
            Err(cause) => Err(self.note_err(method, &cause)),
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

    fn persist(&self, st: &mut LinkState) {
        match st.pending.persist() {
            Ok(()) => st.dirty = false,
            Err(e) => log::error!(
                "cannot write {}: {e} (kept results stay in memory)",
                st.pending.path().display()
            ),
        }
    }

    /// Hand a result call to the delivery thread: kept (newest per key
    /// wins) and sent by `retry_pending`, so the caller — the queue worker —
    /// never waits for the controller.
    fn hand_over(&self, key: String, method: &str, context: Value, args: Value) {
        let gen = self.gen.fetch_add(1, Ordering::SeqCst);
        let call = PendingCall {
            key,
            method: method.to_string(),
            context,
            args,
            gen,
            created: ctime_now(),
        };
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
    ) -> Result<Value, String> {
        let _guard = self.claim(&key);
        // Numbered after the claim: calls for one key go out in number order.
        let gen = self.gen.fetch_add(1, Ordering::SeqCst);
        match self.rpc(method, &context, &args) {
            Ok(v) => {
                let mut st = self.state.lock();
                if st.pending.delivered(&key, gen) {
                    self.persist(&mut st);
                }
                Ok(v)
            }
            Err(e) => {
                let mut st = self.state.lock();
                let call = PendingCall {
                    key,
                    method: method.to_string(),
                    context,
                    args,
                    gen,
                    created: ctime_now(),
                };
                if st.pending.keep(call) {
                    self.persist(&mut st);
                }
                let now = Instant::now();
                if st.next_retry <= now {
                    st.next_retry = now + st.backoff;
                }
                Err(format!("{e} (kept for retry)"))
            }
        }
    }

    /// One delivery round: every kept call whose backoff expired, in order
    /// of creation, stopping at the first failure (backoff doubles).
    /// Returns how many are still kept.
    fn deliver_round(&self) -> usize {
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
        for call in due {
            let Some(_guard) = self.try_claim(&call.key) else {
                continue;
            };
            // Still the kept call? (A fresh call may have replaced or delivered it.)
            if self.state.lock().pending.get(&call.key).map(|c| c.gen) != Some(call.gen) {
                continue;
            }
            match self.rpc(&call.method, &call.context, &call.args) {
                Ok(_) => {
                    log::info!("delivered kept {} ({})", call.method, call.key);
                    let mut st = self.state.lock();
                    if st.pending.delivered(&call.key, call.gen) {
                        st.dirty = true;
                    }
                }
                Err(_) => {
                    // Next try after the current backoff (1 s after the
                    // first failure), doubling up to BACKOFF_MAX.
                    let mut st = self.state.lock();
                    st.next_retry = Instant::now() + st.backoff;
                    st.backoff = (st.backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                    break;
                }
            }
        }
        self.state.lock().pending.len()
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
        parse_uplink_result(&v).map_err(|e| self.note_err("request_uplink_info", &e))
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
        if local_vlan.is_some() || vdp_vlan.is_some() {
            let vlan = |v: Option<u16>| v.map(i64::from).unwrap_or(-1);
            args["local_vlan"] = json!(vlan(local_vlan));
            args["vdp_vlan"] = json!(vlan(vdp_vlan));
        }
        let context = json!({"agent": self.host_id});
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
            let v: Value =
                serde_json::from_slice(&b).map_err(|e| format!("answer is not JSON: {e}"))?;
            let evs = parse_events(&v, after)?;
            if evs.is_empty() && wait > 0 && started.elapsed() < EARLY_EMPTY {
                // A controller that does not hold the poll would make the
                // caller spin; report it so the caller backs off.
                return Err(format!(
                    "empty answer at once (the controller did not hold the poll for wait={wait})"
                ));
            }
            Ok(evs)
        });
        match outcome {
            Ok(evs) => {
                self.note_ok();
                Ok(evs)
            }
            Err(cause) => Err(self.note_err("events", &cause)),
        }
    }

    fn retry_pending(&self) -> usize {
        let left = self.deliver_round();
        let mut st = self.state.lock();
        if st.dirty {
            self.persist(&mut st);
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
mod tests {
    use super::*;

    #[test]
    fn uplink_results() {
        assert_eq!(parse_uplink_result(&Value::Null), Ok(None));
        assert_eq!(parse_uplink_result(&json!({})), Ok(None));
        assert_eq!(parse_uplink_result(&json!({"uplink": ""})), Ok(None));
        assert_eq!(
            parse_uplink_result(&json!({"uplink": "eth2", "veth_intf": "LLDPLeth2", "x": 1})),
            Ok(Some(UplinkInfo {
                uplink: "eth2".into(),
                veth_intf: "LLDPLeth2".into()
            }))
        );
        assert_eq!(
            parse_uplink_result(&json!("{\"uplink\": \"eth3\"}")),
            Ok(Some(UplinkInfo {
                uplink: "eth3".into(),
                veth_intf: String::new()
            }))
        );
        assert!(parse_uplink_result(&json!({"uplink": 5})).is_err());
        assert!(parse_uplink_result(&json!([1])).is_err());
    }

    #[test]
    fn event_envelopes() {
        let v = json!({"events": [
            {"seq": 3, "type": "vm_info", "payload": {"a": 1}},
            {"seq": 2, "type": "uplink"},
            {"seq": "x", "type": "vm_info"},
            {"seq": 1, "type": "vm_info", "payload": 1},
        ]});
        let evs = parse_events(&v, 1).unwrap();
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].seq, 2);
        assert_eq!(evs[0].payload, Value::Null);
        assert_eq!(evs[1].kind, "vm_info");
        assert!(parse_events(&json!({"events": {}}), 0).is_err());
        assert!(parse_events(&json!([]), 0).is_err());
        assert!(parse_events(&json!({"events": [{"seq": 1}]}), 0).is_err());
        assert!(parse_events(&json!({"events": [{"seq": 1, "type": "x"}]}), 1).is_err());
        assert_eq!(parse_events(&json!({"events": []}), 0).unwrap().len(), 0);
    }

    #[test]
    fn event_numbers_cannot_poison_the_cursor() {
        // A huge seq is dropped; the good event next to it is kept.
        let v = json!({"events": [
            {"seq": 9_223_372_036_854_775_808u64, "type": "vm_info"},
            {"seq": 6, "type": "vm_info", "payload": 1},
        ]});
        let evs = parse_events(&v, 5).unwrap();
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![6]);
        // An implausible leap past a non-zero cursor is dropped; only it:
        // an error (the caller backs off), never a new cursor.
        let v = json!({"events": [{"seq": 5 + MAX_SEQ_LEAP + 1, "type": "vm_info"}]});
        assert!(parse_events(&v, 5).is_err());
        // A fresh start (cursor 0) accepts a large but sane number.
        let v = json!({"events": [{"seq": 5 + MAX_SEQ_LEAP + 1, "type": "vm_info"}]});
        assert_eq!(parse_events(&v, 0).unwrap().len(), 1);
        // Numbering restarted below the cursor: returned for resync.
        let v = json!({"events": [{"seq": 2, "type": "vm_info"}, {"seq": 1, "type": "uplink"}]});
        let evs = parse_events(&v, 500).unwrap();
        assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        // Two different events with one seq: the first is kept.
        let v = json!({"events": [
            {"seq": 7, "type": "vm_info", "payload": "a"},
            {"seq": 7, "type": "uplink", "payload": "b"},
        ]});
        let evs = parse_events(&v, 6).unwrap();
        assert_eq!((evs.len(), evs[0].kind.as_str()), (1, "vm_info"));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(path_segment("compute-1.lab"), "compute-1.lab");
        assert_eq!(path_segment("a?b#c"), "a%3Fb%23c");
    }
}
