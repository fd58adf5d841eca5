//! The boundary between the manager (`VdpMgr`) and the host: everything the
//! manager asks of OVS, lldpad, uplink detection and topology discovery goes
//! through the `HostDriver` trait. Production: `crate::host::LinuxHost`
//! (built from the drivers). Tests: fakes that record calls.
//!
//! Rules for implementors: never call back into the manager; report
//! asynchronous changes (VSI refresh, lldpad events) as values returned to the
//! caller, which turns them into queue messages.

use crate::model::{MigrationPhase, UplinkSetupError, VmPort};
pub use crate::model::{TopoReport, UplinkDetect, VsiChange, VsiStatus};
use crate::shutdown::Shutdown;
use std::time::Duration;

/// Outcome of a VM port operation (the original's `port_event_reply`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortOutcome {
    /// The original's `result`: true = SUCCESS.
    pub ok: bool,
    pub local_vlan: Option<u16>,
    pub vdp_vlan: Option<u16>,
    pub fail_reason: Option<String>,
    /// The association was sent but lldpad has not given its verdict yet
    /// (vdptool's 5 s wait ran out); the final result arrives later as a
    /// `VsiChange`.
    pub pending: bool,
}

/// Why a VM port has no local VLAN (`HostDriver::port_local_vlan`); the
/// manager reports the original's text for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoLocalVlan {
    /// No OVS interface carries the port: "Unknown portname for uuid U".
    UnknownPort,
    /// The port's interface has no usable tag: "Invalid OVS VLAN for port
    /// NAME" (the OVS port name).
    NoTag { port_name: String },
    /// Shutdown was requested while waiting (nothing is reported).
    Shutdown,
    /// OVS could not be asked (the reason text).
    Ovs(String),
}

/// Where watchers deliver VSI changes (see `HostDriver::start_watchers`).
pub(crate) type VsiSink = std::sync::Arc<dyn Fn(VsiChange) + Send + Sync>;

/// Everything the manager needs from the host. All methods take `&self`
/// and are called from several threads; implementations lock internally.
pub trait HostDriver: Send + Sync {
    /// `is_openstack_running`: both bridges exist.
    fn bridges_present(&self) -> bool;

    /// One auto-detection step (`detect_uplink.detect_uplink(veth)`):
    /// `veth` is the current lldpad-side veth when an uplink is set up.
    fn detect_uplink(&self, veth: Option<&str>) -> UplinkDetect;

    /// The bond an interface is enslaved to, if any (`get_bond_intf`).
    fn bond_of(&self, intf: &str) -> Option<String>;

    /// The member list of a bond as the kernel prints it (`get_member_ports`),
    /// `None` for a non-bond.
    fn bond_members(&self, intf: &str) -> Option<String>;

    /// Set the uplink up (`OVSNeutronVdp(...)` + `is_lldpad_setup_done`):
    /// veth pair (reused if present), OVS ports, pass-through flows, LLDP and
    /// EVB on the veth. Must not remove existing VM translation flows (a
    /// restart must not disturb traffic). Ok = the lldpad-side veth name;
    /// Err = the fail reason sent to the controller.
    fn uplink_up(&self, uplink: &str) -> Result<String, UplinkSetupError>;

    /// Tear the uplink down (`clear_obj_params`): flows, ports, VSI table.
    fn uplink_down(&self, uplink: &str);

    /// `delete_uplink_and_flows` for an uplink that was never set up here.
    fn delete_uplink_and_flows(&self, uplink: &str);

    /// The port's local VLAN (Neutron tag), waiting up to `wait` for it to
    /// appear; returns at once when present, `None` on timeout or shutdown.
    fn port_local_vlan(
        &self,
        port_uuid: &str,
        wait: Duration,
        shutdown: &Shutdown,
    ) -> Result<u16, NoLocalVlan>;

    /// VM port up: associate (VLAN from the switch) and program flows.
    fn port_up(&self, vm: &VmPort, local_vlan: u16) -> PortOutcome;

    /// VM port down: deassociate; flows removed when the network's last port goes.
    fn port_down(&self, vm: &VmPort) -> PortOutcome;

    /// A live migration step that brings the port here (`Arriving`:
    /// pre-associate and install the flows ahead of the switchover;
    /// `Arrived`: associate with the hint `to`). Default: a plain up.
    fn port_up_migrating(
        &self,
        vm: &VmPort,
        local_vlan: u16,
        _phase: MigrationPhase,
    ) -> PortOutcome {
        self.port_up(vm, local_vlan)
    }

    /// A live migration step that ends the port here (`Left`: deassociate
    /// with the hint `from`; `Aborted`: as a down, and done when nothing of
    /// the port is here). Default: a plain down.
    fn port_down_migrating(&self, vm: &VmPort, _phase: MigrationPhase) -> PortOutcome {
        self.port_down(vm)
    }

    /// Bulk entry with status down after a restart (`pop_local_cache`):
    /// remember what the controller knew so the following `port_down` can
    /// deassociate with the right VLAN and remove the right flows.
    fn restore_port(&self, vm: &VmPort);

    /// A bulk resync was processed: every port lldpad may still hold from
    /// an earlier run is known now. Default: nothing to do.
    fn bulk_resync_done(&self) {}

    /// Apply a VSI change found by refresh/events: fix flows; returns the
    /// outcome to report.
    fn apply_vsi_change(&self, change: &VsiChange) -> PortOutcome;

    /// One VSI refresh round (`vdp.sync_timeout_s`), run by the lldpad client
    /// thread; returns the VSIs that changed.
    fn refresh_vsis(&self) -> Vec<VsiChange>;

    /// A re-check of the VSIs awaiting a verdict only (every second while
    /// `pending_vsis` > 0, between refresh periods). Same result shape as
    /// `refresh_vsis`; by default it is one.
    fn recheck_pending_vsis(&self) -> Vec<VsiChange> {
        self.refresh_vsis()
    }

    /// One flow check round (`intervals.flow_check_s`); restores missing flows.
    fn check_flows(&self);

    /// Has the switch daemon (ovs-vswitchd) restarted since the last
    /// successful flow check? Its flows are gone then: the flow-check
    /// thread asks every second and repairs at once. Cheap (no process).
    fn ovs_needs_repair(&self) -> bool {
        false
    }

    /// Topology discovery: start / stop watching an interface.
    fn topo_cfg_intf(&self, intf: &str, phy_interface: &str);
    fn topo_uncfg_intf(&self, intf: &str);

    /// One topology round (`intervals.topo_disc_s`): reports to send.
    fn topo_poll(&self) -> Vec<TopoReport>;

    /// Start-up: watch every physical, operationally up interface except
    /// the uplink (the original's `TopoDisc` init). Runs before the uplink
    /// task starts, so detection sees LLDP already on where topology wants
    /// it and leaves it on.
    fn topo_start(&self) {}

    /// The report of `intf` was refused or not delivered: send it again
    /// the next round.
    fn topo_send_failed(&self, _intf: &str) {}

    /// Snapshot of the VSI table for `status`.
    fn vsis(&self) -> Vec<VsiStatus>;

    /// How many VSIs wait for lldpad's verdict (or for VDP to become usable
    /// on the port). While any does, the lldpad client refreshes every
    /// second instead of every `vdp.sync_timeout_s`.
    fn pending_vsis(&self) -> usize {
        0
    }

    /// Host-side watchers that report VSI changes as they happen (lldpad's
    /// VDP events, lldpad restarts), as tasks for the daemon's runner.
    /// `sink` is called from a watcher task, without locks held; the
    /// daemon passes `VdpMgr::enqueue_vsi_change`. Default: no watcher
    /// (refresh only).
    fn start_watchers(&self, _sink: VsiSink) -> Vec<crate::task::Task> {
        Vec::new()
    }

    /// Threads the host runs itself (name → state), shown in `status`
    /// next to the daemon's own.
    fn threads(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Extra facts for `status` (`host` section; README extension).
    fn status_extra(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        Default::default()
    }
}
