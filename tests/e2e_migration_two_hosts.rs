//! A live migration between the two hosts of `HOSTS=2 scripts/lab` (two
//! compute netns, each with its own OVS, station lldpad and agent, on two
//! ports of one leaf; lab name `mt`), driven by the reference controller
//! in Nova's order (`arriving` to the destination, the switchover, then
//! `arrived` to it and `left` to the source; or `aborted`).
//!
//! Proves, with both hosts' translation flows sampled every 50 ms:
//! - before the switchover the leaf holds the destination's
//!   pre-association (`preassoc-rr`, hint `to`) with the VLAN the
//!   destination's flows already map, and the controller has the
//!   destination's SUCCESS (ready);
//! - after it the VSI is associated on the destination's port with hint
//!   `to`, the source deassociated it (its copy is gone from the source's
//!   port), the destination reported SUCCESS again, the VM reaches its
//!   gateway through the destination, and the source's flows of a network
//!   that still has another port there never moved;
//! - an aborted migration leaves nothing behind on the destination (leaf,
//!   station lldpad, agent, flows) and the VM goes on through the source.

mod common;
use common::*;
use std::time::Duration;

/// The leaf's entries (one per port holding a copy) for a VSI:
/// (port, mode, hints, vlan).
fn copies(lab: &Lab, vm: &Vm) -> Vec<(String, String, String, u64)> {
    lab.leaf_vsis()
        .iter()
        .filter(|e| e["uuid"] == vm.port_uuid.as_str())
        .map(|e| {
            let t = |k: &str| e[k].as_str().unwrap_or("?").to_string();
            (
                t("port"),
                t("mode"),
                t("hints"),
                e["vlan"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn row(port: &str, mode: &str, hints: &str, vlan: u16) -> (String, String, String, u64) {
    (port.into(), mode.into(), hints.into(), u64::from(vlan))
}

#[test]
fn preassociated_switchover_and_abort_between_two_hosts() {
    if skip() {
        return;
    }
    let lab = Lab::up_running_hosts("mt", 2, &[]);
    let (h1, h2) = (lab.on_host(1), lab.on_host(2));
    // vm1 migrates; vm3 stays on host 1 in the same network; vm2 (network
    // 2) is the aborted one.
    let vm1 = Vm::new(1, 1, 11);
    let vm3 = Vm::new(3, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let got = h1.bring_up(&[&vm1, &vm3, &vm2]);
    let (v1, v2) = (got[0], got[2]);
    let (p1, p2) = (h1.leaf_port(), h2.leaf_port());

    // ---- a migration with pre-association ----
    h2.vm_plug(&vm1, 21);
    let m = lab.migrate(&vm1, &h2.host_id, true);
    assert!(m.get("migration").is_some(), "{m}");
    let ready = lab.migrate_wait(&vm1, "ready", 20);
    assert_eq!(ready["matched"], true, "{ready}\n{}", h2.diag());
    let mut held = copies(&lab, &vm1);
    held.sort();
    assert!(
        held.contains(&row(&p2, "preassoc-rr", "to", v1)),
        "pre-association at the destination's port: {held:?}"
    );
    let r = h2.results_for(&vm1.port_uuid, 0);
    let ready_report = r
        .iter()
        .find(|c| c["context"]["agent"] == h2.host_id.as_str())
        .unwrap_or_else(|| panic!("no report from host 2: {r:?}"));
    assert_eq!(ready_report["args"]["result"], "SUCCESS", "{ready_report}");
    assert_eq!(ready_report["args"]["vdp_vlan"], v1, "{ready_report}");
    // The destination maps the VLAN before the switchover.
    let want2 = h2.expected_flows(&[(21, v1)]);
    assert_eq!(h2.translation_flows(), Some(want2.clone()), "{}", h2.diag());
    assert_eq!(
        h2.agent_vsi(&vm1.port_uuid).expect("vsi")["mode"],
        "preassoc-rr"
    );
    let want1 = h1.expected_flows(&[(11, v1), (12, v2)]);
    let s1 = h1.sample_flows(&want1);
    let s2 = h2.sample_flows(&want2);

    // The switchover: the VM moves, then `arrived` to host 2, `left` to 1.
    let since = lab.last_call_id();
    let took = h2.vm_move(&vm1);
    let sw = lab.migrate_switchover(&vm1);
    assert!(sw.get("migration").is_some() || sw.is_object(), "{sw}");
    let done = lab.migrate_wait(&vm1, "done", 20);
    assert_eq!(done["matched"], true, "{done}");
    let ok = wait_until(Duration::from_secs(10), || {
        copies(&lab, &vm1) == [row(&p2, "assoc", "to", v1)]
    });
    assert!(ok, "after the switchover: {:?}", copies(&lab, &vm1));
    let hist = lab.leaf_ctl(&["history"])["history"].clone();
    let deassoc_at_source = hist.as_array().into_iter().flatten().any(|e| {
        e["uuid"] == vm1.port_uuid.as_str() && e["port"] == p1.as_str() && e["mode"] == "deassoc"
    });
    assert!(deassoc_at_source, "no deassoc from the source: {hist}");
    let arrived = wait_for(Duration::from_secs(10), || {
        h2.results_for(&vm1.port_uuid, since).into_iter().find(|c| {
            c["context"]["agent"] == h2.host_id.as_str() && c["args"]["result"] == "SUCCESS"
        })
    })
    .unwrap_or_else(|| panic!("no SUCCESS from host 2 after arrived\n{}", h2.diag()));
    assert_eq!(arrived["args"]["vdp_vlan"], v1, "{arrived}");
    assert_eq!(h2.agent_vsi(&vm1.port_uuid).expect("vsi")["mode"], "assoc");
    assert!(
        h1.agent_vsi(&vm1.port_uuid).is_none(),
        "host 1 still holds vm1"
    );
    assert!(h2.wait_ping(&vm1, Duration::from_secs(5)), "{}", h2.diag());
    let (s1, s2) = (s1.finish(), s2.finish());
    for (h, s) in [("host 1", &s1), ("host 2", &s2)] {
        assert!(s.missing.is_empty(), "{h}: flows missing {:?}", s.missing);
        assert!(
            s.rewrites.is_empty(),
            "{h}: flows rewritten {:?}",
            s.rewrites
        );
    }
    assert!(h1.ping(&vm3, 2), "vm3 (same network, stays on host 1)");
    eprintln!("re-plug took {took:?}");
    h1.vm_unplug(&vm1);

    // ---- an aborted migration ----
    h2.vm_plug(&vm2, 22);
    let m = lab.migrate(&vm2, &h2.host_id, true);
    assert!(m.get("migration").is_some(), "{m}");
    let ready = lab.migrate_wait(&vm2, "ready", 20);
    assert_eq!(ready["matched"], true, "{ready}");
    assert!(copies(&lab, &vm2).contains(&row(&p2, "preassoc-rr", "to", v2)));
    assert_eq!(
        h2.translation_flows(),
        Some(h2.expected_flows(&[(21, v1), (22, v2)]))
    );
    let a = lab.migrate_abort(&vm2);
    assert!(a.is_object(), "{a}");
    let ok = wait_until(Duration::from_secs(10), || {
        copies(&lab, &vm2) == [row(&p1, "assoc", "none", v2)]
            && h2.agent_vsi(&vm2.port_uuid).is_none()
            && !h2.station_vsis().contains(&vm2.port_uuid)
            && h2.translation_flows() == Some(h2.expected_flows(&[(21, v1)]))
    });
    assert!(
        ok,
        "after the abort: leaf {:?}, host 2 flows {:?}\n{}",
        copies(&lab, &vm2),
        h2.translation_flows(),
        h2.diag()
    );
    assert!(h1.ping(&vm2, 2), "vm2 goes on through host 1");
    assert_eq!(h1.agent_vsi(&vm2.port_uuid).expect("vsi")["mode"], "assoc");
}
