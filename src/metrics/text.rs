//! The Prometheus text exposition (format 0.0.4) of the registry plus the
//! daemon's [`Snapshot`]: `# HELP` and `# TYPE` for every family, every
//! label value of a fixed set present (zero until it moves), histogram
//! buckets cumulative with `+Inf` = `_count`.
//!
//! Owns the family list ([`FAMILIES`]) and the encoding. Pure: values in,
//! text out.

use super::registry::{
    HistogramSnap, Metrics, BUCKETS, EVENT_KINDS, FLOW_REASONS, METHODS, TOOLS, VDP_MODES,
    VDP_OUTCOMES,
};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// What the daemon copies from its published views for one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub uplink_up: bool,
    /// VSIs by state: success, pending, failed.
    pub vsis: [usize; 3],
    pub queue_main: usize,
    pub queue_err: usize,
    /// Thread name -> state text (`alive`, `restarting`, `stuck`, ...).
    pub threads: BTreeMap<String, String>,
}

/// Every family exported: name, type, help.
pub const FAMILIES: [(&str, &str, &str); 17] = [
    (
        "vdp_agent_build_info",
        "gauge",
        "Build of the running agent (always 1).",
    ),
    ("vdp_agent_up", "gauge", "1 while the agent runs."),
    (
        "vdp_agent_uplink_up",
        "gauge",
        "1 when the uplink to the leaf is set up and detected.",
    ),
    (
        "vdp_agent_vsis",
        "gauge",
        "VSIs held by the agent, by state (success, pending, failed).",
    ),
    (
        "vdp_agent_vdp_requests_total",
        "counter",
        "VDP requests sent to lldpad, by mode (assoc, deassoc, query) and outcome.",
    ),
    (
        "vdp_agent_vm_event_seconds",
        "histogram",
        "Controller VM event received to its result handed to delivery.",
    ),
    (
        "vdp_agent_controller_rpc_seconds",
        "histogram",
        "Duration of controller calls, by method (events = the long-poll).",
    ),
    (
        "vdp_agent_controller_errors_total",
        "counter",
        "Failed controller calls, by method.",
    ),
    (
        "vdp_agent_pending_results",
        "gauge",
        "Results kept for the controller, not delivered yet.",
    ),
    (
        "vdp_agent_queue_length",
        "gauge",
        "Messages waiting in the agent's queues (main, err).",
    ),
    (
        "vdp_agent_lldpad_restarts_total",
        "counter",
        "lldpad restarts recovered from.",
    ),
    (
        "vdp_agent_lldpad_events_total",
        "counter",
        "Notices of the lldpad event client, by kind.",
    ),
    (
        "vdp_agent_flow_repairs_total",
        "counter",
        "OVS repairs by the flow check, by reason.",
    ),
    (
        "vdp_agent_commands_total",
        "counter",
        "Privileged commands run, by tool.",
    ),
    (
        "vdp_agent_command_timeouts_total",
        "counter",
        "Privileged commands killed at their timeout, by tool.",
    ),
    (
        "vdp_agent_command_seconds",
        "histogram",
        "Duration of privileged commands, by tool.",
    ),
    (
        "vdp_agent_thread_alive",
        "gauge",
        "1 when the daemon thread is alive (0: starting, restarting, stuck or stopped).",
    ),
];

/// Escape a label value (`\`, `"`, newline).
fn label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", label_value(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A float as Prometheus writes it (`+Inf`, integers without a fraction).
fn num(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str) {
        let (_, kind, help) = FAMILIES
            .iter()
            .find(|f| f.0 == name)
            .copied()
            .unwrap_or((name, "untyped", ""));
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, pairs: &[(&str, &str)], v: impl std::fmt::Display) {
        let _ = writeln!(self.text, "{name}{} {v}", labels(pairs));
    }
    fn histogram(&mut self, name: &str, pairs: &[(&str, &str)], h: &HistogramSnap) {
        for (i, c) in h.cumulative.iter().enumerate() {
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| num(*b));
            let mut p = pairs.to_vec();
            p.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &p, c);
        }
        self.sample(&format!("{name}_sum"), pairs, num(h.sum_s));
        self.sample(&format!("{name}_count"), pairs, h.count());
    }
}

/// The whole exposition: `m` (the registry) and `s` (the daemon's views).
pub fn render(m: &Metrics, s: &Snapshot) -> String {
    let mut o = Out {
        text: String::with_capacity(16 * 1024),
    };
    o.family("vdp_agent_build_info");
    o.sample("vdp_agent_build_info", &[("version", crate::VERSION)], 1);
    o.family("vdp_agent_up");
    o.sample("vdp_agent_up", &[], 1);
    o.family("vdp_agent_uplink_up");
    o.sample("vdp_agent_uplink_up", &[], u8::from(s.uplink_up));
    o.family("vdp_agent_vsis");
    for (state, n) in ["success", "pending", "failed"].iter().zip(s.vsis) {
        o.sample("vdp_agent_vsis", &[("state", state)], n);
    }
    o.family("vdp_agent_vdp_requests_total");
    for mode in VDP_MODES {
        for outcome in VDP_OUTCOMES {
            o.sample(
                "vdp_agent_vdp_requests_total",
                &[("mode", mode), ("outcome", outcome)],
                m.vdp_requests_of(mode, outcome),
            );
        }
    }
    o.family("vdp_agent_vm_event_seconds");
    o.histogram(
        "vdp_agent_vm_event_seconds",
        &[],
        &m.vm_event_seconds.snapshot(),
    );
    o.family("vdp_agent_controller_rpc_seconds");
    for (i, method) in METHODS.iter().enumerate() {
        o.histogram(
            "vdp_agent_controller_rpc_seconds",
            &[("method", method)],
            &m.rpc_seconds[i].snapshot(),
        );
    }
    o.family("vdp_agent_controller_errors_total");
    for (i, method) in METHODS.iter().enumerate() {
        o.sample(
            "vdp_agent_controller_errors_total",
            &[("method", method)],
            m.rpc_errors[i].get(),
        );
    }
    o.family("vdp_agent_pending_results");
    o.sample(
        "vdp_agent_pending_results",
        &[],
        m.pending_results.load(Ordering::Relaxed),
    );
    o.family("vdp_agent_queue_length");
    o.sample("vdp_agent_queue_length", &[("queue", "main")], s.queue_main);
    o.sample("vdp_agent_queue_length", &[("queue", "err")], s.queue_err);
    o.family("vdp_agent_lldpad_restarts_total");
    o.sample(
        "vdp_agent_lldpad_restarts_total",
        &[],
        m.lldpad_restarts.get(),
    );
    o.family("vdp_agent_lldpad_events_total");
    for (i, kind) in EVENT_KINDS.iter().enumerate() {
        o.sample(
            "vdp_agent_lldpad_events_total",
            &[("kind", kind)],
            m.lldpad_events[i].get(),
        );
    }
    o.family("vdp_agent_flow_repairs_total");
    for (i, reason) in FLOW_REASONS.iter().enumerate() {
        o.sample(
            "vdp_agent_flow_repairs_total",
            &[("reason", reason)],
            m.flow_repairs[i].get(),
        );
    }
    o.family("vdp_agent_commands_total");
    for (i, tool) in TOOLS.iter().enumerate() {
        o.sample(
            "vdp_agent_commands_total",
            &[("tool", tool)],
            m.commands[i].get(),
        );
    }
    o.family("vdp_agent_command_timeouts_total");
    for (i, tool) in TOOLS.iter().enumerate() {
        o.sample(
            "vdp_agent_command_timeouts_total",
            &[("tool", tool)],
            m.command_timeouts[i].get(),
        );
    }
    o.family("vdp_agent_command_seconds");
    for (i, tool) in TOOLS.iter().enumerate() {
        o.histogram(
            "vdp_agent_command_seconds",
            &[("tool", tool)],
            &m.command_seconds[i].snapshot(),
        );
    }
    o.family("vdp_agent_thread_alive");
    for (name, state) in &s.threads {
        o.sample(
            "vdp_agent_thread_alive",
            &[("thread", name)],
            u8::from(state == "alive"),
        );
    }
    o.text
}
