//! The agent's side of a live migration on one host (real OVS, real
//! station lldpad, the project's leaf, the reference controller; lab names
//! `mg*`): `vm_migration` events injected at the controller as a
//! migration-aware controller sends them (docs/protocol.md).
//!
//! Proves, with the translation flows sampled every 50 ms and OVS's flow
//! monitor watched throughout:
//! - `arriving` pre-associates (the leaf holds `preassoc-rr` with the hint
//!   `to` and the VLAN of the segment), installs the network's flows for
//!   that VLAN ahead of the switchover (a network new on this host gets
//!   them too) and reports SUCCESS (the destination is ready);
//! - `arrived` upgrades the VSI to `assoc` at the leaf (hint `to`) with the
//!   same VLAN: no flow is touched, and the VM's gateway answers;
//! - `aborted` leaves nothing of the port behind (leaf, station lldpad,
//!   agent) and removes the flows of a network it alone had;
//! - `left` deassociates; the network's flows stay for its other port,
//!   whose pings never stop.

mod common;

use common::{Lab, Vm};
use serde_json::{json, Value};
use std::time::Duration;

/// The `vm_migration` payload of `vm` for `phase`.
fn migration(lab: &Lab, vm: &Vm, phase: &str) -> Value {
    let mut v = vm.vm_info(&lab.host_id, "up");
    let o = v.as_object_mut().expect("object");
    o.remove("status");
    o.insert("phase".into(), json!(phase));
    v
}

/// Send a migration step and wait for the agent's report of it.
fn step(lab: &Lab, vm: &Vm, phase: &str) -> Value {
    let since = lab.last_call_id();
    lab.send_event(json!("vm_migration"), migration(lab, vm, phase));
    let mut got = None;
    let ok = common::wait_until(Duration::from_secs(15), || {
        got = lab.results_for(&vm.port_uuid, since).into_iter().last();
        got.is_some()
    });
    assert!(ok, "{} {phase}: no result\n{}", vm.name, lab.diag());
    got.unwrap()["args"].clone()
}

/// (mode, hints, vlan) of the VSI at the leaf.
fn at_leaf(lab: &Lab, vm: &Vm) -> Option<(String, String, u16)> {
    lab.leaf_vsis()
        .iter()
        .find(|v| v["uuid"] == vm.port_uuid.as_str())
        .map(|v| {
            (
                v["mode"].as_str().unwrap_or("?").to_string(),
                v["hints"].as_str().unwrap_or("?").to_string(),
                v["vlan"].as_u64().unwrap_or(0) as u16,
            )
        })
}

fn gone(lab: &Lab, vm: &Vm) -> bool {
    common::wait_until(Duration::from_secs(5), || {
        at_leaf(lab, vm).is_none()
            && lab.agent_vsi(&vm.port_uuid).is_none()
            && !lab.station_vsis().contains(&vm.port_uuid)
    })
}

#[test]
fn arriving_arrived_aborted_left_on_one_host() {
    if common::skip() {
        return;
    }
    let lab = Lab::up_running("mg1", &[]);
    // A VM of network 1 that stays on this host the whole time.
    let stay = Vm::new(1, 1, 1);
    let v1 = lab.bring_up(&[&stay])[0];
    let pinger = lab.pinger(&stay);

    // arriving: a port of network 1 (flows there already) and one of
    // network 2 (new on this host), both plugged as Nova does before the
    // migration starts.
    let a = Vm::new(2, 1, 1);
    let b = Vm::new(3, 2, 2);
    lab.vm_add(&a);
    lab.vm_add(&b);
    for vm in [&a, &b] {
        let r = step(&lab, vm, "arriving");
        assert_eq!(r["result"], "SUCCESS", "{r}");
    }
    let (pa, pb) = (at_leaf(&lab, &a).expect("a"), at_leaf(&lab, &b).expect("b"));
    assert_eq!(
        (pa.0.as_str(), pa.1.as_str(), pa.2),
        ("preassoc-rr", "to", v1)
    );
    assert_eq!((pb.0.as_str(), pb.1.as_str()), ("preassoc-rr", "to"));
    let v2 = pb.2;
    assert_eq!(
        lab.agent_vsi(&b.port_uuid).expect("agent vsi")["mode"],
        "preassoc-rr"
    );
    // The flows of both networks are in place before the switchover.
    let want = lab.expected_flows(&[(1, v1), (2, v2)]);
    assert_eq!(
        lab.translation_flows().unwrap_or_default(),
        want,
        "{}",
        lab.diag()
    );
    // A pre-associated VSI does not forward at the leaf yet.
    assert_eq!(
        lab.ping_count(&b, 2),
        0,
        "gateway answered before the switchover"
    );

    // arrived: upgraded in place, the flows are never touched.
    let sampler = lab.sample_flows(&want);
    for vm in [&a, &b] {
        let r = step(&lab, vm, "arrived");
        assert_eq!(r["result"], "SUCCESS", "{r}");
        let want_vlan = if vm.segment == a.segment { v1 } else { v2 };
        assert_eq!(r["vdp_vlan"], want_vlan, "{r}");
        let l = at_leaf(&lab, vm).expect("at the leaf");
        assert_eq!(
            (l.0.as_str(), l.1.as_str(), l.2),
            ("assoc", "to", want_vlan)
        );
        assert_eq!(lab.agent_vsi(&vm.port_uuid).expect("vsi")["mode"], "assoc");
    }
    assert!(lab.wait_ping(&b, Duration::from_secs(5)), "{}", lab.diag());

    // left: port a leaves for another host; network 1 keeps its flows.
    let r = step(&lab, &a, "left");
    assert_eq!(r["result"], "SUCCESS", "{r}");
    assert!(gone(&lab, &a), "a still held: {:?}", at_leaf(&lab, &a));
    let s = sampler.finish();
    assert!(s.missing.is_empty(), "flows missing: {:?}", s.missing);
    assert!(s.rewrites.is_empty(), "flows rewritten: {:?}", s.rewrites);
    assert_eq!(lab.translation_flows().unwrap_or_default(), want);

    // aborted: a port of a network new on this host, then aborted: its
    // flows go, nothing of it stays; network 1 and 2 are untouched.
    let c = Vm::new(4, 3, 3);
    lab.vm_add(&c);
    let r = step(&lab, &c, "arriving");
    assert_eq!(r["result"], "SUCCESS", "{r}");
    let v3 = at_leaf(&lab, &c).expect("c").2;
    let with_c = lab.expected_flows(&[(1, v1), (2, v2), (3, v3)]);
    assert_eq!(lab.translation_flows().unwrap_or_default(), with_c);
    let r = step(&lab, &c, "aborted");
    assert_eq!(r["result"], "SUCCESS", "{r}");
    assert!(gone(&lab, &c), "c still held: {:?}", at_leaf(&lab, &c));
    assert_eq!(lab.translation_flows().unwrap_or_default(), want);

    // An abort of a port this host never pre-associated: nothing to do.
    let d = Vm::new(5, 1, 1);
    let r = step(&lab, &d, "aborted");
    assert_eq!(r["result"], "SUCCESS", "{r}");

    let (sent, got, summary) = pinger.finish();
    assert_eq!(sent, got, "pings of the staying VM lost: {summary}");
}
