//! The daemon's thread registry (state of every thread for `status`) and
//! the task runner: one named thread per task, panics caught, shutdown-aware.
//!
//! Owns: the registry. Calls `crate::shutdown`.

use super::*;
use crate::task::ThreadName;

// ----- thread registry ------------------------------------------------------

/// A loop step running longer than this shows its thread as `stuck` in
/// `status` (longer than any bounded wait a step makes: a command is
/// killed after 15 s, a VM's tag wait is at most 3600 s by config but 10 s
/// by default; a bulk resync of many ports is one long step, so the bound
/// is generous).
pub(crate) const STUCK_AFTER: Duration = Duration::from_secs(300);

/// State of every daemon thread, for `status`: `starting`, `alive`,
/// `restarting` (after a caught panic), `stopped`, or `stuck` (one loop
/// step has been running for more than [`STUCK_AFTER`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct ThreadRegistry {
    inner: Arc<Mutex<BTreeMap<String, ThreadEntry>>>,
}

/// A thread's state text and when its current loop step started.
pub(super) type ThreadEntry = (String, Option<Instant>);

impl ThreadRegistry {
    pub(crate) fn set(&self, name: &str, state: &str) {
        self.inner
            .lock()
            .insert(name.to_string(), (state.to_string(), None));
    }
    /// A loop step of `name` starts (`None`: it ended).
    pub(super) fn step(&self, name: &str, started: Option<Instant>) {
        if let Some(e) = self.inner.lock().get_mut(name) {
            e.1 = started;
        }
    }
    pub(crate) fn snapshot(&self) -> BTreeMap<String, String> {
        self.snapshot_with(STUCK_AFTER)
    }
    pub(super) fn snapshot_with(&self, stuck_after: Duration) -> BTreeMap<String, String> {
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
pub(super) fn spawn_task(
    mut task: Task,
    registry: &ThreadRegistry,
    shutdown: &Shutdown,
    done: &crossbeam_channel::Sender<&'static str>,
) -> Result<std::thread::JoinHandle<()>, DaemonError> {
    let name = task.name.as_str();
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
                let r = crate::task::run_step(&mut task);
                registry.step(name, None);
                match r {
                    Some(Step::Wait(d)) => {
                        if shutdown.wait(d) {
                            break;
                        }
                    }
                    Some(Step::Again) => {
                        if shutdown.is_set() {
                            break;
                        }
                    }
                    Some(Step::Stop) => break,
                    None => {
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
pub(super) fn periodic_after_first_period(
    name: ThreadName,
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
