//! Faults never disturb traffic whose VLAN did not change (real station
//! lldpad, the project's leaf, real userspace OVS, agent, reference
//! controller). Every test samples the translation flows every 50 ms for
//! the whole fault and watches OVS's flow monitor for any change of them
//! (`FlowSampler`), and pings where it can:
//! - two VMs sent right after the uplink came up both succeed on the first
//!   answer (no start-up race with lldpad's EVB/group-id negotiation);
//! - station lldpad restart: no sample with a flow missing, VSIs back in
//!   lldpad within 5 s;
//! - the leaf deassociates a VSI: no sample missing, re-associated within 2 s;
//! - ovs-vswitchd restart with `flow_check_s: 60`: flows back within 3 s of
//!   the new vswitchd running;
//! - agent SIGKILL + start, then SIGTERM + start: no sample missing, no
//!   flow-mod of a standing flow, no deassociation at the leaf, every port
//!   re-reported SUCCESS within 10 s each time.

mod common;

use common::{skip, wait_for, wait_until, Lab, Vm};
use serde_json::Value;
use std::time::{Duration, Instant};

fn assert_no_gap(what: &str, s: &common::FlowSamples, lab: &Lab) {
    eprintln!(
        "{what}: {} flow samples, {} missing",
        s.samples,
        s.missing.len()
    );
    assert!(s.samples >= 10, "{what}: too few samples ({})", s.samples);
    assert!(
        s.rewrites.is_empty(),
        "{what}: OVS saw {} flow-mod(s) of flows whose VLAN did not change: {:?}\n{}",
        s.rewrites.len(),
        s.rewrites,
        lab.diag()
    );
    assert!(
        s.missing.is_empty(),
        "{what}: {} of {} samples missed a translation flow; first: {:?}\n{}",
        s.missing.len(),
        s.samples,
        s.missing.first(),
        lab.diag()
    );
}

/// The results the controller recorded for a port, oldest first.
fn results(lab: &Lab, port: &str) -> Vec<Value> {
    lab.results_for(port, 0)
        .into_iter()
        .map(|c| c["args"].clone())
        .collect()
}

#[test]
fn vms_right_after_uplink_up_succeed_on_the_first_answer() {
    if skip() {
        return;
    }
    let lab = Lab::up("f1", &[]);
    lab.start_server();
    let vms = [Vm::new(1, 1, 11), Vm::new(2, 2, 12)];
    for vm in &vms {
        lab.vm_add(vm);
    }
    lab.start_agent();
    lab.wait_uplink(Duration::from_secs(30));
    // At once after the uplink is up (lldpad's negotiation may still run).
    for vm in &vms {
        lab.port_add(vm);
    }
    for vm in &vms {
        let p = lab
            .wait_result(&vm.port_uuid, "SUCCESS", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{}: no SUCCESS\n{}", vm.name, lab.diag()));
        assert!(p["vdp_vlan"].as_u64().is_some_and(|v| v > 1), "{p}");
        let first = results(&lab, &vm.port_uuid);
        assert_eq!(
            first.first().map(|a| a["result"].clone()),
            Some(Value::from("SUCCESS")),
            "{}: first answer was not SUCCESS: {first:?}\n{}",
            vm.name,
            lab.diag()
        );
    }
}

#[test]
fn station_lldpad_restart_keeps_every_flow() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("f2", &[("SYNC_TIMEOUT_S", "30")]);
    let vms = [Vm::new(1, 1, 11), Vm::new(2, 2, 12)];
    let v = lab.bring_up(&[&vms[0], &vms[1]]);
    let want = lab.expected_flows(&[(11, v[0]), (12, v[1])]);
    let pinger = lab.pinger(&vms[0]);
    let sampler = lab.sample_flows(&want);
    common::pause(Duration::from_millis(500));
    let t0 = Instant::now();
    lab.lldpad_restart();
    let answering = t0.elapsed();
    let back = wait_for(Duration::from_secs(10), || {
        vms.iter()
            .zip(&v)
            .all(|(vm, vl)| lab.station_vlan(vm) == Some(*vl))
            .then(|| t0.elapsed())
    });
    common::pause(Duration::from_secs(2));
    let s = sampler.finish();
    let (tx, rx, summary) = pinger.finish();
    let back = back.unwrap_or_else(|| panic!("VSIs not back in lldpad\n{}", lab.diag()));
    eprintln!("lldpad answering after {answering:?}; VSIs back after {back:?}; ping {rx}/{tx}");
    assert_no_gap("lldpad restart", &s, &lab);
    assert!(
        back < answering + Duration::from_secs(5),
        "VSIs back only after {back:?}"
    );
    assert!(tx >= 5 && rx == tx, "ping lost packets: {summary}");
}

#[test]
fn leaf_deassociation_keeps_the_flows_and_reassociates() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("f3", &[("SYNC_TIMEOUT_S", "30")]);
    let vms = [Vm::new(1, 1, 11), Vm::new(2, 2, 12)];
    let v = lab.bring_up(&[&vms[0], &vms[1]]);
    let want = lab.expected_flows(&[(11, v[0]), (12, v[1])]);
    let sampler = lab.sample_flows(&want);
    common::pause(Duration::from_millis(500));
    let t0 = Instant::now();
    lab.leaf_ctl(&["deassoc", &vms[0].port_uuid]);
    let back = wait_for(Duration::from_secs(5), || {
        (lab.leaf_vlan(&vms[0].port_uuid) == Some(v[0])).then(|| t0.elapsed())
    });
    common::pause(Duration::from_secs(2));
    let s = sampler.finish();
    let back = back.unwrap_or_else(|| panic!("not re-associated\n{}", lab.diag()));
    eprintln!("re-associated at the leaf after {back:?}");
    assert_no_gap("leaf deassociation", &s, &lab);
    assert!(back < Duration::from_secs(2), "took {back:?}");
    assert!(lab.ping(&vms[0], 3));
}

#[test]
fn vswitchd_restart_flows_back_within_three_seconds() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("f4", &[("FLOW_CHECK_S", "60")]);
    let vms = [Vm::new(1, 1, 11), Vm::new(2, 2, 12)];
    let v = lab.bring_up(&[&vms[0], &vms[1]]);
    let want = lab.expected_flows(&[(11, v[0]), (12, v[1])]);
    let passthrough = |lab: &Lab| {
        lab.try_flows("br-ethd")
            .map(|f| f.iter().filter(|f| f.contains("priority=99,")).count())
            .unwrap_or(0)
    };
    // `ovs-restart` returns once the new vswitchd answers.
    lab.ovs_restart();
    let t0 = Instant::now();
    let back = wait_for(Duration::from_secs(30), || {
        let want_now = lab.expected_flows(&[(11, v[0]), (12, v[1])]);
        (lab.translation_flows().as_ref() == Some(&want_now) && passthrough(&lab) == 4)
            .then(|| t0.elapsed())
    });
    let back = back.unwrap_or_else(|| panic!("flows not restored\n{}", lab.diag()));
    eprintln!("flows restored {back:?} after the new vswitchd answered (flow_check_s 60)");
    assert!(back < Duration::from_secs(3), "took {back:?}");
    let _ = want;
    for vm in &vms {
        assert!(lab.wait_ping(vm, Duration::from_secs(5)), "{}", vm.name);
    }
}

#[test]
fn agent_sigkill_or_sigterm_and_start_disturb_nothing() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("f5", &[]);
    let vms = [Vm::new(1, 1, 11), Vm::new(2, 2, 12)];
    let v = lab.bring_up(&[&vms[0], &vms[1]]);
    let want = lab.expected_flows(&[(11, v[0]), (12, v[1])]);
    let stats0 = lab.leaf_stats();
    let pinger = lab.pinger(&vms[0]);
    let sampler = lab.sample_flows(&want);
    common::pause(Duration::from_millis(500));
    // Every port re-reported SUCCESS after the start: how long it took.
    let reported = |since: u64, t0: Instant| {
        wait_for(Duration::from_secs(20), || {
            vms.iter()
                .all(|vm| {
                    lab.results_for(&vm.port_uuid, since)
                        .iter()
                        .any(|c| c["status"] == 200 && c["args"]["result"] == "SUCCESS")
                })
                .then(|| t0.elapsed())
        })
        .unwrap_or_else(|| panic!("not re-reported\n{}", lab.diag()))
    };
    let since = lab.last_call_id();
    let pid = lab.agent_pid().expect("agent pid");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        wait_until(Duration::from_secs(5), || !common::pid_alive(pid)),
        "agent survived SIGKILL"
    );
    let t0 = Instant::now();
    lab.start_agent();
    let after_kill = reported(since, t0);
    common::pause(Duration::from_secs(1));
    // The clean stop (SIGTERM) leaves everything in place too.
    let since = lab.last_call_id();
    lab.stop_agent();
    let t0 = Instant::now();
    lab.start_agent();
    let after_term = reported(since, t0);
    common::pause(Duration::from_secs(1));
    let s = sampler.finish();
    let (tx, rx, summary) = pinger.finish();
    eprintln!(
        "every port re-reported SUCCESS {after_kill:?} after the start (SIGKILL), {after_term:?} (SIGTERM); ping {rx}/{tx}"
    );
    assert_no_gap("agent SIGKILL/SIGTERM + start", &s, &lab);
    assert!(after_kill < Duration::from_secs(10), "took {after_kill:?}");
    assert!(after_term < Duration::from_secs(10), "took {after_term:?}");
    assert!(tx >= 5 && rx == tx, "ping lost packets: {summary}");
    let stats = lab.leaf_stats();
    assert_eq!(stats["deassoc"], stats0["deassoc"], "{stats}");
    for (vm, vl) in vms.iter().zip(&v) {
        assert_eq!(lab.leaf_vlan(&vm.port_uuid), Some(*vl));
    }
}

/// A controller that takes 8 s for every `update_vm_result` (timeout 10 s)
/// holds up nothing on the host: four new VMs' VSIs are at the leaf and
/// their flows installed within 3 s of their events; all four results are
/// delivered once the controller is fast again.
#[test]
fn slow_controller_does_not_hold_up_the_host() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("f6", &[]);
    lab.fault(serde_json::json!({"delay_ms": 8000, "delay_methods": ["update_vm_result"]}));
    let vms: Vec<Vm> = (1..=4u32)
        .map(|n| Vm::new(n, 1 + (n % 2), 11 + (n % 2) as u16))
        .collect();
    for vm in &vms {
        lab.vm_add(vm);
    }
    let since = lab.last_call_id();
    let t0 = Instant::now();
    for vm in &vms {
        lab.port_add(vm);
    }
    let at_leaf = wait_for(Duration::from_secs(30), || {
        let vlans: Option<Vec<u16>> = vms.iter().map(|vm| lab.leaf_vlan(&vm.port_uuid)).collect();
        let vlans = vlans?;
        let pairs: Vec<(u16, u16)> = vms.iter().map(|v| v.local_vlan).zip(vlans).collect();
        let want = lab.expected_flows(&pairs);
        let have = lab.translation_flows()?;
        want.iter().all(|w| have.contains(w)).then(|| t0.elapsed())
    });
    let at_leaf = at_leaf.unwrap_or_else(|| panic!("VSIs/flows not in place\n{}", lab.diag()));
    eprintln!("4 VSIs at the leaf and flows installed {at_leaf:?} after the events (controller 8 s per result)");
    assert!(at_leaf < Duration::from_secs(3), "took {at_leaf:?}");
    // Fast again: every result arrives.
    lab.clear_fault();
    let delivered = wait_until(Duration::from_secs(60), || {
        vms.iter().all(|vm| {
            lab.results_for(&vm.port_uuid, since)
                .iter()
                .any(|c| c["status"] == 200 && c["args"]["result"] == "SUCCESS")
        })
    });
    assert!(delivered, "results not delivered\n{}", lab.diag());
    assert!(wait_until(Duration::from_secs(20), || lab.status()
        ["server"]["pending_results"]
        == 0));
}
