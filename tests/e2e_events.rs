//! End-to-end checks of the lldpad event path (real station lldpad, project
//! leaf, real OVS, agent, reference controller), with the refresh period at
//! its default of 30 s so only the event client can explain fast reactions:
//! - the leaf deassociates a VSI: re-associated and the controller told
//!   within 2 s;
//! - lldpad killed and restarted: settings and VSIs back, flows right,
//!   within 5 s of lldpad answering again;
//! - the leaf delays its VDP answer to 8 s (beyond vdptool's 5 s wait):
//!   SUCCESS reported once, no second associate sent.

mod common;

use common::{Lab, Vm};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn ready(lab: &Lab) {
    lab.start_server();
    lab.start_agent();
    let up = common::wait_for(Duration::from_secs(30), || {
        let st = lab.status();
        (st["uplink"]["detected"] == Value::Bool(true)).then_some(())
    });
    assert!(up.is_some(), "uplink not detected: {}", lab.agent_log());
}

fn vm_up(lab: &Lab, vm: &Vm) -> Value {
    lab.vm_add(vm);
    lab.port_add(vm);
    lab.wait_port(&vm.port_uuid, Duration::from_secs(30), |p| {
        p["result"] == "SUCCESS"
    })
    .unwrap_or_else(|| panic!("{} not SUCCESS: {}", vm.name, lab.agent_log()))
}

fn leaf_vsis(lab: &Lab) -> Vec<Value> {
    lab.leaf_ctl(&["status"])["vsis"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn leaf_stat(lab: &Lab, key: &str) -> u64 {
    lab.leaf_ctl(&["stats"])["stats"][key].as_u64().unwrap_or(0)
}

fn results_since(lab: &Lab, port: &str, since_id: u64) -> Vec<Value> {
    lab.calls("update_vm_result")
        .into_iter()
        .filter(|c| c["id"].as_u64().unwrap_or(0) > since_id && c["args"]["port_uuid"] == port)
        .collect()
}

fn last_call_id(lab: &Lab) -> u64 {
    lab.calls("update_vm_result")
        .iter()
        .filter_map(|c| c["id"].as_u64())
        .max()
        .unwrap_or(0)
}

#[test]
fn switch_deassociation_is_repaired_within_two_seconds() {
    if common::skip() {
        return;
    }
    let lab = Lab::up("ev1", &[("SYNC_TIMEOUT_S", "30")]);
    ready(&lab);
    let vm = Vm::new(1, 1, 5);
    let first = vm_up(&lab, &vm);
    let vlan = first["vdp_vlan"].as_u64().unwrap();
    let mark = last_call_id(&lab);
    let t = Instant::now();
    lab.leaf_ctl(&["deassoc", &vm.port_uuid]);
    // Back at the leaf and reported to the controller.
    let back = common::wait_for(Duration::from_secs(5), || {
        let at_leaf = leaf_vsis(&lab)
            .iter()
            .any(|v| v["uuid"] == vm.port_uuid.as_str());
        let told = results_since(&lab, &vm.port_uuid, mark).iter().any(|c| {
            c["args"]["result"] == "SUCCESS" && c["args"]["vdp_vlan"].as_u64() == Some(vlan)
        });
        (at_leaf && told).then(|| t.elapsed())
    })
    .unwrap_or_else(|| panic!("not repaired: {}", lab.agent_log()));
    eprintln!("deassociation repaired and reported in {back:?}");
    assert!(back < Duration::from_secs(2), "took {back:?}");
    assert!(lab.ping(&vm, 2), "ping after repair");
}

#[test]
fn lldpad_restart_restores_settings_and_vsis_within_five_seconds() {
    if common::skip() {
        return;
    }
    let lab = Lab::up("ev2", &[("SYNC_TIMEOUT_S", "30")]);
    ready(&lab);
    let vms = [Vm::new(1, 1, 5), Vm::new(2, 2, 6)];
    for vm in &vms {
        vm_up(&lab, vm);
    }
    let flows_before = lab.flows("br-ethd");
    // Kill the station lldpad and start a fresh one (no state carried over
    // but its config file, as after a crash).
    let pidf = lab.file("lldpad-station.pid");
    let pid = std::fs::read_to_string(&pidf).unwrap();
    let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
    // The new daemon can only bind lldpad's socket once the old one is gone.
    common::wait_for(Duration::from_secs(5), || {
        (!lab.host(&["lldptool", "-p"]).status.success()).then_some(())
    })
    .expect("old lldpad gone");
    let conf = lab.file("lldpad-station.conf");
    std::fs::write(&conf, "").unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs /dev/shm && exec lldpad -p -f {} -V 6",
        conf.display()
    );
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-host", lab.name),
            "unshare",
            "--ipc",
            "--mount",
        ])
        .args(["--propagation", "private", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(&pidf, child.id().to_string()).unwrap();
    // Reap it when `scripts/lab down` kills it.
    let mut child = child;
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let answering = common::wait_for(Duration::from_secs(10), || {
        lab.host(&["lldptool", "-p"])
            .status
            .success()
            .then(Instant::now)
    })
    .expect("new lldpad answers");
    let settings_ok = |lab: &Lab| {
        let admin = lab.host(&[
            "lldptool",
            "-l",
            "-i",
            "LLDPLeth2",
            "-g",
            "ncb",
            "adminStatus",
        ]);
        let evb = lab.host(&[
            "lldptool",
            "-t",
            "-i",
            "LLDPLeth2",
            "-g",
            "ncb",
            "-V",
            "evb",
            "-c",
            "enableTx",
        ]);
        String::from_utf8_lossy(&admin.stdout).contains("rxtx")
            && String::from_utf8_lossy(&evb.stdout).contains("enableTx=yes")
    };
    let all_back = common::wait_for(Duration::from_secs(15), || {
        let out = lab.host(&[
            "vdptool",
            "-t",
            "-i",
            "LLDPLeth2",
            "-V",
            "assoc",
            "-c",
            "mode=assoc",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let assoc = vms.iter().all(|vm| {
            text.contains(&format!("{}-{}", "", vm.mac)) && !text.contains("\tfilter = 0-")
        });
        (assoc && settings_ok(&lab)).then(|| answering.elapsed())
    })
    .unwrap_or_else(|| panic!("VSIs not back: {}", lab.agent_log()));
    eprintln!(
        "settings and {} VSIs back {all_back:?} after lldpad answered",
        vms.len()
    );
    assert!(all_back < Duration::from_secs(5), "took {all_back:?}");
    assert_eq!(lab.flows("br-ethd"), flows_before, "flows changed");
    for vm in &vms {
        assert!(lab.ping(vm, 2), "{} ping", vm.name);
    }
    let st = lab.status();
    assert_eq!(
        st["host"]["lldpad_events"]["attached"],
        Value::Bool(true),
        "{st}"
    );
}

#[test]
fn delayed_vdp_answer_is_pending_then_success_once() {
    if common::skip() {
        return;
    }
    let lab = Lab::up("ev3", &[("SYNC_TIMEOUT_S", "30")]);
    ready(&lab);
    lab.leaf_ctl(&["delay-ms", "8000"]);
    let assocs_before = leaf_stat(&lab, "assoc");
    let vm = Vm::new(1, 1, 5);
    lab.vm_add(&vm);
    let mark = last_call_id(&lab);
    let t = Instant::now();
    lab.port_add(&vm);
    let done = lab
        .wait_port(&vm.port_uuid, Duration::from_secs(25), |p| {
            p["result"] == "SUCCESS"
        })
        .unwrap_or_else(|| panic!("no SUCCESS: {}", lab.agent_log()));
    let took = t.elapsed();
    eprintln!(
        "delayed answer: SUCCESS after {took:?} (vlan {})",
        done["vdp_vlan"]
    );
    assert!(
        took >= Duration::from_secs(7),
        "answered before the delay? {took:?}"
    );
    // Let any late duplicate show up, then count.
    let _ = common::wait_for(Duration::from_secs(3), || None::<()>);
    let results = results_since(&lab, &vm.port_uuid, mark);
    let kinds: Vec<&str> = results
        .iter()
        .filter_map(|c| c["args"]["result"].as_str())
        .collect();
    assert_eq!(kinds, vec!["SUCCESS"], "reports: {results:?}");
    assert_eq!(
        leaf_stat(&lab, "assoc") - assocs_before,
        1,
        "associate requests at the leaf"
    );
    assert!(lab.ping(&vm, 2));
}
