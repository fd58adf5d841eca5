use super::answers::MAX_SEQ_LEAP;
use super::*;

#[test]
fn uplink_results() {
    assert_eq!(parse_uplink_result(&Value::Null), Ok(None));
    assert_eq!(parse_uplink_result(&json!({})), Ok(None));
    assert_eq!(parse_uplink_result(&json!({"uplink": ""})), Ok(None));
    assert_eq!(
        parse_uplink_result(&json!({"uplink": "eth2", "veth_intf": "LLDPLeth2", "x": 1})),
        Ok(Some(UplinkInfo {
            uplink: "eth2".into(),
            veth_intf: "LLDPLeth2".into()
        }))
    );
    assert_eq!(
        parse_uplink_result(&json!("{\"uplink\": \"eth3\"}")),
        Ok(Some(UplinkInfo {
            uplink: "eth3".into(),
            veth_intf: String::new()
        }))
    );
    assert!(parse_uplink_result(&json!({"uplink": 5})).is_err());
    assert!(parse_uplink_result(&json!([1])).is_err());
}

#[test]
fn event_envelopes() {
    let v = json!({"events": [
        {"seq": 3, "type": "vm_info", "payload": {"a": 1}},
        {"seq": 2, "type": "uplink"},
        {"seq": "x", "type": "vm_info"},
        {"seq": 1, "type": "vm_info", "payload": 1},
    ]});
    let evs = parse_events(&v, 1).unwrap();
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].seq, 2);
    assert_eq!(evs[0].payload, Value::Null);
    assert_eq!(evs[1].kind, "vm_info");
    assert!(parse_events(&json!({"events": {}}), 0).is_err());
    assert!(parse_events(&json!([]), 0).is_err());
    assert!(parse_events(&json!({"events": [{"seq": 1}]}), 0).is_err());
    assert!(parse_events(&json!({"events": [{"seq": 1, "type": "x"}]}), 1).is_err());
    assert_eq!(parse_events(&json!({"events": []}), 0).unwrap().len(), 0);
}

#[test]
fn event_numbers_cannot_poison_the_cursor() {
    // A huge seq is dropped; the good event next to it is kept.
    let v = json!({"events": [
        {"seq": 9_223_372_036_854_775_808u64, "type": "vm_info"},
        {"seq": 6, "type": "vm_info", "payload": 1},
    ]});
    let evs = parse_events(&v, 5).unwrap();
    assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![6]);
    // An implausible leap past a non-zero cursor is dropped; only it:
    // an error (the caller backs off), never a new cursor.
    let v = json!({"events": [{"seq": 5 + MAX_SEQ_LEAP + 1, "type": "vm_info"}]});
    assert!(parse_events(&v, 5).is_err());
    // A fresh start (cursor 0) accepts a large but sane number.
    let v = json!({"events": [{"seq": 5 + MAX_SEQ_LEAP + 1, "type": "vm_info"}]});
    assert_eq!(parse_events(&v, 0).unwrap().len(), 1);
    // Numbering restarted below the cursor: returned for resync.
    let v = json!({"events": [{"seq": 2, "type": "vm_info"}, {"seq": 1, "type": "uplink"}]});
    let evs = parse_events(&v, 500).unwrap();
    assert_eq!(evs.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    // Two different events with one seq: the first is kept.
    let v = json!({"events": [
        {"seq": 7, "type": "vm_info", "payload": "a"},
        {"seq": 7, "type": "uplink", "payload": "b"},
    ]});
    let evs = parse_events(&v, 6).unwrap();
    assert_eq!((evs.len(), evs[0].kind.as_str()), (1, "vm_info"));
}

#[test]
fn segments_are_encoded() {
    assert_eq!(path_segment("compute-1.lab"), "compute-1.lab");
    assert_eq!(path_segment("a?b#c"), "a%3Fb%23c");
}
