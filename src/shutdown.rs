//! Shutdown-aware waiting shared by every thread: one flag plus a condvar.
//! Loops call `wait(period)` instead of sleeping; `trigger()` wakes them all
//! at once.
//!
//! Owns: the shutdown flag. Calls nothing.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Inner {
    stop: Mutex<bool>,
    cv: Condvar,
}

/// Cloneable handle to the daemon's shutdown flag.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Ask every waiter to stop.
    pub fn trigger(&self) {
        let mut s = self.inner.stop.lock();
        *s = true;
        self.inner.cv.notify_all();
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
}
