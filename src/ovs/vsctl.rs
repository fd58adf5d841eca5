//! `ovs-vsctl` argv builders and output parsers: bridge list, the one-call
//! OVSDB snapshot (bridges, their ports, patch interfaces, ofports of named
//! interfaces) in `--format=json --data=json`, interface lookup by
//! `external_ids:iface-id`, and Port tags; plus the two `ovsdb-client`
//! selects of the quick local-VLAN lookup (interface by iface-id, its
//! port's tag).
//!
//! Owns nothing; pure functions. The driver (`super`) runs the commands
//! through `exec::Runner`.

use serde_json::Value;
use std::collections::BTreeMap;

/// The original's `DEFAULT_OVS_VSCTL_TIMEOUT` (seconds).
pub const VSCTL_TIMEOUT_S: u32 = 10;

fn base(timeout_s: u32) -> Vec<String> {
    vec!["ovs-vsctl".to_string(), format!("--timeout={timeout_s}")]
}

/// `ovs-vsctl --timeout=10 list-br`
pub fn list_br_argv() -> Vec<String> {
    let mut v = base(VSCTL_TIMEOUT_S);
    v.push("list-br".into());
    v
}

/// Bridge names, one per line.
pub fn parse_list_br(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// One read-only call giving everything setup and the flow check need:
/// every bridge with its port UUIDs, every port's UUID and name, every
/// patch interface (name, options, ofport), and the ofport of each name in
/// `ifaces` (uplink, LLDPO veth). Parse with [`parse_snapshot`].
pub fn snapshot_argv(ifaces: &[&str]) -> Vec<String> {
    let mut v = base(VSCTL_TIMEOUT_S);
    v.extend(
        [
            "--format=json",
            "--data=json",
            "--",
            "--columns=name,ports",
            "list",
            "Bridge",
            "--",
            "--columns=_uuid,name",
            "list",
            "Port",
            "--",
            "--columns=name,type,options,ofport",
            "find",
            "Interface",
            "type=patch",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    for i in ifaces {
        v.extend(
            ["--", "--columns=name,ofport", "find", "Interface"]
                .iter()
                .map(|s| s.to_string()),
        );
        v.push(format!("name={i}"));
    }
    v
}

/// One table printed by `ovs-vsctl --format=json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub headings: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    fn col(&self, name: &str) -> Option<usize> {
        self.headings.iter().position(|h| h == name)
    }

    /// Value of column `name` in `row`.
    pub fn get<'a>(&self, row: &'a [Value], name: &str) -> Option<&'a Value> {
        self.col(name).and_then(|i| row.get(i))
    }
}

/// Parse the JSON documents `ovs-vsctl --format=json` prints, one per
/// table-printing command, in order.
pub fn parse_tables(out: &str) -> Result<Vec<Table>, String> {
    let mut tables = Vec::new();
    for doc in serde_json::Deserializer::from_str(out).into_iter::<Value>() {
        let doc = doc.map_err(|e| format!("bad ovs-vsctl JSON: {e}"))?;
        let headings = doc
            .get("headings")
            .and_then(Value::as_array)
            .ok_or("ovs-vsctl JSON without headings")?
            .iter()
            .map(|h| h.as_str().unwrap_or("").to_string())
            .collect();
        let rows = doc
            .get("data")
            .and_then(Value::as_array)
            .ok_or("ovs-vsctl JSON without data")?
            .iter()
            .map(|r| r.as_array().cloned().unwrap_or_default())
            .collect();
        tables.push(Table { headings, rows });
    }
    Ok(tables)
}

/// Elements of an OVSDB set (`["set",[..]]`), or the single atom itself.
pub fn set_items(v: &Value) -> Vec<&Value> {
    match v.as_array() {
        Some(a) if a.len() == 2 && a[0] == "set" => a[1]
            .as_array()
            .map(|x| x.iter().collect())
            .unwrap_or_default(),
        _ => vec![v],
    }
}

/// A UUID atom `["uuid","..."]`.
pub fn uuid_of(v: &Value) -> Option<&str> {
    match v.as_array() {
        Some(a) if a.len() == 2 && a[0] == "uuid" => a[1].as_str(),
        _ => None,
    }
}

/// `key` of an OVSDB map `["map",[[k,v],..]]`.
pub fn map_get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let a = v.as_array()?;
    if a.len() != 2 || a[0] != "map" {
        return None;
    }
    a[1].as_array()?.iter().find_map(|kv| {
        let kv = kv.as_array()?;
        if kv.len() == 2 && kv[0] == key {
            Some(&kv[1])
        } else {
            None
        }
    })
}

/// `ovsdb-client transact` selecting the Interface whose
/// `external_ids:iface-id` is `port_uuid` (`_uuid`, `name`). With
/// [`port_tag_query_argv`] this is the quick local-VLAN lookup: two short
/// processes whose answers do not grow with the port count, unlike
/// `ovs-vsctl`, which first copies the whole bridge/port/interface tables
/// (20-30 ms per call at 1000 ports). `port_uuid` is embedded by serde (no
/// quoting issue); callers validate it first anyway.
pub fn iface_query_argv(port_uuid: &str) -> Vec<String> {
    let txn = serde_json::json!([
        "Open_vSwitch",
        {
            "op": "select",
            "table": "Interface",
            "where": [["external_ids", "includes", ["map", [["iface-id", port_uuid]]]]],
            "columns": ["_uuid", "name"]
        }
    ]);
    vec!["ovsdb-client".into(), "transact".into(), txn.to_string()]
}

/// `ovsdb-client transact` selecting the `tag` of the Port that holds the
/// interface row `iface_uuid`.
pub fn port_tag_query_argv(iface_uuid: &str) -> Vec<String> {
    let txn = serde_json::json!([
        "Open_vSwitch",
        {
            "op": "select",
            "table": "Port",
            "where": [["interfaces", "includes", ["uuid", iface_uuid]]],
            "columns": ["tag"]
        }
    ]);
    vec!["ovsdb-client".into(), "transact".into(), txn.to_string()]
}

/// Rows of the single select in an `ovsdb-client transact` answer.
fn transact_rows(out: &str) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_str(out.trim()).map_err(|e| format!("bad JSON: {e}"))?;
    let first = v
        .as_array()
        .and_then(|a| a.first())
        .ok_or("not a JSON array with one result")?;
    if let Some(e) = first.get("error") {
        return Err(format!(
            "ovsdb error: {e} {}",
            first.get("details").unwrap_or(&Value::Null)
        ));
    }
    first
        .get("rows")
        .and_then(Value::as_array)
        .cloned()
        .ok_or_else(|| "no rows in the answer".to_string())
}

/// The answer to [`iface_query_argv`]: `(name, row uuid)` of the
/// interface, `None` when no interface has the iface-id.
pub fn parse_iface_query(out: &str) -> Result<Option<(String, String)>, String> {
    let rows = transact_rows(out)?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let name = row
        .get("name")
        .and_then(Value::as_str)
        .ok_or("interface without name")?;
    let id = row
        .get("_uuid")
        .and_then(uuid_of)
        .ok_or("interface without _uuid")?;
    Ok(Some((name.to_string(), id.to_string())))
}

/// The answer to [`port_tag_query_argv`]: the usable tag (1..=4094), `None`
/// when the port is untagged, tagged 4095, or not found.
pub fn parse_port_tag_query(out: &str) -> Result<Option<u16>, String> {
    let rows = transact_rows(out)?;
    Ok(rows
        .first()
        .and_then(|r| r.get("tag"))
        .and_then(opt_int)
        .and_then(|t| u16::try_from(t).ok())
        .filter(|t| (1..=4094).contains(t)))
}

/// An optional integer (`5` or `["set",[]]`).
pub fn opt_int(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    set_items(v).first().and_then(|x| x.as_i64())
}

/// A usable OpenFlow port number (the original's `INVALID_OFPORT` is -1;
/// OVS also reports `[]` before assignment).
pub fn valid_ofport(p: Option<i64>) -> Option<u32> {
    match p {
        Some(n) if (1..0xff00).contains(&n) => Some(n as u32),
        _ => None,
    }
}

/// A patch interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchIface {
    pub name: String,
    pub peer: Option<String>,
    pub ofport: Option<i64>,
}

/// What [`snapshot_argv`] returns, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Bridge name -> names of its ports (sorted).
    pub bridges: BTreeMap<String, Vec<String>>,
    pub patches: Vec<PatchIface>,
    /// Interface name -> ofport (`None` when OVS has none yet) for each
    /// name asked about that exists.
    pub ifaces: BTreeMap<String, Option<i64>>,
}

impl Snapshot {
    /// The bridge a port is on.
    pub fn bridge_of(&self, port: &str) -> Option<&str> {
        self.bridges
            .iter()
            .find(|(_, ports)| ports.iter().any(|p| p == port))
            .map(|(b, _)| b.as_str())
    }

    pub fn has_bridge(&self, br: &str) -> bool {
        self.bridges.contains_key(br)
    }

    /// The original's `find_interconnect_ports`: the first patch port of
    /// `br_ex` (by name) whose peer is a port of `br_int`. Returns
    /// `(external-side patch, integration-side patch)`. Port and interface
    /// names are taken to be equal, as Neutron makes them (the original
    /// assumes the same).
    pub fn interconnect(&self, br_int: &str, br_ex: &str) -> Option<(PatchIface, PatchIface)> {
        let ex_ports = self.bridges.get(br_ex)?;
        let int_ports = self.bridges.get(br_int)?;
        let mut cands: Vec<&PatchIface> = self
            .patches
            .iter()
            .filter(|p| ex_ports.contains(&p.name))
            .collect();
        cands.sort_by(|a, b| a.name.cmp(&b.name));
        for ex in cands {
            let Some(peer) = ex.peer.as_deref() else {
                continue;
            };
            if !int_ports.iter().any(|p| p == peer) {
                continue;
            }
            let int = self
                .patches
                .iter()
                .find(|p| p.name == peer)
                .cloned()
                .unwrap_or(PatchIface {
                    name: peer.to_string(),
                    peer: None,
                    ofport: None,
                });
            return Some((ex.clone(), int));
        }
        None
    }
}

/// Parse the output of [`snapshot_argv`].
pub fn parse_snapshot(out: &str) -> Result<Snapshot, String> {
    let tables = parse_tables(out)?;
    if tables.len() < 3 {
        return Err(format!(
            "ovs-vsctl snapshot: expected at least 3 tables, got {}",
            tables.len()
        ));
    }
    let (br_t, port_t, patch_t) = (&tables[0], &tables[1], &tables[2]);
    let mut port_names: BTreeMap<String, String> = BTreeMap::new();
    for row in &port_t.rows {
        let uuid = port_t.get(row, "_uuid").and_then(uuid_of);
        let name = port_t.get(row, "name").and_then(Value::as_str);
        if let (Some(u), Some(n)) = (uuid, name) {
            port_names.insert(u.to_string(), n.to_string());
        }
    }
    let mut snap = Snapshot::default();
    for row in &br_t.rows {
        let Some(name) = br_t.get(row, "name").and_then(Value::as_str) else {
            continue;
        };
        let mut ports: Vec<String> = br_t
            .get(row, "ports")
            .map(set_items)
            .unwrap_or_default()
            .into_iter()
            .filter_map(uuid_of)
            .filter_map(|u| port_names.get(u).cloned())
            .collect();
        ports.sort();
        snap.bridges.insert(name.to_string(), ports);
    }
    for row in &patch_t.rows {
        let Some(name) = patch_t.get(row, "name").and_then(Value::as_str) else {
            continue;
        };
        snap.patches.push(PatchIface {
            name: name.to_string(),
            peer: patch_t
                .get(row, "options")
                .and_then(|o| map_get(o, "peer"))
                .and_then(Value::as_str)
                .map(String::from),
            ofport: patch_t.get(row, "ofport").and_then(opt_int),
        });
    }
    for t in &tables[3..] {
        for row in &t.rows {
            if let Some(name) = t.get(row, "name").and_then(Value::as_str) {
                let ofport = t.get(row, "ofport").and_then(opt_int);
                snap.ifaces.insert(name.to_string(), ofport);
            }
        }
    }
    Ok(snap)
}

/// `ovs-vsctl --timeout=10 -- --may-exist add-port BR P1 -- --may-exist add-port BR P2 ...`
/// (one transaction; ports already on `br` are left as they are, so their
/// ofports do not change).
pub fn add_ports_argv(br: &str, ports: &[&str]) -> Vec<String> {
    let mut v = base(VSCTL_TIMEOUT_S);
    for p in ports {
        v.extend(
            ["--", "--may-exist", "add-port", br, p]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    v
}

/// `ovs-vsctl --timeout=10 -- --if-exists del-port BR P1 -- ...` (one transaction).
pub fn del_ports_argv(br: &str, ports: &[&str]) -> Vec<String> {
    let mut v = base(VSCTL_TIMEOUT_S);
    for p in ports {
        v.extend(
            ["--", "--if-exists", "del-port", br, p]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    v
}

/// `ovs-vsctl --timeout=10 -- get Interface A ofport -- get Interface B ofport ...`
/// (fails when one does not exist).
pub fn get_ofports_argv(names: &[&str]) -> Vec<String> {
    let mut v = base(VSCTL_TIMEOUT_S);
    for n in names {
        v.extend(
            ["--", "get", "Interface", n, "ofport"]
                .iter()
                .map(|s| s.to_string()),
        );
    }
    v
}

/// One ofport per line (`-1` and `[]` parse; validity is the caller's
/// business via [`valid_ofport`]).
pub fn parse_ofports(out: &str, n: usize) -> Result<Vec<Option<i64>>, String> {
    let vals: Vec<Option<i64>> = out.lines().map(|l| l.trim().parse().ok()).collect();
    if vals.len() != n {
        return Err(format!("expected {n} lines, got {out:?}"));
    }
    Ok(vals)
}

/// `ovs-vsctl --timeout=10 port-to-br PORT` (fails when the port does not exist).
pub fn port_to_br_argv(port: &str) -> Vec<String> {
    let mut v = base(VSCTL_TIMEOUT_S);
    v.push("port-to-br".into());
    v.push(port.into());
    v
}

/// Names of the interfaces whose `external_ids:iface-id` is `port_uuid`.
pub fn find_iface_argv(port_uuid: &str) -> Vec<String> {
    let mut v = base(VSCTL_TIMEOUT_S);
    v.extend(
        [
            "--format=json",
            "--data=json",
            "--columns=name",
            "find",
            "Interface",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    v.push(format!("external_ids:iface-id={port_uuid}"));
    v
}

/// Interface names from [`find_iface_argv`] output.
pub fn parse_iface_names(out: &str) -> Result<Vec<String>, String> {
    let tables = parse_tables(out)?;
    let Some(t) = tables.first() else {
        return Ok(Vec::new());
    };
    Ok(t.rows
        .iter()
        .filter_map(|r| t.get(r, "name").and_then(Value::as_str).map(String::from))
        .collect())
}

/// The Port's tag now: `ovs-vsctl --timeout=10 --if-exists get Port NAME tag`
/// (prints `5`, `[]`, or nothing when the port does not exist).
pub fn get_tag_argv(port: &str) -> Vec<String> {
    let mut v = base(VSCTL_TIMEOUT_S);
    v.extend(
        ["--if-exists", "get", "Port", port, "tag"]
            .iter()
            .map(|s| s.to_string()),
    );
    v
}

/// Wait (OVSDB monitor, no polling) until the Port exists and has a tag
/// other than Neutron's dead VLAN 4095, then print it:
/// `ovs-vsctl --timeout=N wait-until Port NAME tag!=[] tag!=4095 -- get Port NAME tag`.
/// ovs-vsctl dies by SIGALRM after N seconds when the tag does not come.
pub fn wait_tag_argv(port: &str, timeout_s: u32) -> Vec<String> {
    let mut v = base(timeout_s.max(1));
    v.extend(
        [
            "wait-until",
            "Port",
            port,
            "tag!=[]",
            "tag!=4095",
            "--",
            "get",
            "Port",
            port,
            "tag",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    v
}

/// A tag as `get Port NAME tag` prints it; `[]`/empty/invalid = `None`.
pub fn parse_tag(out: &str) -> Option<u16> {
    let t = out.trim();
    let n: u16 = t.parse().ok()?;
    (1..=4094).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_shapes() {
        assert_eq!(
            add_ports_argv("br-ethd", &["eth2", "LLDPOeth2"]).join(" "),
            "ovs-vsctl --timeout=10 -- --may-exist add-port br-ethd eth2 -- --may-exist add-port br-ethd LLDPOeth2"
        );
        assert_eq!(
            wait_tag_argv("tap1", 2).join(" "),
            "ovs-vsctl --timeout=2 wait-until Port tap1 tag!=[] tag!=4095 -- get Port tap1 tag"
        );
        assert_eq!(
            find_iface_argv("u").join(" "),
            "ovs-vsctl --timeout=10 --format=json --data=json --columns=name find Interface external_ids:iface-id=u"
        );
    }

    #[test]
    fn tags() {
        assert_eq!(parse_tag("5\n"), Some(5));
        assert_eq!(parse_tag("[]\n"), None);
        assert_eq!(parse_tag(""), None);
        assert_eq!(parse_tag("4095"), None);
        assert_eq!(parse_tag("0"), None);
    }

    #[test]
    fn atoms() {
        let v: Value = serde_json::json!(["set", []]);
        assert_eq!(opt_int(&v), None);
        assert_eq!(opt_int(&serde_json::json!(3)), Some(3));
        assert_eq!(valid_ofport(Some(-1)), None);
        assert_eq!(valid_ofport(Some(2)), Some(2));
        let m = serde_json::json!(["map", [["peer", "x"]]]);
        assert_eq!(map_get(&m, "peer").and_then(Value::as_str), Some("x"));
    }
}
