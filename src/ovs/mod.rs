//! OVS driver (`OvsDriver`): the uplink's LLDP veth pair (`LLDPO..` in the
//! external bridge, `LLDPL..` for lldpad), the uplink and veth ports of the
//! external bridge, the LLDP/ECP pass-through flows, the patch ports between
//! the integration and external bridges, the LocalVlan table with its VLAN
//! translation flows, the local VLAN (Neutron tag) of VM ports, and the
//! periodic flow check that puts back what OVS lost.
//!
//! Owns: the LocalVlan table and what it knows of the uplink and patch
//! ports, all behind one mutex. Calls: `ip`, `ovs-vsctl` and `ovs-ofctl`
//! through `exec::Runner` only (the environment passes through, so
//! `OVS_RUNDIR` labs work); flow-mods go to `ovs-ofctl add-flows BR -` on
//! stdin (no files). With `with_ovsdb_monitor` (the daemon), VM port tags
//! come from `ovsdb::Monitor`, an OVSDB JSON-RPC `monitor` on the
//! database's unix socket (no process per VM event; the processes stay as
//! the fallback).
//!
//! Public submodules are pure: `veth` (names, `ip -j link` parser), `vsctl`
//! (argv + JSON parsers), `ofctl` (flow value, `dump-flows` parser, flow
//! text), `flows` (the flows we own, reconcile), `local_vlan` (the table),
//! `ovsdb` (RFC 7047 framer and monitor view; its `client` has the socket),
//! `openflow` (OpenFlow 1.0 flow-mods of the VM flows; its `Client` has the
//! management socket).
//! The driver's methods are split by concern: this file (errors, options,
//! the command helpers), `uplink_ports`, `vm_ports`, `flow_check`.
//!
//! Command economy: setting up an uplink that is already set up (agent
//! restart) costs 3 commands (`ip -j link show type veth`, one `ovs-vsctl`
//! snapshot, one `dump-flows`) and changes nothing. A fresh setup adds the
//! veth (2 `ip`), one `ovs-vsctl` transaction for both ports, one read of
//! their ofports and one `ovs-ofctl add-flows` for the 4 flows. A VM flow
//! change is at most one `ovs-ofctl` call per bridge, the two bridges side
//! by side; with `with_openflow` (the daemon) none: one connection to each
//! bridge's management socket (`openflow`). A flow check is one
//! `ovs-vsctl` snapshot, one dump per bridge and at most one fix per bridge.

pub mod flows;
pub(crate) mod local_vlan;
pub mod ofctl;
pub mod openflow;
pub mod ovsdb;
pub mod veth;
pub mod vsctl;

use crate::exec::{ExecError, Runner};
use crate::shutdown::Shutdown;
use crate::task::ThreadName;
use local_vlan::{FlowChange, LocalVlanTable, PortVlan, TableError};
use ofctl::{Flow, FlowOp, OfctlOpts, FLOW_COOKIE};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors of the OVS driver. `Display` of the setup errors is the
/// original's fail reason text (it goes to the controller as is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OvsError {
    /// A command could not run, timed out or failed (names the command).
    Exec(ExecError),
    /// A command's output could not be understood.
    Parse { cmd: String, detail: String },
    /// Not a usable interface name.
    BadName(String),
    /// Not a usable port UUID (iface-id).
    BadPortId(String),
    /// One of the bridges is missing (`bridge_not_cfgd_reason`).
    BridgesMissing {
        bridges: Vec<String>,
        br_int: String,
        br_ex: String,
    },
    /// No patch pair between the bridges (`veth_not_cfgd_reason`).
    PatchPortsMissing {
        ex_peer: Option<String>,
        int_peer: Option<String>,
    },
    /// `invalid_uplink_ofport_reason`.
    UplinkOfport,
    /// `lldp_ofport_not_detect_reason`.
    LldpOfport,
    /// `invalid_peer_ofport_reason`.
    PeerOfport { phy: i64, int: i64 },
    /// The uplink is a port of another bridge.
    UplinkOnOtherBridge { port: String, bridge: String },
    /// The veth pair could not be made.
    Veth(String),
    /// No interface has `external_ids:iface-id` = this port UUID.
    UnknownPortName(String),
    /// The port has no (valid) local VLAN tag.
    InvalidPortVlan(String),
    /// Shutdown was requested while waiting.
    Shutdown,
    /// LocalVlan table refusal (unknown network / port, bad local VLAN).
    Table(TableError),
}

/// Python's `repr()` of a list of strings, as the original's fail reason shows it.
fn py_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", items.join(", "))
}

fn py_opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "None".into())
}

impl fmt::Display for OvsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OvsError::Exec(e) => write!(f, "{e}"),
            OvsError::Parse { cmd, detail } => write!(f, "cannot parse output of `{cmd}`: {detail}"),
            OvsError::BadName(n) => write!(f, "invalid interface name {n:?}"),
            OvsError::BadPortId(n) => write!(f, "invalid port uuid {n:?}"),
            OvsError::BridgesMissing {
                bridges,
                br_int,
                br_ex,
            } => write!(
                f,
                "Integ or Physical Bridge not created by Openstack. Bridge_list: {} Integ Br: {br_int} Ext Br: {br_ex}",
                py_list(bridges)
            ),
            OvsError::PatchPortsMissing { ex_peer, int_peer } => write!(
                f,
                "Integ or Physical Patch/Veth Ports not configured by Openstack. Ext Peer: {} Integ Peer: {}",
                py_opt(ex_peer),
                py_opt(int_peer)
            ),
            OvsError::UplinkOfport => f.write_str("Uplink OF port not detected on external bridge"),
            OvsError::LldpOfport => f.write_str("lldp veth port not detected on external bridge"),
            OvsError::PeerOfport { phy, int } => write!(
                f,
                "int or phy peer OF Port not detected on Int or Phy Bridge. Phy Peer: {phy} Int Peer: {int}"
            ),
            OvsError::UplinkOnOtherBridge { port, bridge } => {
                write!(f, "Port {port} added to wrong bridge {bridge}")
            }
            OvsError::Veth(m) => write!(f, "veth: {m}"),
            OvsError::UnknownPortName(u) => write!(f, "Unknown portname for uuid {u}"),
            OvsError::InvalidPortVlan(p) => write!(f, "Invalid OVS VLAN for port {p}"),
            OvsError::Shutdown => f.write_str("shutting down"),
            OvsError::Table(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OvsError {}

impl From<ExecError> for OvsError {
    fn from(e: ExecError) -> Self {
        OvsError::Exec(e)
    }
}

impl From<TableError> for OvsError {
    fn from(e: TableError) -> Self {
        OvsError::Table(e)
    }
}

/// Bound of one OpenFlow flow change (connect, send, barrier reply).
const OPENFLOW_TIMEOUT: Duration = Duration::from_secs(2);

/// Tunables of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsOptions {
    /// ovs-ofctl options (`-O`).
    pub ofctl: OfctlOpts,
    /// Poll period while waiting for a VM port's interface to appear (the
    /// tag itself is awaited with `ovs-vsctl wait-until`, no polling).
    pub iface_poll: Duration,
    /// OVS's run directory (`$OVS_RUNDIR`, else `/var/run/openvswitch`):
    /// where `ovs-vswitchd.pid` tells which vswitchd runs.
    pub run_dir: std::path::PathBuf,
}

impl Default for OvsOptions {
    fn default() -> Self {
        OvsOptions {
            ofctl: OfctlOpts::default(),
            iface_poll: Duration::from_millis(100),
            run_dir: std::env::var_os("OVS_RUNDIR")
                .map(Into::into)
                .unwrap_or_else(|| "/var/run/openvswitch".into()),
        }
    }
}

/// What `setup_uplink` set up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UplinkPorts {
    pub uplink: String,
    /// `LLDPO..`: the veth end in the external bridge.
    pub ovs_veth: String,
    /// `LLDPL..`: the veth end lldpad runs on (the `veth_intf` of the controller protocol).
    pub lldp_veth: String,
    pub uplink_ofport: u32,
    pub ovs_veth_ofport: u32,
    /// Patch port of the external bridge (`phy-br-ethd`) and its ofport.
    pub ex_patch: String,
    pub ex_patch_ofport: u32,
    /// Patch port of the integration bridge (`int-br-ethd`) and its ofport.
    pub int_patch: String,
    pub int_patch_ofport: u32,
    /// The veth pair was created now (false: an existing pair was reused).
    pub veth_created: bool,
}

/// One network of the LocalVlan table, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalVlanInfo {
    pub net_uuid: String,
    pub local_vlan: u16,
    /// The VDP VLAN whose translation flows are installed.
    pub vdp_vlan: Option<u16>,
    pub ports: Vec<PortVlan>,
}

/// Result of a table change on OVS: what changed and whether OVS took it.
/// When `error` is set the table is still updated and `check_flows` will
/// finish the job (missing flows re-added, leftovers of tracked networks
/// and failed deletions removed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowUpdate {
    pub change: FlowChange,
    pub error: Option<String>,
}

/// What `remove_vm_port` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRemoval {
    pub local_vlan: u16,
    /// The VDP VLAN the port held (the VLAN of its VSI).
    pub port_vdp_vlan: Option<u16>,
    /// The network's installed VDP VLAN before the removal (what the
    /// original puts in the deassociation).
    pub net_vdp_vlan: Option<u16>,
    /// The network's last port went; the network is gone from the table.
    pub net_removed: bool,
    pub flows: FlowUpdate,
}

/// What `set_port_vdp_vlan` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanChange {
    pub local_vlan: u16,
    pub flows: FlowUpdate,
}

/// What one `check_flows` round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowCheck {
    /// Flows added back.
    pub restored: usize,
    /// Stale flows of ours removed (old ofports, old VLANs, failed deletes).
    pub removed: usize,
    /// The uplink or LLDPO port had to be put back into the external bridge.
    pub ports_readded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Patch {
    ex: String,
    ex_ofport: u32,
    int: String,
    int_ofport: u32,
}

#[derive(Debug, Default)]
struct State {
    uplink: Option<UplinkPorts>,
    patch: Option<Patch>,
    table: LocalVlanTable,
    /// Flows whose deletion failed: (bridge, flow); retried by check_flows.
    leftovers: Vec<(String, Flow)>,
    /// Our VM translation flows found in OVS when the uplink was set up
    /// (left by the previous run of the agent): (bridge, flow). A network's
    /// first install of exactly such a flow adopts it instead of writing it
    /// again (an identical `add-flow` still replaces the rule in OVS, resets
    /// its counters and makes the datapath revalidate). Emptied by the flow
    /// check, which compares with OVS itself, and by a teardown.
    adoptable: BTreeSet<(String, Flow)>,
}

/// What readers see without waiting for OVS commands (`status`, the VLAN
/// lookups of the host): the LocalVlan table and the uplink as of the end
/// of the last operation.
#[derive(Debug, Default)]
struct View {
    nets: BTreeMap<String, LocalVlanInfo>,
    uplink: Option<UplinkPorts>,
}

impl View {
    fn of(st: &State) -> View {
        View {
            nets: st
                .table
                .iter()
                .map(|(net, l)| {
                    let info = LocalVlanInfo {
                        net_uuid: net.clone(),
                        local_vlan: l.local_vlan,
                        vdp_vlan: l.flow_vlan,
                        ports: l.ports.values().cloned().collect(),
                    };
                    (net.clone(), info)
                })
                .collect(),
            uplink: st.uplink.clone(),
        }
    }
}

/// The state lock, held by one operation across its commands; publishes
/// the readers' `View` when the operation lets go.
struct StateGuard<'a> {
    st: parking_lot::MutexGuard<'a, State>,
    view: &'a Mutex<Arc<View>>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.st
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.st
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let v = Arc::new(View::of(&self.st));
        *self.view.lock() = v;
    }
}

/// Handle to the OVS side of the agent. All methods take `&self`.
///
/// Locks: `state` serialises the operations that change OVS (uplink set
/// up / torn down, VM flows, the flow check): one operation holds it across
/// its few commands, so OVS sees them in order. This is on purpose, not an
/// oversight: the only threads that ever wait on it are the other writers
/// (the queue worker, the flow-check thread), and a writer that decided
/// outside the lock would have to re-read OVS to know its decision still
/// holds, i.e. run the same commands again; a flow check or an uplink set-up
/// takes a few tens of milliseconds, a VM's flows one `ovs-ofctl` call.
/// No reader waits on it and no callback runs under it.
/// Readers (`status`, `port_vlans`, `net_vdp_vlan`, `local_vlans`,
/// `uplink`) take only `view`, which the operation replaces when it lets go
/// of `state` (order: `state`, then `view`, briefly); they never wait for a
/// command. Neither is held while waiting for a VM port's tag.
pub struct OvsDriver {
    runner: Arc<Runner>,
    br_int: String,
    br_ex: String,
    opts: OvsOptions,
    state: Mutex<State>,
    view: Mutex<Arc<View>>,
    /// OVSDB monitor for VM port tags (`with_ovsdb_monitor`); None: the
    /// `ovsdb-client` / `ovs-vsctl` processes.
    ovsdb: Option<ovsdb::Monitor>,
    /// VM flow-mods over the bridges' management sockets
    /// (`with_openflow`); None: `ovs-ofctl`.
    openflow: Option<openflow::Client>,
    /// Flow changes sent over OpenFlow / left to ovs-ofctl after an
    /// OpenFlow failure (status `host.openflow`).
    of_sent: std::sync::atomic::AtomicU64,
    of_fallbacks: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for OvsDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OvsDriver")
            .field("br_int", &self.br_int)
            .field("br_ex", &self.br_ex)
            .finish()
    }
}

/// `flows::vm_ex_flow` / `flows::vm_int_flow`.
type MakeFlow = fn(u32, u16, u16) -> Flow;

/// A port UUID as Neutron makes them; anything else never reaches ovs-vsctl.
fn valid_port_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !s.starts_with('-')
}

fn check_ifname(name: &str) -> Result<(), OvsError> {
    if veth::valid_ifname(name) {
        Ok(())
    } else {
        Err(OvsError::BadName(name.to_string()))
    }
}

impl OvsDriver {
    pub fn new(runner: Arc<Runner>, br_int: &str, br_ex: &str) -> OvsDriver {
        OvsDriver::with_options(runner, br_int, br_ex, OvsOptions::default())
    }

    pub fn with_options(
        runner: Arc<Runner>,
        br_int: &str,
        br_ex: &str,
        opts: OvsOptions,
    ) -> OvsDriver {
        OvsDriver {
            runner,
            br_int: br_int.to_string(),
            br_ex: br_ex.to_string(),
            opts,
            state: Mutex::new(State::default()),
            view: Mutex::new(Arc::new(View::default())),
            ovsdb: None,
            openflow: None,
            of_sent: Default::default(),
            of_fallbacks: Default::default(),
        }
    }

    /// Send the VM translation flows (OpenFlow 1.0 `in_port`/`dl_vlan`
    /// match, `mod_vlan_vid`, `normal`) straight to each bridge's
    /// management socket in the run directory (`openflow::Client`: no
    /// process per VM event); every other flow-mod, and any flow change
    /// the socket refuses or cannot take, goes to `ovs-ofctl` as before.
    /// Not used when `ofctl.protocols` is set: bridges limited to other
    /// OpenFlow versions keep the configured `-O`.
    pub fn with_openflow(mut self) -> OvsDriver {
        if self.opts.ofctl.protocols.is_none() {
            self.openflow = Some(openflow::Client::new(
                self.opts.run_dir.clone(),
                OPENFLOW_TIMEOUT,
            ));
        }
        self
    }

    /// `(sent over OpenFlow, left to ovs-ofctl after an OpenFlow failure)`
    /// flow changes, and whether the OpenFlow path is on.
    pub fn openflow_counts(&self) -> (bool, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.openflow.is_some(),
            self.of_sent.load(Relaxed),
            self.of_fallbacks.load(Relaxed),
        )
    }

    /// Look VM port tags up through an OVSDB `monitor` on the database's
    /// unix socket (`ovsdb::Monitor`, no process per VM event), falling
    /// back to the `ovsdb-client` / `ovs-vsctl` processes when the socket
    /// cannot be used.
    pub fn with_ovsdb_monitor(mut self, db_socket: impl Into<std::path::PathBuf>) -> OvsDriver {
        self.ovsdb = Some(ovsdb::Monitor::new(db_socket));
        self
    }

    /// The database socket of OVS's run directory (`{run_dir}/db.sock`).
    pub fn default_db_socket(&self) -> std::path::PathBuf {
        self.opts.run_dir.join("db.sock")
    }

    /// Take the state lock for one operation (see the struct doc).
    fn lock_state(&self) -> StateGuard<'_> {
        StateGuard {
            st: self.state.lock(),
            view: &self.view,
        }
    }

    fn view(&self) -> Arc<View> {
        self.view.lock().clone()
    }

    pub fn br_int(&self) -> &str {
        &self.br_int
    }

    pub fn br_ex(&self) -> &str {
        &self.br_ex
    }

    /// `(LLDPO.., LLDPL..)` for an uplink, cut to 10 characters like the original.
    pub fn veth_names(uplink: &str) -> (String, String) {
        veth::veth_names(uplink)
    }

    // ---- commands -------------------------------------------------------

    fn vsctl(&self, argv: &[String]) -> Result<String, OvsError> {
        Ok(self.runner.run(argv)?.stdout)
    }

    fn snapshot(&self, ifaces: &[&str]) -> Result<vsctl::Snapshot, OvsError> {
        let argv = vsctl::snapshot_argv(ifaces);
        let out = self.vsctl(&argv)?;
        vsctl::parse_snapshot(&out).map_err(|detail| OvsError::Parse {
            cmd: argv.join(" "),
            detail,
        })
    }

    fn dump_flows(&self, br: &str, filter: Option<&str>) -> Result<Vec<Flow>, OvsError> {
        let argv = ofctl::dump_flows_argv(&self.opts.ofctl, br, filter);
        let out = self.runner.run(&argv)?;
        Ok(ofctl::parse_dump_flows(&out.stdout))
    }

    /// Run flow-mods on one bridge in one `ovs-ofctl` call: the op itself
    /// when there is one, else an `add-flows` file.
    fn run_ops(&self, br: &str, ops: &[FlowOp]) -> Result<(), OvsError> {
        if let (Some(of), false) = (&self.openflow, ops.is_empty()) {
            if let Some(msgs) = openflow::encode_ops(ops) {
                use std::sync::atomic::Ordering::Relaxed;
                match of.apply(br, &msgs) {
                    Ok(()) => {
                        self.of_sent.fetch_add(1, Relaxed);
                        return Ok(());
                    }
                    Err(e) => {
                        // The first fallback is worth a warning; later
                        // ones (a bridge that never takes it) are not.
                        if self.of_fallbacks.fetch_add(1, Relaxed) == 0 {
                            log::warn!("ovs: OpenFlow to {br} failed ({e}); using ovs-ofctl");
                        } else {
                            log::debug!("ovs: OpenFlow to {br} failed ({e}); using ovs-ofctl");
                        }
                    }
                }
            }
        }
        match ops {
            [] => Ok(()),
            [op] => {
                self.runner
                    .run(&ofctl::single_op_argv(&self.opts.ofctl, br, op))?;
                Ok(())
            }
            _ => {
                // The flow-mods go on stdin: no file anywhere.
                self.runner.run_with_input(
                    &ofctl::add_flows_argv(&self.opts.ofctl, br),
                    ofctl::flow_file(ops).as_bytes(),
                )?;
                Ok(())
            }
        }
    }

    /// `run_ops` on several bridges at once, one scoped thread per bridge
    /// with work (the calls are bounded by the runner's timeout); the
    /// results in the given order.
    fn run_ops_on_bridges<'a>(
        &self,
        plans: impl Iterator<Item = (&'a str, &'a [FlowOp])>,
    ) -> Vec<Result<(), OvsError>> {
        let plans: Vec<_> = plans.collect();
        if plans.iter().filter(|(_, ops)| !ops.is_empty()).count() < 2 {
            return plans
                .iter()
                .map(|(br, ops)| self.run_ops(br, ops))
                .collect();
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = plans
                .iter()
                .map(|(br, ops)| {
                    std::thread::Builder::new()
                        .name(ThreadName::OvsFlows.as_str().into())
                        .spawn_scoped(s, move || self.run_ops(br, ops))
                })
                .collect();
            handles
                .into_iter()
                .zip(&plans)
                .map(|(h, (br, ops))| match h {
                    Ok(h) => h.join().unwrap_or_else(|_| {
                        Err(OvsError::Parse {
                            cmd: format!("ovs-ofctl on {br}"),
                            detail: "flow thread panicked".into(),
                        })
                    }),
                    // No thread: do it here.
                    Err(_) => self.run_ops(br, ops),
                })
                .collect()
        })
    }

    /// `ip -j link show type veth`
    fn veths(&self) -> Result<Vec<veth::VethLink>, OvsError> {
        let argv = ["ip", "-j", "link", "show", "type", "veth"];
        let out = self.runner.run(&argv)?;
        veth::parse_ip_link_json(&out.stdout).map_err(|detail| OvsError::Parse {
            cmd: argv.join(" "),
            detail,
        })
    }

    /// Ofports of interfaces, one `ovs-vsctl` call.
    fn ofports(&self, names: &[&str]) -> Result<Vec<Option<i64>>, OvsError> {
        let argv = vsctl::get_ofports_argv(names);
        let out = self.vsctl(&argv)?;
        vsctl::parse_ofports(&out, names.len()).map_err(|detail| OvsError::Parse {
            cmd: argv.join(" "),
            detail,
        })
    }
}

mod flow_check;
mod uplink_ports;
mod vm_ports;

fn count_ops(ops: &[FlowOp]) -> (usize, usize) {
    let added = ops.iter().filter(|o| matches!(o, FlowOp::Add(_))).count();
    (added, ops.len() - added)
}

#[cfg(test)]
mod tests;
