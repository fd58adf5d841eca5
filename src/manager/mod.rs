//! VdpMgr: the manager state machine (uplink, VM events, bulk resync,
//! restart). TODO(core helper).

pub mod host;
pub mod link;
