//! The Grafana dashboard `packaging/grafana/vdp-agent.json` against the
//! agent's exposition: valid dashboard JSON (uid, title, schemaVersion,
//! unique panel ids, every panel placed and with a datasource), every
//! query names only families the agent exports (histogram series by their
//! `_bucket`/`_sum`/`_count` names) and only labels those families carry
//! (read from a real rendering, checked by `lab::promtext`), and the
//! panels the issue asks for are there: VSIs by state, event->result
//! latency quantiles, RPC errors, pending results, lldpad restarts, flow
//! repairs.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use vdp_agent::api::metrics::{render, Metrics, Snapshot, FAMILIES};

/// Labels every Prometheus series may carry besides the agent's own.
const TARGET_LABELS: [&str; 3] = ["instance", "job", "le"];

fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/grafana/vdp-agent.json"
    );
    let text = std::fs::read_to_string(path).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Label names of each family, from a real exposition.
fn family_labels() -> BTreeMap<String, BTreeSet<String>> {
    let s = Snapshot {
        threads: [("queue-worker".to_string(), "alive".to_string())].into(),
        ..Snapshot::default()
    };
    let e = vdp_agent::lab::promtext::parse(&render(&Metrics::new(), &s)).expect("valid text");
    e.families
        .iter()
        .map(|(name, f)| {
            let labels = f
                .samples
                .iter()
                .flat_map(|s| s.labels.keys().cloned())
                .collect();
            (name.clone(), labels)
        })
        .collect()
}

/// `vdp_agent_...` identifiers in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(p) = expr[i..].find("vdp_agent_") {
        let start = i + p;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.push(expr[start..end].to_string());
        i = end;
    }
    out
}

/// The family a series name belongs to (histograms by their suffixes).
fn family_of(series: &str) -> Option<&'static str> {
    FAMILIES.iter().find_map(|(name, kind, _)| {
        let hit = series == *name
            || (*kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| series.strip_suffix(s) == Some(name)));
        hit.then_some(*name)
    })
}

/// Label names used in `{...}` selectors and `by (...)` / `without (...)`.
fn label_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        for m in rest[open + 1..open + close].split(',') {
            let key: String = m
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !key.is_empty() {
                out.push(key);
            }
        }
        rest = &rest[open + close + 1..];
    }
    for kw in ["by (", "without ("] {
        let mut rest = expr;
        while let Some(p) = rest.find(kw) {
            let after = &rest[p + kw.len()..];
            let Some(close) = after.find(')') else { break };
            out.extend(
                after[..close]
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
            );
            rest = &after[close..];
        }
    }
    out
}

#[test]
fn dashboard_is_valid_and_names_only_exported_families() {
    let d = dashboard();
    assert_eq!(d["uid"], "vdp-agent");
    assert!(d["title"].is_string());
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let panels = d["panels"].as_array().expect("panels");
    let labels = family_labels();
    let mut ids = BTreeSet::new();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    let mut titles = Vec::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].as_u64().is_some(), "panel {id} gridPos.{k}");
        }
        if p["type"] == "row" {
            continue;
        }
        titles.push(p["title"].as_str().expect("title").to_string());
        assert!(p["datasource"]["uid"].is_string(), "panel {id} datasource");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {id} has no query");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "panel {id}: {expr} names no family");
            let mut fams = Vec::new();
            for n in &names {
                let f = family_of(n)
                    .unwrap_or_else(|| panic!("panel {id}: {n} is not exported ({expr})"));
                used.insert(f);
                fams.push(f);
            }
            for l in label_names(expr) {
                let known = TARGET_LABELS.contains(&l.as_str())
                    || fams.iter().any(|f| labels[*f].contains(&l));
                assert!(known, "panel {id}: label {l} not on {fams:?} ({expr})");
            }
        }
    }
    for must in [
        "vdp_agent_vsis",
        "vdp_agent_vm_event_seconds",
        "vdp_agent_controller_errors_total",
        "vdp_agent_pending_results",
        "vdp_agent_lldpad_restarts_total",
        "vdp_agent_flow_repairs_total",
    ] {
        assert!(used.contains(must), "no panel over {must}");
    }
    let latency = panels
        .iter()
        .find(|p| p["title"] == "VM event -> result latency")
        .expect("latency panel");
    let exprs: Vec<&str> = latency["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["expr"].as_str())
        .collect();
    for q in ["0.5", "0.9", "0.99"] {
        assert!(
            exprs
                .iter()
                .any(|e| e.starts_with(&format!("histogram_quantile({q},"))),
            "quantile {q}"
        );
    }
    assert!(titles.iter().any(|t| t == "VSIs by state"));
    // The instance variable is fed by a family the agent exports.
    let vars = d["templating"]["list"].as_array().unwrap();
    let inst = vars.iter().find(|v| v["name"] == "instance").unwrap();
    let q = inst["definition"].as_str().unwrap();
    assert!(
        metric_names(q).iter().all(|n| family_of(n).is_some()),
        "{q}"
    );
}

#[test]
fn the_checker_catches_unknown_names() {
    assert_eq!(
        family_of("vdp_agent_vm_event_seconds_bucket"),
        Some("vdp_agent_vm_event_seconds")
    );
    assert_eq!(family_of("vdp_agent_vsis_bucket"), None);
    assert_eq!(family_of("vdp_agent_nonsense"), None);
    assert_eq!(
        label_names(r#"sum by (le, tool) (rate(x{instance=~"$i",tool!="ip"}[5m]))"#),
        vec!["instance", "tool", "le", "tool"]
    );
}
