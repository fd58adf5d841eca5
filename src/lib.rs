//! vdp-agent: the compute-host side of an IEEE 802.1Qbg VDP fabric agent.
//!
//! Module map (each module's doc says what it owns and what it may call):
//! - `config`, `model`, `shutdown`, `task`, `exec`, `fsutil`: foundations used by everyone.
//! - `validate`: docs/protocol.md checks; turns controller JSON into `model` values.
//! - `queue`: `VdpMsgPriQue` / `VdpQueMsg`.
//! - `manager`: `VdpMgr`, the state machine; talks to the host only through
//!   `manager::host::HostDriver` and to the controller through `controller`.
//! - `controller`: the HTTP link (RPC calls, event long-poll, pending results).
//! - `host`: `LinuxHost`, the production `HostDriver` built from `ovs`,
//!   `lldpad`, `uplink` and `topology`.
//! - `ovs`, `lldpad`, `uplink`, `topology`: host drivers (commands via `exec`).
//! - `status`: the unix-socket status server and its printing; `health`: the
//!   monitoring-plugin verdict of `status --check`.
//! - `daemon`: threads, signals, pid file, shutdown; `sdnotify`: systemd
//!   readiness/watchdog messages; `journal`: log line priorities for journald.
//! - `lab` (cargo feature `lab`, on by default; off in the packaged
//!   daemon): the lab tools behind `vdp-lab` (reference controller, leaf
//!   simulator, netns harness). Nothing outside `lab` uses it.
//!
//! Every module above except `lab` is crate-private: what leaves the crate
//! (for `src/main.rs`, `vdp-lab` and the integration tests) is named in the
//! facade [`api`].

// What is `pub` must be reachable from outside (through `api` or `lab`);
// everything else says `pub(crate)` (or narrower).
#![warn(unreachable_pub)]

pub(crate) mod config;
pub(crate) mod controller;
pub(crate) mod daemon;
pub(crate) mod exec;
pub(crate) mod fsutil;
pub(crate) mod health;
pub(crate) mod host;
pub(crate) mod journal;
#[cfg(feature = "lab")]
pub mod lab;

pub mod api;
pub(crate) mod lldpad;
pub(crate) mod manager;
pub(crate) mod metrics;
pub(crate) mod model;
pub(crate) mod ovs;
pub(crate) mod queue;
pub(crate) mod sdnotify;
pub(crate) mod serve;
pub(crate) mod shutdown;
pub(crate) mod status;
pub(crate) mod task;
pub(crate) mod topology;
pub(crate) mod uplink;
pub(crate) mod validate;

/// Version string reported by `--version` and `status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
