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

/// One named unit of work run by a daemon thread: the runner calls `step`
/// in a loop (catching panics) and obeys the returned [`Step`].
pub struct Task {
    pub name: &'static str,
    pub step: Box<dyn FnMut() -> Step + Send>,
}

/// Text of a caught panic payload.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic".to_string()
    }
}
