//! The `sd-notify` task (only when systemd gave a `$NOTIFY_SOCKET`):
//! every [`STATUS_PERIOD`] (or half the watchdog period) it sends `STATUS=`
//! with the `status --check` verdict line, plus `WATCHDOG=1` when a
//! watchdog is asked for and every thread makes progress. A thread that is
//! `stuck` (one step longer than [`STUCK_AFTER`]) or `stopped` holds the
//! pings back (rule: `health::thread_health`), so systemd's `WatchdogSec=`
//! restarts a daemon whose queue worker or command is stuck.
//!
//! Owns nothing. Calls `sdnotify`, `health`, the status document closure.

use super::*;
use crate::health;
use crate::sdnotify::{ping_interval, Notifier};
use crate::task::ThreadName;

/// How often `STATUS=` is refreshed when there is no watchdog.
pub(crate) const STATUS_PERIOD: Duration = Duration::from_secs(10);

/// One round: the text sent and whether it carried `WATCHDOG=1`.
pub(super) fn notify_round(n: &Notifier, doc: &StatusDoc) -> (String, bool) {
    let v = serde_json::to_value(doc).unwrap_or_default();
    let (h, what) = health::judge(&v);
    let line = format!("{} - {what}", h.label());
    let blockers =
        health::watchdog_blockers(doc.threads.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (text, ping) = match n.watchdog() {
        Some(_) if blockers.is_empty() => (line, true),
        Some(_) => (
            format!("watchdog held back: {}", blockers.join(", ")),
            false,
        ),
        None => (line, false),
    };
    let r = if ping {
        n.watchdog_ping(&text)
    } else {
        n.status(&text)
    };
    if let Err(e) = r {
        log::debug!("sd_notify: {e}");
    }
    (text, ping)
}

pub(super) fn notify_task(n: Arc<Notifier>, doc: crate::status::StatusFn) -> Task {
    let period = n.watchdog().map(ping_interval).unwrap_or(STATUS_PERIOD);
    let mut held = false;
    Task {
        name: ThreadName::SdNotify,
        step: Box::new(move || {
            let (text, ping) = notify_round(&n, &doc());
            if n.watchdog().is_some() {
                if !ping && !held {
                    log::error!("systemd watchdog: not pinging ({text})");
                } else if ping && held {
                    log::warn!("systemd watchdog: pinging again");
                }
                held = !ping;
            }
            Step::Wait(period)
        }),
    }
}
