//! `vdp-lab bench`: the load and measurement driver behind `scripts/bench`.
//! `scripts/bench` sets the lab up and tears it down; each subcommand here
//! drives one measurement against the running lab and writes one JSON part;
//! `report` merges the parts into `bench.json` and prints the table.
//!
//! ```text
//! vdp-lab bench gen     --first I --count N --nets K        port lines for `scripts/lab ports-add`
//! vdp-lab bench adds    --first I --count N --nets K --host H [--burst | --pause-ms M] [--timeout S] [--name P] [--sock PATH] --out F
//! vdp-lab bench uplink  --sock PATH [--timeout S] --out F -- CMD...   (CMD starts the leaf)
//! vdp-lab bench idle    --sock PATH --pid PID [--secs S] [--lldpad-pid P] --out F
//! vdp-lab bench deassoc --leaf-sock PATH [--samples N] [--spacing-ms M] [--cap-s S] --out F
//! vdp-lab bench resync  --sock PATH --expect N [--timeout S] --out F -- CMD...  (CMD starts the agent)
//! vdp-lab bench floor   --iface LLDPL... --first I --count N --nets K [--via socket|vdptool] --out F
//! vdp-lab bench report  --dir DIR --out F [--meta K=V]...
//! vdp-lab bench plot    --dir DIR --out-dir D        D/latency.svg, D/resync.svg
//! ```
//! Every subcommand also takes `--server URL` (default `http://127.0.0.1:9696`).
//! Bench port `i` (see [`bench_port`]) is OVS port `bp<i>`, tagged with its
//! network's index as local VLAN; ports `first..first+count` use networks
//! `1..=nets` round robin.
//!
//! Owns nothing persistent. Calls the controller's admin API (ureq), the
//! agent's status socket (`crate::status::query_raw`), the leaf's control socket
//! (`lab::leaf::control::request`), `/proc`, `exec::Runner` for the
//! trigger commands, and the station lldpad (`floor`: control socket or
//! vdptool).

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
    "usage: vdp-lab bench gen|adds|uplink|idle|deassoc|resync|floor|report|plot ... (see src/lab/bench.rs)";

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

/// `--first`, `--count`, `--nets` of a phase, bounded.
fn port_range(o: &Opts) -> Res<(u32, u32, u32)> {
    let first: u32 = o.num("first", Some(0))?;
    let count: u32 = o.num("count", None)?;
    let nets: u32 = o.num("nets", None)?;
    if nets == 0 || nets > 4000 || count > 60000 || first > 60000 {
        return Err(BenchError::Usage(
            "need 1 <= nets <= 4000, count/first <= 60000".into(),
        ));
    }
    Ok((first, count, nets))
}

fn ports_of(o: &Opts) -> Res<Vec<BenchPort>> {
    let (first, count, nets) = port_range(o)?;
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
    crate::status::query_raw(sock)
        .map(|(_, v)| v)
        .map_err(|e| BenchError::Status(e.to_string()))
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

mod floor;
mod measure;
pub mod plot;
mod report;
use floor::cmd_floor;
use measure::*;
use plot::cmd_plot;
use report::*;

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
        "floor" => cmd_floor(&o),
        "report" => cmd_report(&o),
        "plot" => cmd_plot(&o),
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
mod tests;
