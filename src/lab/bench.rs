//! `vdp-lab bench`: the load and measurement driver behind `scripts/bench`.
//! `scripts/bench` sets the lab up and tears it down; each subcommand here
//! drives one measurement against the running lab and writes one JSON part;
//! `report` merges the parts into `bench.json` and prints the table.
//!
//! ```text
//! vdp-lab bench gen     --first I --count N --nets K        port lines for `scripts/lab ports-add`
//! vdp-lab bench adds    --first I --count N --nets K --host H [--burst] [--timeout S] [--name P] --out F
//! vdp-lab bench uplink  --sock PATH [--timeout S] --out F -- CMD...   (CMD starts the leaf)
//! vdp-lab bench idle    --sock PATH --pid PID [--secs S] [--lldpad-pid P] --out F
//! vdp-lab bench deassoc --leaf-sock PATH [--samples N] [--spacing-ms M] [--cap-s S] --out F
//! vdp-lab bench resync  --sock PATH --expect N [--timeout S] --out F -- CMD...  (CMD starts the agent)
//! vdp-lab bench report  --dir DIR --out F [--meta K=V]...
//! ```
//! Every subcommand also takes `--server URL` (default `http://127.0.0.1:9696`).
//! Bench port `i` (see [`bench_port`]) is OVS port `bp<i>`, tagged with its
//! network's index as local VLAN; ports `first..first+count` use networks
//! `1..=nets` round robin.
//!
//! Owns nothing persistent. Calls the controller's admin API (ureq), the
//! agent's status socket (`crate::status::query`), the leaf's control socket
//! (`lab::leaf::control::request`), `/proc`, and `exec::Runner` for the
//! trigger commands.

use crate::exec::Runner;
use crate::lab::leaf::control;
use crate::shutdown::Shutdown;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Default admin URL of the lab controller.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:9696";

const USAGE: &str =
    "usage: vdp-lab bench gen|adds|uplink|idle|deassoc|resync|report ... (see src/lab/bench.rs)";

/// What can go wrong in a bench step.
#[derive(Debug)]
pub enum BenchError {
    /// Bad command line.
    Usage(String),
    /// Admin API call failed.
    Http { url: String, detail: String },
    /// Reading or writing a file.
    Io { what: String, err: std::io::Error },
    /// Agent status socket.
    Status(String),
    /// Leaf control socket.
    Leaf(String),
    /// A trigger command failed.
    Trigger(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Usage(m) => write!(f, "{m}\n{USAGE}"),
            BenchError::Http { url, detail } => write!(f, "{url}: {detail}"),
            BenchError::Io { what, err } => write!(f, "{what}: {err}"),
            BenchError::Status(m) => write!(f, "agent status: {m}"),
            BenchError::Leaf(m) => write!(f, "leaf control: {m}"),
            BenchError::Trigger(m) => write!(f, "trigger command: {m}"),
        }
    }
}

impl std::error::Error for BenchError {}

type Res<T> = Result<T, BenchError>;

// ---------------------------------------------------------------- options

struct Opts {
    vals: HashMap<String, Vec<String>>,
    flags: HashSet<String>,
    /// Everything after `--`.
    trailing: Vec<String>,
}

fn parse_opts(args: &[String], flags: &[&str]) -> Res<Opts> {
    let mut o = Opts {
        vals: HashMap::new(),
        flags: HashSet::new(),
        trailing: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            o.trailing = it.cloned().collect();
            break;
        }
        let Some(name) = a.strip_prefix("--") else {
            return Err(BenchError::Usage(format!("unexpected argument {a}")));
        };
        if flags.contains(&name) {
            o.flags.insert(name.to_string());
            continue;
        }
        let v = it
            .next()
            .ok_or_else(|| BenchError::Usage(format!("--{name} needs a value")))?;
        o.vals.entry(name.to_string()).or_default().push(v.clone());
    }
    Ok(o)
}

impl Opts {
    fn get(&self, k: &str) -> Option<&str> {
        self.vals.get(k).and_then(|v| v.last()).map(String::as_str)
    }
    fn all(&self, k: &str) -> Vec<String> {
        self.vals.get(k).cloned().unwrap_or_default()
    }
    fn need(&self, k: &str) -> Res<&str> {
        self.get(k)
            .ok_or_else(|| BenchError::Usage(format!("--{k} is required")))
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: Option<T>) -> Res<T> {
        match (self.get(k), default) {
            (Some(s), _) => s
                .parse()
                .map_err(|_| BenchError::Usage(format!("--{k}: bad number {s:?}"))),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(BenchError::Usage(format!("--{k} is required"))),
        }
    }
    fn server(&self) -> String {
        self.get("server")
            .unwrap_or(DEFAULT_SERVER)
            .trim_end_matches('/')
            .to_string()
    }
    fn out(&self) -> Res<PathBuf> {
        self.need("out").map(PathBuf::from)
    }
}

// ---------------------------------------------------------------- ports

/// One synthetic VM port of the bench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchPort {
    pub index: u32,
    /// OVS port name `bp<i>` (type internal, on br-int).
    pub name: String,
    pub port_uuid: String,
    pub mac: String,
    /// Network index, 1..=nets; also the port's local VLAN (OVS tag).
    pub net: u32,
    pub net_uuid: String,
    /// Segment ID (VDP group ID) = 40000 + net.
    pub segment: u32,
}

/// Bench port `index` on `nets` networks (network = index % nets + 1).
pub fn bench_port(index: u32, nets: u32) -> BenchPort {
    let net = index % nets.max(1) + 1;
    BenchPort {
        index,
        name: format!("bp{index}"),
        port_uuid: format!("b1000000-0000-4000-8000-{index:012x}"),
        mac: format!(
            "fa:16:3e:be:{:02x}:{:02x}",
            (index >> 8) & 0xff,
            index & 0xff
        ),
        net,
        net_uuid: format!("b1ee0000-0000-4000-8000-{net:012x}"),
        segment: 40000 + net,
    }
}

fn ports_of(o: &Opts) -> Res<Vec<BenchPort>> {
    let first: u32 = o.num("first", Some(0))?;
    let count: u32 = o.num("count", None)?;
    let nets: u32 = o.num("nets", None)?;
    if nets == 0 || nets > 4000 || count > 60000 || first > 60000 {
        return Err(BenchError::Usage(
            "need 1 <= nets <= 4000, count/first <= 60000".into(),
        ));
    }
    Ok((first..first + count)
        .map(|i| bench_port(i, nets))
        .collect())
}

// ---------------------------------------------------------------- helpers

fn http(method: &str, url: &str, body: Option<&Value>, timeout: Duration) -> Res<Value> {
    let req = ureq::request(method, url).timeout(timeout);
    let res = match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    };
    let fail = |detail: String| BenchError::Http {
        url: url.to_string(),
        detail,
    };
    match res {
        Ok(r) => r.into_json::<Value>().map_err(|e| fail(e.to_string())),
        Err(ureq::Error::Status(code, r)) => Err(fail(format!(
            "HTTP {code} {}",
            r.into_string().unwrap_or_default()
        ))),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// p50/p90/p99/max/mean (ms) of latencies in ms.
pub fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(|a, b| a.total_cmp(b));
    let n = ms.len();
    let mean = if n == 0 {
        None
    } else {
        Some(round1(ms.iter().sum::<f64>() / n as f64))
    };
    json!({
        "n": n,
        "p50_ms": percentile(&ms, 50.0).map(round1),
        "p90_ms": percentile(&ms, 90.0).map(round1),
        "p99_ms": percentile(&ms, 99.0).map(round1),
        "max_ms": ms.last().copied().map(round1),
        "min_ms": ms.first().copied().map(round1),
        "mean_ms": mean,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn write_part(path: &Path, v: &Value) -> Res<()> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    std::fs::write(path, text + "\n").map_err(|err| BenchError::Io {
        what: format!("write {}", path.display()),
        err,
    })?;
    println!("{}", serde_json::to_string(v).unwrap_or_default());
    Ok(())
}

fn agent_status(sock: &Path) -> Res<Value> {
    crate::status::query(sock).map_err(|e| BenchError::Status(e.to_string()))
}

fn leaf_request(sock: &Path, line: &str) -> Res<Value> {
    let reply = control::request(sock, line, Duration::from_secs(10))
        .map_err(|e| BenchError::Leaf(e.to_string()))?;
    let v: Value =
        serde_json::from_str(&reply).map_err(|e| BenchError::Leaf(format!("{line}: {e}")))?;
    if v.get("ok").and_then(Value::as_bool) != Some(true) {
        return Err(BenchError::Leaf(format!("{line}: {reply}")));
    }
    Ok(v)
}

/// Run the trigger command after `--` (no shell), failing on non-zero exit.
fn trigger(argv: &[String]) -> Res<()> {
    if argv.is_empty() {
        return Err(BenchError::Usage(
            "a trigger command after -- is required".into(),
        ));
    }
    let runner = Runner::new(Vec::new(), Duration::from_secs(60));
    match runner.run(argv) {
        Ok(_) => Ok(()),
        Err(e) => Err(BenchError::Trigger(e.to_string())),
    }
}

/// Highest recorded call id (0 when none).
fn last_call_id(server: &str) -> Res<u64> {
    let v = http(
        "GET",
        &format!("{server}/admin/calls?method=update_vm_result"),
        None,
        Duration::from_secs(30),
    )?;
    Ok(v.get("calls")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().filter_map(|c| c.get("id")?.as_u64()).max())
        .unwrap_or(0))
}

/// update_vm_result calls after `since`: (id, port_uuid, result).
fn vm_results_since(server: &str, since: u64) -> Res<Vec<(u64, String, String)>> {
    let v = http(
        "GET",
        &format!("{server}/admin/calls?method=update_vm_result&since={since}"),
        None,
        Duration::from_secs(30),
    )?;
    let calls = v
        .get("calls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(calls
        .iter()
        .filter_map(|c| {
            let id = c.get("id")?.as_u64()?;
            let args = c.get("args")?;
            let port = args.get("port_uuid")?.as_str()?.to_string();
            let result = args
                .get("result")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Some((id, port, result))
        })
        .collect())
}

/// /proc figures of one process.
#[derive(Debug, Clone, Copy, Default)]
struct ProcSample {
    /// utime + stime, clock ticks.
    ticks: u64,
    /// cutime + cstime (reaped children), clock ticks.
    child_ticks: u64,
    rss_kb: u64,
    hwm_kb: u64,
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn proc_sample(pid: u32) -> Res<ProcSample> {
    let io = |what: &str, err| BenchError::Io {
        what: format!("{what} of pid {pid}"),
        err,
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| io("stat", e))?;
    // Fields after the command name (which may hold spaces) start at state.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    // rest[0] = state (field 3); utime = field 14 -> index 11.
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| io("status", e))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample {
        ticks: get(11) + get(12),
        child_ticks: get(13) + get(14),
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
    })
}

/// Whether a child process of `pid` with this command name exists now.
fn has_child_named(pid: u32, comm: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{n}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != comm {
            continue;
        }
        // after ")": state ppid ...
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            return true;
        }
    }
    false
}

fn host_counter(status: &Value, key: &str) -> Option<u64> {
    status.get("host")?.get(key)?.as_u64()
}

// ---------------------------------------------------------------- subcommands

fn cmd_gen(o: &Opts) -> Res<()> {
    for p in ports_of(o)? {
        println!("{} {} {} {}", p.name, p.port_uuid, p.mac, p.net);
    }
    Ok(())
}

fn add_body(p: &BenchPort, host: &str) -> Value {
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
fn cmd_adds(o: &Opts) -> Res<()> {
    let server = o.server();
    let host = o.need("host")?.to_string();
    let ports = ports_of(o)?;
    let timeout: u64 = o.num("timeout", Some(30))?;
    let burst = o.flags.contains("burst");
    let nets: u32 = o.num("nets", None)?;
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut failed: Vec<Value> = Vec::new();
    if !burst {
        for p in &ports {
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
    let mut v = json!({
        "name": o.get("name").unwrap_or(if burst { "burst" } else { "latency" }),
        "mode": if burst { "burst" } else { "sequential" },
        "ports": ports.len(),
        "nets": nets,
        "ok": ok,
        "failed": failed.len(),
        "failed_examples": failed.iter().take(5).cloned().collect::<Vec<_>>(),
        "total_s": round2(total.as_secs_f64()),
        "rate_per_s": round1(ok as f64 / total.as_secs_f64().max(1e-9)),
        "latency": summary(lat),
    });
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
fn poll_results(
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
fn cmd_uplink(o: &Opts) -> Res<()> {
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
fn cmd_idle(o: &Opts) -> Res<()> {
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

fn leaf_vsis(sock: &Path) -> Res<HashSet<String>> {
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
fn cmd_deassoc(o: &Opts) -> Res<()> {
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
fn cmd_resync(o: &Opts) -> Res<()> {
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
        "method": "SIGTERM the agent, t0 just before the start command (it returns once the status socket exists), count distinct ports with a SUCCESS update_vm_result recorded by the controller after t0 (polled every 100 ms) until all are in",
    });
    write_part(&o.out()?, &v)
}

fn read_part(dir: &Path, name: &str) -> Value {
    std::fs::read_to_string(dir.join(format!("{name}.json")))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

fn fmt_num(v: &Value, unit: &str) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => format!("{n} {unit}").trim_end().to_string(),
        other => other.to_string(),
    }
}

fn cmd_report(o: &Opts) -> Res<()> {
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
    let rows: Vec<(String, String, String)> = vec![
        (
            format!(
                "VM-up -> result, sequential ({} ports/{} nets) p50",
                lat["ports"], lat["nets"]
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

/// Entry point of `vdp-lab bench ...`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .try_init();
    let Some(sub) = args.first() else {
        eprintln!("{USAGE}");
        return 2;
    };
    let res = parse_opts(&args[1..], &["burst"]).and_then(|o| match sub.as_str() {
        "gen" => cmd_gen(&o),
        "adds" => cmd_adds(&o),
        "uplink" => cmd_uplink(&o),
        "idle" => cmd_idle(&o),
        "deassoc" => cmd_deassoc(&o),
        "resync" => cmd_resync(&o),
        "report" => cmd_report(&o),
        _ => Err(BenchError::Usage(format!("unknown command {sub}"))),
    });
    match res {
        Ok(()) => 0,
        Err(e @ BenchError::Usage(_)) => {
            eprintln!("vdp-lab bench {sub}: {e}");
            2
        }
        Err(e) => {
            eprintln!("vdp-lab bench {sub}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(100.0));
        assert_eq!(percentile(&v, 99.0), Some(198.0));
        assert_eq!(percentile(&v, 100.0), Some(200.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
    }

    #[test]
    fn bench_ports_are_valid_and_distinct() {
        let a = bench_port(0, 20);
        assert_eq!(a.net, 1);
        assert_eq!(a.segment, 40001);
        assert_eq!(a.port_uuid, "b1000000-0000-4000-8000-000000000000");
        let b = bench_port(999, 50);
        assert_eq!(b.net, 50);
        assert_eq!(b.mac, "fa:16:3e:be:03:e7");
        assert_eq!(b.name, "bp999");
        let macs: HashSet<String> = (0..1000).map(|i| bench_port(i, 50).mac).collect();
        assert_eq!(macs.len(), 1000);
    }
}
