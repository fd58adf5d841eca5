//! The daemon process: named threads, their registry, signals, pid file,
//! the reopenable log file, controller event dispatch, and clean shutdown.
//!
//! Owns: threads and their states, the pid file, the status socket (via
//! `status::StatusServer`). Calls: `manager::VdpMgr`, the `HostDriver` and
//! `ControllerLink` it is given (production ones are wired in `main`),
//! `validate` for every controller event, `status`.
//!
//! Threads (names as seen in `gdb info threads` and in `status`):
//! `queue-worker` (VdpMgr::process_queue), `uplink-detect`
//! (vdp_uplink_proc_top every `uplink_detect_s`), `err-queue`
//! (process_err_queue every `err_queue_s`), `heartbeat` (heartbeat every
//! `heartbeat_s`; before that, `request_uplink_info` until answered, then
//! `dfa_uplink_restart`), `event-poller` (controller long-poll -> validate
//! -> manager), `lldpad-client` (`refresh_vsis` every `vdp.sync_timeout_s`
//! -> VsiChanged messages), `flow-check` (`check_flows` every
//! `flow_check_s`), `topo-disc` (`topo_poll` every `topo_disc_s` ->
//! `save_topo_disc_params`), `result-retry` (delivers every
//! `update_vm_result` handed over by the queue worker, and retries kept
//! calls with backoff; woken by each new result, else every
//! [`RESULT_RETRY_PERIOD`]), `status-server`, `signal`.
//!
//! Every loop waits on the shared `Shutdown` (never sleeps). A panic inside
//! one step is caught, logged with its message, the thread shows
//! `restarting` for [`PANIC_BACKOFF`] and then goes on (`alive`). A thread
//! that has ended shows `stopped`.
//!
//! Shutdown (SIGTERM/SIGINT): the flag is set, queues are closed, threads
//! are given [`STOP_TIMEOUT`] to finish their step; one still blocked in a
//! controller long-poll or a host command is left behind (the process
//! exits anyway). Nothing is torn down: OVS flows, ports and lldpad
//! associations stay, so a restart does not disturb VM traffic.
//! SIGHUP reopens the log file.

use crate::config::Config;
use crate::manager::host::{
    HostDriver, PortOutcome, TopoReport, UplinkDetect, VsiChange, VsiStatus,
};
use crate::manager::link::{ControllerEvent, ControllerLink, LinkError, LinkStatus};
use crate::manager::{panic_message, MgrConfig, Step, Task, VdpMgr, VmNotice};
use crate::model::{UplinkInfo, VmPort, VmResult};
use crate::shutdown::Shutdown;
use crate::status::{QueueLens, StatusDoc, StatusServer};
use crate::validate::{self, VmEvent, VmRejection};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often kept controller calls are retried (the link applies its own
/// backoff per call; this is only how often it is asked).
pub const RESULT_RETRY_PERIOD: Duration = Duration::from_millis(250);
/// Pause after a panic before the step runs again.
pub const PANIC_BACKOFF: Duration = Duration::from_secs(1);
/// How long shutdown waits for threads (SIGTERM must finish within 5 s).
pub const STOP_TIMEOUT: Duration = Duration::from_millis(3500);

/// Threads not waited for at shutdown: they only sit in a controller
/// long-poll (up to `events_wait_s`) and hold nothing that needs finishing.
/// Events they receive after the stop are neither processed nor
/// acknowledged, so the controller delivers them again after the restart.
pub const NOT_AWAITED_AT_STOP: &[&str] = &["event-poller"];
/// Longest wait between retries of `request_uplink_info` / event polls.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// Why the daemon could not run.
#[derive(Debug)]
pub enum DaemonError {
    /// Another live process holds the pid file.
    AlreadyRunning {
        path: PathBuf,
        pid: i32,
    },
    Io {
        what: String,
        err: io::Error,
    },
    Status(crate::status::StatusError),
    Thread {
        name: String,
        err: io::Error,
    },
    Signals(String),
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::AlreadyRunning { path, pid } => {
                write!(f, "another vdp-agent (pid {pid}) holds {}", path.display())
            }
            DaemonError::Io { what, err } => write!(f, "{what}: {err}"),
            DaemonError::Status(e) => write!(f, "status socket: {e}"),
            DaemonError::Thread { name, err } => write!(f, "cannot start thread {name}: {err}"),
            DaemonError::Signals(e) => write!(f, "signal setup: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let what = what.into();
    move |err| DaemonError::Io { what, err }
}

// ----- thread registry ------------------------------------------------------

/// A loop step running longer than this shows its thread as `stuck` in
/// `status` (longer than any bounded wait a step makes: a command is
/// killed after 15 s, a VM's tag wait is at most 3600 s by config but 10 s
/// by default; a bulk resync of many ports is one long step, so the bound
/// is generous).
pub const STUCK_AFTER: Duration = Duration::from_secs(300);

/// State of every daemon thread, for `status`: `starting`, `alive`,
/// `restarting` (after a caught panic), `stopped`, or `stuck` (one loop
/// step has been running for more than [`STUCK_AFTER`]).
#[derive(Debug, Clone, Default)]
pub struct ThreadRegistry {
    inner: Arc<Mutex<BTreeMap<String, ThreadEntry>>>,
}

/// A thread's state text and when its current loop step started.
type ThreadEntry = (String, Option<Instant>);

impl ThreadRegistry {
    pub fn set(&self, name: &str, state: &str) {
        self.inner
            .lock()
            .insert(name.to_string(), (state.to_string(), None));
    }
    /// A loop step of `name` starts (`None`: it ended).
    fn step(&self, name: &str, started: Option<Instant>) {
        if let Some(e) = self.inner.lock().get_mut(name) {
            e.1 = started;
        }
    }
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.snapshot_with(STUCK_AFTER)
    }
    fn snapshot_with(&self, stuck_after: Duration) -> BTreeMap<String, String> {
        self.inner
            .lock()
            .iter()
            .map(|(k, (state, started))| {
                let stuck = started.is_some_and(|t| t.elapsed() > stuck_after);
                (
                    k.clone(),
                    if stuck { "stuck".into() } else { state.clone() },
                )
            })
            .collect()
    }
}

/// Run `task` on its own named thread until it stops or shutdown is
/// requested. `done` receives the name when the thread ends.
fn spawn_task(
    mut task: Task,
    registry: &ThreadRegistry,
    shutdown: &Shutdown,
    done: &crossbeam_channel::Sender<&'static str>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let name = task.name;
    let registry = registry.clone();
    let shutdown = shutdown.clone();
    let done = done.clone();
    registry.set(name, "starting");
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            registry.set(name, "alive");
            loop {
                registry.step(name, Some(Instant::now()));
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (task.step)()));
                registry.step(name, None);
                match r {
                    Ok(Step::Wait(d)) => {
                        if shutdown.wait(d) {
                            break;
                        }
                    }
                    Ok(Step::Again) => {
                        if shutdown.is_set() {
                            break;
                        }
                    }
                    Ok(Step::Stop) => break,
                    Err(p) => {
                        log::error!("thread {name}: panic caught: {}", panic_message(&*p));
                        registry.set(name, "restarting");
                        if shutdown.wait(PANIC_BACKOFF) {
                            break;
                        }
                        registry.set(name, "alive");
                    }
                }
            }
            registry.set(name, "stopped");
            let _ = done.send(name);
        })
        .map_err(|err| DaemonError::Thread {
            name: name.to_string(),
            err,
        })
}

/// A step that does nothing the first time (waits one period), then runs
/// `f` every `period`.
fn periodic_after_first_period(
    name: &'static str,
    period: Duration,
    mut f: impl FnMut() + Send + 'static,
) -> Task {
    let mut first = true;
    Task {
        name,
        step: Box::new(move || {
            if first {
                first = false;
            } else {
                f();
            }
            Step::Wait(period)
        }),
    }
}

/// Shortest gap between two event polls whose answer was empty (a
/// controller that does not hold polls, `events_wait_s: 0`).
pub const MIN_POLL_GAP: Duration = Duration::from_secs(1);

/// How often the flow-check thread asks whether ovs-vswitchd restarted.
pub const OVS_WATCH_PERIOD: Duration = Duration::from_secs(1);

/// `flow-check` thread: `check_flows` every `intervals.flow_check_s` (the
/// original's flow check, first after one period), and at once, retried
/// every [`OVS_WATCH_PERIOD`] until it succeeds, when ovs-vswitchd
/// restarted (its flows are not persisted): flows are back within a second
/// or two of the new vswitchd running, whatever `flow_check_s` is.
fn flow_check_task(host: Arc<dyn HostDriver>, period: Duration) -> Task {
    let mut since = Duration::ZERO;
    let tick = OVS_WATCH_PERIOD.min(period).max(Duration::from_millis(100));
    Task {
        name: "flow-check",
        step: Box::new(move || {
            since = since.saturating_add(tick);
            if since >= period || host.ovs_needs_repair() {
                since = Duration::ZERO;
                host.check_flows();
            }
            Step::Wait(tick)
        }),
    }
}

/// Re-check period of the lldpad client while VSIs are pending.
pub const PENDING_RECHECK: Duration = Duration::from_secs(1);

/// `lldpad-client` thread (the original's VSI refresh, `_vdp_refrsh_hndlr`):
/// `refresh_vsis` every `vdp.sync_timeout_s`, or every `PENDING_RECHECK`
/// while the host reports pending VSIs (an association whose verdict
/// lldpad has not given yet, or a port where VDP is not usable yet), so a
/// late answer is reported within about a second, not a refresh period.
fn lldpad_client_task(mgr: Arc<VdpMgr>, host: Arc<dyn HostDriver>, period: Duration) -> Task {
    let mut since = Duration::ZERO;
    Task {
        name: "lldpad-client",
        step: Box::new(move || {
            let pending = host.pending_vsis() > 0;
            if since >= period || (pending && since >= PENDING_RECHECK) {
                since = Duration::ZERO;
                for change in host.refresh_vsis() {
                    mgr.enqueue_vsi_change(change);
                }
            }
            let step = PENDING_RECHECK.min(period);
            since += step;
            Step::Wait(step)
        }),
    }
}

// ----- controller events ------------------------------------------------------

/// Log a rejected VM object and, when its `port_uuid` is valid, tell the
/// controller `CREATE:FAIL`/`DELETE:FAIL` (by its status; `CREATE:FAIL`
/// when the status itself was bad) with a reason naming the field.
fn reject_vm(mgr: &VdpMgr, seq: u64, rej: &VmRejection) {
    log::warn!(
        "rejected vm_info event seq {seq} (port {}): {rej}",
        rej.port_uuid.as_deref().unwrap_or("unknown")
    );
    if let Some(port) = &rej.port_uuid {
        let result = rej
            .status
            .map(|s| s.fail_result())
            .unwrap_or(VmResult::CreateFail);
        mgr.update_vm_result(port, result, None, None, Some(&rej.to_string()));
    }
}

/// Handle one controller event (the original's RPC callbacks
/// `send_vm_info`, `send_msg_to_agent`, `update_ip_rule`): validate, then
/// `vdp_vm_event` (single or bulk) or `dfa_uplink_restart`. `ip_rule` is
/// logged and ignored (the iptables feature is not part of this agent);
/// unknown types are logged and ignored. Repeated events are harmless: VM
/// events are idempotent and the uplink restart runs once.
pub fn dispatch_event(mgr: &VdpMgr, ev: &ControllerEvent) {
    match ev.kind.as_str() {
        "vm_info" => match validate::validate_vm_event(&ev.payload) {
            VmEvent::Single(Ok(vm)) => mgr.vdp_vm_event(VmNotice::Single(vm)),
            VmEvent::Single(Err(rej)) => reject_vm(mgr, ev.seq, &rej),
            VmEvent::Bulk(entries) => {
                let mut good: Vec<VmPort> = Vec::with_capacity(entries.len());
                for e in entries {
                    match e {
                        Ok(vm) => good.push(vm),
                        Err(rej) => reject_vm(mgr, ev.seq, &rej),
                    }
                }
                log::info!(
                    "bulk vm_info seq {} with {} valid entries",
                    ev.seq,
                    good.len()
                );
                mgr.vdp_vm_event(VmNotice::Bulk(good));
            }
        },
        "uplink" => match validate::validate_uplink(&ev.payload) {
            Ok(info) => mgr.dfa_uplink_restart(&info),
            Err(e) => log::warn!("rejected uplink event seq {}: {e}", ev.seq),
        },
        "ip_rule" => log::debug!("ignoring ip_rule event seq {}", ev.seq),
        other => log::warn!(
            "ignoring controller event seq {} of unknown type {:?}",
            ev.seq,
            other.chars().take(40).collect::<String>()
        ),
    }
}

/// The stored uplink from `request_uplink_info`, re-checked like any other
/// controller input (a bad name is logged and treated as "none stored").
fn checked_uplink(info: Option<UplinkInfo>) -> UplinkInfo {
    let Some(info) = info else {
        return UplinkInfo::default();
    };
    let v = serde_json::json!({"uplink": info.uplink, "veth_intf": info.veth_intf});
    match validate::validate_uplink(&v) {
        Ok(i) => i,
        Err(e) => {
            log::warn!("stored uplink from controller rejected ({e}); starting fresh");
            UplinkInfo::default()
        }
    }
}

fn backoff_next(cur: Duration) -> Duration {
    (cur * 2).min(MAX_RETRY_WAIT)
}

// ----- pid file ----------------------------------------------------------------

/// The pid file and single-instance guard: an exclusive `flock` on the
/// file, held for the daemon's life (the open file is kept), so a second
/// agent started at the same moment loses atomically and a stale file (a
/// crashed agent, any live process's pid in it, a zombie) is simply not
/// locked. Opened with `O_NOFOLLOW`: a symlink planted at the path is
/// refused, never followed. Removed on clean exit (drop).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// Holds the lock.
    _file: std::fs::File,
}

impl PidFile {
    /// Lock `path` (creating it, mode 0644) and write our pid into it.
    pub fn acquire(path: &Path) -> Result<PidFile, DaemonError> {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io_err(format!(
                "opening pid file {} (a symlink is refused)",
                path.display()
            )))?;
        let meta = file
            .metadata()
            .map_err(io_err(format!("pid file {}", path.display())))?;
        if !meta.is_file() {
            return Err(DaemonError::Io {
                what: format!("pid file {}", path.display()),
                err: io::Error::other("not a regular file"),
            });
        }
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = (&file).take(32).read_to_string(&mut text);
                return Err(DaemonError::AlreadyRunning {
                    path: path.to_path_buf(),
                    pid: text.trim().parse().unwrap_or(0),
                });
            }
            return Err(DaemonError::Io {
                what: format!("locking pid file {}", path.display()),
                err,
            });
        }
        let me = std::process::id();
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(format!("{me}\n").as_bytes()))
            .map_err(io_err(format!("writing {}", path.display())))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            _file: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // We hold the lock: the file is ours.
        let _ = std::fs::remove_file(&self.path);
    }
}

// ----- log file ----------------------------------------------------------------

/// Append-mode log file that can be reopened (SIGHUP, after logrotate).
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

/// The log file: appended to, created 0640, never through a symlink.
fn open_append(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

impl LogFile {
    pub fn open(path: &Path) -> io::Result<Arc<LogFile>> {
        Ok(Arc::new(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(open_append(path)?),
        }))
    }

    /// Reopen the file by name (the old one may have been rotated away).
    pub fn reopen(&self) -> io::Result<()> {
        let f = open_append(&self.path)?;
        *self.file.lock() = f;
        Ok(())
    }

    /// A writer for `env_logger::Target::Pipe`.
    pub fn writer(self: &Arc<Self>) -> LogWriter {
        LogWriter(self.clone())
    }
}

/// `Write` handle on a [`LogFile`].
pub struct LogWriter(Arc<LogFile>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.file.lock().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.file.lock().flush()
    }
}

// ----- signals ---------------------------------------------------------------------

fn handled_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set
}

/// Block SIGTERM/SIGINT/SIGHUP in the calling thread; threads spawned
/// afterwards inherit the mask, so only the `signal` thread sees them.
pub fn block_signals() -> Result<(), DaemonError> {
    handled_signals()
        .thread_block()
        .map_err(|e| DaemonError::Signals(e.to_string()))
}

fn signal_task(shutdown: Shutdown, on_hup: Option<Arc<dyn Fn() + Send + Sync>>) -> Task {
    let set = handled_signals();
    Task {
        name: "signal",
        step: Box::new(move || {
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 250_000_000,
            };
            // SAFETY: `set` is a valid sigset_t owned by this closure; a null
            // siginfo pointer is allowed; `ts` lives for the call.
            let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
            if sig == libc::SIGTERM || sig == libc::SIGINT {
                log::info!(
                    "received {}, stopping (flows, ports and associations stay in place)",
                    if sig == libc::SIGTERM {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    }
                );
                shutdown.trigger();
                return Step::Stop;
            }
            if sig == libc::SIGHUP {
                log::info!("received SIGHUP, reopening the log file");
                if let Some(f) = &on_hup {
                    f();
                }
            }
            Step::Again
        }),
    }
}

// ----- placeholders --------------------------------------------------------------

/// Placeholder `HostDriver` (no OVS, no lldpad): OpenStack never looks
/// "running", so the manager stays idle. Used until the real host is wired.
#[derive(Debug, Default)]
pub struct NullHost;

impl HostDriver for NullHost {
    fn bridges_present(&self) -> bool {
        false
    }
    fn detect_uplink(&self, _veth: Option<&str>) -> UplinkDetect {
        UplinkDetect::NotFound
    }
    fn bond_of(&self, _intf: &str) -> Option<String> {
        None
    }
    fn bond_members(&self, _intf: &str) -> Option<String> {
        None
    }
    fn uplink_up(&self, _uplink: &str) -> Result<String, String> {
        Err("no host driver (placeholder)".into())
    }
    fn uplink_down(&self, _uplink: &str) {}
    fn delete_uplink_and_flows(&self, _uplink: &str) {}
    fn port_local_vlan(&self, _p: &str, _w: Duration, _s: &Shutdown) -> Option<u16> {
        None
    }
    fn port_up(&self, _vm: &VmPort, _lv: u16) -> PortOutcome {
        PortOutcome {
            fail_reason: Some("no host driver (placeholder)".into()),
            ..PortOutcome::default()
        }
    }
    fn port_down(&self, _vm: &VmPort) -> PortOutcome {
        PortOutcome {
            fail_reason: Some("no host driver (placeholder)".into()),
            ..PortOutcome::default()
        }
    }
    fn restore_port(&self, _vm: &VmPort) {}
    fn apply_vsi_change(&self, _c: &VsiChange) -> PortOutcome {
        PortOutcome::default()
    }
    fn refresh_vsis(&self) -> Vec<VsiChange> {
        Vec::new()
    }
    fn check_flows(&self) {}
    fn topo_cfg_intf(&self, _i: &str, _p: &str) {}
    fn topo_uncfg_intf(&self, _i: &str) {}
    fn topo_poll(&self) -> Vec<TopoReport> {
        Vec::new()
    }
    fn vsis(&self) -> Vec<VsiStatus> {
        Vec::new()
    }
}

/// Placeholder `ControllerLink`: every call fails ("no controller link"),
/// so the daemon retries `request_uplink_info` and the event poll with
/// backoff. Used until the real controller link is wired.
#[derive(Debug, Default)]
pub struct NullLink {
    last_error: Mutex<Option<String>>,
}

impl NullLink {
    fn fail<T>(&self, what: &str) -> Result<T, LinkError> {
        let e = format!("{what}: no controller link (placeholder)");
        *self.last_error.lock() = Some(e.clone());
        Err(e)
    }
}

impl ControllerLink for NullLink {
    fn heartbeat(&self) -> Result<(), LinkError> {
        self.fail("heartbeat")
    }
    fn request_uplink_info(&self) -> Result<Option<UplinkInfo>, LinkError> {
        self.fail("request_uplink_info")
    }
    fn save_uplink(
        &self,
        _u: &str,
        _v: &str,
        _m: Option<String>,
        _r: &str,
    ) -> Result<bool, LinkError> {
        self.fail("save_uplink")
    }
    fn update_vm_result(
        &self,
        _p: &str,
        _r: VmResult,
        _l: Option<u16>,
        _v: Option<u16>,
        _f: Option<&str>,
    ) -> Result<(), LinkError> {
        self.fail("update_vm_result")
    }
    fn save_topo_disc_params(&self, _r: &TopoReport) -> Result<bool, LinkError> {
        self.fail("save_topo_disc_params")
    }
    fn poll_events(&self, _after: u64) -> Result<Vec<ControllerEvent>, LinkError> {
        self.fail("poll_events")
    }
    fn retry_pending(&self) -> usize {
        0
    }
    fn status(&self) -> LinkStatus {
        LinkStatus {
            last_ok: None,
            last_error: self.last_error.lock().clone(),
            pending_results: 0,
        }
    }
}

// ----- the daemon --------------------------------------------------------------------

/// Process-level options of [`run_with`].
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Pid file to hold while running (None = no pid file).
    pub pid_file: Option<PathBuf>,
    /// Handle SIGTERM/SIGINT/SIGHUP on a `signal` thread (the binary: yes;
    /// in-process tests: usually no, they call `Daemon::stop`).
    pub handle_signals: bool,
    /// Called on SIGHUP (reopen the log file).
    pub on_hup: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The shutdown flag to use (None = a new one). The binary passes the
    /// one it gave the host driver, so the driver's waits end on SIGTERM.
    pub shutdown: Option<Shutdown>,
}

/// A started daemon.
pub struct Daemon {
    shutdown: Shutdown,
    mgr: Arc<VdpMgr>,
    registry: ThreadRegistry,
    done_rx: crossbeam_channel::Receiver<&'static str>,
    threads: Vec<(&'static str, std::thread::JoinHandle<()>)>,
    _pid: Option<PidFile>,
}

impl Daemon {
    /// Start everything: directories, pid file, status socket, threads.
    pub fn start(
        cfg: Config,
        host: Arc<dyn HostDriver>,
        link: Arc<dyn ControllerLink>,
        opts: RunOptions,
    ) -> Result<Daemon, DaemonError> {
        if opts.handle_signals {
            block_signals()?;
        }
        for dir in [&cfg.paths.run_dir, &cfg.paths.state_dir] {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let pid = match &opts.pid_file {
            Some(p) => Some(PidFile::acquire(p)?),
            None => None,
        };
        let status_server =
            StatusServer::bind(&cfg.status_socket()).map_err(DaemonError::Status)?;

        let shutdown = opts.shutdown.clone().unwrap_or_default();
        let host_id = cfg.host_id();
        let mgr = VdpMgr::new(
            MgrConfig::from_config(&cfg),
            host.clone(),
            link.clone(),
            shutdown.clone(),
        );
        let registry = ThreadRegistry::default();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let mut tasks: Vec<Task> = Vec::new();
        if opts.handle_signals {
            tasks.push(signal_task(shutdown.clone(), opts.on_hup.clone()));
        }
        tasks.extend(mgr.start());
        tasks.push(heartbeat_task(&cfg, mgr.clone(), link.clone()));
        tasks.push(event_poller_task(mgr.clone(), link.clone()));
        {
            let m = mgr.clone();
            host.start_watchers(Arc::new(move |c| m.enqueue_vsi_change(c)));
        }
        tasks.push(lldpad_client_task(
            mgr.clone(),
            host.clone(),
            Duration::from_secs(cfg.vdp.sync_timeout_s),
        ));
        tasks.push(flow_check_task(
            host.clone(),
            Duration::from_secs(cfg.intervals.flow_check_s),
        ));
        {
            let (m, h) = (mgr.clone(), host.clone());
            tasks.push(periodic_after_first_period(
                "topo-disc",
                Duration::from_secs(cfg.intervals.topo_disc_s),
                move || {
                    for report in h.topo_poll() {
                        m.topo_disc_cb(&report);
                    }
                },
            ));
        }
        {
            let l = link.clone();
            tasks.push(Task {
                name: "result-retry",
                step: Box::new(move || {
                    let left = l.retry_pending();
                    if left > 0 {
                        log::debug!("{left} controller call(s) still pending");
                    }
                    // Woken at once by a new result; bounded so shutdown
                    // is seen within the wait.
                    l.wait_for_work(RESULT_RETRY_PERIOD);
                    Step::Again
                }),
            });
        }
        {
            let doc: crate::status::StatusFn = Arc::new(status_doc_fn(
                host_id.clone(),
                mgr.clone(),
                host.clone(),
                link.clone(),
                registry.clone(),
            ));
            tasks.push(Task {
                name: "status-server",
                step: Box::new(move || {
                    if let Err(e) = status_server.serve_one(Duration::from_millis(250), &doc) {
                        log::warn!("status socket: {e}");
                        return Step::Wait(Duration::from_millis(250));
                    }
                    Step::Again
                }),
            });
        }
        let mut threads = Vec::new();
        for t in tasks {
            let name = t.name;
            match spawn_task(t, &registry, &shutdown, &done_tx) {
                Ok(h) => threads.push((name, h)),
                Err(e) => {
                    shutdown.trigger();
                    mgr.close_queues();
                    return Err(e);
                }
            }
        }
        log::info!(
            "vdp-agent {} started as {host_id} with {} threads",
            crate::VERSION,
            threads.len()
        );
        Ok(Daemon {
            shutdown,
            mgr,
            registry,
            done_rx,
            threads,
            _pid: pid,
        })
    }

    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn manager(&self) -> &Arc<VdpMgr> {
        &self.mgr
    }

    pub fn threads(&self) -> BTreeMap<String, String> {
        self.registry.snapshot()
    }

    /// Ask the daemon to stop (same as SIGTERM).
    pub fn stop(&self) {
        self.shutdown.trigger();
    }

    /// Block until shutdown is requested, then stop the threads (waiting at
    /// most [`STOP_TIMEOUT`]) and clean up the socket and pid file.
    pub fn wait(mut self) -> Result<(), DaemonError> {
        while !self.shutdown.wait(Duration::from_secs(3600)) {}
        self.mgr.close_queues();
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut left: Vec<&'static str> = self
            .threads
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| !NOT_AWAITED_AT_STOP.contains(n))
            .collect();
        while !left.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.done_rx.recv_timeout(deadline - now) {
                Ok(name) => left.retain(|n| *n != name),
                Err(_) => break,
            }
        }
        if !left.is_empty() {
            log::warn!(
                "threads still busy at exit (left behind): {}",
                left.join(", ")
            );
        }
        for (name, h) in self.threads.drain(..) {
            if !left.contains(&name) && !NOT_AWAITED_AT_STOP.contains(&name) {
                let _ = h.join();
            }
        }
        log::info!("vdp-agent stopped");
        Ok(())
    }
}

/// Run the daemon until SIGTERM/SIGINT (or `Shutdown` from elsewhere).
/// `main` wires the real host and controller; tests may pass fakes.
pub fn run_with(
    cfg: Config,
    host: Arc<dyn HostDriver>,
    link: Arc<dyn ControllerLink>,
    opts: RunOptions,
) -> Result<(), DaemonError> {
    Daemon::start(cfg, host, link, opts)?.wait()
}

fn status_doc_fn(
    host_id: String,
    mgr: Arc<VdpMgr>,
    host: Arc<dyn HostDriver>,
    link: Arc<dyn ControllerLink>,
    registry: ThreadRegistry,
) -> impl Fn() -> StatusDoc + Send + Sync + 'static {
    move || {
        let (main, err) = mgr.queue_lens();
        StatusDoc {
            host_id: host_id.clone(),
            version: crate::VERSION.to_string(),
            uplink: mgr.uplink_snapshot(),
            vsis: host.vsis(),
            queues: QueueLens { main, err },
            threads: {
                let mut t = registry.snapshot();
                t.extend(host.threads());
                t
            },
            server: link.status(),
            host: host.status_extra(),
        }
    }
}

/// `heartbeat` thread: the original agent's main loop. Heartbeat every
/// `heartbeat_s`; until the stored uplink is obtained, `request_uplink_info`
/// is retried with a shutdown-aware backoff (1 s doubling to 10 s) and its
/// answer goes to `dfa_uplink_restart`.
fn heartbeat_task(cfg: &Config, mgr: Arc<VdpMgr>, link: Arc<dyn ControllerLink>) -> Task {
    let period = Duration::from_secs(cfg.intervals.heartbeat_s);
    let mut next_hb = Instant::now();
    let mut retry = Duration::from_secs(1);
    Task {
        name: "heartbeat",
        step: Box::new(move || {
            let now = Instant::now();
            if now >= next_hb {
                if let Err(e) = link.heartbeat() {
                    log::warn!("heartbeat failed: {e}");
                }
                next_hb = now + period;
            }
            if !mgr.is_uplink_received() {
                match link.request_uplink_info() {
                    Ok(info) => {
                        let info = checked_uplink(info);
                        mgr.dfa_uplink_restart(&info);
                    }
                    Err(e) => {
                        log::warn!(
                            "request_uplink_info failed (retry in {}s): {e}",
                            retry.as_secs()
                        );
                        let w = retry;
                        retry = backoff_next(retry);
                        return Step::Wait(w);
                    }
                }
            }
            Step::Wait(next_hb.saturating_duration_since(Instant::now()))
        }),
    }
}

/// `event-poller` thread: long-poll the controller, dispatch each event,
/// advance `after` past what was processed (also past an event whose
/// handling panicked: logged, not retried). Failures back off 1 s doubling
/// to 10 s.
fn event_poller_task(mgr: Arc<VdpMgr>, link: Arc<dyn ControllerLink>) -> Task {
    let mut after: u64 = 0;
    let mut retry = Duration::from_secs(1);
    Task {
        name: "event-poller",
        step: Box::new(move || {
            if mgr.que().is_full() {
                // Backpressure: leave the events with the controller until
                // the worker has caught up (queue::HIGH_WATER).
                return Step::Wait(Duration::from_millis(100));
            }
            let polled = Instant::now();
            match link.poll_events(after) {
                Ok(events) => {
                    retry = Duration::from_secs(1);
                    // Events all at or below the cursor: the controller's
                    // numbering restarted; follow it (controller::parse_events).
                    if !events.is_empty() && events.iter().all(|e| e.seq <= after) {
                        after = events
                            .iter()
                            .map(|e| e.seq)
                            .min()
                            .unwrap_or(0)
                            .saturating_sub(1);
                    }
                    for ev in &events {
                        // A panic on one event must not make it a poison pill
                        // re-polled forever: log it and move past it.
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            dispatch_event(&mgr, ev)
                        }));
                        if let Err(p) = r {
                            log::error!(
                                "panic while handling controller event seq {} ({}): {}",
                                ev.seq,
                                ev.kind.chars().take(40).collect::<String>(),
                                panic_message(&*p)
                            );
                        }
                        after = after.max(ev.seq);
                    }
                    if events.is_empty() && polled.elapsed() < MIN_POLL_GAP {
                        // An answer that came back at once (e.g. events_wait_s
                        // 0): never poll faster than MIN_POLL_GAP.
                        return Step::Wait(MIN_POLL_GAP);
                    }
                    Step::Again
                }
                Err(e) => {
                    log::warn!("event poll failed (retry in {}s): {e}", retry.as_secs());
                    let w = retry;
                    retry = backoff_next(retry);
                    Step::Wait(w)
                }
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            name: "co-panicky",
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
        assert_eq!(reg.snapshot()["co-panicky"], "alive");
        sd.trigger();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(2)).unwrap(),
            "co-panicky"
        );
        h.join().unwrap();
        assert_eq!(reg.snapshot()["co-panicky"], "stopped");
    }
}
