//! Recording fakes of `HostDriver` and `ControllerLink` shared by the
//! core tests (`mod core_fakes;`). Each call is recorded as a value
//! ([`HostCall`], [`LinkCall`]) with its arguments as they were passed.
#![allow(dead_code)]

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vdp_agent::api::manager::host::{
    HostDriver, NoLocalVlan, PortOutcome, TopoReport, UplinkDetect, VsiChange, VsiStatus,
};
use vdp_agent::api::manager::link::{ControllerEvent, ControllerLink, LinkError, LinkStatus};
use vdp_agent::api::model::{MigrationPhase, UplinkInfo, UplinkSetupError, VmPort, VmResult};
use vdp_agent::api::shutdown::Shutdown;

/// A `HostDriver` call the manager made, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCall {
    DetectUplink(Option<String>),
    UplinkUp(String),
    UplinkDown(String),
    DeleteUplinkAndFlows(String),
    PortLocalVlan {
        port: String,
        wait_s: u64,
    },
    PortUp {
        port: String,
        local_vlan: u16,
    },
    PortDown(String),
    /// A live migration step (`arriving`, `arrived`, `aborted`, `left`).
    PortMigrating {
        port: String,
        phase: &'static str,
        local_vlan: Option<u16>,
    },
    RestorePort {
        port: String,
        local_vlan: Option<u16>,
        vdp_vlan: Option<u16>,
    },
    ApplyVsiChange {
        port: String,
        vdp_vlan: Option<u16>,
    },
    /// A bulk resync's entries were all processed.
    BulkResyncDone,
    TopoCfgIntf {
        intf: String,
        phy: String,
    },
    TopoUncfgIntf(String),
    TopoStart,
    TopoSendFailed(String),
}

impl HostCall {
    /// The port a per-port call is about.
    pub fn port(&self) -> Option<&str> {
        match self {
            HostCall::PortLocalVlan { port, .. }
            | HostCall::PortUp { port, .. }
            | HostCall::PortDown(port)
            | HostCall::PortMigrating { port, .. }
            | HostCall::RestorePort { port, .. }
            | HostCall::ApplyVsiChange { port, .. } => Some(port),
            _ => None,
        }
    }
}

/// A `ControllerLink` call the manager made, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCall {
    RequestUplinkInfo,
    SaveUplink {
        uplink: String,
        veth: String,
        members: Option<String>,
        fail_reason: String,
    },
    UpdateVmResult {
        port: String,
        result: VmResult,
        local_vlan: Option<u16>,
        vdp_vlan: Option<u16>,
        fail_reason: Option<String>,
    },
    SaveTopoDiscParams(String),
}

/// `update_vm_result` as [`LinkCall`] (the tests' shorthand).
pub fn result(
    port: &str,
    result: VmResult,
    local_vlan: Option<u16>,
    vdp_vlan: Option<u16>,
    fail_reason: Option<&str>,
) -> LinkCall {
    LinkCall::UpdateVmResult {
        port: port.to_string(),
        result,
        local_vlan,
        vdp_vlan,
        fail_reason: fail_reason.map(String::from),
    }
}

/// `save_uplink` as [`LinkCall`] (the tests' shorthand).
pub fn save(uplink: &str, veth: &str, members: Option<&str>, fail_reason: &str) -> LinkCall {
    LinkCall::SaveUplink {
        uplink: uplink.to_string(),
        veth: veth.to_string(),
        members: members.map(String::from),
        fail_reason: fail_reason.to_string(),
    }
}

#[derive(Default)]
pub struct FakeHost {
    pub calls: Mutex<Vec<HostCall>>,
    pub bridges: Mutex<bool>,
    pub detect: Mutex<VecDeque<UplinkDetect>>,
    pub bonds: Mutex<HashMap<String, String>>,
    pub members: Mutex<HashMap<String, String>>,
    pub uplink_up_err: Mutex<Option<UplinkSetupError>>,
    pub local_vlans: Mutex<HashMap<String, u16>>,
    pub port_up: Mutex<Option<PortOutcome>>,
    pub port_down: Mutex<Option<PortOutcome>>,
    pub panic_uplink_up: Mutex<bool>,
    /// What every `topo_poll` round returns.
    pub topo_reports: Mutex<Vec<TopoReport>>,
    /// How long `port_up`/`port_down` take (VM lanes tests).
    pub work_delay: Mutex<Duration>,
    /// `"<port> up|down begin|end"` of every `port_up`/`port_down`, in order.
    pub spans: Mutex<Vec<String>>,
    active: AtomicUsize,
    /// Most `port_up`/`port_down` calls seen running at once.
    pub max_active: AtomicUsize,
}

impl FakeHost {
    /// What `port_up` answers unless a test set `port_up`.
    fn up_outcome(&self, local_vlan: u16) -> PortOutcome {
        self.port_up.lock().clone().unwrap_or(PortOutcome {
            ok: true,
            local_vlan: Some(local_vlan),
            vdp_vlan: Some(3003),
            fail_reason: None,
            pending: false,
        })
    }
    /// What `port_down` answers unless a test set `port_down`.
    fn down_outcome(&self, vm: &VmPort, vdp_vlan: Option<u16>) -> PortOutcome {
        self.port_down.lock().clone().unwrap_or(PortOutcome {
            ok: true,
            local_vlan: vm.local_vlan,
            vdp_vlan,
            fail_reason: None,
            pending: false,
        })
    }

    /// One `port_up`/`port_down` of `port` (`what`): recorded as a span,
    /// lasting `work_delay`, counted in `max_active`.
    fn work(&self, port: &str, what: &str) {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_active.fetch_max(now, Ordering::SeqCst);
        self.spans.lock().push(format!("{port} {what} begin"));
        let d = *self.work_delay.lock();
        if !d.is_zero() {
            std::thread::sleep(d);
        }
        self.spans.lock().push(format!("{port} {what} end"));
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn new() -> Arc<FakeHost> {
        let h = FakeHost::default();
        *h.bridges.lock() = true;
        Arc::new(h)
    }
    pub fn rec(&self, c: HostCall) {
        self.calls.lock().push(c);
    }
    pub fn calls(&self) -> Vec<HostCall> {
        self.calls.lock().clone()
    }
    pub fn take(&self) -> Vec<HostCall> {
        std::mem::take(&mut *self.calls.lock())
    }
    pub fn script(&self, d: &[UplinkDetect]) {
        self.detect.lock().extend(d.iter().cloned());
    }
}

impl HostDriver for FakeHost {
    fn bridges_present(&self) -> bool {
        *self.bridges.lock()
    }
    fn detect_uplink(&self, veth: Option<&str>) -> UplinkDetect {
        self.rec(HostCall::DetectUplink(veth.map(String::from)));
        self.detect.lock().pop_front().unwrap_or(if veth.is_some() {
            UplinkDetect::Normal
        } else {
            UplinkDetect::NotFound
        })
    }
    fn bond_of(&self, intf: &str) -> Option<String> {
        self.bonds.lock().get(intf).cloned()
    }
    fn bond_members(&self, intf: &str) -> Option<String> {
        self.members.lock().get(intf).cloned()
    }
    fn uplink_up(&self, uplink: &str) -> Result<String, UplinkSetupError> {
        self.rec(HostCall::UplinkUp(uplink.to_string()));
        if *self.panic_uplink_up.lock() {
            panic!("boom in uplink_up");
        }
        match self.uplink_up_err.lock().clone() {
            Some(e) => Err(e),
            None => Ok(format!("LLDPL{uplink}")),
        }
    }
    fn uplink_down(&self, uplink: &str) {
        self.rec(HostCall::UplinkDown(uplink.to_string()));
    }
    fn delete_uplink_and_flows(&self, uplink: &str) {
        self.rec(HostCall::DeleteUplinkAndFlows(uplink.to_string()));
    }
    fn port_local_vlan(
        &self,
        port_uuid: &str,
        wait: Duration,
        _s: &Shutdown,
    ) -> Result<u16, NoLocalVlan> {
        self.rec(HostCall::PortLocalVlan {
            port: port_uuid.to_string(),
            wait_s: wait.as_secs(),
        });
        self.local_vlans
            .lock()
            .get(port_uuid)
            .copied()
            .ok_or(NoLocalVlan::NoTag {
                port_name: format!("tap-{}", &port_uuid[..8]),
            })
    }
    fn port_up(&self, vm: &VmPort, local_vlan: u16) -> PortOutcome {
        self.rec(HostCall::PortUp {
            port: vm.port_uuid.clone(),
            local_vlan,
        });
        self.work(&vm.port_uuid, "up");
        self.up_outcome(local_vlan)
    }
    fn port_down(&self, vm: &VmPort) -> PortOutcome {
        self.rec(HostCall::PortDown(vm.port_uuid.clone()));
        self.work(&vm.port_uuid, "down");
        self.down_outcome(vm, vm.vdp_vlan)
    }
    fn port_up_migrating(
        &self,
        vm: &VmPort,
        local_vlan: u16,
        phase: MigrationPhase,
    ) -> PortOutcome {
        self.rec(HostCall::PortMigrating {
            port: vm.port_uuid.clone(),
            phase: phase.as_str(),
            local_vlan: Some(local_vlan),
        });
        self.up_outcome(local_vlan)
    }
    fn port_down_migrating(&self, vm: &VmPort, phase: MigrationPhase) -> PortOutcome {
        self.rec(HostCall::PortMigrating {
            port: vm.port_uuid.clone(),
            phase: phase.as_str(),
            local_vlan: None,
        });
        self.down_outcome(vm, None)
    }
    fn restore_port(&self, vm: &VmPort) {
        self.rec(HostCall::RestorePort {
            port: vm.port_uuid.clone(),
            local_vlan: vm.local_vlan,
            vdp_vlan: vm.vdp_vlan,
        });
    }
    fn bulk_resync_done(&self) {
        self.rec(HostCall::BulkResyncDone);
    }
    fn apply_vsi_change(&self, change: &VsiChange) -> PortOutcome {
        self.rec(HostCall::ApplyVsiChange {
            port: change.port_uuid.clone(),
            vdp_vlan: change.vdp_vlan,
        });
        self.spans.lock().push(format!("{} vsi", change.port_uuid));
        PortOutcome {
            ok: true,
            local_vlan: change.local_vlan,
            vdp_vlan: change.vdp_vlan,
            fail_reason: None,
            pending: false,
        }
    }
    fn refresh_vsis(&self) -> Vec<VsiChange> {
        vec![]
    }
    fn check_flows(&self) {}
    fn topo_cfg_intf(&self, intf: &str, phy: &str) {
        self.rec(HostCall::TopoCfgIntf {
            intf: intf.to_string(),
            phy: phy.to_string(),
        });
    }
    fn topo_uncfg_intf(&self, intf: &str) {
        self.rec(HostCall::TopoUncfgIntf(intf.to_string()));
    }
    fn topo_poll(&self) -> Vec<TopoReport> {
        self.topo_reports.lock().clone()
    }
    fn topo_start(&self) {
        self.rec(HostCall::TopoStart);
    }
    fn topo_send_failed(&self, intf: &str) {
        self.rec(HostCall::TopoSendFailed(intf.to_string()));
    }
    fn vsis(&self) -> Vec<VsiStatus> {
        vec![]
    }
}

#[derive(Default)]
pub struct FakeLink {
    pub calls: Mutex<Vec<LinkCall>>,
    /// Answers of `request_uplink_info`, in order; when empty: `Ok(None)`.
    pub uplink_info: Mutex<VecDeque<Result<Option<UplinkInfo>, LinkError>>>,
    /// Every event the "controller" holds; `poll_events(after)` returns
    /// those with `seq > after` (or waits a little when there are none).
    pub events: Mutex<Vec<ControllerEvent>>,
    /// Every `after` value polled with.
    pub polled: Mutex<Vec<u64>>,
    /// `save_topo_disc_params` answers `false` (the controller refuses).
    pub topo_refuse: Mutex<bool>,
}

impl FakeLink {
    pub fn take(&self) -> Vec<LinkCall> {
        std::mem::take(&mut *self.calls.lock())
    }
    pub fn calls(&self) -> Vec<LinkCall> {
        self.calls.lock().clone()
    }
    /// The `update_vm_result` calls for `port`, oldest first.
    pub fn results_for(&self, port: &str) -> Vec<LinkCall> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, LinkCall::UpdateVmResult { port: p, .. } if p == port))
            .collect()
    }
}

impl ControllerLink for FakeLink {
    fn heartbeat(&self) -> Result<(), LinkError> {
        Ok(())
    }
    fn request_uplink_info(&self) -> Result<Option<UplinkInfo>, LinkError> {
        self.calls.lock().push(LinkCall::RequestUplinkInfo);
        self.uplink_info.lock().pop_front().unwrap_or(Ok(None))
    }
    fn save_uplink(
        &self,
        uplink: &str,
        veth_intf: &str,
        memb_port_list: Option<String>,
        fail_reason: &str,
    ) -> Result<bool, LinkError> {
        self.calls.lock().push(save(
            uplink,
            veth_intf,
            memb_port_list.as_deref(),
            fail_reason,
        ));
        Ok(true)
    }
    fn update_vm_result(
        &self,
        port_uuid: &str,
        result: VmResult,
        local_vlan: Option<u16>,
        vdp_vlan: Option<u16>,
        fail_reason: Option<&str>,
    ) -> Result<(), LinkError> {
        self.calls.lock().push(crate::core_fakes::result(
            port_uuid,
            result,
            local_vlan,
            vdp_vlan,
            fail_reason,
        ));
        Ok(())
    }
    fn save_topo_disc_params(&self, r: &TopoReport) -> Result<bool, LinkError> {
        self.calls
            .lock()
            .push(LinkCall::SaveTopoDiscParams(r.protocol_interface.clone()));
        Ok(!*self.topo_refuse.lock())
    }
    fn poll_events(&self, after: u64) -> Result<Vec<ControllerEvent>, LinkError> {
        self.polled.lock().push(after);
        let evs: Vec<ControllerEvent> = self
            .events
            .lock()
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect();
        if evs.is_empty() {
            // a short "long poll"
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(evs)
    }
    fn retry_pending(&self) -> usize {
        0
    }
    fn status(&self) -> LinkStatus {
        LinkStatus::default()
    }
}
