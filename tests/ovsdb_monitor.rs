//! The OVSDB JSON-RPC monitor (`ovs::ovsdb::Monitor`) and the OVS driver
//! with it (`OvsDriver::with_ovsdb_monitor`) against a real private OVS in
//! userspace (root; netns `pov<pid>`).
//!
//! Proves: a VM port's tag is read from the monitor's view with no process;
//! a wait returns the moment the tag is set (no polling); a tag change and
//! a port deletion are seen; an unusable socket falls back to the
//! `ovsdb-client` / `ovs-vsctl` processes with the same answers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::api::ovs::ovsdb::Monitor;
use vdp_agent::api::ovs::{OvsDriver, OvsError};
use vdp_agent::api::shutdown::Shutdown;
use vdp_agent::lab::netns::{Netns, TempDir};
use vdp_agent::lab::ovs_instance::{OvsInstance, VmPortSpec};

const P1: &str = "9e000000-1111-4111-8111-111111111111";
const P2: &str = "9e000000-2222-4222-8222-222222222222";

fn vm(n: u8, port_uuid: &str, tag: Option<u16>) -> VmPortSpec {
    VmPortSpec {
        tap: format!("ptap{n}"),
        vm_if: format!("pvm{n}"),
        port_uuid: port_uuid.into(),
        mac: format!("fa:16:3e:9e:00:{n:02x}"),
        vm_uuid: "9e9e9e9e-0000-4000-8000-000000000001".into(),
        tag,
    }
}

#[test]
fn monitor_follows_tags_without_processes() {
    let have_ovs = std::process::Command::new("ovs-vswitchd")
        .arg("--version")
        .output()
        .is_ok();
    if (!vdp_agent::lab::netns::is_root() || !have_ovs)
        && vdp_agent::lab::netns::skip_missing("root and openvswitch-switch")
    {
        return;
    }
    let pid = std::process::id();
    let ns = Netns::create(&format!("pov{pid}")).expect("ip netns add");
    let dir = TempDir::at(PathBuf::from(format!("/tmp/pov-{pid}"))).expect("temp dir");
    let ovs = OvsInstance::start(Some(ns.name()), dir.path()).expect("start OVS");
    ovs.vsctl(&[
        "add-br",
        "br-int",
        "--",
        "set",
        "bridge",
        "br-int",
        "datapath_type=netdev",
    ])
    .expect("br-int");
    ovs.add_vm_port("br-int", &vm(1, P1, Some(5)))
        .expect("port 1");
    let db = dir.path().join("db.sock");

    // The bare monitor.
    let m = Monitor::new(&db);
    assert_eq!(m.lookup(P1).unwrap(), Some(("ptap1".into(), Some(5))));
    assert_eq!(m.lookup(P2).unwrap(), None);
    // Plugged untagged, then Neutron sets the tag: the wait returns then.
    ovs.add_vm_port("br-int", &vm(2, P2, None)).expect("port 2");
    assert_eq!(m.lookup(P2).unwrap(), Some(("ptap2".into(), None)));
    let setter = {
        let helper = ovs.root_helper();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let r = vdp_agent::api::exec::Runner::new(helper, Duration::from_secs(10));
            r.run(&["ovs-vsctl", "set", "Port", "ptap2", "tag=7"])
                .unwrap();
            Instant::now()
        })
    };
    let sd = Shutdown::new();
    let got = m
        .wait_tag(P2, Instant::now() + Duration::from_secs(10), &sd)
        .unwrap();
    let seen = Instant::now();
    let set_at = setter.join().unwrap();
    assert_eq!(got, Some(("ptap2".into(), Some(7))));
    eprintln!(
        "tag seen {:?} after ovs-vsctl returned",
        seen.saturating_duration_since(set_at)
    );
    ovs.set_port_tag("ptap2", Some(4095)).unwrap();
    assert_eq!(m.lookup(P2).unwrap(), Some(("ptap2".into(), None)));
    ovs.vsctl(&["del-port", "br-int", "ptap2"]).unwrap();
    assert_eq!(m.lookup(P2).unwrap(), None);
    // A wait that times out reports what is known.
    let t = Instant::now();
    assert_eq!(
        m.wait_tag(P2, Instant::now() + Duration::from_millis(300), &sd)
            .unwrap(),
        None
    );
    assert!(t.elapsed() >= Duration::from_millis(300));

    // The driver: no process for a tagged port, the same answers as the
    // process path.
    let runner = Arc::new(ovs.runner(Duration::from_secs(10)));
    let d = OvsDriver::new(runner.clone(), "br-int", "br-ethd").with_ovsdb_monitor(&db);
    let before = runner.spawned();
    assert_eq!(
        d.wait_port_local_vlan(P1, Duration::from_secs(2), &sd)
            .unwrap(),
        5
    );
    assert_eq!(runner.spawned(), before, "no process");
    assert!(matches!(
        d.wait_port_local_vlan(P2, Duration::ZERO, &sd),
        Err(OvsError::UnknownPortName(_))
    ));
    // Monitor unusable: the processes answer.
    let runner = Arc::new(ovs.runner(Duration::from_secs(10)));
    let d = OvsDriver::new(runner.clone(), "br-int", "br-ethd")
        .with_ovsdb_monitor(dir.path().join("nothing.sock"));
    assert_eq!(
        d.wait_port_local_vlan(P1, Duration::from_secs(2), &sd)
            .unwrap(),
        5
    );
    assert!(runner.spawned() > 0);
    drop(ovs);
    drop(ns);
}
