use super::*;
use serde_json::json;

const PORT: &str = "0b9a1c6e-8a56-4c3e-9f6f-2f7d1a0b1c2d";
const NET: &str = "7e1c0f7a-1111-4c3e-9f6f-2f7d1a0b1c2d";

fn good() -> Value {
    json!({
        "status": "up", "vm_mac": "FA:16:3E:AA:bb:01", "segmentation_id": 30001,
        "host": "compute1", "port_uuid": PORT, "net_uuid": NET,
        "oui": {"oui_id": "cisco", "vm_name": "web 1 (prod)", "vm_uuid": "0123456789abcdef0123456789ABCDEF",
                "ip_addr": "10.0.0.5", "gw_mac": null, "fwd_mod": "anycast_gateway"}
    })
}

fn with(field: &str, val: Value) -> Value {
    let mut v = good();
    let mut cur = &mut v;
    let parts: Vec<&str> = field.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur.get_mut(*p).unwrap();
    }
    cur.as_object_mut()
        .unwrap()
        .insert(parts[parts.len() - 1].to_string(), val);
    v
}

fn without(field: &str) -> Value {
    let mut v = good();
    v.as_object_mut().unwrap().remove(field);
    v
}

fn rejects(v: Value, field: &str) -> VmRejection {
    match validate_vm(&v) {
        Ok(p) => panic!("accepted {v} as {p:?}, expected rejection of {field}"),
        Err(e) => {
            assert_eq!(e.field, field, "{e} for {v}");
            assert!(e.to_string().starts_with(&format!("invalid {field}")));
            e
        }
    }
}

#[test]
fn good_vm_accepted_and_normalised() {
    let p = validate_vm(&good()).unwrap();
    assert_eq!(p.vm_mac, "fa:16:3e:aa:bb:01");
    assert_eq!(p.segmentation_id, 30001);
    assert_eq!(p.status, PortStatus::Up);
    let oui = p.oui.unwrap();
    assert!(oui.is_cisco());
    assert_eq!(oui.vm_name.as_deref(), Some("web 1 (prod)"));
    assert_eq!(oui.ip_addr, Some(Ipv4Addr::new(10, 0, 0, 5)));
    assert_eq!(oui.gw_mac, None);
    assert_eq!(p.local_vlan, None);
}

#[test]
fn port_uuid_hostile() {
    for bad in [
        json!("x"),
        json!(""),
        json!(42),
        json!(null),
        json!("0b9a1c6e-8a56-4c3e-9f6f-2f7d1a0b1c2"),
        json!("0b9a1c6e-8a56-4c3e-9f6f-2f7d1a0b1c2dd"),
        json!("0b9a1c6e 8a56-4c3e-9f6f-2f7d1a0b1c2d"),
        json!("0b9a1c6e-8a56-4c3e-9f6f-2f7d1a0b1c2g"),
        json!("0b9a1c6e8a564c3e9f6f2f7d1a0b1c2d"),
        json!("0b9a1c6e-8a56-4c3e-9f6f-2f7d1a0b1c2d,mode=deassoc"),
    ] {
        let e = rejects(with("port_uuid", bad), "port_uuid");
        assert_eq!(e.port_uuid, None);
    }
    rejects(without("port_uuid"), "port_uuid");
}

#[test]
fn status_hostile() {
    for bad in [
        json!("UP"),
        json!("up "),
        json!(""),
        json!(true),
        json!(1),
        json!("deleted"),
    ] {
        let e = rejects(with("status", bad), "status");
        assert_eq!(e.port_uuid.as_deref(), Some(PORT));
        assert_eq!(e.status, None);
    }
    rejects(without("status"), "status");
}

#[test]
fn mac_hostile() {
    for bad in [
        json!("fa:16:3e:aa:bb"),
        json!("fa:16:3e:aa:bb:01:02"),
        json!("fa-16-3e-aa-bb-01"),
        json!("fa:16:3e:aa:bb:0g"),
        json!("fa:16:3e:aa:bb:01,vlan=5"),
        json!("fa16.3eaa.bb01"),
        json!(["fa:16:3e:aa:bb:01"]),
        json!(""),
    ] {
        let e = rejects(with("vm_mac", bad), "vm_mac");
        assert_eq!(e.port_uuid.as_deref(), Some(PORT));
        assert_eq!(e.status, Some(PortStatus::Up));
    }
    rejects(without("vm_mac"), "vm_mac");
}

#[test]
fn net_uuid_hostile() {
    for bad in [
        json!("net1"),
        json!(7),
        json!("7e1c0f7a-1111-4c3e-9f6f-2f7d1a0b1c2d\n"),
    ] {
        rejects(with("net_uuid", bad), "net_uuid");
    }
    rejects(without("net_uuid"), "net_uuid");
}

#[test]
fn segmentation_id_hostile() {
    for bad in [
        json!(0),
        json!(-1),
        json!(16_777_216),
        json!(1.5),
        json!("30001"),
        json!(u64::MAX),
        json!(true),
        json!(null),
    ] {
        rejects(with("segmentation_id", bad), "segmentation_id");
    }
    for ok in [1u64, 16_777_215] {
        assert_eq!(
            validate_vm(&with("segmentation_id", json!(ok)))
                .unwrap()
                .segmentation_id as u64,
            ok
        );
    }
}

#[test]
fn vlans_hostile_and_unknown() {
    for f in ["local_vlan", "vdp_vlan"] {
        for bad in [
            json!(0),
            json!(4095),
            json!(-2),
            json!("5"),
            json!(70000),
            json!(2.5),
        ] {
            rejects(with(f, bad), f);
        }
        assert_eq!(validate_vm(&with(f, json!(-1))).unwrap().local_vlan, None);
        assert_eq!(validate_vm(&with(f, json!(null))).unwrap().vdp_vlan, None);
    }
    let p = validate_vm(&with("local_vlan", json!(4094))).unwrap();
    assert_eq!(p.local_vlan, Some(4094));
    let p = validate_vm(&with("vdp_vlan", json!(1))).unwrap();
    assert_eq!(p.vdp_vlan, Some(1));
}

#[test]
fn vm_name_cannot_smuggle() {
    for bad in [
        json!("a,mode=deassoc"),
        json!("x=y"),
        json!("line\nbreak"),
        json!("tab\there"),
        json!("nul\u{0}"),
        json!("esc\u{1b}[31m"),
        json!("nbsp\u{a0}x"),
        json!("a".repeat(129)),
        json!(5),
    ] {
        rejects(with("oui.vm_name", bad), "oui.vm_name");
    }
    let p = validate_vm(&with("oui.vm_name", json!("сервер-1 (web)"))).unwrap();
    assert_eq!(p.oui.unwrap().vm_name.as_deref(), Some("сервер-1 (web)"));
    let p = validate_vm(&with("oui.vm_name", json!(""))).unwrap();
    assert_eq!(p.oui.unwrap().vm_name, None);
    validate_vm(&with("oui.vm_name", json!("a".repeat(128)))).unwrap();
}

#[test]
fn oui_fields_hostile() {
    for bad in [
        json!("1.2.3"),
        json!("1.2.3.256"),
        json!("::1"),
        json!("1.2.3.4,x=y"),
        json!(" 1.2.3.4"),
    ] {
        rejects(with("oui.ip_addr", bad), "oui.ip_addr");
    }
    for bad in [
        json!("abc"),
        json!("0123456789abcdef0123456789abcde"),
        json!("{uuid}"),
    ] {
        rejects(with("oui.vm_uuid", bad), "oui.vm_uuid");
    }
    validate_vm(&with("oui.vm_uuid", json!(PORT))).unwrap();
    for bad in [json!("00:11"), json!("00:11:22:33:44:55,x"), json!(1)] {
        rejects(with("oui.gw_mac", bad), "oui.gw_mac");
    }
    let p = validate_vm(&with("oui.gw_mac", json!("00:AA:22:33:44:55"))).unwrap();
    assert_eq!(p.oui.unwrap().gw_mac.as_deref(), Some("00:aa:22:33:44:55"));
    for bad in [json!("a b"), json!("x,y"), json!("a=b")] {
        rejects(with("oui.fwd_mod", bad), "oui.fwd_mod");
    }
    for bad in [json!("cisco,x"), json!(""), json!(3)] {
        rejects(with("oui.oui_id", bad), "oui.oui_id");
    }
    rejects(with("oui", json!("cisco")), "oui");
    rejects(with("oui", json!([1])), "oui");
}

#[test]
fn oui_absent_null_or_foreign() {
    assert_eq!(validate_vm(&without("oui")).unwrap().oui, None);
    assert_eq!(validate_vm(&with("oui", json!(null))).unwrap().oui, None);
    // Unknown OUI: kept, data dropped (even hostile data: never sent).
    let p = validate_vm(&with(
        "oui",
        json!({"oui_id": "acme", "vm_name": "a,b=c", "ip_addr": "nonsense"}),
    ))
    .unwrap();
    let oui = p.oui.unwrap();
    assert_eq!(oui.oui_id, "acme");
    assert!(!oui.is_cisco());
    assert_eq!(oui.vm_name, None);
    assert_eq!(oui.ip_addr, None);
}

#[test]
fn host_hostile() {
    rejects(with("host", json!("a\nb")), "host");
    rejects(with("host", json!("h".repeat(256))), "host");
    rejects(with("host", json!(5)), "host");
    assert_eq!(validate_vm(&without("host")).unwrap().host, None);
}

#[test]
fn payload_shapes() {
    match validate_vm_event(&good()) {
        VmEvent::Single(Ok(p)) => assert_eq!(p.port_uuid, PORT),
        other => panic!("{other:?}"),
    }
    match validate_vm_event(&json!([good(), with("vm_mac", json!("bad")), 5])) {
        VmEvent::Bulk(v) => {
            assert_eq!(v.len(), 3);
            assert!(v[0].is_ok());
            assert_eq!(v[1].as_ref().unwrap_err().field, "vm_mac");
            assert_eq!(v[2].as_ref().unwrap_err().field, "vm");
        }
        other => panic!("{other:?}"),
    }
    for bad in [json!("[1,2]"), json!(null), json!(3)] {
        match validate_vm_event(&bad) {
            VmEvent::Single(Err(e)) => assert_eq!(e.field, "payload"),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(validate_vm_event(&json!([])), VmEvent::Bulk(v) if v.is_empty()));
}

#[test]
fn uplink_object() {
    let u = validate_uplink(&json!({"uplink": "eth2", "veth_intf": "LLDPLeth2", "x": 1})).unwrap();
    assert_eq!(u.uplink, "eth2");
    assert_eq!(u.veth_intf, "LLDPLeth2");
    assert_eq!(validate_uplink(&json!({})).unwrap(), UplinkInfo::default());
    assert_eq!(
        validate_uplink(&json!(null)).unwrap(),
        UplinkInfo::default()
    );
    let u = validate_uplink(&json!({"uplink": "bond0", "veth_intf": null})).unwrap();
    assert_eq!(u.veth_intf, "");
    for (bad, field) in [
        (json!({"uplink": "eth2; rm -rf /"}), "uplink"),
        (json!({"uplink": "averyveryverylongname"}), "uplink"),
        (json!({"uplink": 5}), "uplink"),
        (json!({"uplink": "eth2", "veth_intf": "a b"}), "veth_intf"),
        (json!("eth2"), "uplink"),
    ] {
        let e = validate_uplink(&bad).unwrap_err();
        assert_eq!(e.field, field, "{bad}");
        assert!(e.to_string().contains(field));
    }
}

fn migration(phase: &str) -> Value {
    let mut v = without("status");
    v.as_object_mut()
        .unwrap()
        .insert("phase".into(), Value::from(phase));
    v
}

#[test]
fn migration_phases_imply_status() {
    for (p, phase, status) in [
        ("arriving", MigrationPhase::Arriving, PortStatus::Up),
        ("arrived", MigrationPhase::Arrived, PortStatus::Up),
        ("aborted", MigrationPhase::Aborted, PortStatus::Down),
        ("left", MigrationPhase::Left, PortStatus::Down),
    ] {
        let (got, port) = validate_migration(&migration(p)).unwrap();
        assert_eq!(got, phase);
        assert_eq!(port.status, status);
        assert_eq!(port.port_uuid, PORT);
        assert_eq!(port.vm_mac, "fa:16:3e:aa:bb:01");
    }
}

#[test]
fn migration_rejects_bad_phase_and_disagreeing_status() {
    let e = validate_migration(&migration("teleport")).unwrap_err();
    assert_eq!(e.field, "phase");
    assert_eq!(e.port_uuid.as_deref(), Some(PORT));
    let mut v = migration("left");
    v.as_object_mut()
        .unwrap()
        .insert("status".into(), Value::from("up"));
    let e = validate_migration(&v).unwrap_err();
    assert_eq!(e.field, "status");
    let mut v = migration("arrived");
    v.as_object_mut()
        .unwrap()
        .insert("status".into(), Value::from("up"));
    assert!(validate_migration(&v).is_ok());
    let e = validate_migration(&json!([1])).unwrap_err();
    assert_eq!(e.field, "payload");
    let mut v = migration("arriving");
    v.as_object_mut()
        .unwrap()
        .insert("vm_mac".into(), Value::from("nope"));
    assert_eq!(validate_migration(&v).unwrap_err().field, "vm_mac");
}
