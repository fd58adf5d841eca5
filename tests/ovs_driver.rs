//! OvsDriver against a real userspace OVS (ovsdb-server + ovs-vswitchd,
//! bridges on the netdev datapath) running inside a private network
//! namespace per test. Needs root, iproute2 and openvswitch-switch.
//!
//! The driver's Runner uses the root helper `env OVS_RUNDIR=.. ip netns exec NS`
//! (`OvsInstance::root_helper`), so tests can run in parallel, each against
//! its own instance, without touching the test process's environment.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::api::exec::Runner;
use vdp_agent::api::ovs::{OvsDriver, OvsError};
use vdp_agent::api::shutdown::Shutdown;
use vdp_agent::lab::netns::{Netns, TempDir};
use vdp_agent::lab::ovs_instance::{NeutronTopology, OvsInstance, VmPortSpec};

const COOKIE: &str = "cookie=0x7664706167656e74/-1";
const NET_A: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const NET_B: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const P1: &str = "11111111-1111-4111-8111-111111111111";
const P2: &str = "22222222-2222-4222-8222-222222222222";
const P3: &str = "33333333-3333-4333-8333-333333333333";

/// Fields drop in order: OVS daemons, then the netns, then the directory.
struct Lab {
    ovs: OvsInstance,
    ns: Netns,
    _dir: TempDir,
    topo: NeutronTopology,
}

impl Lab {
    /// A private OVS in a private netns; `None` (test skipped, as the other
    /// lab tests do) without root or Open vSwitch.
    fn new(tag: &str) -> Option<Lab> {
        let have_ovs = std::process::Command::new("ovs-vswitchd")
            .arg("--version")
            .output()
            .is_ok();
        if (!vdp_agent::lab::netns::is_root() || !have_ovs)
            && vdp_agent::lab::netns::skip_missing("root and openvswitch-switch")
        {
            return None;
        }
        let pid = std::process::id();
        let ns = Netns::create(&format!("ov{pid}{tag}")).expect("ip netns add");
        let dir = TempDir::at(PathBuf::from(format!("/tmp/ov-{pid}-{tag}"))).expect("temp dir");
        let ovs = OvsInstance::start(Some(ns.name()), dir.path()).expect("start OVS");
        let topo = NeutronTopology::default();
        Some(Lab {
            ovs,
            ns,
            _dir: dir,
            topo,
        })
    }

    /// Lab with the Neutron topology and an uplink veth eth2 <-> swp1.
    fn with_topology(tag: &str) -> Option<Lab> {
        let lab = Lab::new(tag)?;
        lab.ovs.build_neutron_topology(&lab.topo).unwrap();
        lab.ovs.add_veth("eth2", "swp1").unwrap();
        Some(lab)
    }

    fn runner(&self) -> Arc<Runner> {
        Arc::new(self.ovs.runner(Duration::from_secs(10)))
    }

    fn driver_with(&self, runner: Arc<Runner>) -> OvsDriver {
        OvsDriver::new(runner, &self.topo.br_int, &self.topo.br_ex)
    }

    fn driver(&self) -> OvsDriver {
        self.driver_with(self.runner())
    }

    fn ours(&self, br: &str) -> Vec<String> {
        self.ovs.flows(br, Some(COOKIE)).unwrap()
    }

    fn ofport(&self, iface: &str) -> u32 {
        self.ovs
            .ofport(iface)
            .unwrap()
            .unwrap_or_else(|| panic!("no ofport for {iface}"))
    }

    fn passthrough(&self, lldpo: &str, uplink: &str) -> Vec<String> {
        let (o, u) = (self.ofport(lldpo), self.ofport(uplink));
        let mut v = Vec::new();
        for t in ["0x88cc", "0x8940"] {
            for (a, b) in [(o, u), (u, o)] {
                v.push(format!(
                    "cookie=0x7664706167656e74, priority=99,in_port={a},dl_dst=01:80:c2:00:00:00,dl_type={t} actions=output:{b}"
                ));
            }
        }
        v.sort();
        v
    }

    fn vm_ex(&self, local: u16, vdp: u16) -> String {
        format!(
            "cookie=0x7664706167656e74, priority=4,in_port={},dl_vlan={local} actions=mod_vlan_vid:{vdp},NORMAL",
            self.ofport(&self.topo.phy_patch)
        )
    }

    fn vm_int(&self, local: u16, vdp: u16) -> String {
        format!(
            "cookie=0x7664706167656e74, priority=3,in_port={},dl_vlan={vdp} actions=mod_vlan_vid:{local},NORMAL",
            self.ofport(&self.topo.int_patch)
        )
    }

    fn ports(&self, br: &str) -> Vec<String> {
        let out = self.ovs.vsctl(&["list-ports", br]).unwrap();
        out.lines().map(String::from).collect()
    }

    fn link(&self, name: &str) -> Option<serde_json::Value> {
        let out = self.ovs.ip(&["-j", "link", "show", "dev", name]).ok()?;
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.get(0).cloned()
    }

    fn mac(&self, name: &str) -> String {
        self.link(name).unwrap()["address"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn vm(&self, n: u8, port_uuid: &str, tag: Option<u16>) -> VmPortSpec {
        let spec = VmPortSpec {
            tap: format!("tapvm{n}"),
            vm_if: format!("vm{n}"),
            port_uuid: port_uuid.to_string(),
            mac: format!("fa:16:3e:00:00:0{n}"),
            vm_uuid: format!("cccccccc-0000-4000-8000-00000000000{n}"),
            tag,
        };
        self.ovs.add_vm_port(&self.topo.br_int, &spec).unwrap();
        spec
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn bridges_and_uplink_setup_restart_teardown() {
    let Some(lab) = Lab::new("a") else {
        return;
    };
    // Another handle on the same instance (lab scripts); detached, it
    // leaves the daemons running.
    let other = OvsInstance::attach(lab.ovs.netns(), lab.ovs.dir()).unwrap();
    assert!(other.is_running("ovs-vswitchd") && other.is_running("ovsdb-server"));
    other.detach();
    assert!(lab.ovs.is_running("ovs-vswitchd"));
    assert!(OvsInstance::attach(None, std::path::Path::new("/tmp")).is_err());

    let d = lab.driver();
    assert!(!d.bridges_present());
    lab.ovs.add_veth("eth2", "swp1").unwrap();
    let e = d.setup_uplink("eth2").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Integ or Physical Bridge not created by Openstack. Bridge_list: [] Integ Br: br-int Ext Br: br-ethd"
    );
    lab.ovs.build_neutron_topology(&lab.topo).unwrap();
    assert!(d.bridges_present());
    assert!(matches!(
        d.setup_uplink("bad name"),
        Err(OvsError::BadName(_))
    ));

    // Fresh setup: veth created, ports added, exactly the 4 pass-through flows.
    let up = d.setup_uplink("eth2").unwrap();
    assert!(up.veth_created);
    assert_eq!(
        (up.ovs_veth.as_str(), up.lldp_veth.as_str()),
        ("LLDPOeth2", "LLDPLeth2")
    );
    assert_eq!(up.uplink_ofport, lab.ofport("eth2"));
    assert_eq!(up.ovs_veth_ofport, lab.ofport("LLDPOeth2"));
    assert_eq!(up.ex_patch, "phy-br-ethd");
    assert_eq!(up.int_patch, "int-br-ethd");
    assert_eq!(up.ex_patch_ofport, lab.ofport("phy-br-ethd"));
    assert_eq!(up.int_patch_ofport, lab.ofport("int-br-ethd"));
    let ports = lab.ports("br-ethd");
    assert!(
        ports.contains(&"eth2".into()) && ports.contains(&"LLDPOeth2".into()),
        "{ports:?}"
    );
    for end in ["LLDPOeth2", "LLDPLeth2"] {
        let l = lab.link(end).unwrap();
        let flags: Vec<&str> = l["flags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        assert!(flags.contains(&"UP"), "{end} not up: {flags:?}");
    }
    let pass = lab.passthrough("LLDPOeth2", "eth2");
    assert_eq!(lab.ours("br-ethd"), pass);
    assert_eq!(pass.len(), 4);
    // Neutron's flows are untouched.
    assert_eq!(lab.ovs.flows("br-ethd", None).unwrap().len(), 4 + 2);

    // A VM network's flows, to prove the restart leaves them alone.
    d.add_vm_port(NET_A, 5, P1, Some(3003), None).unwrap();
    let ex_before = lab.ovs.flows("br-ethd", None).unwrap();
    let int_before = lab.ovs.flows("br-int", None).unwrap();
    let mac_before = lab.mac("LLDPLeth2");
    let mac_o_before = lab.mac("LLDPOeth2");

    // "Agent restart": a new driver sets the same uplink up again.
    let runner = lab.runner();
    let d2 = lab.driver_with(runner.clone());
    let up2 = d2.setup_uplink("eth2").unwrap();
    assert!(!up2.veth_created, "existing veth pair must be reused");
    assert_eq!(lab.mac("LLDPLeth2"), mac_before);
    assert_eq!(lab.mac("LLDPOeth2"), mac_o_before);
    assert_eq!(
        (up2.uplink_ofport, up2.ovs_veth_ofport),
        (up.uplink_ofport, up.ovs_veth_ofport)
    );
    assert_eq!(lab.ovs.flows("br-ethd", None).unwrap(), ex_before);
    assert_eq!(lab.ovs.flows("br-int", None).unwrap(), int_before);
    // ip -j link (1) + ovs-vsctl snapshot (1) + a dump of each bridge (2),
    // nothing changed.
    assert_eq!(runner.spawned(), 4);

    // The bulk resync announces the port again with the VLAN it had: the
    // flows the previous run left are adopted, not written again (an
    // identical add-flow would still replace the rules in OVS).
    let update = d2.add_vm_port(NET_A, 5, P1, Some(3003), None).unwrap();
    assert!(update.error.is_none(), "{update:?}");
    assert_eq!(
        runner.spawned(),
        4,
        "no ovs-ofctl for flows already in place"
    );
    assert_eq!(lab.ovs.flows("br-ethd", None).unwrap(), ex_before);
    assert_eq!(lab.ovs.flows("br-int", None).unwrap(), int_before);
    assert_eq!(d2.net_vdp_vlan(NET_A), Some(3003));
    // A second port of the network changes nothing either.
    d2.add_vm_port(NET_A, 5, P2, Some(3003), None).unwrap();
    assert_eq!(runner.spawned(), 4);
    d2.remove_vm_port(NET_A, P2).unwrap();

    // Restored knowledge after restart, then teardown removes what setup made.
    d2.restore_vm_port(NET_A, 5, P1, Some(3003));
    d2.teardown_uplink("eth2").unwrap();
    assert!(lab.ours("br-ethd").is_empty(), "{:?}", lab.ours("br-ethd"));
    assert!(lab.ours("br-int").is_empty(), "{:?}", lab.ours("br-int"));
    assert_eq!(
        lab.ovs
            .flows("br-ethd", Some("dl_dst=01:80:c2:00:00:00"))
            .unwrap(),
        Vec::<String>::new()
    );
    let ports = lab.ports("br-ethd");
    assert_eq!(ports, vec!["phy-br-ethd".to_string()]);
    assert!(d2.local_vlans().is_empty());
    assert!(d2.uplink().is_none());
    // The veth pair stays (same MAC next time).
    assert_eq!(lab.mac("LLDPLeth2"), mac_before);
    // Neutron's flows are still there.
    assert_eq!(lab.ovs.flows("br-ethd", None).unwrap().len(), 2);
    assert_eq!(lab.ovs.flows("br-int", None).unwrap().len(), 2);

    // The veth pair deleted behind our back while its port stays in the
    // bridge: recreated, the port row replaced so OVS opens the new device.
    let d_tmp = lab.driver();
    d_tmp.setup_uplink("eth2").unwrap();
    let stale_of = lab.ofport("LLDPOeth2");
    lab.ovs.ip(&["link", "del", "dev", "LLDPOeth2"]).unwrap();
    let upr = d_tmp.setup_uplink("eth2").unwrap();
    assert!(upr.veth_created);
    assert_eq!(upr.ovs_veth_ofport, lab.ofport("LLDPOeth2"));
    // (OVS hands the same name its old number back)
    eprintln!("LLDPOeth2 ofport {stale_of} -> {}", upr.ovs_veth_ofport);
    let err = lab
        .ovs
        .vsctl(&["get", "Interface", "LLDPOeth2", "error"])
        .unwrap();
    assert_eq!(err.trim(), "[]", "OVS could not open the new LLDPOeth2");
    assert_eq!(lab.ours("br-ethd"), lab.passthrough("LLDPOeth2", "eth2"));
    d_tmp.teardown_uplink("eth2").unwrap();
    let mac_before = lab.mac("LLDPLeth2");

    // Set up again: reused pair, same MAC, flows back.
    let up3 = d2.setup_uplink("eth2").unwrap();
    assert!(!up3.veth_created);
    assert_eq!(lab.mac("LLDPLeth2"), mac_before);
    assert_eq!(lab.ours("br-ethd"), lab.passthrough("LLDPOeth2", "eth2"));
    d2.teardown_uplink("eth2").unwrap();

    // Long uplink name: names cut to 10 characters (LLDPO + last 5).
    lab.ovs.add_veth("enp129s0f1np1", "swp2").unwrap();
    let (o, l) = OvsDriver::veth_names("enp129s0f1np1");
    assert_eq!((o.as_str(), l.as_str()), ("LLDPOf1np1", "LLDPLf1np1"));
    let upl = d2.setup_uplink("enp129s0f1np1").unwrap();
    assert_eq!(upl.ovs_veth, "LLDPOf1np1");
    assert_eq!(upl.lldp_veth, "LLDPLf1np1");
    assert!(lab.link("LLDPOf1np1").is_some() && lab.link("LLDPLf1np1").is_some());
    assert_eq!(
        lab.ours("br-ethd"),
        lab.passthrough("LLDPOf1np1", "enp129s0f1np1")
    );

    // delete_uplink_and_flows from a driver that never set it up.
    let d3 = lab.driver();
    d3.delete_uplink_and_flows("enp129s0f1np1").unwrap();
    assert!(lab.ours("br-ethd").is_empty());
    assert_eq!(lab.ports("br-ethd"), vec!["phy-br-ethd".to_string()]);
    // Uplink not on the bridge: nothing to do, no error.
    d3.delete_uplink_and_flows("enp129s0f1np1").unwrap();
}

#[test]
fn vm_flows_lifecycle_and_vlan_change() {
    let Some(lab) = Lab::with_topology("b") else {
        return;
    };
    let d = lab.driver();
    d.setup_uplink("eth2").unwrap();
    let pass = lab.passthrough("LLDPOeth2", "eth2");

    // First VM of network A: one flow per bridge.
    let u = d.add_vm_port(NET_A, 5, P1, Some(3003), None).unwrap();
    assert!(u.error.is_none(), "{u:?}");
    let mut ex = pass.clone();
    ex.push(lab.vm_ex(5, 3003));
    assert_eq!(lab.ours("br-ethd"), sorted(ex.clone()));
    assert_eq!(lab.ours("br-int"), vec![lab.vm_int(5, 3003)]);

    // Second VM on the same network: counted, no OVS call.
    let runner = lab.runner();
    let dd = lab.driver_with(runner.clone());
    dd.setup_uplink("eth2").unwrap();
    let before = runner.spawned();
    dd.restore_vm_port(NET_A, 5, P1, Some(3003));
    let u = dd.add_vm_port(NET_A, 5, P2, Some(3003), None).unwrap();
    assert!(u.change.is_empty());
    assert_eq!(runner.spawned(), before, "no OVS call for a second port");
    let info = dd.local_vlans();
    assert_eq!(info.len(), 1);
    assert_eq!(
        (info[0].local_vlan, info[0].vdp_vlan, info[0].ports.len()),
        (5, Some(3003), 2)
    );
    assert_eq!(dd.port_vlans(NET_A, P2), Some((5, Some(3003))));

    // One VM down: flows stay. Last VM down: flows gone.
    let r = dd.remove_vm_port(NET_A, P1).unwrap();
    assert!(!r.net_removed && r.flows.change.is_empty());
    assert_eq!(lab.ours("br-int"), vec![lab.vm_int(5, 3003)]);
    let r = dd.remove_vm_port(NET_A, P2).unwrap();
    assert!(r.net_removed);
    assert_eq!(
        (r.local_vlan, r.port_vdp_vlan, r.net_vdp_vlan),
        (5, Some(3003), Some(3003))
    );
    assert!(r.flows.error.is_none());
    assert_eq!(lab.ours("br-ethd"), pass);
    assert!(lab.ours("br-int").is_empty());
    assert_eq!(
        dd.remove_vm_port(NET_A, P2).unwrap_err().to_string(),
        "Local VLAN Map not available in port_down"
    );

    // VLAN change: old flows gone, new ones present, on both bridges.
    dd.add_vm_port(NET_A, 5, P1, Some(3003), None).unwrap();
    dd.add_vm_port(NET_A, 5, P2, Some(3003), None).unwrap();
    dd.add_vm_port(NET_B, 6, P3, Some(3010), None).unwrap();
    let c = dd.set_port_vdp_vlan(NET_A, P1, Some(3004), None).unwrap();
    assert_eq!(c.local_vlan, 5);
    assert!(c.flows.error.is_none());
    let mut ex = pass.clone();
    ex.push(lab.vm_ex(5, 3004));
    ex.push(lab.vm_ex(6, 3010));
    assert_eq!(lab.ours("br-ethd"), sorted(ex));
    assert_eq!(
        lab.ours("br-int"),
        sorted(vec![lab.vm_int(5, 3004), lab.vm_int(6, 3010)])
    );
    // The other port follows: nothing to do. Both lose the VLAN: flows go.
    assert!(dd
        .set_port_vdp_vlan(NET_A, P2, Some(3004), None)
        .unwrap()
        .flows
        .change
        .is_empty());
    dd.set_port_vdp_vlan(NET_A, P1, None, Some("switch deassociated".into()))
        .unwrap();
    assert_eq!(lab.ours("br-int").len(), 2);
    dd.set_port_vdp_vlan(NET_A, P2, None, None).unwrap();
    assert_eq!(lab.ours("br-int"), vec![lab.vm_int(6, 3010)]);
    let mut ex = pass.clone();
    ex.push(lab.vm_ex(6, 3010));
    assert_eq!(lab.ours("br-ethd"), sorted(ex));
    let a = dd
        .local_vlans()
        .into_iter()
        .find(|n| n.net_uuid == NET_A)
        .unwrap();
    assert_eq!(a.vdp_vlan, None);
    assert_eq!(
        a.ports
            .iter()
            .find(|p| p.port_uuid == P1)
            .unwrap()
            .fail_reason
            .as_deref(),
        Some("switch deassociated")
    );
}

#[test]
fn flow_check_restores_after_del_flows_and_vswitchd_restart() {
    let Some(lab) = Lab::with_topology("c") else {
        return;
    };
    let runner = lab.runner();
    let d = lab.driver_with(runner.clone());
    d.setup_uplink("eth2").unwrap();
    d.add_vm_port(NET_A, 5, P1, Some(3003), None).unwrap();
    d.add_vm_port(NET_B, 6, P3, Some(3010), None).unwrap();
    let ex_ours = lab.ours("br-ethd");
    let int_ours = lab.ours("br-int");
    assert_eq!((ex_ours.len(), int_ours.len()), (6, 2));

    // Nothing missing: one snapshot + two dumps, no change.
    let before = runner.spawned();
    let c = d.check_flows().unwrap();
    assert_eq!((c.restored, c.removed, c.ports_readded), (0, 0, false));
    assert_eq!(runner.spawned() - before, 3);

    // Flows wiped by hand (a Neutron agent restart does this).
    lab.ovs.ofctl(&["del-flows", "br-ethd"]).unwrap();
    lab.ovs.ofctl(&["del-flows", "br-int"]).unwrap();
    let c = d.check_flows().unwrap();
    assert_eq!(c.restored, 8);
    assert_eq!(lab.ours("br-ethd"), ex_ours);
    assert_eq!(lab.ours("br-int"), int_ours);

    // A stale flow of a tracked network (old VDP VLAN) and a pass-through
    // flow with a wrong port are removed; a flow of an unknown network stays.
    lab.ovs
        .ofctl(&["add-flow", "br-int", "cookie=0x7664706167656e74,priority=3,in_port=1,dl_vlan=2999,actions=mod_vlan_vid:5,normal"])
        .unwrap();
    lab.ovs
        .ofctl(&["add-flow", "br-int", "cookie=0x7664706167656e74,priority=3,in_port=1,dl_vlan=2888,actions=mod_vlan_vid:9,normal"])
        .unwrap();
    lab.ovs
        .ofctl(&[
            "add-flow",
            "br-ethd",
            "priority=99,in_port=77,dl_dst=01:80:c2:00:00:00,dl_type=0x88cc,actions=output:1",
        ])
        .unwrap();
    let c = d.check_flows().unwrap();
    assert_eq!((c.restored, c.removed), (0, 2));
    assert_eq!(lab.ours("br-ethd"), ex_ours);
    let int_now = lab.ours("br-int");
    assert_eq!(int_now.len(), 3, "{int_now:?}");
    assert!(int_now.iter().any(|f| f.contains("dl_vlan=2888")));
    lab.ovs
        .ofctl(&[
            "del-flows",
            "br-int",
            "cookie=0x7664706167656e74/-1,dl_vlan=2888",
        ])
        .unwrap();

    // ovs-vswitchd restart: every OpenFlow flow is gone.
    lab.ovs.restart_vswitchd().unwrap();
    assert!(lab.ours("br-ethd").is_empty());
    let c = d.check_flows().unwrap();
    assert_eq!(c.restored, 8);
    assert!(!c.ports_readded);
    assert_eq!(lab.ours("br-ethd"), ex_ours);
    assert_eq!(lab.ours("br-int"), int_ours);

    // Ports removed behind our back: put back, flows rebuilt on fresh ofports.
    lab.ovs
        .vsctl(&["del-port", "br-ethd", "LLDPOeth2"])
        .unwrap();
    lab.ovs.vsctl(&["del-port", "br-ethd", "eth2"]).unwrap();
    let c = d.check_flows().unwrap();
    assert!(c.ports_readded);
    eprintln!("after re-adding ports: {c:?}");
    assert_eq!(c.restored, c.removed);
    let mut ex = lab.passthrough("LLDPOeth2", "eth2");
    ex.push(lab.vm_ex(5, 3003));
    ex.push(lab.vm_ex(6, 3010));
    assert_eq!(lab.ours("br-ethd"), sorted(ex));
    let u = d.uplink().unwrap();
    assert_eq!(
        (u.uplink_ofport, u.ovs_veth_ofport),
        (lab.ofport("eth2"), lab.ofport("LLDPOeth2"))
    );
}

#[test]
fn port_local_vlan_and_wait() {
    let Some(lab) = Lab::with_topology("d") else {
        return;
    };
    let d = Arc::new(lab.driver());
    let sd = Shutdown::new();
    lab.vm(1, P1, Some(7));
    assert_eq!(d.port_local_vlan(P1).unwrap(), 7);
    assert_eq!(
        d.wait_port_local_vlan(P1, Duration::from_secs(2), &sd)
            .unwrap(),
        7
    );
    assert_eq!(
        d.port_local_vlan(P2).unwrap_err().to_string(),
        format!("Unknown portname for uuid {P2}")
    );
    assert!(matches!(
        d.port_local_vlan("x,y"),
        Err(OvsError::BadPortId(_))
    ));

    // Port plugged, tag not yet set (Neutron sets 4095 first, then the VLAN).
    lab.vm(2, P2, Some(4095));
    assert_eq!(
        d.port_local_vlan(P2).unwrap_err().to_string(),
        "Invalid OVS VLAN for port tapvm2"
    );
    let setter = {
        let inst_helper = lab.ovs.root_helper();
        std::thread::spawn(move || {
            let r = Runner::new(inst_helper, Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(1500));
            // --no-wait: returns as soon as OVSDB committed the tag.
            let start = Instant::now();
            r.run(&["ovs-vsctl", "--no-wait", "set", "Port", "tapvm2", "tag=9"])
                .unwrap();
            (start, Instant::now())
        })
    };
    let t0 = Instant::now();
    let got = d.wait_port_local_vlan(P2, Duration::from_secs(8), &sd);
    let returned = Instant::now();
    let (set_start, set_done) = setter.join().unwrap();
    assert_eq!(got.unwrap(), 9);
    let lag = returned.saturating_duration_since(set_done);
    eprintln!(
        "tag committed (set took {:?}) -> returned {lag:?} later; waited {:?} in all",
        set_done - set_start,
        returned - t0
    );
    assert!(returned > set_start);
    assert!(
        lag < Duration::from_millis(100),
        "returned {lag:?} after the tag was set"
    );

    // Port created later, tag with it: found by the 100 ms interface poll.
    let setter = {
        let inst_helper = lab.ovs.root_helper();
        std::thread::spawn(move || {
            let r = Runner::new(inst_helper, Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(700));
            r.run(&[
                "ip", "link", "add", "tapvm3", "type", "veth", "peer", "name", "vm3",
            ])
            .unwrap();
            r.run(&[
                "ovs-vsctl",
                "--no-wait",
                "--",
                "add-port",
                "br-int",
                "tapvm3",
                "tag=11",
                "--",
                "set",
                "Interface",
                "tapvm3",
                &format!("external_ids:iface-id={P3}"),
            ])
            .unwrap();
            Instant::now()
        })
    };
    let got = d.wait_port_local_vlan(P3, Duration::from_secs(8), &sd);
    let returned = Instant::now();
    let set_at = setter.join().unwrap();
    assert_eq!(got.unwrap(), 11);
    let lag = returned.saturating_duration_since(set_at);
    eprintln!("port+tag created -> returned: {lag:?}");
    assert!(
        lag < Duration::from_millis(300),
        "returned {lag:?} after the port appeared"
    );

    // No tag ever: gives up at the bound.
    lab.ovs.set_port_tag("tapvm1", None).unwrap();
    let t0 = Instant::now();
    let e = d
        .wait_port_local_vlan(P1, Duration::from_millis(1500), &sd)
        .unwrap_err();
    let took = t0.elapsed();
    assert_eq!(e.to_string(), "Invalid OVS VLAN for port tapvm1");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(2100),
        "{took:?}"
    );
    // Unknown port: gives up at the bound.
    let t0 = Instant::now();
    let e = d
        .wait_port_local_vlan(
            "44444444-4444-4444-8444-444444444444",
            Duration::from_millis(500),
            &sd,
        )
        .unwrap_err();
    assert!(matches!(e, OvsError::UnknownPortName(_)), "{e}");
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );

    // Shutdown ends the wait early.
    let sd2 = Shutdown::new();
    let trig = {
        let sd2 = sd2.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            sd2.trigger();
        })
    };
    let t0 = Instant::now();
    let e = d
        .wait_port_local_vlan(P1, Duration::from_secs(10), &sd2)
        .unwrap_err();
    trig.join().unwrap();
    assert!(matches!(e, OvsError::Shutdown), "{e}");
    assert!(
        t0.elapsed() < Duration::from_millis(1600),
        "{:?}",
        t0.elapsed()
    );
}

/// Port events from several threads racing the flow check: at the end the
/// bridges hold exactly the flows of the table.
#[test]
fn concurrent_port_events_and_flow_check() {
    let Some(lab) = Lab::with_topology("h") else {
        return;
    };
    let d = Arc::new(lab.driver());
    d.setup_uplink("eth2").unwrap();
    let mut workers = Vec::new();
    for t in 0..4u16 {
        let d = d.clone();
        workers.push(std::thread::spawn(move || {
            let net = format!("eeeeeeee-0000-4000-8000-00000000000{t}");
            let local = 10 + t;
            for round in 0..5u16 {
                let p1 = format!("ffffffff-000{t}-4000-8000-00000000000{round}");
                let p2 = format!("ffffffff-100{t}-4000-8000-00000000000{round}");
                let vdp = 3100 + t * 10 + round;
                d.add_vm_port(&net, local, &p1, Some(vdp), None).unwrap();
                d.add_vm_port(&net, local, &p2, Some(vdp), None).unwrap();
                d.set_port_vdp_vlan(&net, &p1, Some(vdp + 500), None)
                    .unwrap();
                d.remove_vm_port(&net, &p1).unwrap();
                if round < 4 {
                    d.remove_vm_port(&net, &p2).unwrap();
                }
            }
        }));
    }
    let checker = {
        let d = d.clone();
        std::thread::spawn(move || {
            for _ in 0..5 {
                d.check_flows().unwrap();
            }
        })
    };
    for w in workers {
        w.join().unwrap();
    }
    checker.join().unwrap();
    // Each network ends with p2 of the last round: VLAN 3100+10t+4 (p1's
    // change to +500 went with p1: the remaining port's VLAN wins again).
    let mut want_ex = lab.passthrough("LLDPOeth2", "eth2");
    let mut want_int = Vec::new();
    for t in 0..4u16 {
        want_ex.push(lab.vm_ex(10 + t, 3100 + t * 10 + 4));
        want_int.push(lab.vm_int(10 + t, 3100 + t * 10 + 4));
    }
    assert_eq!(lab.ours("br-ethd"), sorted(want_ex));
    assert_eq!(lab.ours("br-int"), sorted(want_int));
    let c = d.check_flows().unwrap();
    assert_eq!((c.restored, c.removed), (0, 0));
    assert_eq!(d.local_vlans().len(), 4);
}

/// Bridges that only speak OpenFlow 1.3: with `-O OpenFlow10,OpenFlow13`
/// everything works and the flow check sees our flows as present (OVS
/// prints the VLAN rewrite as `set_field:..->vlan_vid` there).
#[test]
fn openflow13_only_bridges() {
    use vdp_agent::api::ovs::{ofctl::OfctlOpts, OvsOptions};
    let Some(lab) = Lab::with_topology("g") else {
        return;
    };
    for br in ["br-int", "br-ethd"] {
        lab.ovs
            .vsctl(&["set", "Bridge", br, "protocols=OpenFlow13"])
            .unwrap();
    }
    let plain = lab.driver();
    assert!(
        plain.setup_uplink("eth2").is_err(),
        "OpenFlow10 must be refused"
    );
    let opts = OvsOptions {
        ofctl: OfctlOpts {
            protocols: Some("OpenFlow10,OpenFlow13".into()),
        },
        ..OvsOptions::default()
    };
    let runner = lab.runner();
    let d = OvsDriver::with_options(runner.clone(), "br-int", "br-ethd", opts);
    d.setup_uplink("eth2").unwrap();
    d.add_vm_port(NET_A, 5, P1, Some(3003), None).unwrap();
    let dump = lab
        .ovs
        .ofctl(&[
            "-O",
            "OpenFlow13",
            "dump-flows",
            "--no-stats",
            "br-int",
            COOKIE,
        ])
        .unwrap();
    assert!(dump.contains("set_field:4101->vlan_vid"), "{dump}");
    let c = d.check_flows().unwrap();
    assert_eq!((c.restored, c.removed), (0, 0));
    d.set_port_vdp_vlan(NET_A, P1, Some(3004), None).unwrap();
    let dump = lab
        .ovs
        .ofctl(&[
            "-O",
            "OpenFlow13",
            "dump-flows",
            "--no-stats",
            "br-int",
            COOKIE,
        ])
        .unwrap();
    assert!(
        dump.contains("dl_vlan=3004") && !dump.contains("dl_vlan=3003"),
        "{dump}"
    );
    d.teardown_uplink("eth2").unwrap();
    let dump = lab
        .ovs
        .ofctl(&["-O", "OpenFlow13", "dump-flows", "br-ethd", COOKIE])
        .unwrap();
    assert!(!dump.contains("cookie=0x7664706167656e74"), "{dump}");
}

/// Send `frame` `count` times on `ifname` inside netns `ns`, 200 ms apart.
fn send_frames(lab: &Lab, ifname: &str, frame: Vec<u8>, count: usize) {
    lab.ns
        .send_frames(ifname, &frame, count, Duration::from_millis(200))
        .expect("send frames");
}

/// An Ethernet frame (ethertype 0x88b5, local experimental), optionally
/// with an 802.1Q tag, padded to 60 bytes.
fn frame(dst: [u8; 6], src: [u8; 6], vlan: Option<u16>) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(b"vdp-agent ovs test");
    f.resize(60, 0);
    f
}

/// tcpdump in the lab netns; returns what it printed.
fn capture(lab: &Lab, ifname: &str, filter: &str, send: impl FnOnce()) -> String {
    let mut cap = std::process::Command::new("timeout");
    cap.arg("6");
    for w in lab.ovs.root_helper() {
        cap.arg(w);
    }
    cap.args(["tcpdump", "-i", ifname, "-e", "-n", "-l", "-c", "1", filter])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cap.spawn().expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1200));
    send();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("tcpdump -i {ifname} {filter}: {text}");
    text
}

/// On the netdev datapath, with Neutron's drop flows in place: a VM frame
/// (untagged; br-int tags it with the local VLAN) leaves the uplink with
/// the VDP VLAN, and a frame arriving on the uplink with the VDP VLAN
/// reaches the VM untagged.
#[test]
fn vm_frames_translated_between_local_and_vdp_vlan() {
    let Some(lab) = Lab::with_topology("e") else {
        return;
    };
    let d = lab.driver();
    d.setup_uplink("eth2").unwrap();
    lab.vm(1, P1, Some(5));
    d.add_vm_port(NET_A, 5, P1, Some(3003), None).unwrap();
    let vm_mac = [0xfa, 0x16, 0x3e, 0, 0, 1];
    let leaf_mac = [0x02, 0, 0, 0, 0, 0x99];
    let bcast = [0xff; 6];

    let out = capture(&lab, "swp1", "vlan 3003 and ether proto 0x88b5", || {
        send_frames(&lab, "vm1", frame(bcast, vm_mac, None), 5)
    });
    assert!(
        out.contains("vlan 3003"),
        "no VLAN 3003 frame on the uplink: {out}"
    );
    assert!(
        out.contains("fa:16:3e:00:00:01 > ff:ff:ff:ff:ff:ff"),
        "{out}"
    );

    let out = capture(&lab, "vm1", "ether proto 0x88b5", || {
        send_frames(&lab, "swp1", frame(bcast, leaf_mac, Some(3003)), 5)
    });
    assert!(
        out.contains("02:00:00:00:00:99 > ff:ff:ff:ff:ff:ff"),
        "frame did not reach the VM: {out}"
    );
    assert!(!out.contains("vlan"), "VM got a tagged frame: {out}");

    // Without our flows Neutron's drop flows win: nothing passes.
    d.remove_vm_port(NET_A, P1).unwrap();
    let out = capture(
        &lab,
        "swp1",
        "ether proto 0x88b5 or (vlan and ether proto 0x88b5)",
        || send_frames(&lab, "vm1", frame(bcast, vm_mac, None), 3),
    );
    assert!(
        !out.contains("fa:16:3e:00:00:01"),
        "frame passed without flows: {out}"
    );
}

/// Capture the real outputs the parsers read, with the exact argv the
/// driver uses, into tests/fixtures/ovs/ (`tests/ovs_parsers.rs` reads
/// them). Run: `cargo test --test ovs_driver capture_fixtures -- --ignored`.
#[test]
#[ignore]
fn capture_fixtures() {
    use vdp_agent::api::ovs::{ofctl, vsctl};
    let Some(lab) = Lab::with_topology("f") else {
        return;
    };
    let d = lab.driver();
    d.setup_uplink("eth2").unwrap();
    lab.vm(1, P1, Some(5));
    lab.vm(2, P2, None);
    d.add_vm_port(NET_A, 5, P1, Some(3003), None).unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ovs");
    std::fs::create_dir_all(&dir).unwrap();
    let o = ofctl::OfctlOpts::default();
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("list_br.txt", vsctl::list_br_argv()),
        (
            "snapshot.json",
            vsctl::snapshot_argv(&["eth2", "LLDPOeth2"]),
        ),
        ("find_iface.json", vsctl::find_iface_argv(P1)),
        ("find_iface_none.json", vsctl::find_iface_argv(P3)),
        ("get_tag.txt", vsctl::get_tag_argv("tapvm1")),
        ("get_tag_empty.txt", vsctl::get_tag_argv("tapvm2")),
        (
            "ofports.txt",
            vsctl::get_ofports_argv(&["eth2", "LLDPOeth2", "phy-br-ethd", "int-br-ethd"]),
        ),
        (
            "dump_flows_br_ethd.txt",
            ofctl::dump_flows_argv(&o, "br-ethd", None),
        ),
        (
            "dump_flows_br_int_ours.txt",
            ofctl::dump_flows_argv(&o, "br-int", Some(&ofctl::our_cookie_filter())),
        ),
        (
            "dump_flows_br_ethd_stats.txt",
            vec!["ovs-ofctl".into(), "dump-flows".into(), "br-ethd".into()],
        ),
        (
            "ip_link_veth.json",
            ["ip", "-j", "link", "show", "type", "veth"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
    ];
    let mut readme = String::from(
        "Live captures (tests/ovs_driver.rs capture_fixtures) from a userspace OVS\n\
         (netdev datapath) in a netns: Neutron-like br-int/br-ethd with patch ports\n\
         int-br-ethd/phy-br-ethd, uplink eth2, LLDP veth LLDPOeth2/LLDPLeth2, VM port\n\
         tapvm1 (tag 5, iface-id 11111111-...), tapvm2 (no tag), network A local VLAN 5\n\
         -> VDP VLAN 3003.\n\n",
    );
    readme.push_str(&lab.ovs.vsctl(&["--version"]).unwrap());
    readme.push('\n');
    for (file, argv) in cases {
        let out = lab.ovs.run(&argv).unwrap();
        std::fs::write(dir.join(file), &out).unwrap();
        readme.push_str(&format!("{file}: {}\n", argv.join(" ")));
    }
    std::fs::write(dir.join("README"), readme).unwrap();
}

/// VM flows over the bridges' management sockets (`with_openflow`): the
/// same flows as with ovs-ofctl, no process for a VM's flow change, the
/// flow check content; a run directory without the sockets falls back to
/// ovs-ofctl.
#[test]
fn vm_flows_over_openflow() {
    use vdp_agent::api::ovs::OvsOptions;
    let Some(lab) = Lab::with_topology("h") else {
        return;
    };
    let run_dir: PathBuf = lab
        .ovs
        .env()
        .into_iter()
        .find(|(k, _)| k == "OVS_RUNDIR")
        .map(|(_, v)| v.into())
        .unwrap();
    let opts = OvsOptions {
        run_dir,
        ..OvsOptions::default()
    };
    let runner = lab.runner();
    let d = OvsDriver::with_options(runner.clone(), "br-int", "br-ethd", opts).with_openflow();
    d.setup_uplink("eth2").unwrap();
    let pass = lab.passthrough("LLDPOeth2", "eth2");
    let before = runner.spawned();
    let u = d.add_vm_port(NET_A, 5, P1, Some(3003), None).unwrap();
    assert!(u.error.is_none(), "{u:?}");
    assert_eq!(runner.spawned(), before, "no process for a VM's flows");
    let mut ex = pass.clone();
    ex.push(lab.vm_ex(5, 3003));
    assert_eq!(lab.ours("br-ethd"), sorted(ex));
    assert_eq!(lab.ours("br-int"), vec![lab.vm_int(5, 3003)]);
    // A VLAN change: the new flows first, the old ones deleted strictly.
    let c = d.set_port_vdp_vlan(NET_A, P1, Some(3004), None).unwrap();
    assert!(c.flows.error.is_none());
    assert_eq!(lab.ours("br-int"), vec![lab.vm_int(5, 3004)]);
    let mut ex = pass.clone();
    ex.push(lab.vm_ex(5, 3004));
    assert_eq!(lab.ours("br-ethd"), sorted(ex));
    assert_eq!(runner.spawned(), before);
    let check = d.check_flows().unwrap();
    assert_eq!(
        (check.restored, check.removed),
        (0, 0),
        "the check sees them as its own"
    );
    // The last port goes: flows gone, still no process.
    let before = runner.spawned();
    assert!(d.remove_vm_port(NET_A, P1).unwrap().net_removed);
    assert!(lab.ours("br-int").is_empty());
    assert_eq!(lab.ours("br-ethd"), pass);
    assert_eq!(runner.spawned(), before);
    assert_eq!(d.openflow_counts(), (true, 6, 0));

    // No sockets where it looks: ovs-ofctl does it.
    let opts = OvsOptions {
        run_dir: "/nonexistent-ovs-run-dir".into(),
        ..OvsOptions::default()
    };
    let runner = lab.runner();
    let d = OvsDriver::with_options(runner.clone(), "br-int", "br-ethd", opts).with_openflow();
    d.setup_uplink("eth2").unwrap();
    let before = runner.spawned();
    d.add_vm_port(NET_B, 6, P2, Some(3010), None).unwrap();
    assert_eq!(lab.ours("br-int"), vec![lab.vm_int(6, 3010)]);
    assert_eq!(runner.spawned(), before + 2, "one ovs-ofctl per bridge");
    assert_eq!(d.openflow_counts(), (true, 0, 2));
}
