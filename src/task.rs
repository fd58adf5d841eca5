//! The unit of work the daemon's task runner runs on a named thread: a
//! `Task` is a name and a step function; the runner calls the step in a
//! loop (catching panics) and obeys the returned `Step`. Shared vocabulary
//! of the manager, the daemon and the drivers that bring tasks of their own
//! (the lldpad watcher).
//!
//! Owns nothing. Calls nothing.

use std::time::Duration;

/// What a task step asks its runner to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run the step again after this long (shutdown-aware wait).
    Wait(Duration),
    /// Run the step again at once (unless shutting down).
    Again,
    /// The task is finished.
    Stop,
}

/// The name of every thread the agent starts, as `status`, `/metrics`,
/// the logs and gdb (`info threads`) show it. One list, shared by the
/// runner, the status and the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ThreadName {
    QueueWorker,
    ErrQueue,
    UplinkDetect,
    Heartbeat,
    EventPoller,
    LldpadClient,
    LldpadEvents,
    LldpadNotify,
    FlowCheck,
    TopoDisc,
    ResultRetry,
    /// The delivery round's extra senders (scoped to one round).
    ResultSend,
    /// The queue worker's VM lanes (scoped to one burst of VM events).
    VmLane,
    /// The OVS driver's per-bridge flow calls (scoped to one flow change
    /// that touches two bridges).
    OvsFlows,
    StatusServer,
    StatusClient,
    MetricsServer,
    MetricsClient,
    SdNotify,
    Signal,
    /// Short-lived helpers of the command runner (stdin feeder, reader,
    /// waiter) and of lldpad's control socket in another netns.
    ExecIo,
    ExecWait,
    LldpadNetns,
}

impl ThreadName {
    pub const ALL: [ThreadName; 23] = [
        ThreadName::QueueWorker,
        ThreadName::ErrQueue,
        ThreadName::UplinkDetect,
        ThreadName::Heartbeat,
        ThreadName::EventPoller,
        ThreadName::LldpadClient,
        ThreadName::LldpadEvents,
        ThreadName::LldpadNotify,
        ThreadName::FlowCheck,
        ThreadName::TopoDisc,
        ThreadName::ResultRetry,
        ThreadName::ResultSend,
        ThreadName::VmLane,
        ThreadName::OvsFlows,
        ThreadName::StatusServer,
        ThreadName::StatusClient,
        ThreadName::MetricsServer,
        ThreadName::MetricsClient,
        ThreadName::SdNotify,
        ThreadName::Signal,
        ThreadName::ExecIo,
        ThreadName::ExecWait,
        ThreadName::LldpadNetns,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ThreadName::QueueWorker => "queue-worker",
            ThreadName::ErrQueue => "err-queue",
            ThreadName::UplinkDetect => "uplink-detect",
            ThreadName::Heartbeat => "heartbeat",
            ThreadName::EventPoller => "event-poller",
            ThreadName::LldpadClient => "lldpad-client",
            ThreadName::LldpadEvents => "lldpad-events",
            ThreadName::LldpadNotify => "lldpad-notify",
            ThreadName::FlowCheck => "flow-check",
            ThreadName::TopoDisc => "topo-disc",
            ThreadName::ResultRetry => "result-retry",
            ThreadName::ResultSend => "result-send",
            ThreadName::VmLane => "vm-lane",
            ThreadName::OvsFlows => "ovs-flows",
            ThreadName::StatusServer => "status-server",
            ThreadName::StatusClient => "status-client",
            ThreadName::MetricsServer => "metrics-server",
            ThreadName::MetricsClient => "metrics-client",
            ThreadName::SdNotify => "sd-notify",
            ThreadName::Signal => "signal",
            ThreadName::ExecIo => "exec-io",
            ThreadName::ExecWait => "exec-wait",
            ThreadName::LldpadNetns => "lldpad-netns",
        }
    }
}

impl std::fmt::Display for ThreadName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One named unit of work run by a daemon thread: the runner calls `step`
/// in a loop (catching panics) and obeys the returned [`Step`].
pub struct Task {
    pub name: ThreadName,
    pub step: Box<dyn FnMut() -> Step + Send>,
}

/// The one panic policy of every runner (the daemon's and the lldpad
/// watcher's own threads): a step that panics is caught, the panic logged
/// with the thread's name, and the next step follows after this pause.
pub(crate) const PANIC_BACKOFF: Duration = Duration::from_secs(1);

/// Run one step of `task` under the panic policy: the step's answer, or
/// `None` when it panicked (logged here; the caller waits
/// [`PANIC_BACKOFF`] before the next step).
pub(crate) fn run_step(task: &mut Task) -> Option<Step> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (task.step)())) {
        Ok(step) => Some(step),
        Err(p) => {
            log::error!("thread {}: panic caught: {}", task.name, panic_message(&*p));
            None
        }
    }
}

/// Text of a caught panic payload.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic".to_string()
    }
}
