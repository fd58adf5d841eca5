//! A VDP association made by the agent through OVS (LLDPL/LLDPO veth pair,
//! pass-through flows, uplink) reaches a real bridge-role lldpad on the
//! other side of the uplink. Debian's lldpad in bridge role answers every
//! association with VLAN 0, so the agent must report CREATE:FAIL with the
//! original's reason, while the station shows the bridge's answer.

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
    assert_eq!(p["result"], "CREATE:FAIL", "{p}");
    let reason = p["fail_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("vlan 0"), "reason: {reason}");
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
