//! `vdp-agent status --check`: the daemon's status document judged as a
//! monitoring-plugin (Nagios/Icinga) result: one line and the exit code.
//!
//! - 0 OK: the uplink is up, every thread alive, no failed VSI, no kept
//!   result, nothing pending.
//! - 1 WARNING: VSIs waiting for lldpad's verdict, results kept for the
//!   controller (undelivered), a thread restarting after a caught panic, or
//!   a controller error in the last [`RECENT_ERROR`] (the document's
//!   `health.controller_error_age_s`; without it, from an older daemon: a
//!   controller error while results are kept or before any success).
//! - 2 CRITICAL: the daemon does not answer, the uplink is down or not
//!   found, a thread stopped or stuck, a VSI failed.
//! - 3 UNKNOWN: the answer is not a status document.
//!
//! Owns the rules (also the thread rule the systemd watchdog obeys). Pure:
//! a JSON value in, a verdict out (the CLI does the socket query).

use serde_json::Value;

/// Monitoring-plugin states, with their exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Warning => "WARNING",
            Health::Critical => "CRITICAL",
            Health::Unknown => "UNKNOWN",
        }
    }
    pub fn exit_code(self) -> i32 {
        self as i32
    }
}

/// The one line a plugin prints: `VDP-AGENT STATE - what`.
pub fn line(state: Health, what: &str) -> String {
    format!("VDP-AGENT {} - {what}", state.label())
}

/// A thread's state as the registry shows it, judged: `alive`/`starting`
/// OK, `restarting` (after a caught panic) WARNING, anything else
/// (`stuck`, `stopped`) CRITICAL. The systemd watchdog uses the same rule:
/// no `WATCHDOG=1` while a thread is critical.
pub(crate) fn thread_health(state: &str) -> Health {
    match state {
        "alive" | "starting" => Health::Ok,
        "restarting" => Health::Warning,
        _ => Health::Critical,
    }
}

/// The threads that hold back the systemd watchdog (critical ones), as
/// `name state` texts; empty = every thread makes progress.
pub(crate) fn watchdog_blockers<'a>(
    threads: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    threads
        .into_iter()
        .filter(|(_, st)| thread_health(st) == Health::Critical)
        .map(|(n, st)| format!("{n} {st}"))
        .collect()
}

/// A controller error younger than this makes a WARNING.
pub(crate) const RECENT_ERROR: std::time::Duration = std::time::Duration::from_secs(60);

/// Judge a status document.
pub fn judge(v: &Value) -> (Health, String) {
    let (Some(threads), Some(vsis), Some(uplink)) = (
        v.get("threads").and_then(Value::as_object),
        v.get("vsis").and_then(Value::as_array),
        v.get("uplink").and_then(Value::as_object),
    ) else {
        return (Health::Unknown, "not a vdp-agent status document".into());
    };
    let mut critical: Vec<String> = Vec::new();
    let mut warning: Vec<String> = Vec::new();

    let phy = uplink.get("phy").and_then(Value::as_str).unwrap_or("");
    let detected = uplink.get("detected").and_then(Value::as_bool) == Some(true);
    if phy.is_empty() || !detected {
        let why = uplink
            .get("fail_reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .unwrap_or("not found");
        critical.push(format!("uplink down ({why})"));
    }
    for (name, state) in threads {
        let state = state.as_str().unwrap_or("?");
        match thread_health(state) {
            Health::Ok => {}
            Health::Warning => warning.push(format!("thread {name} {state}")),
            _ => critical.push(format!("thread {name} {state}")),
        }
    }
    let result_count = |r: &str| {
        vsis.iter()
            .filter(|x| x.get("result").and_then(Value::as_str) == Some(r))
            .count()
    };
    // A SUCCESS without a VDP VLAN is the bridge's verdict reported as
    // the original does (VDP VLAN -1): with a reason it failed, without one
    // the bridge has not given a VLAN yet.
    let vlan_less = |with_reason: bool| {
        vsis.iter()
            .filter(|x| {
                x.get("result").and_then(Value::as_str) == Some("SUCCESS")
                    && x.get("vdp_vlan").is_some_and(Value::is_null)
                    && x.get("fail_reason").is_some_and(|r| !r.is_null()) == with_reason
            })
            .count()
    };
    let failed = vsis.len() - result_count("SUCCESS") - result_count("PENDING") + vlan_less(true);
    if failed > 0 {
        critical.push(format!("{failed} VSI(s) failed"));
    }
    let no_vlan = vlan_less(false);
    if no_vlan > 0 {
        warning.push(format!(
            "{no_vlan} VSI(s) without a VLAN from the bridge yet"
        ));
    }
    let pending = result_count("PENDING");
    if pending > 0 {
        warning.push(format!("{pending} VSI(s) pending"));
    }
    let kept = v
        .pointer("/server/pending_results")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if kept > 0 {
        warning.push(format!("{kept} result(s) not delivered to the controller"));
    }
    let last_ok = v.pointer("/server/last_ok").and_then(Value::as_str);
    if let Some(err) = v
        .pointer("/server/last_error")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
    {
        // The status keeps the last error text for good; its age tells
        // whether it is recent.
        let age = v
            .pointer("/health/controller_error_age_s")
            .and_then(Value::as_f64);
        match age {
            Some(a) if a < RECENT_ERROR.as_secs_f64() => {
                warning.push(format!("controller error {a:.0}s ago: {err}"))
            }
            _ if last_ok.is_none() || kept > 0 => warning.push(format!("controller: {err}")),
            _ => {}
        }
    }
    let (state, mut parts) = if !critical.is_empty() {
        (Health::Critical, critical)
    } else if !warning.is_empty() {
        (Health::Warning, warning)
    } else {
        (
            Health::Ok,
            vec![format!(
                "uplink {phy}, {} VSI(s), {} thread(s) alive",
                vsis.len(),
                threads.len()
            )],
        )
    };
    parts.dedup();
    (state, parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "host_id": "c1", "version": "x",
            "uplink": {"phy": "eth2", "veth": "LLDPLeth2", "detected": true, "fail_reason": ""},
            "vsis": [{"port_uuid": "p1", "result": "SUCCESS"}],
            "queues": {"main": 0, "err": 0},
            "threads": {"queue-worker": "alive", "flow-check": "alive"},
            "server": {"last_ok": "Thu Dec  3 06:00:00 2026", "last_error": null, "pending_results": 0},
        })
    }

    #[test]
    fn vlan_less_success_is_failed_with_a_reason_and_a_warning_without() {
        let mut v = doc();
        v["vsis"] = json!([
            {"port_uuid": "p1", "result": "SUCCESS", "vdp_vlan": 3001, "fail_reason": null},
            {"port_uuid": "p2", "result": "SUCCESS", "vdp_vlan": null, "fail_reason": null},
        ]);
        assert_eq!(
            judge(&v),
            (
                Health::Warning,
                "1 VSI(s) without a VLAN from the bridge yet".into()
            )
        );
        v["vsis"][1]["fail_reason"] = json!("Error returned by Bridge: Other Failures");
        assert_eq!(judge(&v), (Health::Critical, "1 VSI(s) failed".into()));
    }

    #[test]
    fn ok() {
        let (h, what) = judge(&doc());
        assert_eq!(h, Health::Ok);
        assert_eq!(
            line(h, &what),
            "VDP-AGENT OK - uplink eth2, 1 VSI(s), 2 thread(s) alive"
        );
        assert_eq!(h.exit_code(), 0);
    }

    #[test]
    fn warning_states() {
        let mut v = doc();
        v["vsis"][0]["result"] = json!("PENDING");
        assert_eq!(judge(&v), (Health::Warning, "1 VSI(s) pending".into()));
        let mut v = doc();
        v["server"]["pending_results"] = json!(3);
        v["server"]["last_error"] = json!("update_vm_result: HTTP 503");
        assert_eq!(
            judge(&v),
            (
                Health::Warning,
                "3 result(s) not delivered to the controller; controller: update_vm_result: HTTP 503"
                    .into()
            )
        );
        // A controller error in the last minute, nothing kept: WARNING;
        // the same error older than a minute: OK.
        let mut v = doc();
        v["server"]["last_error"] = json!("heartbeat: transport: connection refused");
        v["health"] = json!({"controller_error_age_s": 12.4});
        assert_eq!(
            judge(&v),
            (
                Health::Warning,
                "controller error 12s ago: heartbeat: transport: connection refused".into()
            )
        );
        v["health"] = json!({"controller_error_age_s": 75.0});
        assert_eq!(judge(&v).0, Health::Ok);
        v["health"] = json!({"controller_error_age_s": null});
        assert_eq!(judge(&v).0, Health::Ok);
        let mut v = doc();
        v["threads"]["flow-check"] = json!("restarting");
        assert_eq!(judge(&v).0, Health::Warning);
        assert_eq!(Health::Warning.exit_code(), 1);
    }

    #[test]
    fn critical_states() {
        let mut v = doc();
        v["uplink"] = json!({"phy": null, "veth": null, "detected": false, "fail_reason": "Uplink not yet discovered"});
        assert_eq!(
            judge(&v),
            (
                Health::Critical,
                "uplink down (Uplink not yet discovered)".into()
            )
        );
        let mut v = doc();
        v["threads"]["flow-check"] = json!("stuck");
        assert_eq!(
            judge(&v),
            (Health::Critical, "thread flow-check stuck".into())
        );
        let mut v = doc();
        v["vsis"][0]["result"] = json!("CREATE:FAIL");
        v["vsis"][0]["fail_reason"] = json!("Invalid VID");
        assert_eq!(judge(&v), (Health::Critical, "1 VSI(s) failed".into()));
        // A critical finding wins over warnings.
        v["server"]["pending_results"] = json!(1);
        assert_eq!(judge(&v).0, Health::Critical);
        assert_eq!(Health::Critical.exit_code(), 2);
    }

    #[test]
    fn watchdog_rule_is_the_thread_rule() {
        assert!(
            watchdog_blockers([("a", "alive"), ("b", "starting"), ("c", "restarting")]).is_empty()
        );
        assert_eq!(
            watchdog_blockers([
                ("queue-worker", "stuck"),
                ("b", "alive"),
                ("signal", "stopped")
            ]),
            vec!["queue-worker stuck", "signal stopped"]
        );
    }

    #[test]
    fn unknown_for_anything_else() {
        assert_eq!(judge(&json!({"hello": 1})).0, Health::Unknown);
        assert_eq!(judge(&json!([1, 2])).0, Health::Unknown);
        assert_eq!(Health::Unknown.exit_code(), 3);
    }
}
