//! Live migration of a port between hosts in the reference controller: the
//! `vm_migration` events of docs/protocol.md queued in Nova's order, and the
//! agents' reports during a migration kept apart from the port's own.
//!
//! Order: `arriving` to the destination; at the switchover point `arrived`
//! to the destination, then `left` to the source (the port's host becomes
//! the destination when `arrived` is queued); for an aborted migration
//! `aborted` to the destination instead (the source hears nothing). The
//! switchover point is an explicit `switchover`/`abort` step, or (not
//! `manual`) the destination agent's first report for the port after
//! `arriving` (a result other than SUCCESS aborts), at the latest `wait_s`
//! seconds after it (the server's timer).
//!
//! Owns `Migration` records (persisted with the ports). Calls the store's
//! queue and `model::ctime_now`.

use super::*;

/// Longest automatic switchover wait.
pub const MAX_MIGRATION_WAIT_S: u64 = 600;
/// Default automatic switchover wait.
pub const DEFAULT_MIGRATION_WAIT_S: u64 = 10;

/// One event a migration queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationEvent {
    pub host: String,
    pub phase: String,
    pub seq: u64,
}

/// A port's last migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// Distinguishes migrations of one port (a timer acts on its own only).
    pub id: u64,
    pub port_uuid: String,
    pub from: String,
    pub to: String,
    /// `arriving` (in progress), `arrived` (completed) or `aborted`.
    pub phase: String,
    /// At the switchover point, abort instead of completing.
    pub abort: bool,
    /// Switchover only on an explicit step.
    pub manual: bool,
    /// Automatic switchover at the latest this long after `arriving`.
    pub wait_s: u64,
    pub started: String,
    #[serde(default)]
    pub finished: Option<String>,
    pub events: Vec<MigrationEvent>,
    /// The destination agent's last `update_vm_result` args while it was
    /// not yet the port's host (during `arriving`, after `aborted`).
    #[serde(default)]
    pub dest_report: Option<Value>,
    /// The source agent's last report after `left`.
    #[serde(default)]
    pub source_report: Option<Value>,
}

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateRequest {
    pub to: String,
    pub abort: bool,
    pub manual: bool,
    pub wait_s: u64,
}

/// A refused migration step: HTTP status and reason.
pub type MigrateError = (u16, String);

fn refuse(code: u16, msg: impl Into<String>) -> MigrateError {
    (code, msg.into())
}

fn with_phase(mut obj: Value, phase: &str) -> Value {
    obj["phase"] = json!(phase);
    obj
}

fn vlan_of(report: &Option<Value>, k: &str) -> Option<i64> {
    report
        .as_ref()
        .and_then(|r| r.get(k))
        .and_then(Value::as_i64)
}

impl Store {
    pub fn migrations(&self) -> &BTreeMap<String, Migration> {
        &self.p.migrations
    }

    pub fn migration(&self, uuid: &str) -> Option<&Migration> {
        self.p.migrations.get(uuid)
    }

    fn queue_phase(&mut self, uuid: &str, host: &str, phase: &str, obj: Value) {
        let seq = self.queue(host, json!("vm_migration"), with_phase(obj, phase), None);
        if let Some(m) = self.p.migrations.get_mut(uuid) {
            m.events.push(MigrationEvent {
                host: host.to_string(),
                phase: phase.to_string(),
                seq,
            });
        }
    }

    /// Start migrating port `uuid` to `req.to`: queues `arriving` there.
    pub fn start_migration(
        &mut self,
        uuid: &str,
        req: &MigrateRequest,
    ) -> Result<Migration, MigrateError> {
        let rec = self
            .p
            .ports
            .get(uuid)
            .cloned()
            .ok_or_else(|| refuse(404, "no such port"))?;
        if rec.status != "up" {
            return Err(refuse(409, "the port is down"));
        }
        if rec.host == req.to {
            return Err(refuse(409, format!("the port is already on {}", req.to)));
        }
        if req.to.is_empty() {
            return Err(refuse(400, "'to' must name a host"));
        }
        if let Some(m) = self.p.migrations.get(uuid) {
            if m.phase == "arriving" {
                return Err(refuse(
                    409,
                    format!(
                        "a migration to {} is in progress (switchover or abort it)",
                        m.to
                    ),
                ));
            }
        }
        let id = self.p.migrations.values().map(|m| m.id).max().unwrap_or(0) + 1;
        self.p.migrations.insert(
            uuid.to_string(),
            Migration {
                id,
                port_uuid: uuid.to_string(),
                from: rec.host.clone(),
                to: req.to.clone(),
                phase: "arriving".into(),
                abort: req.abort,
                manual: req.manual,
                wait_s: req.wait_s.min(MAX_MIGRATION_WAIT_S),
                started: ctime_now(),
                finished: None,
                events: Vec::new(),
                dest_report: None,
                source_report: None,
            },
        );
        let mut dest = rec;
        dest.host = req.to.clone();
        self.queue_phase(uuid, &req.to, "arriving", dest.vm_object());
        Ok(self.p.migrations[uuid].clone())
    }

    /// The switchover point of the migration in progress (`id` when given
    /// must match it): `arrived` + `left`, or `aborted` when `abort` (None:
    /// what the migration was started with).
    pub fn finish_migration(
        &mut self,
        uuid: &str,
        id: Option<u64>,
        abort: Option<bool>,
    ) -> Result<Migration, MigrateError> {
        let m = self
            .p
            .migrations
            .get(uuid)
            .cloned()
            .ok_or_else(|| refuse(404, "no migration of this port"))?;
        if m.phase != "arriving" || id.is_some_and(|i| i != m.id) {
            return Err(refuse(409, format!("the migration is {}", m.phase)));
        }
        let rec = self
            .p
            .ports
            .get(uuid)
            .cloned()
            .ok_or_else(|| refuse(404, "no such port"))?;
        let abort = abort.unwrap_or(m.abort);
        let mut dest = rec.clone();
        dest.host = m.to.clone();
        if abort {
            dest.status = "down".into();
            dest.local_vlan = vlan_of(&m.dest_report, "local_vlan");
            dest.vdp_vlan = vlan_of(&m.dest_report, "vdp_vlan");
            self.set_phase(uuid, "aborted");
            self.queue_phase(uuid, &m.to, "aborted", dest.vm_object());
        } else {
            self.set_phase(uuid, "arrived");
            self.queue_phase(uuid, &m.to, "arrived", dest.vm_object());
            let mut src = rec;
            src.status = "down".into();
            self.queue_phase(uuid, &m.from, "left", src.vm_object());
            if let Some(p) = self.p.ports.get_mut(uuid) {
                p.host = m.to.clone();
                p.status = "up".into();
                p.result = None;
                p.fail_reason = None;
                p.when = None;
                p.reported_by = None;
                p.local_vlan = vlan_of(&m.dest_report, "local_vlan");
                p.vdp_vlan = vlan_of(&m.dest_report, "vdp_vlan");
            }
        }
        self.save();
        Ok(self.p.migrations[uuid].clone())
    }

    fn set_phase(&mut self, uuid: &str, phase: &str) {
        if let Some(m) = self.p.migrations.get_mut(uuid) {
            m.phase = phase.into();
            m.finished = Some(ctime_now());
        }
    }

    /// A report of `agent` about a migrating port that is not (yet, or any
    /// longer) its host's: kept on the migration. Returns false when the
    /// report is the port's own (handled as before). An automatic
    /// migration's switchover happens on the destination's first report.
    pub(super) fn migration_report(
        &mut self,
        agent: Option<&str>,
        uuid: &str,
        args: &Value,
    ) -> bool {
        let Some(agent) = agent else { return false };
        let Some(m) = self.p.migrations.get_mut(uuid) else {
            return false;
        };
        let switch = match m.phase.as_str() {
            "arriving" | "aborted" if agent == m.to => {
                m.dest_report = Some(args.clone());
                m.phase == "arriving" && !m.manual
            }
            "arrived" if agent == m.from && agent != m.to => {
                m.source_report = Some(args.clone());
                false
            }
            _ => return false,
        };
        if switch {
            // A failed preparation on the destination aborts the migration.
            let failed = args.get("result").and_then(Value::as_str) != Some("SUCCESS");
            if let Err((_, e)) = self.finish_migration(uuid, None, failed.then_some(true)) {
                log::warn!("migration of {uuid}: {e}");
            }
        } else {
            self.save();
        }
        true
    }
}
