//! Live migration in `vdp-lab server` (the reference controller) over real
//! HTTP on 127.0.0.1: the `vm_migration` events each host's poller sees, in
//! order, with phase and payload, for a completed migration (switchover on
//! the destination's report, or by the timer), an aborted one (explicit
//! step, or the destination's failure), the reports kept apart during a
//! migration, refusals, and the
//! `vdp-lab port migrate` command line.

use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

mod http_common;

use http_common::{http, lab_server, NET, P1};
const LAB: &str = env!("CARGO_BIN_EXE_vdp-lab");

/// An agent's poller: its cursor and what it saw.
struct Poller {
    base: String,
    host: &'static str,
    after: u64,
}

impl Poller {
    fn new(base: &str, host: &'static str) -> Poller {
        Poller {
            base: base.into(),
            host,
            after: 0,
        }
    }

    /// One long-poll (up to `wait` s); returns (type, payload) of the events.
    fn poll(&mut self, wait: u64) -> Vec<(String, Value)> {
        let (code, v) = http(
            "GET",
            &format!(
                "{}/v1/agents/{}/events?after={}&wait={wait}",
                self.base, self.host, self.after
            ),
            None,
        );
        assert_eq!(code, 200, "{v}");
        let evs = v["events"].as_array().cloned().unwrap_or_default();
        if let Some(last) = evs.last() {
            self.after = last["seq"].as_u64().unwrap();
        }
        evs.iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["payload"].clone(),
                )
            })
            .collect()
    }

    fn report(&self, result: &str, local: i64, vdp: i64) {
        let (code, _) = http(
            "POST",
            &format!("{}/v1/rpc/update_vm_result", self.base),
            Some(json!({"context": {"agent": self.host},
                        "args": {"port_uuid": P1, "result": result, "fail_reason": null,
                                 "local_vlan": local, "vdp_vlan": vdp}})),
        );
        assert_eq!(code, 200);
    }
}

fn add_port(base: &str, host: &str) {
    let (code, v) = http(
        "POST",
        &format!("{base}/admin/ports"),
        Some(
            json!({"host": host, "port_uuid": P1, "mac": "fa:16:3e:00:00:01",
                    "net_uuid": NET, "segmentation_id": 30001, "vm_name": "vm1"}),
        ),
    );
    assert_eq!(code, 200, "{v}");
}

fn migrate(base: &str, body: Value) -> (u16, Value) {
    http(
        "POST",
        &format!("{base}/admin/ports/{P1}/migrate"),
        Some(body),
    )
}

fn port(base: &str) -> Value {
    http("GET", &format!("{base}/admin/ports/{P1}"), None).1
}

/// The phase, host, status of one `vm_migration` event; checks the VM object.
fn phase(e: &(String, Value)) -> (String, String, String) {
    assert_eq!(e.0, "vm_migration", "{e:?}");
    let p = &e.1;
    assert_eq!(p["port_uuid"], P1);
    assert_eq!(p["vm_mac"], "fa:16:3e:00:00:01");
    assert_eq!(p["net_uuid"], NET);
    assert_eq!(p["segmentation_id"], 30001);
    assert_eq!(p["oui"]["vm_name"], "vm1");
    let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
    (s("phase"), s("host"), s("status"))
}

fn ph(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}

#[test]
fn completed_migration_in_novas_order() {
    let s = lab_server(None, None);
    let base = s.url();
    let (mut h1, mut h2) = (Poller::new(&base, "h1"), Poller::new(&base, "h2"));
    add_port(&base, "h1");
    assert_eq!(h1.poll(0)[0].0, "vm_info");
    h1.report("SUCCESS", 4, 3004);

    let (code, v) = migrate(&base, json!({"to": "h2"}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["migration"]["phase"], "arriving");
    assert_eq!(v["migration"]["from"], "h1");
    // the destination hears `arriving` first, the source nothing yet
    let e = h2.poll(5);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(phase(&e[0]), ph("arriving", "h2", "up"));
    assert!(h1.poll(0).is_empty());
    // a second migration while this one runs is refused
    assert_eq!(migrate(&base, json!({"to": "h3"})).0, 409);
    // the destination's report (pre-associated) is the switchover point
    h2.report("SUCCESS", 7, 3004);
    let p = port(&base);
    assert_eq!(p["host"], "h2", "{p}");
    assert_eq!(
        (p["result"].clone(), p["local_vlan"].clone()),
        (Value::Null, json!(7))
    );
    let e = h2.poll(5);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(phase(&e[0]), ph("arrived", "h2", "up"));
    let e = h1.poll(5);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(phase(&e[0]), ph("left", "h1", "down"));
    // `left` carries the source's VLANs, as a vm_info down does
    assert_eq!(
        (e[0].1["local_vlan"].clone(), e[0].1["vdp_vlan"].clone()),
        (json!(4), json!(3004))
    );

    // after the switchover: the destination's report is the port's, the
    // source's is kept on the migration
    h2.report("SUCCESS", 7, 3004);
    h1.report("SUCCESS", 4, 3004);
    let p = port(&base);
    assert_eq!(
        (p["result"].clone(), p["reported_by"].clone()),
        (json!("SUCCESS"), json!("h2")),
        "{p}"
    );
    let (_, m) = http("GET", &format!("{base}/admin/ports/{P1}/migrate"), None);
    assert_eq!(m["phase"], "arrived");
    assert_eq!(m["dest_report"]["local_vlan"], 7);
    assert_eq!(m["source_report"]["local_vlan"], 4);
    let evs: Vec<(String, String)> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["phase"].as_str().unwrap().into(),
                e["host"].as_str().unwrap().into(),
            )
        })
        .collect();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        evs,
        [
            pair("arriving", "h2"),
            pair("arrived", "h2"),
            pair("left", "h1")
        ]
    );
    // seq numbers of the record are the ones the pollers saw
    assert_eq!(m["events"][2]["seq"], h1.after);
    assert_eq!(m["events"][1]["seq"], h2.after);
    // the port is now in h2's bulk, not in h1's
    for (host, n) in [("h1", 0), ("h2", 1)] {
        http(
            "POST",
            &format!("{base}/v1/rpc/save_uplink"),
            Some(
                json!({"context": {}, "args": {"agent": host, "uplink": "eth2",
                        "veth_intf": "LLDPLeth2", "memb_port_list": null, "fail_reason": ""}}),
            ),
        );
        let poller = if host == "h1" { &mut h1 } else { &mut h2 };
        let e = poller.poll(5);
        assert_eq!(e[0].0, "vm_info");
        assert_eq!(e[0].1.as_array().unwrap().len(), n, "{host}: {e:?}");
    }
    // migrating to where it is, or an unknown port, is refused
    assert_eq!(migrate(&base, json!({"to": "h2"})).0, 409);
    let (code, _) = http(
        "POST",
        &format!("{base}/admin/ports/00000000-0000-4000-8000-000000000000/migrate"),
        Some(json!({"to": "h1"})),
    );
    assert_eq!(code, 404);
    assert_eq!(migrate(&base, json!({"to": 5})).0, 400);
    assert_eq!(migrate(&base, json!({"to": "h1", "wait_s": 9999})).0, 400);
}

#[test]
fn aborted_migration_tells_the_destination_only() {
    let s = lab_server(None, None);
    let base = s.url();
    let (mut h1, mut h2) = (Poller::new(&base, "h1"), Poller::new(&base, "h2"));
    add_port(&base, "h1");
    h1.poll(0);
    h1.report("SUCCESS", 4, 3004);
    let (code, v) = migrate(&base, json!({"to": "h2", "manual": true}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(phase(&h2.poll(5)[0]), ph("arriving", "h2", "up"));
    // manual: the destination's report does not switch over
    h2.report("SUCCESS", 9, 3004);
    let (_, w) = http(
        "GET",
        &format!("{base}/admin/ports/{P1}/migrate/wait?until=ready&timeout=5"),
        None,
    );
    assert_eq!(w["matched"], true, "{w}");
    assert_eq!(w["migration"]["phase"], "arriving");
    assert!(h2.poll(1).is_empty());
    let p = port(&base);
    assert_eq!(
        (
            p["host"].clone(),
            p["result"].clone(),
            p["local_vlan"].clone()
        ),
        (json!("h1"), json!("SUCCESS"), json!(4)),
        "{p}"
    );
    // the abort step
    let (code, v) = http(
        "POST",
        &format!("{base}/admin/ports/{P1}/migrate/abort"),
        Some(json!({})),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["migration"]["phase"], "aborted");
    let e = h2.poll(5);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(phase(&e[0]), ph("aborted", "h2", "down"));
    // the destination's own VLANs, as known from its report
    assert_eq!(
        (e[0].1["local_vlan"].clone(), e[0].1["vdp_vlan"].clone()),
        (json!(9), json!(3004))
    );
    assert!(h1.poll(1).is_empty(), "the source hears nothing");
    // the destination's clean-up report stays on the migration
    h2.report("SUCCESS", 9, 3004);
    let p = port(&base);
    assert_eq!(
        (p["host"].clone(), p["reported_by"].clone()),
        (json!("h1"), json!("h1")),
        "{p}"
    );
    let (code, _) = http(
        "POST",
        &format!("{base}/admin/ports/{P1}/migrate/switchover"),
        Some(json!({})),
    );
    assert_eq!(code, 409, "over already");
    // a new migration may start
    assert_eq!(migrate(&base, json!({"to": "h2", "manual": true})).0, 200);
}

#[test]
fn automatic_switchover_by_the_timer_and_abort_at_the_switchover_point() {
    let s = lab_server(None, None);
    let base = s.url();
    let (mut h1, mut h2) = (Poller::new(&base, "h1"), Poller::new(&base, "h2"));
    add_port(&base, "h1");
    h1.poll(0);
    // no report from the destination: the switchover comes after wait_s
    let t = Instant::now();
    assert_eq!(migrate(&base, json!({"to": "h2", "wait_s": 1})).0, 200);
    assert_eq!(phase(&h2.poll(5)[0]), ph("arriving", "h2", "up"));
    let e = h2.poll(10);
    assert_eq!(phase(&e[0]), ph("arrived", "h2", "up"));
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(phase(&h1.poll(5)[0]), ph("left", "h1", "down"));
    assert_eq!(port(&base)["host"], "h2");
    // back to h1, aborting at the switchover point (the destination's report)
    assert_eq!(migrate(&base, json!({"to": "h1", "abort": true})).0, 200);
    assert_eq!(phase(&h1.poll(5)[0]), ph("arriving", "h1", "up"));
    h1.report("SUCCESS", 5, 3004);
    assert_eq!(phase(&h1.poll(5)[0]), ph("aborted", "h1", "down"));
    assert!(h2.poll(1).is_empty());
    assert_eq!(port(&base)["host"], "h2");
    // a destination that fails to prepare aborts an automatic migration
    assert_eq!(migrate(&base, json!({"to": "h1"})).0, 200);
    assert_eq!(phase(&h1.poll(5)[0]), ph("arriving", "h1", "up"));
    h1.report("CREATE:FAIL", -1, -1);
    assert_eq!(phase(&h1.poll(5)[0]), ph("aborted", "h1", "down"));
    assert!(h2.poll(1).is_empty());
    let p = port(&base);
    assert_eq!(p["host"], "h2", "{p}");
    let (_, m) = http("GET", &format!("{base}/admin/ports/{P1}/migrate"), None);
    assert_eq!(m["dest_report"]["result"], "CREATE:FAIL", "{m}");
}

fn lab(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(LAB).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn port_migrate_command_line() {
    let s = lab_server(None, None);
    let base = s.url();
    let mut h2 = Poller::new(&base, "h2");
    add_port(&base, "h1");
    // manual: returns at the switchover point, which the script then takes
    let (rc, out, err) = lab(&[
        "port", "migrate", P1, "--to", "h2", "--manual", "--server", &base,
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("vm_migration arriving to h2"), "{out}");
    assert!(out.contains("--switchover"), "{out}");
    let (rc, out, _) = lab(&[
        "port",
        "migrate",
        P1,
        "--wait",
        "ready",
        "--timeout",
        "1",
        "--server",
        &base,
    ]);
    assert_eq!(rc, 1, "nobody reported: {out}");
    let (rc, out, err) = lab(&["port", "migrate", P1, "--switchover", "--server", &base]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("h1 -> h2: arrived"), "{out}");
    assert!(out.contains("vm_migration left to h1"), "{out}");
    let got: Vec<String> = h2.poll(5).iter().map(|e| phase(e).0).collect();
    assert_eq!(got, ["arriving", "arrived"]);
    // automatic with --abort: waits for the end (timer, 1 s) and prints it
    let (rc, out, err) = lab(&[
        "port", "migrate", P1, "--to", "h1", "--abort", "--wait-s", "1", "--server", &base,
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("h2 -> h1: aborted"), "{out}");
    let (rc, out, _) = lab(&["port", "migrate", P1, "--show", "--server", &base]);
    assert_eq!(rc, 0);
    assert!(out.contains("\"phase\": \"aborted\""), "{out}");
    // usage and refusals
    assert_eq!(
        lab(&["port", "migrate", "--to", "h1", "--server", &base]).0,
        2
    );
    let (rc, _, err) = lab(&["port", "migrate", P1, "--to", "h2", "--server", &base]);
    assert_eq!(rc, 1, "already on h2: {err}");
    assert!(err.contains("409"), "{err}");
}
