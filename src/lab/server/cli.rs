//! Command line of `vdp-lab server` and `vdp-lab port` (operator commands
//! against the admin API of a running `vdp-lab server`).
//!
//! ```text
//! vdp-lab server --listen ADDR [--state FILE] [--token-file FILE]
//! vdp-lab port add --host H --port-uuid U --mac M --net-uuid N --segment S
//!                  [--vm-name X] [--vm-uuid V] [--ip A] [--fwd-mod F] [--gw-mac G] [--server URL]
//! vdp-lab port del --port-uuid U [--purge] [--server URL]
//! vdp-lab port list [--host H] [--json] [--server URL]
//! vdp-lab port wait --port-uuid U [--result R] [--timeout S] [--server URL]
//! vdp-lab port migrate UUID --to HOST [--abort] [--manual] [--wait-s S] [--server URL]
//! vdp-lab port migrate UUID --switchover | --abort | --wait ready|done [--timeout S] | --show
//! ```
//! `migrate --to` queues `arriving`; without `--manual` the server makes the
//! switchover itself (destination's report, at the latest `--wait-s`, default
//! 10) and the command waits for it and prints the events; with `--manual`
//! it returns at once and `--switchover` / `--abort` is the switchover point.
//! `--server` defaults to `http://127.0.0.1:9696`. Exit codes: 0 ok, 1 runtime
//! failure (server unreachable, `wait` timed out), 2 usage error.
//!
//! Owns nothing; calls `lab::server` (to run it) and its admin API over HTTP (ureq).

use super::{LabServer, ServerOptions};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Default admin/agent URL of the lab server.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:9696";

const SERVER_USAGE: &str = "usage: vdp-lab server --listen ADDR [--state FILE] [--token-file FILE]";
const PORT_USAGE: &str = "usage: vdp-lab port add --host H --port-uuid U --mac M --net-uuid N --segment S [--vm-name X] [--vm-uuid V] [--ip A] [--fwd-mod F] [--gw-mac G] [--server URL]
       vdp-lab port del --port-uuid U [--purge] [--server URL]
       vdp-lab port list [--host H] [--json] [--server URL]
       vdp-lab port wait --port-uuid U [--result SUCCESS|CREATE:FAIL|DELETE:FAIL] [--timeout S] [--server URL]
       vdp-lab port migrate UUID --to HOST [--abort] [--manual] [--wait-s S] [--server URL]
       vdp-lab port migrate UUID --switchover | --abort | --wait ready|done [--timeout S] | --show [--server URL]";

/// Parsed `--key value` / `--key=value` options and bare `--flag`s.
struct Opts {
    vals: HashMap<String, String>,
    flags: Vec<String>,
}

fn parse_opts(args: &[String], flags: &[&str], keys: &[&str]) -> Result<Opts, String> {
    let mut o = Opts {
        vals: HashMap::new(),
        flags: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let Some(name) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument {a}"));
        };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        if flags.contains(&name) && inline.is_none() {
            o.flags.push(name.to_string());
        } else if keys.contains(&name) {
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or(format!("--{name} needs a value"))?,
            };
            o.vals.insert(name.to_string(), v);
        } else {
            return Err(format!("unknown option --{name}"));
        }
    }
    Ok(o)
}

impl Opts {
    fn get(&self, k: &str) -> Option<&str> {
        self.vals.get(k).map(String::as_str)
    }
    fn need(&self, k: &str) -> Result<&str, String> {
        self.get(k).ok_or(format!("--{k} is required"))
    }
    fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }
}

fn init_log() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .try_init();
}

/// `vdp-lab server ...`; returns the exit code.
pub fn server_main(args: &[String]) -> i32 {
    init_log();
    let o = match parse_opts(args, &[], &["listen", "state", "token-file"]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vdp-lab server: {e}\n{SERVER_USAGE}");
            return 2;
        }
    };
    let Some(listen) = o.get("listen") else {
        eprintln!("vdp-lab server: --listen is required\n{SERVER_USAGE}");
        return 2;
    };
    let token = match o.get("token-file") {
        None => None,
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            Ok(_) => {
                eprintln!("vdp-lab server: token file {p} is empty");
                return 2;
            }
            Err(e) => {
                eprintln!("vdp-lab server: token file {p}: {e}");
                return 2;
            }
        },
    };
    let opts = ServerOptions {
        listen: listen.to_string(),
        state: o.get("state").map(Into::into),
        token,
    };
    match LabServer::start(opts) {
        Ok(s) => {
            println!("vdp-lab server listening on {}", s.url());
            s.join();
            0
        }
        Err(e) => {
            eprintln!("vdp-lab server: {e}");
            1
        }
    }
}

/// An admin API call; `Ok` = 2xx JSON body.
fn call(method: &str, url: &str, body: Option<&Value>, timeout: Duration) -> Result<Value, String> {
    let req = ureq::request(method, url).timeout(timeout);
    let res = match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    };
    match res {
        Ok(r) => r
            .into_json::<Value>()
            .map_err(|e| format!("{url}: bad answer: {e}")),
        Err(ureq::Error::Status(code, r)) => {
            let msg = r
                .into_json::<Value>()
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(String::from))
                .unwrap_or_default();
            Err(format!("{url}: HTTP {code} {msg}"))
        }
        Err(e) => Err(format!("{url}: {e}")),
    }
}

fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text(v: &Value, k: &str) -> String {
    match v.get(k) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(o) => o.to_string(),
    }
}

const HEADER: [&str; 9] = [
    "PORT_UUID",
    "HOST",
    "STATUS",
    "SEGMENT",
    "RESULT",
    "LOCAL_VLAN",
    "VDP_VLAN",
    "FAIL_REASON",
    "WHEN",
];

fn row(p: &Value) -> Vec<String> {
    [
        "port_uuid",
        "host",
        "status",
        "segmentation_id",
        "result",
        "local_vlan",
        "vdp_vlan",
        "fail_reason",
        "when",
    ]
    .iter()
    .map(|k| text(p, k))
    .collect()
}

fn print_table(ports: &[Value]) {
    let rows: Vec<Vec<String>> = ports.iter().map(row).collect();
    let mut w: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(HEADER.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r);
    }
}

/// `vdp-lab port ...`; returns the exit code.
pub fn port_main(args: &[String]) -> i32 {
    let Some(sub) = args.first() else {
        eprintln!("{PORT_USAGE}");
        return 2;
    };
    let mut rest: Vec<String> = args[1..].to_vec();
    if sub == "migrate" && rest.first().is_some_and(|a| !a.starts_with("--")) {
        let uuid = rest.remove(0);
        rest.extend(["--port-uuid".to_string(), uuid]);
    }
    let rest = rest.as_slice();
    let (flags, keys): (&[&str], &[&str]) = match sub.as_str() {
        "add" => (
            &[],
            &[
                "server",
                "host",
                "port-uuid",
                "mac",
                "net-uuid",
                "segment",
                "vm-name",
                "vm-uuid",
                "ip",
                "fwd-mod",
                "gw-mac",
            ],
        ),
        "del" => (&["purge"], &["server", "port-uuid"]),
        "list" => (&["json"], &["server", "host"]),
        "wait" => (&[], &["server", "port-uuid", "result", "timeout"]),
        "migrate" => (
            &["abort", "manual", "switchover", "show"],
            &["server", "port-uuid", "to", "wait-s", "wait", "timeout"],
        ),
        _ => {
            eprintln!("vdp-lab port: unknown command {sub}\n{PORT_USAGE}");
            return 2;
        }
    };
    let o = match parse_opts(rest, flags, keys) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vdp-lab port {sub}: {e}\n{PORT_USAGE}");
            return 2;
        }
    };
    match port_cmd(sub, &o) {
        Ok(code) => code,
        Err((code, e)) => {
            eprintln!("vdp-lab port {sub}: {e}");
            code
        }
    }
}

fn port_cmd(sub: &str, o: &Opts) -> Result<i32, (i32, String)> {
    let usage = |e: String| (2, e);
    let rt = |e: String| (1, e);
    let base = o
        .get("server")
        .unwrap_or(DEFAULT_SERVER)
        .trim_end_matches('/')
        .to_string();
    let t = Duration::from_secs(10);
    match sub {
        "add" => {
            let seg_id: u64 = o
                .need("segment")
                .map_err(usage)?
                .parse()
                .map_err(|_| usage("--segment must be a number".into()))?;
            let mut body = json!({
                "host": o.need("host").map_err(usage)?,
                "port_uuid": o.need("port-uuid").map_err(usage)?,
                "mac": o.need("mac").map_err(usage)?,
                "net_uuid": o.need("net-uuid").map_err(usage)?,
                "segmentation_id": seg_id,
            });
            for (flag, key) in [
                ("vm-name", "vm_name"),
                ("vm-uuid", "vm_uuid"),
                ("ip", "ip"),
                ("fwd-mod", "fwd_mod"),
                ("gw-mac", "gw_mac"),
            ] {
                if let Some(v) = o.get(flag) {
                    body[key] = json!(v);
                }
            }
            let v = call("POST", &format!("{base}/admin/ports"), Some(&body), t).map_err(rt)?;
            println!(
                "added {} on {} (event seq {})",
                text(&body, "port_uuid"),
                text(&body, "host"),
                text(&v, "seq")
            );
            Ok(0)
        }
        "del" => {
            let uuid = o.need("port-uuid").map_err(usage)?;
            let purge = if o.flag("purge") { "?purge=1" } else { "" };
            let v = call(
                "DELETE",
                &format!("{base}/admin/ports/{}{purge}", seg(uuid)),
                None,
                t,
            )
            .map_err(rt)?;
            if purge.is_empty() {
                println!("deleted {uuid} (event seq {})", text(&v, "seq"));
            } else {
                println!("purged {uuid}");
            }
            Ok(0)
        }
        "list" => {
            let q = o
                .get("host")
                .map(|h| format!("?host={}", seg(h)))
                .unwrap_or_default();
            let v = call("GET", &format!("{base}/admin/ports{q}"), None, t).map_err(rt)?;
            if o.flag("json") {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                let ports = v
                    .get("ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                print_table(&ports);
            }
            Ok(0)
        }
        "wait" => {
            let uuid = o.need("port-uuid").map_err(usage)?;
            let timeout: u64 = match o.get("timeout") {
                None => 30,
                Some(s) => s
                    .parse()
                    .map_err(|_| usage("--timeout must be seconds".into()))?,
            };
            let mut url = format!("{base}/admin/ports/{}/wait?timeout={timeout}", seg(uuid));
            if let Some(r) = o.get("result") {
                url.push_str(&format!("&result={}", seg(r)));
            }
            let v = call("GET", &url, None, Duration::from_secs(timeout + 10)).map_err(rt)?;
            let port = v.get("port").cloned().unwrap_or(Value::Null);
            print_table(std::slice::from_ref(&port));
            if v.get("matched").and_then(Value::as_bool) == Some(true) {
                Ok(0)
            } else {
                Err(rt(format!("no matching result within {timeout} s")))
            }
        }
        "migrate" => migrate_cmd(&base, o),
        _ => Err(usage(PORT_USAGE.into())),
    }
}

fn migration_lines(m: &Value) {
    println!(
        "migration {} of {}: {} -> {}: {}",
        text(m, "id"),
        text(m, "port_uuid"),
        text(m, "from"),
        text(m, "to"),
        text(m, "phase")
    );
    for e in m["events"].as_array().into_iter().flatten() {
        println!(
            "  vm_migration {} to {} (seq {})",
            text(e, "phase"),
            text(e, "host"),
            text(e, "seq")
        );
    }
}

fn migrate_cmd(base: &str, o: &Opts) -> Result<i32, (i32, String)> {
    let usage = |e: String| (2, e);
    let rt = |e: String| (1, e);
    let uuid = o.need("port-uuid").map_err(usage)?;
    let url = format!("{base}/admin/ports/{}/migrate", seg(uuid));
    let t = Duration::from_secs(10);
    let secs = |k: &str, dflt: u64| -> Result<u64, (i32, String)> {
        o.get(k).map_or(Ok(dflt), |s| {
            s.parse()
                .map_err(|_| usage(format!("--{k} must be seconds")))
        })
    };
    let wait = |until: &str, timeout: u64| -> Result<i32, (i32, String)> {
        let v = call(
            "GET",
            &format!("{url}/wait?until={until}&timeout={timeout}"),
            None,
            Duration::from_secs(timeout + 10),
        )
        .map_err(rt)?;
        migration_lines(&v["migration"]);
        if v["matched"] == true {
            Ok(0)
        } else {
            Err(rt(format!("not {until} within {timeout} s")))
        }
    };
    if let Some(to) = o.get("to") {
        let body = json!({
            "to": to,
            "abort": o.flag("abort"),
            "manual": o.flag("manual"),
            "wait_s": secs("wait-s", 10)?,
        });
        let v = call("POST", &url, Some(&body), t).map_err(rt)?;
        let m = &v["migration"];
        if o.flag("manual") {
            migration_lines(m);
            println!("switchover point: vdp-lab port migrate {uuid} --switchover (or --abort)");
            return Ok(0);
        }
        let wait_s = m["wait_s"].as_u64().unwrap_or(10);
        return wait("done", wait_s + 5);
    }
    if o.flag("switchover") || o.flag("abort") {
        let step = if o.flag("abort") {
            "abort"
        } else {
            "switchover"
        };
        let v = call("POST", &format!("{url}/{step}"), Some(&json!({})), t).map_err(rt)?;
        migration_lines(&v["migration"]);
        return Ok(0);
    }
    if let Some(until) = o.get("wait") {
        if !matches!(until, "ready" | "done") {
            return Err(usage("--wait takes ready or done".into()));
        }
        return wait(until, secs("timeout", 30)?);
    }
    let v = call("GET", &url, None, t).map_err(rt)?;
    if o.flag("show") {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        migration_lines(&v);
    }
    Ok(0)
}
