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
//!   returning as soon as the tag is there); none -> `CREATE:FAIL` with the
//!   original's text: "Unknown portname for uuid <uuid>" (no OVS interface
//!   carries the port) or "Invalid OVS VLAN for port <OVS port name>" (no
//!   usable tag).
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

pub(crate) mod host;
mod lanes;
pub(crate) mod link;
mod uplink;
mod worker;

use crate::config::Config;
use crate::model::{MigrationPhase, PortStatus, UplinkInfo, VmPort, VmResult};
use crate::queue::{
    UplinkStatus, VdpMsgPriQue, VdpQueMsg, Q_UPL_PRIO, Q_VM_PRIO, Q_VSI_PRIO, Q_VSI_REREPORT_PRIO,
};
use crate::shutdown::Shutdown;
use crate::task::ThreadName;
use host::{HostDriver, PortOutcome, TopoReport, UplinkDetect, VsiChange};
use link::ControllerLink;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Consecutive "down" periods before an auto-detected uplink is declared
/// down (`constants.UPLINK_DOWN_THRES`). A static uplink goes down at once.
pub(crate) const UPLINK_DOWN_THRES: u32 = 3;
/// How often the uplink task looks whether the stored uplink has been
/// obtained, before its first detection round.
const UPLINK_AWAIT_POLL: Duration = Duration::from_millis(50);
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
pub(crate) fn invalid_ovs_vlan_reason(port_name: &str) -> String {
    format!("Invalid OVS VLAN for port {port_name}")
}

/// The original's fail reason for a VM port without a local VLAN.
pub(crate) fn no_local_vlan_reason(port_uuid: &str, e: &host::NoLocalVlan) -> String {
    match e {
        host::NoLocalVlan::UnknownPort => format!("Unknown portname for uuid {port_uuid}"),
        host::NoLocalVlan::NoTag { port_name } => invalid_ovs_vlan_reason(port_name),
        host::NoLocalVlan::Shutdown => "shutting down".into(),
        host::NoLocalVlan::Ovs(text) => text.clone(),
    }
}

/// What the manager needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MgrConfig {
    /// `read_static_uplink`: `uplink.static`.
    pub static_uplink: Option<String>,
    /// `intervals.vm_port_wait_s`.
    pub vm_port_wait: Duration,
    /// `intervals.uplink_detect_s`.
    pub uplink_detect: Duration,
    /// `intervals.err_queue_s`.
    pub err_queue: Duration,
    /// `vdp.in_flight`: VM events of different ports processed at once
    /// (1 = one after the other, see `lanes`).
    pub vm_lanes: usize,
}

impl MgrConfig {
    pub fn from_config(cfg: &Config) -> MgrConfig {
        MgrConfig {
            static_uplink: read_static_uplink(cfg),
            vm_port_wait: Duration::from_secs(cfg.intervals.vm_port_wait_s),
            uplink_detect: Duration::from_secs(cfg.intervals.uplink_detect_s),
            err_queue: Duration::from_secs(cfg.intervals.err_queue_s),
            vm_lanes: cfg.vdp.in_flight as usize,
        }
    }
}

/// `read_static_uplink`: the original read `node`/`node_uplink` lists from
/// its ini file; here it is the single `uplink.static` key.
pub(crate) fn read_static_uplink(cfg: &Config) -> Option<String> {
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
    /// A `vm_migration` event: the step and the port (its status is the
    /// one the step implies).
    Migration(MigrationPhase, VmPort),
}

/// Where the uplink stands: the original's `restart_uplink_called`,
/// `uplink_det_compl` and `process_uplink_ongoing` as one stage. They were
/// never independent: nothing is detected before the stored uplink is
/// taken after a (re)start, and the uplink is set up only by the queue
/// worker while an uplink message is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UplinkStage {
    /// After start: `request_uplink_info` not answered yet; the uplink
    /// task waits (`restart_uplink_called` false).
    AwaitingStored,
    /// Answered with an uplink but no veth: its port and flows are being
    /// removed from the external bridge.
    RemovingStale,
    /// No uplink set up, nothing in flight.
    NotReady,
    /// An uplink up/down message is queued or being processed
    /// (`process_uplink_ongoing`); `set_up`: the worker already set the
    /// uplink up while processing it (`uplink_det_compl`).
    Ongoing { set_up: bool },
    /// Set up, nothing in flight (`uplink_det_compl`).
    Ready,
}

impl UplinkStage {
    /// The original's `restart_uplink_called`: the stored uplink was taken.
    fn restored(self) -> bool {
        !matches!(
            self,
            UplinkStage::AwaitingStored | UplinkStage::RemovingStale
        )
    }
    /// The original's `uplink_det_compl`.
    fn det_compl(self) -> bool {
        matches!(
            self,
            UplinkStage::Ready | UplinkStage::Ongoing { set_up: true }
        )
    }
    /// The original's `process_uplink_ongoing`.
    fn ongoing(self) -> bool {
        matches!(self, UplinkStage::Ongoing { .. })
    }
}

/// Whether the controller's bulk resync has come since the uplink was
/// saved (the original's `bulk_vm_rcvd_flag` with its `bulk_vm_check_cnt`).
/// In the "normal" uplink stage the safety net sends `save_uplink` again
/// every second round without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BulkStage {
    /// Not received; `rounds` safety-net rounds since the last resend.
    /// (The original kept its count across a receipt; a bulk list that
    /// came before the uplink starts it from 0 here: at most one round
    /// later resend.)
    Awaited {
        rounds: u32,
    },
    Received,
}

#[derive(Debug)]
struct MgrState {
    phy_uplink: Option<String>,
    veth_intf: Option<String>,
    uplink: UplinkStage,
    uplink_down_cnt: u32,
    is_os_run: bool,
    static_uplink_first: bool,
    bulk: BulkStage,
    /// The original's `ovs_vdp_obj_dict`: uplinks set up on the host, with
    /// their lldpad-side veth.
    set_up: HashMap<String, String>,
    /// Last `fail_reason` sent with `save_uplink` (status).
    fail_reason: String,
    early_ports: BTreeMap<String, VmPort>,
}

impl MgrState {
    fn uplink_ready(&self) -> bool {
        self.uplink.det_compl()
            && self
                .phy_uplink
                .as_ref()
                .is_some_and(|p| self.set_up.contains_key(p))
    }
}

pub(crate) use crate::task::{Step, Task};

/// Ends the `Ongoing` stage when dropped (also on unwind), as the original
/// reset `process_uplink_ongoing` after `process_uplink_event` whatever
/// happened: `Ready` when the uplink was set up meanwhile, else `NotReady`.
struct OngoingReset<'a>(&'a Mutex<MgrState>);

impl Drop for OngoingReset<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        if let UplinkStage::Ongoing { set_up } = st.uplink {
            st.uplink = if set_up {
                UplinkStage::Ready
            } else {
                UplinkStage::NotReady
            };
        }
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
                uplink: UplinkStage::AwaitingStored,
                uplink_down_cnt: 0,
                is_os_run: false,
                static_uplink_first: true,
                bulk: BulkStage::Awaited { rounds: 0 },
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
            detected: st.uplink.det_compl(),
            fail_reason: st.fail_reason.clone(),
        }
    }

    pub fn state_view(&self) -> MgrStateView {
        let st = self.state.lock();
        MgrStateView {
            phy_uplink: st.phy_uplink.clone(),
            veth_intf: st.veth_intf.clone(),
            restart_uplink_called: st.uplink.restored(),
            uplink_det_compl: st.uplink.det_compl(),
            process_uplink_ongoing: st.uplink.ongoing(),
            uplink_down_cnt: st.uplink_down_cnt,
            is_os_run: st.is_os_run,
            bulk_vm_rcvd_flag: st.bulk == BulkStage::Received,
            bulk_vm_check_cnt: match st.bulk {
                BulkStage::Awaited { rounds } => rounds,
                BulkStage::Received => 0,
            },
            early_ports: st.early_ports.keys().cloned().collect(),
        }
    }

    /// `start`: the original spawned the queue thread and two periodic
    /// tasks. Here it returns them as [`Task`]s for the daemon to run on
    /// named threads: `queue-worker` (`process_one`), `err-queue`
    /// (`process_err_queue` every `err_queue_s`) and `uplink-detect`
    /// (`vdp_uplink_proc` every `uplink_detect_s`).
    pub fn start(self: &Arc<Self>) -> Vec<Task> {
        let worker = self.clone();
        let errq = self.clone();
        let upl = self.clone();
        vec![
            Task {
                name: ThreadName::QueueWorker,
                step: Box::new(move || {
                    if worker.process_one() {
                        Step::Again
                    } else {
                        Step::Stop
                    }
                }),
            },
            Task {
                name: ThreadName::ErrQueue,
                step: Box::new(move || {
                    errq.process_err_queue();
                    Step::Wait(errq.cfg.err_queue)
                }),
            },
            Task {
                name: ThreadName::UplinkDetect,
                step: Box::new(move || {
                    // Until the stored uplink has been obtained there is
                    // nothing to do (as the original); look again every
                    // 50 ms (a flag read) so detection starts right after
                    // it, not a whole period later: after a restart every
                    // port's resync waits for it.
                    if !upl.is_uplink_received() {
                        return Step::Wait(upl.cfg.uplink_detect.min(UPLINK_AWAIT_POLL));
                    }
                    upl.vdp_uplink_proc();
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
    /// list marks the bulk resync as received (`BulkStage::Received`).
    pub fn vdp_vm_event(&self, notice: VmNotice) {
        let msg = match notice {
            VmNotice::Bulk(vms) => {
                self.state.lock().bulk = BulkStage::Received;
                VdpQueMsg::VmBulk { vms }
            }
            VmNotice::Single(vm) => VdpQueMsg::Vm {
                vm,
                migration: None,
            },
            VmNotice::Migration(phase, vm) => VdpQueMsg::Vm {
                vm,
                migration: Some(phase),
            },
        };
        if let VdpQueMsg::Vm { vm, migration } = &msg {
            log::info!(
                "VM event queued: status {} mac {} port {} net {}{}",
                vm.status,
                vm.vm_mac,
                vm.port_uuid,
                vm.net_uuid,
                migration.map_or(String::new(), |m| format!(" (migration: {})", m.as_str()))
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
        self.state.lock().uplink.restored()
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
            if st.uplink != UplinkStage::AwaitingStored {
                return;
            }
            log::info!("Obtained uplink after restart {info:?}");
            if let Some(p) = &st.phy_uplink {
                log::error!("Uplink detection already done {p}");
                return;
            }
            if info.uplink.is_empty() {
                log::info!("uplink not discovered yet");
                st.uplink = UplinkStage::NotReady;
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
                st.uplink = UplinkStage::NotReady;
                return;
            }
            st.uplink = UplinkStage::RemovingStale;
        }
        log::info!("Error case removing the uplink {} from bridge", info.uplink);
        self.host.delete_uplink_and_flows(&info.uplink);
        self.state.lock().uplink = UplinkStage::NotReady;
    }
}

/// Most VM ports remembered before the uplink is ready (a host has a few
/// hundred). Beyond it a new port is not remembered (logged): the bulk
/// resync the controller sends after `save_uplink` covers it anyway, and a
/// controller announcing endless distinct ports cannot grow memory.
pub(crate) const MAX_EARLY_PORTS: usize = 16_384;

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
