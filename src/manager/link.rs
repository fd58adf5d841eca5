//! The boundary between the manager and the controller (docs/protocol.md): the
//! calls the manager makes, as a trait. Production: `controller::Controller`.
//! Tests: recording fakes.
//!
//! Delivery rule: `save_uplink` and `update_vm_result` never lose a result.
//! When the controller cannot be reached the implementation keeps the call
//! (memory + `state_dir`) and retries it with backoff; newest state per port
//! (and the newest `save_uplink`) wins. The `Err` return only tells the
//! caller that delivery is deferred.

use crate::manager::host::TopoReport;
use crate::model::{UplinkInfo, VmResult};
use std::time::Duration;

/// What `status` shows in its `server` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStatus {
    /// `ctime()` of the last successful call, if any.
    pub last_ok: Option<String>,
    /// Text of the last failure, if any (cleared by nothing: history).
    pub last_error: Option<String>,
    /// Calls kept for retry.
    pub pending_results: usize,
}

/// One event from the controller's long-poll (docs/protocol.md), not yet
/// validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerEvent {
    pub seq: u64,
    /// `vm_info`, `uplink`, `ip_rule`, or anything else (ignored, logged).
    pub kind: String,
    pub payload: serde_json::Value,
}

/// Errors of the controller link, as text (the link logs and records details).
pub type LinkError = String;

pub trait ControllerLink: Send + Sync {
    /// `heartbeat` with `{"when": ctime, "agent": host_id}`.
    fn heartbeat(&self) -> Result<(), LinkError>;

    /// `request_uplink_info`; `Ok(None)` when the controller has no uplink
    /// stored (`{}`/`null`/empty uplink).
    fn request_uplink_info(&self) -> Result<Option<UplinkInfo>, LinkError>;

    /// `save_uplink` (kept and retried when it fails).
    fn save_uplink(
        &self,
        uplink: &str,
        veth_intf: &str,
        memb_port_list: Option<String>,
        fail_reason: &str,
    ) -> Result<bool, LinkError>;

    /// `update_vm_result` (kept and retried when it fails; newest per port wins).
    fn update_vm_result(
        &self,
        port_uuid: &str,
        result: VmResult,
        local_vlan: Option<u16>,
        vdp_vlan: Option<u16>,
        fail_reason: Option<&str>,
    ) -> Result<(), LinkError>;

    /// `save_topo_disc_params` (not retried: the next round resends).
    fn save_topo_disc_params(&self, report: &TopoReport) -> Result<bool, LinkError>;

    /// One long-poll: events with `seq > after`, waiting up to the configured
    /// `events_wait_s`. Passing `after` acknowledges everything up to it.
    fn poll_events(&self, after: u64) -> Result<Vec<ControllerEvent>, LinkError>;

    /// Deliver kept calls whose backoff has expired (the `result-retry`
    /// thread); returns how many are still pending.
    fn retry_pending(&self) -> usize;

    /// Wait up to `max` until a new call is handed over for delivery
    /// (`update_vm_result` only hands results over; this thread sends them).
    fn wait_for_work(&self, max: Duration) {
        let _ = crossbeam_channel::after(max).recv();
    }

    fn status(&self) -> LinkStatus;
}
