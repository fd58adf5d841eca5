use super::*;
use crate::config::VdpConfig;
use proptest::prelude::*;

// Captured from the installed vdptool (a socket bound to lldpad's name in
// a namespace of its own; `tests/lldpad_clif_query.rs` repeats the capture
// live): `vdptool -T -i eth0 -V assoc -c ... -c oui=cisco,vm_name=vm-1
// -c oui=cisco,ipv4_addr=10.0.0.5 -c oui=cisco,vm_uuid=...`.
const SET_ASSOC_OUI: &str = "M000080c4C3020001011c04eth0020000000304mode0005assoc06mgrid20001006typeid0001009typeidver0001004uuid00247af441dd-253b-4772-8cf1-a4cfef18efe505hints0004none06filter00190-fa:16:3e:00:00:01-2000003oui006005cisco07vm_name0004vm-109ipv4_addr000810.0.0.507vm_uuid00240f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const SET_DEASSOC: &str = "M000080c4C3020000011c04eth0020000000404mode0007deassoc06mgrid20001006typeid0001009typeidver0001004uuid00247af441dd-253b-4772-8cf1-a4cfef18efe505hints0004none06filter001c3001-fa:16:3e:00:00:01-20000";
const U: &str = "7af441dd-253b-4772-8cf1-a4cfef18efe5";

fn kv(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn set_commands_render_as_vdptool_sends_them() {
    let cfg = VdpConfig::default();
    let mut args = key_args(&cfg, Mode::Assoc, U);
    args.extend(kv(&[
        ("hints", "none"),
        ("filter", "0-fa:16:3e:00:00:01-20000"),
        ("oui", "cisco,vm_name=vm-1"),
        ("oui", "cisco,ipv4_addr=10.0.0.5"),
        ("oui", "cisco,vm_uuid=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
    ]));
    let c = Command::set("eth0", Mode::Assoc, false, args);
    assert_eq!(c.datagram().as_deref(), Some(SET_ASSOC_OUI));
    assert_eq!(
        c.argv().join(" "),
        format!(
            "vdptool -T -i eth0 -V assoc -c mode=assoc -c mgrid2=0 -c typeid=0 -c typeidver=0 \
             -c uuid={U} -c hints=none -c filter=0-fa:16:3e:00:00:01-20000 \
             -c oui=cisco,vm_name=vm-1 -c oui=cisco,ipv4_addr=10.0.0.5 \
             -c oui=cisco,vm_uuid=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        )
    );
    let mut args = key_args(&cfg, Mode::Deassoc, U);
    args.extend(kv(&[
        ("hints", "none"),
        ("filter", "3001-fa:16:3e:00:00:01-20000"),
    ]));
    let c = Command::set("eth0", Mode::Deassoc, true, args);
    assert_eq!(c.datagram().as_deref(), Some(SET_DEASSOC));
    assert!(c
        .argv()
        .join(" ")
        .starts_with("vdptool -T -i eth0 -W -V deassoc -c mode=deassoc"));
}

#[test]
fn get_commands_render_as_vdptool_sends_them() {
    // The `M` lines vdptool -R echoes (tests/fixtures/vdptool/query_one.txt
    // and list_three.txt).
    let cfg = VdpConfig::default();
    let q = Command::get("vdS0", key_args(&cfg, Mode::Assoc, U));
    assert_eq!(
        q.datagram().unwrap(),
        format!("M000080c4C3010000001504vdS0020000000304mode0005assoc06mgrid20001006typeid0001009typeidver0001004uuid0024{U}")
    );
    assert_eq!(
        q.argv().join(" "),
        format!("vdptool -t -i vdS0 -R -V assoc -c mode=assoc -c mgrid2=0 -c typeid=0 -c typeidver=0 -c uuid={U}")
    );
    let l = Command::get("vdS0", kv(&[("mode", "assoc")]));
    assert_eq!(
        l.datagram().unwrap(),
        "M000080c4C3010000001504vdS0020000000304mode0005assoc"
    );
    let bare = Command::get("vdS0", vec![]);
    assert_eq!(
        bare.datagram().unwrap(),
        "M000080c4C3010000000104vdS00200000003"
    );
}

#[test]
fn commands_that_do_not_fit_are_refused() {
    let long = "x".repeat(256);
    assert_eq!(Command::get(&long, vec![]).datagram(), None);
    assert_eq!(Command::get("e", kv(&[(&long, "v")])).datagram(), None);
    let huge = "v".repeat(0x10000);
    assert_eq!(Command::get("e", kv(&[("k", &huge)])).datagram(), None);
    // An OUI item must be NAME,key=value.
    let bad = Command::set("e", Mode::Assoc, false, kv(&[("oui", "cisco")]));
    assert_eq!(bad.datagram(), None);
}

#[test]
fn one_record_parser_for_queries_and_events() {
    let body = "04mode0005assoc06mgrid20001006typeid0001009typeidver0001004uuid0024f00dcafe-0000-4000-8000-00000000000105hints0001006filter00183003-fa:16:3e:00:00:02-003oui001705cisco07vm_name0003web";
    let rec = parse_record(body);
    assert!(rec.complete);
    assert_eq!(rec.mode, "assoc");
    assert_eq!(rec.hints, Some(0));
    assert_eq!(rec.filter(), Some("3003-fa:16:3e:00:00:02-0"));
    assert_eq!(rec.get("oui"), Some("05cisco07vm_name0003web"));
    let ev = parse_event(format!("M000080c4E16{:04x}{body}", body.len()).as_bytes()).unwrap();
    assert_eq!(ev.uuid, rec.uuid);
    assert_eq!(ev.vlan, Some(3003));
    let cut = parse_record(&body[..body.len() - 2]);
    assert!(!cut.complete);
    assert_eq!(cut.filters, rec.filters);
}

#[test]
fn get_reply_parse() {
    let r = parse_get_reply("R00C3010000001504vdS0").unwrap();
    assert_eq!((r.status, r.records.len(), r.truncated), (0, 0, false));
    let r = parse_get_reply("R05C3010000001504vdS0").unwrap();
    assert_eq!(r.status, 5);
    assert_eq!(parse_get_reply("X00"), None);
    assert_eq!(parse_get_reply("R00C30100000015ffvdS0"), None);
    let r = parse_get_reply("R00C3010000001504vdS0000000030010");
    assert!(r.unwrap().truncated);
    assert_eq!(reply_status(b"R0a"), Some(10));
    assert_eq!(reply_status(b"E"), None);
    assert!(is_event(b"M000080c4E16"));
}

proptest! {
    #[test]
    fn parsers_never_panic(s in "\\PC{0,300}", b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_record(&s);
        let _ = parse_get_reply(&s);
        let _ = parse_event(&b);
        let mut d = EVENT_PREFIX.to_vec();
        d.extend_from_slice(&b);
        let _ = parse_event(&d);
        let _ = reply_status(&b);
    }

    #[test]
    fn rendered_fields_parse_back(
        fields in proptest::collection::vec(("[a-z]{1,12}", "[ -~]{0,40}"), 0..8),
    ) {
        let mut body = String::new();
        for (k, v) in &fields {
            push_field(&mut body, k, v, 4).unwrap();
        }
        let rec = parse_record(&body);
        prop_assert!(rec.complete);
        prop_assert_eq!(rec.fields, fields);
    }

    #[test]
    fn a_get_datagram_is_echoed_in_its_reply(ifname in "[a-z0-9]{1,15}", uuid in "[0-9a-f]{32}") {
        let cfg = VdpConfig::default();
        let c = Command::get(&ifname, key_args(&cfg, Mode::Assoc, &uuid));
        let d = c.datagram().unwrap();
        // lldpad's answer echoes from 'C' to the ifname; an empty answer
        // parses as no record.
        let echo = &d[9..23 + ifname.len()];
        let r = parse_get_reply(&format!("R00{echo}")).unwrap();
        prop_assert_eq!(r.records.len(), 0);
    }
}

#[test]
fn parses_assoc_event() {
    let d = b"M000080c4E16009704mode0005assoc06mgrid20001006typeid0001009typeidver0001004uuid00241f1e8d1c-0000-4000-8000-00000000000205hints0001006filter00183003-fa:16:3e:00:00:02-0";
    let ev = parse_event(d).expect("event");
    assert_eq!(ev.kind, VdpEventKind::Associated);
    assert_eq!(ev.uuid, "1f1e8d1c-0000-4000-8000-000000000002");
    assert_eq!(ev.vlan, Some(3003));
    assert_eq!(ev.mac.as_deref(), Some("fa:16:3e:00:00:02"));
    assert_eq!(ev.hints, Some(0));
    assert_eq!(ev.error, None);
}

#[test]
fn rejects_garbage_without_panic() {
    for d in [
        &b""[..],
        b"M000080c4E",
        b"M000080c4E16",
        b"M000080c4E16ffff04mode",
        b"M000080c4E1600050",
        b"R00A",
        b"M000080c4E16\xff\xfe",
        b"M000080c4E16001204mode0005assoc",
    ] {
        assert_eq!(parse_event(d), None, "{d:?}");
    }
}

#[test]
fn status_texts() {
    assert_eq!(describe_status(0), None);
    assert_eq!(
        describe_status(768).as_deref(),
        Some("Keepalive Timeout; Ack not received from bridge")
    );
    assert_eq!(
        describe_status(767).as_deref(),
        Some("Ack not received from bridge")
    );
    assert_eq!(
        describe_status(4 << 8).as_deref(),
        Some("Transmission Error")
    );
    assert_eq!(
        describe_status(21).as_deref(),
        Some("Error returned by Bridge: Invalid VID, GroupID or MAC address field (code 5) [HARD]")
    );
    assert_eq!(
        describe_status(255).as_deref(),
        Some("No response from bridge")
    );
    assert_eq!(classify("deassoc", 768), VdpEventKind::Deassociated);
    assert_eq!(classify("deassoc", 767), VdpEventKind::Failed);
    assert_eq!(classify("deassoc", 2), VdpEventKind::Failed);
    assert_eq!(classify("deassoc", 0), VdpEventKind::Deassociated);
    assert_eq!(classify("preassoc", 0), VdpEventKind::Associated);
}

#[test]
fn preassoc_datagrams_carry_their_tlv_and_mode() {
    let cfg = VdpConfig::default();
    for (mode, tlv, name) in [
        (Mode::Preassoc, "00000001", "04mode0008preassoc"),
        (Mode::PreassocRr, "00000002", "04mode000bpreassoc-rr"),
    ] {
        let mut args = key_args(&cfg, mode, U);
        args.extend(kv(&[
            ("hints", "to"),
            ("filter", "0-fa:16:3e:00:00:01-20000"),
        ]));
        let d = Command::set("eth0", mode, true, args).datagram().unwrap();
        assert!(d.contains(&format!("04eth002{tlv}{name}06mgrid2")), "{d}");
        assert!(d.contains("05hints0002to06filter"), "{d}");
    }
}
