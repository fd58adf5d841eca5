//! `vdp-lab bench report`: the parts of one run as a Markdown table and
//! JSON.
//!
//! Owns the report format. Calls the file system.

use super::*;

pub(super) fn read_part(dir: &Path, name: &str) -> Value {
    std::fs::read_to_string(dir.join(format!("{name}.json")))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

pub(super) fn fmt_num(v: &Value, unit: &str) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => format!("{n} {unit}").trim_end().to_string(),
        other => other.to_string(),
    }
}

pub(super) fn cmd_report(o: &Opts) -> Res<()> {
    let dir = PathBuf::from(o.need("dir")?);
    let mut meta = serde_json::Map::new();
    for kv in o.all("meta") {
        if let Some((k, v)) = kv.split_once('=') {
            meta.insert(k.to_string(), json!(v));
        }
    }
    let names = [
        "uplink",
        "latency",
        "burst",
        "idle",
        "deassoc",
        "resync",
        "latency_scale",
        "floor_socket",
        "floor_vdptool",
    ];
    let mut parts = serde_json::Map::new();
    for n in names {
        parts.insert(n.to_string(), read_part(&dir, n));
    }
    let p = |n: &str| parts.get(n).cloned().unwrap_or(Value::Null);
    let (up, lat, burst, idle, de, rs, scale) = (
        p("uplink"),
        p("latency"),
        p("burst"),
        p("idle"),
        p("deassoc"),
        p("resync"),
        p("latency_scale"),
    );
    let (fs, fv) = (p("floor_socket"), p("floor_vdptool"));
    // burst / floor: time per port of the burst over time per VSI of the
    // bare associate loop (same leaf, same run).
    let burst_per_port = match (burst["total_s"].as_f64(), burst["ports"].as_f64()) {
        (Some(t), Some(n)) if n > 0.0 => Some(t * 1000.0 / n),
        _ => None,
    };
    let ratio = |f: &Value| {
        let r = burst_per_port.zip(f["per_vsi_ms"].as_f64().filter(|x| *x > 0.0))?;
        Some(round2(r.0 / r.1))
    };
    let ratios = json!({
        "burst_per_port_ms": burst_per_port.map(round2),
        "burst_over_floor_socket": ratio(&fs),
        "burst_over_floor_vdptool": ratio(&fv),
    });
    let floor_row = |f: &Value, how: &str| {
        (
            format!(
                "floor: {} bare associations {how}, per VSI",
                f["associated"]
            ),
            fmt_num(&f["per_vsi_ms"], "ms"),
            format!(
                "p50 {} ms, p99 {} ms, failed {}",
                f["latency"]["p50_ms"], f["latency"]["p99_ms"], f["failed"]
            ),
        )
    };
    let rows: Vec<(String, String, String)> = vec![
        (
            format!(
                "VM-up -> result, sequential ({} ports/{} nets, {}) p50",
                lat["ports"],
                lat["nets"],
                match lat["pause_ms"].as_u64() {
                    Some(n) if n > 0 => format!("{n} ms apart"),
                    _ => "back to back".into(),
                }
            ),
            fmt_num(&lat["latency"]["p50_ms"], "ms"),
            "< 50 ms".into(),
        ),
        (
            "VM-up -> result, sequential p99".into(),
            fmt_num(&lat["latency"]["p99_ms"], "ms"),
            "< 200 ms".into(),
        ),
        (
            "VM-up event handed to the agent -> its update_vm_result at the controller, sequential p50 / p99".into(),
            format!(
                "{} / {}",
                fmt_num(&lat["event_to_result"]["latency"]["p50_ms"], "ms"),
                fmt_num(&lat["event_to_result"]["latency"]["p99_ms"], "ms")
            ),
            "< 5 ms / < 20 ms".into(),
        ),
        (
            format!(
                "VM-up -> result, sequential, {} more ports with {} VSIs present, p50/p99",
                scale["ports"], rs["expect"]
            ),
            format!(
                "{} / {}",
                fmt_num(&scale["latency"]["p50_ms"], "ms"),
                fmt_num(&scale["latency"]["p99_ms"], "ms")
            ),
            "< 50 ms / < 200 ms".into(),
        ),
        (
            format!("burst of {} adds: all reported", burst["ports"]),
            fmt_num(&burst["total_s"], "s"),
            format!(
                "{} ports/s, p50 {} ms",
                burst["rate_per_s"], burst["latency"]["p50_ms"]
            ),
        ),
        (
            "processes spawned per VM port (host.commands_spawned): latency / burst / scale".into(),
            format!(
                "{} / {} / {}",
                lat["host"]["commands_per_port"],
                burst["host"]["commands_per_port"],
                scale["host"]["commands_per_port"]
            ),
            format!(
                "burst: vdptool {} /port, socket requests {} /port",
                burst["host"]["vdptool_per_port"], burst["host"]["socket_requests_per_port"]
            ),
        ),
        floor_row(&fs, "over lldpad's control socket"),
        floor_row(&fv, "with vdptool"),
        (
            "burst / floor (socket; vdptool)".into(),
            fmt_num(&ratios["burst_over_floor_socket"], "x"),
            format!(
                "{} x; burst {} ms per port",
                ratios["burst_over_floor_vdptool"], ratios["burst_per_port_ms"]
            ),
        ),
        (
            format!("resync of {} ports after restart", rs["expect"]),
            fmt_num(&rs["all_s"], "s"),
            "< 15 s".into(),
        ),
        (
            format!("agent RSS with {} VSIs", idle["vsis"]),
            match idle["rss_kb"].as_u64() {
                Some(k) => format!("{:.1} MB", k as f64 / 1024.0),
                None => "-".into(),
            },
            "< 20 MB".into(),
        ),
        (
            format!("agent idle CPU over {} s (own threads)", idle["secs"]),
            fmt_num(&idle["cpu_pct"], "%"),
            format!("+ children {} %", idle["children_cpu_pct"]),
        ),
        (
            "uplink auto-detect after leaf start".into(),
            fmt_num(&up["detect_ms"], "ms"),
            String::new(),
        ),
        (
            format!(
                "switch deassoc -> re-assoc p50 ({}/{} samples)",
                de["reassociated"], de["samples"]
            ),
            fmt_num(&de["latency"]["p50_ms"], "ms"),
            format!(
                "max {} ms, gave up {}",
                de["latency"]["max_ms"], de["gave_up"]
            ),
        ),
        {
            let per = &idle["over_whole_refresh_periods"];
            if per.is_null() {
                (
                    format!(
                        "processes spawned per minute, idle ({} s window)",
                        idle["secs"]
                    ),
                    fmt_num(&idle["commands_per_min"], "/min"),
                    format!(
                        "vdptool {} /min; lldpad socket queries {} /min",
                        idle["vdptool_calls_per_min"], idle["socket_queries_per_min"]
                    ),
                )
            } else {
                (
                    format!(
                        "processes spawned per minute, idle ({} refresh period(s) of {} s)",
                        per["rounds"], per["period_s"]
                    ),
                    fmt_num(&per["commands_per_min"], "/min"),
                    format!(
                        "vdptool {} /min; raw {} s window: {} /min",
                        per["vdptool_calls_per_min"], idle["secs"], idle["commands_per_min"]
                    ),
                )
            }
        },
    ];
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(5);
    println!("{:<w0$}  {:<w1$}  note/target", "metric", "value");
    for (a, b, c) in &rows {
        println!("{a:<w0$}  {b:<w1$}  {c}");
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    meta.insert("loadavg_at_report".into(), json!(loadavg.trim()));
    let doc = json!({
        "meta": meta,
        "ratios": ratios,
        "results": parts,
    });
    let out = o.out()?;
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
    )
    .map_err(|err| BenchError::Io {
        what: format!("write {}", out.display()),
        err,
    })?;
    println!("written {}", out.display());
    Ok(())
}
