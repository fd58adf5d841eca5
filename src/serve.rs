//! One bounded accept step shared by the status and metrics servers: wait in
//! `poll(2)` for a client or the shutdown self-pipe, accept one connection,
//! and serve it on a short-lived named thread, at most `max` at once (beyond
//! that a new connection is closed at once).
//!
//! Owns nothing (the caller owns the listener and the client counter).
//! Calls `poll`/`accept` and spawns the client thread.

use crate::task::ThreadName;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What one server hands to `accept_one`.
pub(crate) struct Server<'a, L: AsFd> {
    pub listener: &'a L,
    /// Clients being served now (shared with the client threads).
    pub active: &'a Arc<AtomicUsize>,
    pub max: usize,
    /// The client thread's name (and the log prefix).
    pub name: ThreadName,
}

/// Wait up to `wait` (or until `stop` is readable) for one connection,
/// accept it with `accept` and serve it with `serve` on a `name` thread.
/// Ok(false) when no client came.
pub(crate) fn accept_one<L: AsFd, S: Send + 'static>(
    srv: &Server<'_, L>,
    wait: Duration,
    stop: Option<BorrowedFd<'_>>,
    accept: impl FnOnce(&L) -> io::Result<S>,
    serve: impl FnOnce(S) + Send + 'static,
) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let ms = wait.as_millis().min(u16::MAX as u128) as u16;
    let mut fds = vec![PollFd::new(srv.listener.as_fd(), PollFlags::POLLIN)];
    fds.extend(stop.map(|s| PollFd::new(s, PollFlags::POLLIN)));
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(0) => return Ok(false),
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok(false),
        Err(e) => return Err(io::Error::from(e)),
    }
    let listener_ready = fds[0]
        .revents()
        .is_some_and(|r| r.intersects(PollFlags::POLLIN));
    if !listener_ready {
        return Ok(false);
    }
    let stream = match accept(srv.listener) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
        Err(e) => return Err(e),
    };
    if srv.active.fetch_add(1, Ordering::SeqCst) >= srv.max {
        srv.active.fetch_sub(1, Ordering::SeqCst);
        log::debug!(
            "{}: {} clients already being served; connection closed",
            srv.name,
            srv.max
        );
        return Ok(true);
    }
    let active = srv.active.clone();
    let spawned = std::thread::Builder::new()
        .name(srv.name.to_string())
        .spawn(move || {
            serve(stream);
            active.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        srv.active.fetch_sub(1, Ordering::SeqCst);
        log::warn!("{}: cannot start a client thread: {e}", srv.name);
    }
    Ok(true)
}
