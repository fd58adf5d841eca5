//! `LldpadDriver`, the control socket switches: queries
//! (`set_query_via_socket`) and associate/deassociate requests
//! (`set_requests_via_socket`) over lldpad's control socket, and their
//! counters.
//!
//! Owns nothing of its own (the driver's socket slots). Calls nothing.

use super::*;

impl LldpadDriver {
    /// Send the list and per-VSI queries (`vdptool -t ... -R`) straight to
    /// the lldpad of the current network namespace over its control socket
    /// (same command bytes, same `R` line, no process). Falls back to vdptool
    /// per query when the socket fails, and for good when lldpad refuses the
    /// client (`R0a`: the daemon is not root and uses a root helper).
    /// Associate / deassociate requests: `set_requests_via_socket`.
    pub fn set_query_via_socket(&self, on: bool) {
        self.set_query_socket(on.then(ClifQuery::new));
    }

    /// Same with a given client (e.g. `ClifQuery::in_netns` in tests);
    /// `None` = vdptool processes only (the default).
    pub fn set_query_socket(&self, client: Option<ClifQuery>) {
        *self.query_socket.lock() = QuerySocket {
            client: client.map(Arc::new),
            retry_at: None,
        };
    }

    /// Send associate / deassociate requests (`vdptool -T [-W]`) straight
    /// to the lldpad of the current network namespace over its control
    /// socket: the same datagram vdptool sends, lldpad's status for a
    /// refusal, the VSI's own event for the verdict (matched by uuid), no
    /// process. Falls back to vdptool (the documented argv) per request
    /// when the socket fails (suspended for `SOCKET_RETRY_AFTER`), and for
    /// good when lldpad refuses the client (`R0a`: not root).
    pub fn set_requests_via_socket(&self, on: bool) {
        self.set_request_socket(on.then(ClifSet::new));
    }

    /// Same with a given client (e.g. `ClifSet::in_netns` in tests);
    /// `None` = vdptool processes only (the default).
    pub fn set_request_socket(&self, client: Option<ClifSet>) {
        *self.set_socket.lock() = SetSocket {
            client: client.map(Arc::new),
            retry_at: None,
        };
    }

    /// Associate / deassociate requests sent over lldpad's control socket
    /// (not counted in `vdptool_calls`).
    pub fn socket_requests(&self) -> u64 {
        self.socket_requests.load(Ordering::Relaxed)
    }

    /// Queries answered over lldpad's control socket (not counted in
    /// `vdptool_calls`).
    pub fn socket_queries(&self) -> u64 {
        self.socket_queries.load(Ordering::Relaxed)
    }
}
