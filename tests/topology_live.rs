//! Topology discovery against a real bridge-role lldpad neighbour that sends
//! Port Description, System Name/Description and a Management Address
//! (root). Bonds and physical interfaces come from a fake sysfs tree.

use std::fs;
use std::sync::Arc;
use std::time::Duration;
use vdp_agent::api::lldpad::lldptool as lt;
use vdp_agent::api::manager::host::TopoReport;
use vdp_agent::api::topology::{TopoDisc, TOPO_DISC_SEND_THRESHOLD};
use vdp_agent::api::uplink::SysNet;
use vdp_agent::lab::netns::{
    self, bridge_config_with_info, veth_with_mac, LldpadInstance, LldpadRole, Netns, TempDir,
};

#[test]
fn reports_neighbour_facts_threshold_and_changes() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let p = netns::unique("ltt", 0);
    let dir = TempDir::new(&p).unwrap();
    let host = Netns::create(&format!("{p}-host")).unwrap();
    let peer = Netns::create(&format!("{p}-peer")).unwrap();
    let (intf, peer_if) = (format!("{p}h0"), format!("{p}p0"));
    veth_with_mac(&host, &intf, &peer, &peer_if, "52:54:00:7a:00:02").unwrap();
    let _bridge = LldpadInstance::start_with_config(
        &peer,
        &bridge_config_with_info("10.10.0.101"),
        dir.path(),
    )
    .unwrap();
    let _station = LldpadInstance::start(&host, LldpadRole::Station, &intf, dir.path()).unwrap();
    let r = Arc::new(host.runner(Duration::from_secs(5)));

    // Fake sysfs: the uplink is bond0 with two members.
    let root = std::env::temp_dir().join(format!("lt-topo-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("sys/bond0/bonding")).unwrap();
    fs::create_dir_all(root.join("proc")).unwrap();
    fs::write(root.join("sys/bond0/bonding/slaves"), "eth1 eth2\n").unwrap();
    fs::write(root.join("proc/bond0"), "").unwrap();
    let sysnet = SysNet::new(&root.join("sys"), &root.join("proc"));

    let topo = TopoDisc::new(Arc::clone(&r), sysnet);
    topo.cfg_intf(&intf, "bond0");
    topo.cfg_intf("nosuch0", "nosuch0"); // LLDP cannot be enabled: retried, never reported
    assert_eq!(
        lt::admin_status(&r, &intf).unwrap(),
        "rxtx",
        "cfg_intf enables LLDP"
    );
    assert!(
        netns::wait_until(Duration::from_secs(10), || {
            lt::get_tlvs(&r, &intf)
                .map(|t| t.is_evb_bridge())
                .unwrap_or(false)
        }),
        "neighbour never showed up"
    );

    let hostname = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let reports = topo.poll();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let rep = &reports[0];
    let desc = rep.remote_system_desc.clone().unwrap_or_default();
    assert!(desc.starts_with("Linux "), "{desc}");
    let port = rep.remote_port.clone().unwrap_or_default();
    assert!(port.ends_with(&format!(" as {peer_if}")), "{port}");
    let expected = TopoReport {
        protocol_interface: intf.clone(),
        phy_interface: "bond0".into(),
        remote_evb_cfgd: true,
        remote_evb_mode: Some("bridge".into()),
        remote_mgmt_addr: Some("IPv4:10.10.0.101".into()),
        remote_system_desc: Some(desc.clone()),
        remote_system_name: Some(hostname),
        remote_port: Some(port.clone()),
        remote_chassis_id_mac: Some("52:54:00:7a:00:02".into()),
        remote_port_id_mac: Some("52:54:00:7a:00:02".into()),
        bond_interface: Some("bond0".into()),
        bond_member_ports: Some("eth1 eth2".into()),
    };
    assert_eq!(rep, &expected);

    // Unchanged: nothing until the counter exceeds the threshold.
    for i in 0..=TOPO_DISC_SEND_THRESHOLD {
        assert!(topo.poll().is_empty(), "unchanged round {i} reported");
    }
    let again = topo.poll();
    assert_eq!(again, vec![expected.clone()], "threshold round");
    assert!(topo.poll().is_empty());

    // sysName changed on the neighbour: reported at once.
    let set = peer
        .stdout(&[
            "lldptool",
            "-T",
            "-i",
            &peer_if,
            "-g",
            "ncb",
            "-V",
            "sysName",
            "info=leaf-lt-2",
        ])
        .unwrap();
    assert!(set.contains("leaf-lt-2"), "{set}");
    assert!(netns::wait_until(Duration::from_secs(10), || {
        lt::get_tlvs(&r, &intf)
            .map(|t| t.system_name.as_deref() == Some("leaf-lt-2"))
            .unwrap_or(false)
    }));
    let changed = topo.poll();
    let mut exp2 = expected.clone();
    exp2.remote_system_name = Some("leaf-lt-2".into());
    assert_eq!(changed, vec![exp2.clone()]);
    assert!(topo.poll().is_empty());

    // A report the caller could not deliver is sent again next round.
    topo.mark_send_failed(&intf);
    assert_eq!(topo.poll(), vec![exp2.clone()]);
    assert!(topo.poll().is_empty());

    // The bond goes away: reported at once, bond fields null.
    fs::remove_file(root.join("proc/bond0")).unwrap();
    fs::remove_dir_all(root.join("sys/bond0/bonding")).unwrap();
    let mut exp3 = exp2.clone();
    exp3.bond_interface = None;
    exp3.bond_member_ports = None;
    assert_eq!(topo.poll(), vec![exp3]);

    // No longer watched: one empty report (the controller drops the row),
    // sent again when it was not delivered, then nothing.
    topo.uncfg_intf(&intf);
    topo.uncfg_intf("nosuch0");
    assert!(topo.watched().is_empty());
    let empty = TopoReport {
        protocol_interface: intf.clone(),
        phy_interface: "bond0".into(),
        ..TopoReport::default()
    };
    assert_eq!(
        topo.poll(),
        vec![empty.clone()],
        "empty report of a left interface"
    );
    topo.mark_send_failed(&intf);
    assert_eq!(topo.poll(), vec![empty], "sent again after a failure");
    assert!(topo.poll().is_empty());
    assert!(topo.poll().is_empty());

    // Start-up: every physical, operationally up interface is watched with
    // LLDP enabled (not the skipped uplink); here the veth, listed in the
    // fake sysfs as physical.
    for (n, state) in [(intf.as_str(), "up"), ("upl0", "up"), ("down0", "down")] {
        fs::create_dir_all(root.join("sys").join(n).join("device")).unwrap();
        fs::write(
            root.join("sys").join(n).join("operstate"),
            format!("{state}\n"),
        )
        .unwrap();
    }
    lt::disable_lldp(&r, &intf).unwrap();
    topo.cfg_physical(&|n| n == "upl0");
    assert_eq!(topo.watched(), vec![intf.clone()]);
    assert_eq!(lt::admin_status(&r, &intf).unwrap(), "rxtx");
    assert!(
        netns::wait_until(Duration::from_secs(10), || {
            lt::get_tlvs(&r, &intf)
                .map(|t| t.is_evb_bridge())
                .unwrap_or(false)
        }),
        "neighbour never showed up again"
    );
    let rep = topo.poll();
    assert_eq!(rep.len(), 1, "{rep:?}");
    assert_eq!(
        (
            rep[0].protocol_interface.as_str(),
            rep[0].phy_interface.as_str()
        ),
        (intf.as_str(), intf.as_str())
    );
    assert_eq!(rep[0].remote_system_name.as_deref(), Some("leaf-lt-2"));
    let _ = fs::remove_dir_all(&root);
}
