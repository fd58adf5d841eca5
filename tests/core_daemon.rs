//! The daemon in-process with recording fakes: controller events are
//! validated before anything reaches the queue (bad fields reported as
//! CREATE:FAIL/DELETE:FAIL naming the field), `after` advances, the stored
//! uplink is requested until answered, threads are registered, and stop is
//! prompt.

mod core_fakes;

use core_fakes::{FakeHost, FakeLink, HostCall, LinkCall};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::api::config::Config;
use vdp_agent::api::daemon::{Daemon, RunOptions};
use vdp_agent::api::manager::link::{ControllerEvent, LinkError};
use vdp_agent::api::model::{TopoReport, UplinkInfo, VmResult};
use vdp_agent::api::task::ThreadName;

const P1: &str = "11111111-2222-3333-4444-000000000001";
const P2: &str = "11111111-2222-3333-4444-000000000002";
const P3: &str = "11111111-2222-3333-4444-000000000003";
const P4: &str = "11111111-2222-3333-4444-000000000004";
const P5: &str = "11111111-2222-3333-4444-000000000005";
const NET: &str = "aaaaaaaa-2222-3333-4444-555555555555";

fn vm(port: &str, status: &str) -> serde_json::Value {
    json!({"status": status, "vm_mac": "fa:16:3e:00:00:01", "segmentation_id": 30001,
           "host": "co-host", "port_uuid": port, "net_uuid": NET, "oui": null})
}

fn ev(seq: u64, kind: &str, payload: serde_json::Value) -> ControllerEvent {
    ControllerEvent {
        seq,
        kind: kind.into(),
        payload,
    }
}

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh state directory and fakes whose bridges are missing, so the
/// uplink task stays idle: what every daemon test here starts from.
fn idle_parts(tag: &str) -> (Dir, Arc<FakeHost>, Arc<FakeLink>) {
    let dir = Dir(std::env::temp_dir().join(format!("{tag}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let host = FakeHost::new();
    *host.bridges.lock() = false;
    (dir, host, Arc::new(FakeLink::default()))
}

fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config {
        host_id: Some("co-host".into()),
        root_helper: String::new(),
        ..Config::default()
    };
    cfg.paths.run_dir = dir.join("run");
    cfg.paths.state_dir = dir.join("state");
    cfg
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn events_are_validated_dispatched_and_acknowledged() {
    let (dir, host, link) = idle_parts("co-daemon");
    link.uplink_info.lock().push_back(Err(LinkError::transport(
        "request_uplink_info",
        "controller down",
    )));
    link.uplink_info.lock().push_back(Ok(Some(UplinkInfo {
        uplink: "eth2".into(),
        veth_intf: "LLDPLeth2".into(),
    })));
    let mut bad_mac = vm(P1, "up");
    bad_mac["vm_mac"] = json!("fa:16:3e:00:00:01,mode=deassoc");
    let mut bad_status = vm(P3, "up");
    bad_status["status"] = json!("sideways");
    let mut bad_seg = vm(P5, "down");
    bad_seg["segmentation_id"] = json!("30001");
    *link.events.lock() = vec![
        ev(1, "vm_info", bad_mac.clone()),
        ev(1, "vm_info", bad_mac), // duplicate delivery: harmless
        ev(
            2,
            "vm_info",
            json!([vm(P2, "down"), bad_status, vm("not-a-uuid", "up")]),
        ),
        ev(
            3,
            "ip_rule",
            json!({"ip": "10.0.0.5", "mac": "x", "port": P1, "status": "up"}),
        ),
        ev(4, "reboot_everything", json!({})),
        ev(5, "vm_info", json!("[{'status': 'up'}]")),
        ev(6, "vm_info", vm(P4, "up")),
        ev(7, "vm_info", bad_seg),
    ];

    let d = Daemon::start(
        config(&dir.0),
        host.clone(),
        link.clone(),
        RunOptions::default(),
    )
    .unwrap();
    let mgr = d.manager().clone();

    wait_until("all events acknowledged", || {
        link.polled.lock().last() == Some(&7)
    });
    wait_until("VM event processed", || !link.results_for(P4).is_empty());
    let calls: Vec<LinkCall> = link
        .calls()
        .into_iter()
        .filter(|c| matches!(c, LinkCall::UpdateVmResult { .. }))
        .collect();
    let for_port = |p: &str| link.results_for(p);
    // A failure report: `result`, with a reason that mentions `why`.
    let failed = |c: &LinkCall, want: VmResult, why: &str| {
        matches!(c, LinkCall::UpdateVmResult { result, fail_reason: Some(r), .. }
            if *result == want && r.contains(why))
    };
    let p1 = for_port(P1);
    assert_eq!(p1.len(), 2, "{calls:?}");
    assert!(
        failed(&p1[0], VmResult::CreateFail, "invalid vm_mac"),
        "{p1:?}"
    );
    let p3 = for_port(P3);
    assert_eq!(p3.len(), 1);
    assert!(
        failed(&p3[0], VmResult::CreateFail, "invalid status"),
        "{p3:?}"
    );
    let p5 = for_port(P5);
    assert_eq!(p5.len(), 1);
    assert!(
        failed(&p5[0], VmResult::DeleteFail, "invalid segmentation_id"),
        "{p5:?}"
    );
    // valid single VM before the uplink is ready
    let p4 = for_port(P4);
    assert_eq!(p4.len(), 1);
    assert!(failed(
        &p4[0],
        VmResult::CreateFail,
        "Uplink Port Event not received yet"
    ));
    // valid bulk entry: remembered, not reported; nothing reached the host
    assert!(for_port(P2).is_empty());
    assert!(
        host.calls().iter().all(|c| c.port().is_none()),
        "{:?}",
        host.calls()
    );
    assert!(mgr.state_view().early_ports.contains(&P2.to_string()));
    // only 5 reports in all: no report for the invalid port_uuid or payload
    assert_eq!(calls.len(), 5, "{calls:?}");

    // request_uplink_info retried until answered, then restart applied
    wait_until("stored uplink", || mgr.is_uplink_received());
    assert_eq!(mgr.state_view().phy_uplink.as_deref(), Some("eth2"));
    let requests = link
        .calls()
        .iter()
        .filter(|c| **c == LinkCall::RequestUplinkInfo)
        .count();
    assert_eq!(requests, 2);

    let threads = d.threads();
    for t in [
        ThreadName::QueueWorker,
        ThreadName::UplinkDetect,
        ThreadName::ErrQueue,
        ThreadName::Heartbeat,
        ThreadName::EventPoller,
        ThreadName::LldpadClient,
        ThreadName::FlowCheck,
        ThreadName::TopoDisc,
        ThreadName::ResultRetry,
        ThreadName::StatusServer,
    ] {
        assert_eq!(
            threads.get(t.as_str()).map(String::as_str),
            Some("alive"),
            "{t}: {threads:?}"
        );
    }
    assert!(
        !threads.contains_key(ThreadName::Signal.as_str()),
        "no signal thread in-process"
    );

    let t = Instant::now();
    d.stop();
    d.wait().unwrap();
    assert!(t.elapsed() < Duration::from_secs(4));
    // nothing torn down on shutdown
    assert!(host
        .calls()
        .iter()
        .all(|c| !matches!(c, HostCall::UplinkDown(_) | HostCall::PortDown(_))));
    assert!(!dir.0.join("run/vdp-agent.sock").exists());
}

/// Topology: watched from start-up (before any uplink work), and a report
/// the controller answers `false` is handed back for the next round.
#[test]
fn topology_starts_first_and_refused_reports_are_sent_again() {
    let (dir, host, link) = idle_parts("co-daemon-topo");
    host.topo_reports.lock().push(TopoReport {
        protocol_interface: "eth9".into(),
        phy_interface: "eth9".into(),
        ..TopoReport::default()
    });
    *link.topo_refuse.lock() = true;
    let mut cfg = config(&dir.0);
    cfg.intervals.topo_disc_s = 1;
    let d = Daemon::start(cfg, host.clone(), link.clone(), RunOptions::default()).unwrap();
    assert_eq!(host.calls().first(), Some(&HostCall::TopoStart));
    wait_until("refused report handed back", || {
        host.calls()
            .contains(&HostCall::TopoSendFailed("eth9".into()))
    });
    assert!(link
        .calls()
        .contains(&LinkCall::SaveTopoDiscParams("eth9".into())));
    d.stop();
}

/// `vm_migration` events (docs/protocol.md) reach the manager as migration
/// steps; here before the uplink is ready, so they are answered as a VM
/// event of the implied status is (CREATE:FAIL / DELETE:FAIL), and a bad
/// phase is rejected naming the field.
#[test]
fn migration_events_are_answered_as_vm_up_and_down() {
    let (dir, host, link) = idle_parts("co-daemon-mig");
    let phase = |port: &str, phase: &str| {
        let mut v = vm(port, "up");
        v.as_object_mut().unwrap().remove("status");
        v["phase"] = json!(phase);
        v
    };
    link.events.lock().extend([
        ev(1, "vm_migration", phase(P1, "arriving")),
        ev(2, "vm_migration", phase(P2, "arrived")),
        ev(3, "vm_migration", phase(P3, "left")),
        ev(4, "vm_migration", phase(P4, "teleported")),
    ]);
    let d = Daemon::start(
        config(&dir.0),
        host.clone(),
        link.clone(),
        RunOptions::default(),
    )
    .unwrap();
    wait_until("all events acknowledged", || {
        link.polled.lock().last() == Some(&4)
    });
    wait_until("migrations answered", || {
        [P1, P2, P3, P4]
            .iter()
            .all(|p| !link.results_for(p).is_empty())
    });
    let result_of = |p: &str| match link.results_for(p).first() {
        Some(LinkCall::UpdateVmResult {
            result,
            fail_reason,
            ..
        }) => (*result, fail_reason.clone().unwrap_or_default()),
        other => panic!("{p}: {other:?}"),
    };
    let (r, why) = result_of(P1);
    assert_eq!(r, VmResult::CreateFail);
    assert!(why.contains("Uplink Port Event not received yet"), "{why}");
    let (r, why) = result_of(P2);
    assert_eq!(r, VmResult::CreateFail);
    assert!(why.contains("Uplink Port Event not received yet"), "{why}");
    let (r, why) = result_of(P3);
    assert_eq!(r, VmResult::DeleteFail);
    assert!(why.contains("Uplink Port Event not received yet"), "{why}");
    let (r, why) = result_of(P4);
    assert_eq!(r, VmResult::CreateFail);
    assert!(why.contains("phase"), "{why}");
    assert!(host.calls().iter().all(|c| c.port().is_none()));
    d.stop();
}
