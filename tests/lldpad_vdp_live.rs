//! `LldpadDriver` against real lldpad daemons (root): a station lldpad and a
//! Debian bridge-role lldpad in two network namespaces joined by a veth.
//! The station side is enabled with plain lldptool commands through
//! `exec::Runner`; results are checked with plain `vdptool` queries.
//!
//! The Debian bridge echoes every request (VID 0 comes back as 0), so:
//! VLAN 0 -> failure; a VSI "held with a VLAN" is made by asking the VID
//! explicitly with plain vdptool (the bridge echoes it). Silence is made by
//! SIGSTOP of the bridge lldpad we started.

use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::api::config::VdpConfig;
use vdp_agent::api::lldpad::vsi::{LldpadDriver, VsiRequest, REASON_VSI_LOST};
use vdp_agent::api::model::Oui;
use vdp_agent::lab::netns::{self, StationBridgeLab};

macro_rules! need_root {
    () => {
        if !netns::lldpad_lab_ok() {
            return;
        }
    };
}

/// The shared station + bridge-role lldpad pair, with this file's helpers.
struct Lab(StationBridgeLab);

impl std::ops::Deref for Lab {
    type Target = StationBridgeLab;
    fn deref(&self) -> &StationBridgeLab {
        &self.0
    }
}

fn lab(n: u32) -> Lab {
    Lab(StationBridgeLab::start("vd", n).expect("station + bridge lldpad lab"))
}

impl Lab {
    fn driver(&self) -> LldpadDriver {
        let runner = Arc::new(self.sta.runner(Duration::from_secs(10)));
        LldpadDriver::new(runner, &self.sta_if, VdpConfig::default())
    }
    /// Plain readable listing of the station's VSIs.
    fn listing(&self) -> String {
        netns::vdptool_listing(&self.sta, &self.sta_if).unwrap()
    }
    /// Plain `vdptool -T -W` association of `uuid` with `filter`.
    fn plain_assoc(&self, uuid: &str, filter: &str) -> String {
        let argv = netns::vdptool_set_argv(&self.sta_if, "assoc", uuid, filter, true);
        self.sta.stdout(&argv).unwrap()
    }
    fn bridge_signal(&self, sig: i32) {
        // SAFETY: kill(2) of the lldpad this test started.
        assert_eq!(unsafe { libc::kill(self.bridge_pid as i32, sig) }, 0);
    }
}

fn req(n: u8, gid: u32) -> VsiRequest {
    VsiRequest {
        port_uuid: format!("7af441dd-253b-4772-8cf1-a4cfef18ef{n:02x}"),
        vm_mac: format!("fa:16:3e:00:00:{n:02x}"),
        net_uuid: "11111111-2222-3333-4444-555555555555".into(),
        segmentation_id: gid,
        oui: None,
    }
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn associate_deassociate_restore_against_debian_bridge() {
    need_root!();
    let lab = lab(1);
    let d = lab.driver();

    // 1. VLAN 0 from the Debian bridge: no VLAN yet, and no failure.
    let mut r1 = req(1, 20001);
    r1.oui = Some(Oui {
        oui_id: "cisco".into(),
        vm_name: Some("vm-1".into()),
        ip_addr: Some("10.0.0.5".parse().unwrap()),
        vm_uuid: Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0".into()),
        ..Default::default()
    });
    let t = Instant::now();
    let rep = d.associate(&r1);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(
        (rep.vdp_vlan, rep.fail_reason.as_deref(), rep.pending),
        (None, None, false)
    );
    assert!(rep.no_vlan_yet && rep.is_verdict(), "{rep:?}");
    assert_eq!(d.vdptool_calls(), 2, "query + assoc -W");
    // The association is in the station's lldpad, with our OUI data.
    let l = lab.listing();
    assert!(l.contains(&format!("uuid = {}", r1.port_uuid)), "{l}");
    assert!(l.contains("filter = 0-fa:16:3e:00:00:01-20001"), "{l}");
    assert!(l.contains("VM Name = vm-1"), "{l}");
    assert_eq!(d.vsis().len(), 1);

    // Duplicate up event: same verdict, still one VSI in lldpad.
    let again = d.associate(&r1);
    assert_eq!(again, rep);
    assert_eq!(count(&lab.listing(), "uuid = "), 1);

    // Refresh: the bridge holds it with VLAN 0, nothing changed -> nothing
    // sent, nothing reported.
    assert!(d.refresh().is_empty());

    // 2. A VSI lldpad already holds with a VLAN (as after an agent restart)
    // is adopted without any request (a VID 0 re-assoc would be refused).
    let r2 = req(2, 20002);
    let held = lab.plain_assoc(&r2.port_uuid, "3003-fa:16:3e:00:00:02-20002");
    assert!(held.contains("filter = 3003-"), "{held}");
    let before = d.vdptool_calls();
    let rep2 = d.associate(&r2);
    assert_eq!(rep2.vdp_vlan, Some(3003), "{rep2:?}");
    assert_eq!(rep2.fail_reason, None);
    assert_eq!(d.vdptool_calls() - before, 1, "query only");

    // Refresh: one list query; VSI 2 fine, VSI 1 held with VLAN 0 (a query
    // that holds VLAN 0 needs no new associate).
    let before = d.vdptool_calls();
    assert!(d.refresh().is_empty());
    assert_eq!(
        d.vdptool_calls() - before,
        1,
        "the list only: no re-assoc of the VLAN-0 VSI"
    );

    // 3. Deassociate removes them from lldpad and from the table.
    let gone = d.deassociate(&r2.port_uuid);
    assert_eq!(gone.vdp_vlan, Some(3003));
    assert_eq!(gone.fail_reason, None);
    let gone1 = d.deassociate(&r1.port_uuid);
    assert_eq!(gone1.fail_reason, None);
    let empty = netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        (count(&lab.listing(), "uuid = ") == 0).then_some(())
    });
    assert!(empty.is_some(), "{}", lab.listing());
    assert!(d.vsis().is_empty());
    assert!(d
        .deassociate(&r1.port_uuid)
        .fail_reason
        .unwrap()
        .contains("not in cache"));

    // 4. Restored after a restart with a WRONG VLAN from the controller:
    // deassociate still removes lldpad's VSI (uses lldpad's stored filter).
    let r3 = req(3, 20003);
    lab.plain_assoc(&r3.port_uuid, "3004-fa:16:3e:00:00:03-20003");
    d.restore(&r3, Some(5));
    assert!(d.refresh().is_empty(), "restored entries are not refreshed");
    let rep3 = d.deassociate(&r3.port_uuid);
    assert_eq!(rep3.fail_reason, None, "{rep3:?}");
    let empty = netns::wait_for(Duration::from_secs(3), Duration::from_millis(50), || {
        (count(&lab.listing(), "uuid = ") == 0).then_some(())
    });
    assert!(empty.is_some(), "{}", lab.listing());
}

#[test]
fn silent_bridge_gives_pending_then_refresh_reports_loss() {
    need_root!();
    let lab = lab(2);
    let d = Arc::new(lab.driver());
    lab.bridge_signal(libc::SIGSTOP);

    // Two associates at once: both pending after one 5 s wait, not two
    // (no lock held across vdptool).
    let (a, b) = (req(4, 30004), req(5, 30005));
    let t = Instant::now();
    let d2 = d.clone();
    let b2 = b.clone();
    let h = std::thread::Builder::new()
        .name("assoc-b".into())
        .spawn(move || d2.associate(&b2))
        .unwrap();
    let ra = d.associate(&a);
    let rb = h.join().unwrap();
    let took = t.elapsed();
    assert!(ra.pending && rb.pending, "{ra:?} {rb:?}");
    assert_eq!((ra.fail_reason.as_ref(), ra.vdp_vlan), (None, None));
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(d.vsis().iter().all(|(_, r)| r.pending));
    // lldpad waits for the bridge: hints 255.
    let l = lab.listing();
    assert_eq!(count(&l, "hints = 255"), 2, "{l}");

    // Refresh while still waiting: nothing to report.
    assert!(d.refresh().is_empty());

    // lldpad gives up after ~15.8 s (ack timer) and drops both.
    let dropped = netns::wait_for(Duration::from_secs(20), Duration::from_millis(250), || {
        (count(&lab.listing(), "uuid = ") == 0).then_some(())
    });
    assert!(dropped.is_some(), "{}", lab.listing());

    // Refresh reports the loss of both. lldpad took those associates less
    // than vdp.sync_timeout_s ago without a verdict: none is sent again
    // yet (no associate storm while lldpad holds nothing).
    let before = d.vdptool_calls();
    let mut changes = d.refresh();
    changes.sort_by(|x, y| x.port_uuid.cmp(&y.port_uuid));
    assert_eq!(changes.len(), 2, "{changes:?}");
    for (c, r) in changes.iter().zip([&a, &b]) {
        assert_eq!(c.port_uuid, r.port_uuid);
        assert_eq!(c.vdp_vlan, None);
        assert_eq!(c.fail_reason.as_deref(), Some(REASON_VSI_LOST));
        assert_eq!(c.local_vlan, None);
    }
    assert_eq!(
        d.vdptool_calls() - before,
        3,
        "list + 2 per-VSI queries, no associate"
    );
    assert_eq!(count(&lab.listing(), "uuid = "), 0);

    // After an lldpad (re)start the next round sends at once: only the
    // first re-assoc waits 5 s, the second is sent without -W.
    d.note_lldpad_start();
    let before = d.vdptool_calls();
    let t = Instant::now();
    let _ = d.refresh();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(
        d.vdptool_calls() - before,
        5,
        "list + 2 per-VSI queries + 2 assocs"
    );
    // Both were asked again and wait for the bridge.
    assert_eq!(count(&lab.listing(), "hints = 255"), 2);
    lab.bridge_signal(libc::SIGCONT);
}
