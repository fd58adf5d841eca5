//! Parser tests on lldptool output captured live (tests/fixtures/lldptool/,
//! see its README for the lab and argv of each capture).

use vdp_agent::api::lldpad::lldptool::{config_value, parse_tlvs, NeighborTlvs};

fn fixture(name: &str, ext: &str) -> String {
    let p = format!(
        "{}/tests/fixtures/lldptool/{name}.{ext}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn stdout(name: &str) -> String {
    fixture(name, "stdout")
}

fn rc(name: &str) -> i32 {
    fixture(name, "rc").trim().parse().expect("rc")
}

#[test]
fn bridge_neighbour_basic_tlvs() {
    let t = parse_tlvs(&stdout("tlv_bridge"));
    assert_eq!(t.chassis_id_mac.as_deref(), Some("52:54:00:bb:00:02"));
    assert_eq!(t.port_id_mac.as_deref(), Some("52:54:00:bb:00:02"));
    assert_eq!(t.port_id.as_deref(), Some("52:54:00:bb:00:02"));
    assert_eq!(t.evb_mode.as_deref(), Some("bridge"));
    assert!(t.evb_cfgd);
    assert!(t.is_evb_bridge());
    // TLVs the neighbour does not send are None.
    assert_eq!(t.port_desc, None);
    assert_eq!(t.system_name, None);
    assert_eq!(t.system_desc, None);
    assert_eq!(t.mgmt_addr, None);
    assert_eq!(t.raw, stdout("tlv_bridge"));
}

#[test]
fn bridge_neighbour_evb_only_listing() {
    let t = parse_tlvs(&stdout("tlv_bridge_evb"));
    assert_eq!(t.evb_mode.as_deref(), Some("bridge"));
    assert!(t.evb_cfgd);
    assert_eq!(t.chassis_id_mac, None);
}

#[test]
fn bridge_neighbour_with_name_desc_mgmt() {
    let t = parse_tlvs(&stdout("tlv_bridge_full"));
    assert_eq!(t.chassis_id_mac.as_deref(), Some("52:54:00:bb:00:02"));
    assert_eq!(t.port_id_mac.as_deref(), Some("52:54:00:bb:00:02"));
    assert_eq!(t.port_desc.as_deref(), Some("Interface   5 as ltcapb0"));
    assert_eq!(t.system_name.as_deref(), Some("vm"));
    assert_eq!(
        t.system_desc.as_deref(),
        Some("Linux vm 6.18.44-fc-v657 #1 SMP PREEMPT_DYNAMIC @0 x86_64")
    );
    assert_eq!(t.mgmt_addr.as_deref(), Some("IPv4:10.10.0.101"));
    assert_eq!(t.evb_mode.as_deref(), Some("bridge"));
    assert!(t.evb_cfgd);

    let changed = parse_tlvs(&stdout("tlv_bridge_sysname_changed"));
    assert_eq!(changed.system_name.as_deref(), Some("leaf-lt-1"));
    assert_eq!(changed.system_desc, t.system_desc);
}

#[test]
fn station_neighbour_is_not_a_bridge() {
    let t = parse_tlvs(&stdout("tlv_station_neighbor"));
    assert_eq!(t.evb_mode.as_deref(), Some("station"));
    assert!(t.evb_cfgd);
    assert!(!t.is_evb_bridge());
}

#[test]
fn no_neighbour_is_all_none() {
    for name in ["empty", "tlv_nb_empty", "tlv_after_disable"] {
        assert_eq!(rc(name), 0, "{name}");
        let t = parse_tlvs(&stdout(name));
        assert_eq!(t, NeighborTlvs::default(), "{name}");
        assert!(!t.evb_cfgd);
    }
}

#[test]
fn evb_config_listings() {
    let before = stdout("evb_c_before");
    assert_eq!(config_value(&before, "enableTx").as_deref(), Some("no"));
    assert_eq!(config_value(&before, "evbgpid").as_deref(), Some("no"));
    assert_eq!(config_value(&before, "evbmode").as_deref(), Some("station"));
    let after = stdout("evb_c_after");
    assert_eq!(config_value(&after, "enableTx").as_deref(), Some("yes"));
    assert_eq!(config_value(&after, "evbgpid").as_deref(), Some("yes"));
    assert_eq!(config_value(&after, "vdprka").as_deref(), Some("20"));
    assert_eq!(
        config_value(&stdout("evb_c_enableTx_before"), "enableTx").as_deref(),
        Some("no")
    );
    assert_eq!(
        config_value(&stdout("evb_c_enableTx_after"), "enableTx").as_deref(),
        Some("yes")
    );
    assert_eq!(
        config_value(&stdout("evb_c_evbgpid_after"), "evbgpid").as_deref(),
        Some("yes")
    );
    assert_eq!(
        config_value(&stdout("admin_get_after"), "adminStatus").as_deref(),
        Some("rxtx")
    );
    assert_eq!(
        config_value(&stdout("admin_get_disabled"), "adminStatus").as_deref(),
        Some("disabled")
    );
}

#[test]
fn set_replies_and_failures() {
    assert_eq!(stdout("enable_lldp").trim(), "adminStatus = rxtx");
    assert_eq!(stdout("disable_lldp").trim(), "adminStatus = disabled");
    assert_eq!((rc("enable_evb"), stdout("enable_evb").as_str()), (0, ""));
    // EVB TX already on: "Failed", rc 1 (what enable_evb must tolerate).
    assert_eq!(rc("enable_evb_again"), 1);
    assert!(stdout("enable_evb_again").starts_with("Failed"));
    assert_eq!((rc("enable_gpid"), stdout("enable_gpid").as_str()), (0, ""));
    assert_eq!(rc("bad_intf"), 1);
    assert!(stdout("bad_intf").contains("Device not found or inactive"));
    for name in ["no_lldpad_pid", "no_lldpad_tlv", "no_lldpad_L"] {
        assert_eq!(rc(name), 255, "{name}");
        assert!(fixture(name, "stderr").contains("Failed to connect to lldpad"));
    }
    assert!(stdout("pid").trim().parse::<u32>().is_ok());
}
