//! VDP associate / deassociate over lldpad's control socket
//! (`lldpad::clif::ClifSet`, `LldpadDriver::set_request_socket`) against a
//! real station lldpad and the project's leaf simulator in two network
//! namespaces (root; lab names `pcs*`/`pcl*`).
//!
//! Proves: VLANs assigned by the bridge, the bridge's rejects with the same
//! fail reasons as the vdptool path (tests/lldpad_vdp_leaf.rs), KEEP as
//! pending, deassociation, all without one vdptool process; a socket that
//! cannot be used (no lldpad where it is created) falls back to vdptool
//! with the same results.

use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::api::config::VdpConfig;
use vdp_agent::api::lldpad::clif::{ClifQuery, ClifSet, SetReply};
use vdp_agent::api::lldpad::vdptool::{self, DEASSOC_NO_REASON};
use vdp_agent::api::lldpad::vsi::{LldpadDriver, VsiRequest};
use vdp_agent::api::lldpad::wire::VdpEventKind;
use vdp_agent::lab::netns::{self, Netns};

mod leaf_station;
use leaf_station::{LeafStation as Lab, Tags};

const TAGS: Tags = Tags {
    sta: "pcs",
    leaf: "pcl",
    sta_if: "pcS",
    leaf_if: "pcL",
    dir: "pc-leaf",
};

impl Lab {
    fn at(n: u32) -> Lab {
        Lab::new(&TAGS, n)
    }

    fn driver(&self, ns: &str) -> LldpadDriver {
        let runner = Arc::new(self.sta.runner(Duration::from_secs(10)));
        let d = LldpadDriver::new(runner, &self.sta_if, VdpConfig::default());
        d.set_query_socket(Some(ClifQuery::in_netns(ns)));
        d.set_request_socket(Some(ClifSet::in_netns(ns)));
        d
    }

    fn listing(&self) -> String {
        netns::vdptool_listing(&self.sta, &self.sta_if).unwrap()
    }
}

fn req(n: u8, gid: u32) -> VsiRequest {
    VsiRequest {
        port_uuid: format!("5eaf0000-0000-4000-8000-0000000001{n:02x}"),
        vm_mac: format!("fa:16:3e:00:1f:{n:02x}"),
        net_uuid: format!("00000000-0000-4000-8000-0000000{gid:05}"),
        segmentation_id: gid,
        oui: None,
    }
}

/// The same scenario through the socket (`via_socket`) or, with an unusable
/// socket, through vdptool: same results; returns (vdptool processes,
/// socket requests).
fn scenario(lab: &Lab, d: &LldpadDriver, base: u8) -> (u64, u64) {
    // VLANs from the leaf, one per group.
    let (r1, r2) = (req(base + 1, 40001), req(base + 2, 40001));
    let a1 = d.associate(&r1);
    let v1 = a1.vdp_vlan.expect("VLAN from the leaf");
    assert!((3001..=3010).contains(&v1), "{a1:?}");
    assert_eq!((a1.fail_reason, a1.pending), (None, false));
    assert_eq!(d.associate(&r2).vdp_vlan, Some(v1));
    let l = lab.listing();
    let f = format!("filter = {v1}-{}-40001", r1.vm_mac);
    assert!(l.contains(&f), "{l}");

    // Rejects: the texts of the vdptool path.
    let r3 = req(base + 3, 40003);
    lab.ctl("reject-next 5");
    assert_eq!(
        d.associate(&r3).fail_reason.as_deref(),
        Some("Error returned by Bridge: Invalid VID, GroupID or MAC address field")
    );
    lab.ctl("reject-next 4 hard");
    let r5 = req(base + 5, 40005);
    assert_eq!(
        d.associate(&r5).fail_reason.as_deref(),
        Some(DEASSOC_NO_REASON)
    );
    assert!(!lab.listing().contains(&r3.port_uuid));

    // KEEP on a new assoc: no event -> pending after the 5 s wait.
    let r4 = req(base + 4, 40004);
    lab.ctl("reject-next 2 keep");
    let t = Instant::now();
    let a4 = d.associate(&r4);
    assert!(a4.pending, "{a4:?}");
    assert!(t.elapsed() < Duration::from_secs(8));

    // Deassociate: gone from lldpad.
    for r in [&r1, &r2, &r4] {
        let rep = d.deassociate(&r.port_uuid);
        assert_eq!(rep.fail_reason, None, "{rep:?}");
    }
    let gone = netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
        let l = lab.listing();
        (!l.contains(&r1.port_uuid) && !l.contains(&r2.port_uuid)).then_some(())
    });
    assert!(gone.is_some(), "{}", lab.listing());
    (d.vdptool_calls(), d.socket_requests())
}

#[test]
fn associate_and_deassociate_over_the_socket_spawn_no_vdptool() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let lab = Lab::at(1);
    let d = lab.driver(lab.sta.name());
    let (calls, requests) = scenario(&lab, &d, 0);
    assert_eq!(calls, 0, "no vdptool process");
    // 5 associates (r2 adopted? no: another VSI, its own associate) + 3 deassocs
    assert!(requests >= 8, "{requests} socket requests");

    // The bare request: the VSI's own event, matched by uuid.
    let cfg = VdpConfig::default();
    let r = req(9, 40009);
    let args = vdptool::VsiArgs {
        uuid: &r.port_uuid,
        mac: &r.vm_mac,
        gid: r.segmentation_id,
        vlan: 0,
        oui: None,
    };
    let cmd =
        vdptool::request_command(&lab.sta_if, &cfg, vdptool::Mode::Assoc, &args, true).unwrap();
    let c = ClifSet::in_netns(lab.sta.name());
    match c.send(&cmd, &r.port_uuid).unwrap() {
        SetReply::Taken { event: Some(ev) } => {
            assert_eq!(ev.kind, VdpEventKind::Associated, "{ev:?}");
            assert!(
                ev.vlan.is_some_and(|v| (3001..=3010).contains(&v)),
                "{ev:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The same request again while lldpad holds it with VLAN 0 in the
    // filter: lldpad refuses a different filter ("Invalid parameters").
    match c.send(&cmd, &r.port_uuid).unwrap() {
        SetReply::Refused { status, text } => {
            assert_eq!((status, text.as_str()), (5, "FAILED: Invalid parameters"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unusable_socket_falls_back_to_vdptool() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let lab = Lab::at(2);
    let empty = Netns::create(&netns::unique("pce", 2)).expect("netns");
    let d = lab.driver(empty.name());
    let (calls, requests) = scenario(&lab, &d, 0x20);
    assert_eq!(requests, 0);
    assert!(calls >= 8, "{calls} vdptool processes");
}

/// The leaf's count of associate requests it answered (`leaf-ctl stats`).
fn leaf_assocs(lab: &Lab) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&lab.ctl("stats")).expect("stats JSON");
    v["stats"]["assoc"].as_u64().expect("assoc count")
}

#[test]
fn a_new_port_is_associated_without_a_query_and_a_held_vsi_is_still_adopted() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let lab = Lab::at(3);
    let d = lab.driver(lab.sta.name());
    d.allow_fresh_requests();
    let (r, r2) = (req(0x41, 40041), req(0x42, 40041));
    // After the first bulk resync, a VSI the driver knows nothing of: the
    // request alone, no query.
    let (q0, s0) = (d.socket_queries(), d.socket_requests());
    let a = d.associate(&r);
    let vlan = a.vdp_vlan.expect("VLAN from the leaf");
    assert_eq!(
        d.socket_queries() - q0,
        0,
        "no query before a new VSI's associate"
    );
    assert_eq!(d.socket_requests() - s0, 1);
    assert_eq!(d.associate(&r2).vdp_vlan, Some(vlan));
    assert_eq!(d.vdptool_calls(), 0);

    // An agent started anew, lldpad holding its VSIs: until its first bulk
    // resync it asks first and adopts the association; nothing reaches the
    // bridge.
    let assocs = leaf_assocs(&lab);
    let fresh = lab.driver(lab.sta.name());
    let (q1, s1) = (fresh.socket_queries(), fresh.socket_requests());
    let b = fresh.associate(&r);
    assert_eq!(
        (b.vdp_vlan, b.fail_reason.as_deref(), b.pending),
        (Some(vlan), None, false)
    );
    assert_eq!(fresh.socket_queries() - q1, 1);
    assert_eq!(fresh.socket_requests() - s1, 0);
    assert_eq!(leaf_assocs(&lab), assocs, "no associate reached the bridge");

    // After it, a VSI lldpad holds without the driver's record: lldpad
    // refuses the bare request or the bridge answers it again; either way
    // the port has its VLAN, without vdptool.
    fresh.allow_fresh_requests();
    let c = fresh.associate(&r2);
    assert_eq!(
        (c.vdp_vlan, c.fail_reason.as_deref(), c.pending),
        (Some(vlan), None, false)
    );
    assert_eq!(fresh.vdptool_calls(), 0);
}
