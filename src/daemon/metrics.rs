//! The daemon's `metrics-server` task (README "Metrics"): binds
//! `metrics.listen` and serves `GET /metrics` with `crate::metrics`'
//! registry plus a snapshot of what only the daemon knows.
//!
//! The snapshot reads only published views, each under a lock held for a
//! copy and never across a command or a call: the manager's uplink view
//! (state lock), the queue lengths, the VSI table of the host driver (the
//! same copy `status` makes; the table lock is never held while vdptool
//! runs), the thread registry. Kept results come from an atomic gauge, not
//! from the controller link (whose lock is held while its file is written).
//!
//! Owns nothing. Calls `crate::metrics`, the manager, the host driver, the
//! thread registry.

use super::*;
use crate::metrics::http::{MetricsServer, RenderFn};
use crate::metrics::{Snapshot, METRICS};
use crate::task::ThreadName;

/// Bind the endpoint when `metrics.listen` is set (checked by config).
pub(super) fn bind(cfg: &Config) -> Result<Option<MetricsServer>, DaemonError> {
    let Some(addr) = cfg.metrics.listen_addr() else {
        return Ok(None);
    };
    let server = MetricsServer::bind(addr).map_err(io_err(format!("metrics.listen {addr}")))?;
    log::info!("metrics: serving GET /metrics on {addr}");
    Ok(Some(server))
}

/// What the daemon adds to the registry for one scrape.
fn snapshot(mgr: &VdpMgr, host: &dyn HostDriver, registry: &ThreadRegistry) -> Snapshot {
    let (queue_main, queue_err) = mgr.queue_lens();
    let up = mgr.uplink_snapshot();
    let mut vsis = [0usize; 3];
    for v in host.vsis() {
        let i = match v.result.as_str() {
            "SUCCESS" => 0,
            "PENDING" => 1,
            _ => 2,
        };
        vsis[i] += 1;
    }
    let mut threads = registry.snapshot();
    threads.extend(host.threads());
    Snapshot {
        uplink_up: up.detected && up.phy.as_deref().is_some_and(|p| !p.is_empty()),
        vsis,
        queue_main,
        queue_err,
        threads,
    }
}

/// The `metrics-server` task: one connection per step (each answered on a
/// short-lived `metrics-client` thread), shutdown seen within 250 ms.
pub(super) fn task(
    server: MetricsServer,
    mgr: &Arc<VdpMgr>,
    host: &Arc<dyn HostDriver>,
    registry: &ThreadRegistry,
    stop: &crate::shutdown::Shutdown,
) -> Task {
    let (mgr, host, registry) = (mgr.clone(), host.clone(), registry.clone());
    let stop = stop.clone();
    let render: RenderFn =
        Arc::new(move || crate::metrics::render(&METRICS, &snapshot(&mgr, &*host, &registry)));
    Task {
        name: ThreadName::MetricsServer,
        step: Box::new(move || {
            if let Err(e) = server.serve_one_until(super::SERVE_WAIT, &render, stop.wake_fd()) {
                log::warn!("metrics socket: {e}");
                return Step::Wait(Duration::from_millis(250));
            }
            Step::Again
        }),
    }
}

/// The status document's `health` section (README "Status interface").
pub(super) fn health_extra() -> BTreeMap<String, serde_json::Value> {
    let age =
        crate::metrics::controller_error_age().map(|d| (d.as_secs_f64() * 10.0).round() / 10.0);
    BTreeMap::from([("controller_error_age_s".to_string(), serde_json::json!(age))])
}
