//! lldptool driver against real lldpad daemons in network namespaces (root).
//! Station side = "host" netns with a fresh lldpad; neighbour = a
//! bridge-role lldpad in a peer netns.

mod lldptool_lab;

use lldptool_lab::{veth, Lldpad, Netns, BRIDGE_CONF, EMPTY_CONF};
use std::time::Duration;
use vdp_agent::exec::ExecError;
use vdp_agent::lldpad::lldptool as lt;
use vdp_agent::lldpad::LldpadError;

#[test]
fn enable_settings_read_back_idempotent_and_lost_settings() {
    need_root!();
    let p = lldptool_lab::prefix('s');
    let host = Netns::new(&format!("{p}-host"));
    let peer = Netns::new(&format!("{p}-peer"));
    let intf = format!("{p}h0");
    veth(&host, &intf, &peer, &format!("{p}p0"), "52:54:00:1e:00:02");
    let _bridge = Lldpad::start(&peer, BRIDGE_CONF);
    let station = Lldpad::start(&host, EMPTY_CONF);
    let r = host.runner();

    assert_eq!(lt::lldpad_pid(&r).unwrap(), station.pid());
    assert!(
        !lt::lldp_settings_ok(&r, &intf).unwrap(),
        "fresh lldpad has nothing set"
    );

    lt::enable_lldp(&r, &intf).unwrap();
    lt::enable_evb(&r, &intf).unwrap();
    lt::enable_gpid(&r, &intf).unwrap();
    // Read back with plain lldptool, independently of the driver.
    assert_eq!(
        host.exec(&["lldptool", "-l", "-i", &intf, "-g", "ncb", "adminStatus"])
            .trim(),
        "adminStatus=rxtx"
    );
    assert_eq!(
        host.exec(&["lldptool", "-t", "-i", &intf, "-g", "ncb", "-V", "evb", "-c", "enableTx"])
            .trim(),
        "enableTx=yes"
    );
    assert_eq!(
        host.exec(&["lldptool", "-t", "-i", &intf, "-g", "ncb", "-V", "evb", "-c", "evbgpid"])
            .trim(),
        "evbgpid=yes"
    );
    assert!(lt::lldp_settings_ok(&r, &intf).unwrap());

    // Re-run: lldpad would answer "Failed" rc 1 to a second enableTx=yes.
    let again = host.exec(&[
        "lldptool",
        "-T",
        "-i",
        &intf,
        "-g",
        "ncb",
        "-V",
        "evb",
        "enableTx=yes",
    ]);
    assert!(again.starts_with("Failed"), "{again:?}");
    lt::enable_lldp(&r, &intf).unwrap();
    lt::enable_evb(&r, &intf).unwrap();
    lt::enable_gpid(&r, &intf).unwrap();
    assert!(lt::lldp_settings_ok(&r, &intf).unwrap());

    // The neighbour's EVB TLV, all TLVs in one call.
    let mut tlvs = lt::NeighborTlvs::default();
    assert!(
        lldptool_lab::wait_until(Duration::from_secs(10), || {
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
    let old_pid = station.pid();
    drop(station);
    let station2 = Lldpad::start(&host, EMPTY_CONF);
    let new_pid = lt::lldpad_pid(&r).unwrap();
    assert_eq!(new_pid, station2.pid());
    assert_ne!(new_pid, old_pid);
    assert!(!lt::lldp_settings_ok(&r, &intf).unwrap());
}

#[test]
fn no_lldpad_and_unknown_interface_are_errors() {
    need_root!();
    let p = lldptool_lab::prefix('n');
    let empty = Netns::new(&format!("{p}-none"));
    let r = empty.runner();
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

    let ns = Netns::new(&format!("{p}-one"));
    let _l = Lldpad::start(&ns, EMPTY_CONF);
    let r = ns.runner();
    let e = lt::enable_lldp(&r, "nosuch0").unwrap_err();
    assert!(e.to_string().contains("Device not found"), "{e}");
}
