use super::registry::{BUCKETS, TOOLS};
use super::*;
use std::collections::BTreeMap;

fn snapshot() -> Snapshot {
    Snapshot {
        uplink_up: true,
        vsis: [2, 1, 0],
        queue_main: 3,
        queue_err: 0,
        threads: BTreeMap::from([
            ("queue-worker".to_string(), "alive".to_string()),
            ("flow-check".to_string(), "restarting".to_string()),
        ]),
    }
}

#[test]
fn exposition_is_valid_and_has_every_family() {
    let m = Metrics::new();
    m.command_done("/usr/bin/ovs-vsctl", Duration::from_millis(3), false);
    m.command_done("vdptool", Duration::from_secs(16), true);
    m.command_done("sh", Duration::from_millis(1), false);
    m.rpc_done("update_vm_result", Duration::from_millis(2), true);
    m.rpc_done("heartbeat", Duration::from_millis(20), false);
    m.rpc_done("made-up", Duration::from_millis(20), false);
    m.vdp_request("assoc", "success");
    m.vdp_request("assoc", "success");
    m.vdp_request("query", "weird");
    m.vdp_request("nonsense", "success");
    m.lldpad_event("deassociated");
    m.flow_repairs("missing_flows", 4);
    m.flow_repairs("missing_flows", 0);
    m.set_pending_results(5);
    let t0 = Instant::now();
    m.vm_event_received("p1", t0);
    m.vm_event_received("p1", t0 + Duration::from_millis(5)); // coalesced
    m.vm_result_handed("p1", t0 + Duration::from_millis(20));
    m.vm_result_handed("p1", t0 + Duration::from_millis(30)); // no clock: not timed
    m.vm_result_handed("p2", t0);

    let text = render(&m, &snapshot());
    let e = crate::lab::promtext::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, kind, _) in FAMILIES {
        let f = e
            .families
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(f.kind, kind, "{name}");
        assert!(!f.samples.is_empty(), "{name} has no sample");
    }
    assert_eq!(e.families.len(), FAMILIES.len());
    let v = |n: &str, l: &[(&str, &str)]| e.sum(n, l);
    assert_eq!(
        v("vdp_agent_build_info", &[("version", crate::VERSION)]),
        1.0
    );
    assert_eq!(v("vdp_agent_uplink_up", &[]), 1.0);
    assert_eq!(v("vdp_agent_vsis", &[("state", "success")]), 2.0);
    assert_eq!(v("vdp_agent_vsis", &[("state", "pending")]), 1.0);
    assert_eq!(v("vdp_agent_queue_length", &[("queue", "main")]), 3.0);
    assert_eq!(v("vdp_agent_commands_total", &[("tool", "ovs-vsctl")]), 1.0);
    assert_eq!(v("vdp_agent_commands_total", &[("tool", "other")]), 1.0);
    assert_eq!(
        v("vdp_agent_command_timeouts_total", &[("tool", "vdptool")]),
        1.0
    );
    assert_eq!(
        v(
            "vdp_agent_command_seconds_bucket",
            &[("tool", "vdptool"), ("le", "10")]
        ),
        0.0
    );
    assert_eq!(
        v(
            "vdp_agent_command_seconds_bucket",
            &[("tool", "vdptool"), ("le", "30")]
        ),
        1.0
    );
    assert_eq!(
        v(
            "vdp_agent_controller_errors_total",
            &[("method", "heartbeat")]
        ),
        1.0
    );
    assert_eq!(
        v("vdp_agent_controller_errors_total", &[("method", "other")]),
        1.0
    );
    assert_eq!(
        v(
            "vdp_agent_controller_rpc_seconds_count",
            &[("method", "update_vm_result")]
        ),
        1.0
    );
    assert_eq!(v("vdp_agent_vdp_requests_total", &[("mode", "assoc")]), 2.0);
    assert_eq!(
        v(
            "vdp_agent_vdp_requests_total",
            &[("mode", "query"), ("outcome", "failed")]
        ),
        1.0
    );
    assert_eq!(v("vdp_agent_vdp_requests_total", &[]), 3.0);
    assert_eq!(
        v("vdp_agent_lldpad_events_total", &[("kind", "deassociated")]),
        1.0
    );
    assert_eq!(
        v(
            "vdp_agent_flow_repairs_total",
            &[("reason", "missing_flows")]
        ),
        4.0
    );
    assert_eq!(v("vdp_agent_pending_results", &[]), 5.0);
    assert_eq!(v("vdp_agent_vm_event_seconds_count", &[]), 1.0);
    assert_eq!(
        v("vdp_agent_vm_event_seconds_bucket", &[("le", "0.01")]),
        0.0
    );
    assert_eq!(
        v("vdp_agent_vm_event_seconds_bucket", &[("le", "0.025")]),
        1.0
    );
    assert!((v("vdp_agent_vm_event_seconds_sum", &[]) - 0.02).abs() < 1e-9);
    assert_eq!(
        v("vdp_agent_thread_alive", &[("thread", "queue-worker")]),
        1.0
    );
    assert_eq!(
        v("vdp_agent_thread_alive", &[("thread", "flow-check")]),
        0.0
    );
    assert_eq!(m.clocks_running(), 0);
}

#[test]
fn label_values_are_escaped() {
    let s = Snapshot {
        threads: BTreeMap::from([("we\"ird\\\nname".to_string(), "alive".to_string())]),
        ..Snapshot::default()
    };
    let text = render(&Metrics::new(), &s);
    let e = crate::lab::promtext::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        e.sum("vdp_agent_thread_alive", &[("thread", "we\"ird\\\nname")]),
        1.0
    );
}

#[test]
fn vm_event_clocks_are_bounded() {
    let m = Metrics::new();
    let t0 = Instant::now();
    for i in 0..registry_max_clocks() + 10 {
        m.vm_event_received(&format!("p{i}"), t0);
    }
    assert_eq!(m.clocks_running(), registry_max_clocks());
    // Stale clocks make room.
    let later = t0 + Duration::from_secs(7200);
    m.vm_event_received("fresh", later);
    assert_eq!(m.clocks_running(), 1);
    m.vm_result_handed("fresh", later + Duration::from_millis(1));
    assert_eq!(m.vm_event_seconds.snapshot().count(), 1);
}

fn registry_max_clocks() -> usize {
    registry::MAX_CLOCKS
}

#[test]
fn histogram_snapshot_is_cumulative() {
    let h = registry::Histogram::new();
    for ms in [0, 1, 7, 7, 300, 100_000] {
        h.observe(Duration::from_millis(ms));
    }
    let s = h.snapshot();
    assert_eq!(s.cumulative.len(), BUCKETS.len() + 1);
    assert!(s.cumulative.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(s.count(), 6);
    assert_eq!(s.cumulative[0], 2); // <= 1 ms
    assert_eq!(s.cumulative[BUCKETS.len() - 1], 5); // <= 60 s
    assert!((s.sum_s - 100.315).abs() < 1e-9);
}

#[test]
fn tool_label_is_the_base_name() {
    assert_eq!(TOOLS[Metrics::tool_index("/usr/sbin/lldptool")], "lldptool");
    assert_eq!(TOOLS[Metrics::tool_index("ip")], "ip");
    assert_eq!(TOOLS[Metrics::tool_index("")], "other");
    assert_eq!(TOOLS[Metrics::tool_index("/bin/")], "other");
}
