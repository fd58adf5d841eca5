//! The reference controller's admin routes (`/admin/...`): ports, faults,
//! events, calls, uplinks, topology, agents, and the port wait; the
//! migration routes are handed to `migrate`.
//!
//! Owns the admin request handling. Calls the store.

use super::*;

pub(super) fn port_from(v: &Value) -> Result<PortRec, Reply> {
    let req = |k: &str| -> Result<String, Reply> {
        v.get(k)
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| err(400, format!("'{k}' (string) is required")))
    };
    let opt = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
    let seg = v
        .get("segmentation_id")
        .and_then(Value::as_u64)
        .ok_or_else(|| err(400, "'segmentation_id' (number) is required"))?;
    Ok(PortRec {
        host: req("host")?,
        port_uuid: req("port_uuid")?,
        mac: req("mac")?,
        net_uuid: req("net_uuid")?,
        segmentation_id: seg,
        vm_name: opt("vm_name"),
        vm_uuid: opt("vm_uuid"),
        ip: opt("ip"),
        fwd_mod: opt("fwd_mod").unwrap_or_else(|| "anycast-gateway".into()),
        gw_mac: opt("gw_mac"),
        status: "up".into(),
        result: None,
        local_vlan: None,
        vdp_vlan: None,
        fail_reason: None,
        when: None,
        reported_by: None,
    })
}

pub(super) fn admin(
    shared: &Arc<Shared>,
    method: &str,
    segs: &[&str],
    q: &[(String, String)],
    body: &[u8],
) -> Reply {
    let body = match parse_body(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let ("GET", ["ports", uuid, "wait"]) = (method, segs) {
        return wait_port(shared, uuid, q);
    }
    if let ["ports", uuid, "migrate", rest @ ..] = segs {
        return super::migrate::route(shared, method, uuid, rest, q, &body);
    }
    let mut st = shared.st.lock();
    let reply = match (method, segs) {
        ("POST", ["ports"]) => match port_from(&body) {
            Ok(rec) => {
                let uuid = rec.port_uuid.clone();
                let seq = st.add_port(rec);
                (200, json!({"port": to_json(&st.port(&uuid)), "seq": seq}))
            }
            Err(r) => r,
        },
        ("GET", ["ports"]) => {
            let host = qget(q, "host");
            let ports: Vec<Value> = st
                .ports()
                .values()
                .filter(|r| host.is_none_or(|h| r.host == h))
                .map(to_json)
                .collect();
            (200, json!({"ports": ports}))
        }
        ("GET", ["ports", uuid]) => match st.port(uuid) {
            Some(r) => (200, to_json(r)),
            None => err(404, "no such port"),
        },
        ("DELETE", ["ports", uuid]) => {
            if qget(q, "purge").is_some_and(|v| v == "1" || v == "true") {
                if st.purge_port(uuid) {
                    (200, json!({"purged": uuid}))
                } else {
                    err(404, "no such port")
                }
            } else {
                let quiet = qget(q, "quiet").is_some_and(|v| v == "1" || v == "true");
                match st.delete_port(uuid, !quiet) {
                    Some(seq) => (200, json!({"port": to_json(&st.port(uuid)), "seq": seq})),
                    None => err(404, "no such port"),
                }
            }
        }
        ("GET", ["calls"]) => {
            let m = qget(q, "method");
            let since: u64 = qget(q, "since").and_then(|s| s.parse().ok()).unwrap_or(0);
            let calls: Vec<Value> = st
                .calls
                .iter()
                .filter(|c| c.id > since && m.is_none_or(|m| c.method == m))
                .map(to_json)
                .collect();
            (200, json!({"calls": calls}))
        }
        ("DELETE", ["calls"]) => {
            st.calls.clear();
            (200, json!({"calls": []}))
        }
        ("POST", ["events", host]) => {
            let seq = if let Some(raw) = body.get("raw") {
                st.queue(host, Value::Null, Value::Null, Some(raw.clone()))
            } else {
                let kind = body.get("type").cloned().unwrap_or(Value::Null);
                let payload = body.get("payload").cloned().unwrap_or(Value::Null);
                st.queue(host, kind, payload, None)
            };
            (200, json!({"seq": seq}))
        }
        ("GET", ["events", host]) => {
            let acked = st.queues.get(*host).map(|q| q.acked).unwrap_or(0);
            (
                200,
                json!({"acked": acked, "next_seq": st.next_seq(host), "events": st.events_after(host, 0)}),
            )
        }
        ("GET", ["fault"]) => (200, to_json(&st.fault)),
        ("POST", ["fault"]) => {
            if let Some(n) = body.get("fail_next").and_then(Value::as_u64) {
                st.fault.fail_next = n;
            }
            if let Some(d) = body.get("delay_ms").and_then(Value::as_u64) {
                st.fault.delay_ms = d;
            }
            if let Some(d) = body.get("down").and_then(Value::as_bool) {
                st.fault.down = d;
            }
            if let Some(b) = body.get("bulk_down_without_vlans").and_then(Value::as_bool) {
                st.fault.bulk_down_without_vlans = b;
            }
            if let Some(m) = body.get("delay_methods").and_then(Value::as_array) {
                st.fault.delay_methods = m
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
            }
            (200, to_json(&st.fault))
        }
        ("DELETE", ["fault"]) => {
            st.fault = Fault::default();
            (200, to_json(&st.fault))
        }
        ("GET", ["uplinks"]) => (200, json!({"uplinks": to_json(st.uplinks())})),
        ("PUT", ["uplinks", host]) => {
            st.set_uplink(host, body.clone());
            let seq = st.queue(host, json!("uplink"), body, None);
            (200, json!({"seq": seq}))
        }
        ("GET", ["agents"]) => {
            let mut out = serde_json::Map::new();
            let mut hosts: Vec<String> = st.agents().keys().cloned().collect();
            hosts.extend(st.queues.keys().cloned());
            hosts.sort();
            hosts.dedup();
            for h in hosts {
                let a = st.agents().get(&h).cloned().unwrap_or_default();
                out.insert(
                    h.clone(),
                    json!({
                        "last_heartbeat": a.last_heartbeat,
                        "last_seen": a.last_seen,
                        "next_seq": st.next_seq(&h),
                        "retained": st.queues.get(&h).map(|q| q.events.len()).unwrap_or(0),
                    }),
                );
            }
            (200, json!({"agents": out}))
        }
        ("GET", ["topology"]) => (200, json!({"topology": to_json(st.topology())})),
        ("GET", ["migrations"]) => super::migrate::list(&st),
        _ => err(404, "no such admin endpoint"),
    };
    shared.cv.notify_all();
    reply
}

pub(super) fn wait_port(shared: &Shared, uuid: &str, q: &[(String, String)]) -> Reply {
    let want = qget(q, "result")
        .filter(|s| !s.is_empty())
        .map(String::from);
    let timeout = qget(q, "timeout")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(30)
        .min(600);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut st = shared.st.lock();
    loop {
        let Some(rec) = st.port(uuid) else {
            return err(404, "no such port");
        };
        let matched = match (&rec.result, &want) {
            (Some(r), Some(w)) => r == w,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if matched
            || shared.stopping.load(Ordering::SeqCst)
            || shared.cv.wait_until(&mut st, deadline).timed_out()
        {
            let rec = st.port(uuid).cloned();
            let matched = matched
                || rec.as_ref().is_some_and(|r| match (&r.result, &want) {
                    (Some(r), Some(w)) => r == w,
                    (Some(_), None) => true,
                    _ => false,
                });
            let ms = st
                .event_to_result(uuid)
                .map(|d| (d.as_secs_f64() * 1e5).round() / 100.0);
            return (
                200,
                json!({"matched": matched, "port": to_json(&rec), "event_to_result_ms": ms}),
            );
        }
    }
}
