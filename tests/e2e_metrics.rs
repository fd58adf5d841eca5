//! End to end, the Prometheus endpoint (README "Metrics"): the real agent
//! in lab `m1` with `metrics.listen` set, scraped over real HTTP (curl in
//! the host netns) before and after VM events, a VM down, a controller
//! failure, a deleted flow and an lldpad restart. Every scrape must be
//! valid Prometheus text (`lab::promtext`: every line, HELP/TYPE for every
//! family, histogram buckets cumulative with +Inf = count), hold every
//! family of `metrics::FAMILIES` with its type, and its counters must move
//! exactly as the events demand. `status --check` is asked along the way
//! (OK with two VMs up, WARNING after the failed controller call), and a
//! scrape during an association the leaf delays is answered at once.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use vdp_agent::lab::promtext::{self, Exposition};

const LISTEN: &str = "127.0.0.1:9477";

/// `curl -i` in the host netns: (status line, headers+body text).
fn http(lab: &Lab, args: &[&str]) -> (String, String) {
    let url = format!("http://{LISTEN}/metrics");
    let mut argv = vec!["curl", "-s", "-i", "--max-time", "10"];
    argv.extend_from_slice(args);
    if !args.iter().any(|a| a.starts_with("http://")) {
        argv.push(&url);
    }
    let out = lab.host(&argv);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text.lines().next().unwrap_or_default().trim().to_string();
    (status, text)
}

/// One scrape, checked against the format and the family list.
fn scrape(lab: &Lab) -> Exposition {
    let (status, text) = http(lab, &[]);
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}\n{}", lab.diag());
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head/body split: {text}"));
    assert!(
        head.lines()
            .any(|l| l
                .eq_ignore_ascii_case("content-type: text/plain; version=0.0.4; charset=utf-8")),
        "{head}"
    );
    let e =
        promtext::parse(body).unwrap_or_else(|err| panic!("not Prometheus text: {err}\n{body}"));
    for (name, kind, _) in vdp_agent::api::metrics::FAMILIES {
        let f = e
            .families
            .get(name)
            .unwrap_or_else(|| panic!("family {name} missing\n{body}"));
        assert_eq!(f.kind, kind, "{name}");
        assert!(!f.samples.is_empty(), "{name} has no samples");
    }
    e
}

/// `vdp-agent status --check` in the host netns: exit code, its one line.
fn check(lab: &Lab) -> (Option<i32>, String) {
    let bin = bin_dir().join("vdp-agent");
    let cfg = lab.file("agent.yaml");
    let out = lab.host(&[
        bin.to_str().expect("utf-8 path"),
        "-c",
        cfg.to_str().expect("utf-8 path"),
        "status",
        "--check",
    ]);
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.code(), line)
}

fn v(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    e.sum(name, labels)
}

#[test]
fn e2e_metrics() {
    if skip() {
        return;
    }
    let lab = Lab::up("m1", &[]);
    let cfg = lab.file("agent.yaml");
    let mut yaml = std::fs::read_to_string(&cfg).expect("agent.yaml");
    yaml.push_str(&format!("metrics:\n  listen: {LISTEN}\n"));
    std::fs::write(&cfg, yaml).expect("write agent.yaml");
    lab.start_server();
    lab.start_agent();
    lab.wait_uplink(Duration::from_secs(30));

    // Only GET /metrics is served.
    for (args, want) in [
        (vec!["-X", "POST"], "HTTP/1.1 405 Method Not Allowed"),
        (vec!["http://127.0.0.1:9477/"], "HTTP/1.1 404 Not Found"),
        (
            vec!["http://127.0.0.1:9477/metrics/x"],
            "HTTP/1.1 404 Not Found",
        ),
    ] {
        assert_eq!(http(&lab, &args).0, want, "{args:?}");
    }

    let e0 = scrape(&lab);
    assert_eq!(v(&e0, "vdp_agent_up", &[]), 1.0);
    assert_eq!(v(&e0, "vdp_agent_uplink_up", &[]), 1.0);
    assert_eq!(
        v(
            &e0,
            "vdp_agent_build_info",
            &[("version", vdp_agent::VERSION)]
        ),
        1.0
    );
    // Every thread of `status` has its gauge, and all are alive.
    let st = lab.status();
    let threads = st["threads"].as_object().expect("threads").clone();
    assert!(threads.contains_key("metrics-server"), "{st}");
    for (name, state) in &threads {
        let want = if state == "alive" { 1.0 } else { 0.0 };
        assert_eq!(
            v(&e0, "vdp_agent_thread_alive", &[("thread", name)]),
            want,
            "thread {name} ({state})"
        );
    }
    assert_eq!(
        e0.families["vdp_agent_thread_alive"].samples.len(),
        threads.len()
    );

    // Two VM-ups: two associations, two timed events, two VSIs.
    let vm1 = Vm::new(1, 1, 11);
    let vm2 = Vm::new(2, 2, 12);
    let vlans = lab.bring_up(&[&vm1, &vm2]);
    let e1 = scrape(&lab);
    let d = |a: &Exposition, b: &Exposition, n: &str, l: &[(&str, &str)]| v(b, n, l) - v(a, n, l);
    assert_eq!(
        d(
            &e0,
            &e1,
            "vdp_agent_vdp_requests_total",
            &[("mode", "assoc")]
        ),
        2.0,
        "two VM-ups, two associations\n{}",
        lab.diag()
    );
    assert_eq!(
        d(
            &e0,
            &e1,
            "vdp_agent_vdp_requests_total",
            &[("mode", "assoc"), ("outcome", "success")]
        ),
        2.0
    );
    assert_eq!(d(&e0, &e1, "vdp_agent_vm_event_seconds_count", &[]), 2.0);
    let sum = d(&e0, &e1, "vdp_agent_vm_event_seconds_sum", &[]);
    assert!(sum > 0.0, "vm event seconds sum {sum}");
    assert_eq!(v(&e1, "vdp_agent_vsis", &[("state", "success")]), 2.0);
    assert_eq!(v(&e1, "vdp_agent_vsis", &[("state", "failed")]), 0.0);
    // The associations went over lldpad's control socket: no vdptool.
    assert_eq!(
        d(&e0, &e1, "vdp_agent_commands_total", &[("tool", "vdptool")]),
        0.0
    );
    // The VM flows went over the bridges' management sockets (no
    // process); ovs-ofctl ran for the uplink's pass-through flows before.
    let of = &lab.status()["host"]["openflow"];
    assert_eq!(of["enabled"], true, "{of}");
    assert!(of["flow_changes"].as_u64() >= Some(2), "{of}");
    assert_eq!(of["fallbacks"], 0, "{of}");
    assert!(v(&e1, "vdp_agent_commands_total", &[("tool", "ovs-ofctl")]) >= 1.0);
    assert!(
        v(
            &e1,
            "vdp_agent_command_seconds_count",
            &[("tool", "ovs-ofctl")]
        ) >= 1.0
    );
    assert!(v(&e1, "vdp_agent_commands_total", &[("tool", "other")]) == 0.0);
    // The results went out (the controller recorded them).
    assert!(
        d(
            &e0,
            &e1,
            "vdp_agent_controller_rpc_seconds_count",
            &[("method", "update_vm_result")]
        ) >= 2.0
    );
    assert!(wait_until(Duration::from_secs(10), || {
        let e = scrape(&lab);
        v(&e, "vdp_agent_pending_results", &[]) == 0.0
            && v(&e, "vdp_agent_queue_length", &[("queue", "main")]) == 0.0
    }));
    assert_eq!(
        v(&e1, "vdp_agent_controller_errors_total", &[]),
        0.0,
        "no controller error yet"
    );
    // The monitoring-plugin view agrees: OK now.
    let (code, line) = check(&lab);
    assert_eq!(code, Some(0), "{line}");
    assert!(
        line.starts_with("VDP-AGENT OK - uplink eth2, 2 VSI(s)"),
        "{line}"
    );

    // A failing controller: the next RPC answers 500, counted by method;
    // the VM-down's result is still delivered (kept, retried).
    let e2 = scrape(&lab);
    lab.fault(json!({"fail_next": 1}));
    let since = lab.last_call_id();
    lab.port_del(&vm2);
    let got = wait_until(Duration::from_secs(30), || {
        lab.results_for(&vm2.port_uuid, since)
            .iter()
            .any(|c| c["status"] == 200 && c["args"]["result"] == "SUCCESS")
    });
    assert!(got, "VM down not reported\n{}", lab.diag());
    assert!(wait_until(Duration::from_secs(10), || {
        v(&scrape(&lab), "vdp_agent_vsis", &[]) == 1.0
    }));
    let e3 = scrape(&lab);
    assert_eq!(
        d(&e2, &e3, "vdp_agent_controller_errors_total", &[]),
        1.0,
        "one failed RPC\n{}",
        lab.diag()
    );
    assert_eq!(
        d(
            &e2,
            &e3,
            "vdp_agent_vdp_requests_total",
            &[("mode", "deassoc")]
        ),
        1.0
    );
    assert_eq!(
        d(
            &e2,
            &e3,
            "vdp_agent_vdp_requests_total",
            &[("mode", "deassoc"), ("outcome", "success")]
        ),
        1.0
    );
    assert_eq!(d(&e2, &e3, "vdp_agent_vm_event_seconds_count", &[]), 1.0);
    // The failed call is a WARNING for a minute, though it was retried.
    let (code, line) = check(&lab);
    assert_eq!(code, Some(1), "{line}");
    assert!(
        line.starts_with("VDP-AGENT WARNING - controller error "),
        "{line}"
    );

    // A translation flow deleted behind the agent's back is put back by
    // the flow check (lab: every 5 s) and counted.
    let phy = lab.ofport("phy-br-ethd");
    let spec = format!("priority=4,in_port={phy},dl_vlan={}", vm1.local_vlan);
    lab.host_ok(&["ovs-ofctl", "--strict", "del-flows", "br-ethd", &spec]);
    let want = lab.expected_flows(&[(vm1.local_vlan, vlans[0])]);
    assert!(
        wait_until(Duration::from_secs(20), || lab.translation_flows()
            == Some(want.clone())),
        "flow not restored\n{}",
        lab.diag()
    );
    let e4 = scrape(&lab);
    assert!(
        d(
            &e3,
            &e4,
            "vdp_agent_flow_repairs_total",
            &[("reason", "missing_flows")]
        ) >= 1.0,
        "flow repair not counted"
    );

    // lldpad restarted: one restart recovered, seen by the event client.
    lab.lldpad_restart();
    let restarted = wait_until(Duration::from_secs(30), || {
        let e = scrape(&lab);
        v(&e, "vdp_agent_lldpad_restarts_total", &[])
            - v(&e4, "vdp_agent_lldpad_restarts_total", &[])
            >= 1.0
    });
    assert!(restarted, "lldpad restart not counted\n{}", lab.diag());
    // The watcher's notices are handled in order on its notify thread
    // (the restart's recovery first, then the re-attachment).
    let notices = wait_until(Duration::from_secs(30), || {
        let e = scrape(&lab);
        let n = |k: &str| {
            v(&e, "vdp_agent_lldpad_events_total", &[("kind", k)])
                - v(&e4, "vdp_agent_lldpad_events_total", &[("kind", k)])
        };
        n("restarted") >= 1.0 && n("attached") >= 1.0
    });
    assert!(notices, "lldpad notices not counted\n{}", lab.diag());
    assert!(lab
        .wait_result(&vm1.port_uuid, "SUCCESS", Duration::from_secs(30))
        .is_some());
    let e5 = scrape(&lab);
    assert_eq!(
        d(&e4, &e5, "vdp_agent_lldpad_restarts_total", &[]),
        1.0,
        "exactly one restart"
    );
    assert_eq!(v(&e5, "vdp_agent_command_timeouts_total", &[]), 0.0);

    // A scrape never waits for a command: while an association waits 4 s
    // for the leaf's answer (vdptool -W in the queue worker), scrapes are
    // answered at once and show the VSI pending.
    lab.leaf_ctl(&["delay-ms", "4000"]);
    let vm3 = Vm::new(3, 1, vm1.local_vlan);
    lab.vm_add(&vm3);
    lab.port_add(&vm3);
    let mut pending_scrape = None;
    let seen = wait_until(Duration::from_secs(15), || {
        let t = Instant::now();
        let e = scrape(&lab);
        let took = t.elapsed();
        let pending = v(&e, "vdp_agent_vsis", &[("state", "pending")]) >= 1.0;
        if pending {
            pending_scrape = Some(took);
        }
        pending
    });
    lab.leaf_ctl(&["delay-ms", "0"]);
    assert!(seen, "the VSI never showed pending\n{}", lab.diag());
    let took = pending_scrape.unwrap_or_default();
    eprintln!("e2e_metrics: scrape while an association waits for the leaf: {took:?}");
    assert!(
        took < Duration::from_millis(1500),
        "a scrape during an association took {took:?}"
    );
    assert!(lab
        .wait_result(&vm3.port_uuid, "SUCCESS", Duration::from_secs(30))
        .is_some());
}
