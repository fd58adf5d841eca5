use super::*;

fn cfg() -> VdpConfig {
    VdpConfig::default()
}

#[test]
fn query_and_list_argv() {
    let a = query_argv("LLDPLeth2", &cfg(), "7af441dd-253b-4772-8cf1-a4cfef18efe5").unwrap();
    assert_eq!(
        a.join(" "),
        "vdptool -t -i LLDPLeth2 -R -V assoc -c mode=assoc -c mgrid2=0 -c typeid=0 \
             -c typeidver=0 -c uuid=7af441dd-253b-4772-8cf1-a4cfef18efe5"
    );
    assert_eq!(
        list_argv("LLDPLeth2").unwrap().join(" "),
        "vdptool -t -i LLDPLeth2 -R -V assoc -c mode=assoc"
    );
}

/// The VSI of the argv tests (VLAN field 0, as a first associate sends it).
fn vsi(oui: Option<&Oui>) -> VsiArgs<'_> {
    VsiArgs {
        uuid: "7af441dd-253b-4772-8cf1-a4cfef18efe5",
        mac: "fa:16:3e:00:00:01",
        gid: 20000,
        vlan: 0,
        oui,
    }
}

#[test]
fn assoc_argv_with_cisco_oui() {
    let oui = Oui {
        oui_id: "cisco".into(),
        vm_name: Some("vm-1".into()),
        vm_uuid: Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
        ip_addr: Some("10.0.0.5".parse().unwrap()),
        ..Default::default()
    };
    let v = vsi(Some(&oui));
    let a = request_argv("LLDPLeth2", &cfg(), Mode::Assoc, &v, true).unwrap();
    assert_eq!(
            a.join(" "),
            "vdptool -T -i LLDPLeth2 -W -V assoc -c mode=assoc -c mgrid2=0 -c typeid=0 \
             -c typeidver=0 -c uuid=7af441dd-253b-4772-8cf1-a4cfef18efe5 -c hints=none \
             -c filter=0-fa:16:3e:00:00:01-20000 -c oui=cisco,vm_name=vm-1 \
             -c oui=cisco,ipv4_addr=10.0.0.5 -c oui=cisco,vm_uuid=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        );
    // deassoc: no -W, no OUI, stored VLAN field repeated
    let v = VsiArgs { vlan: 3003, ..v };
    let a = request_argv("LLDPLeth2", &cfg(), Mode::Deassoc, &v, false).unwrap();
    assert_eq!(
        a.join(" "),
        "vdptool -T -i LLDPLeth2 -V deassoc -c mode=deassoc -c mgrid2=0 -c typeid=0 \
             -c typeidver=0 -c uuid=7af441dd-253b-4772-8cf1-a4cfef18efe5 -c hints=none \
             -c filter=3003-fa:16:3e:00:00:01-20000"
    );
    // non-cisco OUI is not sent
    let other = Oui {
        oui_id: "acme".into(),
        vm_name: Some("x".into()),
        ..Default::default()
    };
    let v = VsiArgs {
        oui: Some(&other),
        ..v
    };
    let a = request_argv("IF", &cfg(), Mode::Assoc, &v, false).unwrap();
    assert!(!a.iter().any(|s| s.starts_with("oui=")));
}

#[test]
fn vm_name_follows_the_validator_rule() {
    // A space and 100..=128 bytes pass validation, so they must reach
    // lldpad: the space as is, a long name cut to lldpad's 99 bytes at
    // a character boundary.
    let argv_for = |name: &str| {
        let oui = Oui {
            oui_id: "cisco".into(),
            vm_name: Some(name.to_string()),
            ..Default::default()
        };
        let v = VsiArgs {
            uuid: "7af441dd-253b-4772-8cf1-a4cfef18efe5",
            mac: "fa:16:3e:00:00:01",
            gid: 1,
            vlan: 0,
            oui: Some(&oui),
        };
        request_argv("IF", &cfg(), Mode::Assoc, &v, true)
            .unwrap()
            .into_iter()
            .find(|a| a.starts_with("oui=cisco,vm_name="))
            .unwrap()
    };
    assert_eq!(argv_for("web 01"), "oui=cisco,vm_name=web 01");
    let long = "n".repeat(128);
    assert_eq!(
        argv_for(&long),
        format!("oui=cisco,vm_name={}", "n".repeat(99))
    );
    // 98 ASCII bytes + a 2-byte character straddling byte 99: cut before it.
    let straddle = format!("{}é", "n".repeat(98));
    assert_eq!(
        argv_for(&straddle),
        format!("oui=cisco,vm_name={}", "n".repeat(98))
    );
    for ok in ["web 01", long.as_str(), straddle.as_str()] {
        assert_eq!(crate::validate::vm_name_problem(ok), None);
    }
}

#[test]
fn refuses_smuggling() {
    let u = "7af441dd-253b-4772-8cf1-a4cfef18efe5";
    let long = "n".repeat(129);
    for bad in ["a,vm_uuid=x", "a=b", "a\tb", "x\u{7}", "", long.as_str()] {
        let oui = Oui {
            oui_id: "cisco".into(),
            vm_name: Some(bad.to_string()),
            ..Default::default()
        };
        let v = VsiArgs {
            uuid: u,
            mac: "fa:16:3e:00:00:01",
            gid: 1,
            vlan: 0,
            oui: Some(&oui),
        };
        assert!(
            request_argv("IF", &cfg(), Mode::Assoc, &v, true).is_err(),
            "{bad:?}"
        );
    }
    let v = VsiArgs {
        uuid: "abc,mode=deassoc",
        mac: "fa:16:3e:00:00:01",
        gid: 1,
        vlan: 0,
        oui: None,
    };
    assert!(request_argv("IF", &cfg(), Mode::Assoc, &v, true).is_err());
    let v2 = VsiArgs {
        uuid: u,
        mac: "fa:16:3e:00:00:01-9",
        ..v
    };
    assert!(request_argv("IF", &cfg(), Mode::Assoc, &v2, true).is_err());
    let mut c = cfg();
    c.mgrid2 = "0,typeid=5".into();
    assert!(query_argv("IF", &c, u).is_err());
    assert!(list_argv("I F").is_err());
}

#[test]
fn filter_formats() {
    assert_eq!(
        filter_value(FilterFormat::GroupMacVid, 0, "fa:16:3e:00:00:01", 5).unwrap(),
        "0-fa:16:3e:00:00:01-5"
    );
    assert_eq!(
        filter_value(FilterFormat::GroupVid, 0, "", 5).unwrap(),
        "0--5"
    );
    assert_eq!(
        filter_value(FilterFormat::MacVid, 7, "fa:16:3e:00:00:01", 0).unwrap(),
        "7-fa:16:3e:00:00:01"
    );
    assert_eq!(filter_value(FilterFormat::Vid, 0, "", 0).unwrap(), "0");
    assert!(filter_value(FilterFormat::GroupMacVid, 0, "fa:16:3e:00:00:01", 0).is_err());
    assert_eq!(FilterFormat::from_number(5), None);
    let f = parse_filter("48059-fa:16:3e:00:00:0B-0").unwrap();
    assert_eq!(f.vlan(), 3003);
    assert_eq!(f.valid_vlan(), Some(3003));
    assert_eq!(f.mac.as_deref(), Some("fa:16:3e:00:00:0b"));
    let f = parse_filter("0-20005").unwrap();
    assert_eq!((f.raw_vlan, f.gid, f.mac), (0, Some(20005), None));
    assert_eq!(
        parse_filter("0-fa:16:3e:00:00:01-0").unwrap().valid_vlan(),
        None
    );
    assert!(parse_filter("x-1").is_none());
}

#[test]
fn status_texts() {
    assert_eq!(status_text(2), "Device not found or inactive");
    assert_eq!(status_text(0x0d), "VDP protocol not supported on interface");
    assert_eq!(status_text(0x0f), BUSY_TEXT);
}

#[test]
fn two_filters_are_the_originals_multiple_filter_failure() {
    // -W answer with two filter lines (different MACs): not a SUCCESS.
    let out = "Response from VDP\n\tmode = assoc\n\tmgrid2 = 0\n\ttypeid = 0\n\t\
               typeidver = 0\n\tuuid = 7af441dd-253b-4772-8cf1-a4cfef18efe5\n\t\
               hints = none\n\tfilter = 3003-fa:16:3e:00:00:01-20000\n\t\
               filter = 3003-fa:16:3e:00:00:02-20000\n";
    let evs = parse_events(out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].filters.len(), 2);
    match event_outcome(&evs[0], "fa:16:3e:00:00:01", out) {
        AssocOutcome::Failed { reason } => assert!(
            reason.starts_with("Incorrect Reply,multiple filter information found: "),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // A query record with two filters (or two hints): unusable, same text.
    let rec = |extra: &str| VsiRecord {
        mode: "assoc".into(),
        uuid: "u".into(),
        hints: Some(0),
        filters: vec!["3003-fa:16:3e:00:00:01-20000".into()],
        fields: vec![
            ("mode".into(), "assoc".into()),
            ("hints".into(), "0".into()),
            ("filter".into(), "3003-fa:16:3e:00:00:01-20000".into()),
            (
                extra.into(),
                if extra == "hints" {
                    "0".into()
                } else {
                    "3003-fa:16:3e:00:00:02-20000".into()
                },
            ),
        ],
        ..VsiRecord::default()
    };
    match record_state(&rec("filter"), "fa:16:3e:00:00:01", 20000) {
        VsiState::Unusable { reason, .. } => {
            assert!(
                reason.starts_with("Incorrect Reply,multiple filter information found: "),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    match record_state(&rec("hints"), "fa:16:3e:00:00:01", 20000) {
        VsiState::Unusable { reason, .. } => assert!(
            reason.starts_with("Incorrect Reply,multiple hints"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // One filter, one hints: associated.
    assert_eq!(
        record_state(&rec("oui"), "fa:16:3e:00:00:01", 20000),
        VsiState::Associated {
            vlan: 3003,
            raw_vlan: 3003
        }
    );
}

#[test]
fn refusals_are_classified_once() {
    assert_eq!(
        Refusal::classify("FAILED: VSI association in progress".into()),
        Refusal::Busy
    );
    assert_eq!(
        Refusal::classify("FAILED: Invalid parameters".into()),
        Refusal::InvalidParameters("FAILED: Invalid parameters".into())
    );
    for t in [
        "FAILED: VDP protocol not supported on interface",
        "FAILED: Device not found or inactive",
        "Failed to connect to lldpad - clif_open: No such file or directory",
    ] {
        assert_eq!(Refusal::classify(t.into()), Refusal::NotReady(t.into()));
    }
    let other = Refusal::classify("FAILED: Command not applicable".into());
    assert_eq!(
        other,
        Refusal::Other("FAILED: Command not applicable".into())
    );
    assert_eq!(Refusal::Busy.text(), "FAILED: VSI association in progress");
}

#[test]
fn migration_requests_carry_their_mode_hint_and_oui() {
    use crate::config::Hints;
    let oui = Oui {
        oui_id: "cisco".into(),
        vm_name: Some("vm-1".into()),
        ..Default::default()
    };
    let v = vsi(Some(&oui));
    let pre = request_command_hinted("IF", &cfg(), Mode::PreassocRr, &v, true, Hints::None)
        .unwrap()
        .argv()
        .join(" ");
    assert_eq!(
        pre,
        "vdptool -T -i IF -W -V preassoc-rr -c mode=preassoc-rr -c mgrid2=0 -c typeid=0 \
         -c typeidver=0 -c uuid=7af441dd-253b-4772-8cf1-a4cfef18efe5 -c hints=none \
         -c filter=0-fa:16:3e:00:00:01-20000 -c oui=cisco,vm_name=vm-1"
    );
    let pre = request_command_hinted("IF", &cfg(), Mode::Preassoc, &v, false, Hints::None).unwrap();
    assert!(pre
        .argv()
        .join(" ")
        .contains("-V preassoc -c mode=preassoc "));
    // The datagram names the mode's TLV id (lldpad: 1 preassoc, 2 with RR).
    let d = |m: Mode| {
        request_command_hinted("IF", &cfg(), m, &v, false, Hints::To)
            .unwrap()
            .datagram()
            .unwrap()
    };
    assert!(
        d(Mode::Preassoc).contains("mode0008preassoc"),
        "{}",
        d(Mode::Preassoc)
    );
    assert!(d(Mode::PreassocRr).contains("mode000bpreassoc-rr"));
    assert!(d(Mode::Assoc).contains("hints0002to"), "{}", d(Mode::Assoc));
    let from = request_command_hinted("IF", &cfg(), Mode::Deassoc, &v, false, Hints::From)
        .unwrap()
        .argv()
        .join(" ");
    assert!(from.contains("-c hints=from"), "{from}");
    assert!(
        !from.contains("oui="),
        "a deassociate carries no OUI: {from}"
    );
}
