//! OVSDB JSON-RPC (RFC 7047), the pure part: the stream framer (JSON
//! values back to back, no delimiter), the `monitor` request the agent
//! sends, and the view it keeps from the `monitor` answer and the `update`
//! notifications: Interface (`name`, `external_ids:iface-id`) and Port
//! (`tag`, `interfaces`) rows, so a VM port's local VLAN is known without
//! a process.
//!
//! Owns `Framer`, `View` and the message texts. Calls nothing (serde_json
//! only); the socket is `client::Monitor`'s. Never panics on any input;
//! sizes are bounded (`MAX_MESSAGE`, `MAX_ROWS`).

use serde_json::{json, Value};
use std::collections::HashMap;

pub mod client;
pub use client::Monitor;

/// Largest message accepted (the initial answer holds every Interface and
/// Port row: ~150 bytes each, so this is room for >100 000 ports).
pub const MAX_MESSAGE: usize = 32 << 20;
/// Most rows kept per table.
pub const MAX_ROWS: usize = 200_000;

/// The id of our one `monitor` request.
pub const MONITOR_ID: &str = "vdp-agent-monitor";

/// `monitor` of the Interface and Port columns the agent needs (initial
/// rows and every insert, modify, delete).
pub fn monitor_request() -> String {
    json!({
        "id": MONITOR_ID,
        "method": "monitor",
        "params": ["Open_vSwitch", MONITOR_ID, {
            "Interface": {"columns": ["name", "external_ids"]},
            "Port": {"columns": ["tag", "interfaces"]}
        }]
    })
    .to_string()
}

/// Splits a byte stream into JSON values.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

/// The stream cannot be read any further (drop the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl Framer {
    /// Add received bytes; returns the complete values now available.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Value>, FrameError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut used = 0;
        {
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
            loop {
                match it.next() {
                    Some(Ok(v)) => {
                        used = it.byte_offset();
                        out.push(v);
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => return Err(FrameError(e.to_string())),
                    None => {
                        used = self.buf.len();
                        break;
                    }
                }
            }
        }
        self.buf.drain(..used);
        if self.buf.len() > MAX_MESSAGE {
            return Err(FrameError(format!("message over {MAX_MESSAGE} bytes")));
        }
        Ok(out)
    }
}

/// What a received message asks of the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The answer to our monitor (initial rows) or an `update`
    /// notification: table updates to apply.
    Updates(Value),
    /// The monitor was refused.
    MonitorError(String),
    /// An `echo` request: answer it with this text.
    Echo(String),
    /// Anything else (ignored).
    Other,
}

/// Classify one message.
pub fn classify(v: &Value) -> Incoming {
    let method = v.get("method").and_then(Value::as_str);
    match method {
        Some("echo") => {
            let reply = json!({
                "id": v.get("id").cloned().unwrap_or(Value::Null),
                "result": v.get("params").cloned().unwrap_or_else(|| json!([])),
                "error": null,
            });
            return Incoming::Echo(reply.to_string());
        }
        Some("update") => {
            return match v.get("params").and_then(|p| p.get(1)) {
                Some(u) => Incoming::Updates(u.clone()),
                None => Incoming::Other,
            }
        }
        Some(_) => return Incoming::Other,
        None => {}
    }
    if v.get("id").and_then(Value::as_str) != Some(MONITOR_ID) {
        return Incoming::Other;
    }
    match v.get("error") {
        Some(e) if !e.is_null() => Incoming::MonitorError(e.to_string()),
        _ => match v.get("result") {
            Some(r) => Incoming::Updates(r.clone()),
            None => Incoming::Other,
        },
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Iface {
    name: String,
    iface_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PortRow {
    tag: Option<i64>,
    interfaces: Vec<String>,
}

/// The monitored rows.
#[derive(Debug, Clone, Default)]
pub struct View {
    ifaces: HashMap<String, Iface>,
    ports: HashMap<String, PortRow>,
    /// iface-id -> Interface row uuid.
    by_iface_id: HashMap<String, String>,
    /// Interface row uuid -> Port row uuid.
    port_of: HashMap<String, String>,
}

/// `["set", [..]]`, `["uuid", u]` or a scalar as a list of its atoms.
fn atoms(v: &Value) -> Vec<&Value> {
    match v.as_array() {
        Some(a) if a.len() == 2 && a[0] == "set" => a[1]
            .as_array()
            .map(|s| s.iter().collect())
            .unwrap_or_default(),
        _ => vec![v],
    }
}

fn uuid_atom(v: &Value) -> Option<&str> {
    let a = v.as_array()?;
    (a.len() == 2 && a[0] == "uuid")
        .then(|| a[1].as_str())
        .flatten()
}

fn map_get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let a = v.as_array()?;
    if a.len() != 2 || a[0] != "map" {
        return None;
    }
    a[1].as_array()?.iter().find_map(|kv| {
        let kv = kv.as_array()?;
        (kv.len() == 2 && kv[0] == key).then(|| &kv[1])
    })
}

impl View {
    pub fn new() -> View {
        View::default()
    }

    /// Forget everything (a new connection starts from its initial rows).
    pub fn clear(&mut self) {
        *self = View::default();
    }

    /// Apply a `<table-updates>` object; unknown tables and malformed rows
    /// are skipped.
    pub fn apply(&mut self, updates: &Value) {
        let Some(tables) = updates.as_object() else {
            return;
        };
        if let Some(rows) = tables.get("Interface").and_then(Value::as_object) {
            for (uuid, u) in rows {
                match u.get("new").filter(|n| n.is_object()) {
                    Some(new) => self.put_iface(uuid, new),
                    None => self.drop_iface(uuid),
                }
            }
        }
        if let Some(rows) = tables.get("Port").and_then(Value::as_object) {
            for (uuid, u) in rows {
                match u.get("new").filter(|n| n.is_object()) {
                    Some(new) => self.put_port(uuid, new),
                    None => self.drop_port(uuid),
                }
            }
        }
    }

    fn put_iface(&mut self, uuid: &str, new: &Value) {
        let old = self.ifaces.get(uuid).cloned();
        if old.is_none() && self.ifaces.len() >= MAX_ROWS {
            return;
        }
        let mut row = old.clone().unwrap_or_default();
        if let Some(n) = new.get("name").and_then(Value::as_str) {
            row.name = n.to_string();
        }
        if let Some(ids) = new.get("external_ids") {
            row.iface_id = map_get(ids, "iface-id")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(old_id) = old.and_then(|o| o.iface_id) {
            if self.by_iface_id.get(&old_id).map(String::as_str) == Some(uuid) {
                self.by_iface_id.remove(&old_id);
            }
        }
        if let Some(id) = &row.iface_id {
            self.by_iface_id.insert(id.clone(), uuid.to_string());
        }
        self.ifaces.insert(uuid.to_string(), row);
    }

    fn drop_iface(&mut self, uuid: &str) {
        if let Some(old) = self.ifaces.remove(uuid) {
            if let Some(id) = old.iface_id {
                if self.by_iface_id.get(&id).map(String::as_str) == Some(uuid) {
                    self.by_iface_id.remove(&id);
                }
            }
        }
    }

    fn put_port(&mut self, uuid: &str, new: &Value) {
        let old = self.ports.get(uuid).cloned();
        if old.is_none() && self.ports.len() >= MAX_ROWS {
            return;
        }
        let mut row = old.clone().unwrap_or_default();
        if let Some(t) = new.get("tag") {
            row.tag = atoms(t).first().and_then(|a| a.as_i64());
        }
        if let Some(i) = new.get("interfaces") {
            row.interfaces = atoms(i)
                .into_iter()
                .filter_map(uuid_atom)
                .map(str::to_string)
                .collect();
        }
        for i in old.map(|o| o.interfaces).unwrap_or_default() {
            if self.port_of.get(&i).map(String::as_str) == Some(uuid) {
                self.port_of.remove(&i);
            }
        }
        for i in &row.interfaces {
            self.port_of.insert(i.clone(), uuid.to_string());
        }
        self.ports.insert(uuid.to_string(), row);
    }

    fn drop_port(&mut self, uuid: &str) {
        if let Some(old) = self.ports.remove(uuid) {
            for i in old.interfaces {
                if self.port_of.get(&i).map(String::as_str) == Some(uuid) {
                    self.port_of.remove(&i);
                }
            }
        }
    }

    /// The interface with `external_ids:iface-id` = `iface_id`: its name and
    /// its Port's usable tag (1..=4094; None when untagged, 4095, or not in
    /// a Port yet). None when no interface has the id.
    pub fn lookup(&self, iface_id: &str) -> Option<(String, Option<u16>)> {
        let iface_uuid = self.by_iface_id.get(iface_id)?;
        let iface = self.ifaces.get(iface_uuid)?;
        let tag = self
            .port_of
            .get(iface_uuid)
            .and_then(|p| self.ports.get(p))
            .and_then(|p| p.tag)
            .and_then(|t| u16::try_from(t).ok())
            .filter(|t| (1..=4094).contains(t));
        Some((iface.name.clone(), tag))
    }

    /// (Interface rows, Port rows) held.
    pub fn len(&self) -> (usize, usize) {
        (self.ifaces.len(), self.ports.len())
    }

    pub fn is_empty(&self) -> bool {
        self.ifaces.is_empty() && self.ports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_splits_anywhere() {
        let text = br#"{"id":1,"result":{}}{"method":"echo","params":[],"id":"x"} {"a":[1,2]}"#;
        for cut in 0..text.len() {
            let mut f = Framer::default();
            let mut got = f.push(&text[..cut]).unwrap();
            got.extend(f.push(&text[cut..]).unwrap());
            assert_eq!(got.len(), 3, "cut {cut}");
        }
        assert!(Framer::default().push(b"{]").is_err());
    }

    #[test]
    fn view_follows_updates() {
        let mut v = View::new();
        v.apply(&json!({
            "Interface": {"i1": {"new": {"name": "tap1",
                "external_ids": ["map", [["iface-id", "P1"], ["x", "y"]]]}}},
            "Port": {"p1": {"new": {"tag": ["set", []], "interfaces": ["uuid", "i1"]}}}
        }));
        assert_eq!(v.lookup("P1"), Some(("tap1".into(), None)));
        // Neutron sets the tag (a modify carries only changed columns).
        v.apply(&json!({"Port": {"p1": {"new": {"tag": 7}, "old": {"tag": ["set", []]}}}}));
        assert_eq!(v.lookup("P1"), Some(("tap1".into(), Some(7))));
        v.apply(&json!({"Port": {"p1": {"new": {"tag": 4095}}}}));
        assert_eq!(v.lookup("P1"), Some(("tap1".into(), None)));
        // a port with two interfaces, then deletes
        v.apply(&json!({"Port": {"p1": {"new": {"tag": 9,
            "interfaces": ["set", [["uuid", "i1"], ["uuid", "i2"]]]}}}}));
        assert_eq!(v.lookup("P1"), Some(("tap1".into(), Some(9))));
        v.apply(&json!({"Port": {"p1": {"old": {}}}}));
        assert_eq!(v.lookup("P1"), Some(("tap1".into(), None)));
        v.apply(&json!({"Interface": {"i1": {"old": {}}}}));
        assert_eq!(v.lookup("P1"), None);
        assert_eq!(v.len(), (0, 0));
    }

    #[test]
    fn messages_are_classified() {
        let m = classify(&json!({"id": MONITOR_ID, "result": {"Port": {}}, "error": null}));
        assert_eq!(m, Incoming::Updates(json!({"Port": {}})));
        let m = classify(&json!({"id": MONITOR_ID, "result": null, "error": "bad"}));
        assert!(matches!(m, Incoming::MonitorError(_)));
        let m = classify(
            &json!({"method": "update", "params": [MONITOR_ID, {"Port": {}}], "id": null}),
        );
        assert_eq!(m, Incoming::Updates(json!({"Port": {}})));
        match classify(&json!({"method": "echo", "params": [], "id": "echo"})) {
            Incoming::Echo(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["id"], "echo");
            }
            o => panic!("{o:?}"),
        }
        assert!(monitor_request().contains("\"monitor\""));
    }
}
