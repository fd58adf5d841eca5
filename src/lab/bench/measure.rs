//! The measuring subcommands of `vdp-lab bench`: gen, adds, uplink, idle,
//! deassoc, resync (each writes one JSON part for the report).
//!
//! Owns nothing. Calls the lab's controller, the leaf's control socket,
//! the agent's status socket, /proc.

use super::*;

pub(super) fn cmd_gen(o: &Opts) -> Res<()> {
    for p in ports_of(o)? {
        println!("{} {} {} {}", p.name, p.port_uuid, p.mac, p.net);
    }
    Ok(())
}

pub(super) fn add_body(p: &BenchPort, host: &str) -> Value {
    json!({
        "host": host,
        "port_uuid": p.port_uuid,
        "mac": p.mac,
        "net_uuid": p.net_uuid,
        "segmentation_id": p.segment,
        "vm_name": p.name,
    })
}

/// Sequential: t0 just before POST /admin/ports, t1 when
/// /admin/ports/U/wait?result=SUCCESS returns matched. Burst: every POST
/// first (t0 each), then update_vm_result calls polled every 20 ms; t1 =
/// when a SUCCESS for the port was first seen.
pub(super) fn cmd_adds(o: &Opts) -> Res<()> {
    let server = o.server();
    let host = o.need("host")?.to_string();
    let ports = ports_of(o)?;
    let timeout: u64 = o.num("timeout", Some(30))?;
    let burst = o.flags.contains("burst");
    let nets: u32 = o.num("nets", None)?;
    // --pause-ms (sequential): quiet time after each port's result before
    // the next port, so a VM-up is timed on its own, not in the wake of
    // the one before (the leaf's ECPDU spacing, lldpad's timers).
    let pause = Duration::from_millis(o.num("pause-ms", Some(0))?);
    // --sock: the agent's status socket, for host.commands_spawned per port.
    let sock = o.get("sock").map(PathBuf::from);
    let counters = |s: &Option<PathBuf>| -> Res<Option<(u64, u64, u64)>> {
        let Some(s) = s else { return Ok(None) };
        let st = agent_status(s)?;
        Ok(Some((
            host_counter(&st, "commands_spawned").unwrap_or(0),
            host_counter(&st, "vdptool_calls").unwrap_or(0),
            host_counter(&st, "socket_requests").unwrap_or(0),
        )))
    };
    let c0 = counters(&sock)?;
    let started = Instant::now();
    let mut lat = Vec::new();
    // Sequential only: the controller's own view of each port (its up
    // event handed to the agent -> the agent's SUCCESS arrived).
    let mut lat_ctl = Vec::new();
    let mut failed: Vec<Value> = Vec::new();
    if !burst {
        for (i, p) in ports.iter().enumerate() {
            if i > 0 {
                // Load pacing, not a wait for an outcome: the next VM-up is
                // to arrive this long after the last result (a bench client
                // without signal handlers; SIGINT/SIGTERM end it at once).
                std::thread::sleep(pause);
            }
            let t0 = Instant::now();
            http(
                "POST",
                &format!("{server}/admin/ports"),
                Some(&add_body(p, &host)),
                Duration::from_secs(10),
            )?;
            let v = http(
                "GET",
                &format!(
                    "{server}/admin/ports/{}/wait?result=SUCCESS&timeout={timeout}",
                    p.port_uuid
                ),
                None,
                Duration::from_secs(timeout + 10),
            )?;
            let dt = t0.elapsed();
            if v.get("matched").and_then(Value::as_bool) == Some(true) {
                lat.push(ms(dt));
                if let Some(c) = v.get("event_to_result_ms").and_then(Value::as_f64) {
                    lat_ctl.push(c);
                }
            } else {
                failed.push(json!({"port_uuid": p.port_uuid, "port": v.get("port")}));
            }
        }
    } else {
        let since = last_call_id(&server)?;
        let want: HashSet<String> = ports.iter().map(|p| p.port_uuid.clone()).collect();
        let stop = Shutdown::new();
        // The poller runs alongside the POSTs so early results are seen early.
        let poller = {
            let (server, want, stop) = (server.clone(), want.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-poll".into())
                .spawn(move || poll_results(&server, since, want, &stop, timeout))
                .map_err(|err| BenchError::Io {
                    what: "spawn poller".into(),
                    err,
                })?
        };
        let mut t0: HashMap<String, Instant> = HashMap::new();
        let mut post_err = None;
        for p in &ports {
            t0.insert(p.port_uuid.clone(), Instant::now());
            if let Err(e) = http(
                "POST",
                &format!("{server}/admin/ports"),
                Some(&add_body(p, &host)),
                Duration::from_secs(10),
            ) {
                post_err = Some(e);
                break;
            }
        }
        log::info!(
            "burst: {} POSTs took {:.0} ms",
            ports.len(),
            ms(started.elapsed())
        );
        if post_err.is_some() {
            stop.trigger();
        }
        let (seen, other) = poller
            .join()
            .map_err(|_| BenchError::Status("result poller panicked".into()))??;
        if let Some(e) = post_err {
            return Err(e);
        }
        for (port, t) in &t0 {
            match seen.get(port) {
                Some(t1) => lat.push(ms(t1.saturating_duration_since(*t))),
                None => {
                    failed.push(json!({"port_uuid": port, "last_other_result": other.get(port)}))
                }
            }
        }
    }
    let total = started.elapsed();
    let ok = lat.len();
    let c1 = counters(&sock)?;
    let per_port = |a: u64, b: u64| round2(b.saturating_sub(a) as f64 / ports.len().max(1) as f64);
    let spawned = match (c0, c1) {
        (Some(a), Some(b)) => json!({
            "commands_spawned": b.0.saturating_sub(a.0),
            "commands_per_port": per_port(a.0, b.0),
            "vdptool_per_port": per_port(a.1, b.1),
            "socket_requests_per_port": per_port(a.2, b.2),
        }),
        _ => Value::Null,
    };
    let mut v = json!({
        "host": spawned,
        "name": o.get("name").unwrap_or(if burst { "burst" } else { "latency" }),
        "mode": if burst { "burst" } else { "sequential" },
        "pause_ms": if burst { Value::Null } else { json!(pause.as_millis() as u64) },
        "ports": ports.len(),
        "nets": nets,
        "ok": ok,
        "failed": failed.len(),
        "failed_examples": failed.iter().take(5).cloned().collect::<Vec<_>>(),
        "total_s": round2(total.as_secs_f64()),
        "rate_per_s": round1(ok as f64 / total.as_secs_f64().max(1e-9)),
        "samples_ms": lat.iter().map(|x| round2(*x)).collect::<Vec<_>>(),
        "latency": summary(lat),
    });
    if !burst {
        v["event_to_result"] = json!({
            "method": "the reference controller's own timing per port: from its up event first handed to the agent in an events answer to the agent's update_vm_result SUCCESS arriving (parsed, before the controller's state write)",
            "samples_ms": lat_ctl.iter().map(|x| round2(*x)).collect::<Vec<_>>(),
            "latency": summary(lat_ctl),
        });
    }
    v["method"] = json!(if burst {
        "POSTs back to back, t0 just before each port's POST /admin/ports; a poller thread reads new update_vm_result calls from /admin/calls every 20 ms from the start, t1 = when a SUCCESS for the port was first seen (after the poll returned)"
    } else {
        "t0 just before POST /admin/ports, t1 when GET /admin/ports/U/wait?result=SUCCESS returns (client side, one port at a time)"
    });
    write_part(&o.out()?, &v)
}

type Seen = (HashMap<String, Instant>, BTreeMap<String, String>);

/// Poll update_vm_result calls after `since` every 20 ms until every port in
/// `want` was reported SUCCESS, `stop` is set or `timeout_s` passed: the
/// time each SUCCESS was first seen, and the last other result per port.
pub(super) fn poll_results(
    server: &str,
    since: u64,
    mut want: HashSet<String>,
    stop: &Shutdown,
    timeout_s: u64,
) -> Res<Seen> {
    let deadline = Instant::now() + Duration::from_secs(timeout_s);
    let mut last = since;
    let mut seen = HashMap::new();
    let mut other = BTreeMap::new();
    while !want.is_empty() && Instant::now() < deadline {
        let calls = vm_results_since(server, last)?;
        let now = Instant::now();
        for (id, port, result) in calls {
            last = last.max(id);
            if result == "SUCCESS" {
                if want.remove(&port) {
                    seen.insert(port, now);
                }
            } else {
                other.insert(port, result);
            }
        }
        if stop.wait(Duration::from_millis(20)) {
            break;
        }
    }
    Ok((seen, other))
}

/// Time from starting the leaf (trigger command) until the agent's status
/// shows `uplink.detected` true; polled every 20 ms.
pub(super) fn cmd_uplink(o: &Opts) -> Res<()> {
    let sock = PathBuf::from(o.need("sock")?);
    let timeout: u64 = o.num("timeout", Some(60))?;
    let before = agent_status(&sock)?;
    let was = before["uplink"]["detected"].as_bool().unwrap_or(false);
    let tick = Shutdown::new();
    let t0 = Instant::now();
    trigger(&o.trailing)?;
    let started = t0.elapsed();
    let deadline = t0 + Duration::from_secs(timeout);
    let mut detected = None;
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Ok(s) = agent_status(&sock) {
            if s["uplink"]["detected"].as_bool() == Some(true) {
                detected = Some(t0.elapsed());
                last = s["uplink"].clone();
                break;
            }
            last = s["uplink"].clone();
        }
        tick.wait(Duration::from_millis(20));
    }
    let v = json!({
        "name": "uplink",
        "detected_before_leaf_start": was,
        "leaf_start_cmd_ms": round1(ms(started)),
        "detect_ms": detected.map(|d| round1(ms(d))),
        "uplink": last,
        "method": "t0 just before the leaf start command (which returns once the leaf's control socket exists), t1 when `status` shows uplink.detected = true (polled every 20 ms)",
    });
    write_part(&o.out()?, &v)
}

/// Idle figures over `secs`: agent CPU (own, and reaped children = the
/// vdptool/lldptool/ovs-* it spawned), RSS, commands spawned; optional
/// lldpad CPU.
pub(super) fn cmd_idle(o: &Opts) -> Res<()> {
    let sock = PathBuf::from(o.need("sock")?);
    let pid: u32 = o.num("pid", None)?;
    let secs: u64 = o.num("secs", Some(60))?;
    let lldpad: Option<u32> = o.get("lldpad-pid").and_then(|s| s.parse().ok());
    let hz = clk_tck();
    let tick = Shutdown::new();
    let s0 = agent_status(&sock)?;
    let vsis = s0["vsis"].as_array().map(Vec::len).unwrap_or(0);
    let p0 = proc_sample(pid)?;
    let l0 = lldpad.and_then(|p| proc_sample(p).ok());
    let t0 = Instant::now();
    // 10 s samples of own CPU, for the 20 s windows.
    let mut samples = vec![(0.0f64, p0)];
    let mut rss_max = p0.rss_kb;
    // Refresh rounds: a vdptool child seen after >= QUIET without one. At
    // each round start the status counters are read (two status queries
    // in the window, not a steady poll that would load the agent).
    const QUIET: Duration = Duration::from_secs(5);
    let mut last_vdptool: Option<Instant> = None;
    let mut round_starts: Vec<(f64, Option<u64>, Option<u64>)> = Vec::new();
    let mut next_sample = Duration::from_secs(10);
    let window = Duration::from_secs(secs);
    while t0.elapsed() < window {
        tick.wait(Duration::from_millis(100));
        let now = Instant::now();
        if has_child_named(pid, "vdptool") {
            let quiet_before = match last_vdptool {
                Some(t) => now.duration_since(t) >= QUIET,
                None => now.duration_since(t0) >= QUIET,
            };
            if quiet_before {
                let st = agent_status(&sock).ok();
                let c = |k: &str| st.as_ref().and_then(|s| host_counter(s, k));
                round_starts.push((
                    t0.elapsed().as_secs_f64(),
                    c("commands_spawned"),
                    c("vdptool_calls"),
                ));
            }
            last_vdptool = Some(now);
        }
        if t0.elapsed() >= next_sample.min(window) {
            let p = proc_sample(pid)?;
            rss_max = rss_max.max(p.rss_kb);
            samples.push((t0.elapsed().as_secs_f64(), p));
            next_sample += Duration::from_secs(10);
        }
    }
    let el = t0.elapsed().as_secs_f64();
    let s1 = agent_status(&sock)?;
    let p1 = samples.last().map(|s| s.1).unwrap_or(p0);
    let l1 = lldpad.and_then(|p| proc_sample(p).ok());
    let pct = |ticks: u64, secs: f64| round2(ticks as f64 / hz / secs.max(1e-9) * 100.0);
    // 20 s windows: between samples 2 apart.
    let mut win: Vec<f64> = Vec::new();
    for w in samples.windows(3) {
        let (a, b) = (w[0], w[2]);
        win.push(pct(b.1.ticks.saturating_sub(a.1.ticks), b.0 - a.0));
    }
    win.sort_by(|a, b| a.total_cmp(b));
    let spawned0 = host_counter(&s0, "commands_spawned");
    let spawned1 = host_counter(&s1, "commands_spawned");
    let vdp0 = host_counter(&s0, "vdptool_calls");
    let vdp1 = host_counter(&s1, "vdptool_calls");
    let sq0 = host_counter(&s0, "socket_queries");
    let sq1 = host_counter(&s1, "socket_queries");
    let per_min = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(round1(b.saturating_sub(a) as f64 * 60.0 / el)),
        _ => None,
    };
    // Rate over whole refresh periods (first to last round start).
    let periodic = match (round_starts.first(), round_starts.last()) {
        (Some(a), Some(b)) if round_starts.len() >= 2 && b.0 > a.0 => {
            let span = b.0 - a.0;
            let rate = |x: Option<u64>, y: Option<u64>| {
                x.zip(y)
                    .map(|(x, y)| round1(y.saturating_sub(x) as f64 * 60.0 / span))
            };
            json!({
                "rounds": round_starts.len() - 1,
                "period_s": round2(span / (round_starts.len() - 1) as f64),
                "commands_per_min": rate(a.1, b.1),
                "vdptool_calls_per_min": rate(a.2, b.2),
            })
        }
        _ => Value::Null,
    };
    let v = json!({
        "name": "idle",
        "refresh_round_starts_s": round_starts.iter().map(|r| round1(r.0)).collect::<Vec<_>>(),
        "over_whole_refresh_periods": periodic,
        "vsis": vsis,
        "secs": round1(el),
        "rss_kb": p1.rss_kb,
        "rss_max_kb": rss_max,
        "hwm_kb": p1.hwm_kb,
        "cpu_pct": pct(p1.ticks.saturating_sub(p0.ticks), el),
        "cpu_pct_20s_windows": {"min": win.first(), "max": win.last()},
        "children_cpu_pct": pct(p1.child_ticks.saturating_sub(p0.child_ticks), el),
        "lldpad_cpu_pct": match (l0, l1) {
            (Some(a), Some(b)) => Some(pct(b.ticks.saturating_sub(a.ticks), el)),
            _ => None,
        },
        "commands_spawned": spawned1.zip(spawned0).map(|(b, a)| b.saturating_sub(a)),
        "commands_per_min": per_min(spawned0, spawned1),
        "vdptool_calls_per_min": per_min(vdp0, vdp1),
        "socket_queries_per_min": per_min(sq0, sq1),
        "pending_vsis": s1["host"]["pending_vsis"].clone(),
        "method": "/proc/PID/stat utime+stime (agent threads) and cutime+cstime (its reaped children) over the window, as % of one core; VmRSS/VmHWM from /proc/PID/status; status host.commands_spawned, host.vdptool_calls and host.socket_queries deltas over the window scaled to one minute, and over whole refresh periods (round start = a vdptool child of the agent seen in /proc, scanned every 100 ms, after >= 5 s without one)",
    });
    write_part(&o.out()?, &v)
}

pub(super) fn leaf_vsis(sock: &Path) -> Res<HashSet<String>> {
    let v = leaf_request(sock, "status")?;
    Ok(v["vsis"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| {
                    x["mode"]
                        .as_str()
                        .is_none_or(|m| m.eq_ignore_ascii_case("assoc"))
                })
                .filter_map(|x| x["uuid"].as_str().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default())
}

/// Switch-side deassociation to re-association: `samples` VSIs (spread
/// over the bench ports) are deassociated `spacing-ms` apart; each one's t1
/// is when the leaf's status shows it associated again (polled every 10 ms
/// in a sample's first second, then every 100 ms); a sample is given up
/// `cap-s` after its deassociation.
pub(super) fn cmd_deassoc(o: &Opts) -> Res<()> {
    let sock = PathBuf::from(o.need("leaf-sock")?);
    let samples: usize = o.num("samples", Some(20))?;
    let spacing = Duration::from_millis(o.num("spacing-ms", Some(1500))?);
    let cap = Duration::from_secs(o.num("cap-s", Some(40))?);
    let tick = Shutdown::new();
    let present = leaf_vsis(&sock)?;
    let mut all: Vec<String> = present
        .iter()
        .filter(|u| u.starts_with("b1000000-"))
        .cloned()
        .collect();
    all.sort();
    if all.is_empty() {
        return Err(BenchError::Leaf(
            "no bench VSI associated at the leaf".into(),
        ));
    }
    let step = (all.len() / samples.max(1)).max(1);
    let chosen: Vec<String> = all.iter().step_by(step).take(samples).cloned().collect();
    let start = Instant::now();
    let mut next = 0usize;
    let mut open: HashMap<String, Instant> = HashMap::new();
    let mut lat = Vec::new();
    let mut gave_up = Vec::new();
    let mut polls = 0u64;
    loop {
        let now = Instant::now();
        if next < chosen.len() && now >= start + spacing * next as u32 {
            let u = &chosen[next];
            leaf_request(&sock, &format!("deassoc {u}"))?;
            open.insert(u.clone(), Instant::now());
            next += 1;
        }
        if next >= chosen.len() && open.is_empty() {
            break;
        }
        if !open.is_empty() {
            let have = leaf_vsis(&sock)?;
            polls += 1;
            let seen = Instant::now();
            open.retain(|u, t| {
                if have.contains(u) {
                    lat.push(ms(seen.duration_since(*t)));
                    false
                } else if seen.duration_since(*t) > cap {
                    gave_up.push(u.clone());
                    false
                } else {
                    true
                }
            });
        }
        // 10 ms polls while a sample is younger than 1 s (fast path), else 100 ms.
        let fresh = open.values().any(|t| t.elapsed() < Duration::from_secs(1));
        tick.wait(Duration::from_millis(if fresh { 10 } else { 100 }));
    }
    let v = json!({
        "name": "deassoc",
        "samples": chosen.len(),
        "reassociated": lat.len(),
        "gave_up": gave_up.len(),
        "cap_s": cap.as_secs(),
        "spacing_ms": spacing.as_millis() as u64,
        "leaf_status_polls": polls,
        "total_s": round1(start.elapsed().as_secs_f64()),
        "latency": summary(lat),
        "method": "leaf-ctl `deassoc UUID` (t0 when the leaf answered), t1 when leaf status lists the VSI in mode assoc again (polled every 10 ms during a sample's first second, then every 100 ms; one status answer with 1000 VSIs takes a few ms); samples started spacing-ms apart so they fall at different phases of the agent's refresh; a sample is given up after cap_s",
    });
    write_part(&o.out()?, &v)
}

/// Bulk resync after an agent restart: t0 just before the start command,
/// then update_vm_result calls polled every 100 ms until `expect` distinct
/// ports were reported SUCCESS.
pub(super) fn cmd_resync(o: &Opts) -> Res<()> {
    let server = o.server();
    let sock = PathBuf::from(o.need("sock")?);
    let expect: usize = o.num("expect", None)?;
    let timeout: u64 = o.num("timeout", Some(120))?;
    let tick = Shutdown::new();
    let since = last_call_id(&server)?;
    let t0 = Instant::now();
    trigger(&o.trailing)?;
    let started = t0.elapsed();
    let deadline = t0 + Duration::from_secs(timeout);
    let mut last = since;
    let mut ok: HashSet<String> = HashSet::new();
    let mut other: BTreeMap<String, u64> = BTreeMap::new();
    let mut first = None;
    let mut half = None;
    let mut uplink = None;
    let mut calls = 0u64;
    // (seconds since t0, distinct ports reported SUCCESS) at each change.
    let mut series: Vec<(f64, usize)> = Vec::new();
    while ok.len() < expect && Instant::now() < deadline {
        for (id, port, result) in vm_results_since(&server, last)? {
            last = last.max(id);
            calls += 1;
            first.get_or_insert_with(|| t0.elapsed());
            if result == "SUCCESS" {
                ok.insert(port);
            } else {
                *other.entry(result).or_default() += 1;
            }
        }
        if series.last().map(|p| p.1) != Some(ok.len()) {
            series.push((round2(t0.elapsed().as_secs_f64()), ok.len()));
        }
        if half.is_none() && ok.len() * 2 >= expect {
            half = Some(t0.elapsed());
        }
        if uplink.is_none() {
            if let Ok(s) = agent_status(&sock) {
                if s["uplink"]["detected"].as_bool() == Some(true) {
                    uplink = Some(t0.elapsed());
                }
            }
        }
        if ok.len() < expect {
            tick.wait(Duration::from_millis(100));
        }
    }
    let done = (ok.len() >= expect).then(|| t0.elapsed());
    let s = |d: Option<Duration>| d.map(|d| round2(d.as_secs_f64()));
    let v = json!({
        "name": "resync",
        "expect": expect,
        "success_ports": ok.len(),
        "calls": calls,
        "other_results": other,
        "agent_start_cmd_s": s(Some(started)),
        "uplink_detected_s": s(uplink),
        "first_report_s": s(first),
        "half_s": s(half),
        "all_s": s(done),
        "series": series,
        "method": "SIGTERM the agent, t0 just before the start command (it returns once the status socket exists), count distinct ports with a SUCCESS update_vm_result recorded by the controller after t0 (polled every 100 ms) until all are in",
    });
    write_part(&o.out()?, &v)
}
