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

/// Why a controller call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFailure {
    /// The controller could not be reached, or the answer could not be read
    /// (connect, DNS, TLS, timeout, a broken body).
    Transport(String),
    /// It answered with an HTTP status other than 200 (with a short,
    /// printable excerpt of the body).
    Http { code: u16, excerpt: String },
    /// Its answer broke docs/protocol.md: not JSON, too big, the wrong
    /// shape, a long-poll that was not held.
    Answer(String),
}

impl std::fmt::Display for LinkFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkFailure::Transport(t) => write!(f, "transport: {t}"),
            LinkFailure::Http { code, excerpt } => write!(f, "HTTP {code}: {excerpt}"),
            LinkFailure::Answer(a) => f.write_str(a),
        }
    }
}

/// A failed controller call: which call, why, and whether the call is kept
/// for retry (delivery deferred, nothing lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkError {
    /// The RPC method, or `events` for the long-poll.
    pub method: String,
    pub failure: LinkFailure,
    pub kept: bool,
}

impl LinkError {
    pub fn new(method: &str, failure: LinkFailure) -> LinkError {
        LinkError {
            method: method.to_string(),
            failure,
            kept: false,
        }
    }
    /// The controller could not be reached (fakes, tests).
    pub fn transport(method: &str, text: &str) -> LinkError {
        LinkError::new(method, LinkFailure::Transport(text.to_string()))
    }
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.method, self.failure)?;
        if self.kept {
            f.write_str(" (kept for retry)")?;
        }
        Ok(())
    }
}

impl std::error::Error for LinkError {}

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
