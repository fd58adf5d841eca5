//! End to end, recovery: the controller failing and then gone (results kept
//! on disk and delivered later), the leaf reloading with new VLANs, the
//! station lldpad restarted, ovs-vswitchd restarted, and the agent itself
//! stopped and restarted under live VMs. Each test runs its own lab.

mod common;
use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Controller answering 500 to every RPC, then not running at all, then
/// back: the agent keeps associating and programming flows, keeps the
/// results (status + `pending-results.json`), and delivers every one once
/// the controller answers again.
#[test]
fn e2e_controller_down_then_back() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("e2", &[]);
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    lab.vm_add(&vm1);
    lab.vm_add(&vm2);
    // Every RPC fails from now on; events are still delivered.
    lab.fault(json!({"fail_next": 1_000_000}));
    lab.port_add(&vm1);
    lab.port_add(&vm2);
    for vm in [&vm1, &vm2] {
        assert!(
            wait_until(Duration::from_secs(20), || lab
                .leaf_vlan(&vm.port_uuid)
                .is_some()),
            "{} not associated\n{}",
            vm.name,
            lab.diag()
        );
    }
    assert!(
        wait_until(Duration::from_secs(20), || lab.status()["server"]
            ["pending_results"]
            .as_u64()
            .unwrap_or(0)
            >= 2),
        "results not kept\n{}",
        lab.diag()
    );
    let file = lab.dir.join("state/pending-results.json");
    let kept = std::fs::read_to_string(&file).expect("pending-results.json exists");
    for vm in [&vm1, &vm2] {
        assert!(kept.contains(&vm.port_uuid), "{} not kept: {kept}", vm.name);
        assert!(
            lab.port(&vm.port_uuid).expect("port")["result"].is_null(),
            "controller got a result it failed"
        );
    }
    let st = lab.status();
    assert!(st["server"]["last_error"].is_string(), "{st}");
    // The data path works without the controller.
    assert!(
        lab.wait_ping(&vm1, Duration::from_secs(10)),
        "{}",
        lab.diag()
    );

    // Now the controller is gone altogether (its state file keeps the ports).
    lab.stop_server();
    pause(Duration::from_secs(3));
    assert!(lab.agent_alive(), "agent died without its controller");
    let st = lab.status();
    assert!(
        st["server"]["pending_results"].as_u64().unwrap_or(0) >= 2,
        "{st}"
    );
    assert!(lab.ping(&vm2, 2), "{}", lab.diag());

    // Back (a new process: no fault): every kept result is delivered.
    let t0 = Instant::now();
    lab.start_server();
    let leaf = |vm: &Vm| lab.leaf_vlan(&vm.port_uuid).expect("leaf VSI");
    for vm in [&vm1, &vm2] {
        let p = lab
            .wait_result(&vm.port_uuid, "SUCCESS", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{}: kept result never delivered\n{}", vm.name, lab.diag()));
        assert_eq!(p["local_vlan"], vm.local_vlan, "{p}");
        assert_eq!(p["vdp_vlan"], leaf(vm), "{p}");
        let calls = lab.results_for(&vm.port_uuid, 0);
        assert!(
            calls
                .iter()
                .any(|c| c["status"] == 200 && c["args"]["result"] == "SUCCESS"),
            "{calls:?}"
        );
    }
    eprintln!(
        "kept results delivered {:?} after the controller came back",
        t0.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(10), || lab.status()["server"]
            ["pending_results"]
            == 0),
        "{}",
        lab.diag()
    );
    let left = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        !left.contains(&vm1.port_uuid) && !left.contains(&vm2.port_uuid),
        "delivered results still kept: {left}"
    );
}

/// The leaf reloads, forgets every VSI and hands out new VLANs: within the
/// refresh period the agent re-associates, re-programs the flows and tells
/// the controller; ping works again on the new VLAN.
#[test]
fn e2e_leaf_reload_new_vlans() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("e3", &[("SYNC_TIMEOUT_S", "5")]);
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let old = lab.bring_up(&[&vm1, &vm2]);
    assert!(lab.wait_ping(&vm1, Duration::from_secs(5)));
    let since = lab.last_call_id();
    let t0 = Instant::now();
    lab.leaf_ctl(&["reload"]);
    let mut new = Vec::new();
    for (vm, o) in [(&vm1, old[0]), (&vm2, old[1])] {
        let n = wait_for(Duration::from_secs(40), || {
            lab.leaf_vlan(&vm.port_uuid).filter(|n| *n != o)
        })
        .unwrap_or_else(|| panic!("{} not re-associated\n{}", vm.name, lab.diag()));
        assert!((3000..=3099).contains(&n));
        new.push(n);
    }
    let want = lab.expected_flows(&[(11, new[0]), (12, new[1])]);
    assert!(
        wait_until(Duration::from_secs(20), || lab.translation_flows().as_ref()
            == Some(&want)),
        "flows did not follow the new VLANs {new:?}\n{}",
        lab.diag()
    );
    for (vm, n) in [(&vm1, new[0]), (&vm2, new[1])] {
        assert!(
            wait_until(Duration::from_secs(20), || lab
                .results_for(&vm.port_uuid, since)
                .iter()
                .any(
                    |c| c["args"]["vdp_vlan"] == n && c["args"]["result"] == "SUCCESS"
                )),
            "controller not told {} moved to {n}\n{}",
            vm.name,
            lab.diag()
        );
        let p = lab.port(&vm.port_uuid).expect("port");
        assert_eq!(p["vdp_vlan"], n, "{p}");
    }
    let took = t0.elapsed();
    eprintln!("leaf reload: VLANs {old:?} -> {new:?}, flows and controller followed in {took:?}");
    // lldpad learns of the reload at its next keep-alive (refused, RKA 20
    // = 10.5 s), the agent at its next refresh (5 s) after that.
    assert!(
        took < Duration::from_secs(25),
        "leaf reload recovery took {took:?}"
    );
    for vm in [&vm1, &vm2] {
        assert!(
            lab.wait_ping(vm, Duration::from_secs(5)),
            "{}\n{}",
            vm.name,
            lab.diag()
        );
    }
    let st = lab.status();
    for (vm, n) in [(&vm1, new[0]), (&vm2, new[1])] {
        let e = lab.agent_vsi(&vm.port_uuid).unwrap_or_default();
        assert_eq!(e["vdp_vlan"], n, "{st}");
    }
}

/// The station lldpad restarts (its VSIs live only in memory): the agent
/// associates again, the leaf keeps the VLANs, the VMs reach their gateways.
/// Two VMs, so the new lldpad's first ECP sequence number (1) differs from
/// the last one the leaf delivered (see the report: with one VM the leaf
/// acks the new lldpad's first ECPDU as a duplicate and drops it).
#[test]
fn e2e_lldpad_restart() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("e4", &[("SYNC_TIMEOUT_S", "5")]);
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let v = lab.bring_up(&[&vm1, &vm2]);
    assert_eq!(lab.station_vlan(&vm1), Some(v[0]));
    assert_eq!(lab.station_vlan(&vm2), Some(v[1]));
    let stats0 = lab.leaf_stats();
    let pinger = lab.pinger(&vm1);
    let t0 = Instant::now();
    lab.lldpad_restart();
    let restarted = t0.elapsed();
    let gone = lab.station_vlan(&vm1).is_none();
    let back = wait_until(Duration::from_secs(30), || {
        lab.station_vlan(&vm1) == Some(v[0]) && lab.station_vlan(&vm2) == Some(v[1])
    });
    let took = t0.elapsed();
    assert!(
        back,
        "the agent did not re-associate after the lldpad restart\n{}",
        lab.diag()
    );
    eprintln!(
        "lldpad restart: new lldpad up after {restarted:?}, VSIs gone right after: {gone}, \
         associated again after {took:?}"
    );
    // The leaf kept the VSIs with their VLANs and heard from the new lldpad.
    for (vm, vl) in [(&vm1, v[0]), (&vm2, v[1])] {
        assert_eq!(lab.leaf_vlan(&vm.port_uuid), Some(vl), "{}", lab.diag());
        let age = lab
            .leaf_vsis()
            .iter()
            .find(|x| x["uuid"] == vm.port_uuid.as_str())
            .and_then(|x| x["last_keepalive_age_s"].as_f64())
            .unwrap_or(99.0);
        assert!(
            age < took.as_secs_f64(),
            "leaf did not hear from the new lldpad ({age} s)"
        );
    }
    assert_eq!(lab.leaf_stats()["deassoc"], stats0["deassoc"]);
    let want = lab.expected_flows(&[(11, v[0]), (12, v[1])]);
    assert!(
        wait_until(Duration::from_secs(10), || lab.translation_flows().as_ref()
            == Some(&want)),
        "{}",
        lab.diag()
    );
    for vm in [&vm1, &vm2] {
        assert!(
            lab.wait_ping(vm, Duration::from_secs(5)),
            "{}\n{}",
            vm.name,
            lab.diag()
        );
        // Flows stay over the restart, so the ping may answer before the
        // agent has read lldpad's verdict (re-checked every second).
        assert!(
            wait_until(Duration::from_secs(5), || lab
                .agent_vsi(&vm.port_uuid)
                .is_some_and(|e| e["result"] == "SUCCESS")),
            "{:?}",
            lab.agent_vsi(&vm.port_uuid)
        );
    }
    let (tx, rx, _) = pinger.finish();
    eprintln!("lldpad restart: vm1 ping {rx}/{tx} answered over the restart and recovery");
}

/// The station lldpad restarts with a single VSI. The new lldpad's first
/// ECPDU carries sequence number 1, possibly the same as the last one the
/// leaf delivered from the old lldpad; an 802.1Qbg ECP receiver would ack
/// it as a duplicate without delivering it (losing the re-association for
/// lldpad's ~16 s ack timer). The leaf simulator delivers a repeated
/// sequence number whose payload differs, so recovery is quick.
#[test]
fn e2e_lldpad_restart_single_vsi() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("e8", &[("SYNC_TIMEOUT_S", "5")]);
    let vm1 = Vm::new(1, 1, 11);
    let vlan = lab.bring_up(&[&vm1])[0];
    let dups0 = lab.leaf_stats()["ecp_duplicates"].as_u64().unwrap_or(0);
    let t0 = Instant::now();
    lab.lldpad_restart();
    let back = wait_until(Duration::from_secs(40), || {
        lab.station_vlan(&vm1) == Some(vlan)
    });
    let took = t0.elapsed();
    assert!(back, "no recovery after the lldpad restart\n{}", lab.diag());
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}\n{}",
        lab.diag()
    );
    let dups = lab.leaf_stats()["ecp_duplicates"].as_u64().unwrap_or(0);
    eprintln!(
        "lldpad restart, one VSI: associated again after {took:?} \
         (leaf dropped {} ECPDU(s) as duplicates)",
        dups - dups0
    );
    assert!(
        lab.wait_ping(&vm1, Duration::from_secs(10)),
        "{}",
        lab.diag()
    );
    assert_eq!(lab.leaf_vlan(&vm1.port_uuid), Some(vlan));
    assert_eq!(
        lab.translation_flows(),
        Some(lab.expected_flows(&[(11, vlan)]))
    );
}

/// ovs-vswitchd restarts and loses every flow: the flow check restores the
/// pass-through and translation flows, ping works again.
#[test]
fn e2e_ovs_restart() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("e5", &[("FLOW_CHECK_S", "2")]);
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let v = lab.bring_up(&[&vm1, &vm2]);
    let want = lab.expected_flows(&[(11, v[0]), (12, v[1])]);
    assert_eq!(lab.translation_flows().as_ref(), Some(&want));
    let passthrough = |lab: &Lab| {
        lab.try_flows("br-ethd")
            .map(|f| f.iter().filter(|f| f.contains("priority=99,")).count())
            .unwrap_or(0)
    };
    assert_eq!(passthrough(&lab), 4);
    let t0 = Instant::now();
    lab.ovs_restart();
    let empty = lab.translation_flows().is_some_and(|f| f.is_empty());
    assert!(
        wait_until(Duration::from_secs(20), || {
            lab.translation_flows().is_some_and(|f| f == want) && passthrough(&lab) == 4
        }),
        "flows not restored after the OVS restart\n{}",
        lab.diag()
    );
    eprintln!(
        "ovs restart: flows empty right after: {empty}, restored after {:?}",
        t0.elapsed()
    );
    for vm in [&vm1, &vm2] {
        assert!(
            lab.wait_ping(vm, Duration::from_secs(10)),
            "{}\n{}",
            vm.name,
            lab.diag()
        );
    }
    assert!(lab.agent_alive());
    assert_eq!(lab.leaf_vlan(&vm1.port_uuid), Some(v[0]));
}

/// SIGTERM the agent under live VMs and start it again: it stops in < 5 s,
/// no flow is removed at any time, the VMs keep pinging throughout, the
/// leaf sees no deassociation and the VSIs keep their VLANs, and the bulk
/// resync after the restart reports SUCCESS for every port again.
#[test]
fn e2e_agent_restart_live_vms() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("e6", &[]);
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let v = lab.bring_up(&[&vm1, &vm2]);
    let want = lab.expected_flows(&[(11, v[0]), (12, v[1])]);
    assert_eq!(lab.translation_flows().as_ref(), Some(&want));
    let stats0 = lab.leaf_stats();
    let since = lab.last_call_id();

    // A continuous ping from vm1 over the whole stop/restart.
    let pinger = lab.pinger(&vm1);
    let stop = AtomicBool::new(false);
    // Stops the sampler also when an assertion below panics (else the
    // scope would wait for it forever).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (bad, samples) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        let sampler = s.spawn(|| {
            let (mut bad, mut n) = (Vec::new(), 0);
            while !stop.load(Ordering::SeqCst) {
                let f = lab.translation_flows();
                n += 1;
                if f.as_ref() != Some(&want) {
                    bad.push(f);
                }
            }
            (bad, n)
        });
        pause(Duration::from_secs(1));
        let took = lab.stop_agent();
        assert!(took < Duration::from_secs(5), "stop took {took:?}");
        eprintln!("agent stopped in {took:?}");
        // While stopped: traffic flows, nothing changes.
        assert_eq!(lab.ping_count(&vm2, 5), 5, "vm2 while the agent is stopped");
        assert!(!lab.agent_alive());
        let t0 = Instant::now();
        lab.start_agent();
        for vm in [&vm1, &vm2] {
            assert!(
                wait_until(Duration::from_secs(40), || lab
                    .results_for(&vm.port_uuid, since)
                    .iter()
                    .any(|c| c["status"] == 200 && c["args"]["result"] == "SUCCESS")),
                "{}: no SUCCESS after the restart\n{}",
                vm.name,
                lab.diag()
            );
        }
        eprintln!(
            "bulk resync reported every port {:?} after the start",
            t0.elapsed()
        );
        pause(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
        sampler.join().expect("sampler")
    });
    let (tx, rx, summary) = pinger.finish();
    assert!(
        bad.is_empty(),
        "flows changed during stop/restart ({} of {samples} samples): {bad:?}",
        bad.len()
    );
    eprintln!(
        "continuous ping during stop/restart: {tx} sent, {rx} received; {samples} flow samples"
    );
    assert!(tx >= 10 && rx == tx, "vm1 lost packets: {summary}");

    // The leaf saw no deassociation; the VSIs keep their VLANs.
    let stats = lab.leaf_stats();
    assert_eq!(stats["deassoc"], stats0["deassoc"], "{stats}");
    assert_eq!(
        stats["unsolicited_deassoc"], stats0["unsolicited_deassoc"],
        "{stats}"
    );
    assert_eq!(lab.leaf_vlan(&vm1.port_uuid), Some(v[0]));
    assert_eq!(lab.leaf_vlan(&vm2.port_uuid), Some(v[1]));
    // The agent shows every VSI again.
    for (vm, vl) in [(&vm1, v[0]), (&vm2, v[1])] {
        let e = lab.agent_vsi(&vm.port_uuid).unwrap_or_default();
        assert_eq!(e["vdp_vlan"], vl, "{}", lab.diag());
        assert_eq!(e["result"], "SUCCESS");
    }
    assert_eq!(lab.translation_flows().as_ref(), Some(&want));
}

/// VMs deleted while the agent was stopped, with a controller that (as the
/// original server) sends the bulk "down" entries without VLANs: the agent
/// uses what it still holds (lldpad's record, its installed flows),
/// deassociates at the leaf, removes the flows of the network whose last
/// port went, keeps the flows of the network that keeps a VM, and reports
/// each down once as SUCCESS; nothing is left to report afterwards.
#[test]
fn e2e_bulk_down_without_vlans_cleans_up() {
    if skip() {
        return;
    }
    let lab = Lab::up_running("r1", &[]);
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let vm3 = Vm::new(3, 2, 12);
    let v = lab.bring_up(&[&vm1, &vm2, &vm3]);
    assert_eq!(v[1], v[2], "one network, one VLAN");
    lab.fault(serde_json::json!({"bulk_down_without_vlans": true}));
    lab.stop_agent();
    for vm in [&vm1, &vm2] {
        let r = lab.admin("DELETE", &format!("ports/{}?quiet=1", vm.port_uuid), None);
        assert_eq!(r["seq"], 0, "{r}");
    }
    let since = lab.last_call_id();
    lab.start_agent();
    for vm in [&vm1, &vm2] {
        let p = lab
            .wait_result(&vm.port_uuid, "SUCCESS", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{}: no SUCCESS\n{}", vm.name, lab.diag()));
        assert_eq!(p["status"], "down", "{p}");
    }
    let want = lab.expected_flows(&[(12, v[1])]);
    assert!(
        wait_until(Duration::from_secs(10), || lab.translation_flows().as_ref()
            == Some(&want)),
        "net 1's flows not removed / net 2's touched\n{}",
        lab.diag()
    );
    assert_eq!(lab.leaf_vlan(&vm1.port_uuid), None, "vm1 still at the leaf");
    assert_eq!(lab.leaf_vlan(&vm2.port_uuid), None, "vm2 still at the leaf");
    assert_eq!(lab.leaf_vlan(&vm3.port_uuid), Some(v[2]));
    // Reported once each (at-least-once may repeat the same SUCCESS, never
    // a failure), and nothing kept undelivered.
    pause(Duration::from_secs(3));
    for vm in [&vm1, &vm2] {
        let c = lab.results_for(&vm.port_uuid, since);
        assert!(!c.is_empty(), "{}: {c:?}", vm.name);
        assert!(c.iter().all(|c| c["args"]["result"] == "SUCCESS"), "{c:?}");
    }
    assert_eq!(lab.status()["server"]["pending_results"], 0);
    assert!(
        lab.wait_ping(&vm3, Duration::from_secs(5)),
        "{}",
        lab.diag()
    );
}
