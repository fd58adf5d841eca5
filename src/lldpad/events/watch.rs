//! `LldpadWatch`: the `lldpad-events` thread (owns an `EventClient`, reads
//! the socket, probes liveness, reconnects) and the `lldpad-notify` thread
//! (runs the callback, so the reader never blocks lldpad).
//!
//! Owns: the two threads and the watch status. Calls `super::EventClient`
//! and `crate::shutdown::Shutdown`.

use super::{EventClient, VdpEvent, PING_INTERVAL};
use crate::shutdown::Shutdown;
use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;
use std::panic::{catch_unwind, AssertUnwindSafe};
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
    /// Panics caught on the watch's threads (each contained: the notice is
    /// dropped, or the connection is re-opened after [`PANIC_BACKOFF`]).
    pub panics: u64,
}

/// Owns an `EventClient` on the `lldpad-events` thread; calls the callback
/// from the `lldpad-notify` thread (never while holding the watch's lock).
pub struct LldpadWatch {
    stop: Shutdown,
    status: Arc<Mutex<WatchStatus>>,
    threads: Vec<JoinHandle<()>>,
}

/// Pause after a caught panic on the `lldpad-events` thread before it
/// connects again (the daemon's task runner uses the same figure).
pub const PANIC_BACKOFF: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest uninterrupted wait, so the daemon's shutdown is seen quickly.
const SLICE: Duration = Duration::from_millis(250);

impl LldpadWatch {
    /// Watch the lldpad of the current network namespace (production).
    /// Stops on `shutdown` or `stop()`.
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

    fn spawn<F>(
        netns: Option<String>,
        shutdown: &Shutdown,
        on_notice: F,
    ) -> std::io::Result<LldpadWatch>
    where
        F: Fn(LldpadNotice) + Send + 'static,
    {
        let stop = Shutdown::new();
        let status = Arc::new(Mutex::new(WatchStatus {
            reason: Some("not attached yet".into()),
            ..WatchStatus::default()
        }));
        let (tx, rx) = unbounded::<LldpadNotice>();
        let notify_status = status.clone();
        // Both threads contain panics the way the daemon's task runner does
        // (the callback runs host code; the worker parses lldpad's bytes):
        // a panic is logged and counted, the thread goes on.
        let notify = std::thread::Builder::new()
            .name("lldpad-notify".into())
            .spawn(move || {
                for n in rx.iter() {
                    let r = catch_unwind(AssertUnwindSafe(|| on_notice(n)));
                    if let Err(p) = r {
                        log::error!(
                            "thread lldpad-notify: panic caught, notice dropped: {}",
                            crate::manager::panic_message(&*p)
                        );
                        notify_status.lock().panics += 1;
                    }
                }
            })?;
        let mut worker = Worker {
            netns,
            daemon: shutdown.clone(),
            stop: stop.clone(),
            status: status.clone(),
            tx,
            client: None,
            last_pid: None,
            lost_reported: false,
        };
        let events = std::thread::Builder::new()
            .name("lldpad-events".into())
            .spawn(move || worker.run_contained())?;
        Ok(LldpadWatch {
            stop,
            status,
            threads: vec![events, notify],
        })
    }

    /// Name and state (`alive` / `stopped`) of the watcher's threads.
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

    /// Stop both threads and wait for them (pending notices are delivered).
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

struct Worker {
    netns: Option<String>,
    daemon: Shutdown,
    stop: Shutdown,
    status: Arc<Mutex<WatchStatus>>,
    tx: Sender<LldpadNotice>,
    client: Option<EventClient>,
    last_pid: Option<u32>,
    lost_reported: bool,
}

impl Worker {
    fn stopping(&self) -> bool {
        self.stop.is_set() || self.daemon.is_set()
    }

    /// Wait `d` unless asked to stop; true when stopping.
    fn pause(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.stopping() {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stop.wait(left.min(SLICE));
        }
    }

    fn notify(&self, n: LldpadNotice) {
        let _ = self.tx.send(n);
    }

    /// `run` until stopped; a panic drops the connection, is logged and
    /// counted, and the worker connects again after [`PANIC_BACKOFF`].
    fn run_contained(&mut self) {
        loop {
            let r = catch_unwind(AssertUnwindSafe(|| self.run()));
            let Err(p) = r else { return };
            log::error!(
                "thread lldpad-events: panic caught: {}; reconnecting",
                crate::manager::panic_message(&*p)
            );
            self.client = None;
            self.status.lock().panics += 1;
            if self.pause(PANIC_BACKOFF) {
                let mut st = self.status.lock();
                st.attached = false;
                st.reason = Some("stopped".into());
                return;
            }
        }
    }

    fn run(&mut self) {
        #[cfg(test)]
        if super::tests::PANIC_IN_RUN.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic in the events worker");
        }
        let mut backoff = BACKOFF_MIN;
        let mut next_ping = Instant::now() + PING_INTERVAL;
        while !self.stopping() {
            let Some(client) = self.client.as_mut() else {
                let opened = match &self.netns {
                    Some(ns) => EventClient::connect_in_netns(ns),
                    None => EventClient::connect(),
                };
                match opened {
                    Ok(c) => {
                        let pid = c.pid();
                        self.client = Some(c);
                        self.attached(pid);
                        backoff = BACKOFF_MIN;
                        next_ping = Instant::now() + PING_INTERVAL;
                    }
                    Err(e) => {
                        self.lost(e.to_string());
                        if self.pause(backoff) {
                            break;
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
                continue;
            };
            let wait = next_ping
                .saturating_duration_since(Instant::now())
                .min(SLICE);
            let mut failure = None;
            match client.recv(wait) {
                Ok(Some(ev)) => {
                    self.status.lock().events += 1;
                    self.notify(LldpadNotice::Vdp(ev));
                    continue;
                }
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
            let Some(client) = self.client.as_mut() else {
                continue;
            };
            if failure.is_none() && Instant::now() >= next_ping {
                next_ping = Instant::now() + PING_INTERVAL;
                match client.ping() {
                    Ok(pid) if Some(pid) == self.last_pid => continue,
                    Ok(_) => {} // same socket, new lldpad: re-register below
                    Err(e) => failure = Some(e),
                }
            } else if failure.is_none() {
                continue;
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
                    backoff = BACKOFF_MIN;
                }
                Err(e) => {
                    self.client = None;
                    self.lost(e.to_string());
                    if self.pause(backoff) {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        let mut st = self.status.lock();
        st.attached = false;
        st.reason = Some("stopped".into());
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
