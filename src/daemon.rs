//! The daemon process: named threads, their registry, signals, pid file,
//! the reopenable log file, controller event dispatch, and clean shutdown.
//!
//! Owns: threads and their states, the pid file, the status socket (via
//! `status::StatusServer`). Calls: `manager::VdpMgr`, the `HostDriver` and
//! `ControllerLink` it is given (production ones are wired in `main`),
//! `validate` for every controller event, `status`.
//!
//! Threads (names as seen in `gdb info threads` and in `status`):
//! `queue-worker` (VdpMgr::process_one), `uplink-detect`
//! (vdp_uplink_proc every `uplink_detect_s`), `err-queue`
//! (process_err_queue every `err_queue_s`), `heartbeat` (heartbeat every
//! `heartbeat_s`; before that, `request_uplink_info` until answered, then
//! `dfa_uplink_restart`), `event-poller` (controller long-poll -> validate
//! -> manager), `lldpad-client` (`refresh_vsis` every `vdp.sync_timeout_s`
//! -> VsiChanged messages), `lldpad-events` / `lldpad-notify` (the lldpad
//! event watcher's tasks, from `HostDriver::start_watchers`), `flow-check` (`check_flows` every
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
//!
//! Under systemd (`Type=notify`, `$NOTIFY_SOCKET` handed in as
//! `RunOptions::notify`): `READY=1` once the pid file, status socket and
//! every thread are up; the `sd-notify` thread (`daemon/notify.rs`) sends
//! `STATUS=` and, with `WatchdogSec=`, `WATCHDOG=1` only while no thread is
//! stuck or stopped; `STOPPING=1` at shutdown.

use crate::config::Config;
use crate::manager::host::HostDriver;
use crate::manager::link::{ControllerEvent, ControllerLink};
use crate::manager::{MgrConfig, Step, Task, VdpMgr, VmNotice};
use crate::model::{UplinkInfo, VmPort, VmResult};
use crate::shutdown::Shutdown;
use crate::status::{QueueLens, StatusDoc, StatusServer};
use crate::task::panic_message;
use crate::task::ThreadName;
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
pub(crate) const RESULT_RETRY_PERIOD: Duration = Duration::from_millis(250);
/// How long the status and metrics servers block in one `poll(2)`: a
/// client or shutdown (the self-pipe) wakes them earlier.
pub(crate) const SERVE_WAIT: Duration = Duration::from_secs(5);
/// Pause after a panic before the step runs again.
pub(crate) use crate::task::PANIC_BACKOFF;
/// How long shutdown waits for threads (SIGTERM must finish within 5 s).
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_millis(3500);

/// Threads not waited for at shutdown: they only sit in a controller
/// long-poll (up to `events_wait_s`) and hold nothing that needs finishing.
/// Events they receive after the stop are neither processed nor
/// acknowledged, so the controller delivers them again after the restart.
pub(crate) const NOT_AWAITED_AT_STOP: &[&str] = &[ThreadName::EventPoller.as_str()];
/// Longest wait between retries of `request_uplink_info` / event polls.
pub(crate) const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

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

mod files;
mod metrics;
mod notify;
mod registry;
mod signals;
mod tasks;
pub use files::LogFile;
pub(crate) use files::PidFile;
pub(crate) use registry::ThreadRegistry;
use registry::{periodic_after_first_period, spawn_task};
pub use signals::block_signals;
use signals::signal_task;
use tasks::{event_poller_task, flow_check_task, heartbeat_task, lldpad_client_task};

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
    /// systemd notifications (`Type=notify`): `READY=1` once started, an
    /// `sd-notify` thread for `STATUS=`/`WATCHDOG=1`, `STOPPING=1`.
    pub notify: Option<Arc<crate::sdnotify::Notifier>>,
}

/// A started daemon.
pub struct Daemon {
    shutdown: Shutdown,
    mgr: Arc<VdpMgr>,
    registry: ThreadRegistry,
    done_rx: crossbeam_channel::Receiver<&'static str>,
    threads: Vec<(&'static str, std::thread::JoinHandle<()>)>,
    notify: Option<Arc<crate::sdnotify::Notifier>>,
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

        let metrics_server = metrics::bind(&cfg)?;
        let shutdown = opts.shutdown.clone().unwrap_or_default();
        let host_id = cfg.host_id();
        let mgr = VdpMgr::new(
            MgrConfig::from_config(&cfg),
            host.clone(),
            link.clone(),
            shutdown.clone(),
        );
        // Topology watches every physical NIC before the uplink task
        // starts probing them (see HostDriver::topo_start).
        host.topo_start();
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
            tasks.extend(host.start_watchers(Arc::new(move |c| m.enqueue_vsi_change(c))));
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
                ThreadName::TopoDisc,
                Duration::from_secs(cfg.intervals.topo_disc_s),
                move || {
                    for report in h.topo_poll() {
                        if !m.topo_disc_cb(&report) {
                            h.topo_send_failed(&report.protocol_interface);
                        }
                    }
                },
            ));
        }
        {
            let l = link.clone();
            tasks.push(Task {
                name: ThreadName::ResultRetry,
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
        let doc: crate::status::StatusFn = Arc::new(status_doc_fn(
            host_id.clone(),
            mgr.clone(),
            host.clone(),
            link.clone(),
            registry.clone(),
        ));
        if let Some(n) = &opts.notify {
            tasks.push(notify::notify_task(n.clone(), doc.clone()));
        }
        {
            let stop = shutdown.clone();
            tasks.push(Task {
                name: ThreadName::StatusServer,
                step: Box::new(move || {
                    // Woken at once by a client or by shutdown (self-pipe).
                    if let Err(e) = status_server.serve_one_until(SERVE_WAIT, &doc, stop.wake_fd())
                    {
                        log::warn!("status socket: {e}");
                        return Step::Wait(Duration::from_millis(250));
                    }
                    Step::Again
                }),
            });
        }
        if let Some(server) = metrics_server {
            tasks.push(metrics::task(server, &mgr, &host, &registry, &shutdown));
        }
        let mut threads = Vec::new();
        for t in tasks {
            let name = t.name.as_str();
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
        if let Some(n) = &opts.notify {
            let up = format!("started, {} threads", threads.len());
            if let Err(e) = n.ready(&up) {
                log::warn!("sd_notify READY=1: {e}");
            }
        }
        Ok(Daemon {
            shutdown,
            mgr,
            registry,
            done_rx,
            threads,
            notify: opts.notify,
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
        if let Some(n) = &self.notify {
            let _ = n.stopping();
        }
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
            health: metrics::health_extra(),
        }
    }
}

#[cfg(test)]
mod tests;
