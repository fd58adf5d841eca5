//! `VdpMgr`: the manager state machine of the original
//! `dfa_vdp_mgr.VdpMgr` — uplink detection stages (up / normal / down /
//! none), down debounce, bond transition, restart recovery, VM events, bulk
//! resync and its safety net, the error queue, and VSI changes found by
//! refresh.
//!
//! Owns: the manager state (`MgrState`), the main queue and the error queue.
//! Calls: the host only through [`host::HostDriver`], the controller only
//! through [`link::ControllerLink`]. Threads are not started here: [`VdpMgr::start`]
//! describes the manager's three tasks and `daemon` runs them.
//!
//! Locking: one mutex (`state`) guards `MgrState`. It is a leaf lock: it is
//! never held while calling a `HostDriver` or `ControllerLink` method, and
//! never while touching a queue (each queue has its own leaf lock). So the
//! only lock order is "at most one of {state, main queue, error queue} at a
//! time". Decisions are taken under the lock, the resulting host/link calls
//! and enqueues are made after it is released.
//!
//! Differences from the original (deliberate):
//! - No fixed sleeps: a VM "up" waits for its local VLAN with
//!   `HostDriver::port_local_vlan` (up to `intervals.vm_port_wait_s`,
//!   returning as soon as the tag is there); none -> `CREATE:FAIL` with
//!   "Invalid OVS VLAN for port <uuid>".
//! - Readiness of the uplink is checked against the current state when a VM
//!   message is processed, not against the uplink captured when it was
//!   queued (the original failed a VM queued just before the uplink came up).
//! - A VM event processed before the uplink is ready is still answered
//!   `CREATE:FAIL`/`DELETE:FAIL` "Uplink Port Event not received yet", and its
//!   latest state is remembered per port; when the next bulk resync is
//!   processed with the uplink ready, remembered ports the bulk did not
//!   mention are replayed after it. A bulk processed before the uplink is
//!   ready is remembered the same way and re-arms the bulk safety net.
//! - An uplink "up" message whose uplink is no longer the current one (a
//!   stale error-queue retry) is dropped.
//! - A "down" message carries the veth it had, so topology discovery is
//!   unconfigured on the right interface.
//! - Static uplink: a stored bond that has the configured port as a member
//!   is not "changed across restart" (no needless down/up cycle).
//! - Nothing is torn down on shutdown (no `uplink_down`/`port_down`).

pub mod host;
pub mod link;

use crate::config::Config;
use crate::model::{PortStatus, UplinkInfo, VmPort, VmResult};
use crate::queue::{
    UplinkStatus, VdpMsgPriQue, VdpQueMsg, Q_UPL_PRIO, Q_VM_PRIO, Q_VSI_PRIO, Q_VSI_REREPORT_PRIO,
};
use crate::shutdown::Shutdown;
use host::{HostDriver, PortOutcome, TopoReport, UplinkDetect, VsiChange};
use link::ControllerLink;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Consecutive "down" periods before an auto-detected uplink is declared
/// down (`constants.UPLINK_DOWN_THRES`). A static uplink goes down at once.
pub const UPLINK_DOWN_THRES: u32 = 3;
/// `constants.uplink_undiscovered_reason`.
pub const UPLINK_UNDISCOVERED_REASON: &str = "Uplink not yet discovered";
/// `constants.port_transition_bond_down_reason`.
pub const PORT_TRANSITION_BOND_DOWN_REASON: &str =
    "Physical port became port of bond interface, intermittent down";
/// `constants.port_transition_bond_up_reason`.
pub const PORT_TRANSITION_BOND_UP_REASON: &str =
    "Physical port became port of bond interface, intermittent up";
/// The original's log line for a VM event before the uplink, now also sent
/// as `fail_reason`.
pub const UPLINK_NOT_RECEIVED_REASON: &str = "Uplink Port Event not received yet";

/// `fail_reason` when the VM port never got a local VLAN (ovs_vdp.py
/// `port_up_segment_mode`).
pub fn invalid_ovs_vlan_reason(port_uuid: &str) -> String {
    format!("Invalid OVS VLAN for port {port_uuid}")
}

/// What the manager needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MgrConfig {
    pub br_int: String,
    pub br_ex: String,
    /// `read_static_uplink`: `uplink.static`.
    pub static_uplink: Option<String>,
    /// `intervals.vm_port_wait_s`.
    pub vm_port_wait: Duration,
    /// `intervals.uplink_detect_s`.
    pub uplink_detect: Duration,
    /// `intervals.err_queue_s`.
    pub err_queue: Duration,
}

impl MgrConfig {
    pub fn from_config(cfg: &Config) -> MgrConfig {
        MgrConfig {
            br_int: cfg.bridges.integration.clone(),
            br_ex: cfg.bridges.external.clone(),
            static_uplink: read_static_uplink(cfg),
            vm_port_wait: Duration::from_secs(cfg.intervals.vm_port_wait_s),
            uplink_detect: Duration::from_secs(cfg.intervals.uplink_detect_s),
            err_queue: Duration::from_secs(cfg.intervals.err_queue_s),
        }
    }
}

/// `read_static_uplink`: the original read `node`/`node_uplink` lists from
/// its ini file; here it is the single `uplink.static` key.
pub fn read_static_uplink(cfg: &Config) -> Option<String> {
    cfg.uplink.static_uplink.clone().filter(|s| !s.is_empty())
}

/// Uplink part of the status document (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UplinkSnapshot {
    pub phy: Option<String>,
    pub veth: Option<String>,
    pub detected: bool,
    pub fail_reason: String,
}

/// Read-only view of the state machine, for tests and debugging.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MgrStateView {
    pub phy_uplink: Option<String>,
    pub veth_intf: Option<String>,
    pub restart_uplink_called: bool,
    pub uplink_det_compl: bool,
    pub process_uplink_ongoing: bool,
    pub uplink_down_cnt: u32,
    pub is_os_run: bool,
    pub bulk_vm_rcvd_flag: bool,
    pub bulk_vm_check_cnt: u32,
    /// Ports remembered from VM events that came before the uplink.
    pub early_ports: Vec<String>,
}

/// A `vm_info` event after validation (`vdp_vm_event`'s dict or list).
#[derive(Debug, Clone, PartialEq, Eq)]
// One short-lived value per controller event: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum VmNotice {
    Single(VmPort),
    Bulk(Vec<VmPort>),
}

#[derive(Debug)]
struct MgrState {
    phy_uplink: Option<String>,
    veth_intf: Option<String>,
    restart_uplink_called: bool,
    restart_in_progress: bool,
    uplink_det_compl: bool,
    process_uplink_ongoing: bool,
    uplink_down_cnt: u32,
    is_os_run: bool,
    static_uplink_first: bool,
    bulk_vm_rcvd_flag: bool,
    bulk_vm_check_cnt: u32,
    /// The original's `ovs_vdp_obj_dict`: uplinks set up on the host, with
    /// their lldpad-side veth.
    set_up: HashMap<String, String>,
    /// Last `fail_reason` sent with `save_uplink` (status).
    fail_reason: String,
    early_ports: BTreeMap<String, VmPort>,
}

impl MgrState {
    fn uplink_ready(&self) -> bool {
        self.uplink_det_compl
            && self
                .phy_uplink
                .as_ref()
                .is_some_and(|p| self.set_up.contains_key(p))
    }
}

/// What a task step asks its runner to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run the step again after this long (shutdown-aware wait).
    Wait(Duration),
    /// Run the step again at once (unless shutting down).
    Again,
    /// The task is finished.
    Stop,
}

/// One named unit of work run by a daemon thread: the runner calls `step`
/// in a loop (catching panics) and obeys the returned [`Step`].
pub struct Task {
    pub name: &'static str,
    pub step: Box<dyn FnMut() -> Step + Send>,
}

/// Resets `process_uplink_ongoing` when dropped (also on unwind), as the
/// original did after `process_uplink_event` whatever happened.
struct OngoingReset<'a>(&'a Mutex<MgrState>);

impl Drop for OngoingReset<'_> {
    fn drop(&mut self) {
        self.0.lock().process_uplink_ongoing = false;
    }
}

/// The manager (`VdpMgr`).
pub struct VdpMgr {
    cfg: MgrConfig,
    host: Arc<dyn HostDriver>,
    link: Arc<dyn ControllerLink>,
    que: VdpMsgPriQue,
    err_que: VdpMsgPriQue,
    state: Mutex<MgrState>,
    shutdown: Shutdown,
}

impl VdpMgr {
    /// `VdpMgr.__init__` (without starting threads: see [`VdpMgr::start`]).
    pub fn new(
        cfg: MgrConfig,
        host: Arc<dyn HostDriver>,
        link: Arc<dyn ControllerLink>,
        shutdown: Shutdown,
    ) -> Arc<VdpMgr> {
        Arc::new(VdpMgr {
            cfg,
            host,
            link,
            que: VdpMsgPriQue::new(),
            err_que: VdpMsgPriQue::new(),
            state: Mutex::new(MgrState {
                phy_uplink: None,
                veth_intf: None,
                restart_uplink_called: false,
                restart_in_progress: false,
                uplink_det_compl: false,
                process_uplink_ongoing: false,
                uplink_down_cnt: 0,
                is_os_run: false,
                static_uplink_first: true,
                bulk_vm_rcvd_flag: false,
                bulk_vm_check_cnt: 0,
                set_up: HashMap::new(),
                fail_reason: String::new(),
                early_ports: BTreeMap::new(),
            }),
            shutdown,
        })
    }

    pub fn config(&self) -> &MgrConfig {
        &self.cfg
    }

    /// The main queue (`self.que`).
    pub fn que(&self) -> &VdpMsgPriQue {
        &self.que
    }

    /// The error queue (`self.err_que`).
    pub fn err_que(&self) -> &VdpMsgPriQue {
        &self.err_que
    }

    /// Close both queues: the worker's `dequeue` returns at once.
    pub fn close_queues(&self) {
        self.que.close();
        self.err_que.close();
    }

    /// `(main, err)` queue lengths for status.
    pub fn queue_lens(&self) -> (usize, usize) {
        (self.que.len(), self.err_que.len())
    }

    /// Uplink section of the status document.
    pub fn uplink_snapshot(&self) -> UplinkSnapshot {
        let st = self.state.lock();
        UplinkSnapshot {
            phy: st.phy_uplink.clone(),
            veth: st.veth_intf.clone(),
            detected: st.uplink_det_compl,
            fail_reason: st.fail_reason.clone(),
        }
    }

    pub fn state_view(&self) -> MgrStateView {
        let st = self.state.lock();
        MgrStateView {
            phy_uplink: st.phy_uplink.clone(),
            veth_intf: st.veth_intf.clone(),
            restart_uplink_called: st.restart_uplink_called,
            uplink_det_compl: st.uplink_det_compl,
            process_uplink_ongoing: st.process_uplink_ongoing,
            uplink_down_cnt: st.uplink_down_cnt,
            is_os_run: st.is_os_run,
            bulk_vm_rcvd_flag: st.bulk_vm_rcvd_flag,
            bulk_vm_check_cnt: st.bulk_vm_check_cnt,
            early_ports: st.early_ports.keys().cloned().collect(),
        }
    }

    /// `start`: the original spawned the queue thread and two periodic
    /// tasks. Here it returns them as [`Task`]s for the daemon to run on
    /// named threads: `queue-worker` (`process_queue`), `err-queue`
    /// (`process_err_queue` every `err_queue_s`) and `uplink-detect`
    /// (`vdp_uplink_proc_top` every `uplink_detect_s`).
    pub fn start(self: &Arc<Self>) -> Vec<Task> {
        let worker = self.clone();
        let errq = self.clone();
        let upl = self.clone();
        vec![
            Task {
                name: "queue-worker",
                step: Box::new(move || {
                    if worker.process_one() {
                        Step::Again
                    } else {
                        Step::Stop
                    }
                }),
            },
            Task {
                name: "err-queue",
                step: Box::new(move || {
                    errq.process_err_queue();
                    Step::Wait(errq.cfg.err_queue)
                }),
            },
            Task {
                name: "uplink-detect",
                step: Box::new(move || {
                    // Until the stored uplink has been obtained there is
                    // nothing to do (as the original); look again every
                    // second so detection starts right after it, not a
                    // whole period later.
                    if !upl.is_uplink_received() {
                        return Step::Wait(upl.cfg.uplink_detect.min(Duration::from_secs(1)));
                    }
                    upl.vdp_uplink_proc_top();
                    Step::Wait(upl.cfg.uplink_detect)
                }),
            },
        ]
    }

    // ----- controller side -------------------------------------------------

    /// `update_vm_result`: report a VM port result. VLANs are passed as
    /// known; the link sends both or the `-1` convention (docs/protocol.md).
    /// Delivery failures are kept and retried by the link.
    pub fn update_vm_result(
        &self,
        port_uuid: &str,
        result: VmResult,
        local_vlan: Option<u16>,
        vdp_vlan: Option<u16>,
        fail_reason: Option<&str>,
    ) {
        log::info!(
            "update_vm_result port {port_uuid} {result} local_vlan {local_vlan:?} vdp_vlan {vdp_vlan:?} reason {fail_reason:?}"
        );
        if let Err(e) =
            self.link
                .update_vm_result(port_uuid, result, local_vlan, vdp_vlan, fail_reason)
        {
            log::warn!("update_vm_result for {port_uuid} deferred: {e}");
        }
    }

    /// `save_uplink(uplink, veth_intf, fail_reason)`: `memb_port_list` is
    /// the bond's member list when `uplink` is a bond.
    pub fn save_uplink(&self, uplink: &str, veth_intf: &str, fail_reason: &str) -> bool {
        let members = if uplink.is_empty() {
            None
        } else {
            self.host.bond_members(uplink)
        };
        self.state.lock().fail_reason = fail_reason.to_string();
        log::info!("save_uplink uplink {uplink:?} veth {veth_intf:?} reason {fail_reason:?}");
        match self
            .link
            .save_uplink(uplink, veth_intf, members, fail_reason)
        {
            Ok(b) => b,
            Err(e) => {
                log::warn!("save_uplink deferred: {e}");
                false
            }
        }
    }

    /// `save_topo_disc_params`: send one topology report.
    pub fn save_topo_disc_params(&self, report: &TopoReport) -> bool {
        match self.link.save_topo_disc_params(report) {
            Ok(b) => b,
            Err(e) => {
                log::warn!(
                    "save_topo_disc_params for {} failed (next round resends): {e}",
                    report.protocol_interface
                );
                false
            }
        }
    }

    /// `topo_disc_cb`: the topology discovery callback.
    pub fn topo_disc_cb(&self, report: &TopoReport) -> bool {
        self.save_topo_disc_params(report)
    }

    /// `vdp_vlan_change_cb`: a VSI's VDP VLAN changed; tell the controller.
    pub fn vdp_vlan_change_cb(
        &self,
        port_uuid: &str,
        local_vlan: Option<u16>,
        vdp_vlan: Option<u16>,
        fail_reason: Option<&str>,
    ) {
        log::info!("VLAN change for {port_uuid}: local {local_vlan:?} VDP {vdp_vlan:?}");
        self.update_vm_result(
            port_uuid,
            VmResult::Success,
            local_vlan,
            vdp_vlan,
            fail_reason,
        );
    }

    // ----- producers --------------------------------------------------------

    /// `vdp_vm_event`: queue a (validated) VM event or bulk list. A bulk
    /// list marks the bulk resync as received (`bulk_vm_rcvd_flag`).
    pub fn vdp_vm_event(&self, notice: VmNotice) {
        let msg = {
            let mut st = self.state.lock();
            let phy_uplink = st.phy_uplink.clone();
            match notice {
                VmNotice::Bulk(vms) => {
                    st.bulk_vm_rcvd_flag = true;
                    VdpQueMsg::VmBulk { vms, phy_uplink }
                }
                VmNotice::Single(vm) => VdpQueMsg::Vm { vm, phy_uplink },
            }
        };
        if let VdpQueMsg::Vm { vm, .. } = &msg {
            log::info!(
                "VM event queued: status {} mac {} port {} net {}",
                vm.status,
                vm.vm_mac,
                vm.port_uuid,
                vm.net_uuid
            );
        }
        self.que.enqueue(Q_VM_PRIO, msg);
    }

    /// Queue a VSI change found by the lldpad client (refresh / events).
    pub fn enqueue_vsi_change(&self, change: VsiChange) {
        let prio = if change.vdp_vlan == change.old_vdp_vlan {
            Q_VSI_REREPORT_PRIO
        } else {
            Q_VSI_PRIO
        };
        self.que.enqueue(prio, VdpQueMsg::VsiChanged(change));
    }

    /// `is_uplink_received`: the stored uplink was obtained after start.
    pub fn is_uplink_received(&self) -> bool {
        self.state.lock().restart_uplink_called
    }

    /// `dfa_uplink_restart` / `_dfa_uplink_restart`: take the uplink stored
    /// at the controller after a (re)start. Runs once; later calls are
    /// ignored (the original's mutex + `restart_uplink_called`).
    /// - no stored uplink: nothing to restore;
    /// - uplink and veth stored: adopt both, the periodic task then finds
    ///   "normal" and re-creates the host setup without disturbing flows;
    /// - uplink without veth (error case): remove the uplink port and its
    ///   flows from the external bridge and start fresh.
    pub fn dfa_uplink_restart(&self, info: &UplinkInfo) {
        {
            let mut st = self.state.lock();
            if st.restart_uplink_called || st.restart_in_progress {
                return;
            }
            log::info!("Obtained uplink after restart {info:?}");
            if let Some(p) = &st.phy_uplink {
                log::error!("Uplink detection already done {p}");
                return;
            }
            if info.uplink.is_empty() {
                log::info!("uplink not discovered yet");
                st.restart_uplink_called = true;
                return;
            }
            if !info.veth_intf.is_empty() {
                log::info!(
                    "veth interface is already added, {} {}",
                    info.uplink,
                    info.veth_intf
                );
                st.phy_uplink = Some(info.uplink.clone());
                st.veth_intf = Some(info.veth_intf.clone());
                st.restart_uplink_called = true;
                return;
            }
            st.restart_in_progress = true;
        }
        log::info!("Error case removing the uplink {} from bridge", info.uplink);
        self.host.delete_uplink_and_flows(&info.uplink);
        let mut st = self.state.lock();
        st.restart_in_progress = false;
        st.restart_uplink_called = true;
    }

    // ----- uplink periodic task ----------------------------------------------

    /// `is_openstack_running`: both bridges exist.
    pub fn is_openstack_running(&self) -> bool {
        self.host.bridges_present()
    }

    /// `vdp_uplink_proc_top`: one periodic round, panics contained.
    pub fn vdp_uplink_proc_top(&self) {
        if let Err(p) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.vdp_uplink_proc()))
        {
            log::error!("VDP uplink proc panicked: {}", panic_message(&*p));
        }
    }

    fn uplink_msg(&self, status: UplinkStatus, phy: String, veth: Option<String>) -> VdpQueMsg {
        VdpQueMsg::Uplink {
            status,
            phy_uplink: phy,
            veth_intf: veth,
            br_int: self.cfg.br_int.clone(),
            br_ex: self.cfg.br_ex.clone(),
        }
    }

    /// `vdp_uplink_proc`: one round of uplink detection.
    /// Gates: OpenStack bridges present (checked until first seen), stored
    /// uplink obtained (`restart_uplink_called`), no uplink message in
    /// flight (`process_uplink_ongoing`). Then the detection result drives
    /// the stage: down (debounced in auto mode), none (report "not yet
    /// discovered"), normal (bond check, re-create setup after restart, bulk
    /// safety net), or a new uplink (save + queue "up").
    pub fn vdp_uplink_proc(&self) {
        let os_run = self.state.lock().is_os_run;
        if !os_run {
            if !self.is_openstack_running() {
                log::info!("OpenStack is not running");
                return;
            }
            self.state.lock().is_os_run = true;
        }
        let veth = {
            let mut st = self.state.lock();
            if !st.restart_uplink_called || st.process_uplink_ongoing {
                log::debug!(
                    "Uplink before restart not refreshed yet, states {} {}",
                    st.restart_uplink_called,
                    st.process_uplink_ongoing
                );
                return;
            }
            if let Some(phy) = st.phy_uplink.clone() {
                let set_up_veth = st.set_up.get(&phy).cloned();
                if st.uplink_det_compl && set_up_veth.is_none() {
                    log::error!("Not Initialized for phy {phy}");
                    return;
                }
                match set_up_veth {
                    Some(v) => st.veth_intf = Some(v),
                    None if st.veth_intf.is_none() => {
                        log::error!("Incorrect state: uplink {phy} without veth and not set up");
                        return;
                    }
                    None => {}
                }
            }
            st.veth_intf.clone()
        };
        let ret = if self.cfg.static_uplink.is_some() {
            self.static_uplink_detect(veth.as_deref())
        } else {
            self.host.detect_uplink(veth.as_deref())
        };
        match ret {
            UplinkDetect::Down => {
                let msg = {
                    let mut st = self.state.lock();
                    let Some(phy) = st.phy_uplink.clone() else {
                        log::error!("Wrong status down");
                        return;
                    };
                    st.uplink_down_cnt += 1;
                    if self.cfg.static_uplink.is_none() && st.uplink_down_cnt < UPLINK_DOWN_THRES {
                        log::info!("uplink {phy} down {} time(s)", st.uplink_down_cnt);
                        return;
                    }
                    st.process_uplink_ongoing = true;
                    let veth = st.veth_intf.take();
                    st.phy_uplink = None;
                    st.uplink_det_compl = false;
                    st.uplink_down_cnt = 0;
                    self.uplink_msg(UplinkStatus::Down, phy, veth)
                };
                log::info!("uplink down, queued down message");
                self.que.enqueue(Q_UPL_PRIO, msg);
            }
            UplinkDetect::NotFound => {
                if self.state.lock().veth_intf.is_some() {
                    log::error!("Wrong status None");
                    return;
                }
                self.save_uplink("", "", UPLINK_UNDISCOVERED_REASON);
            }
            UplinkDetect::Normal => {
                {
                    let mut st = self.state.lock();
                    if st.veth_intf.is_none() {
                        log::error!("Wrong status Normal");
                        return;
                    }
                    st.uplink_down_cnt = 0;
                }
                let bond_det = self.uplink_bond_intf_process();
                let msg = {
                    let mut st = self.state.lock();
                    if !st.uplink_det_compl && !bond_det {
                        let Some(phy) = st.phy_uplink.clone() else {
                            log::error!("Incorrect state, no uplink in normal stage");
                            return;
                        };
                        st.process_uplink_ongoing = true;
                        Some(self.uplink_msg(UplinkStatus::Up, phy, None))
                    } else {
                        None
                    }
                };
                if let Some(msg) = msg {
                    self.que.enqueue(Q_UPL_PRIO, msg);
                    log::info!("Enqueued Uplink Msg from normal");
                }
                self.check_periodic_bulk_vm_notif_rcvd();
            }
            UplinkDetect::Up(found) => {
                log::info!("In Periodic Uplink Task uplink found {found}");
                let uplink = match self.host.bond_of(&found) {
                    Some(bond) => {
                        log::info!("Interface {found} part of bond {bond}");
                        bond
                    }
                    None => found,
                };
                let veth = self.state.lock().veth_intf.clone().unwrap_or_default();
                self.save_uplink(&uplink, &veth, "");
                {
                    let mut st = self.state.lock();
                    st.phy_uplink = Some(uplink.clone());
                    st.process_uplink_ongoing = true;
                }
                self.que
                    .enqueue(Q_UPL_PRIO, self.uplink_msg(UplinkStatus::Up, uplink, None));
                log::info!("Enqueued Uplink Msg");
            }
        }
    }

    /// `static_uplink_detect`: the configured uplink when no veth is set up
    /// yet, "normal" when it is; on the first call after a restart, "down"
    /// when the stored uplink differs from the configured one (a stored
    /// bond that has the configured port as member counts as the same).
    pub fn static_uplink_detect(&self, veth: Option<&str>) -> UplinkDetect {
        let Some(port) = self.cfg.static_uplink.clone() else {
            return UplinkDetect::NotFound;
        };
        log::debug!("In static_uplink_detect {veth:?}");
        let first = std::mem::replace(&mut self.state.lock().static_uplink_first, false);
        if first {
            // A stored bond whose member is the configured port is the same
            // uplink (the "up" stage resolves members to their bond).
            let bond = self.host.bond_of(&port);
            let stored = self.state.lock().phy_uplink.clone();
            if let Some(p) = stored {
                if p != port && Some(&p) != bond.as_ref() {
                    return UplinkDetect::Down;
                }
            }
        }
        match veth {
            None => UplinkDetect::Up(port),
            Some(_) => UplinkDetect::Normal,
        }
    }

    /// `uplink_bond_intf_process`: the uplink became a member of a bond.
    /// Report an intermittent down (and queue "down" for the member), then
    /// an intermittent up on the bond (and queue "up" for it). Returns true
    /// when that happened.
    pub fn uplink_bond_intf_process(&self) -> bool {
        let Some(phy) = self.state.lock().phy_uplink.clone() else {
            return false;
        };
        let Some(bond) = self.host.bond_of(&phy) else {
            return false;
        };
        log::info!("uplink {phy} became a member of bond {bond}");
        self.save_uplink("", "", PORT_TRANSITION_BOND_DOWN_REASON);
        let down = {
            let mut st = self.state.lock();
            st.process_uplink_ongoing = true;
            let veth = st.veth_intf.take();
            st.phy_uplink = None;
            st.uplink_det_compl = false;
            self.uplink_msg(UplinkStatus::Down, phy, veth)
        };
        self.que.enqueue(Q_UPL_PRIO, down);
        self.save_uplink(&bond, "", PORT_TRANSITION_BOND_UP_REASON);
        {
            let mut st = self.state.lock();
            st.phy_uplink = Some(bond.clone());
            st.process_uplink_ongoing = true;
        }
        self.que
            .enqueue(Q_UPL_PRIO, self.uplink_msg(UplinkStatus::Up, bond, None));
        true
    }

    /// `check_periodic_bulk_vm_notif_rcvd`: bulk-resync safety net. In the
    /// "normal" stage, when no bulk list has arrived for two rounds, send
    /// `save_uplink` again (the controller answers it with a bulk list).
    pub fn check_periodic_bulk_vm_notif_rcvd(&self) {
        let resend = {
            let mut st = self.state.lock();
            if st.bulk_vm_rcvd_flag {
                None
            } else if st.bulk_vm_check_cnt >= 1 {
                st.bulk_vm_check_cnt = 0;
                Some((
                    st.phy_uplink.clone().unwrap_or_default(),
                    st.veth_intf.clone().unwrap_or_default(),
                ))
            } else {
                log::info!("Bulk VM not received, incrementing count");
                st.bulk_vm_check_cnt += 1;
                None
            }
        };
        if let Some((uplink, veth)) = resend {
            log::info!("Doing save_uplink again to request Bulk VM's");
            self.save_uplink(&uplink, &veth, "");
        }
    }

    // ----- error queue -------------------------------------------------------

    /// `process_err_queue`: move failed uplink messages back to the main
    /// queue (other message types are never put there; dropped if seen).
    pub fn process_err_queue(&self) {
        while let Some((_, msg)) = self.err_que.dequeue_nonblock() {
            log::info!("Msg dequeued from err queue type is {}", msg.msg_type());
            if matches!(msg, VdpQueMsg::Uplink { .. }) {
                self.que.enqueue(Q_UPL_PRIO, msg);
            }
        }
    }

    // ----- queue worker --------------------------------------------------------

    /// `process_queue`: the worker loop; returns when the queue is closed.
    /// A panic while processing one message is logged and the loop goes on.
    pub fn process_queue(&self) {
        log::info!("Entered process_q");
        loop {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process_one())) {
                Ok(true) => {}
                Ok(false) => return,
                Err(p) => log::error!("panic in process_q: {}", panic_message(&*p)),
            }
        }
    }

    /// Dequeue (blocking) and process one message; false when the queue is
    /// closed.
    pub fn process_one(&self) -> bool {
        match self.que.dequeue() {
            Some((_, msg)) => {
                self.process_msg(msg);
                true
            }
            None => false,
        }
    }

    /// Dispatch one message by type (the body of `process_queue`).
    pub fn process_msg(&self, msg: VdpQueMsg) {
        log::debug!("Msg dequeued type is {}", msg.msg_type());
        match msg {
            VdpQueMsg::Vm { vm, .. } => self.process_vm_event(&vm),
            VdpQueMsg::VmBulk { vms, .. } => self.process_bulk_vm_event(&vms),
            VdpQueMsg::Uplink { .. } => {
                let _reset = OngoingReset(&self.state);
                self.process_uplink_event(msg);
            }
            VdpQueMsg::VsiChanged(change) => self.process_vsi_change(&change),
        }
    }

    /// `process_uplink_event`: "up" sets the uplink up on the host (veth,
    /// OVS ports, pass-through flows, LLDP/EVB) and reports it, or reports
    /// the failure and parks the message on the error queue; "down" tears
    /// the uplink down (or removes a never-set-up stored uplink) and
    /// reports the empty uplink. Topology discovery follows the uplink.
    pub fn process_uplink_event(&self, msg: VdpQueMsg) {
        let VdpQueMsg::Uplink {
            status,
            ref phy_uplink,
            ref veth_intf,
            ..
        } = msg
        else {
            return;
        };
        let phy = phy_uplink.clone();
        log::info!(
            "Received New uplink Msg {} for uplink {phy}",
            status.as_str()
        );
        match status {
            UplinkStatus::Up => {
                let current = self.state.lock().phy_uplink.clone();
                if current.as_deref() != Some(phy.as_str()) {
                    log::warn!("dropping stale uplink up for {phy} (current uplink {current:?})");
                    return;
                }
                match self.host.uplink_up(&phy) {
                    Ok(veth) => {
                        {
                            let mut st = self.state.lock();
                            st.uplink_det_compl = true;
                            st.set_up.insert(phy.clone(), veth.clone());
                            st.veth_intf = Some(veth.clone());
                        }
                        log::info!(
                            "UP Event Processing Complete Saving uplink {phy} and veth {veth}"
                        );
                        self.save_uplink(&phy, &veth, "");
                        self.host.topo_uncfg_intf(&phy);
                        self.host.topo_cfg_intf(&veth, &phy);
                    }
                    Err(reason) => {
                        log::error!("UP Event Processing NOT Complete for {phy}: {reason}");
                        self.err_que.enqueue(Q_UPL_PRIO, msg.clone());
                        self.save_uplink(&phy, "", &reason);
                    }
                }
            }
            UplinkStatus::Down => {
                let was_set_up = self.state.lock().set_up.remove(&phy).is_some();
                if was_set_up {
                    self.host.uplink_down(&phy);
                } else {
                    self.host.delete_uplink_and_flows(&phy);
                }
                self.save_uplink("", "", "");
                if let Some(v) = veth_intf {
                    self.host.topo_uncfg_intf(v);
                }
                self.host.topo_cfg_intf(&phy, &phy);
            }
        }
    }

    /// `process_vm_event`: one VM port up/down. Before the uplink is ready:
    /// fail with "Uplink Port Event not received yet" and remember the port.
    /// Up: wait for the local VLAN, associate and program flows, report
    /// SUCCESS with both VLANs or CREATE:FAIL. Down: deassociate, report
    /// SUCCESS or DELETE:FAIL.
    pub fn process_vm_event(&self, vm: &VmPort) {
        log::info!(
            "In processing VM Event status {} for MAC {} UUID {} oui {:?}",
            vm.status,
            vm.vm_mac,
            vm.port_uuid,
            vm.oui
        );
        let res_fail = vm.status.fail_result();
        {
            let mut st = self.state.lock();
            if !st.uplink_ready() {
                remember_early(&mut st.early_ports, vm);
                drop(st);
                log::error!("{UPLINK_NOT_RECEIVED_REASON} (port {})", vm.port_uuid);
                self.update_vm_result(
                    &vm.port_uuid,
                    res_fail,
                    None,
                    None,
                    Some(UPLINK_NOT_RECEIVED_REASON),
                );
                return;
            }
            st.early_ports.remove(&vm.port_uuid);
        }
        let (outcome, lvid) = match vm.status {
            PortStatus::Up => {
                let wait = self.cfg.vm_port_wait;
                let Some(lvid) = self
                    .host
                    .port_local_vlan(&vm.port_uuid, wait, &self.shutdown)
                else {
                    if self.shutdown.is_set() {
                        log::info!(
                            "shutdown while waiting for the local VLAN of {}; not reported",
                            vm.port_uuid
                        );
                        return;
                    }
                    let reason = invalid_ovs_vlan_reason(&vm.port_uuid);
                    log::error!("{reason}");
                    self.update_vm_result(&vm.port_uuid, res_fail, None, None, Some(&reason));
                    return;
                };
                (self.host.port_up(vm, lvid), Some(lvid))
            }
            PortStatus::Down => (self.host.port_down(vm), None),
        };
        self.report_outcome(&vm.port_uuid, res_fail, &outcome, lvid);
    }

    fn report_outcome(
        &self,
        port_uuid: &str,
        res_fail: VmResult,
        out: &PortOutcome,
        lvid: Option<u16>,
    ) {
        if out.pending && !out.ok {
            // vdptool gave up waiting but lldpad is still trying: nothing to
            // report yet; lldpad's verdict arrives as a VSI change.
            log::info!("VDP association of {port_uuid} pending; the verdict comes as a VSI change");
            return;
        }
        if out.ok {
            log::info!("Success in VDP port event for {port_uuid}");
            self.update_vm_result(
                port_uuid,
                VmResult::Success,
                out.local_vlan.or(lvid),
                out.vdp_vlan,
                out.fail_reason.as_deref(),
            );
        } else {
            log::error!(
                "Error in VDP port event for {port_uuid}: {:?}",
                out.fail_reason
            );
            let reason = out
                .fail_reason
                .clone()
                .unwrap_or_else(|| "VDP port event failed".to_string());
            self.update_vm_result(port_uuid, res_fail, None, None, Some(&reason));
        }
    }

    /// `process_bulk_vm_event`: bulk resync (after save_uplink). Entries
    /// with status down first restore what the controller knew
    /// (`pop_local_cache` -> `HostDriver::restore_port`); every entry is then
    /// processed as a VM event. Remembered early ports not in the list are
    /// replayed afterwards.
    pub fn process_bulk_vm_event(&self, vms: &[VmPort]) {
        log::info!("In processing Bulk VM Event with {} entries", vms.len());
        {
            let mut st = self.state.lock();
            if !st.uplink_ready() {
                log::error!(
                    "Uplink Port Event not received, yet in bulk process; remembering the list"
                );
                for vm in vms {
                    remember_early(&mut st.early_ports, vm);
                }
                st.bulk_vm_rcvd_flag = false;
                return;
            }
        }
        for vm in vms {
            if self.shutdown.is_set() {
                log::info!("shutdown during bulk processing; the rest resyncs after restart");
                return;
            }
            if vm.status == PortStatus::Down {
                self.host.restore_port(vm);
            }
            self.process_vm_event(vm);
        }
        let leftovers: Vec<VmPort> = {
            let mut st = self.state.lock();
            std::mem::take(&mut st.early_ports).into_values().collect()
        };
        for vm in leftovers {
            if self.shutdown.is_set() {
                return;
            }
            log::info!(
                "replaying early event for port {} ({})",
                vm.port_uuid,
                vm.status
            );
            self.process_vm_event(&vm);
        }
    }

    /// A VSI changed (refresh / lldpad event): fix flows via
    /// `apply_vsi_change`, then report like `vdp_vlan_change_cb` (SUCCESS
    /// with the new VLANs), or CREATE:FAIL when the host could not apply it.
    pub fn process_vsi_change(&self, change: &VsiChange) {
        log::info!(
            "VSI change for {}: VDP VLAN {:?} -> {:?}",
            change.port_uuid,
            change.old_vdp_vlan,
            change.vdp_vlan
        );
        let out = self.host.apply_vsi_change(change);
        let lvid = out.local_vlan.or(change.local_vlan);
        let reason = out
            .fail_reason
            .clone()
            .or_else(|| change.fail_reason.clone());
        if out.ok {
            self.vdp_vlan_change_cb(
                &change.port_uuid,
                lvid,
                out.vdp_vlan.or(change.vdp_vlan),
                reason.as_deref(),
            );
        } else {
            let reason = reason.unwrap_or_else(|| "VSI change could not be applied".into());
            self.update_vm_result(
                &change.port_uuid,
                VmResult::CreateFail,
                None,
                None,
                Some(&reason),
            );
        }
    }
}

/// Text of a caught panic payload.
/// Most VM ports remembered before the uplink is ready (a host has a few
/// hundred). Beyond it a new port is not remembered (logged): the bulk
/// resync the controller sends after `save_uplink` covers it anyway, and a
/// controller announcing endless distinct ports cannot grow memory.
pub const MAX_EARLY_PORTS: usize = 16_384;

fn remember_early(early: &mut BTreeMap<String, VmPort>, vm: &VmPort) {
    if early.len() >= MAX_EARLY_PORTS && !early.contains_key(&vm.port_uuid) {
        log::warn!(
            "{MAX_EARLY_PORTS} ports already wait for the uplink; port {} is left to the bulk resync",
            vm.port_uuid
        );
        return;
    }
    early.insert(vm.port_uuid.clone(), vm.clone());
}

pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic".to_string()
    }
}
