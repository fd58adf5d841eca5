//! `LldpadWatch`: two tasks, `lldpad-events` (owns an `EventClient`, reads
//! the socket, probes liveness, reconnects) and `lldpad-notify` (runs the
//! callback, so the reader never blocks lldpad). In the daemon both run
//! under its task runner (`LldpadWatch::tasks`: named threads, panics
//! caught, shutdown-aware); tests and tools run them on two threads of
//! their own (`start`, `start_in_netns`) with the same panic policy.
//!
//! Owns: the two tasks and the watch status. Calls `super::EventClient`
//! and `crate::shutdown::Shutdown`.

use super::{EventClient, VdpEvent, PING_INTERVAL};
use crate::shutdown::Shutdown;
use crate::task::ThreadName;
use crate::task::{Step, Task};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What `LldpadWatch` tells its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // rare; boxing would only complicate callers
pub enum LldpadNotice {
    /// A VDP22 event from lldpad.
    Vdp(VdpEvent),
    /// lldpad's pid changed: it lost all VSIs and LLDP/EVB runtime state.
    /// Followed by `Attached` once the watch is registered again.
    Restarted { old_pid: u32, new_pid: u32 },
    /// lldpad is unreachable, not answering or refuses us (reason); sent once
    /// per outage. Events may be missed until the next `Attached`.
    Lost(String),
    /// Attached to lldpad's VDP22 events (at start and after every reconnect).
    Attached,
}

/// Snapshot of the watch for `status` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchStatus {
    pub attached: bool,
    pub lldpad_pid: Option<u32>,
    /// Why we are not attached (None while attached).
    pub reason: Option<String>,
    pub events: u64,
    pub restarts: u64,
    /// Steps of the two tasks that unwound (a caught panic): the reader's
    /// connection is dropped and opened again, a notice is dropped.
    pub panics: u64,
}

/// The watch: its status, and the two threads when it runs them itself.
pub struct LldpadWatch {
    stop: Shutdown,
    status: Arc<Mutex<WatchStatus>>,
    threads: Vec<JoinHandle<()>>,
}

use crate::task::PANIC_BACKOFF;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest uninterrupted wait of one step, so shutdown is seen quickly.
const SLICE: Duration = Duration::from_millis(250);

/// Task names (as in `status` and gdb).
pub(crate) const EVENTS_TASK: ThreadName = ThreadName::LldpadEvents;
pub(crate) const NOTIFY_TASK: ThreadName = ThreadName::LldpadNotify;

impl LldpadWatch {
    /// The watch of the current network namespace's lldpad as two tasks
    /// for the caller's runner (the daemon). Stops with `shutdown`.
    pub fn tasks<F>(shutdown: &Shutdown, on_notice: F) -> (LldpadWatch, Vec<Task>)
    where
        F: Fn(LldpadNotice) + Send + 'static,
    {
        Self::make(None, shutdown, on_notice)
    }

    /// Watch the lldpad of the current network namespace on two threads
    /// of its own. Stops on `shutdown` or `stop()`.
    pub fn start<F>(shutdown: &Shutdown, on_notice: F) -> std::io::Result<LldpadWatch>
    where
        F: Fn(LldpadNotice) + Send + 'static,
    {
        Self::spawn(None, shutdown, on_notice)
    }

    /// Same for the lldpad in `/run/netns/<netns>` (tests, labs).
    pub fn start_in_netns<F>(
        netns: &str,
        shutdown: &Shutdown,
        on_notice: F,
    ) -> std::io::Result<LldpadWatch>
    where
        F: Fn(LldpadNotice) + Send + 'static,
    {
        Self::spawn(Some(netns.to_string()), shutdown, on_notice)
    }

    fn make<F>(netns: Option<String>, shutdown: &Shutdown, on_notice: F) -> (LldpadWatch, Vec<Task>)
    where
        F: Fn(LldpadNotice) + Send + 'static,
    {
        let stop = Shutdown::new();
        let status = Arc::new(Mutex::new(WatchStatus {
            reason: Some("not attached yet".into()),
            ..WatchStatus::default()
        }));
        let (tx, rx) = unbounded::<LldpadNotice>();
        let mut worker = Worker {
            netns,
            daemon: shutdown.clone(),
            stop: stop.clone(),
            status: status.clone(),
            tx,
            client: None,
            last_pid: None,
            lost_reported: false,
            backoff: BACKOFF_MIN,
            next_ping: Instant::now() + PING_INTERVAL,
            in_step: false,
        };
        let mut notifier = Notifier {
            rx,
            on_notice: Box::new(on_notice),
            status: status.clone(),
            stop: stop.clone(),
            daemon: shutdown.clone(),
            in_step: false,
        };
        let tasks = vec![
            Task {
                name: EVENTS_TASK,
                step: Box::new(move || worker.step()),
            },
            Task {
                name: NOTIFY_TASK,
                step: Box::new(move || notifier.step()),
            },
        ];
        let watch = LldpadWatch {
            stop,
            status,
            threads: Vec::new(),
        };
        (watch, tasks)
    }

    fn spawn<F>(
        netns: Option<String>,
        shutdown: &Shutdown,
        on_notice: F,
    ) -> std::io::Result<LldpadWatch>
    where
        F: Fn(LldpadNotice) + Send + 'static,
    {
        let (mut watch, tasks) = Self::make(netns, shutdown, on_notice);
        for mut t in tasks {
            let stop = watch.stop.clone();
            let daemon = shutdown.clone();
            let h = std::thread::Builder::new()
                .name(t.name.to_string())
                .spawn(move || run_task(&mut t, &stop, &daemon))?;
            watch.threads.push(h);
        }
        Ok(watch)
    }

    /// Name and state (`alive` / `stopped`) of the watcher's own threads
    /// (none when its tasks run under the caller's runner).
    pub fn thread_states(&self) -> Vec<(String, String)> {
        self.threads
            .iter()
            .map(|h| {
                let name = h.thread().name().unwrap_or("lldpad-watch").to_string();
                let state = if h.is_finished() { "stopped" } else { "alive" };
                (name, state.to_string())
            })
            .collect()
    }

    pub fn status(&self) -> WatchStatus {
        self.status.lock().clone()
    }

    /// Stop both tasks and wait for the watch's own threads (pending
    /// notices are delivered first).
    pub fn stop(mut self) {
        self.shutdown_threads();
    }

    fn shutdown_threads(&mut self) {
        self.stop.trigger();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for LldpadWatch {
    fn drop(&mut self) {
        self.shutdown_threads();
    }
}

/// The runner of the watch's own threads: the daemon's policy (a panic is
/// caught and logged, the next step follows after [`PANIC_BACKOFF`]).
fn run_task(t: &mut Task, stop: &Shutdown, daemon: &Shutdown) {
    let stopping = || stop.is_set() || daemon.is_set();
    loop {
        match crate::task::run_step(t) {
            Some(Step::Wait(d)) => {
                if stop.wait(d) || stopping() {
                    break;
                }
            }
            // Each task returns Stop itself once asked to stop (the notifier
            // only after the notices already queued are delivered).
            Some(Step::Again) => {}
            Some(Step::Stop) => break,
            None => {
                if stop.wait(PANIC_BACKOFF) || stopping() {
                    break;
                }
            }
        }
    }
}

/// The `lldpad-notify` task: hands notices to the callback.
struct Notifier {
    rx: Receiver<LldpadNotice>,
    on_notice: Box<dyn Fn(LldpadNotice) + Send>,
    status: Arc<Mutex<WatchStatus>>,
    stop: Shutdown,
    daemon: Shutdown,
    /// Set during a step: still set at the next one means it unwound.
    in_step: bool,
}

impl Notifier {
    fn step(&mut self) -> Step {
        if std::mem::replace(&mut self.in_step, true) {
            log::error!("lldpad-notify: the last notice's handling unwound; it is dropped");
            self.status.lock().panics += 1;
        }
        let next = match self.rx.recv_timeout(SLICE) {
            Ok(n) => {
                (self.on_notice)(n);
                Step::Again
            }
            // Pending notices are delivered before a stop is obeyed.
            Err(RecvTimeoutError::Timeout) if self.stop.is_set() || self.daemon.is_set() => {
                Step::Stop
            }
            Err(RecvTimeoutError::Timeout) => Step::Again,
            Err(RecvTimeoutError::Disconnected) => Step::Stop,
        };
        self.in_step = false;
        next
    }
}

/// The `lldpad-events` task: the event client and its liveness probe.
struct Worker {
    netns: Option<String>,
    daemon: Shutdown,
    stop: Shutdown,
    status: Arc<Mutex<WatchStatus>>,
    tx: Sender<LldpadNotice>,
    client: Option<EventClient>,
    last_pid: Option<u32>,
    lost_reported: bool,
    backoff: Duration,
    next_ping: Instant,
    /// Set during a step: still set at the next one means it unwound.
    in_step: bool,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.stop.is_set() || self.daemon.is_set()
    }

    fn notify(&self, n: LldpadNotice) {
        let _ = self.tx.send(n);
    }

    /// One step: connect, or wait up to [`SLICE`] for an event, probing
    /// lldpad's pid every [`PING_INTERVAL`] and re-attaching when it
    /// changed or the socket broke.
    fn step(&mut self) -> Step {
        if std::mem::replace(&mut self.in_step, true) {
            // The previous step unwound (a caught panic): start afresh.
            log::error!("lldpad-events: the last step unwound; reconnecting");
            self.client = None;
            self.status.lock().panics += 1;
        }
        let next = self.step_inner();
        self.in_step = false;
        if next == Step::Stop || self.stopping() {
            let mut st = self.status.lock();
            st.attached = false;
            st.reason = Some("stopped".into());
        }
        next
    }

    fn step_inner(&mut self) -> Step {
        #[cfg(test)]
        if super::tests::PANIC_IN_RUN.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic in the events worker");
        }
        if self.stopping() {
            return Step::Stop;
        }
        let Some(client) = self.client.as_mut() else {
            let opened = match &self.netns {
                Some(ns) => EventClient::connect_in_netns(ns),
                None => EventClient::connect(),
            };
            return match opened {
                Ok(c) => {
                    let pid = c.pid();
                    self.client = Some(c);
                    self.attached(pid);
                    self.backoff = BACKOFF_MIN;
                    self.next_ping = Instant::now() + PING_INTERVAL;
                    Step::Again
                }
                Err(e) => {
                    self.lost(e.to_string());
                    self.wait_backoff()
                }
            };
        };
        let wait = self
            .next_ping
            .saturating_duration_since(Instant::now())
            .min(SLICE);
        let mut failure = None;
        match client.recv(wait) {
            Ok(Some(ev)) => {
                self.status.lock().events += 1;
                self.notify(LldpadNotice::Vdp(ev));
                return Step::Again;
            }
            Ok(None) => {}
            Err(e) => failure = Some(e),
        }
        let Some(client) = self.client.as_mut() else {
            return Step::Again;
        };
        if failure.is_none() && Instant::now() >= self.next_ping {
            self.next_ping = Instant::now() + PING_INTERVAL;
            match client.ping() {
                Ok(pid) if Some(pid) == self.last_pid => return Step::Again,
                Ok(_) => {} // same socket, new lldpad: re-register below
                Err(e) => failure = Some(e),
            }
        } else if failure.is_none() {
            return Step::Again;
        }
        // Ping failed, pid changed or the socket broke: try to re-register
        // at once (a restarted lldpad is usually back within a second).
        if let Some(e) = &failure {
            log::info!("lldpad probe failed ({e}), re-attaching");
        }
        match client.reattach() {
            Ok(()) => {
                let pid = client.pid();
                self.attached(pid);
                self.backoff = BACKOFF_MIN;
                Step::Again
            }
            Err(e) => {
                self.client = None;
                self.lost(e.to_string());
                self.wait_backoff()
            }
        }
    }

    /// Wait the current backoff (doubling up to [`BACKOFF_MAX`]).
    fn wait_backoff(&mut self) -> Step {
        let d = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        Step::Wait(d)
    }

    fn attached(&mut self, pid: Option<u32>) {
        let restarted = match (self.last_pid, pid) {
            (Some(old), Some(new)) if old != new => Some((old, new)),
            _ => None,
        };
        {
            let mut st = self.status.lock();
            st.attached = true;
            st.lldpad_pid = pid;
            st.reason = None;
            if restarted.is_some() {
                st.restarts += 1;
            }
        }
        if let Some((old_pid, new_pid)) = restarted {
            log::warn!("lldpad restarted (pid {old_pid} -> {new_pid})");
            self.notify(LldpadNotice::Restarted { old_pid, new_pid });
        }
        log::info!("attached to lldpad events (pid {pid:?})");
        self.notify(LldpadNotice::Attached);
        if pid.is_some() {
            self.last_pid = pid;
        }
        self.lost_reported = false;
    }

    fn lost(&mut self, reason: String) {
        {
            let mut st = self.status.lock();
            st.attached = false;
            st.reason = Some(reason.clone());
        }
        if !self.lost_reported {
            log::warn!("lldpad events unavailable: {reason}");
            self.lost_reported = true;
            self.notify(LldpadNotice::Lost(reason));
        }
    }
}
