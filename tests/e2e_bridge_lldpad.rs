//! A VDP association made by the agent through OVS (LLDPL/LLDPO veth pair,
//! pass-through flows, uplink) reaches a real bridge-role lldpad on the
//! other side of the uplink. Debian's lldpad in bridge role answers every
//! association with VLAN 0 ("no VLAN yet"), so the agent reports what the
//! original reports: SUCCESS with the local VLAN, VDP VLAN -1 and no
//! reason, while the station shows the bridge's answer.

mod common;

use common::{Lab, Vm};
use serde_json::Value;
use std::time::Duration;

#[test]
fn association_through_ovs_reaches_bridge_role_lldpad() {
    if common::skip() {
        return;
    }
    let lab = Lab::up("br1", &[("LEAF_KIND", "lldpad")]);
    lab.start_server();
    lab.start_agent();
    let up = common::wait_for(Duration::from_secs(30), || {
        (lab.status()["uplink"]["detected"] == Value::Bool(true)).then_some(())
    });
    assert!(
        up.is_some(),
        "uplink with a bridge-role lldpad: {}",
        lab.agent_log()
    );
    // The bridge's LLDP/EVB arrived through OVS on the lldpad-side veth.
    let tlv = lab.host_ok(&[
        "lldptool",
        "get-tlv",
        "-n",
        "-i",
        "LLDPLeth2",
        "-g",
        "ncb",
        "-V",
        "evb",
    ]);
    assert!(tlv.contains("mode:bridge"), "{tlv}");
    let vm = Vm::new(1, 1, 5);
    lab.vm_add(&vm);
    lab.port_add(&vm);
    let p = lab
        .wait_port(&vm.port_uuid, Duration::from_secs(30), |p| {
            !p["result"].is_null()
        })
        .unwrap_or_else(|| panic!("no result: {}", lab.agent_log()));
    assert_eq!(p["result"], "SUCCESS", "{p}");
    assert!(p["fail_reason"].is_null(), "{p}");
    assert!(p["vdp_vlan"] == -1 || p["vdp_vlan"].is_null(), "{p}");
    assert!(p["local_vlan"].as_i64().is_some_and(|l| l > 0), "{p}");
    // Exactly what the controller got (type-strict): SUCCESS, the local
    // VLAN, VDP VLAN -1, fail_reason null.
    let calls = lab.calls("update_vm_result");
    let sent = calls
        .iter()
        .map(|c| &c["args"])
        .find(|a| a["port_uuid"] == vm.port_uuid.as_str())
        .unwrap_or_else(|| panic!("no update_vm_result: {calls:?}"));
    assert_eq!(
        *sent,
        serde_json::json!({"port_uuid": vm.port_uuid, "result": "SUCCESS", "fail_reason": null,
                           "local_vlan": p["local_vlan"], "vdp_vlan": -1}),
        "{calls:?}"
    );
    // The bridge answered (hints 0, VLAN 0 echoed): the ECP/VDP exchange
    // crossed OVS both ways.
    let q = lab.host_ok(&[
        "vdptool",
        "-t",
        "-i",
        "LLDPLeth2",
        "-V",
        "assoc",
        "-c",
        "mode=assoc",
    ]);
    assert!(q.contains(&format!("0-{}-{}", vm.mac, vm.segment)), "{q}");
    assert!(q.contains("hints = 0"), "{q}");
}
