//! State-machine tests of `VdpMgr` against recording fakes of `HostDriver`
//! and `ControllerLink`: every transition of the original `VdpMgr`
//! (restart paths, static/auto detection, down debounce, bond transition,
//! bulk safety net, error-queue retry, VM events, VSI changes).

mod core_fakes;

use core_fakes::{result, save, FakeHost, FakeLink, HostCall, LinkCall};
use std::sync::Arc;
use std::time::Duration;
use vdp_agent::api::manager::host::{PortOutcome, UplinkDetect, VsiChange};
use vdp_agent::api::manager::{
    MgrConfig, VdpMgr, VmNotice, PORT_TRANSITION_BOND_DOWN_REASON, PORT_TRANSITION_BOND_UP_REASON,
    UPLINK_NOT_RECEIVED_REASON, UPLINK_UNDISCOVERED_REASON,
};
use vdp_agent::api::model::{
    MigrationPhase, PortStatus, UplinkInfo, UplinkSetupError, VmPort, VmResult,
};
use vdp_agent::api::queue::VdpQueMsg;
use vdp_agent::api::shutdown::Shutdown;

struct T {
    mgr: Arc<VdpMgr>,
    host: Arc<FakeHost>,
    link: Arc<FakeLink>,
}

fn setup(static_uplink: Option<&str>) -> T {
    setup_with(static_uplink, 1)
}

/// `setup` with `vm_lanes` VM lanes (`vdp.in_flight`).
fn setup_with(static_uplink: Option<&str>, vm_lanes: usize) -> T {
    let host = FakeHost::new();
    let link = Arc::new(FakeLink::default());
    let cfg = MgrConfig {
        static_uplink: static_uplink.map(String::from),
        vm_port_wait: Duration::from_secs(7),
        uplink_detect: Duration::from_secs(10),
        err_queue: Duration::from_secs(20),
        vm_lanes,
    };
    let mgr = VdpMgr::new(cfg, host.clone(), link.clone(), Shutdown::new());
    T { mgr, host, link }
}

impl T {
    /// Process everything queued, like the worker would.
    fn drain(&self) {
        while let Some((_, m)) = self.mgr.que().dequeue_nonblock() {
            self.mgr.process_msg(m);
        }
    }
    fn restart(&self, uplink: &str, veth: &str) {
        self.mgr.dfa_uplink_restart(&UplinkInfo {
            uplink: uplink.into(),
            veth_intf: veth.into(),
        });
    }
    /// Bring eth2 up through auto-detection from a clean start.
    fn bring_up_eth2(&self) {
        self.restart("", "");
        self.host.script(&[UplinkDetect::Up("eth2".into())]);
        self.mgr.vdp_uplink_proc();
        self.drain();
        assert!(self.mgr.state_view().uplink_det_compl);
        self.host.take();
        self.link.take();
    }
}

const P1: &str = "11111111-2222-3333-4444-555555555555";
const P2: &str = "11111111-2222-3333-4444-666666666666";
const NET: &str = "aaaaaaaa-2222-3333-4444-555555555555";

fn vm(port: &str, status: PortStatus) -> VmPort {
    VmPort {
        port_uuid: port.into(),
        vm_mac: "fa:16:3e:00:00:01".into(),
        net_uuid: NET.into(),
        segmentation_id: 30001,
        status,
        host: None,
        oui: None,
        local_vlan: None,
        vdp_vlan: None,
    }
}

#[test]
fn nothing_before_restart_or_bridges() {
    let t = setup(None);
    *t.host.bridges.lock() = false;
    t.mgr.vdp_uplink_proc();
    assert!(t.host.calls().is_empty());
    *t.host.bridges.lock() = true;
    t.mgr.vdp_uplink_proc();
    assert!(
        t.host.calls().is_empty(),
        "no detection before the stored uplink is known"
    );
    assert!(!t.mgr.is_uplink_received());
    t.restart("", "");
    assert!(t.mgr.is_uplink_received());
    t.mgr.vdp_uplink_proc();
    assert_eq!(t.host.calls(), vec![HostCall::DetectUplink(None)]);
    // none stage: uplink not discovered yet
    assert_eq!(
        t.link.calls(),
        vec![save("", "", None, UPLINK_UNDISCOVERED_REASON)]
    );
    assert_eq!(
        t.mgr.uplink_snapshot().fail_reason,
        UPLINK_UNDISCOVERED_REASON
    );
}

#[test]
fn fresh_auto_detection_up() {
    let t = setup(None);
    t.restart("", "");
    t.host.script(&[UplinkDetect::Up("eth2".into())]);
    t.mgr.vdp_uplink_proc();
    assert_eq!(t.link.take(), vec![save("eth2", "", None, "")]);
    assert!(t.mgr.state_view().process_uplink_ongoing);
    // while the uplink message is in flight the periodic task does nothing
    t.mgr.vdp_uplink_proc();
    assert_eq!(t.host.take(), vec![HostCall::DetectUplink(None)]);
    t.drain();
    assert_eq!(
        t.host.take(),
        vec![
            HostCall::UplinkUp("eth2".into()),
            HostCall::TopoUncfgIntf("eth2".into()),
            HostCall::TopoCfgIntf {
                intf: "LLDPLeth2".into(),
                phy: "eth2".into()
            }
        ]
    );
    assert_eq!(t.link.take(), vec![save("eth2", "LLDPLeth2", None, "")]);
    let v = t.mgr.state_view();
    assert!(v.uplink_det_compl && !v.process_uplink_ongoing);
    let s = t.mgr.uplink_snapshot();
    assert_eq!(s.phy.as_deref(), Some("eth2"));
    assert_eq!(s.veth.as_deref(), Some("LLDPLeth2"));
    assert!(s.detected);
    // next round: normal, detection is asked with the veth
    t.mgr.vdp_uplink_proc();
    assert_eq!(
        t.host.take(),
        vec![HostCall::DetectUplink(Some("LLDPLeth2".into()))]
    );
}

#[test]
fn restart_with_stored_uplink_and_veth() {
    let t = setup(None);
    t.restart("eth2", "LLDPLeth2");
    let v = t.mgr.state_view();
    assert_eq!(v.phy_uplink.as_deref(), Some("eth2"));
    assert_eq!(v.veth_intf.as_deref(), Some("LLDPLeth2"));
    assert!(!v.uplink_det_compl);
    // a second restart notice is ignored
    t.restart("eth9", "LLDPLeth9");
    assert_eq!(t.mgr.state_view().phy_uplink.as_deref(), Some("eth2"));
    t.mgr.vdp_uplink_proc();
    assert_eq!(
        t.host.take(),
        vec![HostCall::DetectUplink(Some("LLDPLeth2".into()))]
    );
    assert!(t.mgr.state_view().process_uplink_ongoing);
    t.drain();
    let calls = t.host.take();
    assert_eq!(calls[0], HostCall::UplinkUp("eth2".into()));
    assert!(!calls
        .iter()
        .any(|c| matches!(c, HostCall::DeleteUplinkAndFlows(_))));
    assert_eq!(t.link.take(), vec![save("eth2", "LLDPLeth2", None, "")]);
    assert!(t.mgr.state_view().uplink_det_compl);
}

#[test]
fn restart_with_stored_uplink_without_veth() {
    let t = setup(None);
    t.restart("eth2", "");
    assert_eq!(
        t.host.take(),
        vec![HostCall::DeleteUplinkAndFlows("eth2".into())]
    );
    let v = t.mgr.state_view();
    assert!(v.restart_uplink_called);
    assert_eq!(v.phy_uplink, None);
    t.mgr.vdp_uplink_proc();
    assert_eq!(t.host.take(), vec![HostCall::DetectUplink(None)]);
}

#[test]
fn static_uplink_changed_across_restart_goes_down_at_once() {
    let t = setup(Some("eth3"));
    t.restart("eth2", "LLDPLeth2");
    t.mgr.vdp_uplink_proc();
    // static mode: no detection command, immediate down (no debounce)
    assert!(t.host.calls().is_empty());
    let v = t.mgr.state_view();
    assert_eq!(v.phy_uplink, None);
    assert!(v.process_uplink_ongoing);
    t.drain();
    assert_eq!(
        t.host.take(),
        vec![
            HostCall::DeleteUplinkAndFlows("eth2".into()),
            HostCall::TopoUncfgIntf("LLDPLeth2".into()),
            HostCall::TopoCfgIntf {
                intf: "eth2".into(),
                phy: "eth2".into()
            }
        ]
    );
    assert_eq!(t.link.take(), vec![save("", "", None, "")]);
    t.mgr.vdp_uplink_proc();
    assert_eq!(t.link.take(), vec![save("eth3", "", None, "")]);
    t.drain();
    assert_eq!(t.host.take()[0], HostCall::UplinkUp("eth3".into()));
    assert_eq!(t.link.take(), vec![save("eth3", "LLDPLeth3", None, "")]);
    // then normal
    t.mgr.vdp_uplink_proc();
    assert!(t.mgr.que().is_empty());
    assert!(t.mgr.state_view().uplink_det_compl);
}

#[test]
fn static_uplink_unchanged_across_restart_is_normal() {
    let t = setup(Some("eth2"));
    t.restart("eth2", "LLDPLeth2");
    t.mgr.vdp_uplink_proc();
    t.drain();
    assert_eq!(t.host.take()[0], HostCall::UplinkUp("eth2".into()));
    assert_eq!(t.link.take(), vec![save("eth2", "LLDPLeth2", None, "")]);
}

#[test]
fn down_debounce_three_periods_in_auto_mode() {
    let t = setup(None);
    t.bring_up_eth2();
    t.host.script(&[
        UplinkDetect::Down,
        UplinkDetect::Down,
        UplinkDetect::Normal, // short blip: counter reset
        UplinkDetect::Down,
        UplinkDetect::Down,
    ]);
    for _ in 0..5 {
        t.mgr.vdp_uplink_proc();
        assert!(t.mgr.que().is_empty());
    }
    assert_eq!(t.mgr.state_view().uplink_down_cnt, 2);
    t.host.script(&[UplinkDetect::Down]);
    t.mgr.vdp_uplink_proc();
    let v = t.mgr.state_view();
    assert_eq!(v.phy_uplink, None);
    assert_eq!(v.uplink_down_cnt, 0);
    assert!(!v.uplink_det_compl);
    t.host.take();
    t.link.take();
    t.drain();
    assert_eq!(
        t.host.take(),
        vec![
            HostCall::UplinkDown("eth2".into()),
            HostCall::TopoUncfgIntf("LLDPLeth2".into()),
            HostCall::TopoCfgIntf {
                intf: "eth2".into(),
                phy: "eth2".into()
            }
        ]
    );
    assert_eq!(t.link.take(), vec![save("", "", None, "")]);
    // afterwards: detection without veth again
    t.mgr.vdp_uplink_proc();
    assert_eq!(t.host.take(), vec![HostCall::DetectUplink(None)]);
}

#[test]
fn bond_transition_down_then_up() {
    let t = setup(None);
    t.bring_up_eth2();
    t.host.bonds.lock().insert("eth2".into(), "bond0".into());
    t.host
        .members
        .lock()
        .insert("bond0".into(), "eth2 eth3".into());
    t.mgr.vdp_uplink_proc(); // normal stage -> bond check
    let saves = t.link.take();
    assert_eq!(
        &saves[..2],
        &[
            save("", "", None, PORT_TRANSITION_BOND_DOWN_REASON),
            save(
                "bond0",
                "",
                Some("eth2 eth3"),
                PORT_TRANSITION_BOND_UP_REASON
            )
        ]
    );
    assert_eq!(t.mgr.que().len(), 2);
    assert_eq!(t.mgr.state_view().phy_uplink.as_deref(), Some("bond0"));
    t.host.take();
    t.drain();
    let calls = t.host.take();
    assert_eq!(calls[0], HostCall::UplinkDown("eth2".into()));
    assert!(
        calls.contains(&HostCall::UplinkUp("bond0".into())),
        "{calls:?}"
    );
    let saves = t.link.take();
    assert_eq!(
        saves,
        vec![
            save("", "", None, ""),
            save("bond0", "LLDPLbond0", Some("eth2 eth3"), "")
        ]
    );
    assert!(t.mgr.state_view().uplink_det_compl);
}

#[test]
fn member_found_by_detection_is_resolved_to_its_bond() {
    let t = setup(None);
    t.restart("", "");
    t.host.bonds.lock().insert("eth2".into(), "bond0".into());
    t.host.script(&[UplinkDetect::Up("eth2".into())]);
    t.mgr.vdp_uplink_proc();
    assert_eq!(t.link.take(), vec![save("bond0", "", None, "")]);
    t.drain();
    assert_eq!(t.host.take()[1], HostCall::UplinkUp("bond0".into()));
}

#[test]
fn bulk_safety_net_resends_save_uplink() {
    let t = setup(None);
    t.bring_up_eth2();
    t.mgr.vdp_uplink_proc(); // count 0 -> 1
    assert!(t.link.take().is_empty());
    assert_eq!(t.mgr.state_view().bulk_vm_check_cnt, 1);
    t.mgr.vdp_uplink_proc(); // resend
    assert_eq!(t.link.take(), vec![save("eth2", "LLDPLeth2", None, "")]);
    t.mgr.vdp_uplink_proc();
    assert!(t.link.take().is_empty());
    t.mgr.vdp_uplink_proc();
    assert_eq!(t.link.take(), vec![save("eth2", "LLDPLeth2", None, "")]);
    // a bulk list arrives: no more resends
    t.mgr.vdp_vm_event(VmNotice::Bulk(vec![]));
    t.drain();
    for _ in 0..4 {
        t.mgr.vdp_uplink_proc();
    }
    assert!(t.link.take().is_empty());
}

#[test]
fn error_queue_retries_failed_uplink() {
    let t = setup(None);
    t.restart("", "");
    *t.host.uplink_up_err.lock() = Some(UplinkSetupError::Evb);
    t.host.script(&[UplinkDetect::Up("eth2".into())]);
    t.mgr.vdp_uplink_proc();
    t.drain();
    assert_eq!(
        t.link.take(),
        vec![
            save("eth2", "", None, ""),
            save("eth2", "", None, "Unable to cfg EVB")
        ]
    );
    assert_eq!(t.mgr.uplink_snapshot().fail_reason, "Unable to cfg EVB");
    assert_eq!(t.mgr.err_que().len(), 1);
    let v = t.mgr.state_view();
    assert!(!v.uplink_det_compl && !v.process_uplink_ongoing);
    // periodic: inconsistent (uplink without veth, not set up) -> waits
    t.host.take();
    t.mgr.vdp_uplink_proc();
    assert!(t.host.take().is_empty());
    // error-queue round moves it back; now the host succeeds
    *t.host.uplink_up_err.lock() = None;
    t.mgr.process_err_queue();
    assert_eq!(t.mgr.err_que().len(), 0);
    assert_eq!(t.mgr.que().len(), 1);
    t.drain();
    assert_eq!(t.host.take()[0], HostCall::UplinkUp("eth2".into()));
    assert_eq!(t.link.take(), vec![save("eth2", "LLDPLeth2", None, "")]);
    assert!(t.mgr.state_view().uplink_det_compl);
    assert_eq!(t.mgr.uplink_snapshot().fail_reason, "");
}

#[test]
fn stale_uplink_retry_is_dropped() {
    let t = setup(None);
    t.restart("", "");
    *t.host.uplink_up_err.lock() = Some(UplinkSetupError::Ovs("x".into()));
    t.host.script(&[UplinkDetect::Up("eth2".into())]);
    t.mgr.vdp_uplink_proc();
    t.drain();
    assert_eq!(t.mgr.err_que().len(), 1);
    // the uplink changes meanwhile
    *t.host.uplink_up_err.lock() = None;
    t.mgr.process_err_queue();
    // simulate: the state moved to another uplink
    t.mgr.que().dequeue_nonblock().unwrap();
    t.mgr.process_msg(VdpQueMsg::Uplink {
        status: vdp_agent::api::queue::UplinkStatus::Up,
        phy_uplink: "eth7".into(),
        veth_intf: None,
    });
    assert!(!t.host.calls().contains(&HostCall::UplinkUp("eth7".into())));
}

#[test]
fn vm_event_before_uplink_fails_and_is_replayed_after_bulk() {
    let t = setup(None);
    t.mgr.vdp_vm_event(VmNotice::Single(vm(P1, PortStatus::Up)));
    t.mgr
        .vdp_vm_event(VmNotice::Single(vm(P2, PortStatus::Down)));
    t.drain();
    assert_eq!(
        t.link.take(),
        vec![
            result(
                P1,
                VmResult::CreateFail,
                None,
                None,
                Some(UPLINK_NOT_RECEIVED_REASON)
            ),
            result(
                P2,
                VmResult::DeleteFail,
                None,
                None,
                Some(UPLINK_NOT_RECEIVED_REASON)
            ),
        ]
    );
    assert!(t.host.calls().is_empty());
    assert_eq!(t.mgr.state_view().early_ports.len(), 2);
    t.bring_up_eth2();
    t.host.local_vlans.lock().insert(P1.into(), 5);
    // controller's bulk after save_uplink mentions only P2 (down)
    let mut d = vm(P2, PortStatus::Down);
    d.local_vlan = Some(5);
    d.vdp_vlan = Some(3003);
    t.mgr.vdp_vm_event(VmNotice::Bulk(vec![d]));
    t.drain();
    assert_eq!(
        t.host.take(),
        vec![
            HostCall::RestorePort {
                port: P2.into(),
                local_vlan: Some(5),
                vdp_vlan: Some(3003)
            },
            HostCall::PortDown(P2.into()),
            // The bulk is through before the early events are replayed.
            HostCall::BulkResyncDone,
            HostCall::PortLocalVlan {
                port: P1.into(),
                wait_s: 7
            },
            HostCall::PortUp {
                port: P1.into(),
                local_vlan: 5
            },
        ]
    );
    assert_eq!(
        t.link.take(),
        vec![
            result(P2, VmResult::Success, Some(5), Some(3003), None),
            result(P1, VmResult::Success, Some(5), Some(3003), None),
        ]
    );
    assert!(t.mgr.state_view().early_ports.is_empty());
}

#[test]
fn bulk_before_uplink_is_remembered_and_rearms_safety_net() {
    let t = setup(None);
    t.mgr
        .vdp_vm_event(VmNotice::Bulk(vec![vm(P1, PortStatus::Up)]));
    assert!(t.mgr.state_view().bulk_vm_rcvd_flag);
    t.drain();
    let v = t.mgr.state_view();
    assert!(!v.bulk_vm_rcvd_flag);
    assert_eq!(v.early_ports, vec![P1.to_string()]);
}

#[test]
fn vm_up_waits_for_local_vlan_and_reports_both_vlans() {
    let t = setup(None);
    t.bring_up_eth2();
    t.host.local_vlans.lock().insert(P1.into(), 12);
    t.mgr.vdp_vm_event(VmNotice::Single(vm(P1, PortStatus::Up)));
    t.drain();
    assert_eq!(
        t.host.take(),
        vec![
            HostCall::PortLocalVlan {
                port: P1.into(),
                wait_s: 7
            },
            HostCall::PortUp {
                port: P1.into(),
                local_vlan: 12
            }
        ]
    );
    assert_eq!(
        t.link.take(),
        vec![result(P1, VmResult::Success, Some(12), Some(3003), None)]
    );
}

#[test]
fn vm_up_without_local_vlan_is_create_fail() {
    let t = setup(None);
    t.bring_up_eth2();
    t.mgr.vdp_vm_event(VmNotice::Single(vm(P1, PortStatus::Up)));
    t.drain();
    assert_eq!(
        t.host.take(),
        vec![HostCall::PortLocalVlan {
            port: P1.into(),
            wait_s: 7
        }]
    );
    assert_eq!(
        t.link.take(),
        vec![result(
            P1,
            VmResult::CreateFail,
            None,
            None,
            Some(&format!("Invalid OVS VLAN for port tap-{}", &P1[..8]))
        )]
    );
}

#[test]
fn vm_up_association_failure_is_create_fail_with_reason() {
    let t = setup(None);
    t.bring_up_eth2();
    t.host.local_vlans.lock().insert(P1.into(), 12);
    *t.host.port_up.lock() = Some(PortOutcome {
        ok: false,
        local_vlan: Some(12),
        vdp_vlan: None,
        fail_reason: Some("VDP association rejected".into()),
        pending: false,
    });
    t.mgr.vdp_vm_event(VmNotice::Single(vm(P1, PortStatus::Up)));
    t.drain();
    assert_eq!(
        t.link.take(),
        vec![result(
            P1,
            VmResult::CreateFail,
            None,
            None,
            Some("VDP association rejected")
        )]
    );
}

#[test]
fn vm_up_pending_association_reports_nothing_until_the_verdict() {
    let t = setup(None);
    t.bring_up_eth2();
    t.host.local_vlans.lock().insert(P1.into(), 12);
    *t.host.port_up.lock() = Some(PortOutcome {
        ok: false,
        local_vlan: Some(12),
        vdp_vlan: None,
        fail_reason: None,
        pending: true,
    });
    t.mgr.vdp_vm_event(VmNotice::Single(vm(P1, PortStatus::Up)));
    t.drain();
    assert_eq!(
        t.link.take(),
        Vec::<LinkCall>::new(),
        "pending is not a failure"
    );
}

#[test]
fn vm_down_success_and_failure() {
    let t = setup(None);
    t.bring_up_eth2();
    t.mgr
        .vdp_vm_event(VmNotice::Single(vm(P1, PortStatus::Down)));
    t.drain();
    assert_eq!(t.host.take(), vec![HostCall::PortDown(P1.into())]);
    assert_eq!(
        t.link.take(),
        vec![result(P1, VmResult::Success, None, None, None)]
    );
    *t.host.port_down.lock() = Some(PortOutcome {
        ok: false,
        fail_reason: Some("Local VLAN Map not available in port_down".into()),
        ..PortOutcome::default()
    });
    t.mgr
        .vdp_vm_event(VmNotice::Single(vm(P2, PortStatus::Down)));
    t.drain();
    assert_eq!(
        t.link.take(),
        vec![result(
            P2,
            VmResult::DeleteFail,
            None,
            None,
            Some("Local VLAN Map not available in port_down")
        )]
    );
}

#[test]
fn vsi_change_is_applied_and_reported() {
    let t = setup(None);
    t.bring_up_eth2();
    t.mgr.enqueue_vsi_change(VsiChange {
        port_uuid: P1.into(),
        net_uuid: NET.into(),
        vm_mac: "fa:16:3e:00:00:01".into(),
        segmentation_id: 30001,
        local_vlan: Some(5),
        vdp_vlan: Some(3010),
        old_vdp_vlan: Some(3003),
        fail_reason: None,
    });
    t.drain();
    assert_eq!(
        t.host.take(),
        vec![HostCall::ApplyVsiChange {
            port: P1.into(),
            vdp_vlan: Some(3010)
        }]
    );
    assert_eq!(
        t.link.take(),
        vec![result(P1, VmResult::Success, Some(5), Some(3010), None)]
    );
}

#[test]
fn uplink_messages_overtake_vm_messages() {
    let t = setup(None);
    t.restart("", "");
    t.host.local_vlans.lock().insert(P1.into(), 5);
    // VM event queued first, uplink found afterwards: the uplink (prio 1)
    // is processed first, so the VM event succeeds.
    t.mgr.vdp_vm_event(VmNotice::Single(vm(P1, PortStatus::Up)));
    t.host.script(&[UplinkDetect::Up("eth2".into())]);
    t.mgr.vdp_uplink_proc();
    t.drain();
    let l = t.link.take();
    assert_eq!(
        l.last().unwrap(),
        &result(P1, VmResult::Success, Some(5), Some(3003), None)
    );
}

#[test]
fn panic_in_uplink_processing_resets_ongoing() {
    let t = setup(None);
    t.restart("", "");
    *t.host.panic_uplink_up.lock() = true;
    t.host.script(&[UplinkDetect::Up("eth2".into())]);
    t.mgr.vdp_uplink_proc();
    assert!(t.mgr.state_view().process_uplink_ongoing);
    let (_, m) = t.mgr.que().dequeue_nonblock().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.mgr.process_msg(m)));
    assert!(r.is_err());
    assert!(!t.mgr.state_view().process_uplink_ongoing);
    // the worker loop survives a panic and stops on close
    *t.host.panic_uplink_up.lock() = true;
    t.mgr.que().enqueue(
        1,
        VdpQueMsg::Uplink {
            status: vdp_agent::api::queue::UplinkStatus::Up,
            phy_uplink: "eth2".into(),
            veth_intf: None,
        },
    );
    let m2 = t.mgr.clone();
    let h = std::thread::spawn(move || {
        // The queue-worker task's loop: its runner contains a panic.
        while std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m2.process_one()))
            .unwrap_or(true)
        {}
    });
    while !t.mgr.que().is_empty() {
        std::thread::yield_now();
    }
    t.mgr.close_queues();
    h.join().unwrap();
}

#[test]
fn static_member_of_stored_bond_is_not_a_change() {
    let t = setup(Some("eth2"));
    t.host.bonds.lock().insert("eth2".into(), "bond0".into());
    t.restart("bond0", "LLDPLbond0");
    t.mgr.vdp_uplink_proc();
    t.drain();
    assert_eq!(t.host.take()[0], HostCall::UplinkUp("bond0".into()));
    assert_eq!(t.link.take(), vec![save("bond0", "LLDPLbond0", None, "")]);
}

// ----- live migration steps (`vm_migration`, docs/protocol.md) -----

fn step(phase: MigrationPhase, port: &str) -> VmNotice {
    VmNotice::Migration(phase, vm(port, phase.status()))
}

fn migrating(port: &str, phase: &'static str, local_vlan: Option<u16>) -> HostCall {
    HostCall::PortMigrating {
        port: port.into(),
        phase,
        local_vlan,
    }
}

#[test]
fn migration_steps_reach_the_host_as_such_and_are_reported() {
    let t = setup(None);
    t.bring_up_eth2();
    t.host.local_vlans.lock().insert(P1.into(), 5);
    for (phase, name) in [
        (MigrationPhase::Arriving, "arriving"),
        (MigrationPhase::Arrived, "arrived"),
    ] {
        t.mgr.vdp_vm_event(step(phase, P1));
        t.drain();
        assert_eq!(
            t.host.take(),
            vec![
                HostCall::PortLocalVlan {
                    port: P1.into(),
                    wait_s: 7
                },
                migrating(P1, name, Some(5)),
            ]
        );
        // Reported as any up: for `arriving` it tells the controller the
        // destination is ready (pre-associated, flows in place).
        assert_eq!(
            t.link.take(),
            vec![result(P1, VmResult::Success, Some(5), Some(3003), None)]
        );
    }
    for (phase, name) in [
        (MigrationPhase::Left, "left"),
        (MigrationPhase::Aborted, "aborted"),
    ] {
        t.mgr.vdp_vm_event(step(phase, P2));
        t.drain();
        assert_eq!(t.host.take(), vec![migrating(P2, name, None)]);
        assert_eq!(
            t.link.take(),
            vec![result(P2, VmResult::Success, None, None, None)]
        );
    }
}

#[test]
fn arriving_before_the_uplink_is_refused_and_not_replayed() {
    let t = setup(None);
    t.mgr.vdp_vm_event(step(MigrationPhase::Arriving, P1));
    t.mgr.vdp_vm_event(step(MigrationPhase::Arrived, P2));
    t.drain();
    assert_eq!(
        t.link.take(),
        vec![
            result(
                P1,
                VmResult::CreateFail,
                None,
                None,
                Some(UPLINK_NOT_RECEIVED_REASON)
            ),
            result(
                P2,
                VmResult::CreateFail,
                None,
                None,
                Some(UPLINK_NOT_RECEIVED_REASON)
            ),
        ]
    );
    // Replayed later as a plain up, an `arriving` would take the VSI from
    // the source before the switchover: only the arrival is remembered.
    assert_eq!(t.mgr.state_view().early_ports, vec![P2.to_string()]);
}

#[test]
fn a_queued_arriving_is_replaced_by_its_abort() {
    let t = setup(None);
    t.bring_up_eth2();
    t.mgr.vdp_vm_event(step(MigrationPhase::Arriving, P1));
    t.mgr.vdp_vm_event(step(MigrationPhase::Aborted, P1));
    t.drain();
    assert_eq!(t.host.take(), vec![migrating(P1, "aborted", None)]);
}

/// `n` port UUIDs of the lanes tests, each with local VLAN 7.
fn lane_ports(t: &T, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let p = format!("11111111-2222-3333-4444-{i:012}");
            t.host.local_vlans.lock().insert(p.clone(), 7);
            p
        })
        .collect()
}

/// Wait (bounded) until `f` holds.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn span_at(spans: &[String], s: &str) -> usize {
    spans
        .iter()
        .position(|x| x == s)
        .unwrap_or_else(|| panic!("no span {s:?} in {spans:?}"))
}

#[test]
fn vm_lanes_run_ports_side_by_side_keeping_order_per_port_and_other_messages_serial() {
    let t = setup_with(None, 4);
    t.bring_up_eth2();
    let ports = lane_ports(&t, 8);
    *t.host.work_delay.lock() = Duration::from_millis(100);
    let worker = {
        let m = t.mgr.clone();
        std::thread::spawn(move || while m.process_one() {})
    };
    for p in &ports {
        t.mgr.vdp_vm_event(VmNotice::Single(vm(p, PortStatus::Up)));
    }
    // Behind the ups: a VSI change (not a VM event: waits for the burst).
    t.mgr.enqueue_vsi_change(VsiChange {
        port_uuid: ports[1].clone(),
        net_uuid: NET.into(),
        vm_mac: "fa:16:3e:00:00:01".into(),
        segmentation_id: 30001,
        local_vlan: Some(7),
        vdp_vlan: Some(3004),
        old_vdp_vlan: Some(3003),
        fail_reason: None,
    });
    // The first port's down while its up is in flight.
    let first_up = format!("{} up begin", ports[0]);
    wait_for("first up in flight", || {
        t.host.spans.lock().contains(&first_up)
    });
    t.mgr
        .vdp_vm_event(VmNotice::Single(vm(&ports[0], PortStatus::Down)));
    wait_for("every result", || {
        ports.iter().all(|p| !t.link.results_for(p).is_empty())
            && t.link.results_for(&ports[0]).len() == 2
            && t.link.results_for(&ports[1]).len() == 2
    });
    t.mgr.close_queues();
    worker.join().unwrap();

    let spans = t.host.spans.lock().clone();
    assert_eq!(
        t.host.max_active.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "four ports at once, never more: {spans:?}"
    );
    // Order per port: the down starts after the up ended.
    assert!(
        span_at(&spans, &format!("{} up end", ports[0]))
            < span_at(&spans, &format!("{} down begin", ports[0]))
    );
    // The VSI change ran alone, after every up of the burst.
    let vsi = span_at(&spans, &format!("{} vsi", ports[1]));
    for p in &ports {
        assert!(span_at(&spans, &format!("{p} up end")) < vsi, "{spans:?}");
    }
    for p in &ports {
        assert_eq!(
            t.link.results_for(p)[0],
            result(p, VmResult::Success, Some(7), Some(3003), None)
        );
    }
    assert_eq!(
        t.link.results_for(&ports[0])[1],
        result(&ports[0], VmResult::Success, None, None, None)
    );
    assert_eq!(t.mgr.que().in_flight(), 0);
}

#[test]
fn vm_lanes_take_a_bulk_resyncs_ups_side_by_side_then_its_downs() {
    let t = setup_with(None, 4);
    t.bring_up_eth2();
    let ports = lane_ports(&t, 8);
    *t.host.work_delay.lock() = Duration::from_millis(50);
    let mut list: Vec<VmPort> = ports.iter().map(|p| vm(p, PortStatus::Up)).collect();
    list[3].status = PortStatus::Down;
    list[3].local_vlan = Some(7);
    list[3].vdp_vlan = Some(3003);
    t.mgr.vdp_vm_event(VmNotice::Bulk(list));
    t.drain();
    let spans = t.host.spans.lock().clone();
    assert_eq!(
        t.host.max_active.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "{spans:?}"
    );
    let down = span_at(&spans, &format!("{} down begin", ports[3]));
    // The host hears that the resync is done once every entry is through
    // (its lldpad driver then sends a new port's associate without a query).
    let calls = t.host.calls();
    let done = calls
        .iter()
        .position(|c| *c == HostCall::BulkResyncDone)
        .expect("bulk_resync_done called");
    assert!(
        calls[..done]
            .iter()
            .filter(|c| matches!(c, HostCall::PortUp { .. } | HostCall::PortDown(_)))
            .count()
            == 8,
        "{calls:?}"
    );
    for (i, p) in ports.iter().enumerate().filter(|(i, _)| *i != 3) {
        assert!(
            span_at(&spans, &format!("{p} up end")) < down,
            "port {i}: {spans:?}"
        );
        assert_eq!(
            t.link.results_for(p),
            vec![result(p, VmResult::Success, Some(7), Some(3003), None)]
        );
    }
}
