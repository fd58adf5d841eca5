//! The daemon's periodic tasks and controller event dispatch: flow check
//! (with the vswitchd watch), VSI refresh, heartbeat / uplink request,
//! event poller, and `dispatch_event` (validate -> manager).
//!
//! Owns nothing. Calls the manager, the host driver, the controller link.

use super::*;
use crate::task::ThreadName;

/// Shortest gap between two event polls whose answer was empty (a
/// controller that does not hold polls, `events_wait_s: 0`).
pub(crate) const MIN_POLL_GAP: Duration = Duration::from_secs(1);

/// How often the flow-check thread asks whether ovs-vswitchd restarted.
pub(crate) const OVS_WATCH_PERIOD: Duration = Duration::from_secs(1);

/// `flow-check` thread: `check_flows` every `intervals.flow_check_s` (the
/// original's flow check, first after one period), and at once, retried
/// every [`OVS_WATCH_PERIOD`] until it succeeds, when ovs-vswitchd
/// restarted (its flows are not persisted): flows are back within a second
/// or two of the new vswitchd running, whatever `flow_check_s` is.
pub(super) fn flow_check_task(host: Arc<dyn HostDriver>, period: Duration) -> Task {
    let mut since = Duration::ZERO;
    let tick = OVS_WATCH_PERIOD.min(period).max(Duration::from_millis(100));
    Task {
        name: ThreadName::FlowCheck,
        step: Box::new(move || {
            since = since.saturating_add(tick);
            if since >= period || host.ovs_needs_repair() {
                since = Duration::ZERO;
                host.check_flows();
            }
            Step::Wait(tick)
        }),
    }
}

/// Re-check period of the lldpad client while VSIs are pending.
pub(crate) const PENDING_RECHECK: Duration = Duration::from_secs(1);

/// `lldpad-client` thread (the original's VSI refresh, `_vdp_refrsh_hndlr`):
/// `refresh_vsis` every `vdp.sync_timeout_s`, and every `PENDING_RECHECK`
/// while the host reports pending VSIs (an association whose verdict
/// lldpad has not given yet, or a port where VDP is not usable yet)
/// `recheck_pending_vsis`, which asks about those VSIs only, so a late
/// answer is reported within about a second, not a refresh period.
pub(super) fn lldpad_client_task(
    mgr: Arc<VdpMgr>,
    host: Arc<dyn HostDriver>,
    period: Duration,
) -> Task {
    let mut since = Duration::ZERO;
    let mut since_recheck = Duration::ZERO;
    Task {
        name: ThreadName::LldpadClient,
        step: Box::new(move || {
            let changes = if since >= period {
                since = Duration::ZERO;
                since_recheck = Duration::ZERO;
                host.refresh_vsis()
            } else if since_recheck >= PENDING_RECHECK && host.pending_vsis() > 0 {
                since_recheck = Duration::ZERO;
                host.recheck_pending_vsis()
            } else {
                Vec::new()
            };
            for change in changes {
                mgr.enqueue_vsi_change(change);
            }
            let step = PENDING_RECHECK.min(period);
            since += step;
            since_recheck += step;
            Step::Wait(step)
        }),
    }
}

// ----- controller events ------------------------------------------------------

/// Log a rejected VM object and, when its `port_uuid` is valid, tell the
/// controller `CREATE:FAIL`/`DELETE:FAIL` (by its status; `CREATE:FAIL`
/// when the status itself was bad) with a reason naming the field.
pub(super) fn reject_vm(mgr: &VdpMgr, seq: u64, rej: &VmRejection) {
    log::warn!(
        "rejected vm_info event seq {seq} (port {}): {rej}",
        rej.port_uuid.as_deref().unwrap_or("unknown")
    );
    if let Some(port) = &rej.port_uuid {
        let result = rej
            .status
            .map(|s| s.fail_result())
            .unwrap_or(VmResult::CreateFail);
        mgr.update_vm_result(port, result, None, None, Some(&rej.to_string()));
    }
}

/// Handle one controller event (the original's RPC callbacks
/// `send_vm_info`, `send_msg_to_agent`, `update_ip_rule`): validate, then
/// `vdp_vm_event` (single or bulk) or `dfa_uplink_restart`. `ip_rule` is
/// logged and ignored (the iptables feature is not part of this agent);
/// unknown types are logged and ignored. Repeated events are harmless: VM
/// events are idempotent and the uplink restart runs once.
pub(crate) fn dispatch_event(mgr: &VdpMgr, ev: &ControllerEvent) {
    match ev.kind.as_str() {
        "vm_info" => match validate::validate_vm_event(&ev.payload) {
            VmEvent::Single(Ok(vm)) => {
                crate::metrics::vm_event_received(&vm.port_uuid);
                mgr.vdp_vm_event(VmNotice::Single(vm))
            }
            VmEvent::Single(Err(rej)) => reject_vm(mgr, ev.seq, &rej),
            VmEvent::Bulk(entries) => {
                let mut good: Vec<VmPort> = Vec::with_capacity(entries.len());
                for e in entries {
                    match e {
                        Ok(vm) => good.push(vm),
                        Err(rej) => reject_vm(mgr, ev.seq, &rej),
                    }
                }
                log::info!(
                    "bulk vm_info seq {} with {} valid entries",
                    ev.seq,
                    good.len()
                );
                good.iter()
                    .for_each(|vm| crate::metrics::vm_event_received(&vm.port_uuid));
                mgr.vdp_vm_event(VmNotice::Bulk(good));
            }
        },
        "uplink" => match validate::validate_uplink(&ev.payload) {
            Ok(info) => mgr.dfa_uplink_restart(&info),
            Err(e) => log::warn!("rejected uplink event seq {}: {e}", ev.seq),
        },
        "vm_migration" => match validate::validate_migration(&ev.payload) {
            Ok((phase, vm)) => {
                log::info!(
                    "vm_migration seq {}: port {} {}",
                    ev.seq,
                    vm.port_uuid,
                    phase.as_str()
                );
                crate::metrics::vm_event_received(&vm.port_uuid);
                mgr.vdp_vm_event(VmNotice::Migration(phase, vm))
            }
            Err(rej) => reject_vm(mgr, ev.seq, &rej),
        },
        "ip_rule" => log::debug!("ignoring ip_rule event seq {}", ev.seq),
        other => log::warn!(
            "ignoring controller event seq {} of unknown type {:?}",
            ev.seq,
            other.chars().take(40).collect::<String>()
        ),
    }
}

/// The stored uplink from `request_uplink_info`, re-checked like any other
/// controller input (a bad name is logged and treated as "none stored").
pub(super) fn checked_uplink(info: Option<UplinkInfo>) -> UplinkInfo {
    let Some(info) = info else {
        return UplinkInfo::default();
    };
    let v = serde_json::json!({"uplink": info.uplink, "veth_intf": info.veth_intf});
    match validate::validate_uplink(&v) {
        Ok(i) => i,
        Err(e) => {
            log::warn!("stored uplink from controller rejected ({e}); starting fresh");
            UplinkInfo::default()
        }
    }
}

pub(super) fn backoff_next(cur: Duration) -> Duration {
    (cur * 2).min(MAX_RETRY_WAIT)
}

/// `heartbeat` thread: the original agent's main loop. Heartbeat every
/// `heartbeat_s`; until the stored uplink is obtained, `request_uplink_info`
/// is retried with a shutdown-aware backoff (1 s doubling to 10 s) and its
/// answer goes to `dfa_uplink_restart`.
pub(super) fn heartbeat_task(
    cfg: &Config,
    mgr: Arc<VdpMgr>,
    link: Arc<dyn ControllerLink>,
) -> Task {
    let period = Duration::from_secs(cfg.intervals.heartbeat_s);
    let mut next_hb = Instant::now();
    let mut retry = Duration::from_secs(1);
    Task {
        name: ThreadName::Heartbeat,
        step: Box::new(move || {
            let now = Instant::now();
            if now >= next_hb {
                if let Err(e) = link.heartbeat() {
                    log::warn!("heartbeat failed: {e}");
                }
                next_hb = now + period;
            }
            if !mgr.is_uplink_received() {
                match link.request_uplink_info() {
                    Ok(info) => {
                        let info = checked_uplink(info);
                        mgr.dfa_uplink_restart(&info);
                    }
                    Err(e) => {
                        log::warn!(
                            "request_uplink_info failed (retry in {}s): {e}",
                            retry.as_secs()
                        );
                        let w = retry;
                        retry = backoff_next(retry);
                        return Step::Wait(w);
                    }
                }
            }
            Step::Wait(next_hb.saturating_duration_since(Instant::now()))
        }),
    }
}

/// `event-poller` thread: long-poll the controller, dispatch each event,
/// advance `after` past what was processed (also past an event whose
/// handling panicked: logged, not retried). Failures back off 1 s doubling
/// to 10 s.
pub(super) fn event_poller_task(mgr: Arc<VdpMgr>, link: Arc<dyn ControllerLink>) -> Task {
    let mut after: u64 = 0;
    let mut retry = Duration::from_secs(1);
    Task {
        name: ThreadName::EventPoller,
        step: Box::new(move || {
            if mgr.que().is_full() {
                // Backpressure: leave the events with the controller until
                // the worker has caught up (queue::HIGH_WATER).
                return Step::Wait(Duration::from_millis(100));
            }
            let polled = Instant::now();
            match link.poll_events(after) {
                Ok(events) => {
                    retry = Duration::from_secs(1);
                    // Events all at or below the cursor: the controller's
                    // numbering restarted; follow it (controller::parse_events).
                    if !events.is_empty() && events.iter().all(|e| e.seq <= after) {
                        after = events
                            .iter()
                            .map(|e| e.seq)
                            .min()
                            .unwrap_or(0)
                            .saturating_sub(1);
                    }
                    for ev in &events {
                        // A panic on one event must not make it a poison pill
                        // re-polled forever: log it and move past it.
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            dispatch_event(&mgr, ev)
                        }));
                        if let Err(p) = r {
                            log::error!(
                                "panic while handling controller event seq {} ({}): {}",
                                ev.seq,
                                ev.kind.chars().take(40).collect::<String>(),
                                panic_message(&*p)
                            );
                        }
                        after = after.max(ev.seq);
                    }
                    if events.is_empty() && polled.elapsed() < MIN_POLL_GAP {
                        // An answer that came back at once (e.g. events_wait_s
                        // 0): never poll faster than MIN_POLL_GAP.
                        return Step::Wait(MIN_POLL_GAP);
                    }
                    Step::Again
                }
                Err(e) => {
                    log::warn!("event poll failed (retry in {}s): {e}", retry.as_secs());
                    let w = retry;
                    retry = backoff_next(retry);
                    Step::Wait(w)
                }
            }
        }),
    }
}
