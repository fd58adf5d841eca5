use super::*;

#[test]
fn uplink_fail_reasons_as_the_original() {
    let e = OvsError::BridgesMissing {
        bridges: vec!["br-int".into()],
        br_int: "br-int".into(),
        br_ex: "br-ethd".into(),
    };
    assert_eq!(
        uplink_fail_reason(&e).to_string(),
        "Openstck is not running: Integ or Physical Bridge not created by Openstack. \
             Bridge_list: ['br-int'] Integ Br: br-int Ext Br: br-ethd."
    );
    let e = OvsError::PatchPortsMissing {
        ex_peer: None,
        int_peer: None,
    };
    assert_eq!(
        uplink_fail_reason(&e).to_string(),
        "Openstck is not running: Integ or Physical Patch/Veth Ports not configured by \
             Openstack. Ext Peer: None Integ Peer: None."
    );
    assert_eq!(
        uplink_fail_reason(&OvsError::UplinkOfport).to_string(),
        "Uplink OF port not detected on external bridge"
    );
}
