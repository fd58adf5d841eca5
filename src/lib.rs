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

pub mod config;
pub mod controller;
pub mod daemon;
pub mod exec;
pub mod fsutil;
pub mod health;
pub mod host;
pub mod journal;
#[cfg(feature = "lab")]
pub mod lab;
pub mod lldpad;
pub mod manager;
pub mod metrics;
pub mod model;
pub mod ovs;
pub mod queue;
pub mod sdnotify;
pub mod serve;
pub mod shutdown;
pub mod status;
pub mod task;
pub mod topology;
pub mod uplink;
pub mod validate;

/// Version string reported by `--version` and `status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
