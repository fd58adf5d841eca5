//! The library's public surface: what the `vdp-agent` binary
//! (`src/main.rs`), `vdp-lab` and the integration tests may use. The
//! daemon's modules are crate-private; each item that leaves the crate is
//! named here, so a change of the outside surface shows in this file.
//!
//! Two kinds of entries:
//! - the pure protocol parts (parsers and encoders of lldptool, vdptool,
//!   lldpad's control socket, ovs-vsctl, ovs-ofctl, `ip -j`), re-exported
//!   whole: they are free of I/O and property-tested from outside;
//! - for everything else, the named items the binary and the tests need
//!   (the daemon and its start checks, the drivers' handles, the
//!   manager's traits and vocabulary).
//!
//! Owns nothing. The lab (cargo feature `lab`) is inside the crate and uses
//! the modules directly.

/// `agent.yaml`: schema, defaults and bounds.
pub mod config {
    pub use crate::config::{Config, Hints, VdpConfig, DEFAULT_CONFIG};
}

/// The controller link and its answers.
pub mod controller {
    pub use crate::controller::{
        parse_events, parse_uplink_result, preflight, Controller, ControllerError,
    };
}

/// The daemon: threads, log file, run options.
pub mod daemon {
    pub use crate::daemon::{block_signals, run_with, Daemon, LogFile, RunOptions};
}

/// The one command runner.
pub mod exec {
    pub use crate::exec::{CmdOutput, ExecError, Runner};
}

/// File checks of the start-up (`--check-config`).
pub mod fsutil {
    pub use crate::fsutil::check_private_dir;
}

/// The `status --check` verdict.
pub mod health {
    pub use crate::health::{judge, line, Health};
}

/// The production host driver.
pub mod host {
    pub use crate::host::LinuxHost;
}

/// Log line priorities for journald.
pub mod journal {
    pub use crate::journal::{priority, stderr_is_journal};
}

/// lldpad: the pure codecs whole, the drivers by name.
pub mod lldpad {
    pub use crate::lldpad::{lldptool, vdptool, wire, LldpadError};

    /// lldpad's control socket.
    pub mod clif {
        pub use crate::lldpad::clif::{
            is_no_access, ClifQuery, ClifSet, SetReply, LLDPAD_CLIF_SOCKET,
        };
    }

    /// lldpad's event client and watcher.
    pub mod events {
        pub use crate::lldpad::events::{
            parse_event, EventClient, LldpadNotice, LldpadWatch, VdpEvent, VdpEventKind,
        };
    }

    /// The VSI driver.
    pub mod vsi {
        pub use crate::lldpad::vsi::{Intent, LldpadDriver, VsiRequest, REASON_VSI_LOST};
    }
}

/// The manager (`VdpMgr`), its host and controller traits.
pub mod manager {
    pub use crate::manager::{
        MgrConfig, VdpMgr, VmNotice, PORT_TRANSITION_BOND_DOWN_REASON,
        PORT_TRANSITION_BOND_UP_REASON, UPLINK_NOT_RECEIVED_REASON, UPLINK_UNDISCOVERED_REASON,
    };

    /// What the manager asks of the host.
    pub mod host {
        pub use crate::manager::host::{
            HostDriver, NoLocalVlan, PortOutcome, TopoReport, UplinkDetect, VsiChange, VsiStatus,
        };
    }

    /// What the manager asks of the controller.
    pub mod link {
        pub use crate::manager::link::{
            ControllerEvent, ControllerLink, LinkError, LinkFailure, LinkStatus,
        };
    }
}

/// The `/metrics` exposition.
pub mod metrics {
    pub use crate::metrics::{render, Metrics, Snapshot, FAMILIES};
}

/// The shared vocabulary.
pub mod model {
    pub use crate::model::{
        MigrationPhase, Oui, PortStatus, TopoReport, UplinkInfo, UplinkSetupError, VmPort, VmResult,
    };
}

/// OVS: the pure parsers and flow texts whole, the driver by name.
pub mod ovs {
    pub use crate::ovs::{
        flows, ofctl, openflow, ovsdb, veth, vsctl, OvsDriver, OvsError, OvsOptions,
    };
}

/// The message queue.
pub mod queue {
    pub use crate::queue::{UplinkStatus, VdpQueMsg};
}

/// systemd readiness and watchdog messages.
pub mod sdnotify {
    pub use crate::sdnotify::Notifier;
}

/// The shutdown flag.
pub mod shutdown {
    pub use crate::shutdown::Shutdown;
}

/// The status socket's client side.
pub mod status {
    pub use crate::status::{query_raw, render_table};
}

/// Thread names (as `status`, `/metrics` and gdb show them).
pub mod task {
    pub use crate::task::ThreadName;
}

/// Topology reports (LLDP neighbours of the physical NICs).
pub mod topology {
    pub use crate::topology::{TopoDisc, TOPO_DISC_SEND_THRESHOLD};
}

/// Uplink detection over sysfs and lldpad.
pub mod uplink {
    pub use crate::uplink::{SysNet, UplinkDetector};
}

/// Controller input checks.
pub mod validate {
    pub use crate::validate::{
        validate_migration, validate_uplink, validate_vm, validate_vm_event, MigrationPhase,
    };
}
