//! The flows this agent owns and how to reconcile them with what a bridge
//! holds: the four LLDP/ECP pass-through flows between the uplink and the
//! LLDPO veth (priority 99), the per-network VLAN translation flows
//! (external bridge priority 4: local -> VDP VLAN; integration bridge
//! priority 3: VDP -> local VLAN), and the diff that turns "present" into
//! "desired" with as few flow-mods as possible.
//!
//! Owns nothing; pure functions over `ofctl::Flow`.

use super::ofctl::{Flow, FlowOp};

/// Nearest-customer-bridge group address used by LLDP, ECP and VDP.
pub const NCB_DMAC: &str = "01:80:c2:00:00:00";
/// LLDP ethertype.
pub const LLDP_ETYPE: &str = "0x88cc";
/// ECP (802.1Qbg VDP22 transport) ethertype.
pub const VDP22_ETYPE: &str = "0x8940";
/// Priority of the pass-through flows (`VDP_FLOW_PRIO`).
pub const VDP_FLOW_PRIO: u16 = 99;
/// Priority of the local -> VDP VLAN flow on the external bridge.
pub const VM_EX_PRIO: u16 = 4;
/// Priority of the VDP -> local VLAN flow on the integration bridge.
pub const VM_INT_PRIO: u16 = 3;

/// The four pass-through flows, in the original's order: LLDP out, LLDP in,
/// ECP out, ECP in.
pub fn passthrough_flows(lldp_ovs_ofport: u32, uplink_ofport: u32) -> Vec<Flow> {
    let mut v = Vec::with_capacity(4);
    for etype in [LLDP_ETYPE, VDP22_ETYPE] {
        for (from, to) in [
            (lldp_ovs_ofport, uplink_ofport),
            (uplink_ofport, lldp_ovs_ofport),
        ] {
            v.push(Flow::ours(
                VDP_FLOW_PRIO,
                &[
                    ("in_port", from.to_string()),
                    ("dl_dst", NCB_DMAC.to_string()),
                    ("dl_type", etype.to_string()),
                ],
                &format!("output:{to}"),
            ));
        }
    }
    v
}

/// A pass-through-like flow (whoever installed it): destination NCB and
/// ethertype LLDP or ECP. The original deletes these by that match alone.
pub fn is_passthrough_class(f: &Flow) -> bool {
    f.get("dl_dst") == Some(NCB_DMAC)
        && matches!(f.get("dl_type"), Some(LLDP_ETYPE) | Some(VDP22_ETYPE))
}

/// The original's `delete_vdp_flows` / `glob_delete_vdp_flows`: non-strict
/// deletes of every NCB LLDP and ECP flow, any cookie.
pub fn passthrough_glob_deletes() -> Vec<FlowOp> {
    [LLDP_ETYPE, VDP22_ETYPE]
        .iter()
        .map(|t| FlowOp::Delete(format!("dl_dst={NCB_DMAC},dl_type={t}")))
        .collect()
}

/// External bridge: `priority=4,in_port=<ext patch>,dl_vlan=<local>,actions=mod_vlan_vid:<vdp>,normal`.
pub fn vm_ex_flow(ex_patch_ofport: u32, local_vlan: u16, vdp_vlan: u16) -> Flow {
    Flow::ours(
        VM_EX_PRIO,
        &[
            ("in_port", ex_patch_ofport.to_string()),
            ("dl_vlan", local_vlan.to_string()),
        ],
        &format!("mod_vlan_vid:{vdp_vlan},normal"),
    )
}

/// Integration bridge: `priority=3,in_port=<int patch>,dl_vlan=<vdp>,actions=mod_vlan_vid:<local>,normal`.
pub fn vm_int_flow(int_patch_ofport: u32, local_vlan: u16, vdp_vlan: u16) -> Flow {
    Flow::ours(
        VM_INT_PRIO,
        &[
            ("in_port", int_patch_ofport.to_string()),
            ("dl_vlan", vdp_vlan.to_string()),
        ],
        &format!("mod_vlan_vid:{local_vlan},normal"),
    )
}

/// `mod_vlan_vid:N` target of a translation flow's actions.
pub fn mod_vlan_target(f: &Flow) -> Option<u16> {
    let rest = f.actions.strip_prefix("mod_vlan_vid:")?;
    rest.split(',').next()?.parse().ok()
}

/// Flow-mods that turn `present` into `desired` for the flows `managed`
/// selects: every desired flow that is not present exactly (cookie,
/// priority, match, actions) is added; every managed present flow that is
/// not desired is strictly deleted, unless a desired flow has the same
/// match (then the add replaces it in place). Deletes come first.
pub fn reconcile(
    present: &[Flow],
    desired: &[Flow],
    managed: impl Fn(&Flow) -> bool,
) -> Vec<FlowOp> {
    let mut ops = Vec::new();
    for p in present.iter().filter(|p| managed(p)) {
        if desired.contains(p) || desired.iter().any(|d| d.same_match(p)) {
            continue;
        }
        ops.push(FlowOp::DeleteStrict(p.clone()));
    }
    for d in desired {
        if !present.contains(d) {
            ops.push(FlowOp::Add(d.clone()));
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::super::ofctl::{parse_dump_flows, FLOW_COOKIE};
    use super::*;

    #[test]
    fn passthrough_text() {
        let f = passthrough_flows(3, 2);
        let t: Vec<String> = f.iter().map(|f| f.add_text()).collect();
        assert_eq!(
            t[0],
            "cookie=0x7664706167656e74,priority=99,dl_dst=01:80:c2:00:00:00,dl_type=0x88cc,in_port=3,actions=output:2"
        );
        assert_eq!(
            t[3],
            "cookie=0x7664706167656e74,priority=99,dl_dst=01:80:c2:00:00:00,dl_type=0x8940,in_port=2,actions=output:3"
        );
        assert!(f.iter().all(is_passthrough_class));
    }

    #[test]
    fn reconcile_minimal() {
        let dump = " cookie=0x7664706167656e74, priority=99,in_port=3,dl_dst=01:80:c2:00:00:00,dl_type=0x88cc actions=output:2\n \
                    cookie=0x7664706167656e74, priority=99,in_port=2,dl_dst=01:80:c2:00:00:00,dl_type=0x88cc actions=output:3\n \
                    priority=99,in_port=7,dl_dst=01:80:c2:00:00:00,dl_type=0x8940 actions=output:2\n \
                    priority=0 actions=NORMAL\n";
        let present = parse_dump_flows(dump);
        let want = passthrough_flows(3, 2);
        let ops = reconcile(&present, &want, is_passthrough_class);
        assert_eq!(ops.len(), 3, "{ops:?}");
        assert!(matches!(&ops[0], FlowOp::DeleteStrict(f) if f.get("in_port") == Some("7")));
        assert!(matches!(&ops[1], FlowOp::Add(f) if f == &want[2]));
        assert!(matches!(&ops[2], FlowOp::Add(f) if f == &want[3]));
        let present: Vec<Flow> = want.clone();
        assert!(reconcile(&present, &want, is_passthrough_class).is_empty());
    }

    #[test]
    fn vm_flows() {
        let ex = vm_ex_flow(1, 5, 3003);
        assert_eq!(
            ex.add_text(),
            "cookie=0x7664706167656e74,priority=4,dl_vlan=5,in_port=1,actions=mod_vlan_vid:3003,normal"
        );
        let int = vm_int_flow(2, 5, 3003);
        assert_eq!(int.get("dl_vlan"), Some("3003"));
        assert_eq!(mod_vlan_target(&int), Some(5));
        assert_eq!(int.cookie, FLOW_COOKIE);
    }
}
