//! lldptool driver against real lldpad daemons in network namespaces (root).
//! Station side = "host" netns with a fresh lldpad; neighbour = a
//! bridge-role lldpad in a peer netns.

use std::sync::Arc;
use std::time::Duration;
use vdp_agent::api::exec::ExecError;
use vdp_agent::api::lldpad::lldptool as lt;
use vdp_agent::api::lldpad::LldpadError;
use vdp_agent::lab::netns::{self, veth_with_mac, LldpadInstance, LldpadRole, Netns, TempDir};

#[test]
fn enable_settings_read_back_idempotent_and_lost_settings() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let p = netns::unique("lts", 0);
    let dir = TempDir::new(&p).unwrap();
    let host = Netns::create(&format!("{p}-host")).unwrap();
    let peer = Netns::create(&format!("{p}-peer")).unwrap();
    let (intf, peer_if) = (format!("{p}h0"), format!("{p}p0"));
    veth_with_mac(&host, &intf, &peer, &peer_if, "52:54:00:1e:00:02").unwrap();
    let _bridge = LldpadInstance::start(&peer, LldpadRole::Bridge, &peer_if, dir.path()).unwrap();
    let mut station = LldpadInstance::start(&host, LldpadRole::Station, &intf, dir.path()).unwrap();
    let r = Arc::new(host.runner(Duration::from_secs(5)));

    assert_eq!(lt::lldpad_pid(&r).unwrap(), station.child_pid().unwrap());
    assert!(
        !lt::lldp_settings_ok(&r, &intf).unwrap(),
        "fresh lldpad has nothing set"
    );

    lt::enable_lldp(&r, &intf).unwrap();
    lt::enable_evb(&r, &intf).unwrap();
    lt::enable_gpid(&r, &intf).unwrap();
    // Read back with plain lldptool, independently of the driver.
    assert_eq!(
        host.stdout(&["lldptool", "-l", "-i", &intf, "-g", "ncb", "adminStatus"])
            .unwrap()
            .trim(),
        "adminStatus=rxtx"
    );
    assert_eq!(
        host.stdout(&["lldptool", "-t", "-i", &intf, "-g", "ncb", "-V", "evb", "-c", "enableTx"])
            .unwrap()
            .trim(),
        "enableTx=yes"
    );
    assert_eq!(
        host.stdout(&["lldptool", "-t", "-i", &intf, "-g", "ncb", "-V", "evb", "-c", "evbgpid"])
            .unwrap()
            .trim(),
        "evbgpid=yes"
    );
    assert!(lt::lldp_settings_ok(&r, &intf).unwrap());

    // Re-run: lldpad would answer "Failed" rc 1 to a second enableTx=yes.
    let again = host
        .stdout(&[
            "lldptool",
            "-T",
            "-i",
            &intf,
            "-g",
            "ncb",
            "-V",
            "evb",
            "enableTx=yes",
        ])
        .unwrap();
    assert!(again.starts_with("Failed"), "{again:?}");
    lt::enable_lldp(&r, &intf).unwrap();
    lt::enable_evb(&r, &intf).unwrap();
    lt::enable_gpid(&r, &intf).unwrap();
    assert!(lt::lldp_settings_ok(&r, &intf).unwrap());

    // The neighbour's EVB TLV, all TLVs in one call.
    let mut tlvs = lt::NeighborTlvs::default();
    assert!(
        netns::wait_until(Duration::from_secs(10), || {
            tlvs = lt::get_tlvs(&r, &intf).unwrap();
            tlvs.is_evb_bridge()
        }),
        "no EVB bridge TLV: {:?}",
        tlvs.raw
    );
    assert_eq!(tlvs.chassis_id_mac.as_deref(), Some("52:54:00:1e:00:02"));
    assert_eq!(tlvs.port_id_mac.as_deref(), Some("52:54:00:1e:00:02"));
    assert!(tlvs.evb_cfgd);

    // Disable: read back, and the settings check notices.
    lt::disable_lldp(&r, &intf).unwrap();
    assert_eq!(lt::admin_status(&r, &intf).unwrap(), "disabled");
    assert!(!lt::lldp_settings_ok(&r, &intf).unwrap());
    lt::enable_lldp(&r, &intf).unwrap();
    assert!(lt::lldp_settings_ok(&r, &intf).unwrap());

    // An lldpad that restarts with an empty config: new pid, settings lost.
    let old_pid = station.child_pid().unwrap();
    station.restart().unwrap();
    let new_pid = lt::lldpad_pid(&r).unwrap();
    assert_eq!(new_pid, station.child_pid().unwrap());
    assert_ne!(new_pid, old_pid);
    assert!(!lt::lldp_settings_ok(&r, &intf).unwrap());
}

#[test]
fn no_lldpad_and_unknown_interface_are_errors() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let p = netns::unique("ltn", 0);
    let dir = TempDir::new(&p).unwrap();
    let empty = Netns::create(&format!("{p}-none")).unwrap();
    let r = Arc::new(empty.runner(Duration::from_secs(5)));
    for e in [
        lt::lldpad_pid(&r).unwrap_err(),
        lt::enable_lldp(&r, "lo").unwrap_err(),
        lt::get_tlvs(&r, "lo").unwrap_err(),
        lt::enable_evb(&r, "lo").unwrap_err(),
    ] {
        match &e {
            LldpadError::Exec(ExecError::Failed { output, cmd }) => {
                assert_eq!(output.code, 255, "{e}");
                assert!(cmd.contains("lldptool"), "{cmd}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    let ns = Netns::create(&format!("{p}-one")).unwrap();
    let _l = LldpadInstance::start(&ns, LldpadRole::Station, "lo", dir.path()).unwrap();
    let r = Arc::new(ns.runner(Duration::from_secs(5)));
    let e = lt::enable_lldp(&r, "nosuch0").unwrap_err();
    assert!(e.to_string().contains("Device not found"), "{e}");
}
