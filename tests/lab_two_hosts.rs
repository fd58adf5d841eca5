//! The two-host lab (`HOSTS=2 scripts/lab`): two compute netns, each with
//! its own userspace OVS, station lldpad and agent, on two ports of one leaf
//! simulator, one reference controller for both.
//! - both agents set up and report their uplink (each under its own host id);
//! - a VM on each host gets its network's VLAN from the leaf: the leaf's
//!   VSI table holds each VSI on that host's port, each host's OVS has
//!   exactly its own VM's translation flows, each VM reaches its gateway;
//! - the re-plug helpers move a VM from host 1 to host 2 as a live
//!   migration's switchover does (address, route and ARP entry to a leg
//!   plugged into host 2's br-int beforehand), and after the plain
//!   down/up sequence (the port re-bound to host 2 at the controller: down to
//!   host 1, up to host 2) the VM reaches its gateway through host 2: its
//!   VSI on the leaf's second port, host 1's flows of that network gone.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn two_hosts_one_leaf_vlans_and_replug() {
    if skip() {
        return;
    }
    let t0 = Instant::now();
    let lab = Lab::up_running_hosts("h2t", 2, &[]);
    let h1 = lab.on_host(1);
    let h2 = lab.on_host(2);
    eprintln!("two-host lab up with both uplinks in {:?}", t0.elapsed());
    assert_eq!(h2.host_id, "h2t-compute2");

    // Both agents report their uplink to the one controller.
    let ok = wait_until(Duration::from_secs(20), || {
        let u = lab.admin("GET", "uplinks", None);
        [&h1, &h2]
            .iter()
            .all(|h| !u["uplinks"][&h.host_id].is_null())
    });
    assert!(
        ok,
        "uplinks at the controller: {}",
        lab.admin("GET", "uplinks", None)
    );
    for h in [&h1, &h2] {
        let st = h.status();
        assert_eq!(st["uplink"]["phy"], "eth2", "host {}: {st}", h.host_n);
        assert_eq!(st["uplink"]["veth"], "LLDPLeth2", "host {}: {st}", h.host_n);
    }

    // A VM on each host, each on its own network.
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let v1 = h1.bring_up(&[&vm1])[0];
    let v2 = h2.bring_up(&[&vm2])[0];
    assert_ne!(v1, v2, "two networks, two VLANs");
    let c = h2.results_for(&vm2.port_uuid, 0);
    assert_eq!(
        c.last().map(|c| c["context"]["agent"].clone()),
        Some(h2.host_id.clone().into()),
        "vm2's result comes from host 2's agent: {c:?}"
    );
    for (h, vm, v) in [(&h1, &vm1, v1), (&h2, &vm2, v2)] {
        let e = lab
            .leaf_vsi(&vm.port_uuid)
            .unwrap_or_else(|| panic!("leaf holds no VSI for {}", vm.name));
        assert_eq!(e["port"], h.leaf_port().as_str(), "{e}");
        assert_eq!(e["mode"], "assoc", "{e}");
        assert_eq!(e["vlan"], v, "{e}");
        let want = h.expected_flows(&[(vm.local_vlan, v)]);
        assert_eq!(h.translation_flows(), Some(want), "{}", h.diag());
        assert!(
            h.wait_ping(vm, Duration::from_secs(5)),
            "{} -> {}\n{}",
            vm.name,
            vm.gw,
            h.diag()
        );
    }

    // Re-plug vm1 from host 1 to host 2 (local VLAN 21 there).
    h2.vm_plug(&vm1, 21);
    assert_eq!(
        h2.host_ok(&[
            "ovs-vsctl",
            "get",
            "Interface",
            "tap-vm1",
            "external_ids:iface-id"
        ])
        .trim(),
        format!("\"{}\"", vm1.port_uuid)
    );
    assert_eq!(
        h2.host_ok(&["ovs-vsctl", "get", "Port", "tap-vm1", "tag"])
            .trim(),
        "21"
    );
    assert_eq!(h1.ping_count(&vm1, 2), 2, "the standby leg changes nothing");
    let took = h2.vm_move(&vm1);
    eprintln!("re-plug (vm-move) took {took:?}");
    // Plain down/up: the controller re-binds the port to host 2.
    let since = lab.last_call_id();
    h2.port_add(&vm1);
    let got = wait_for(Duration::from_secs(30), || {
        h2.results_for(&vm1.port_uuid, since).into_iter().find(|c| {
            c["context"]["agent"] == h2.host_id.as_str() && c["args"]["result"] == "SUCCESS"
        })
    })
    .unwrap_or_else(|| panic!("no SUCCESS from host 2 for vm1\n{}", h2.diag()));
    assert_eq!(got["args"]["local_vlan"], 21, "{got}");
    assert_eq!(
        got["args"]["vdp_vlan"], v1,
        "same network, same VLAN: {got}"
    );
    assert!(
        h2.wait_ping(&vm1, Duration::from_secs(10)),
        "vm1 through host 2\n{}",
        h2.diag()
    );
    let ok = wait_until(Duration::from_secs(10), || {
        lab.leaf_vsi(&vm1.port_uuid)
            .is_some_and(|e| e["port"] == "swp2" && e["mode"] == "assoc")
            && lab
                .leaf_vsis()
                .iter()
                .filter(|e| e["uuid"] == vm1.port_uuid.as_str())
                .count()
                == 1
    });
    assert!(ok, "vm1's VSI on swp2 only: {:?}", lab.leaf_vsis());
    // Host 1's flows of vm1's network go (its last port there), host 2
    // maps both networks.
    let want1 = h1.expected_flows(&[]);
    let ok = wait_until(Duration::from_secs(10), || {
        h1.translation_flows() == Some(want1.clone())
    });
    assert!(ok, "host 1 flows: {:?}", h1.translation_flows());
    assert_eq!(
        h2.translation_flows(),
        Some(h2.expected_flows(&[(21, v1), (12, v2)])),
        "{}",
        h2.diag()
    );
    assert!(h2.ping(&vm2, 2), "vm2 still reaches its gateway");
    h1.vm_unplug(&vm1);
    assert_eq!(h1.ping_count(&vm1, 2), 2, "vm1 runs on host 2 alone");
}
