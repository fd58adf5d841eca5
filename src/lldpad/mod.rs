//! lldpad driver: everything the agent asks of lldpad, through `lldptool`
//! and `vdptool` (run via `exec::Runner`).
//!
//! - `lldptool`: LLDP/EVB settings and neighbour TLVs (used by `uplink`,
//!   `topology` and the driver).
//! - `vdptool`: argv building and reply parsing for VDP associate /
//!   deassociate / query (pure functions).
//! - `clif`: lldpad's control socket (transport shared with `events`) and
//!   `ClifQuery`, the vdptool query without a process.
//! - `wire`: the VDP22 codec (pure): one typed `Command` rendered to a
//!   vdptool argv or a control socket datagram, one record parser, one
//!   event type, lldpad's status texts.
//! - `vsi`: `LldpadDriver`, the VSI table of one lldpad-side interface with
//!   its periodic refresh.

pub(crate) mod clif;
pub(crate) mod events;
pub mod lldptool;
pub mod vdptool;
pub(crate) mod vsi;
pub mod wire;

use std::fmt;

/// Errors of the lldpad driver, with the command's context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LldpadError {
    /// The command could not run / timed out / failed (names the command).
    Exec(crate::exec::ExecError),
    /// lldpad answered something we could not use.
    Reply { what: String, reply: String },
    /// lldpad refused the request with a status (`R` + status only, before
    /// looking at the command), e.g. `R0a` for a client that is not uid 0.
    Refused {
        what: String,
        status: u8,
        reply: String,
    },
}

impl fmt::Display for LldpadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LldpadError::Exec(e) => write!(f, "{e}"),
            LldpadError::Reply { what, reply } | LldpadError::Refused { what, reply, .. } => {
                write!(f, "unexpected lldpad reply to {what}: {}", reply.trim())
            }
        }
    }
}

impl std::error::Error for LldpadError {}

impl From<crate::exec::ExecError> for LldpadError {
    fn from(e: crate::exec::ExecError) -> Self {
        LldpadError::Exec(e)
    }
}
