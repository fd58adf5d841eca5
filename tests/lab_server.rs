//! `vdp-lab server` (the reference controller) over real HTTP on 127.0.0.1:
//! state surviving a restart, long-polls not blocking other requests, fault
//! injection, bad requests, and the `vdp-lab server` / `vdp-lab port`
//! command lines run as the built binary.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod http_common;

use http_common::{http, lab_server, temp_dir, NET, P1};
const LAB: &str = env!("CARGO_BIN_EXE_vdp-lab");

/// A `vdp-lab server` child process, killed on drop.
struct Proc(Child, String);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_server(extra: &[&str]) -> Proc {
    let mut child = Command::new(LAB)
        .args(["server", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    Proc(child, url)
}

fn rpc(base: &str, method: &str, context: Value, args: Value) -> (u16, Value) {
    http(
        "POST",
        &format!("{base}/v1/rpc/{method}"),
        Some(json!({"context": context, "args": args})),
    )
}

fn port_json(host: &str, uuid: &str) -> Value {
    json!({"host": host, "port_uuid": uuid, "mac": "fa:16:3e:00:00:01",
           "net_uuid": NET, "segmentation_id": 30001, "vm_name": "vm1"})
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
fn state_survives_a_server_restart() {
    let dir = temp_dir("state");
    let state = dir.path().join("lab-state.json");
    let s = lab_server(Some(state.clone()), None);
    let base = s.url();
    let (code, v) = http(
        "POST",
        &format!("{base}/admin/ports"),
        Some(port_json("h1", P1)),
    );
    assert_eq!(code, 200);
    let seq1 = v["seq"].as_u64().unwrap();
    rpc(
        &base,
        "update_vm_result",
        json!({"agent": "h1"}),
        json!({"port_uuid": P1, "result": "SUCCESS", "local_vlan": 4, "vdp_vlan": 3004, "fail_reason": null}),
    );
    rpc(
        &base,
        "save_uplink",
        json!({}),
        json!({"agent": "h1", "uplink": "eth2", "veth_intf": "LLDPLeth2", "memb_port_list": null, "fail_reason": ""}),
    );
    rpc(
        &base,
        "heartbeat",
        json!({}),
        json!({"agent": "h1", "when": "Tue Nov 24 22:40:00 2026"}),
    );
    s.stop();

    let s = lab_server(Some(state.clone()), None);
    let base = s.url();
    let (_, p) = http("GET", &format!("{base}/admin/ports/{P1}"), None);
    assert_eq!(p["result"], "SUCCESS");
    assert_eq!(p["local_vlan"], 4);
    assert_eq!(p["vdp_vlan"], 3004);
    assert_eq!(p["reported_by"], "h1");
    assert!(p["when"].is_string());
    let (_, r) = rpc(
        &base,
        "request_uplink_info",
        json!({}),
        json!({"agent": "h1"}),
    );
    assert_eq!(r["result"]["uplink"], "eth2");
    assert_eq!(r["result"]["veth_intf"], "LLDPLeth2");
    let (_, a) = http("GET", &format!("{base}/admin/agents"), None);
    assert_eq!(
        a["agents"]["h1"]["last_heartbeat"],
        "Tue Nov 24 22:40:00 2026"
    );
    // Sequence numbers never go back after a restart.
    let (_, v) = http("DELETE", &format!("{base}/admin/ports/{P1}"), None);
    assert!(v["seq"].as_u64().unwrap() > seq1 + 1, "{v}");
    assert_eq!(v["port"]["status"], "down");
    // An agent acknowledging numbers this server never issued still gets new events.
    let (_, e) = http(
        "GET",
        &format!("{base}/v1/agents/h9/events?after=500&wait=0"),
        None,
    );
    assert_eq!(e["events"], json!([]));
    http(
        "POST",
        &format!("{base}/admin/ports"),
        Some(port_json("h9", "99999999-2222-3333-4444-555555555555")),
    );
    let (_, e) = http(
        "GET",
        &format!("{base}/v1/agents/h9/events?after=500&wait=0"),
        None,
    );
    assert_eq!(e["events"][0]["seq"], 501);
}

#[test]
fn wait_reports_the_controllers_event_to_result_time() {
    let s = lab_server(None, None);
    let base = s.url();
    let wait = |uuid: &str| {
        http(
            "GET",
            &format!("{base}/admin/ports/{uuid}/wait?result=SUCCESS&timeout=1"),
            None,
        )
        .1
    };
    let report = |uuid: &str| {
        rpc(
            &base,
            "update_vm_result",
            json!({"agent": "h1"}),
            json!({"port_uuid": uuid, "result": "SUCCESS", "local_vlan": 4, "vdp_vlan": 3004, "fail_reason": null}),
        )
    };
    // A result for an up event never handed out has no time.
    http(
        "POST",
        &format!("{base}/admin/ports"),
        Some(port_json("h1", P1)),
    );
    report(P1);
    let v = wait(P1);
    assert_eq!(v["matched"], true);
    assert_eq!(v["event_to_result_ms"], Value::Null, "{v}");
    // Re-added: served by an events answer, reported 100 ms later.
    let (_, added) = http(
        "POST",
        &format!("{base}/admin/ports"),
        Some(port_json("h1", P1)),
    );
    let seq = added["seq"].as_u64().unwrap();
    let (_, ev) = http(
        "GET",
        &format!("{base}/v1/agents/h1/events?after={}&wait=0", seq - 1),
        None,
    );
    assert_eq!(ev["events"][0]["payload"]["port_uuid"], P1);
    std::thread::sleep(Duration::from_millis(100));
    report(P1);
    let ms = wait(P1)["event_to_result_ms"].as_f64().unwrap();
    assert!((100.0..5000.0).contains(&ms), "{ms}");
    // Served again (the agent polls once more) and reported again: the
    // first hand-out and the first SUCCESS stay.
    http(
        "GET",
        &format!("{base}/v1/agents/h1/events?after={}&wait=0", seq - 1),
        None,
    );
    report(P1);
    assert_eq!(wait(P1)["event_to_result_ms"].as_f64(), Some(ms));
}

#[test]
fn long_polls_do_not_block_other_requests() {
    let s = lab_server(None, None);
    let base = s.url();
    let mut polls = Vec::new();
    for i in 0..4 {
        let b = base.clone();
        polls.push(std::thread::spawn(move || {
            http(
                "GET",
                &format!("{b}/v1/agents/h{i}/events?after=0&wait=3"),
                None,
            )
        }));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let (code, _) = rpc(
        &base,
        "heartbeat",
        json!({}),
        json!({"agent": "x", "when": "w"}),
    );
    assert_eq!(code, 200);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    http(
        "POST",
        &format!("{base}/admin/events/h2"),
        Some(json!({"type": "ip_rule", "payload": {"ip": "1.2.3.4"}})),
    );
    let t0 = Instant::now();
    let (_, v) = polls.remove(2).join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(v["events"][0]["type"], "ip_rule");
    for p in polls {
        let (code, v) = p.join().unwrap();
        assert_eq!(code, 200);
        assert_eq!(v["events"], json!([]));
    }
}

#[test]
fn fault_injection_and_bad_requests() {
    let s = lab_server(None, Some("tok"));
    let base = s.url();
    http(
        "POST",
        &format!("{base}/admin/fault"),
        Some(json!({"fail_next": 2})),
    );
    let auth = |m: &str| {
        let r = ureq::post(&format!("{base}/v1/rpc/{m}"))
            .set("Authorization", "Bearer tok")
            .timeout(Duration::from_secs(10))
            .send_json(json!({"context": {}, "args": {"agent": "h1"}}));
        match r {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(c, _)) => c,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(auth("heartbeat"), 500);
    assert_eq!(auth("heartbeat"), 500);
    assert_eq!(auth("heartbeat"), 200);
    assert_eq!(auth("no_such_method"), 404);
    assert_eq!(rpc(&base, "heartbeat", json!({}), json!({})).0, 401);
    http(
        "POST",
        &format!("{base}/admin/fault"),
        Some(json!({"down": true})),
    );
    assert_eq!(auth("heartbeat"), 503);
    http(
        "POST",
        &format!("{base}/admin/fault"),
        Some(json!({"down": false, "delay_ms": 700})),
    );
    let t0 = Instant::now();
    assert_eq!(auth("heartbeat"), 200);
    assert!(t0.elapsed() >= Duration::from_millis(650));
    http("DELETE", &format!("{base}/admin/fault"), None);
    let (_, f) = http("GET", &format!("{base}/admin/fault"), None);
    assert_eq!(
        f,
        json!({"fail_next": 0, "delay_ms": 0, "down": false, "delay_methods": [],
               "bulk_down_without_vlans": false})
    );
    // Body that is not {"context": {}, "args": {}}.
    let bad = ureq::post(&format!("{base}/v1/rpc/heartbeat"))
        .set("Authorization", "Bearer tok")
        .send_string("{\"args\": 5}");
    assert!(matches!(bad, Err(ureq::Error::Status(400, _))));
    let (_, calls) = http("GET", &format!("{base}/admin/calls?method=heartbeat"), None);
    let codes: Vec<u64> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_u64().unwrap())
        .collect();
    assert_eq!(codes, vec![500, 500, 200, 401, 503, 200, 400]);
    let last_id = calls["calls"][2]["id"].as_u64().unwrap();
    let (_, since) = http(
        "GET",
        &format!("{base}/admin/calls?method=heartbeat&since={last_id}"),
        None,
    );
    assert_eq!(since["calls"].as_array().unwrap().len(), 4);
    // Admin input errors.
    let (code, _) = http(
        "POST",
        &format!("{base}/admin/ports"),
        Some(json!({"host": "h1"})),
    );
    assert_eq!(code, 400);
    assert_eq!(
        http("DELETE", &format!("{base}/admin/ports/{P1}"), None).0,
        404
    );
    assert_eq!(http("GET", &format!("{base}/nowhere"), None).0, 404);
    let (code, _) = http("GET", &format!("{base}/v1/agents/h1/events?after=x"), None);
    assert_eq!(code, 401, "token checked first");
}

#[test]
fn cli_port_commands_against_the_server_binary() {
    let dir = temp_dir("cli");
    let state = dir.path().join("s.json");
    let srv = spawn_server(&["--state", state.to_str().unwrap()]);
    let u = srv.1.clone();
    let (code, out, err) = lab(&[
        "port",
        "add",
        "--server",
        &u,
        "--host",
        "h1",
        "--port-uuid",
        P1,
        "--mac",
        "fa:16:3e:00:00:01",
        "--net-uuid",
        NET,
        "--segment",
        "30001",
        "--vm-name",
        "vm1",
        "--ip",
        "10.0.0.5",
        "--vm-uuid",
        "0123456789abcdef0123456789abcdef",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("added"), "{out}");
    let (_, ev) = http(
        "GET",
        &format!("{u}/v1/agents/h1/events?after=0&wait=0"),
        None,
    );
    assert_eq!(
        ev["events"][0]["payload"]["oui"],
        json!({"oui_id": "cisco", "vm_name": "vm1", "vm_uuid": "0123456789abcdef0123456789abcdef",
               "ip_addr": "10.0.0.5", "gw_mac": null, "fwd_mod": "anycast-gateway"})
    );

    // `port wait` returns once the agent reports.
    let u2 = u.clone();
    let reporter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        rpc(
            &u2,
            "update_vm_result",
            json!({"agent": "h1"}),
            json!({"port_uuid": P1, "result": "SUCCESS", "local_vlan": 3, "vdp_vlan": 3003, "fail_reason": null}),
        )
    });
    let t0 = Instant::now();
    let (code, out, err) = lab(&[
        "port",
        "wait",
        "--server",
        &u,
        "--port-uuid",
        P1,
        "--result",
        "SUCCESS",
        "--timeout",
        "10",
    ]);
    reporter.join().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(out.contains("SUCCESS") && out.contains("3003"), "{out}");

    let (code, out, _) = lab(&["port", "list", "--server", &u]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("PORT_UUID") && lines[0].contains("VDP_VLAN"),
        "{out}"
    );
    assert!(
        lines[1].contains(P1) && lines[1].contains("SUCCESS") && lines[1].contains(" 3 "),
        "{out}"
    );
    let (code, out, _) = lab(&["port", "list", "--json", "--server", &u]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ports"][0]["vdp_vlan"], 3003);
    assert_eq!(v["ports"][0]["local_vlan"], 3);

    let (code, out, _) = lab(&["port", "del", "--server", &u, "--port-uuid", P1]);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = lab(&[
        "port",
        "wait",
        "--server",
        &u,
        "--port-uuid",
        P1,
        "--timeout",
        "1",
    ]);
    assert_eq!(code, 1, "no report yet after delete: {err}");
    let (code, _, err) = lab(&["port", "del", "--server", &u, "--port-uuid", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");

    // Usage errors exit 2.
    assert_eq!(lab(&["port", "add", "--server", &u, "--host", "h1"]).0, 2);
    assert_eq!(lab(&["port", "frobnicate"]).0, 2);
    assert_eq!(lab(&["port", "list", "--bogus"]).0, 2);
    assert_eq!(lab(&["server"]).0, 2);
    // Unreachable server exits 1.
    assert_eq!(
        lab(&["port", "list", "--server", "http://127.0.0.1:1"]).0,
        1
    );

    // State written by the binary survives its restart.
    drop(srv);
    let srv = spawn_server(&["--state", state.to_str().unwrap()]);
    let (_, p) = http("GET", &format!("{}/admin/ports/{P1}", srv.1), None);
    assert_eq!(p["status"], "down");
    assert_eq!(p["vdp_vlan"], 3003);
}

#[test]
fn server_binary_requires_its_token() {
    let dir = temp_dir("bintok");
    let tok = dir.path().join("tok");
    std::fs::write(&tok, "abc\n").unwrap();
    let srv = spawn_server(&["--token-file", tok.to_str().unwrap()]);
    assert_eq!(rpc(&srv.1, "heartbeat", json!({}), json!({})).0, 401);
    let r = ureq::get(&format!("{}/v1/agents/h/events?after=0&wait=0", srv.1))
        .set("Authorization", "Bearer abc")
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
}
