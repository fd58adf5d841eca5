//! Signals: SIGTERM/SIGINT stop the daemon, SIGHUP reopens the log; they
//! are blocked in every thread and taken by the `signal` task.
//!
//! Owns: the signal mask. Calls `nix::sys::signal`.

use super::*;
use crate::task::ThreadName;

// ----- signals ---------------------------------------------------------------------

pub(super) fn handled_signals() -> nix::sys::signal::SigSet {
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

pub(super) fn signal_task(shutdown: Shutdown, on_hup: Option<Arc<dyn Fn() + Send + Sync>>) -> Task {
    let set = handled_signals();
    Task {
        name: ThreadName::Signal,
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
