//! `LldpadDriver` against a real station lldpad and the project's leaf
//! simulator (`vdp-lab leaf`) in two network namespaces (root): VLANs
//! assigned by the bridge, rejects, KEEP, a switch reload (VLAN change) and a
//! bridge-initiated deassoc, all seen through the driver's results and
//! checked with plain `vdptool` listings.

use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::api::config::VdpConfig;
use vdp_agent::api::lldpad::vdptool::DEASSOC_NO_REASON;
use vdp_agent::api::lldpad::vsi::{LldpadDriver, VsiRequest};
use vdp_agent::lab::netns::{self};

mod leaf_station;
use leaf_station::{LeafStation as Lab, Tags};

const TAGS: Tags = Tags {
    sta: "vds",
    leaf: "vdl",
    sta_if: "vdS",
    leaf_if: "vdL",
    dir: "vd-leaf",
};

impl Lab {
    fn at(n: u32) -> Lab {
        Lab::new(&TAGS, n)
    }

    fn driver(&self) -> LldpadDriver {
        let runner = Arc::new(self.sta.runner(Duration::from_secs(10)));
        LldpadDriver::new(runner, &self.sta_if, VdpConfig::default())
    }

    fn listing(&self) -> String {
        netns::vdptool_listing(&self.sta, &self.sta_if).unwrap()
    }
}

fn req(n: u8, gid: u32) -> VsiRequest {
    VsiRequest {
        port_uuid: format!("5eaf0000-0000-4000-8000-0000000000{n:02x}"),
        vm_mac: format!("fa:16:3e:00:0f:{n:02x}"),
        net_uuid: format!("00000000-0000-4000-8000-0000000{gid:05}"),
        segmentation_id: gid,
        oui: None,
    }
}

#[test]
fn vlans_rejects_keep_reload_and_bridge_deassoc_with_leaf_simulator() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let lab = Lab::at(7);
    let d = lab.driver();

    // 1. The leaf assigns one VLAN per group.
    let (r1, r2) = (req(1, 40001), req(2, 40001));
    let a1 = d.associate(&r1);
    let v1 = a1.vdp_vlan.expect("VLAN from the leaf");
    assert!((3001..=3010).contains(&v1), "{a1:?}");
    assert_eq!((a1.fail_reason, a1.pending), (None, false));
    assert_eq!(d.associate(&r2).vdp_vlan, Some(v1));
    let l = lab.listing();
    assert!(
        l.contains(&format!("filter = {v1}-fa:16:3e:00:0f:01-40001")),
        "{l}"
    );

    // 2. Rejects carry lldpad's texts; the VSI is gone from lldpad.
    let r3 = req(3, 40003);
    lab.ctl("reject-next 5");
    let a3 = d.associate(&r3);
    assert_eq!(
        a3.fail_reason.as_deref(),
        Some("Error returned by Bridge: Invalid VID, GroupID or MAC address field")
    );
    assert_eq!(a3.vdp_vlan, None);
    lab.ctl("reject-next 4 hard");
    let r5 = req(5, 40005);
    assert_eq!(
        d.associate(&r5).fail_reason.as_deref(),
        Some(DEASSOC_NO_REASON)
    );
    assert!(!lab.listing().contains(&r3.port_uuid));

    // 3. KEEP on a new assoc: no event -> pending.
    let r4 = req(4, 40004);
    lab.ctl("reject-next 2 keep");
    let t = Instant::now();
    let a4 = d.associate(&r4);
    assert!(a4.pending, "{a4:?}");
    assert!(t.elapsed() < Duration::from_secs(8));

    // Refresh: r1/r2 fine (1 list process covers them); r4 (hints 34) and
    // the rejected r3/r5 are asked again and now get their VLANs.
    let mut ch = d.refresh();
    ch.sort_by(|a, b| a.port_uuid.cmp(&b.port_uuid));
    let ids: Vec<&str> = ch.iter().map(|c| c.port_uuid.as_str()).collect();
    assert_eq!(ids, [&r3.port_uuid, &r4.port_uuid, &r5.port_uuid], "{ch:?}");
    for c in &ch {
        assert!(c.vdp_vlan.is_some() && c.fail_reason.is_none(), "{c:?}");
        assert_eq!(c.old_vdp_vlan, None);
    }
    let before: Vec<(String, Option<u16>)> = d
        .vsis()
        .into_iter()
        .map(|(r, v)| (r.port_uuid, v.vdp_vlan))
        .collect();
    assert!(before.iter().all(|(_, v)| v.is_some()), "{before:?}");

    // 4. Switch reload: the leaf forgets everything and moves its pool;
    // each VSI dies at its next keep-alive; refresh finds the new VLANs.
    lab.ctl("reload");
    let all_gone = netns::wait_for(Duration::from_secs(20), Duration::from_millis(250), || {
        (!lab.listing().contains("uuid = ")).then_some(())
    });
    assert!(all_gone.is_some(), "{}", lab.listing());
    let ch = d.refresh();
    assert_eq!(ch.len(), 5, "{ch:?}");
    for c in &ch {
        let old = before.iter().find(|(u, _)| *u == c.port_uuid).unwrap().1;
        assert_eq!(c.old_vdp_vlan, old);
        assert!(c.vdp_vlan.is_some() && c.vdp_vlan != old, "{c:?}");
    }
    let v1b = ch
        .iter()
        .find(|c| c.port_uuid == r1.port_uuid)
        .unwrap()
        .vdp_vlan;

    // 5. Bridge-initiated deassoc of r1: refresh re-asserts it silently
    // (same group, same VLAN: nothing to report).
    lab.ctl(&format!("deassoc {}", r1.port_uuid));
    let gone = netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        (!lab.listing().contains(&r1.port_uuid)).then_some(())
    });
    assert!(gone.is_some());
    assert!(d.refresh().is_empty());
    assert!(lab.listing().contains(&r1.port_uuid));
    assert_eq!(d.vsis()[0].1.vdp_vlan, v1b);

    // 6. Deassociate everything: lldpad and the leaf end empty.
    for (r, _) in d.vsis() {
        let rep = d.deassociate(&r.port_uuid);
        assert_eq!(rep.fail_reason, None, "{rep:?}");
    }
    let empty = netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        (!lab.listing().contains("uuid = ")).then_some(())
    });
    assert!(empty.is_some(), "{}", lab.listing());
    assert!(d.vsis().is_empty());
    let leaf_empty = netns::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        lab.ctl("status").contains("\"vsis\":[]").then_some(())
    });
    assert!(leaf_empty.is_some(), "{}", lab.ctl("status"));
}

/// lldpad's own records of VSIs that carry the Cisco OUI (VM name with a
/// space, IPv4 address, VM uuid) next to filter and hints, from the leaf:
/// parsed exactly (state, VLAN, OUI fields), a repeated "up" with the same
/// data is adopted (no new associate, same VLAN), one with a new address
/// is associated again and lldpad then holds the new address. The same
/// records are kept as fixtures (`tests/fixtures/vdptool/leaf_oui_*.txt`,
/// checked in `tests/lldpad_vdp_fixtures.rs`); `VDP_CAPTURE_FIXTURES=DIR`
/// writes this run's outputs there.
#[test]
fn oui_records_from_the_leaf_parse_exactly() {
    use vdp_agent::api::lldpad::vdptool;
    use vdp_agent::api::model::Oui;
    if !netns::lldpad_lab_ok() {
        return;
    }
    let lab = Lab::at(8);
    let d = lab.driver();
    let oui = |ip: &str, n: u8| Oui {
        oui_id: "cisco".into(),
        vm_name: Some(format!("web {n:02}")),
        vm_uuid: Some(format!("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1{n:02x}")),
        ip_addr: Some(ip.parse().unwrap()),
        ..Default::default()
    };
    let mut reqs: Vec<VsiRequest> = (1..=3)
        .map(|n| VsiRequest {
            oui: Some(oui(&format!("10.0.0.{n}"), n)),
            ..req(n, 40001)
        })
        .collect();
    let mut vlans = Vec::new();
    for r in &reqs {
        let a = d.associate(r);
        vlans.push(a.vdp_vlan.expect("VLAN from the leaf"));
        assert_eq!((a.fail_reason.as_deref(), a.pending), (None, false));
    }
    let cfg = VdpConfig::default();
    let capture = std::env::var_os("VDP_CAPTURE_FIXTURES").map(std::path::PathBuf::from);
    let run = |what: &str, file: Option<&str>, argv: Vec<String>| -> String {
        let out = lab
            .sta
            .exec_any(&argv.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if let (Some(dir), Some(file)) = (&capture, file) {
            let text = format!(
                "# {what}\n# captured live by tests/lldpad_vdp_leaf.rs (station lldpad, vdp-lab leaf --vlan-pool 3001-3010)\n# argv: {}\n# rc: {}\n--- stdout\n{stdout}--- stderr\n{}",
                argv.join(" "),
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(dir.join(file), text).unwrap();
        }
        stdout
    };
    // One VSI's record, and the list of all three.
    let q = run(
        "per-VSI query of a VSI associated with the Cisco OUI by vdp-lab leaf",
        Some("leaf_oui_query.txt"),
        vdptool::query_argv(&lab.sta_if, &cfg, &reqs[0].port_uuid).unwrap(),
    );
    let reply = vdptool::parse_query(&q).unwrap();
    assert_eq!(reply.records.len(), 1, "{q}");
    let list = run(
        "list query of three VSIs associated with the Cisco OUI by vdp-lab leaf",
        Some("leaf_oui_list.txt"),
        vdptool::list_argv(&lab.sta_if).unwrap(),
    );
    let listed = vdptool::parse_query(&list).unwrap();
    assert_eq!(
        (listed.records.len(), listed.truncated),
        (3, false),
        "{list}"
    );
    for (r, v) in reqs.iter().zip(&vlans) {
        let rec = listed
            .records
            .iter()
            .find(|x| x.uuid == r.port_uuid)
            .expect("listed");
        assert_eq!(
            vdptool::record_state(rec, &r.vm_mac, r.segmentation_id),
            vdptool::VsiState::Associated {
                vlan: *v,
                raw_vlan: *v
            },
            "{rec:?}"
        );
        let o = r.oui.as_ref().unwrap();
        let held = vdptool::record_oui(rec).expect("OUI in the record");
        assert_eq!(held.vm_name, o.vm_name);
        assert_eq!(held.ipv4, o.ip_addr);
        assert!(vdptool::oui_matches(rec, o), "{rec:?}");
    }
    // The -W printout of an associate with OUI data.
    let wait = run(
        "assoc -W with the Cisco OUI against vdp-lab leaf",
        Some("leaf_oui_assoc.txt"),
        vdptool::request_argv(
            &lab.sta_if,
            &cfg,
            vdptool::Mode::Assoc,
            &vdptool::VsiArgs {
                uuid: &reqs[0].port_uuid,
                mac: &reqs[0].vm_mac,
                gid: 40001,
                vlan: vlans[0],
                oui: reqs[0].oui.as_ref(),
            },
            true,
        )
        .unwrap(),
    );
    let out = vdp_agent::api::exec::CmdOutput {
        code: 0,
        stdout: wait.clone(),
        stderr: String::new(),
        elapsed: Duration::ZERO,
    };
    assert_eq!(
        vdptool::assoc_outcome(&out, &reqs[0].port_uuid, &reqs[0].vm_mac),
        vdptool::AssocOutcome::Associated { vlan: vlans[0] },
        "{wait}"
    );

    // A repeated "up" with the same data: adopted, no new associate.
    let calls = d.vdptool_calls();
    let again = d.associate(&reqs[1]);
    assert_eq!(again.vdp_vlan, Some(vlans[1]));
    let sets = d.vdptool_calls() - calls;
    assert!(
        sets <= 1,
        "{sets} vdptool runs for an adopted VSI (a query at most)"
    );
    // A new address: associated again, lldpad holds the new one, same VLAN.
    reqs[2].oui = Some(oui("10.0.9.9", 3));
    let moved = d.associate(&reqs[2]);
    assert_eq!(moved.vdp_vlan, Some(vlans[2]));
    let cmd = vdptool::query_argv(&lab.sta_if, &cfg, &reqs[2].port_uuid).unwrap();
    let rec = vdptool::parse_query(&run("query after a new address", None, cmd))
        .unwrap()
        .records
        .remove(0);
    assert_eq!(
        vdptool::record_oui(&rec).unwrap().ipv4,
        Some("10.0.9.9".parse().unwrap())
    );
}
