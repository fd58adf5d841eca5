//! Prometheus metrics (README "Metrics"): the process-wide counters and
//! histograms, the hooks the drivers call where they already count things,
//! and the text exposition of `GET /metrics` (format version 0.0.4).
//!
//! Owns: the metric values ([`registry`]: atomics only, fixed label sets, so
//! an update is a few atomic adds and a scrape copies them without any
//! lock), the encoder ([`text`]) and the HTTP responder ([`http`]). Calls
//! nothing of the daemon: what only the daemon knows (uplink state, VSI
//! table, queue lengths, thread states) is handed to [`render`] as a
//! [`Snapshot`] the daemon copies from its published views.
//!
//! Label values are fixed sets: a tool, RPC method or reason outside its
//! set is counted as `other`, so no input can grow the number of series.
//! The registry is process-wide (one daemon per process); tests that read
//! it compare before/after values.

pub(crate) mod http;
mod registry;
mod text;

pub use registry::Metrics;
pub use text::{render, Snapshot, FAMILIES};

use std::time::{Duration, Instant};

/// The registry of this process.
pub(crate) static METRICS: Metrics = Metrics::new();

/// Content type of the exposition (Prometheus text format 0.0.4).
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A privileged command finished (`exec::Runner`): `program` is the
/// command's argv[0] (the root helper not included); counted by its base
/// name. `timed_out`: killed at its timeout.
pub(crate) fn command_done(program: &str, elapsed: Duration, timed_out: bool) {
    METRICS.command_done(program, elapsed, timed_out);
}

/// One controller call (`method`, or `events` for the long-poll) ended.
pub(crate) fn rpc_done(method: &str, elapsed: Duration, ok: bool) {
    METRICS.rpc_done(method, elapsed, ok);
}

/// How long ago the last controller call failed (None: none has), for
/// `status` (`health.controller_error_age_s`) and `status --check`.
pub(crate) fn controller_error_age() -> Option<Duration> {
    METRICS.rpc_error_age(Instant::now())
}

/// A VDP request's reply: `ok` (associated with a VLAN, deassociated,
/// answered), else `pending` (lldpad's verdict still to come, or lldpad
/// busy / not ready), else failed.
pub(crate) fn vdp_reply(mode: &str, ok: bool, pending: bool) {
    let outcome = if ok {
        "success"
    } else if pending {
        "pending"
    } else {
        "failed"
    };
    METRICS.vdp_request(mode, outcome);
}

/// A notice of the lldpad event watcher (`kind` in [`EVENT_KINDS`]).
pub(crate) fn lldpad_event(kind: &str) {
    METRICS.lldpad_event(kind);
}

/// lldpad restarted (seen by the event watcher or the refresh) and the
/// host recovers its settings and VSIs.
pub(crate) fn lldpad_restart() {
    METRICS.lldpad_restarts.inc();
}

/// A flow check ended: flows put back, stale flows removed, whether the
/// uplink/veth ports were re-added, and whether it ran because
/// ovs-vswitchd restarted (counted once when it repaired anything).
pub(crate) fn flow_check_done(
    restored: usize,
    removed: usize,
    ports_readded: bool,
    after_restart: bool,
) {
    let m = &METRICS;
    m.flow_repairs("missing_flows", restored as u64);
    m.flow_repairs("stale_flows", removed as u64);
    m.flow_repairs("missing_ports", u64::from(ports_readded));
    let repaired = restored > 0 || ports_readded;
    m.flow_repairs("vswitchd_restart", u64::from(after_restart && repaired));
}

/// Results kept for the controller right now.
pub(crate) fn set_pending_results(n: usize) {
    METRICS.set_pending_results(n);
}

/// A VM event for `port_uuid` was received from the controller (valid,
/// handed to the manager). The first receipt since the port's last result
/// starts its `vdp_agent_vm_event_seconds` clock.
pub(crate) fn vm_event_received(port_uuid: &str) {
    METRICS.vm_event_received(port_uuid, Instant::now());
}

/// A result for `port_uuid` was handed to delivery (`update_vm_result`):
/// observes the time since the event that asked for it, if one did.
pub(crate) fn vm_result_handed(port_uuid: &str) {
    METRICS.vm_result_handed(port_uuid, Instant::now());
}

#[cfg(all(test, feature = "lab"))]
mod tests;
