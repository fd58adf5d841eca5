//! `vdp-lab server`: the reference controller of docs/protocol.md, for the lab,
//! the demo and the tests. It answers every agent RPC, keeps per-agent
//! event queues served by long-poll, stores VM ports with the results the
//! agent reports, and offers an admin API for operators and tests.
//!
//! Owns: the HTTP listener (tiny_http, one thread per request so long-polls
//! never block other requests), the `store::Store` and the state file's
//! group commit (`Shared::persist`: every request's changes are written
//! before its answer, except an events poll's, which changes nothing
//! stored and is answered first). Calls `model` and `store`; the `cli`
//! submodule is the `vdp-lab server|port` command line.
//!
//! # Agent API (docs/protocol.md)
//! - `POST /v1/rpc/{method}` `{"context":..,"args":..}` → `{"result": ..}`.
//!   Methods: `heartbeat` (null), `request_uplink_info` (stored uplink
//!   object or `{}`), `save_uplink` (true; stores the uplink; when `uplink`
//!   is non-empty queues a bulk `vm_info` with every port bound to the agent),
//!   `update_vm_result` (0; stores result, VLANs, fail reason, time on the
//!   port), `save_topo_disc_params` (true). Unknown method: 404; body that is
//!   not `{"context": object, "args": object}`: 400. Every call is recorded
//!   (also failed ones, with the HTTP status answered).
//! - `GET /v1/agents/{host}/events?after=N&wait=S` → `{"events":[{"seq","type","payload"}]}`:
//!   acknowledges (drops) events up to N, returns retained events with
//!   `seq > N`, or holds up to S seconds (max 300) and wakes as soon as one
//!   is queued.
//! - With `--token-file`, both need `Authorization: Bearer <token>`, else 401.
//!
//! # Admin API (JSON, no token; bind the server to loopback)
//! - `POST /admin/ports` `{"host","port_uuid","mac","net_uuid","segmentation_id",
//!   "vm_name"?,"vm_uuid"?,"ip"?,"fwd_mod"?,"gw_mac"?}` → `{"port":rec,"seq":N}`;
//!   stores the port (status up) and queues `vm_info` (status up) to its host.
//! - `DELETE /admin/ports/{uuid}` → `{"port":rec,"seq":N}`; marks it down and
//!   queues `vm_info` status down (with `local_vlan`/`vdp_vlan` when known);
//!   `?purge=1` forgets it without telling the agent; `?quiet=1` marks it
//!   down without an event (seq 0: only the next bulk carries it). 404 when
//!   unknown.
//! - `GET /admin/ports[?host=H]` → `{"ports":[rec...]}`; `GET /admin/ports/{uuid}` → rec.
//!   A rec holds the fields above plus `status`, `result`, `local_vlan`,
//!   `vdp_vlan`, `fail_reason`, `when`, `reported_by`.
//! - `GET /admin/ports/{uuid}/wait?result=R&timeout=S` → `{"matched":bool,"port":rec,
//!   "event_to_result_ms":F|null}`: holds until the agent reported a result for the
//!   port's last add/delete (equal to R when given), at most S seconds (default 30,
//!   max 600). `event_to_result_ms`: from the port's last up event first handed to
//!   its agent to the agent's SUCCESS arriving (request parsed, before the state
//!   write); null until both happened.
//! - `GET /admin/calls[?method=M][&since=ID]` → `{"calls":[{"id","time","method",
//!   "context","args","status"}]}` (ids > ID); `DELETE /admin/calls` clears them.
//! - `POST /admin/events/{host}` `{"type":T,"payload":P}` queues an event
//!   (T and P may be any JSON), or `{"raw":V}` queues V as the whole wire
//!   object → `{"seq":N}`. `GET /admin/events/{host}` → `{"acked","next_seq","events"}`.
//! - `GET /admin/fault`; `POST /admin/fault` `{"fail_next":N,"delay_ms":D,"down":bool,"delay_methods":[M...],"bulk_down_without_vlans":bool}`
//!   (each optional, merged): the next N RPCs get 500, RPC and events answers
//!   wait D ms, `down` answers every RPC and events request with 503;
//!   `DELETE /admin/fault` resets.
//! - `GET /admin/uplinks` → `{"uplinks":{host:obj}}`; `PUT /admin/uplinks/{host}` obj
//!   stores it and queues an `uplink` event.
//! - `GET /admin/agents` → `{"agents":{host:{"last_heartbeat","last_seen","next_seq","retained"}}}`;
//!   `GET /admin/topology` → `{"topology":{"host/intf": args}}`.
//! - Live migration (`store::migrate` has the order of events):
//!   `POST /admin/ports/{uuid}/migrate` `{"to":H,"abort"?:bool,"manual"?:bool,"wait_s"?:N}`
//!   queues `vm_migration` `arriving` to H → `{"migration":rec}` (409 while
//!   one is in progress, when the port is down or already on H);
//!   `POST .../migrate/switchover` (`arrived` to H, `left` to the source; the
//!   port's host becomes H) and `POST .../migrate/abort` (`aborted` to H) are
//!   the explicit switchover point (automatic unless `manual`: on H's first
//!   report for the port, which aborts when it is not SUCCESS, at the
//!   latest after `wait_s`, default 10 s);
//!   `GET .../migrate` → rec; `GET .../migrate/wait?until=ready|done&timeout=S`
//!   → `{"matched","migration"}`; `GET /admin/migrations` → `{"migrations":{uuid:rec}}`.
//!   During a migration the destination's reports (and the source's after
//!   `left`) are kept on the migration record (`dest_report`, `source_report`),
//!   not on the port.

mod admin;
pub mod cli;
mod migrate;
pub mod store;

use crate::model::ctime_now;
use admin::admin;
use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::{Fault, PortRec, Store};

/// Largest request body accepted.
pub const MAX_REQUEST: u64 = 16 * 1024 * 1024;
/// Longest long-poll hold.
pub const MAX_WAIT_S: u64 = 300;

/// How to run the server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `ADDR:PORT` to listen on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// State file (ports, uplinks, ...); `None` = memory only.
    pub state: Option<PathBuf>,
    /// Bearer token required on the agent API.
    pub token: Option<String>,
}

/// Lock order: `st` and `saver` are never held together (`persist` takes
/// one, lets it go, then the other).
struct Shared {
    st: Mutex<Store>,
    cv: Condvar,
    token: Option<String>,
    stopping: AtomicBool,
    saver: Mutex<Saver>,
    saver_cv: Condvar,
}

/// The state file's group commit: whether a write is under way and up to
/// which `Store::changes` the file holds.
#[derive(Default)]
struct Saver {
    writing: bool,
    saved: u64,
}

impl Shared {
    /// Return once the state file holds every change made so far: a
    /// request is answered only after what it changed is on file. One
    /// write covers all changes made before it began; it is encoded under
    /// the store's lock and written outside it, so requests that arrive
    /// meanwhile are answered by the next write together (at 1000 ports a
    /// write takes a few ms; one per change made the controller the
    /// bottleneck of an agent's bulk resync).
    fn persist(&self) {
        let target = self.st.lock().changes();
        loop {
            {
                let mut sv = self.saver.lock();
                if sv.saved >= target {
                    return;
                }
                if sv.writing {
                    self.saver_cv.wait(&mut sv);
                    continue;
                }
                sv.writing = true;
            }
            let (gen, enc) = {
                let st = self.st.lock();
                (st.changes(), st.encode())
            };
            match enc {
                Some((path, Ok(data))) => {
                    if let Err(e) = crate::fsutil::write_atomic_unsynced(&path, &data) {
                        log::error!("cannot write state file {}: {e}", path.display());
                    }
                }
                Some((path, Err(e))) => {
                    log::error!("cannot encode state file {}: {e}", path.display())
                }
                None => {}
            }
            let mut sv = self.saver.lock();
            sv.writing = false;
            sv.saved = sv.saved.max(gen);
            self.saver_cv.notify_all();
        }
    }
}

/// A running reference controller. Dropping it stops it.
pub struct LabServer {
    shared: Arc<Shared>,
    http: Arc<tiny_http::Server>,
    accept: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl LabServer {
    /// Bind and start serving in background threads.
    pub fn start(opts: ServerOptions) -> Result<LabServer, String> {
        let store = Store::open(opts.state.as_deref())?;
        let http = tiny_http::Server::http(opts.listen.as_str())
            .map_err(|e| format!("listen on {}: {e}", opts.listen))?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("listen on {}: not an IP address", opts.listen))?;
        let http = Arc::new(http);
        let shared = Arc::new(Shared {
            st: Mutex::new(store),
            cv: Condvar::new(),
            token: opts.token,
            stopping: AtomicBool::new(false),
            saver: Mutex::new(Saver::default()),
            saver_cv: Condvar::new(),
        });
        let (h2, s2) = (http.clone(), shared.clone());
        let accept = std::thread::Builder::new()
            .name("lab-accept".into())
            .spawn(move || accept_loop(h2, s2))
            .map_err(|e| format!("spawn: {e}"))?;
        log::info!("vdp-lab server listening on {addr}");
        Ok(LabServer {
            shared,
            http,
            accept: Some(accept),
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` of the server.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Block until the server stops (it does not on its own: the CLI runs
    /// until a signal ends the process).
    pub fn join(mut self) {
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }

    /// Stop accepting, wake every long-poll and wait for the accept thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.st.lock();
            self.shared.cv.notify_all();
        }
        self.http.unblock();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        self.shared.persist();
    }
}

impl Drop for LabServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(http: Arc<tiny_http::Server>, shared: Arc<Shared>) {
    loop {
        match http.recv() {
            Ok(rq) => {
                let s = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("lab-request".into())
                    .spawn(move || handle(&s, rq));
                if let Err(e) = spawned {
                    log::error!("cannot spawn request thread: {e}");
                }
            }
            Err(e) => {
                if shared.stopping.load(Ordering::SeqCst) {
                    return;
                }
                log::warn!("accept: {e}");
            }
        }
    }
}

type Reply = (u16, Value);

fn respond(rq: tiny_http::Request, (code, body): Reply) {
    let hdr = tiny_http::Header::from_bytes("Content-Type", "application/json").ok();
    let mut resp = tiny_http::Response::from_string(body.to_string()).with_status_code(code);
    if let Some(h) = hdr {
        resp = resp.with_header(h);
    }
    if let Err(e) = rq.respond(resp) {
        log::debug!("respond: {e}");
    }
}

fn err(code: u16, msg: impl Into<String>) -> Reply {
    (code, json!({"error": msg.into()}))
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b[i] == b'+' {
            b' '
        } else {
            b[i]
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Path segments and query pairs of a request URL.
fn split_url(url: &str) -> (Vec<String>, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let segs = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let q = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect();
    (segs, q)
}

fn qget<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.as_str())
}

fn read_body(rq: &mut tiny_http::Request) -> Result<Vec<u8>, Reply> {
    let mut buf = Vec::new();
    rq.as_reader()
        .take(MAX_REQUEST + 1)
        .read_to_end(&mut buf)
        .map_err(|e| err(400, format!("reading body: {e}")))?;
    if buf.len() as u64 > MAX_REQUEST {
        return Err(err(413, "body too large"));
    }
    Ok(buf)
}

fn authorized(shared: &Shared, rq: &tiny_http::Request) -> bool {
    let Some(tok) = &shared.token else {
        return true;
    };
    rq.headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.as_str().trim() == format!("Bearer {tok}"))
        .unwrap_or(false)
}

/// Wait `ms` milliseconds unless the server stops first.
fn delay(shared: &Shared, ms: u64) {
    if ms == 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut g = shared.st.lock();
    while !shared.stopping.load(Ordering::SeqCst) {
        if shared.cv.wait_until(&mut g, deadline).timed_out() {
            return;
        }
    }
}

fn handle(shared: &Arc<Shared>, mut rq: tiny_http::Request) {
    let method = rq.method().as_str().to_ascii_uppercase();
    let (segs, q) = split_url(rq.url());
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let reply = match (method.as_str(), segs.as_slice()) {
        ("POST", ["v1", "rpc", m]) => {
            let m = m.to_string();
            rpc(shared, &mut rq, &m)
        }
        ("GET", ["v1", "agents", host, "events"]) => {
            // The answer goes out before any state write: an events poll
            // changes nothing the state file holds (save for the rare
            // sequence jump, saved right after), and waiting for another
            // request's write would hold every VM event back by it.
            let host = host.to_string();
            let reply = events(shared, &rq, &host, &q);
            respond(rq, reply);
            shared.persist();
            return;
        }
        (_, ["admin", ..]) => {
            let body = match read_body(&mut rq) {
                Ok(b) => b,
                Err(r) => return respond(rq, r),
            };
            admin(shared, &method, &segs[1..], &q, &body)
        }
        _ => err(404, "no such endpoint"),
    };
    shared.persist();
    respond(rq, reply);
}

fn rpc(shared: &Shared, rq: &mut tiny_http::Request, method: &str) -> Reply {
    let body = match read_body(rq) {
        Ok(b) => b,
        Err(r) => {
            shared
                .st
                .lock()
                .record_call(method, Value::Null, Value::Null, r.0);
            return r;
        }
    };
    let parsed: Option<(Value, Value)> =
        serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
            match (v.get("context"), v.get("args")) {
                (Some(c @ Value::Object(_)), Some(a @ Value::Object(_))) => {
                    Some((c.clone(), a.clone()))
                }
                _ => None,
            }
        });
    let auth = authorized(shared, rq);
    let delay_ms = {
        let st = shared.st.lock();
        let f = &st.fault;
        if f.delay_methods.is_empty() || f.delay_methods.iter().any(|x| x == method) {
            f.delay_ms
        } else {
            0
        }
    };
    delay(shared, delay_ms);
    let mut st = shared.st.lock();
    let (context, args) = parsed.clone().unwrap_or((Value::Null, Value::Null));
    let reply = if !auth {
        err(401, "missing or wrong bearer token")
    } else if st.fault.down {
        err(503, "controller down (fault injection)")
    } else if st.fault.fail_next > 0 {
        st.fault.fail_next -= 1;
        err(500, "injected failure")
    } else if parsed.is_none() {
        err(400, "body must be {\"context\": {...}, \"args\": {...}}")
    } else {
        dispatch(&mut st, method, &context, &args)
    };
    st.record_call(method, context, args, reply.0);
    shared.cv.notify_all();
    reply
}

fn dispatch(st: &mut Store, method: &str, context: &Value, args: &Value) -> Reply {
    let s = |k: &str| args.get(k).and_then(Value::as_str).map(String::from);
    match method {
        "heartbeat" => {
            if let Some(agent) = s("agent") {
                st.heartbeat(&agent, s("when"));
            }
            (200, json!({"result": null}))
        }
        "request_uplink_info" => {
            let up = s("agent")
                .and_then(|a| st.uplinks().get(&a).cloned())
                .unwrap_or_else(|| json!({}));
            (200, json!({"result": up}))
        }
        "save_uplink" => {
            let Some(agent) = s("agent") else {
                return (200, json!({"result": false}));
            };
            let obj = json!({
                "uplink": args.get("uplink").cloned().unwrap_or(json!("")),
                "veth_intf": args.get("veth_intf").cloned().unwrap_or(json!("")),
                "memb_port_list": args.get("memb_port_list").cloned().unwrap_or(Value::Null),
                "fail_reason": args.get("fail_reason").cloned().unwrap_or(json!("")),
                "when": ctime_now(),
            });
            st.set_uplink(&agent, obj);
            if s("uplink").is_some_and(|u| !u.is_empty()) {
                let mut bulk = st.bulk_for(&agent);
                if st.fault.bulk_down_without_vlans {
                    // As the original server: a down entry carries no VLANs.
                    for v in bulk.iter_mut().filter(|v| v["status"] == "down") {
                        if let Some(o) = v.as_object_mut() {
                            o.remove("local_vlan");
                            o.remove("vdp_vlan");
                        }
                    }
                }
                let bulk = Value::Array(bulk);
                st.queue(&agent, json!("vm_info"), bulk, None);
            }
            (200, json!({"result": true}))
        }
        "update_vm_result" => {
            let agent = context.get("agent").and_then(Value::as_str);
            if !st.vm_result(agent, args) {
                log::warn!("update_vm_result for an unknown port: {args}");
            }
            (200, json!({"result": 0}))
        }
        "save_topo_disc_params" => {
            let host = s("host").unwrap_or_default();
            let intf = s("protocol_interface").unwrap_or_default();
            st.set_topology(&host, &intf, args.clone());
            (200, json!({"result": true}))
        }
        _ => err(404, format!("unknown method {method}")),
    }
}

fn events(shared: &Shared, rq: &tiny_http::Request, host: &str, q: &[(String, String)]) -> Reply {
    if !authorized(shared, rq) {
        return err(401, "missing or wrong bearer token");
    }
    let num = |k: &str| -> Result<u64, Reply> {
        match qget(q, k) {
            None | Some("") => Ok(0),
            Some(v) => v
                .parse()
                .map_err(|_| err(400, format!("{k} must be a number"))),
        }
    };
    let after = match num("after") {
        Ok(v) => v,
        Err(r) => return r,
    };
    let wait = match num("wait") {
        Ok(v) => v.min(MAX_WAIT_S),
        Err(r) => return r,
    };
    let delay_ms = {
        let st = shared.st.lock();
        // A per-method delay leaves the event long-poll alone.
        if st.fault.delay_methods.is_empty() {
            st.fault.delay_ms
        } else {
            0
        }
    };
    delay(shared, delay_ms);
    let deadline = Instant::now() + Duration::from_secs(wait);
    let mut st = shared.st.lock();
    if st.fault.down {
        return err(503, "controller down (fault injection)");
    }
    st.ack(host, after);
    loop {
        let evs = st.events_after(host, after);
        if !evs.is_empty()
            || shared.stopping.load(Ordering::SeqCst)
            || shared.cv.wait_until(&mut st, deadline).timed_out()
        {
            let evs = if evs.is_empty() {
                st.events_after(host, after)
            } else {
                evs
            };
            if !evs.is_empty() {
                st.note_served(host, after);
            }
            return (200, json!({"events": evs}));
        }
    }
}

fn parse_body(body: &[u8]) -> Result<Value, Reply> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| err(400, format!("body is not JSON: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests;
