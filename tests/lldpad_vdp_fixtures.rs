//! vdptool reply parsing against outputs captured live from lldpad
//! 1.1+git20221028 (tests/fixtures/vdptool/*.txt; files named `notes_*` are
//! rebuilt from the live texts in the shared design notes (notes/lldpad-vdp22.md), see
//! their headers). No root needed.

use std::time::Duration;
use vdp_agent::api::exec::CmdOutput;
use vdp_agent::api::lldpad::vdptool::{self, AssocOutcome, VsiState};

const U1: &str = "7af441dd-253b-4772-8cf1-a4cfef18efe5";
const MAC1: &str = "fa:16:3e:00:00:01";

struct Fixture {
    argv: String,
    out: CmdOutput,
}

fn fixture(name: &str) -> Fixture {
    let path = format!(
        "{}/tests/fixtures/vdptool/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (head, rest) = text.split_once("--- stdout\n").expect("stdout marker");
    let (stdout, stderr) = if let Some(s) = rest.strip_prefix("--- stderr\n") {
        ("", s)
    } else {
        rest.split_once("\n--- stderr\n").expect("stderr marker")
    };
    let stdout = if stdout.is_empty() {
        String::new()
    } else {
        format!("{stdout}\n")
    };
    let field = |k: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{name}: no {k}"))
            .trim()
            .to_string()
    };
    Fixture {
        argv: field("# argv:"),
        out: CmdOutput {
            code: field("# rc:").parse().unwrap(),
            stdout,
            stderr: stderr.to_string(),
            elapsed: Duration::ZERO,
        },
    }
}

fn assoc(name: &str, uuid: &str, mac: &str) -> AssocOutcome {
    vdptool::assoc_outcome(&fixture(name).out, uuid, mac)
}

fn failed(reason: &str) -> AssocOutcome {
    AssocOutcome::Failed {
        reason: reason.to_string(),
    }
}

#[test]
fn captured_argv_is_what_we_build() {
    // The assoc fixture was produced by exactly the argv the builder makes.
    let f = fixture("assoc_bridge_vlan0");
    let oui = vdp_agent::api::model::Oui {
        oui_id: "cisco".into(),
        vm_name: Some("vm-1".into()),
        vm_uuid: Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
        ip_addr: Some("10.0.0.5".parse().unwrap()),
        ..Default::default()
    };
    let v = vdptool::VsiArgs {
        uuid: U1,
        mac: MAC1,
        gid: 20000,
        vlan: 0,
        oui: Some(&oui),
    };
    let cfg = vdp_agent::api::config::VdpConfig::default();
    let argv = vdptool::request_argv("vdS0", &cfg, vdptool::Mode::Assoc, &v, true).unwrap();
    assert_eq!(argv.join(" "), f.argv);
    let q = fixture("query_one");
    assert_eq!(
        vdptool::query_argv("vdS0", &cfg, U1).unwrap().join(" "),
        q.argv
    );
    let l = fixture("list_three");
    assert_eq!(vdptool::list_argv("vdS0").unwrap().join(" "), l.argv);
    let d = fixture("deassoc_ok");
    let v = vdptool::VsiArgs { oui: None, ..v };
    let argv = vdptool::request_argv("vdS0", &cfg, vdptool::Mode::Deassoc, &v, false).unwrap();
    assert_eq!(argv.join(" "), d.argv);
}

/// VLAN 0 from the bridge: "no VLAN yet", neither a VLAN nor a failure
/// (the original reports SUCCESS, VDP VLAN -1, no reason).
#[test]
fn bridge_vlan0_is_no_vlan_yet() {
    assert_eq!(
        assoc("assoc_bridge_vlan0", U1, MAC1),
        AssocOutcome::NoVlanYet
    );
    assert_eq!(
        assoc("reassoc_same_vid0", U1, MAC1),
        AssocOutcome::NoVlanYet
    );
}

const E1: &str = "eeeeeeee-0000-4000-8000-000000000001";
const EM1: &str = "fa:16:3e:00:0e:01";

fn eu(n: u32) -> (String, String) {
    (
        format!("eeeeeeee-0000-4000-8000-0000000000{n:02}"),
        format!("fa:16:3e:00:0e:{n:02}"),
    )
}

#[test]
fn success_and_qos_bits() {
    // vdp-lab leaf assigned a VLAN from its pool.
    assert_eq!(
        assoc("leaf_assoc_ok", E1, EM1),
        AssocOutcome::Associated { vlan: 3001 }
    );
    assert_eq!(
        assoc("leaf_assoc_after_reload", E1, EM1),
        AssocOutcome::Associated { vlan: 3003 }
    );
    // 48059 = PS 1, PCP 3, VID 3003
    assert_eq!(
        assoc("notes_success_qos", U1, MAC1),
        AssocOutcome::Associated { vlan: 3003 }
    );
    // Same event, other MAC requested: the original's mac mismatch text.
    assert_eq!(
        assoc("leaf_assoc_ok", E1, "fa:16:3e:00:00:99"),
        failed("VSIID MAC Reply mis-match req mac fa:16:3e:00:00:99 reply mac fa:16:3e:00:0e:01")
    );
    let q = vdptool::parse_query(&fixture("leaf_query_assoc").out.stdout).unwrap();
    assert_eq!(
        vdptool::record_state(&q.records[0], EM1, 40001),
        VsiState::Associated {
            vlan: 3001,
            raw_vlan: 3001
        }
    );
}

#[test]
fn bridge_rejects() {
    for (n, text) in [
        (1, "Error returned by Bridge: VDP TLV Format is Invalid"),
        (
            2,
            "Error returned by Bridge: Insufficient resources at bridge",
        ),
        (3, "Error returned by Bridge: Unable to contact VSI Mgr"),
        (4, "Error returned by Bridge: Other Failures"),
        (
            5,
            "Error returned by Bridge: Invalid VID, GroupID or MAC address field",
        ),
    ] {
        let (u, m) = eu(10 + n);
        assert_eq!(
            assoc(&format!("leaf_reject_{n}"), &u, &m),
            failed(text),
            "code {n}"
        );
    }
    let (u, m) = eu(24);
    assert_eq!(
        assoc("leaf_reject_4_hard", &u, &m),
        failed(vdptool::DEASSOC_NO_REASON)
    );
    // KEEP on a new assoc: no event (pending), the query shows hints 34.
    let (u, m) = eu(32);
    assert_eq!(assoc("leaf_reject_2_keep", &u, &m), AssocOutcome::Pending);
    let q = vdptool::parse_query(&fixture("leaf_query_keep").out.stdout).unwrap();
    assert_eq!(
        vdptool::record_state(&q.records[0], &m, 40032),
        VsiState::Unusable {
            reason: "Non-zero hints, value 34".into(),
            raw_vlan: 0
        }
    );
    // Bridge-initiated deassoc (no Error line), seen by -W of another VSI.
    let (u41, m41) = eu(41);
    assert_eq!(
        assoc("leaf_unsolicited_deassoc", &u41, &m41),
        AssocOutcome::NotOurs {
            other_uuid: E1.into()
        }
    );
    assert_eq!(
        assoc("leaf_unsolicited_deassoc", E1, EM1),
        failed(vdptool::DEASSOC_NO_REASON)
    );
    assert_eq!(
        assoc("notes_keepalive_timeout", U1, MAC1),
        failed("Internal Error : Keepalive Timeout; Internal Error : Ack not received from bridge")
    );
}

#[test]
fn no_answer_is_pending() {
    let f = fixture("assoc_wait_empty");
    assert_eq!((f.out.code, f.out.stdout.as_str()), (0, ""));
    assert_eq!(
        assoc(
            "assoc_wait_empty",
            "cccccccc-0000-4000-8000-000000000003",
            "fa:16:3e:00:03:03"
        ),
        AssocOutcome::Pending
    );
    // Same VSI still waiting: lldpad says busy -> still pending, not failed.
    assert_eq!(
        assoc(
            "in_progress",
            "cccccccc-0000-4000-8000-000000000003",
            "fa:16:3e:00:03:03"
        ),
        AssocOutcome::Pending
    );
}

#[test]
fn event_of_another_vsi() {
    // -W of VSI ...04 printed the ACK timeout event of VSI ...03.
    assert_eq!(
        assoc(
            "event_other_vsi_ackto",
            "cccccccc-0000-4000-8000-000000000004",
            "fa:16:3e:00:03:04"
        ),
        AssocOutcome::NotOurs {
            other_uuid: "cccccccc-0000-4000-8000-000000000003".into()
        }
    );
    // For VSI ...03 itself it is the final verdict.
    assert_eq!(
        assoc(
            "event_other_vsi_ackto",
            "cccccccc-0000-4000-8000-000000000003",
            "fa:16:3e:00:03:03"
        ),
        failed("Internal Error : Ack not received from bridge")
    );
    // The original's text when the VSI turns out to be gone.
    assert_eq!(
        vdptool::vsi_mismatch_failure_reason("a", "b"),
        "VSIID Reply mis-match req vsi a reply vsi b"
    );
}

#[test]
fn failed_forms() {
    for (name, text) in [
        (
            "dev_not_found_assoc",
            "FAILED: Device not found or inactive",
        ),
        (
            "not_supported",
            "FAILED: VDP protocol not supported on interface",
        ),
        ("not_applicable", "FAILED: Command not applicable"),
        ("reassoc_other_gid", "FAILED: Invalid parameters"),
        ("bad_filter", "FAILED: Invalid parameters"),
    ] {
        let f = fixture(name);
        assert_eq!(f.out.code, 1, "{name}");
        assert_eq!(
            vdptool::assoc_outcome(&f.out, U1, MAC1),
            failed(text),
            "{name}"
        );
        assert_eq!(
            vdptool::request_result(&f.out),
            Err(vdptool::Refusal::classify(text.to_string())),
            "{name}"
        );
    }
    assert_eq!(
        vdptool::request_result(&fixture("deassoc_unknown").out),
        Err(vdptool::Refusal::InvalidParameters(
            "FAILED: Invalid parameters".to_string()
        ))
    );
    assert_eq!(vdptool::request_result(&fixture("deassoc_ok").out), Ok(()));
}

#[test]
fn no_lldpad() {
    let f = fixture("no_lldpad");
    assert_eq!(f.out.code, 255);
    assert_eq!(
        vdptool::assoc_outcome(&f.out, U1, MAC1),
        failed("Failed to connect to lldpad - clif_open: Invalid argument")
    );
}

#[test]
fn raw_queries() {
    let q = vdptool::parse_query(&fixture("query_none").out.stdout).unwrap();
    assert_eq!((q.status, q.records.len(), q.truncated), (0, 0, false));
    assert!(
        vdptool::parse_query(&fixture("query_after_ackto").out.stdout)
            .unwrap()
            .records
            .is_empty()
    );

    // Debian bridge: hints 0 but VLAN 0 -> unusable, with the OUI data parsed.
    let q = vdptool::parse_query(&fixture("query_one").out.stdout).unwrap();
    assert_eq!(q.records.len(), 1);
    let r = &q.records[0];
    assert_eq!(
        (r.mode.as_str(), r.uuid.as_str(), r.hints),
        ("assoc", U1, Some(0))
    );
    assert_eq!(r.filter(), Some("0-fa:16:3e:00:00:01-20000"));
    assert!(r
        .fields
        .iter()
        .any(|(k, v)| k == "oui" && v.contains("vm_name0004vm-1")));
    assert_eq!(
        vdptool::record_state(r, MAC1, 20000),
        VsiState::NoVlanYet { raw_vlan: 0 }
    );
    // Same record, other network: a stale VSI of this port.
    assert!(matches!(
        vdptool::record_state(r, MAC1, 20001),
        VsiState::Mismatch { gid: 20000, .. }
    ));

    let q = vdptool::parse_query(&fixture("query_pending").out.stdout).unwrap();
    assert_eq!(q.records[0].hints, Some(255));
    assert_eq!(
        vdptool::record_state(&q.records[0], "fa:16:3e:00:03:03", 50003),
        VsiState::InProgress
    );

    let f = fixture("dev_not_found");
    assert_eq!(f.out.code, 1);
    let q = vdptool::parse_query(&f.out.stdout).unwrap();
    assert_eq!(
        vdptool::status_text(q.status),
        "Device not found or inactive"
    );

    // EVB off: lldpad answers the query with success and no record.
    let q = vdptool::parse_query(&fixture("not_supported_query").out.stdout).unwrap();
    assert_eq!((q.status, q.records.len()), (0, 0));

    assert!(vdptool::parse_query("garbage").is_err());
    assert!(vdptool::parse_query("").is_err());
}

#[test]
fn list_queries() {
    let q = vdptool::parse_query(&fixture("list_three").out.stdout).unwrap();
    let uuids: Vec<&str> = q.records.iter().map(|r| r.uuid.as_str()).collect();
    // newest first
    assert_eq!(
        uuids,
        [
            "aaaaaaaa-0000-4000-8000-000000000003",
            "aaaaaaaa-0000-4000-8000-000000000002",
            "aaaaaaaa-0000-4000-8000-000000000001"
        ]
    );
    let q = vdptool::parse_query(&fixture("list_26").out.stdout).unwrap();
    assert_eq!((q.records.len(), q.truncated), (26, false));
    // 43 VSIs: the answer carries no record at all (clif buffer overflow).
    let q = vdptool::parse_query(&fixture("list_overflow_43").out.stdout).unwrap();
    assert_eq!((q.status, q.records.len()), (0, 0));
    let q = vdptool::parse_query(&fixture("list_empty").out.stdout).unwrap();
    assert!(q.records.is_empty());
    // A cut record is flagged, never mis-parsed.
    let line = fixture("list_three").out.stdout;
    let cut = &line[..line.len() - 40];
    let q = vdptool::parse_query(cut).unwrap();
    assert_eq!((q.records.len(), q.truncated), (2, true));
}

#[test]
fn events_parse() {
    let ev = vdptool::parse_events(&fixture("deassoc_wait_ok").out.stdout);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].mode, "deassoc");
    assert_eq!(ev[0].uuid, "1b2c3d4e-0000-4000-8000-00000000000b");
    assert_eq!(ev[0].error, None);
    assert!(vdptool::parse_events("").is_empty());
}

#[test]
fn existing_vsi_with_a_vlan() {
    let u5 = "dddddddd-0000-4000-8000-000000000005";
    let m5 = "fa:16:3e:00:05:05";
    // The Debian bridge echoes a requested VID: a VSI held with VLAN 3003.
    assert_eq!(
        assoc("assoc_requested_vid3003", u5, m5),
        AssocOutcome::Associated { vlan: 3003 }
    );
    // Re-assoc (or deassoc) with VID 0 of that VSI is refused by lldpad...
    assert_eq!(
        assoc("reassoc_vid0_of_3003", u5, m5),
        failed("FAILED: Invalid parameters")
    );
    assert_eq!(
        vdptool::request_result(&fixture("deassoc_vid0_of_3003").out),
        Err(vdptool::Refusal::InvalidParameters(
            "FAILED: Invalid parameters".to_string()
        ))
    );
    // ...and the refused request leaves code 5 in the stored VSI's hints
    // until the next keep-alive answer; the stored VLAN field is kept.
    let q = vdptool::parse_query(&fixture("query_vid3003").out.stdout).unwrap();
    assert_eq!(
        vdptool::record_state(&q.records[0], m5, 60005),
        VsiState::Unusable {
            reason: "Non-zero hints, value 5".into(),
            raw_vlan: 3003
        }
    );
}

/// Records that carry the Cisco OUI (a VM name with a space, address, VM
/// uuid) next to filter and hints, captured live from the leaf
/// (`tests/lldpad_vdp_leaf.rs` writes them): exact state, VLAN and OUI.
#[test]
fn leaf_oui_records_parse_exactly() {
    let mut list = vdptool::parse_query(&fixture("leaf_oui_list").out.stdout).unwrap();
    assert_eq!((list.records.len(), list.truncated), (3, false));
    // lldpad lists the newest first.
    list.records.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    for (i, rec) in list.records.iter().enumerate() {
        let n = i + 1;
        assert_eq!(
            rec.uuid,
            format!("5eaf0000-0000-4000-8000-0000000000{n:02x}")
        );
        let mac = format!("fa:16:3e:00:0f:{n:02x}");
        assert_eq!(
            vdptool::record_state(rec, &mac, 40001),
            VsiState::Associated {
                vlan: 3001,
                raw_vlan: 3001
            }
        );
        let oui = vdptool::record_oui(rec).expect("Cisco OUI");
        assert_eq!(oui.vm_name, Some(format!("web {n:02}")));
        assert_eq!(oui.ipv4, Some(format!("10.0.0.{n}").parse().unwrap()));
        assert_eq!(
            oui.vm_uuid,
            Some(format!("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1{n:02x}"))
        );
        let mut want = vdp_agent::api::model::Oui {
            oui_id: "cisco".into(),
            vm_name: oui.vm_name.clone(),
            vm_uuid: oui.vm_uuid.clone(),
            ip_addr: oui.ipv4,
            ..Default::default()
        };
        assert!(vdptool::oui_matches(rec, &want));
        want.ip_addr = Some("10.9.9.9".parse().unwrap());
        assert!(!vdptool::oui_matches(rec, &want));
    }
    let one = vdptool::parse_query(&fixture("leaf_oui_query").out.stdout).unwrap();
    assert_eq!(one.records, list.records[..1]);
    let f = fixture("leaf_oui_assoc");
    assert_eq!(
        vdptool::assoc_outcome(
            &f.out,
            "5eaf0000-0000-4000-8000-000000000001",
            "fa:16:3e:00:0f:01"
        ),
        AssocOutcome::Associated { vlan: 3001 }
    );
}
