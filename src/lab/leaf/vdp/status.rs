//! The VSI table as status JSON (`leaf-ctl status`: `vsis` and `pool`).
//!
//! Owns the JSON shape of a VSI. Pure. Calls `lldp::mac_text`.

use super::table::{Moving, Vsi};
use super::*;
use crate::lab::leaf::lldp::mac_text;

fn port_name(ports: &[String], i: usize) -> Value {
    ports
        .get(i)
        .map_or(Value::Null, |n| Value::from(n.as_str()))
}

fn vsi_json(v: &Vsi, now: Instant, ports: &[String]) -> Value {
    let first = v.tlv.entries.first();
    let entries: Vec<Value> = v
        .tlv
        .entries
        .iter()
        .map(|e| {
            json!({
                "mac": e.mac.map(|m| mac_text(&m)),
                "group_id": e.gid,
                "vlan": e.vlan(),
            })
        })
        .collect();
    json!({
        "uuid": id_text(v.tlv.id_fmt, &v.tlv.id),
        "mac": first.and_then(|e| e.mac).map(|m| mac_text(&m)),
        "group_id": first.and_then(|e| e.gid),
        "vlan": first.map(|e| e.vlan()),
        "mode": v.tlv.mode.name(),
        "filter_format": v.tlv.filter_fmt,
        "type_id": v.tlv.type_id,
        "entries": entries,
        "keepalives": v.keepalives,
        "last_keepalive_age_s":
            (now.saturating_duration_since(v.last_ka).as_secs_f64() * 1000.0).round() / 1000.0,
        "port": port_name(ports, v.port),
        "hints": hints_text(v.tlv.status),
        "forwarding": v.forwarding(),
    })
}

fn moving_json(m: &Moving, now: Instant, ports: &[String]) -> Value {
    let mut v = vsi_json(&m.vsi, now, ports);
    v["held_mode"] = json!(m.vsi.tlv.mode.name());
    v["mode"] = json!("moving");
    v["moving_to"] = port_name(ports, m.to);
    v["move_deadline_s"] = json!(m
        .deadline
        .map(|d| { (d.saturating_duration_since(now).as_secs_f64() * 1000.0).round() / 1000.0 }));
    v
}

impl VdpTable {
    /// Status JSON: VSIs (oldest first, same age in port order; a moved
    /// VSI shows one entry per port holding a copy) and pool. `ports` names the ports by index.
    pub fn status(&self, now: Instant, ports: &[String]) -> (Value, Value) {
        let mut vsis: Vec<(Instant, usize, Value)> = self
            .vsis
            .values()
            .map(|v| (v.since, v.port, vsi_json(v, now, ports)))
            .chain(
                self.moving
                    .iter()
                    .map(|m| (m.vsi.since, m.vsi.port, moving_json(m, now, ports))),
            )
            .collect();
        vsis.sort_by_key(|(t, k, _)| (*t, *k));
        let groups: BTreeMap<String, u16> = self
            .pool
            .by_group
            .iter()
            .map(|(g, v)| (g.text(), *v))
            .collect();
        let pool = json!({
            "lo": self.pool.lo,
            "hi": self.pool.hi,
            "offset": self.pool.offset,
            "free": self.pool.free(),
            "groups": groups,
        });
        (
            Value::Array(vsis.into_iter().map(|(_, _, v)| v).collect()),
            pool,
        )
    }
}
