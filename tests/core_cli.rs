//! The `vdp-agent` binary from the outside (README "Running", etc/agent.yaml, docs/protocol.md): CLI exit
//! codes, `--check-config` on the shipped example, and a real daemon run
//! (status socket, pid file, SIGHUP log reopen, SIGTERM stop within 5 s).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use vdp_agent::api::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_vdp-agent");

/// Private temp dir removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("co-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Daemon child killed on drop (test failure must not leave it running).
struct DaemonChild(Option<Child>);

impl Drop for DaemonChild {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn example_config_equals_defaults() {
    let cfg = Config::load(&repo_file("etc/agent.yaml")).unwrap();
    assert_eq!(cfg, Config::default());
}

#[test]
fn check_config_on_example_exits_0_and_prints_effective_config() {
    let out = run(&[
        "-c",
        repo_file("etc/agent.yaml").to_str().unwrap(),
        "--check-config",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed: Config = serde_yaml::from_str(&text(&out.stdout)).unwrap();
    let expect = Config {
        host_id: printed.host_id.clone(),
        ..Config::default()
    };
    assert!(printed.host_id.is_some(), "host_id is resolved");
    assert_eq!(printed, expect);
}

#[test]
fn check_config_unknown_key_exits_2_naming_it() {
    let d = TempDir::new("cli-badkey");
    let f = d.path().join("a.yaml");
    std::fs::write(&f, "intervals:\n  heartbeat_s: 5\n  hartbeat_s: 7\n").unwrap();
    let out = run(&["-c", f.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("hartbeat_s"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one-line reason: {err}");
    assert!(out.stdout.is_empty());
    // bad value and missing file: also 2
    std::fs::write(&f, "vdp:\n  filter: 9\n").unwrap();
    let out = run(&["-c", f.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("vdp.filter"));
    let out = run(&[
        "-c",
        d.path().join("nope.yaml").to_str().unwrap(),
        "--check-config",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_help_and_usage_errors() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("vdp-agent {}", vdp_agent::VERSION)
    );
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("--check-config"));
    for bad in [&["--frobnicate"][..], &["-c"], &["--json"]] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(text(&out.stderr).contains("usage"), "{bad:?}");
    }
}

fn write_config(d: &TempDir, extra: &str) -> PathBuf {
    // A closed port on loopback: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = d.path().join("agent.yaml");
    std::fs::write(
        &f,
        format!(
            "host_id: co-host\nroot_helper: \"\"\nserver:\n  url: http://127.0.0.1:{port}\n  timeout_s: 1\n\
             paths:\n  state_dir: {s}\n  run_dir: {r}\n{extra}",
            s = d.path().join("state").display(),
            r = d.path().join("run").display(),
        ),
    )
    .unwrap();
    f
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const THREADS: [&str; 11] = [
    "queue-worker",
    "uplink-detect",
    "err-queue",
    "heartbeat",
    "event-poller",
    "lldpad-client",
    "flow-check",
    "topo-disc",
    "result-retry",
    "status-server",
    "signal",
];

#[test]
fn status_without_daemon_exits_1() {
    let d = TempDir::new("cli-nodaemon");
    let cfg = write_config(&d, "");
    let out = run(&["-c", cfg.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not running"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn daemon_runs_serves_status_reopens_log_and_stops_on_sigterm() {
    let d = TempDir::new("cli-daemon");
    let log = d.path().join("agent.log");
    let cfg = write_config(
        &d,
        &format!("log:\n  level: debug\n  file: {}\n", log.display()),
    );
    let cfg_s = cfg.to_str().unwrap();
    let child = Command::new(BIN)
        .args(["-c", cfg_s])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut guard = DaemonChild(Some(child));
    let sock = d.path().join("run/vdp-agent.sock");
    let pidf = d.path().join("run/vdp-agent.pid");
    wait_for("status socket", || sock.exists());
    assert_eq!(
        std::fs::read_to_string(&pidf).unwrap().trim(),
        pid.to_string()
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // status --json: every §5 key and every thread
    let mut doc = serde_json::Value::Null;
    wait_for("all threads alive", || {
        let out = run(&["-c", cfg_s, "status", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        doc = serde_json::from_slice(&out.stdout).unwrap();
        THREADS.iter().all(|t| doc["threads"][*t] == "alive")
    });
    for k in [
        "host_id", "version", "uplink", "vsis", "queues", "threads", "server",
    ] {
        assert!(doc.get(k).is_some(), "missing {k} in {doc}");
    }
    assert_eq!(doc["host_id"], "co-host");
    assert_eq!(doc["version"], vdp_agent::VERSION);
    for k in ["phy", "veth", "detected", "fail_reason"] {
        assert!(doc["uplink"].get(k).is_some(), "uplink.{k}");
    }
    for k in ["main", "err"] {
        assert!(doc["queues"][k].is_u64(), "queues.{k}");
    }
    for k in ["last_ok", "last_error", "pending_results"] {
        assert!(doc["server"].get(k).is_some(), "server.{k}");
    }
    assert!(doc["vsis"].is_array());
    // the kernel (and so gdb `info threads`) knows the thread names
    let comms: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    for t in THREADS {
        assert!(comms.iter().any(|c| c == t), "thread {t} not in {comms:?}");
    }
    // readable table
    let out = run(&["-c", cfg_s, "status"]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(
        table.contains("co-host") && table.contains("queue-worker"),
        "{table}"
    );

    // a second daemon on the same pid file is refused (exit 1)
    let out = run(&["-c", cfg_s]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&pid.to_string()),
        "{}",
        text(&out.stderr)
    );

    // SIGHUP reopens the log file
    wait_for("log file", || log.exists());
    let rotated = d.path().join("agent.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("reopened log file", || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("log file reopened"))
    });

    // SIGTERM: exit 0 within 5 s, socket and pid file removed
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut child = guard.0.take().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("daemon did not stop within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!sock.exists(), "socket removed");
    assert!(!pidf.exists(), "pid file removed");
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("received SIGTERM"), "{logs}");
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): READY=1 once up, then
/// WATCHDOG=1 pings with a STATUS= line, STOPPING=1 on SIGTERM; with
/// `$JOURNAL_STREAM` naming its stderr, log lines carry `<N>` priorities
/// and no timestamp.
#[test]
fn systemd_notify_watchdog_and_journal_priorities() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixDatagram;
    let d = TempDir::new("cli-notify");
    let cfg = write_config(&d, "uplink:\n  candidates: [co-none0]\n");
    let nsock = d.path().join("notify.sock");
    let rx = UnixDatagram::bind(&nsock).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let errf = d.path().join("stderr.txt");
    let err = std::fs::File::create(&errf).unwrap();
    let m = std::fs::metadata(&errf).unwrap();
    let child = Command::new(BIN)
        .args(["-c", cfg.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &nsock)
        .env("WATCHDOG_USEC", "400000")
        .env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut guard = DaemonChild(Some(child));
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 1024];
    wait_for("READY=1 and two WATCHDOG=1", || {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got.iter().any(|m| m.starts_with("READY=1\n"))
            && got.iter().filter(|m| m.starts_with("WATCHDOG=1\n")).count() >= 2
    });
    let ready = got.iter().find(|m| m.starts_with("READY=1\n")).unwrap();
    assert!(ready.contains("\nSTATUS=started"), "{ready}");
    let ping = got.iter().find(|m| m.starts_with("WATCHDOG=1\n")).unwrap();
    // The uplink candidate does not exist: the status line says so.
    assert!(ping.contains("\nSTATUS=CRITICAL - uplink down"), "{ping}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for("STOPPING=1", || {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        got.iter().any(|m| m.starts_with("STOPPING=1\n"))
    });
    let status = guard.0.take().unwrap().wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let log = std::fs::read_to_string(&errf).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() > 2, "{log}");
    for l in &lines {
        let ok = ["<3>", "<4>", "<6>", "<7>"]
            .iter()
            .any(|p| l.starts_with(p));
        assert!(ok, "no priority prefix: {l}");
        // no timestamp: the level word follows the prefix
        assert!(
            l[3..].starts_with(|c: char| c.is_ascii_uppercase()),
            "timestamp or junk after the prefix: {l}"
        );
    }
    assert!(lines.iter().any(|l| l.starts_with("<6>INFO ")), "{log}");
    assert!(lines.iter().any(|l| l.starts_with("<7>DEBUG")), "{log}");
}

/// `--default-root-helper` (the packaged service passes "") sets
/// root_helper only for a config file that leaves the key out.
#[test]
fn default_root_helper_only_when_the_file_leaves_it_out() {
    let d = TempDir::new("cli-roothelper");
    let f = d.path().join("a.yaml");
    let eff = |args: &[&str]| -> Config {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_yaml::from_str(&text(&out.stdout)).unwrap()
    };
    let fs = f.to_str().unwrap();
    std::fs::write(&f, "# every key commented out\n#root_helper: sudo\n").unwrap();
    assert_eq!(eff(&["-c", fs, "--check-config"]).root_helper, "sudo");
    assert_eq!(
        eff(&["-c", fs, "--check-config", "--default-root-helper="]).root_helper,
        ""
    );
    std::fs::write(&f, "root_helper: sudo -n\n").unwrap();
    assert_eq!(
        eff(&["-c", fs, "--check-config", "--default-root-helper="]).root_helper,
        "sudo -n"
    );
}
