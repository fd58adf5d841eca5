//! End to end, the demo path: two VMs on two networks come up through the
//! real agent, lldpad, OVS, leaf simulator and reference controller; exact
//! translation flows, the controller's recorded results, pings to the
//! gateways across the translated VLAN, one VM going down (its flows go,
//! the other VM keeps working), and the status document (docs/protocol.md).

mod common;
use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn e2e_demo_path() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("e1", &[]);
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let vlans = lab.bring_up(&[&vm1, &vm2]);
    let (v1, v2) = (vlans[0], vlans[1]);
    for v in [v1, v2] {
        assert!((3000..=3099).contains(&v), "VDP VLAN {v} not from the pool");
    }
    assert_ne!(v1, v2, "two networks, two VLANs");
    // The leaf agrees.
    assert_eq!(lab.leaf_vlan(&vm1.port_uuid), Some(v1));
    assert_eq!(lab.leaf_vlan(&vm2.port_uuid), Some(v2));

    // The controller's recorded update_vm_result calls carry both VLANs.
    for (vm, v) in [(&vm1, v1), (&vm2, v2)] {
        let calls = lab.results_for(&vm.port_uuid, 0);
        let c = calls
            .last()
            .unwrap_or_else(|| panic!("no result call for {}", vm.name));
        assert_eq!(c["status"], 200, "{c}");
        assert_eq!(c["context"]["agent"], lab.host_id.as_str(), "{c}");
        assert_eq!(c["args"]["result"], "SUCCESS", "{c}");
        assert_eq!(c["args"]["local_vlan"], vm.local_vlan, "{c}");
        assert_eq!(c["args"]["vdp_vlan"], v, "{c}");
        assert!(
            c["args"]["fail_reason"].is_null() || c["args"]["fail_reason"] == "",
            "{c}"
        );
    }

    // Exact translation flows on both bridges.
    let want = lab.expected_flows(&[(11, v1), (12, v2)]);
    assert_eq!(lab.translation_flows(), Some(want), "{}", lab.diag());

    // Each VM reaches its gateway across its VDP VLAN.
    for vm in [&vm1, &vm2] {
        assert_eq!(
            lab.ping_count(vm, 3),
            3,
            "{} -> {}\n{}",
            vm.name,
            vm.gw,
            lab.diag()
        );
    }

    // status --json: every docs/protocol.md key, and the VSIs.
    let st = lab.status();
    let keys: BTreeSet<&str> = st
        .as_object()
        .expect("status object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "host_id", "version", "uplink", "vsis", "queues", "threads", "server",
    ] {
        assert!(keys.contains(k), "status lacks {k}: {st}");
    }
    assert_eq!(st["host_id"], lab.host_id.as_str());
    assert!(st["version"].is_string());
    assert_eq!(st["uplink"]["phy"], "eth2", "{st}");
    assert_eq!(st["uplink"]["veth"], "LLDPLeth2", "{st}");
    assert_eq!(st["uplink"]["detected"], true, "{st}");
    assert_eq!(st["uplink"]["fail_reason"], "", "{st}");
    assert_eq!(st["queues"]["main"], 0, "{st}");
    assert_eq!(st["queues"]["err"], 0, "{st}");
    let threads = st["threads"].as_object().expect("threads");
    assert!(!threads.is_empty());
    assert!(threads.values().all(|v| v == "alive"), "{st}");
    assert!(st["server"]["last_ok"].is_string(), "{st}");
    assert!(st["server"].get("last_error").is_some(), "{st}");
    assert_eq!(st["server"]["pending_results"], 0, "{st}");
    let vsis = st["vsis"].as_array().expect("vsis");
    assert_eq!(vsis.len(), 2, "{st}");
    for (vm, v) in [(&vm1, v1), (&vm2, v2)] {
        let e = vsis
            .iter()
            .find(|e| e["port_uuid"] == vm.port_uuid.as_str())
            .unwrap_or_else(|| panic!("no VSI for {}: {st}", vm.name));
        assert_eq!(e["mac"], vm.mac.as_str());
        assert_eq!(e["net_uuid"], vm.net_uuid.as_str());
        assert_eq!(e["segmentation_id"], vm.segment);
        assert_eq!(e["local_vlan"], vm.local_vlan);
        assert_eq!(e["vdp_vlan"], v);
        assert_eq!(e["result"], "SUCCESS");
        assert!(e["fail_reason"].is_null(), "{e}");
    }

    // vm1 goes down: the agent reports it (the original answers SUCCESS for
    // a completed deassociation), its network's flows go, vm2 keeps working.
    let since = lab.last_call_id();
    lab.port_del(&vm1);
    let p = lab
        .wait_result(&vm1.port_uuid, "SUCCESS", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no result for vm1 down\n{}", lab.diag()));
    assert_eq!(p["status"], "down");
    let c = lab.results_for(&vm1.port_uuid, since);
    // (Delivery is at-least-once: a repeated answer is allowed, a
    // different one is not.)
    assert!(!c.is_empty(), "{c:?}");
    assert!(c.iter().all(|c| c["args"]["result"] == "SUCCESS"), "{c:?}");
    let want = lab.expected_flows(&[(12, v2)]);
    assert!(
        wait_until(Duration::from_secs(10), || lab.translation_flows().as_ref()
            == Some(&want)),
        "vm1's flows not removed\n{}",
        lab.diag()
    );
    assert_eq!(
        lab.leaf_vlan(&vm1.port_uuid),
        None,
        "deassociated at the leaf"
    );
    assert_eq!(lab.leaf_stats()["deassoc"], 1);
    assert_eq!(
        lab.ping_count(&vm2, 2),
        2,
        "vm2 lost its gateway\n{}",
        lab.diag()
    );
    assert_eq!(lab.ping_count(&vm1, 1), 0, "vm1 still reaches its gateway");
    let st = lab.status();
    let vsis = st["vsis"].as_array().expect("vsis");
    assert!(
        vsis.iter()
            .all(|e| e["port_uuid"] != vm1.port_uuid.as_str()),
        "vm1 still in status: {st}"
    );

    // The bridge rejects a new network's VSI: reported as the original
    // does, SUCCESS with the local VLAN, VDP VLAN -1 and the bridge's
    // reason (type-strict), and no translation flow for it.
    lab.leaf_ctl(&["reject-next", "2"]);
    let vm3 = Vm::new(3, 3, 13);
    let since = lab.last_call_id();
    lab.vm_add(&vm3);
    lab.port_add(&vm3);
    let got = wait_for(Duration::from_secs(20), || {
        lab.results_for(&vm3.port_uuid, since).last().cloned()
    })
    .unwrap_or_else(|| panic!("no result for vm3\n{}", lab.diag()));
    assert_eq!(
        got["args"],
        serde_json::json!({"port_uuid": vm3.port_uuid, "result": "SUCCESS",
            "fail_reason": "Error returned by Bridge: Insufficient resources at bridge",
            "local_vlan": 13, "vdp_vlan": -1}),
        "{got}"
    );
    // The VSI stays in the table and is asked again: the leaf assigns a
    // VLAN this time, the controller is told SUCCESS with it and the
    // network's flows go in.
    let p = lab
        .wait_port(&vm3.port_uuid, Duration::from_secs(40), |p| {
            p["vdp_vlan"].as_i64().is_some_and(|v| v > 0)
        })
        .unwrap_or_else(|| panic!("vm3 never got a VLAN\n{}", lab.diag()));
    let v3 = p["vdp_vlan"].as_u64().unwrap() as u16;
    assert_eq!(p["result"], "SUCCESS", "{p}");
    let want3 = lab.expected_flows(&[(12, v2), (13, v3)]);
    assert!(
        wait_until(Duration::from_secs(10), || lab.translation_flows().as_ref()
            == Some(&want3)),
        "{}",
        lab.diag()
    );
    assert!(lab.agent_alive());
}
