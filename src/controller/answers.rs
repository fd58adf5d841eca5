//! The controller's answers as values (pure): the stored uplink of
//! `request_uplink_info`, and the event list of a poll with the rules of
//! docs/protocol.md "Event numbering".
//!
//! Owns the answer formats. Calls nothing.

use super::*;

/// `request_uplink_info` result: object (or JSON text of one, as the
/// original controller sent it), `{}`/`null`/empty uplink = none.
pub fn parse_uplink_result(v: &Value) -> Result<Option<UplinkInfo>, String> {
    let parsed;
    let v = match v {
        Value::Null => return Ok(None),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|e| format!("uplink result is text but not JSON: {e}"))?;
            &parsed
        }
        other => other,
    };
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err("uplink result is not an object".into()),
    };
    let uplink = match obj.get("uplink") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("uplink result: 'uplink' is not a string".into()),
    };
    if uplink.is_empty() {
        return Ok(None);
    }
    let veth_intf = match obj.get("veth_intf") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("uplink result: 'veth_intf' is not a string".into()),
    };
    Ok(Some(UplinkInfo { uplink, veth_intf }))
}

/// Highest event number accepted (JSON-safe integers: 2^53 - 1).
pub(crate) const MAX_SEQ: u64 = (1 << 53) - 1;
/// Largest plausible jump of the event number past the cursor in one
/// answer (once the cursor is past 0).
pub(crate) const MAX_SEQ_LEAP: u64 = 1_000_000;

/// The `{"events": [...]}` envelope of a long-poll answer, judged against
/// the cursor `after` (rules in docs/protocol.md, "Event numbering"):
/// - events without a numeric `seq` or a string `type` are skipped (logged);
/// - a `seq` above [`MAX_SEQ`], or more than [`MAX_SEQ_LEAP`] past a
///   non-zero cursor, is implausible: the event is dropped (logged) and can
///   never move the cursor, so one bad number cannot deafen the agent;
/// - events with `seq <= after` are already acknowledged and dropped —
///   unless *every* usable event of the answer is strictly below the
///   cursor, which means the controller's numbering restarted: then they
///   are all returned and the caller resynchronises its cursor to them;
/// - two different events with one `seq`: the first is kept, the other
///   dropped with a log line;
/// - an answer that held events but none usable is an error (so the caller
///   backs off instead of spinning).
pub fn parse_events(body: &Value, after: u64) -> Result<Vec<ControllerEvent>, String> {
    let list = body
        .as_object()
        .ok_or("events answer is not a JSON object")?
        .get("events")
        .ok_or("events answer has no 'events'")?
        .as_array()
        .ok_or("'events' is not a list")?;
    let mut fresh = Vec::with_capacity(list.len());
    let mut old = Vec::new();
    let (mut bad, mut wild) = (0usize, 0usize);
    for (i, e) in list.iter().enumerate() {
        let seq = e.get("seq").and_then(Value::as_u64);
        let kind = e.get("type").and_then(Value::as_str);
        match (seq, kind) {
            (Some(seq), Some(kind)) => {
                if seq > MAX_SEQ || (after > 0 && seq > after.saturating_add(MAX_SEQ_LEAP)) {
                    wild += 1;
                    log::warn!(
                        "controller event seq {seq} is implausible (cursor {after}); dropped"
                    );
                    continue;
                }
                let ev = ControllerEvent {
                    seq,
                    kind: kind.to_string(),
                    payload: e.get("payload").cloned().unwrap_or(Value::Null),
                };
                if seq <= after {
                    old.push(ev);
                } else {
                    fresh.push(ev);
                }
            }
            _ => {
                bad += 1;
                log::warn!("controller event #{i} has no numeric 'seq' or string 'type'; skipped");
            }
        }
    }
    let stale = old.len();
    // Only events strictly below the cursor (none at it, which would be an
    // ordinary at-least-once repeat) mean a numbering restart.
    let restarted = !old.is_empty() && old.iter().all(|e| e.seq < after);
    let mut out = if fresh.is_empty() && restarted {
        log::warn!(
            "controller sent only events at or below the cursor {after} (its numbering \
             restarted?): resynchronising to them"
        );
        old
    } else {
        fresh
    };
    out.sort_by_key(|e| e.seq);
    let mut kept: Vec<ControllerEvent> = Vec::with_capacity(out.len());
    for ev in out {
        match kept.last() {
            Some(k) if k.seq == ev.seq => {
                if k.kind != ev.kind || k.payload != ev.payload {
                    log::warn!(
                        "controller sent two different events with seq {}; dropped the second ({})",
                        ev.seq,
                        ev.kind.chars().take(40).collect::<String>()
                    );
                }
            }
            _ => kept.push(ev),
        }
    }
    if kept.is_empty() && (bad > 0 || stale > 0 || wild > 0) {
        return Err(format!(
            "events answer held {bad} malformed, {wild} implausibly numbered and {stale} \
             already-acknowledged event(s), nothing new"
        ));
    }
    Ok(kept)
}
