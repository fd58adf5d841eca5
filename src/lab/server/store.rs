//! State of the reference controller: VM ports (with what the agent reported
//! for them), stored uplinks, topology reports, agents' heartbeats, per-agent
//! event queues, the recorded RPC calls, the fault-injection settings and
//! live migrations (`migrate`).
//! Ports, uplinks, topology, agents and the per-agent sequence counters are
//! persisted to the `--state` file (temp file + rename) on every change.
//!
//! Owns: `Store`. Calls only `model::ctime_now`, serde and the file system.

use crate::model::ctime_now;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod migrate;
pub use migrate::*;

/// Most unacknowledged events kept per agent (oldest dropped beyond).
pub const MAX_RETAINED: usize = 10_000;
/// Most recorded RPC calls kept (oldest dropped beyond).
pub const MAX_CALLS: usize = 100_000;

/// A VM port known to the controller and what the agent reported for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortRec {
    pub host: String,
    pub port_uuid: String,
    pub mac: String,
    pub net_uuid: String,
    pub segmentation_id: u64,
    #[serde(default)]
    pub vm_name: Option<String>,
    #[serde(default)]
    pub vm_uuid: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default = "default_fwd_mod")]
    pub fwd_mod: String,
    #[serde(default)]
    pub gw_mac: Option<String>,
    /// `up` after add, `down` after delete.
    pub status: String,
    /// Last `update_vm_result` result since the last add/delete (null = none yet).
    #[serde(default)]
    pub result: Option<String>,
    #[serde(default)]
    pub local_vlan: Option<i64>,
    #[serde(default)]
    pub vdp_vlan: Option<i64>,
    #[serde(default)]
    pub fail_reason: Option<String>,
    /// `ctime()` of the last report.
    #[serde(default)]
    pub when: Option<String>,
    /// Agent (`context.agent`) that sent the last report.
    #[serde(default)]
    pub reported_by: Option<String>,
}

fn default_fwd_mod() -> String {
    "anycast-gateway".into()
}

fn known_vlan(v: Option<i64>) -> Option<i64> {
    v.filter(|v| (1..=4094).contains(v))
}

impl PortRec {
    /// The VM object of docs/protocol.md.
    pub fn vm_object(&self) -> Value {
        let mut v = json!({
            "status": self.status,
            "vm_mac": self.mac,
            "segmentation_id": self.segmentation_id,
            "host": self.host,
            "port_uuid": self.port_uuid,
            "net_uuid": self.net_uuid,
            "oui": {
                "oui_id": "cisco",
                "vm_name": self.vm_name,
                "vm_uuid": self.vm_uuid,
                "ip_addr": self.ip.clone().unwrap_or_else(|| "0.0.0.0".into()),
                "gw_mac": self.gw_mac,
                "fwd_mod": self.fwd_mod,
            },
        });
        if self.status == "down" {
            if let Some(l) = known_vlan(self.local_vlan) {
                v["local_vlan"] = json!(l);
            }
            if let Some(d) = known_vlan(self.vdp_vlan) {
                v["vdp_vlan"] = json!(d);
            }
        }
        v
    }

    /// Still bound to its host: up, or down without a successful delete yet.
    pub fn in_bulk(&self) -> bool {
        !(self.status == "down" && self.result.as_deref() == Some("SUCCESS"))
    }
}

/// One queued event. `raw` (injected) replaces the whole wire object.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub kind: Value,
    pub payload: Value,
    pub raw: Option<Value>,
}

impl Event {
    pub fn wire(&self) -> Value {
        match &self.raw {
            Some(r) => r.clone(),
            None => json!({"seq": self.seq, "type": self.kind, "payload": self.payload}),
        }
    }
}

#[derive(Debug, Default)]
pub struct AgentQueue {
    pub acked: u64,
    pub events: VecDeque<Event>,
}

/// One recorded RPC call.
#[derive(Debug, Clone, Serialize)]
pub struct CallRec {
    pub id: u64,
    pub time: String,
    pub method: String,
    pub context: Value,
    pub args: Value,
    /// HTTP status answered.
    pub status: u16,
}

/// Fault injection settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Answer the next N RPC calls with HTTP 500.
    #[serde(default)]
    pub fail_next: u64,
    /// Delay every RPC and events answer by this many ms.
    #[serde(default)]
    pub delay_ms: u64,
    /// Answer every RPC and events request with HTTP 503.
    #[serde(default)]
    pub down: bool,
    /// When non-empty, `delay_ms` applies only to these RPC methods (e.g.
    /// `["update_vm_result"]`: a slow controller that still sends events).
    #[serde(default)]
    pub delay_methods: Vec<String>,
    /// Send bulk `vm_info` "down" entries without `local_vlan`/`vdp_vlan`,
    /// as the original server does.
    #[serde(default)]
    pub bulk_down_without_vlans: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentRec {
    #[serde(default)]
    pub last_heartbeat: Option<String>,
    #[serde(default)]
    pub last_seen: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    #[serde(default)]
    ports: BTreeMap<String, PortRec>,
    #[serde(default)]
    uplinks: BTreeMap<String, Value>,
    #[serde(default)]
    topology: BTreeMap<String, Value>,
    #[serde(default)]
    agents: BTreeMap<String, AgentRec>,
    /// Next event sequence number per agent (so numbers never go back).
    #[serde(default)]
    next_seq: BTreeMap<String, u64>,
    /// Each port's last live migration.
    #[serde(default)]
    migrations: BTreeMap<String, Migration>,
}

/// Everything the controller knows.
#[derive(Debug, Default)]
pub struct Store {
    path: Option<PathBuf>,
    p: Persisted,
    pub queues: BTreeMap<String, AgentQueue>,
    pub calls: VecDeque<CallRec>,
    next_call: u64,
    pub fault: Fault,
    /// Changes noted by `save` (not persisted).
    changes: u64,
    /// Per port: its last up event's timing (not persisted).
    up_timing: HashMap<String, UpTiming>,
}

/// A port's last `vm_info` up event, as the controller sees it: when it
/// was first handed to its agent in an events answer, and how long after
/// that the agent's SUCCESS for the port arrived (the request parsed,
/// before the controller's own state write).
#[derive(Debug, Clone)]
struct UpTiming {
    host: String,
    seq: u64,
    served: Option<Instant>,
    to_result: Option<Duration>,
}

impl Store {
    /// Open (or start) the state file; `None` = memory only.
    pub fn open(path: Option<&Path>) -> Result<Store, String> {
        let mut s = Store {
            path: path.map(Path::to_path_buf),
            next_call: 1,
            ..Default::default()
        };
        if let Some(p) = path {
            match std::fs::read(p) {
                Ok(data) => {
                    s.p = serde_json::from_slice(&data)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", p.display())),
            }
        }
        Ok(s)
    }

    /// Note a change of the persisted state. The file is written by
    /// `Shared::persist` (group commit: one write covers every change made
    /// before it began, outside the store's lock) before the request that
    /// made the change is answered.
    pub fn save(&mut self) {
        self.changes += 1;
    }

    /// How many changes `save` noted so far.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The state file's path and contents now (None without a file).
    pub fn encode(&self) -> Option<(PathBuf, Result<Vec<u8>, String>)> {
        let path = self.path.clone()?;
        Some((path, serde_json::to_vec(&self.p).map_err(|e| e.to_string())))
    }

    // ---- calls ----

    pub fn record_call(&mut self, method: &str, context: Value, args: Value, status: u16) -> u64 {
        let id = self.next_call;
        self.next_call += 1;
        self.calls.push_back(CallRec {
            id,
            time: ctime_now(),
            method: method.to_string(),
            context,
            args,
            status,
        });
        while self.calls.len() > MAX_CALLS {
            self.calls.pop_front();
        }
        id
    }

    // ---- events ----

    /// Queue an event for `host`; returns its seq.
    pub fn queue(&mut self, host: &str, kind: Value, payload: Value, raw: Option<Value>) -> u64 {
        let next = self.p.next_seq.entry(host.to_string()).or_insert(1);
        let seq = *next;
        *next += 1;
        let q = self.queues.entry(host.to_string()).or_default();
        q.events.push_back(Event {
            seq,
            kind,
            payload,
            raw,
        });
        while q.events.len() > MAX_RETAINED {
            if let Some(e) = q.events.pop_front() {
                log::warn!("event queue of {host} full: dropped event {}", e.seq);
            }
        }
        self.save();
        seq
    }

    /// Acknowledge every event of `host` up to `after`.
    pub fn ack(&mut self, host: &str, after: u64) {
        let next = *self.p.next_seq.get(host).unwrap_or(&1);
        if after >= next {
            // The agent knows numbers we never issued (state lost): jump ahead
            // so it sees what comes next.
            log::warn!("{host} acknowledges seq {after} beyond our last {next}; moving on");
            self.p.next_seq.insert(host.to_string(), after + 1);
            self.save();
        }
        let q = self.queues.entry(host.to_string()).or_default();
        q.acked = q.acked.max(after);
        while q.events.front().is_some_and(|e| e.seq <= after) {
            q.events.pop_front();
        }
    }

    /// Retained events of `host` with `seq > after`, oldest first.
    pub fn events_after(&self, host: &str, after: u64) -> Vec<Value> {
        self.queues
            .get(host)
            .map(|q| {
                q.events
                    .iter()
                    .filter(|e| e.seq > after)
                    .map(Event::wire)
                    .collect()
            })
            .unwrap_or_default()
    }

    // ---- ports ----

    pub fn ports(&self) -> &BTreeMap<String, PortRec> {
        &self.p.ports
    }

    pub fn port(&self, uuid: &str) -> Option<&PortRec> {
        self.p.ports.get(uuid)
    }

    /// Store a port as up and queue its `vm_info` for its host. When the
    /// port moved from another host it is first announced down there.
    pub fn add_port(&mut self, mut rec: PortRec) -> u64 {
        rec.status = "up".into();
        rec.result = None;
        rec.fail_reason = None;
        rec.when = None;
        rec.reported_by = None;
        if let Some(old) = self.p.ports.get(&rec.port_uuid).cloned() {
            if old.host != rec.host && old.status == "up" {
                let mut down = old.clone();
                down.status = "down".into();
                let host = down.host.clone();
                self.queue(&host, json!("vm_info"), down.vm_object(), None);
            }
            rec.local_vlan = if old.host == rec.host {
                old.local_vlan
            } else {
                None
            };
            rec.vdp_vlan = if old.host == rec.host {
                old.vdp_vlan
            } else {
                None
            };
        } else {
            rec.local_vlan = None;
            rec.vdp_vlan = None;
        }
        let host = rec.host.clone();
        let obj = rec.vm_object();
        let uuid = rec.port_uuid.clone();
        self.p.ports.insert(uuid.clone(), rec);
        let seq = self.queue(&host, json!("vm_info"), obj, None);
        self.up_timing.insert(
            uuid,
            UpTiming {
                host,
                seq,
                served: None,
                to_result: None,
            },
        );
        seq
    }

    /// An events answer to `host` holds its events after `after`: note when
    /// each port's up event was first handed out.
    pub fn note_served(&mut self, host: &str, after: u64) {
        let Some(q) = self.queues.get(host) else {
            return;
        };
        let now = Instant::now();
        for e in q.events.iter().filter(|e| e.seq > after) {
            let Some(uuid) = e.payload.get("port_uuid").and_then(Value::as_str) else {
                continue;
            };
            if let Some(t) = self.up_timing.get_mut(uuid) {
                if t.seq == e.seq && t.host == host && t.served.is_none() {
                    t.served = Some(now);
                }
            }
        }
    }

    /// From the port's last up event handed to its agent to the agent's
    /// SUCCESS for it (None until both happened).
    pub fn event_to_result(&self, uuid: &str) -> Option<Duration> {
        self.up_timing.get(uuid).and_then(|t| t.to_result)
    }

    /// Mark a port down and queue its `vm_info` (with the VLANs when known).
    /// Mark a port down; `notify` queues the `vm_info` down event (else
    /// only the next bulk resync carries it, as for a VM deleted while the
    /// agent was stopped). Returns the event's seq (0 when not queued).
    pub fn delete_port(&mut self, uuid: &str, notify: bool) -> Option<u64> {
        let rec = self.p.ports.get_mut(uuid)?;
        rec.status = "down".into();
        rec.result = None;
        rec.fail_reason = None;
        rec.when = None;
        let host = rec.host.clone();
        let obj = rec.vm_object();
        if !notify {
            self.save();
            return Some(0);
        }
        Some(self.queue(&host, json!("vm_info"), obj, None))
    }

    /// Forget a port without telling any agent.
    pub fn purge_port(&mut self, uuid: &str) -> bool {
        let found = self.p.ports.remove(uuid).is_some();
        self.p.migrations.remove(uuid);
        self.up_timing.remove(uuid);
        if found {
            self.save();
        }
        found
    }

    /// `update_vm_result` from `agent`. Returns whether the port is known.
    pub fn vm_result(&mut self, agent: Option<&str>, args: &Value) -> bool {
        let Some(uuid) = args.get("port_uuid").and_then(Value::as_str) else {
            return false;
        };
        if !self.p.ports.contains_key(uuid) {
            return false;
        }
        if self.migration_report(agent, uuid, args) {
            return true;
        }
        let Some(rec) = self.p.ports.get_mut(uuid) else {
            return false;
        };
        rec.result = args.get("result").and_then(Value::as_str).map(String::from);
        rec.fail_reason = args
            .get("fail_reason")
            .and_then(Value::as_str)
            .map(String::from);
        if let Some(l) = args.get("local_vlan").and_then(Value::as_i64) {
            rec.local_vlan = Some(l);
        }
        if let Some(d) = args.get("vdp_vlan").and_then(Value::as_i64) {
            rec.vdp_vlan = Some(d);
        }
        rec.when = Some(ctime_now());
        rec.reported_by = agent.map(String::from);
        if rec.result.as_deref() == Some("SUCCESS") && rec.status == "up" {
            if let Some(t) = self.up_timing.get_mut(uuid) {
                if let (Some(served), None) = (t.served, t.to_result) {
                    t.to_result = Some(served.elapsed());
                }
            }
        }
        self.save();
        true
    }

    /// Every VM object still bound to `host` (the bulk `vm_info`).
    pub fn bulk_for(&self, host: &str) -> Vec<Value> {
        self.p
            .ports
            .values()
            .filter(|r| r.host == host && r.in_bulk())
            .map(PortRec::vm_object)
            .collect()
    }

    // ---- uplinks, topology, agents ----

    pub fn uplinks(&self) -> &BTreeMap<String, Value> {
        &self.p.uplinks
    }

    pub fn set_uplink(&mut self, host: &str, obj: Value) {
        self.p.uplinks.insert(host.to_string(), obj);
        self.save();
    }

    pub fn topology(&self) -> &BTreeMap<String, Value> {
        &self.p.topology
    }

    pub fn set_topology(&mut self, host: &str, intf: &str, args: Value) {
        self.p.topology.insert(format!("{host}/{intf}"), args);
        self.save();
    }

    pub fn agents(&self) -> &BTreeMap<String, AgentRec> {
        &self.p.agents
    }

    pub fn heartbeat(&mut self, host: &str, when: Option<String>) {
        let a = self.p.agents.entry(host.to_string()).or_default();
        a.last_heartbeat = when;
        a.last_seen = Some(ctime_now());
        self.save();
    }

    pub fn next_seq(&self, host: &str) -> u64 {
        *self.p.next_seq.get(host).unwrap_or(&1)
    }
}
