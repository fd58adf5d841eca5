//! Property tests: every parser of outside input takes arbitrary bytes (and
//! arbitrary structured values close to the real formats) without
//! panicking and in bounded time. Inputs: lldpad clif datagrams and VSI
//! records, vdptool replies, lldptool output, ovs-vsctl / ovsdb-client /
//! ovs-ofctl / ip output, the OVSDB JSON-RPC stream and monitor updates, controller JSON (events, VM objects, uplink
//! answers), agent.yaml, and the leaf's LLDP / ECP / VDP frame decoders.

use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use vdp_agent::api::exec::CmdOutput;
use vdp_agent::api::lldpad::{events, lldptool, vdptool, wire};
use vdp_agent::api::ovs::{ofctl, openflow, veth, vsctl};

/// Generous: a parser call must finish well inside this (debug build).
const BOUND: Duration = Duration::from_millis(500);

fn timed<T>(f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    assert!(t.elapsed() < BOUND, "parser took {:?}", t.elapsed());
    r
}

/// Text that looks like the tools' output: their keywords, separators and
/// digits mixed with arbitrary Unicode.
fn toolish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("mode = assoc\n".to_string()),
        Just("filter = 3003-fa:16:3e:00:00:01-30001\n".to_string()),
        Just("hints = 0\n".to_string()),
        Just("uuid = 00000001-1111-4111-8111-000000000001\n".to_string()),
        Just("FAILED: Invalid parameters\n".to_string()),
        Just("Response from VDP\n".to_string()),
        Just("R00C3010000001509LLDPLeth200000003".to_string()),
        Just("EVB Configuration TLV\n\tbridge:bgid(0x4)\n\tmode:bridge".to_string()),
        Just("cookie=0x7664706167656e74, priority=4,in_port=1,dl_vlan=5 actions=mod_vlan_vid:3003,NORMAL\n".to_string()),
        Just("{\"data\":[[\"uuid\",\"x\"]],\"headings\":[\"_uuid\",\"name\"]}".to_string()),
        Just("[{\"ifname\":\"LLDPLeth2\",\"address\":\"aa:bb\"}]".to_string()),
        "[0-9a-f:=,\\- \n\t\"{}\\[\\]]{0,40}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..600)
}

/// A clif event datagram with a random record (hex lengths that may lie,
/// values that may hold multi-byte characters).
fn clif_datagram() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec(("[a-z]{0,9}", any::<String>(), any::<bool>()), 0..8),
        0usize..4096,
        prop_oneof![
            Just("E16".to_string()),
            Just("E1".to_string()),
            "[E0-9]{0,4}"
        ],
    )
        .prop_map(|(fields, lenfix, head)| {
            let mut rec = String::new();
            for (k, v, lie) in fields {
                let vl = if lie { v.len() + 1 } else { v.len() };
                rec.push_str(&format!("{:02x}{k}{:04x}{v}", k.len(), vl));
            }
            let len = if lenfix % 3 == 0 { lenfix } else { rec.len() };
            format!("{head}{:04x}{rec}", len).into_bytes()
        })
}

fn out(stdout: String, stderr: String, code: i32) -> CmdOutput {
    CmdOutput {
        code,
        stdout,
        stderr,
        elapsed: Duration::ZERO,
    }
}

/// Arbitrary JSON up to a small depth.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<String>().prop_map(Value::from),
        Just(Value::from("up")),
        Just(Value::from("00000001-1111-4111-8111-000000000001")),
        Just(Value::from("fa:16:3e:00:00:01")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("status".to_string()),
                    Just("vm_mac".to_string()),
                    Just("segmentation_id".to_string()),
                    Just("port_uuid".to_string()),
                    Just("net_uuid".to_string()),
                    Just("oui".to_string()),
                    Just("vm_name".to_string()),
                    Just("local_vlan".to_string()),
                    Just("events".to_string()),
                    Just("seq".to_string()),
                    Just("type".to_string()),
                    Just("payload".to_string()),
                    Just("uplink".to_string()),
                    Just("veth_intf".to_string()),
                    any::<String>(),
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Table updates close to ovsdb-server's: Interface/Port rows whose
/// columns are arbitrary JSON or the OVSDB atom forms.
fn ovsdb_updates() -> impl Strategy<Value = Value> {
    let atom = prop_oneof![
        json_value(),
        (0i64..5000).prop_map(Value::from),
        Just(json!(["set", []])),
        Just(json!(["uuid", "i1"])),
        Just(json!(["set", [["uuid", "i1"], ["uuid", "i2"], 7]])),
        Just(json!(["map", [["iface-id", "P1"], ["iface-id"]]])),
    ];
    let row = proptest::collection::btree_map(
        prop_oneof![
            Just("name".to_string()),
            Just("external_ids".to_string()),
            Just("tag".to_string()),
            Just("interfaces".to_string()),
        ],
        atom,
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()));
    let update = prop_oneof![
        row.clone().prop_map(|r| json!({"new": r})),
        row.prop_map(|r| json!({"old": r})),
        json_value(),
    ];
    let rows = proptest::collection::btree_map(
        prop_oneof![
            Just("i1".to_string()),
            Just("i2".to_string()),
            Just("p1".to_string())
        ],
        update,
        0..4,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()));
    proptest::collection::btree_map(
        prop_oneof![
            Just("Interface".to_string()),
            Just("Port".to_string()),
            any::<String>()
        ],
        rows,
        0..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn openflow_replies(d in bytes(), msg_type in 0u8..32, xid in any::<u32>()) {
        timed(|| {
            if let Ok(h) = openflow::parse_header(&d) {
                prop_assert!(h.length >= 8);
            }
            let _ = openflow::parse_error(&d);
            // A header followed by arbitrary bytes reads back as itself.
            let mut m = vec![1, msg_type];
            m.extend_from_slice(&((d.len() + 8).min(u16::MAX as usize) as u16).to_be_bytes());
            m.extend_from_slice(&xid.to_be_bytes());
            m.extend_from_slice(&d);
            let h = openflow::parse_header(&m).unwrap();
            prop_assert_eq!((h.msg_type, h.xid), (msg_type, xid));
            Ok(())
        })?;
    }

    #[test]
    fn clif_datagrams(d in prop_oneof![bytes(), clif_datagram()]) {
        timed(|| {
            let _ = events::parse_event(&d);
            let _ = wire::reply_status(&d);
            let _ = wire::is_event(&d);
        });
    }

    #[test]
    fn vdptool_replies(s in toolish(), e in toolish(), code in -1i32..256) {
        timed(|| {
            let _ = vdptool::parse_events(&s);
            let _ = vdptool::parse_query(&s);
            let _ = vdptool::parse_filter(&s);
            let o = out(s.clone(), e.clone(), code);
            let _ = vdptool::command_failure(&o);
            let _ = vdptool::assoc_outcome(&o, "00000001-1111-4111-8111-000000000001", "fa:16:3e:00:00:01");
            let _ = vdptool::request_result(&o);
            if let Ok(q) = vdptool::parse_query(&s) {
                let _ = format!("{q:?}");
                for r in &q.records {
                    let _ = vdptool::record_state(r, "fa:16:3e:00:00:01", 1);
                    let _ = vdptool::record_oui(r);
                }
            }
            // The OUI field of a record, arbitrary text.
            let rec = vdptool::VsiRecord {
                fields: vec![("oui".into(), s.clone())],
                ..Default::default()
            };
            let _ = vdptool::record_oui(&rec);
            let _ = vdptool::oui_matches(&rec, &Default::default());
        });
    }

    #[test]
    fn lldptool_output(s in toolish()) {
        timed(|| {
            let t = lldptool::parse_tlvs(&s);
            let _ = t.is_evb_bridge();
        });
    }

    #[test]
    fn ovs_outputs(s in toolish(), n in 0usize..8) {
        timed(|| {
            let _ = ofctl::parse_dump_flows(&s);
            let _ = ofctl::parse_flow_line(&s);
            let _ = veth::parse_ip_link_json(&s);
            let _ = vsctl::parse_list_br(&s);
            let _ = vsctl::parse_tables(&s);
            let _ = vsctl::parse_iface_query(&s);
            let _ = vsctl::parse_port_tag_query(&s);
            let _ = vsctl::parse_snapshot(&s);
            let _ = vsctl::parse_ofports(&s, n);
            let _ = vsctl::parse_iface_names(&s);
            let _ = vsctl::parse_tag(&s);
        });
    }

    #[test]
    fn ovsdb_stream_and_updates(b in bytes(), cut in any::<usize>(), v in ovsdb_updates()) {
        use vdp_agent::api::ovs::ovsdb::{classify, Framer, View};
        timed(|| {
            let _ = Framer::default().push(&b);
            // A valid stream cut anywhere gives the same values.
            let text = format!("{}{}", json!({"id": 1, "result": v}), json!({"method": "update", "params": [null, v]}));
            let at = cut % (text.len() + 1);
            let mut f = Framer::default();
            let mut got = f.push(&text.as_bytes()[..at]).unwrap();
            got.extend(f.push(&text.as_bytes()[at..]).unwrap());
            prop_assert_eq!(got.len(), 2);
            let mut view = View::new();
            for m in &got {
                let _ = classify(m);
            }
            view.apply(&v);
            view.apply(&json!({"Interface": v.clone(), "Port": v.clone()}));
            let _ = view.lookup("P1");
            Ok(())
        })?;
    }

    #[test]
    fn controller_json(v in json_value(), after in any::<u64>()) {
        timed(|| {
            let _ = vdp_agent::api::controller::parse_events(&v, after);
            let _ = vdp_agent::api::controller::parse_uplink_result(&v);
            let _ = vdp_agent::api::validate::validate_vm(&v);
            let _ = vdp_agent::api::validate::validate_vm_event(&v);
            let _ = vdp_agent::api::validate::validate_migration(&v);
            let _ = vdp_agent::api::validate::validate_uplink(&v);
            let wrapped = json!({"events": [{"seq": after, "type": "vm_info", "payload": v}]});
            let _ = vdp_agent::api::controller::parse_events(&wrapped, after / 2);
        });
    }

    #[test]
    fn controller_raw_bytes(b in bytes()) {
        timed(|| {
            if let Ok(v) = serde_json::from_slice::<Value>(&b) {
                let _ = vdp_agent::api::controller::parse_events(&v, 0);
                let _ = vdp_agent::api::validate::validate_vm_event(&v);
                let _ = vdp_agent::api::validate::validate_migration(&v);
            }
        });
    }

    #[test]
    fn migration_payloads(
        phase in "(arriving|arrived|aborted|left|[a-z]{0,9})",
        status in prop_oneof![Just(Value::Null), Just(json!("up")), Just(json!("down")), json_value()],
        extra in json_value(),
    ) {
        let v = json!({"phase": phase, "status": status, "extra": extra,
            "port_uuid": "0b9a1c6e-8a56-4c3e-9f6f-2f7d1a0b1c2d", "vm_mac": "fa:16:3e:00:00:01",
            "net_uuid": "7e1c0f7a-1111-4c3e-9f6f-2f7d1a0b1c2d", "segmentation_id": 30001});
        let r = timed(|| vdp_agent::api::validate::validate_migration(&v));
        if let Ok((p, port)) = r {
            prop_assert_eq!(port.status, p.status());
        }
    }

    #[test]
    fn agent_yaml(s in prop_oneof![
        any::<String>(),
        toolish(),
        "(host_id|root_helper|server|bridges|vdp|intervals|paths|log|url|timeout_s|heartbeat_s)(: |:\n  )(null|~|-1|18446744073709551615|'x'|\\[\\]|\\{\\}|[0-9]{1,22})\n{0,3}",
    ]) {
        timed(|| {
            let _ = vdp_agent::api::config::Config::from_yaml(&s, Path::new("p.yaml"));
        });
    }

    #[test]
    fn leaf_frame_decoders(b in bytes()) {
        timed(|| {
            let _ = vdp_agent::lab::leaf::lldp::parse_lldpdu(&b);
            let _ = vdp_agent::lab::leaf::ecp::parse(&b);
            let _ = vdp_agent::lab::leaf::vdp::parse(&b);
            let _ = vdp_agent::lab::leaf::control::parse_command(&String::from_utf8_lossy(&b));
        });
    }
}

/// The exact inputs that panicked before (hardening issue, item 15).
#[test]
fn former_panics() {
    // A record length that ends inside a multi-byte character.
    let mut d = b"E16".to_vec();
    let rec = "04mode0005assoc04uuid0002\u{e9}\u{e9}";
    d.extend_from_slice(format!("{:04x}", 27).as_bytes());
    d.extend_from_slice(rec.as_bytes());
    let _ = events::parse_event(&d);
    // A 3-byte status-only reply whose status bytes are not UTF-8.
    assert_eq!(wire::reply_status(b"R\xff\xfe"), None);
    assert_eq!(wire::reply_status(b"R0a"), Some(10));
    assert_eq!(wire::reply_status(b"R"), None);
}
