//! Shutdown-aware waiting shared by every thread: one flag plus a condvar.
//! Loops call `wait(period)` instead of sleeping; `trigger()` wakes them all
//! at once. Loops blocked in `poll(2)` on a socket add `wake_fd()` to their
//! poll set: a self-pipe (a socket pair) that becomes readable, for good, at
//! `trigger()`, so they wake at once instead of polling with a short timeout.
//!
//! Owns: the shutdown flag and the self-pipe. Calls nothing.

use parking_lot::{Condvar, Mutex};
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Inner {
    stop: Mutex<bool>,
    cv: Condvar,
    /// (read end, write end); `None` when the pair could not be made (no
    /// fds left): poll loops then rely on their timeouts.
    pipe: Option<(UnixStream, UnixStream)>,
}

/// Cloneable handle to the daemon's shutdown flag.
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        let pipe = UnixStream::pair()
            .map_err(|e| log::warn!("shutdown self-pipe: {e}; poll loops use timeouts"))
            .ok();
        Shutdown {
            inner: Arc::new(Inner {
                stop: Mutex::new(false),
                cv: Condvar::new(),
                pipe,
            }),
        }
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Ask every waiter to stop.
    pub fn trigger(&self) {
        let mut s = self.inner.stop.lock();
        if !*s {
            if let Some((_, w)) = &self.inner.pipe {
                // Never read: the read end stays readable from now on.
                let mut w: &UnixStream = w;
                let _ = w.write(&[1]);
            }
        }
        *s = true;
        self.inner.cv.notify_all();
    }

    /// A descriptor that becomes readable at `trigger()` (and stays so),
    /// for `poll(2)` sets; `None` without a self-pipe.
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.pipe.as_ref().map(|(r, _)| r.as_fd())
    }

    pub fn is_set(&self) -> bool {
        *self.inner.stop.lock()
    }

    /// Wait up to `d`; returns `true` when shutdown was requested (at once if
    /// it already was), `false` when the time ran out.
    pub fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut s = self.inner.stop.lock();
        while !*s {
            if self.inner.cv.wait_until(&mut s, deadline).timed_out() {
                return *s;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_times_out_then_wakes() {
        let s = Shutdown::new();
        assert!(!s.wait(Duration::from_millis(20)));
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait(Duration::from_secs(30)));
        s.trigger();
        assert!(t.join().unwrap());
        assert!(s.wait(Duration::from_secs(30)));
    }

    #[test]
    fn wake_fd_becomes_readable_at_trigger() {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let s = Shutdown::new();
        let ready = |s: &Shutdown| {
            let mut fds = [PollFd::new(s.wake_fd().unwrap(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).unwrap()
        };
        assert_eq!(ready(&s), 0);
        s.trigger();
        s.trigger();
        assert_eq!(ready(&s), 1);
        assert_eq!(ready(&s.clone()), 1, "stays readable for every waiter");
    }
}
