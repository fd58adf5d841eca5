//! `ovs-ofctl` argv builders, the flow value used for both desired and
//! installed flows, the `dump-flows` parser and the flow-file format of
//! `ovs-ofctl add-flows` (one call carrying `delete_strict`/`add` lines).
//!
//! Owns nothing; pure functions. The driver (`super`) runs the commands
//! through `exec::Runner`. Flows are written and dumped with OpenFlow 1.0
//! plus Nicira extensions (ovs-ofctl's default), which is enough for every
//! match and action used here; an explicit `-O` may be configured.

use std::collections::BTreeMap;
use std::fmt;

/// Cookie on every flow this agent installs ("vdpagent" in ASCII). It
/// marks ownership: dumps and deletes of "our" flows filter on it.
pub const FLOW_COOKIE: u64 = 0x7664_7061_6765_6e74;

/// Keys of `dump-flows` output that describe the entry, not its match.
const META_KEYS: &[&str] = &[
    "cookie",
    "duration",
    "table",
    "n_packets",
    "n_bytes",
    "idle_age",
    "hard_age",
    "idle_timeout",
    "hard_timeout",
    "importance",
    "send_flow_rem",
    "check_overlap",
    "reset_counts",
    "no_packet_counts",
    "no_byte_counts",
    "priority",
];

/// Default OpenFlow priority when `dump-flows` does not print one.
pub const DEFAULT_PRIORITY: u16 = 32768;

/// One flow: table 0 entry with cookie, priority, match fields and actions.
/// Values are kept lower-case so a flow we write compares equal to the one
/// OVS prints back (`normal` -> `NORMAL`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    pub cookie: u64,
    pub table: u8,
    pub priority: u16,
    /// Match fields; bare keywords (`ip`, `arp`) have an empty value.
    pub matches: BTreeMap<String, String>,
    pub actions: String,
}

impl Flow {
    /// A flow with our cookie in table 0.
    pub fn ours(priority: u16, matches: &[(&str, String)], actions: &str) -> Flow {
        Flow {
            cookie: FLOW_COOKIE,
            table: 0,
            priority,
            matches: matches
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_ascii_lowercase()))
                .collect(),
            actions: norm_actions(actions),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.matches.get(key).map(String::as_str)
    }

    /// Same table, priority and match (what `--strict` compares).
    pub fn same_match(&self, other: &Flow) -> bool {
        self.table == other.table
            && self.priority == other.priority
            && self.matches == other.matches
    }

    fn match_text(&self) -> String {
        let mut parts = vec![format!("priority={}", self.priority)];
        if self.table != 0 {
            parts.insert(0, format!("table={}", self.table));
        }
        for (k, v) in &self.matches {
            if v.is_empty() {
                parts.push(k.clone());
            } else {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(",")
    }

    /// The flow as an `add-flow` argument.
    pub fn add_text(&self) -> String {
        format!(
            "cookie={:#x},{},actions={}",
            self.cookie,
            self.match_text(),
            self.actions
        )
    }

    /// The strict match of this flow for `del-flows --strict` (no cookie
    /// filter: the strict match alone names one entry).
    pub fn strict_match_text(&self) -> String {
        self.match_text()
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.add_text())
    }
}

/// Lower-case, no blanks, and the OpenFlow 1.3 spelling of a VLAN rewrite
/// (`set_field:7099->vlan_vid`, VID | 0x1000) turned back into
/// `mod_vlan_vid:3003`, so flows compare equal whatever `-O` negotiated.
fn norm_actions(a: &str) -> String {
    let s: String = a
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    s.split(',')
        .map(|act| {
            act.strip_prefix("set_field:")
                .and_then(|r| r.strip_suffix("->vlan_vid"))
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| n & 0x1000 != 0)
                .map(|n| format!("mod_vlan_vid:{}", n & 0xfff))
                .unwrap_or_else(|| act.to_string())
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_cookie(v: &str) -> Option<u64> {
    let v = v.split('/').next().unwrap_or(v);
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// Parse one `dump-flows` line; `None` for headers and blank lines.
pub fn parse_flow_line(line: &str) -> Option<Flow> {
    let line = line.trim();
    if line.is_empty() || line.starts_with("NXST") || line.starts_with("OFPST") {
        return None;
    }
    let (head, actions) = if let Some(i) = line.find(" actions=") {
        (&line[..i], &line[i + " actions=".len()..])
    } else if let Some(rest) = line.strip_prefix("actions=") {
        ("", rest)
    } else {
        return None;
    };
    let mut flow = Flow {
        cookie: 0,
        table: 0,
        priority: DEFAULT_PRIORITY,
        matches: BTreeMap::new(),
        actions: norm_actions(actions),
    };
    for tok in head.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (k, v) = match tok.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (tok, ""),
        };
        match k {
            "cookie" => flow.cookie = parse_cookie(v)?,
            "table" => flow.table = v.parse().ok()?,
            "priority" => flow.priority = v.parse().ok()?,
            _ if META_KEYS.contains(&k) => {}
            _ => {
                flow.matches.insert(k.to_string(), v.to_ascii_lowercase());
            }
        }
    }
    Some(flow)
}

/// Parse `ovs-ofctl dump-flows` output (with or without `--no-stats`).
pub fn parse_dump_flows(out: &str) -> Vec<Flow> {
    out.lines().filter_map(parse_flow_line).collect()
}

/// One line of an `add-flows` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowOp {
    Add(Flow),
    /// Strict delete of exactly this entry (table, priority, match).
    DeleteStrict(Flow),
    /// Non-strict delete by a raw match (`dl_dst=..,dl_type=..`).
    Delete(String),
}

impl FlowOp {
    /// The line in an `add-flows` file.
    pub fn file_line(&self) -> String {
        match self {
            FlowOp::Add(f) => format!("add {}", f.add_text()),
            FlowOp::DeleteStrict(f) => format!("delete_strict {}", f.strict_match_text()),
            FlowOp::Delete(m) => format!("delete {m}"),
        }
    }
}

/// Options for every ovs-ofctl call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfctlOpts {
    /// `-O` value; `None` = ovs-ofctl's default (OpenFlow 1.0 + Nicira
    /// extensions), which works with OVS's default bridges and Neutron's
    /// (they allow OpenFlow10). For bridges limited to newer versions use
    /// e.g. `OpenFlow10,OpenFlow13` (the parser understands both spellings).
    pub protocols: Option<String>,
}

fn base(opts: &OfctlOpts) -> Vec<String> {
    let mut v = vec!["ovs-ofctl".to_string()];
    if let Some(p) = &opts.protocols {
        v.push("-O".into());
        v.push(p.clone());
    }
    v
}

/// `ovs-ofctl dump-flows --no-stats --no-names BR [MATCH]`
pub fn dump_flows_argv(opts: &OfctlOpts, br: &str, filter: Option<&str>) -> Vec<String> {
    let mut v = base(opts);
    v.extend(
        ["dump-flows", "--no-stats", "--no-names", br]
            .iter()
            .map(|s| s.to_string()),
    );
    if let Some(f) = filter {
        v.push(f.to_string());
    }
    v
}

/// Cookie filter for dumps: only our flows.
pub fn our_cookie_filter() -> String {
    format!("cookie={FLOW_COOKIE:#x}/-1")
}

/// The single-call argv for one op (`add-flow BR FLOW`,
/// `--strict del-flows BR MATCH`, `del-flows BR MATCH`).
pub fn single_op_argv(opts: &OfctlOpts, br: &str, op: &FlowOp) -> Vec<String> {
    let mut v = base(opts);
    match op {
        FlowOp::Add(f) => {
            v.extend(["add-flow".to_string(), br.to_string(), f.add_text()]);
        }
        FlowOp::DeleteStrict(f) => {
            v.extend([
                "--strict".to_string(),
                "del-flows".to_string(),
                br.to_string(),
                f.strict_match_text(),
            ]);
        }
        FlowOp::Delete(m) => {
            v.extend(["del-flows".to_string(), br.to_string(), m.clone()]);
        }
    }
    v
}

/// `ovs-ofctl add-flows BR -`: the [`flow_file`] text goes on stdin.
pub fn add_flows_argv(opts: &OfctlOpts, br: &str) -> Vec<String> {
    let mut v = base(opts);
    v.extend(["add-flows".to_string(), br.to_string(), "-".to_string()]);
    v
}

/// The text of an `add-flows` file for `ops`, in order.
pub fn flow_file(ops: &[FlowOp]) -> String {
    let mut s = String::new();
    for op in ops {
        s.push_str(&op.file_line());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_with_stats() {
        let l = " cookie=0x7664706167656e74, duration=0.004s, table=0, n_packets=0, n_bytes=0, idle_age=0, priority=4,in_port=1,dl_vlan=5 actions=mod_vlan_vid:3003,NORMAL";
        let f = parse_flow_line(l).unwrap();
        assert_eq!(f.cookie, FLOW_COOKIE);
        assert_eq!(f.priority, 4);
        assert_eq!(f.get("in_port"), Some("1"));
        assert_eq!(f.get("dl_vlan"), Some("5"));
        assert_eq!(f.actions, "mod_vlan_vid:3003,normal");
        let want = Flow::ours(
            4,
            &[("in_port", "1".into()), ("dl_vlan", "5".into())],
            "mod_vlan_vid:3003,normal",
        );
        assert_eq!(f, want);
    }

    #[test]
    fn openflow13_vlan_rewrite() {
        // captured from `ovs-ofctl -O OpenFlow13 dump-flows --no-stats` (OVS 3.1)
        let l = " cookie=0x7664706167656e74, priority=4,in_port=1,dl_vlan=5 actions=set_field:7099->vlan_vid,NORMAL";
        let f = parse_flow_line(l).unwrap();
        assert_eq!(f.actions, "mod_vlan_vid:3003,normal");
        let f = parse_flow_line(" priority=1 actions=set_field:5->vlan_vid").unwrap();
        assert_eq!(f.actions, "set_field:5->vlan_vid");
    }

    #[test]
    fn parse_no_stats_default() {
        let f = parse_flow_line(" priority=0 actions=NORMAL").unwrap();
        assert_eq!(f.cookie, 0);
        assert_eq!(f.priority, 0);
        assert!(f.matches.is_empty());
        assert!(parse_flow_line("NXST_FLOW reply (xid=0x4):").is_none());
        let f = parse_flow_line(" cookie=0x1, arp,in_port=2 actions=drop").unwrap();
        assert_eq!(f.priority, DEFAULT_PRIORITY);
        assert_eq!(f.get("arp"), Some(""));
    }

    #[test]
    fn op_text() {
        let f = Flow::ours(
            99,
            &[
                ("in_port", "3".into()),
                ("dl_dst", "01:80:C2:00:00:00".into()),
                ("dl_type", "0x88cc".into()),
            ],
            "output:2",
        );
        assert_eq!(
            FlowOp::Add(f.clone()).file_line(),
            "add cookie=0x7664706167656e74,priority=99,dl_dst=01:80:c2:00:00:00,dl_type=0x88cc,in_port=3,actions=output:2"
        );
        assert_eq!(
            FlowOp::DeleteStrict(f.clone()).file_line(),
            "delete_strict priority=99,dl_dst=01:80:c2:00:00:00,dl_type=0x88cc,in_port=3"
        );
        assert_eq!(
            single_op_argv(&OfctlOpts::default(), "br-ethd", &FlowOp::DeleteStrict(f)).join(" "),
            "ovs-ofctl --strict del-flows br-ethd priority=99,dl_dst=01:80:c2:00:00:00,dl_type=0x88cc,in_port=3"
        );
        let o = OfctlOpts {
            protocols: Some("OpenFlow13".into()),
        };
        assert_eq!(
            dump_flows_argv(&o, "br-int", Some(&our_cookie_filter())).join(" "),
            "ovs-ofctl -O OpenFlow13 dump-flows --no-stats --no-names br-int cookie=0x7664706167656e74/-1"
        );
    }
}
