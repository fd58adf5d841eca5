//! `controller::Controller` against the real reference controller
//! (`lab::server::LabServer`) on 127.0.0.1: exact JSON of every RPC as the
//! server recorded it, bearer token, kept results across failures and
//! restarts, long-poll, acknowledgement and the bulk `vm_info`.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vdp_agent::api::config::Config;
use vdp_agent::api::controller::Controller;
use vdp_agent::api::manager::host::TopoReport;
use vdp_agent::api::manager::link::{ControllerLink, LinkFailure};
use vdp_agent::api::model::{UplinkInfo, VmResult};
use vdp_agent::lab::server::LabServer;

mod http_common;

use http_common::{agent_config, lab_server, temp_dir, NET, P1};
use vdp_agent::lab::netns::{wait_until, TempDir};

const P2: &str = "22222222-2222-3333-4444-555555555555";

fn config(url: &str, dir: &TempDir, wait_s: u64) -> Config {
    agent_config(url, dir.path(), 2, wait_s)
}

fn admin(method: &str, url: &str, body: Option<Value>) -> Value {
    let req = ureq::request(method, url).timeout(Duration::from_secs(10));
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    r.unwrap().into_json().unwrap()
}

fn calls(s: &LabServer, method: &str) -> Vec<Value> {
    let v = admin(
        "GET",
        &format!("{}/admin/calls?method={method}", s.url()),
        None,
    );
    v["calls"].as_array().unwrap().clone()
}

fn fault(s: &LabServer, body: Value) {
    admin("POST", &format!("{}/admin/fault", s.url()), Some(body));
}

fn add_port(s: &LabServer, host: &str, uuid: &str, seg: u64) -> u64 {
    let v = admin(
        "POST",
        &format!("{}/admin/ports", s.url()),
        Some(
            json!({"host": host, "port_uuid": uuid, "mac": "fa:16:3e:00:00:01",
                    "net_uuid": NET, "segmentation_id": seg, "vm_name": "vm1",
                    "vm_uuid": "0123456789abcdef0123456789abcdef", "ip": "10.0.0.5"}),
        ),
    );
    v["seq"].as_u64().unwrap()
}

fn is_ctime(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.split_whitespace().count() == 5)
}

#[test]
fn every_rpc_sends_the_contract_json() {
    let s = lab_server(None, None);
    let dir = temp_dir("rpc");
    let c = Controller::new(&config(&s.url(), &dir, 1), "compute1".into()).unwrap();

    c.heartbeat().unwrap();
    let hb = &calls(&s, "heartbeat")[0];
    assert_eq!(hb["context"], json!({}));
    assert_eq!(hb["args"]["agent"], "compute1");
    assert!(is_ctime(&hb["args"]["when"]), "{hb}");
    assert_eq!(hb["args"].as_object().unwrap().len(), 2);

    assert_eq!(c.request_uplink_info().unwrap(), None);
    let ru = &calls(&s, "request_uplink_info")[0];
    assert_eq!(ru["context"], json!({}));
    assert_eq!(ru["args"], json!({"agent": "compute1"}));

    assert!(c
        .save_uplink("eth2", "LLDPLeth2", Some("eth2 eth3".into()), "")
        .unwrap());
    c.save_uplink("", "", None, "No uplink found").unwrap();
    let su = calls(&s, "save_uplink");
    assert_eq!(su[0]["context"], json!({}));
    assert_eq!(
        su[0]["args"],
        json!({"agent": "compute1", "uplink": "eth2", "veth_intf": "LLDPLeth2",
               "memb_port_list": "eth2 eth3", "fail_reason": ""})
    );
    assert_eq!(
        su[1]["args"],
        json!({"agent": "compute1", "uplink": "", "veth_intf": "",
               "memb_port_list": null, "fail_reason": "No uplink found"})
    );
    c.save_uplink("eth2", "LLDPLeth2", None, "").unwrap();
    assert_eq!(
        c.request_uplink_info().unwrap(),
        Some(UplinkInfo {
            uplink: "eth2".into(),
            veth_intf: "LLDPLeth2".into()
        })
    );

    // Results are handed to the delivery thread (here: `retry_pending`
    // called by hand after each).
    c.update_vm_result(P1, VmResult::Success, Some(5), Some(3003), None)
        .unwrap();
    assert_eq!(c.retry_pending(), 0);
    c.update_vm_result(P1, VmResult::CreateFail, Some(5), None, Some("no VDP VLAN"))
        .unwrap();
    assert_eq!(c.retry_pending(), 0);
    c.update_vm_result(P2, VmResult::DeleteFail, None, None, Some("x"))
        .unwrap();
    assert_eq!(c.retry_pending(), 0);
    // A down of a network's last port: SUCCESS with both VLANs -1.
    c.update_vm_result(P2, VmResult::Success, None, None, None)
        .unwrap();
    assert_eq!(c.retry_pending(), 0);
    let vr = calls(&s, "update_vm_result");
    assert_eq!(vr.len(), 4);
    assert_eq!(vr[0]["context"], json!({"agent": "compute1"}));
    assert_eq!(
        vr[0]["args"],
        json!({"port_uuid": P1, "result": "SUCCESS", "fail_reason": null,
               "local_vlan": 5, "vdp_vlan": 3003})
    );
    assert_eq!(
        vr[1]["args"],
        json!({"port_uuid": P1, "result": "CREATE:FAIL", "fail_reason": "no VDP VLAN",
               "local_vlan": 5, "vdp_vlan": -1})
    );
    assert_eq!(
        vr[2]["args"],
        json!({"port_uuid": P2, "result": "DELETE:FAIL", "fail_reason": "x"})
    );
    assert_eq!(
        vr[3]["args"],
        json!({"port_uuid": P2, "result": "SUCCESS", "fail_reason": null,
               "local_vlan": -1, "vdp_vlan": -1})
    );

    let report = TopoReport {
        protocol_interface: "LLDPLeth2".into(),
        phy_interface: "eth2".into(),
        remote_evb_cfgd: true,
        remote_evb_mode: Some("bridge".into()),
        remote_mgmt_addr: Some("IPv4:10.10.0.101".into()),
        remote_system_desc: Some("leaf".into()),
        remote_system_name: Some("leaf1".into()),
        remote_port: Some("Ethernet1/5".into()),
        remote_chassis_id_mac: Some("00:11:22:33:44:55".into()),
        remote_port_id_mac: None,
        bond_interface: Some("bond0".into()),
        bond_member_ports: Some("eth2 eth3".into()),
    };
    assert!(c.save_topo_disc_params(&report).unwrap());
    let tp = &calls(&s, "save_topo_disc_params")[0];
    assert_eq!(tp["context"], json!({}));
    let mut args = tp["args"].clone();
    assert!(is_ctime(&args["heartbeat"]), "{args}");
    let cfgs: Value = serde_json::from_str(args["configurations"].as_str().unwrap()).unwrap();
    assert_eq!(
        cfgs,
        json!({"bond_interface": "bond0", "bond_member_ports": "eth2 eth3"})
    );
    args["heartbeat"] = Value::Null;
    args["configurations"] = Value::Null;
    assert_eq!(
        args,
        json!({"host": "compute1", "protocol_interface": "LLDPLeth2", "heartbeat": null,
               "phy_interface": "eth2", "remote_evb_cfgd": true, "remote_evb_mode": "bridge",
               "remote_mgmt_addr": "IPv4:10.10.0.101", "remote_system_desc": "leaf",
               "remote_system_name": "leaf1", "remote_port": "Ethernet1/5",
               "remote_chassis_id_mac": "00:11:22:33:44:55", "remote_port_id_mac": null,
               "configurations": null})
    );
    let plain = TopoReport {
        bond_interface: None,
        bond_member_ports: None,
        ..report
    };
    c.save_topo_disc_params(&plain).unwrap();
    assert_eq!(
        calls(&s, "save_topo_disc_params")[1]["args"]["configurations"],
        "{}"
    );

    let st = c.status();
    assert!(st.last_ok.is_some());
    assert_eq!(st.last_error, None);
    assert_eq!(st.pending_results, 0);
}

#[test]
fn bearer_token_is_required_and_accepted() {
    let s = lab_server(None, Some("s3cret"));
    let dir = temp_dir("tok");
    let cfg = config(&s.url(), &dir, 0);
    let anon = Controller::new(&cfg, "compute1".into()).unwrap();
    let e = anon.heartbeat().unwrap_err();
    assert_eq!(e.method, "heartbeat");
    assert!(
        matches!(e.failure, LinkFailure::Http { code: 401, .. }),
        "{e}"
    );
    assert!(anon.poll_events(0).unwrap_err().to_string().contains("401"));
    assert!(anon.status().last_error.unwrap().contains("401"));

    let tok = dir.path().join("token");
    std::fs::write(&tok, "  s3cret\n").unwrap();
    let mut cfg2 = cfg.clone();
    cfg2.server.token_file = Some(tok.clone());
    let c = Controller::new(&cfg2, "compute1".into()).unwrap();
    c.heartbeat().unwrap();
    assert!(c.poll_events(0).unwrap().is_empty());
    let hb = calls(&s, "heartbeat");
    assert_eq!(
        hb.iter()
            .map(|c| c["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![401, 200]
    );

    std::fs::write(&tok, "wrong").unwrap();
    let bad = Controller::new(&cfg2, "compute1".into()).unwrap();
    assert!(bad.heartbeat().unwrap_err().to_string().contains("401"));

    std::fs::write(&tok, "\n").unwrap();
    let e = Controller::new(&cfg2, "compute1".into()).err().unwrap();
    assert!(e.to_string().contains("token_file"), "{e}");
}

#[test]
fn failed_results_are_kept_persisted_and_delivered_newest_first() {
    let s = lab_server(None, None);
    let dir = temp_dir("pend");
    let cfg = config(&s.url(), &dir, 0);
    let c = Controller::new(&cfg, "compute1".into()).unwrap();
    let pending_file = cfg.paths.state_dir.join("pending-results.json");

    fault(&s, json!({"down": true}));
    c.update_vm_result(P1, VmResult::CreateFail, None, None, Some("first"))
        .unwrap();
    assert_eq!(c.retry_pending(), 1);
    let e = c.status().last_error.unwrap();
    assert!(e.contains("update_vm_result") && e.contains("503"), "{e}");
    c.update_vm_result(P1, VmResult::Success, Some(5), Some(3003), None)
        .unwrap();
    c.update_vm_result(P2, VmResult::DeleteFail, None, None, Some("gone"))
        .unwrap();
    c.save_uplink("eth1", "LLDPLeth1", None, "").unwrap_err();
    c.save_uplink("eth2", "LLDPLeth2", None, "").unwrap_err();
    let st = c.status();
    assert_eq!(st.pending_results, 3, "newest per port + newest uplink");
    assert!(st.last_error.unwrap().contains("503"));

    let file: Value = serde_json::from_slice(&std::fs::read(&pending_file).unwrap()).unwrap();
    let kept = file["calls"].as_array().unwrap();
    assert_eq!(kept.len(), 3);
    let p1 = kept
        .iter()
        .find(|k| k["key"] == format!("vm:{P1}"))
        .unwrap();
    assert_eq!(p1["args"]["result"], "SUCCESS");
    let up = kept.iter().find(|k| k["key"] == "uplink").unwrap();
    assert_eq!(up["args"]["uplink"], "eth2");

    // Restart the agent side: the new instance reloads the kept results.
    drop(c);
    let c = Controller::new(&cfg, "compute1".into()).unwrap();
    assert_eq!(c.status().pending_results, 3);
    // Server still down: a retry fails, keeps everything, and backs off.
    assert_eq!(c.retry_pending(), 3);
    let before = calls(&s, "update_vm_result").len() + calls(&s, "save_uplink").len();
    assert_eq!(c.retry_pending(), 3, "within backoff: nothing sent");
    let after = calls(&s, "update_vm_result").len() + calls(&s, "save_uplink").len();
    assert_eq!(before, after);

    fault(&s, json!({"down": false}));
    assert!(
        wait_until(Duration::from_secs(10), || c.retry_pending() == 0),
        "kept results not delivered"
    );
    let ok: Vec<Value> = calls(&s, "update_vm_result")
        .into_iter()
        .filter(|c| c["status"] == 200)
        .collect();
    assert_eq!(ok.len(), 2);
    let p1_ok: Vec<&Value> = ok.iter().filter(|c| c["args"]["port_uuid"] == P1).collect();
    assert_eq!(p1_ok.len(), 1);
    assert_eq!(p1_ok[0]["args"]["result"], "SUCCESS");
    assert_eq!(p1_ok[0]["args"]["vdp_vlan"], 3003);
    let su: Vec<Value> = calls(&s, "save_uplink")
        .into_iter()
        .filter(|c| c["status"] == 200)
        .collect();
    assert_eq!(su.len(), 1);
    assert_eq!(su[0]["args"]["uplink"], "eth2");
    let file: Value = serde_json::from_slice(&std::fs::read(&pending_file).unwrap()).unwrap();
    assert_eq!(file["calls"], json!([]));
    assert_eq!(c.status().pending_results, 0);
}

/// Hardening item 10: kept results are persisted per delivery round, not
/// per result: 500 results kept while the controller is down, then
/// drained, write the file a handful of times (it was once per delivery:
/// 835 MB for 2000 results).
#[test]
fn kept_results_are_written_once_per_round() {
    let s = lab_server(None, None);
    let dir = temp_dir("pw");
    let cfg = config(&s.url(), &dir, 0);
    let c = Controller::new(&cfg, "compute1".into()).unwrap();
    fault(&s, json!({"down": true}));
    for i in 0..500u32 {
        let port = format!("{i:08x}-1111-4111-8111-{i:012x}");
        c.update_vm_result(&port, VmResult::Success, Some(5), Some(3003), None)
            .unwrap();
    }
    assert_eq!(c.retry_pending(), 500);
    let written_while_down = c.pending_writes();
    assert!(written_while_down <= 2, "{written_while_down} writes");
    fault(&s, json!({"down": false}));
    assert!(
        wait_until(Duration::from_secs(60), || c.retry_pending() == 0),
        "kept results not delivered"
    );
    let drained = c.pending_writes() - written_while_down;
    assert!(drained <= 3, "{drained} writes to drain 500 results");
    let delivered = calls(&s, "update_vm_result")
        .into_iter()
        .filter(|c| c["status"] == 200)
        .count();
    assert_eq!(delivered, 500);
}

#[test]
fn fresh_success_drops_the_older_kept_result() {
    let s = lab_server(None, None);
    let dir = temp_dir("fresh");
    let c = Controller::new(&config(&s.url(), &dir, 0), "compute1".into()).unwrap();
    fault(&s, json!({"fail_next": 1}));
    c.update_vm_result(P1, VmResult::CreateFail, None, None, Some("old"))
        .unwrap();
    assert_eq!(c.retry_pending(), 1);
    assert!(c.status().last_error.unwrap().contains("500"));
    assert_eq!(c.status().pending_results, 1);
    // The fresh result replaces the kept one: only it is sent.
    c.update_vm_result(P1, VmResult::Success, Some(7), Some(3007), None)
        .unwrap();
    assert_eq!(c.status().pending_results, 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(c.retry_pending(), 0);
    assert_eq!(c.status().pending_results, 0);
    let vr = calls(&s, "update_vm_result");
    assert_eq!(vr.len(), 2, "the old result is never re-sent");
    assert_eq!(vr[1]["args"]["result"], "SUCCESS");
    let port_state = admin("GET", &format!("{}/admin/calls", s.url()), None);
    assert_eq!(port_state["calls"].as_array().unwrap().len(), 2);
}

#[test]
fn long_poll_wakes_on_event_and_times_out_empty() {
    let s = lab_server(None, None);
    let dir = temp_dir("poll");
    let c = Controller::new(&config(&s.url(), &dir, 1), "compute1".into()).unwrap();
    let t0 = Instant::now();
    assert!(c.poll_events(0).unwrap().is_empty());
    let el = t0.elapsed();
    assert!(
        el >= Duration::from_millis(900) && el < Duration::from_secs(3),
        "{el:?}"
    );

    let c = Controller::new(&config(&s.url(), &dir, 10), "compute1".into()).unwrap();
    let url = s.url();
    let adder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        admin(
            "POST",
            &format!("{url}/admin/ports"),
            Some(
                json!({"host": "compute1", "port_uuid": P1, "mac": "fa:16:3e:00:00:01",
                        "net_uuid": NET, "segmentation_id": 30001}),
            ),
        )
    });
    let t0 = Instant::now();
    let evs = c.poll_events(0).unwrap();
    let el = t0.elapsed();
    adder.join().unwrap();
    assert!(el < Duration::from_secs(3), "not woken: {el:?}");
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, "vm_info");
    assert_eq!(evs[0].payload["status"], "up");
    assert_eq!(evs[0].payload["port_uuid"], P1);
    assert_eq!(
        evs[0].payload["oui"],
        json!({"oui_id": "cisco", "vm_name": null, "vm_uuid": null, "ip_addr": "0.0.0.0",
               "gw_mac": null, "fwd_mod": "anycast-gateway"})
    );
}

#[test]
fn after_acknowledges_and_unacked_events_are_retained() {
    let s = lab_server(None, None);
    let dir = temp_dir("ack");
    let c = Controller::new(&config(&s.url(), &dir, 0), "compute1".into()).unwrap();
    let s1 = add_port(&s, "compute1", P1, 30001);
    let s2 = add_port(&s, "compute1", P2, 30002);
    add_port(&s, "other", "33333333-2222-3333-4444-555555555555", 30003);
    let seqs = |v: Vec<vdp_agent::api::manager::link::ControllerEvent>| {
        v.iter().map(|e| e.seq).collect::<Vec<_>>()
    };
    assert_eq!(seqs(c.poll_events(0).unwrap()), vec![s1, s2]);
    // Not acknowledged: delivered again (at-least-once).
    assert_eq!(seqs(c.poll_events(0).unwrap()), vec![s1, s2]);
    assert_eq!(seqs(c.poll_events(s1).unwrap()), vec![s2]);
    let q = admin("GET", &format!("{}/admin/events/compute1", s.url()), None);
    assert_eq!(q["acked"], s1);
    assert_eq!(q["events"].as_array().unwrap().len(), 1);
    assert!(c.poll_events(s2).unwrap().is_empty());
    let q = admin("GET", &format!("{}/admin/events/compute1", s.url()), None);
    assert_eq!(q["events"], json!([]));
}

#[test]
fn save_uplink_with_uplink_queues_bulk_vm_info() {
    let s = lab_server(None, None);
    let dir = temp_dir("bulk");
    let c = Controller::new(&config(&s.url(), &dir, 0), "compute1".into()).unwrap();
    add_port(&s, "compute1", P1, 30001);
    let last = add_port(&s, "compute1", P2, 30002);
    add_port(&s, "other", "33333333-2222-3333-4444-555555555555", 30003);
    c.update_vm_result(P2, VmResult::Success, Some(2), Some(3002), None)
        .unwrap();
    assert_eq!(c.retry_pending(), 0);
    admin("DELETE", &format!("{}/admin/ports/{P2}", s.url()), None);
    let evs = c.poll_events(last).unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].payload["status"], "down");
    assert_eq!(evs[0].payload["local_vlan"], 2);
    assert_eq!(evs[0].payload["vdp_vlan"], 3002);
    let last = evs[0].seq;

    c.save_uplink("", "", None, "no uplink").unwrap();
    assert!(
        c.poll_events(last).unwrap().is_empty(),
        "no bulk without uplink"
    );
    c.save_uplink("eth2", "LLDPLeth2", None, "").unwrap();
    let evs = c.poll_events(last).unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].kind, "vm_info");
    let list = evs[0].payload.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let p1 = list.iter().find(|v| v["port_uuid"] == P1).unwrap();
    assert_eq!(p1["status"], "up");
    assert_eq!(p1["host"], "compute1");
    assert_eq!(p1["segmentation_id"], 30001);
    assert_eq!(p1["oui"]["vm_uuid"], "0123456789abcdef0123456789abcdef");
    let p2 = list.iter().find(|v| v["port_uuid"] == P2).unwrap();
    assert_eq!(p2["status"], "down");
    assert_eq!(p2["vdp_vlan"], 3002);

    // Once the agent confirmed the delete the port leaves the bulk.
    c.update_vm_result(P2, VmResult::Success, Some(2), Some(3002), None)
        .unwrap();
    assert_eq!(c.retry_pending(), 0);
    c.save_uplink("eth2", "LLDPLeth2", None, "").unwrap();
    let evs = c.poll_events(evs[0].seq).unwrap();
    assert_eq!(evs[0].payload.as_array().unwrap().len(), 1);
}

#[test]
fn odd_injected_events_are_passed_on_or_skipped() {
    let s = lab_server(None, None);
    let dir = temp_dir("odd");
    let c = Controller::new(&config(&s.url(), &dir, 0), "compute1".into()).unwrap();
    let url = format!("{}/admin/events/compute1", s.url());
    let raw = admin("POST", &url, Some(json!({"raw": {"seq": "x", "type": 5}})));
    let e = c.poll_events(0).unwrap_err();
    assert!(matches!(e.failure, LinkFailure::Answer(_)), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("malformed"), "{e}");
    let odd = admin(
        "POST",
        &url,
        Some(json!({"type": "vm_info", "payload": {"status": 5, "port_uuid": [1]}})),
    );
    assert!(odd["seq"].as_u64().unwrap() > raw["seq"].as_u64().unwrap());
    let evs = c.poll_events(0).unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].payload, json!({"status": 5, "port_uuid": [1]}));
    let e = c.poll_events(evs[0].seq).map(|v| v.len());
    assert_eq!(e, Ok(0));
}

#[test]
fn a_fresh_result_waits_for_the_kept_one_in_flight() {
    let s = lab_server(None, None);
    let dir = temp_dir("order");
    let c = std::sync::Arc::new(
        Controller::new(&config(&s.url(), &dir, 0), "compute1".into()).unwrap(),
    );
    fault(&s, json!({"fail_next": 1}));
    c.update_vm_result(P1, VmResult::CreateFail, None, None, Some("old"))
        .unwrap();
    assert_eq!(c.retry_pending(), 1);
    std::thread::sleep(Duration::from_millis(1100)); // backoff of the first failure
    fault(&s, json!({"delay_ms": 1000}));
    let c2 = c.clone();
    let retry = std::thread::spawn(move || c2.retry_pending());
    std::thread::sleep(Duration::from_millis(400));
    // Handed over while the kept one is on the wire: returns at once, and
    // goes out only after it (one delivery thread, order per port kept).
    let t0 = Instant::now();
    c.update_vm_result(P1, VmResult::Success, Some(1), Some(3001), None)
        .unwrap();
    let el = t0.elapsed();
    assert!(el < Duration::from_millis(200), "the caller waited: {el:?}");
    assert_eq!(retry.join().unwrap(), 1, "the fresh one is still to send");
    assert_eq!(c.retry_pending(), 0);
    let vr: Vec<Value> = calls(&s, "update_vm_result")
        .into_iter()
        .filter(|c| c["status"] == 200)
        .collect();
    assert_eq!(vr.len(), 2);
    assert_eq!(vr[0]["args"]["result"], "CREATE:FAIL");
    assert_eq!(vr[1]["args"]["result"], "SUCCESS");
    assert_eq!(c.status().pending_results, 0);
}

/// A round sends kept results side by side (`DELIVERY_LANES`): eight
/// results against a controller that takes 400 ms per call are all
/// delivered in far less than the 3.2 s they take one after the other,
/// each exactly once.
#[test]
fn a_round_delivers_results_side_by_side() {
    let s = lab_server(None, None);
    let dir = temp_dir("lanes");
    let c = Controller::new(&config(&s.url(), &dir, 0), "compute1".into()).unwrap();
    fault(&s, json!({"delay_ms": 400}));
    let ports: Vec<String> = (0..8u32)
        .map(|i| format!("{i:08x}-1111-4111-8111-{i:012x}"))
        .collect();
    for p in &ports {
        c.update_vm_result(p, VmResult::Success, Some(5), Some(3003), None)
            .unwrap();
    }
    let t0 = Instant::now();
    assert_eq!(c.retry_pending(), 0);
    let el = t0.elapsed();
    assert!(
        el < Duration::from_millis(2400),
        "one after the other: {el:?}"
    );
    let mut sent: Vec<String> = calls(&s, "update_vm_result")
        .into_iter()
        .filter(|c| c["status"] == 200)
        .map(|c| c["args"]["port_uuid"].as_str().unwrap().to_string())
        .collect();
    sent.sort();
    assert_eq!(sent, ports, "each result once");
}

/// A slow controller applies a result attempt the agent gave up on (a
/// timeout) after the port's newer result was delivered: the newer result
/// is sent once more after the reorder window (3 × `timeout_s` = 6 s), so
/// the controller ends with it. (The soak's controller-slow fault with
/// churn right after it.)
#[test]
fn a_late_applied_stale_result_is_followed_by_the_newest_again() {
    let s = lab_server(None, None);
    let dir = temp_dir("reorder");
    let c = Controller::new(&config(&s.url(), &dir, 0), "compute1".into()).unwrap();
    add_port(&s, "compute1", P1, 30001);
    let vdp_vlan =
        || admin("GET", &format!("{}/admin/ports/{P1}", s.url()), None)["vdp_vlan"].clone();
    // Each update_vm_result arriving now is applied 4 s later; the agent
    // waits 2 s.
    fault(
        &s,
        json!({"delay_ms": 4000, "delay_methods": ["update_vm_result"]}),
    );
    c.update_vm_result(P1, VmResult::Success, Some(5), Some(3003), None)
        .unwrap();
    let t0 = Instant::now();
    assert_eq!(c.retry_pending(), 1, "the attempt timed out");
    fault(&s, json!({"delay_ms": 0, "delay_methods": []}));
    c.update_vm_result(P1, VmResult::Success, Some(5), Some(3004), None)
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || c.retry_pending() == 0));
    // The stale attempt lands after the newer result.
    assert!(wait_until(Duration::from_secs(5), || vdp_vlan() == json!(3003)));
    // The newest again, after the window.
    assert!(
        wait_until(Duration::from_secs(12), || {
            c.retry_pending();
            vdp_vlan() == json!(3004)
        }),
        "the controller kept the stale result"
    );
    assert!(t0.elapsed() >= Duration::from_secs(5), "{:?}", t0.elapsed());
    let applied: Vec<Value> = calls(&s, "update_vm_result")
        .into_iter()
        .filter(|c| c["status"] == 200)
        .map(|c| c["args"]["vdp_vlan"].clone())
        .collect();
    assert_eq!(applied, [json!(3004), json!(3003), json!(3004)]);
    // Once only: nothing more is sent.
    std::thread::sleep(Duration::from_millis(500));
    c.retry_pending();
    assert_eq!(calls(&s, "update_vm_result").len(), 3);
}
