use super::*;

#[test]
fn fail_reason_texts() {
    let e = OvsError::BridgesMissing {
        bridges: vec!["br-int".into()],
        br_int: "br-int".into(),
        br_ex: "br-ethd".into(),
    };
    assert_eq!(
            e.to_string(),
            "Integ or Physical Bridge not created by Openstack. Bridge_list: ['br-int'] Integ Br: br-int Ext Br: br-ethd"
        );
    let e = OvsError::PatchPortsMissing {
        ex_peer: None,
        int_peer: None,
    };
    assert_eq!(
            e.to_string(),
            "Integ or Physical Patch/Veth Ports not configured by Openstack. Ext Peer: None Integ Peer: None"
        );
    assert_eq!(
        OvsError::PeerOfport { phy: -1, int: 1 }.to_string(),
        "int or phy peer OF Port not detected on Int or Phy Bridge. Phy Peer: -1 Int Peer: 1"
    );
    assert_eq!(
        OvsError::UnknownPortName("u".into()).to_string(),
        "Unknown portname for uuid u"
    );
}

#[test]
fn port_ids() {
    assert!(valid_port_id("11111111-2222-3333-4444-555555555555"));
    assert!(!valid_port_id("x,y"));
    assert!(!valid_port_id("a b"));
    assert!(!valid_port_id("-x"));
    assert!(!valid_port_id(""));
}

#[test]
fn readers_never_wait_for_an_operation() {
    let d = OvsDriver::new(Arc::new(Runner::direct()), "br-int", "br-ex");
    // An operation in the middle of its commands holds the state lock.
    let held = d.lock_state();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = tx.send((
                d.local_vlans().len(),
                d.port_vlans("net", "port"),
                d.net_vdp_vlan("net"),
                d.uplink().is_some(),
            ));
        });
        let got = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(
            got,
            Ok((0, None, None, false)),
            "a reader waited on the state lock"
        );
    });
    drop(held);
}
