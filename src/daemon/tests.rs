use super::registry::STUCK_AFTER;
use super::*;
use crate::task::ThreadName;

/// A step that does not come back (a hung command before the runner's
/// timeout held) is shown as `stuck`, not `alive`.
#[test]
fn a_step_running_too_long_shows_stuck() {
    let reg = ThreadRegistry::default();
    reg.set("uplink-detect", "alive");
    reg.step(
        "uplink-detect",
        Some(Instant::now() - Duration::from_secs(2)),
    );
    assert_eq!(reg.snapshot()["uplink-detect"], "alive");
    assert_eq!(
        reg.snapshot_with(Duration::from_secs(1))["uplink-detect"],
        "stuck"
    );
    reg.step("uplink-detect", None);
    assert_eq!(
        reg.snapshot_with(Duration::from_secs(1))["uplink-detect"],
        "alive"
    );
}

#[test]
fn pid_file_is_a_lock_stale_contents_do_not_matter() {
    let dir = std::env::temp_dir().join(format!("co-pid-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vdp-agent.pid");
    // A file naming a live process (pid 1) but not locked: stale.
    std::fs::write(&path, "1\n").unwrap();
    let p = PidFile::acquire(&path).unwrap();
    let me = std::process::id().to_string();
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), me);
    // Held: a second instance is refused and told who holds it.
    match PidFile::acquire(&path) {
        Err(DaemonError::AlreadyRunning { pid, .. }) => assert_eq!(pid.to_string(), me),
        other => panic!("{other:?}"),
    }
    drop(p);
    assert!(!path.exists());
    // A symlink planted at the path is refused; its target untouched.
    let target = dir.join("victim");
    std::fs::write(&target, "precious").unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    assert!(PidFile::acquire(&path).is_err());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_file_reopens_after_rotation() {
    let dir = std::env::temp_dir().join(format!("co-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.log");
    let lf = LogFile::open(&path).unwrap();
    let mut w = lf.writer();
    w.write_all(b"one\n").unwrap();
    std::fs::rename(&path, dir.join("agent.log.1")).unwrap();
    w.write_all(b"two\n").unwrap();
    lf.reopen().unwrap();
    w.write_all(b"three\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("agent.log.1")).unwrap(),
        "one\ntwo\n"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn panicking_step_is_caught_and_thread_goes_on() {
    let reg = ThreadRegistry::default();
    let sd = Shutdown::new();
    let (tx, rx) = crossbeam_channel::unbounded();
    let count = Arc::new(Mutex::new(0u32));
    let c2 = count.clone();
    let task = Task {
        name: ThreadName::TopoDisc,
        step: Box::new(move || {
            let mut n = c2.lock();
            *n += 1;
            if *n == 1 {
                drop(n);
                panic!("first step fails");
            }
            Step::Wait(Duration::from_millis(5))
        }),
    };
    let h = spawn_task(task, &reg, &sd, &tx).unwrap();
    let start = Instant::now();
    while *count.lock() < 3 && start.elapsed() < Duration::from_secs(5) {
        sd.wait(Duration::from_millis(10));
    }
    assert!(*count.lock() >= 3, "loop did not go on after the panic");
    assert_eq!(reg.snapshot()["topo-disc"], "alive");
    sd.trigger();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(2)).unwrap(),
        "topo-disc"
    );
    h.join().unwrap();
    assert_eq!(reg.snapshot()["topo-disc"], "stopped");
}

/// The watchdog is pinged while every thread makes progress and held back
/// (only `STATUS=` is sent) while one is stuck or stopped.
#[test]
fn watchdog_pings_only_while_no_thread_is_stuck() {
    use std::os::unix::net::UnixDatagram;
    let dir = std::env::temp_dir().join(format!("co-wd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let rx = UnixDatagram::bind(&path).unwrap();
    let n = crate::sdnotify::Notifier::new(
        crate::sdnotify::NotifyAddr::Path(path),
        Some(Duration::from_secs(2)),
    )
    .unwrap();
    let reg = ThreadRegistry::default();
    reg.set("queue-worker", "alive");
    reg.set("flow-check", "restarting");
    let doc = |reg: &ThreadRegistry, stuck_after| StatusDoc {
        host_id: "h".into(),
        version: "v".into(),
        uplink: Default::default(),
        vsis: vec![],
        queues: Default::default(),
        threads: reg.snapshot_with(stuck_after),
        server: Default::default(),
        host: Default::default(),
        health: Default::default(),
    };
    let mut buf = [0u8; 512];
    let (_, ping) = notify::notify_round(&n, &doc(&reg, STUCK_AFTER));
    assert!(ping);
    let k = rx.recv(&mut buf).unwrap();
    assert!(buf[..k].starts_with(b"WATCHDOG=1\nSTATUS=CRITICAL - uplink down"));
    // The queue worker's step has run for 2 s, longer than the bound.
    reg.step(
        "queue-worker",
        Some(Instant::now() - Duration::from_secs(2)),
    );
    let (text, ping) = notify::notify_round(&n, &doc(&reg, Duration::from_secs(1)));
    assert!(!ping);
    assert_eq!(text, "watchdog held back: queue-worker stuck");
    let k = rx.recv(&mut buf).unwrap();
    assert_eq!(
        &buf[..k],
        b"STATUS=watchdog held back: queue-worker stuck\n"
    );
    reg.step("queue-worker", None);
    assert!(notify::notify_round(&n, &doc(&reg, Duration::from_secs(1))).1);
    let _ = std::fs::remove_dir_all(&dir);
}
