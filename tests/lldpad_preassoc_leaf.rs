//! Pre-association at a live migration's destination through
//! `LldpadDriver` against a real station lldpad and the project's leaf
//! simulator (root; lab names `pas*`/`pal*`), over vdptool and over
//! lldpad's control socket.
//!
//! Proves: `preassoc-rr` with the hint `to` is held by the leaf with the
//! VLAN of the VSI's group and the driver learns that VLAN; a refresh round
//! keeps the pre-association (it neither upgrades it to assoc nor sends it
//! again); the arrival's assoc upgrades it in place (same VLAN, hint `to`);
//! a deassociate with the hint `from` ends it; an aborted pre-association
//! (deassociate without an assoc) leaves nothing at the leaf or in lldpad.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use vdp_agent::api::config::{Hints, VdpConfig};
use vdp_agent::api::lldpad::clif::{ClifQuery, ClifSet};
use vdp_agent::api::lldpad::vsi::{Intent, LldpadDriver, VsiRequest};
use vdp_agent::api::lldpad::wire::Mode;
use vdp_agent::lab::netns;

mod leaf_station;
use leaf_station::{LeafStation as Lab, Tags};

const TAGS: Tags = Tags {
    sta: "pas",
    leaf: "pal",
    sta_if: "paS",
    leaf_if: "paL",
    dir: "pa-leaf",
};

fn driver(lab: &Lab, via_socket: bool) -> LldpadDriver {
    let runner = Arc::new(lab.sta.runner(Duration::from_secs(10)));
    let d = LldpadDriver::new(runner, &lab.sta_if, VdpConfig::default());
    if via_socket {
        d.set_query_socket(Some(ClifQuery::in_netns(lab.sta.name())));
        d.set_request_socket(Some(ClifSet::in_netns(lab.sta.name())));
    }
    d
}

fn req(n: u8, gid: u32) -> VsiRequest {
    VsiRequest {
        port_uuid: format!("5eaf0000-0000-4000-8000-0000000002{n:02x}"),
        vm_mac: format!("fa:16:3e:00:2f:{n:02x}"),
        net_uuid: format!("00000000-0000-4000-8000-0000000{gid:05}"),
        segmentation_id: gid,
        oui: None,
    }
}

/// (uuid, mode, hints, vlan) of every VSI the leaf holds.
fn leaf_vsis(lab: &Lab) -> Vec<(String, String, String, u64)> {
    let st: Value = serde_json::from_str(&lab.ctl("status")).expect("leaf status JSON");
    st["vsis"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|v| {
            let t = |k: &str| v[k].as_str().unwrap_or("?").to_string();
            (
                t("uuid"),
                t("mode"),
                t("hints"),
                v["vlan"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

const RR_TO: Intent = Intent {
    mode: Mode::PreassocRr,
    hints: Hints::To,
};
const ASSOC_TO: Intent = Intent {
    mode: Mode::Assoc,
    hints: Hints::To,
};

fn scenario(n: u32, via_socket: bool) {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let lab = Lab::new(&TAGS, n);
    let d = driver(&lab, via_socket);
    // A VSI of the same group already associated here: the group's VLAN.
    let other = req(1, 40011);
    let v = d.associate(&other).vdp_vlan.expect("VLAN of the group");

    // 1. Pre-associate: the leaf holds it as preassoc-rr with hint `to`
    //    and the VLAN of the group, which the driver learns.
    let r = req(2, 40011);
    let a = d.associate_as(&r, RR_TO);
    assert_eq!(
        (a.vdp_vlan, a.pending, a.fail_reason.clone()),
        (Some(v), false, None),
        "{a:?}"
    );
    assert_eq!(d.intent_of(&r.port_uuid), Some(RR_TO));
    let held = |uuid: &str| {
        leaf_vsis(&lab)
            .into_iter()
            .find(|x| x.0 == uuid)
            .map(|x| (x.1, x.2, x.3))
    };
    assert_eq!(
        held(&r.port_uuid),
        Some(("preassoc-rr".into(), "to".into(), u64::from(v)))
    );

    // 2. Refresh rounds keep it pre-associated (no change to report).
    for _ in 0..3 {
        let changes = d.refresh();
        assert!(changes.iter().all(|c| c.vdp_vlan == Some(v)), "{changes:?}");
    }
    assert_eq!(
        held(&r.port_uuid),
        Some(("preassoc-rr".into(), "to".into(), u64::from(v)))
    );
    assert_eq!(d.intent_of(&r.port_uuid), Some(RR_TO));

    // 3. Arrival: assoc with `to` upgrades it in place.
    let b = d.associate_as(&r, ASSOC_TO);
    assert_eq!(
        (b.vdp_vlan, b.pending, b.fail_reason.clone()),
        (Some(v), false, None),
        "{b:?}"
    );
    assert_eq!(
        held(&r.port_uuid),
        Some(("assoc".into(), "to".into(), u64::from(v)))
    );
    assert_eq!(d.intent_of(&r.port_uuid), Some(ASSOC_TO));
    assert!(d.refresh().iter().all(|c| c.vdp_vlan == Some(v)));
    assert_eq!(held(&r.port_uuid).map(|h| h.0), Some("assoc".into()));

    // 4. A later pre-associate of the associated VSI does not step back.
    let c = d.associate_as(&r, RR_TO);
    assert_eq!(c.vdp_vlan, Some(v), "{c:?}");
    assert_eq!(held(&r.port_uuid).map(|h| h.0), Some("assoc".into()));

    // 5. Leaving: deassociate with `from`; gone at the leaf and in lldpad.
    let _ = d.deassociate_hinted(&r.port_uuid, Hints::From);
    assert!(
        netns::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            held(&r.port_uuid).is_none().then_some(())
        })
        .is_some(),
        "{:?}",
        leaf_vsis(&lab)
    );

    // 6. Aborted: pre-associated, then deassociated without an assoc.
    let s = req(3, 40012);
    let p = d.associate_as(&s, RR_TO);
    assert!(p.vdp_vlan.is_some(), "{p:?}");
    assert_eq!(held(&s.port_uuid).map(|h| h.0), Some("preassoc-rr".into()));
    let _ = d.deassociate(&s.port_uuid);
    assert!(
        netns::wait_for(Duration::from_secs(5), Duration::from_millis(50), || {
            held(&s.port_uuid).is_none().then_some(())
        })
        .is_some(),
        "{:?}",
        leaf_vsis(&lab)
    );
    let listing = netns::vdptool_listing(&lab.sta, &lab.sta_if).unwrap();
    assert!(!listing.contains(&s.port_uuid), "{listing}");
    assert_eq!(d.intent_of(&s.port_uuid), None);
    // The plain VSI of the group was never disturbed.
    assert_eq!(held(&other.port_uuid).map(|h| h.2), Some(u64::from(v)));
}

#[test]
fn preassociate_upgrade_and_end_over_vdptool() {
    scenario(1, false);
}

#[test]
fn preassociate_upgrade_and_end_over_the_control_socket() {
    scenario(2, true);
}
