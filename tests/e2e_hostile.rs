//! End to end, hostile controller events (docs/protocol.md): `vm_info`
//! objects with bad fields, malformed event types and payloads, a raw event
//! without a sequence number, and a bulk list mixing good and bad entries,
//! injected through the reference controller's admin API into a running
//! lab. Each bad VM with a valid `port_uuid` is answered `CREATE:FAIL`
//! (`DELETE:FAIL` when its status is down) with a reason naming the field;
//! nothing reaches lldpad or the leaf; the good VMs keep working, the agent
//! keeps running and its queue goes on.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A hostile VM object: a valid base (fresh port uuid `n`) with `field`
/// set to `val` (`oui.x` for OUI fields).
fn bad(lab: &Lab, n: u32, field: &str, val: Value) -> (String, Value) {
    let vm = Vm::new(n, 1, 11);
    let mut v = vm.vm_info(&lab.host_id, "up");
    match field.split_once('.') {
        Some((a, b)) => v[a][b] = val,
        None => v[field] = val,
    }
    (vm.port_uuid, v)
}

#[test]
fn e2e_hostile_events() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("e7", &[]);
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let v = lab.bring_up(&[&vm1, &vm2]);
    let since = lab.last_call_id();

    // (port uuid, object, expected result, field the reason must name)
    let mut cases: Vec<(String, Value, &str, &str)> = Vec::new();
    let mut add = |n: u32, field: &str, val: Value, want_field: &'static str| {
        let (p, o) = bad(&lab, n, field, val);
        cases.push((p, o, "CREATE:FAIL", want_field));
    };
    add(101, "vm_mac", json!("fa:16:3e:00:00:zz"), "vm_mac");
    add(102, "oui.vm_name", json!("x,mode=deassoc"), "oui.vm_name");
    add(103, "oui.vm_name", json!("a=b"), "oui.vm_name");
    add(
        104,
        "oui.vm_name",
        json!("web\n-c mode=deassoc"),
        "oui.vm_name",
    );
    add(105, "segmentation_id", json!(0), "segmentation_id");
    add(106, "segmentation_id", json!(16_777_216), "segmentation_id");
    add(107, "segmentation_id", json!("30001"), "segmentation_id");
    add(108, "vm_mac", json!(42), "vm_mac");
    add(
        109,
        "oui.vm_name",
        json!("A".repeat(100_000)),
        "oui.vm_name",
    );
    add(110, "net_uuid", json!("not-a-uuid"), "net_uuid");
    add(111, "oui.ip_addr", json!("10.30.1.999"), "oui.ip_addr");
    add(112, "oui.vm_uuid", json!("zz;reboot"), "oui.vm_uuid");
    add(113, "status", json!("sideways"), "status");
    add(114, "segmentation_id", json!(30001.5), "segmentation_id");
    add(115, "oui", json!("cisco"), "oui");
    // A down event with a bad field: DELETE:FAIL.
    let (p, mut o) = bad(&lab, 116, "vm_mac", json!("00:00:00:00:00"));
    o["status"] = json!("down");
    cases.push((p, o, "DELETE:FAIL", "vm_mac"));

    for (_, obj, _, _) in &cases {
        lab.send_event(json!("vm_info"), obj.clone());
    }
    // Malformed events: no valid port uuid, nothing to answer; must be survived.
    let bad_uuid = {
        let (_, mut o) = bad(&lab, 120, "vm_mac", json!("nope"));
        o["port_uuid"] = json!("../../etc/passwd");
        o
    };
    lab.send_event(json!("vm_info"), bad_uuid);
    lab.send_event(json!(17), json!({"a": 1}));
    lab.send_event(json!("vm_info"), json!("just a string"));
    lab.send_event(json!("vm_info"), json!(42));
    lab.send_event(json!("vm_info"), Value::Null);
    lab.send_event(json!("no_such_type"), vm1.vm_info(&lab.host_id, "down"));
    lab.send_event(
        json!("uplink"),
        json!({"uplink": "eth2; rm -rf /", "veth_intf": 7}),
    );
    lab.send_raw_event(json!({"type": "vm_info", "payload": vm1.vm_info(&lab.host_id, "down")}));
    lab.send_raw_event(json!("garbage"));

    // A bulk list mixing good and bad entries; vm3 is new and must come up.
    let vm3 = Vm::new(3, 1, 11);
    lab.vm_add(&vm3);
    let (p130, b130) = bad(&lab, 130, "vm_mac", json!("fa:16:3e:00:00:0g"));
    let (p131, b131) = bad(&lab, 131, "segmentation_id", json!(-5));
    lab.send_event(
        json!("vm_info"),
        json!([
            vm1.vm_info(&lab.host_id, "up"),
            b130,
            "garbage entry",
            vm3.vm_info(&lab.host_id, "up"),
            b131,
            vm2.vm_info(&lab.host_id, "up"),
            null,
        ]),
    );
    cases.push((p130, Value::Null, "CREATE:FAIL", "vm_mac"));
    cases.push((p131, Value::Null, "CREATE:FAIL", "segmentation_id"));

    // Every bad VM with a valid port uuid is answered, naming the field.
    for (port, _, want, field) in &cases {
        let calls = wait_for(Duration::from_secs(20), || {
            let c = lab.results_for(port, since);
            (!c.is_empty()).then_some(c)
        })
        .unwrap_or_else(|| panic!("no result for {port} ({field})\n{}", lab.diag()));
        // At-least-once delivery may repeat an answer; each must agree.
        assert!(
            calls.iter().all(|c| c["args"] == calls[0]["args"]),
            "{port}: {calls:?}"
        );
        let a = &calls[0]["args"];
        assert_eq!(a["result"], *want, "{port} ({field}): {a}");
        let reason = a["fail_reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("invalid {field}:")),
            "{port}: reason {reason:?} does not name {field}"
        );
        assert!(
            reason.len() < 300,
            "{port}: reason not bounded: {} bytes",
            reason.len()
        );
        assert!(
            !reason.contains('\n'),
            "{port}: raw newline in reason {reason:?}"
        );
    }
    let log = lab.agent_log();
    for field in [
        "vm_mac",
        "oui.vm_name",
        "segmentation_id",
        "net_uuid",
        "port_uuid",
        "payload",
    ] {
        assert!(
            log.contains(&format!("invalid {field}:")),
            "no log line naming {field}"
        );
    }

    // vm3 from the mixed bulk came up; the good VMs keep their VLANs.
    // (vm3 exists only in the event, not in the controller's port table.)
    let p3 = wait_for(Duration::from_secs(20), || {
        lab.results_for(&vm3.port_uuid, since)
            .into_iter()
            .find(|c| c["args"]["result"] == "SUCCESS")
            .map(|c| c["args"].clone())
    })
    .unwrap_or_else(|| panic!("vm3 from the mixed bulk: no SUCCESS\n{}", lab.diag()));
    assert_eq!(p3["vdp_vlan"], v[0], "vm3 shares vm1's network");
    for vm in [&vm1, &vm2, &vm3] {
        assert!(
            lab.wait_ping(vm, Duration::from_secs(5)),
            "{}\n{}",
            vm.name,
            lab.diag()
        );
    }
    assert_eq!(
        lab.translation_flows(),
        Some(lab.expected_flows(&[(11, v[0]), (12, v[1])]))
    );
    // Nothing bad reached lldpad or the leaf.
    let good = [&vm1.port_uuid, &vm2.port_uuid, &vm3.port_uuid];
    let leaf: Vec<String> = lab
        .leaf_vsis()
        .iter()
        .filter_map(|x| x["uuid"].as_str().map(String::from))
        .collect();
    assert!(
        leaf.iter().all(|u| good.contains(&u)),
        "leaf holds {leaf:?}"
    );
    assert_eq!(leaf.len(), 3, "{leaf:?}");
    let station = lab.station_vsis();
    for (port, _, _, _) in &cases {
        assert!(!station.contains(port.as_str()), "{port} reached lldpad");
    }

    // The agent is alive and well, its queues drained, and it still serves
    // a normal port.
    assert!(lab.agent_alive());
    let st = lab.status();
    assert!(
        st["threads"]
            .as_object()
            .is_some_and(|t| t.values().all(|s| s == "alive")),
        "{st}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let st = lab.status();
            st["queues"]["main"] == 0 && st["queues"]["err"] == 0
        }),
        "{}",
        lab.diag()
    );
    let vm4 = Vm::new(4, 2, 12);
    assert_eq!(lab.bring_up(&[&vm4]), vec![v[1]]);
    assert!(
        lab.wait_ping(&vm4, Duration::from_secs(5)),
        "{}",
        lab.diag()
    );
    let vsis = lab.status()["vsis"].as_array().cloned().unwrap_or_default();
    assert_eq!(vsis.len(), 4, "{vsis:?}");
}

/// Hardening item 5 over real HTTP: events whose `seq` is 2^63 or u64::MAX
/// (implausible numbers) are dropped and logged, never taken as the
/// cursor: the next good event is processed.
#[test]
fn e2e_event_numbers_cannot_deafen_the_agent() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("e9", &[]);
    let vm1 = Vm::new(1, 1, 11);
    lab.bring_up(&[&vm1]);
    let vm2 = Vm::new(2, 2, 12);
    lab.vm_add(&vm2);
    for seq in [9_223_372_036_854_775_808u64, u64::MAX] {
        lab.send_raw_event(json!({
            "seq": seq,
            "type": "vm_info",
            "payload": vm2.vm_info(&lab.host_id, "down"),
        }));
    }
    lab.port_add(&vm2);
    let p = lab
        .wait_result(&vm2.port_uuid, "SUCCESS", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the event after the huge seq was lost\n{}", lab.diag()));
    assert!(p["vdp_vlan"].as_u64().is_some(), "{p}");
    let log = lab.agent_log();
    assert!(
        log.contains("seq 9223372036854775808 is implausible"),
        "the dropped event is not logged"
    );
    assert!(lab.agent_alive());
}
