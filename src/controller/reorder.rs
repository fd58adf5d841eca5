//! The reorder guard of the controller link: a result call that failed
//! without an answer (a timeout) may still be applied by a slow controller
//! after we gave up on it, and then after a newer result for the same key
//! that was delivered meanwhile: the controller is left with the older
//! one. So once a key has had such a failure, its next delivered call is
//! sent once more `window` after the failure (the newest delivered call of
//! the key by then), unless a newer call for the key is waiting anyway.
//!
//! Owns: the keys with a failed attempt and the confirmations due. Pure:
//! no I/O, no clock of its own (callers pass `now`).

use super::pending::PendingCall;
use crate::manager::link::LinkFailure;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Could the controller have received the request of a call that failed
/// this way? Only a transport failure after the connection was made
/// (a timeout, a reset, a broken answer): an HTTP answer says it was not
/// taken, and ureq names a failed connect or name lookup "Connection
/// Failed" / "Dns Failed" (nothing was sent).
pub(crate) fn may_have_arrived(f: &LinkFailure) -> bool {
    match f {
        LinkFailure::Transport(t) => {
            !(t.contains(": Connection Failed") || t.contains(": Dns Failed"))
        }
        LinkFailure::Http { .. } | LinkFailure::Answer(_) => false,
    }
}

/// Keys remembered at most (one per port, plus `uplink`; the oldest
/// failure is forgotten first beyond this).
const MAX_KEYS: usize = 16_384;

#[derive(Debug, Default)]
pub(crate) struct ReorderGuard {
    /// Key → when its last attempt failed.
    unsure: HashMap<String, Instant>,
    /// Key → (when to send again, the newest delivered call).
    confirm: BTreeMap<String, (Instant, PendingCall)>,
}

impl ReorderGuard {
    /// An attempt for `key` ended without an answer at `now`.
    pub(crate) fn failed(&mut self, key: &str, now: Instant) {
        if self.unsure.len() >= MAX_KEYS && !self.unsure.contains_key(key) {
            if let Some(oldest) = self
                .unsure
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
            {
                self.unsure.remove(&oldest);
            }
        }
        self.unsure.insert(key.to_string(), now);
    }

    /// `call` was delivered. After a failure of its key it is to be sent
    /// once more `window` after that failure; a confirmation already due
    /// later for the key now sends this newer call.
    pub(crate) fn delivered(&mut self, call: &PendingCall, window: Duration) {
        if let Some(t) = self.unsure.remove(&call.key) {
            self.confirm
                .insert(call.key.clone(), (t + window, call.clone()));
        } else if let Some((_, c)) = self.confirm.get_mut(&call.key) {
            if c.gen < call.gen {
                *c = call.clone();
            }
        }
    }

    /// The confirmations due at `now`, removed; `waiting(key)` = a newer
    /// call for the key is kept for delivery anyway (it is dropped then).
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        waiting: impl Fn(&str) -> bool,
    ) -> Vec<PendingCall> {
        let due: Vec<String> = self
            .confirm
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.confirm.remove(&k))
            .map(|(_, c)| c)
            .filter(|c| !waiting(&c.key))
            .collect()
    }

    /// When the next confirmation is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.confirm.values().map(|(t, _)| *t).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(key: &str, gen: u64, result: &str) -> PendingCall {
        let args = json!({"result": result});
        PendingCall::new(key.into(), "update_vm_result", json!({}), args, gen)
    }

    #[test]
    fn a_delivery_after_a_failure_is_confirmed_once_after_the_window() {
        let t0 = Instant::now();
        let w = Duration::from_secs(15);
        let mut g = ReorderGuard::default();
        // No failure: nothing to confirm.
        g.delivered(&call("vm:a", 1, "SUCCESS"), w);
        assert!(g.take_due(t0 + w * 10, |_| false).is_empty());
        // A failed attempt, then a newer call delivered.
        g.failed("vm:a", t0);
        g.delivered(&call("vm:a", 3, "SUCCESS"), w);
        assert_eq!(g.next_due(), Some(t0 + w));
        assert!(g.take_due(t0 + w / 2, |_| false).is_empty());
        // An even newer one delivered meanwhile replaces it.
        g.delivered(&call("vm:a", 4, "CREATE:FAIL"), w);
        let due = g.take_due(t0 + w, |_| false);
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].gen, due[0].args["result"].clone()),
            (4, json!("CREATE:FAIL"))
        );
        // Once only.
        assert!(g.take_due(t0 + w * 2, |_| false).is_empty());
        assert_eq!(g.next_due(), None);
    }

    #[test]
    fn a_waiting_newer_call_makes_the_confirmation_moot() {
        let t0 = Instant::now();
        let w = Duration::from_secs(1);
        let mut g = ReorderGuard::default();
        g.failed("vm:a", t0);
        g.delivered(&call("vm:a", 2, "SUCCESS"), w);
        g.failed("vm:b", t0);
        g.delivered(&call("vm:b", 3, "SUCCESS"), w);
        let due = g.take_due(t0 + w, |k| k == "vm:a");
        assert_eq!(
            due.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["vm:b"]
        );
        assert!(g.take_due(t0 + w, |_| false).is_empty());
    }

    #[test]
    fn only_failures_after_a_connect_are_unsure() {
        let t = |s: &str| LinkFailure::Transport(s.into());
        assert!(may_have_arrived(&t(
            "http://127.0.0.1:9/v1/rpc/x: Network Error: Network Error: Error encountered in the status line: timed out reading response"
        )));
        assert!(!may_have_arrived(&t(
            "http://127.0.0.1:9/v1/rpc/x: Connection Failed: Connect error: Connection refused (os error 111)"
        )));
        assert!(!may_have_arrived(&t(
            "http://nohost.invalid/v1/rpc/x: Dns Failed: resolve"
        )));
        assert!(!may_have_arrived(&LinkFailure::Http {
            code: 503,
            excerpt: String::new()
        }));
    }

    #[test]
    fn failures_remembered_are_bounded() {
        let t0 = Instant::now();
        let mut g = ReorderGuard::default();
        for i in 0..(MAX_KEYS + 10) {
            g.failed(&format!("vm:{i}"), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(g.unsure.len(), MAX_KEYS);
        assert!(!g.unsure.contains_key("vm:0"));
        assert!(g.unsure.contains_key(&format!("vm:{}", MAX_KEYS + 9)));
    }
}
