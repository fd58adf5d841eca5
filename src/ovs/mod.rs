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
//! `OVS_RUNDIR` labs work); writes short-lived flow files for
//! `ovs-ofctl add-flows` (0600, created exclusively).
//!
//! Submodules are pure: `veth` (names, `ip -j link` parser), `vsctl`
//! (argv + JSON parsers), `ofctl` (flow value, `dump-flows` parser, flow
//! files), `flows` (the flows we own, reconcile), `local_vlan` (the table).
//!
//! Command economy: setting up an uplink that is already set up (agent
//! restart) costs 3 commands (`ip -j link show type veth`, one `ovs-vsctl`
//! snapshot, one `dump-flows`) and changes nothing. A fresh setup adds the
//! veth (2 `ip`), one `ovs-vsctl` transaction for both ports, one read of
//! their ofports and one `ovs-ofctl add-flows` for the 4 flows. A VM flow
//! change is at most one `ovs-ofctl` call per bridge. A flow check is one
//! `ovs-vsctl` snapshot, one dump per bridge and at most one fix per bridge.

pub mod flows;
pub mod local_vlan;
pub mod ofctl;
pub mod veth;
pub mod vsctl;

use crate::exec::{ExecError, Runner};
use crate::shutdown::Shutdown;
use local_vlan::{FlowChange, LocalVlanTable, PortVlan, TableError};
use ofctl::{Flow, FlowOp, OfctlOpts, FLOW_COOKIE};
use parking_lot::Mutex;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use local_vlan::valid_vlan;

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
}

/// Handle to the OVS side of the agent. All methods take `&self`; one mutex
/// serialises table and flow changes (never held while waiting for a VM
/// port's tag).
pub struct OvsDriver {
    runner: Arc<Runner>,
    br_int: String,
    br_ex: String,
    opts: OvsOptions,
    state: Mutex<State>,
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
        }
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

    // ---- bridges and uplink --------------------------------------------

    /// `is_openstack_running`: both bridges exist (one `ovs-vsctl list-br`).
    pub fn bridges_present(&self) -> bool {
        match self.runner.run(&vsctl::list_br_argv()) {
            Ok(out) => {
                let brs = vsctl::parse_list_br(&out.stdout);
                brs.contains(&self.br_int) && brs.contains(&self.br_ex)
            }
            Err(e) => {
                log::warn!("ovs: cannot list bridges: {e}");
                false
            }
        }
    }

    fn check_bridges(&self, snap: &vsctl::Snapshot) -> Result<Patch, OvsError> {
        if !snap.has_bridge(&self.br_int) || !snap.has_bridge(&self.br_ex) {
            return Err(OvsError::BridgesMissing {
                bridges: snap.bridges.keys().cloned().collect(),
                br_int: self.br_int.clone(),
                br_ex: self.br_ex.clone(),
            });
        }
        let Some((ex, int)) = snap.interconnect(&self.br_int, &self.br_ex) else {
            return Err(OvsError::PatchPortsMissing {
                ex_peer: None,
                int_peer: None,
            });
        };
        match (
            vsctl::valid_ofport(ex.ofport),
            vsctl::valid_ofport(int.ofport),
        ) {
            (Some(e), Some(i)) => Ok(Patch {
                ex: ex.name,
                ex_ofport: e,
                int: int.name,
                int_ofport: i,
            }),
            _ => Err(OvsError::PeerOfport {
                phy: ex.ofport.unwrap_or(-1),
                int: int.ofport.unwrap_or(-1),
            }),
        }
    }

    /// Make sure the veth pair exists (reusing an existing pair, so its MAC
    /// and with it the VSIs at the leaf stay the same) and both ends are up.
    /// Returns whether it was created.
    fn ensure_veth(&self, ovs_veth: &str, lldp_veth: &str) -> Result<bool, OvsError> {
        let links = self.veths()?;
        let o = links.iter().find(|l| l.name == ovs_veth);
        let l = links.iter().find(|l| l.name == lldp_veth);
        let paired = matches!((o, l), (Some(o), Some(_)) if o.peer.as_deref() == Some(lldp_veth));
        if paired {
            for end in [o, l].into_iter().flatten() {
                if !end.up {
                    self.runner
                        .run(&["ip", "link", "set", "dev", &end.name, "up"])?;
                }
            }
            return Ok(false);
        }
        // A half pair (one end renamed or a stray device): start clean.
        for stray in [o, l].into_iter().flatten() {
            log::warn!("ovs: removing unpaired veth end {}", stray.name);
            let _ = self
                .runner
                .run_any(&["ip", "link", "del", "dev", &stray.name]);
        }
        self.runner
            .run(&[
                "ip", "link", "add", lldp_veth, "up", "type", "veth", "peer", "name", ovs_veth,
            ])
            .map_err(|e| OvsError::Veth(e.to_string()))?;
        self.runner
            .run(&["ip", "link", "set", "dev", ovs_veth, "up"])
            .map_err(|e| OvsError::Veth(e.to_string()))?;
        log::info!("ovs: created veth pair {lldp_veth}/{ovs_veth}");
        Ok(true)
    }

    /// Put the uplink and LLDPO ports into the external bridge (one
    /// transaction) unless they are there with a valid ofport; returns
    /// their ofports and whether anything was added. `veth_new`: the veth
    /// pair was just (re)created, so an LLDPO row left from the old device
    /// is replaced to make OVS open the new one.
    fn ensure_ports(
        &self,
        snap: &vsctl::Snapshot,
        uplink: &str,
        ovs_veth: &str,
        veth_new: bool,
    ) -> Result<(u32, u32, bool), OvsError> {
        let mut argv = vec![
            "ovs-vsctl".to_string(),
            format!("--timeout={}", vsctl::VSCTL_TIMEOUT_S),
        ];
        let mut current = Vec::new();
        for port in [uplink, ovs_veth] {
            match snap.bridge_of(port) {
                Some(br) if br == self.br_ex => {
                    let of = snap.ifaces.get(port).copied().flatten();
                    let stale = veth_new && port == ovs_veth;
                    if let (Some(of), false) = (vsctl::valid_ofport(of), stale) {
                        current.push(Some(of));
                        continue;
                    }
                    // In the bridge but OVS could not open it (device was
                    // recreated): replace the row so OVS opens it again.
                    argv.extend(
                        ["--", "--if-exists", "del-port", &self.br_ex, port]
                            .iter()
                            .map(|s| s.to_string()),
                    );
                    argv.extend(
                        ["--", "add-port", &self.br_ex, port]
                            .iter()
                            .map(|s| s.to_string()),
                    );
                }
                Some(br) => {
                    return Err(OvsError::UplinkOnOtherBridge {
                        port: port.to_string(),
                        bridge: br.to_string(),
                    })
                }
                None => {
                    argv.extend(
                        ["--", "--may-exist", "add-port", &self.br_ex, port]
                            .iter()
                            .map(|s| s.to_string()),
                    );
                }
            }
            current.push(None);
        }
        let added = current.iter().any(Option::is_none);
        if added {
            self.vsctl(&argv)?;
            let of = self.ofports(&[uplink, ovs_veth])?;
            current = of.into_iter().map(vsctl::valid_ofport).collect();
        }
        let up = current[0].ok_or(OvsError::UplinkOfport)?;
        let lo = current[1].ok_or(OvsError::LldpOfport)?;
        Ok((up, lo, added))
    }

    /// Passthrough flows on the external bridge: dump, then one call with
    /// the difference (stale NCB LLDP/ECP flows out, missing ones in).
    /// Returns (added, removed).
    fn ensure_passthrough(
        &self,
        lldp_ofport: u32,
        uplink_ofport: u32,
    ) -> Result<(usize, usize), OvsError> {
        let present = self.dump_flows(&self.br_ex, None)?;
        let want = flows::passthrough_flows(lldp_ofport, uplink_ofport);
        let ops = flows::reconcile(&present, &want, flows::is_passthrough_class);
        self.run_ops(&self.br_ex, &ops)?;
        Ok(count_ops(&ops))
    }

    /// Set the uplink up on the OVS side: veth pair (reused when present),
    /// both ends up, uplink + LLDPO ports in the external bridge (one
    /// transaction, `--may-exist`: ports already there keep their ofports),
    /// patch ports found, and exactly the 4 pass-through flows on the
    /// external bridge. VM translation flows are not touched (an agent
    /// restart must not disturb traffic).
    pub fn setup_uplink(&self, uplink: &str) -> Result<UplinkPorts, OvsError> {
        check_ifname(uplink)?;
        let (ovs_veth, lldp_veth) = veth::veth_names(uplink);
        let mut st = self.state.lock();
        if let Some(old) = st.uplink.as_ref().filter(|u| u.uplink != uplink) {
            log::warn!(
                "ovs: setting up uplink {uplink} while {} is set up; its pass-through flows are replaced, its ports stay (tear it down first)",
                old.uplink
            );
        }
        let snap = self.snapshot(&[uplink, &ovs_veth])?;
        let patch = self.check_bridges(&snap)?;
        st.patch = Some(patch.clone());
        let veth_created = self.ensure_veth(&ovs_veth, &lldp_veth)?;
        let (uplink_ofport, ovs_veth_ofport, _) =
            self.ensure_ports(&snap, uplink, &ovs_veth, veth_created)?;
        let (added, removed) = self.ensure_passthrough(ovs_veth_ofport, uplink_ofport)?;
        log::info!(
            "ovs: uplink {uplink} set up (veth {lldp_veth}/{ovs_veth} {}; ofports uplink {uplink_ofport} veth {ovs_veth_ofport}; passthrough +{added} -{removed})",
            if veth_created { "created" } else { "reused" }
        );
        let ports = UplinkPorts {
            uplink: uplink.to_string(),
            ovs_veth,
            lldp_veth,
            uplink_ofport,
            ovs_veth_ofport,
            ex_patch: patch.ex,
            ex_patch_ofport: patch.ex_ofport,
            int_patch: patch.int,
            int_patch_ofport: patch.int_ofport,
            veth_created,
        };
        st.uplink = Some(ports.clone());
        Ok(ports)
    }

    /// The uplink as last set up.
    pub fn uplink(&self) -> Option<UplinkPorts> {
        self.state.lock().uplink.clone()
    }

    /// Tear the uplink down (`clear_obj_params`): every flow of ours on both
    /// bridges (pass-through, with any other NCB LLDP/ECP flow, and VM
    /// translation flows), the LLDPO and uplink ports of the external bridge
    /// (one transaction), and the LocalVlan table. The veth pair stays, as
    /// in the original: recreating it would change its MAC and the leaf
    /// would see the station's VSIs come from a new station. For an uplink
    /// this driver did not set up, does `delete_uplink_and_flows`.
    /// Goes on after errors; returns the first.
    pub fn teardown_uplink(&self, uplink: &str) -> Result<(), OvsError> {
        check_ifname(uplink)?;
        let mut st = self.state.lock();
        if st.uplink.as_ref().map(|u| u.uplink.as_str()) != Some(uplink) {
            drop(st);
            return self.delete_uplink_and_flows(uplink);
        }
        let (ovs_veth, _) = veth::veth_names(uplink);
        let mut first: Option<OvsError> = None;
        let mut ex_ops = flows::passthrough_glob_deletes();
        ex_ops.push(FlowOp::Delete(ofctl::our_cookie_filter()));
        if let Err(e) = self.run_ops(&self.br_ex, &ex_ops) {
            log::error!("ovs: teardown: flows of {}: {e}", self.br_ex);
            first.get_or_insert(e);
        }
        let int_ops = [FlowOp::Delete(ofctl::our_cookie_filter())];
        if let Err(e) = self.run_ops(&self.br_int, &int_ops) {
            log::error!("ovs: teardown: flows of {}: {e}", self.br_int);
            first.get_or_insert(e);
        }
        if let Err(e) = self.vsctl(&vsctl::del_ports_argv(&self.br_ex, &[&ovs_veth, uplink])) {
            log::error!("ovs: teardown: ports: {e}");
            first.get_or_insert(e);
        }
        let had = st.table.clear();
        st.leftovers.clear();
        st.uplink = None;
        log::info!(
            "ovs: uplink {uplink} torn down ({} networks' flows removed)",
            had.len()
        );
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The original's `delete_uplink_and_flows` for an uplink this process
    /// never set up: every NCB LLDP/ECP flow of the external bridge, then —
    /// only when the uplink is a port of the external bridge — the uplink and
    /// LLDPO ports (one transaction). VM flows are left alone. Unlike the
    /// original, the LLDPO name is cut to 10 characters like at setup.
    pub fn delete_uplink_and_flows(&self, uplink: &str) -> Result<(), OvsError> {
        check_ifname(uplink)?;
        let (ovs_veth, _) = veth::veth_names(uplink);
        let mut first: Option<OvsError> = None;
        if let Err(e) = self.run_ops(&self.br_ex, &flows::passthrough_glob_deletes()) {
            log::error!("ovs: delete_uplink_and_flows: flows: {e}");
            first.get_or_insert(e);
        }
        let on_br = self
            .runner
            .run_any(&vsctl::port_to_br_argv(uplink))
            .map(|o| {
                if o.success() {
                    o.stdout.trim().to_string()
                } else {
                    String::new()
                }
            });
        match on_br {
            Ok(br) if br == self.br_ex => {
                if let Err(e) =
                    self.vsctl(&vsctl::del_ports_argv(&self.br_ex, &[uplink, &ovs_veth]))
                {
                    log::error!("ovs: delete_uplink_and_flows: ports: {e}");
                    first.get_or_insert(e);
                }
            }
            Ok(br) if !br.is_empty() => {
                log::error!(
                    "ovs: port {uplink} added to wrong bridge {br}, given {}",
                    self.br_ex
                );
            }
            Ok(_) => {}
            Err(e) => {
                first.get_or_insert(e.into());
            }
        }
        let mut st = self.state.lock();
        if st.uplink.as_ref().map(|u| u.uplink.as_str()) == Some(uplink) {
            st.uplink = None;
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    // ---- VM ports: local VLAN ------------------------------------------

    /// Interface name and usable tag of `port_uuid` with two short
    /// `ovsdb-client` selects (see `vsctl::iface_query_argv`); an error only
    /// means the caller uses the `ovs-vsctl` path.
    fn quick_local_vlan(&self, port_uuid: &str) -> Result<Option<(String, Option<u16>)>, OvsError> {
        let parse_err = |detail| OvsError::Parse {
            cmd: "ovsdb-client transact (local VLAN lookup)".into(),
            detail,
        };
        let out = self.vsctl(&vsctl::iface_query_argv(port_uuid))?;
        let Some((name, id)) = vsctl::parse_iface_query(&out).map_err(parse_err)? else {
            return Ok(None);
        };
        let out = self.vsctl(&vsctl::port_tag_query_argv(&id))?;
        let tag = vsctl::parse_port_tag_query(&out).map_err(parse_err)?;
        Ok(Some((name, tag)))
    }

    fn find_iface(&self, port_uuid: &str) -> Result<Option<String>, OvsError> {
        let argv = vsctl::find_iface_argv(port_uuid);
        let out = self.vsctl(&argv)?;
        let names = vsctl::parse_iface_names(&out).map_err(|detail| OvsError::Parse {
            cmd: argv.join(" "),
            detail,
        })?;
        Ok(names.into_iter().next())
    }

    /// The local VLAN (Neutron's tag on the Port) of the interface whose
    /// `external_ids:iface-id` is `port_uuid`, now (2 `ovs-vsctl` calls).
    pub fn port_local_vlan(&self, port_uuid: &str) -> Result<u16, OvsError> {
        if !valid_port_id(port_uuid) {
            return Err(OvsError::BadPortId(port_uuid.to_string()));
        }
        let name = self
            .find_iface(port_uuid)?
            .ok_or_else(|| OvsError::UnknownPortName(port_uuid.to_string()))?;
        let out = self.vsctl(&vsctl::get_tag_argv(&name))?;
        vsctl::parse_tag(&out).ok_or(OvsError::InvalidPortVlan(name))
    }

    /// Like `port_local_vlan`, waiting up to `wait` for the interface and
    /// its tag to appear. The tag is awaited with `ovs-vsctl wait-until`
    /// (an OVSDB monitor: returns the moment Neutron sets it) in slices of
    /// at most 1 s so shutdown is noticed; the interface lookup is polled
    /// every `iface_poll` (100 ms) with shutdown-aware waits. Never waits
    /// longer than `wait` (the last slice is killed at the deadline).
    /// First two short `ovsdb-client` selects: when the port is already
    /// plugged and tagged (the usual case, and every port of a bulk resync)
    /// that is all (a few ms instead of two `ovs-vsctl` calls that each copy
    /// the whole port table: ~40 ms at 1000 ports, measured by scripts/bench).
    pub fn wait_port_local_vlan(
        &self,
        port_uuid: &str,
        wait: Duration,
        shutdown: &Shutdown,
    ) -> Result<u16, OvsError> {
        if !valid_port_id(port_uuid) {
            return Err(OvsError::BadPortId(port_uuid.to_string()));
        }
        // Fast path: the port is normally plugged and tagged by now.
        match self.quick_local_vlan(port_uuid) {
            Ok(Some((_, Some(tag)))) => return Ok(tag),
            Ok(_) => {}
            Err(e) => log::debug!("ovs: quick local VLAN lookup of {port_uuid}: {e}"),
        }
        let deadline = Instant::now() + wait;
        let name = loop {
            if let Some(n) = self.find_iface(port_uuid)? {
                break n;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OvsError::UnknownPortName(port_uuid.to_string()));
            }
            if shutdown.wait(left.min(self.opts.iface_poll)) {
                return Err(OvsError::Shutdown);
            }
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // one last non-blocking look
                let out = self.vsctl(&vsctl::get_tag_argv(&name))?;
                return vsctl::parse_tag(&out).ok_or(OvsError::InvalidPortVlan(name));
            }
            let slice = left.min(Duration::from_secs(1));
            let secs = slice.as_secs_f64().ceil().max(1.0) as u32;
            let argv = vsctl::wait_tag_argv(&name, secs);
            match self.runner.run_any_timeout(&argv, slice) {
                Ok(out) if out.success() => {
                    // The tag may be an invalid one (e.g. 4095 "dead VLAN").
                    if let Some(t) = vsctl::parse_tag(&out.stdout) {
                        return Ok(t);
                    }
                    if shutdown.wait(left.min(self.opts.iface_poll)) {
                        return Err(OvsError::Shutdown);
                    }
                }
                Ok(_) | Err(ExecError::Timeout { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if shutdown.is_set() {
                return Err(OvsError::Shutdown);
            }
        }
    }

    // ---- LocalVlan table + translation flows ---------------------------

    /// Patch ports for VM flows: known from setup / the last check, else
    /// looked up now.
    fn patch(&self, st: &mut State) -> Result<Patch, OvsError> {
        if let Some(p) = &st.patch {
            return Ok(p.clone());
        }
        let snap = self.snapshot(&[])?;
        let p = self.check_bridges(&snap)?;
        st.patch = Some(p.clone());
        Ok(p)
    }

    /// Apply a table change: at most one ovs-ofctl call per bridge. A
    /// removal whose match equals the new flow's is folded into the add
    /// (OVS replaces the entry in place: no gap in forwarding).
    fn apply(&self, st: &mut State, change: FlowChange) -> FlowUpdate {
        if change.is_empty() {
            return FlowUpdate::default();
        }
        let patch = match self.patch(st) {
            Ok(p) => p,
            Err(e) => {
                log::error!("ovs: cannot program VM flows: {e}");
                return FlowUpdate {
                    change,
                    error: Some(e.to_string()),
                };
            }
        };
        let mut errors = Vec::new();
        let sides: [(&str, MakeFlow, u32); 2] = [
            (&self.br_int, flows::vm_int_flow, patch.int_ofport),
            (&self.br_ex, flows::vm_ex_flow, patch.ex_ofport),
        ];
        for (br, make, ofport) in sides {
            let new = change.install.map(|(l, v)| make(ofport, l, v));
            let old = change.remove.map(|(l, v)| make(ofport, l, v));
            // New flow first, then the old one goes: a VLAN swap never
            // leaves the bridge without a translation flow.
            let mut ops = Vec::new();
            let replaced = old
                .as_ref()
                .filter(|o| !new.as_ref().is_some_and(|n| n.same_match(o)))
                .cloned();
            if let Some(new) = new {
                ops.push(FlowOp::Add(new));
            }
            if let Some(old) = replaced {
                ops.push(FlowOp::DeleteStrict(old));
            }
            if let Err(e) = self.run_ops(br, &ops) {
                log::error!("ovs: VM flows on {br} ({change:?}): {e}");
                if let Some(old) = old {
                    st.leftovers.push((br.to_string(), old));
                }
                errors.push(e.to_string());
            }
        }
        FlowUpdate {
            change,
            error: if errors.is_empty() {
                None
            } else {
                Some(errors.join("; "))
            },
        }
    }

    /// VM port up with the VDP VLAN the switch gave (`None` + reason when
    /// it gave none). The network's first valid VLAN installs
    /// `priority=4,in_port=<ext patch>,dl_vlan=<local>,actions=mod_vlan_vid:<vdp>,normal`
    /// on the external bridge and
    /// `priority=3,in_port=<int patch>,dl_vlan=<vdp>,actions=mod_vlan_vid:<local>,normal`
    /// on the integration bridge; further ports with the same VLAN only
    /// count; a different valid VLAN moves the flows to it. Err only when
    /// the table refuses (invalid local VLAN); OVS failures are in
    /// `FlowUpdate::error`.
    pub fn add_vm_port(
        &self,
        net_uuid: &str,
        local_vlan: u16,
        port_uuid: &str,
        vdp_vlan: Option<u16>,
        fail_reason: Option<String>,
    ) -> Result<FlowUpdate, OvsError> {
        let mut st = self.state.lock();
        let change = st
            .table
            .add_port(net_uuid, local_vlan, port_uuid, vdp_vlan, fail_reason)?;
        Ok(self.apply(&mut st, change))
    }

    /// VM port down. Flows go with the network's last port (or when no port
    /// left holds a valid VLAN; or they move to the one VLAN the remaining
    /// ports agree on). Err (nothing changed) for an unknown network or
    /// port; the error texts are the original's fail reasons.
    pub fn remove_vm_port(&self, net_uuid: &str, port_uuid: &str) -> Result<PortRemoval, OvsError> {
        let mut st = self.state.lock();
        let r = st.table.remove_port(net_uuid, port_uuid)?;
        let flows = self.apply(&mut st, r.change);
        Ok(PortRemoval {
            local_vlan: r.local_vlan,
            port_vdp_vlan: r.port_vdp_vlan,
            net_vdp_vlan: r.net_vdp_vlan,
            net_removed: r.net_removed,
            flows,
        })
    }

    /// The switch changed one port's VDP VLAN (`vdp_vlan_change`): a new
    /// valid VLAN replaces the network's flows at once (old removed, new
    /// installed); `None` removes them only when no port of the network
    /// holds a valid VLAN any more.
    pub fn set_port_vdp_vlan(
        &self,
        net_uuid: &str,
        port_uuid: &str,
        vdp_vlan: Option<u16>,
        fail_reason: Option<String>,
    ) -> Result<VlanChange, OvsError> {
        let mut st = self.state.lock();
        let (local_vlan, change) =
            st.table
                .set_port_vlan(net_uuid, port_uuid, vdp_vlan, fail_reason)?;
        let flows = self.apply(&mut st, change);
        Ok(VlanChange { local_vlan, flows })
    }

    /// After a restart (`pop_local_cache`): remember a port and its VLANs
    /// without touching flows (they are still in OVS; `check_flows` puts
    /// them back if not).
    pub fn restore_vm_port(
        &self,
        net_uuid: &str,
        local_vlan: u16,
        port_uuid: &str,
        vdp_vlan: Option<u16>,
    ) {
        self.state
            .lock()
            .table
            .restore_port(net_uuid, local_vlan, port_uuid, vdp_vlan);
    }

    /// `get_lvid_vdp_vlan`: the network's local VLAN and the port's VDP VLAN.
    pub fn port_vlans(&self, net_uuid: &str, port_uuid: &str) -> Option<(u16, Option<u16>)> {
        let st = self.state.lock();
        let lvm = st.table.get(net_uuid)?;
        let p = lvm.ports.get(port_uuid)?;
        Some((lvm.local_vlan, p.vdp_vlan))
    }

    /// The network's installed VDP VLAN (`late_binding_vlan`).
    pub fn net_vdp_vlan(&self, net_uuid: &str) -> Option<u16> {
        self.state.lock().table.get(net_uuid)?.flow_vlan
    }

    /// Snapshot of the LocalVlan table for `status`.
    pub fn local_vlans(&self) -> Vec<LocalVlanInfo> {
        let st = self.state.lock();
        st.table
            .iter()
            .map(|(net, l)| LocalVlanInfo {
                net_uuid: net.clone(),
                local_vlan: l.local_vlan,
                vdp_vlan: l.flow_vlan,
                ports: l.ports.values().cloned().collect(),
            })
            .collect()
    }

    /// The running ovs-vswitchd's pid, from its pid file (read directly:
    /// no process). `None` when there is no pid file, it is unreadable or
    /// malformed, or the process is gone (a zombie counts as gone).
    pub fn vswitchd_pid(&self) -> Option<u32> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(self.opts.run_dir.join("ovs-vswitchd.pid"))
            .ok()?
            .take(32)
            .read_to_string(&mut text)
            .ok()?;
        let pid: u32 = text.trim().parse().ok().filter(|p| *p > 0)?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // State is the field after the parenthesised command name.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        (state != "Z" && state != "X").then_some(pid)
    }

    // ---- flow check ------------------------------------------------------

    /// One flow-check round (the original's 60 s `_flow_check_handler`,
    /// extended): re-read ofports (they change when ports are re-added),
    /// put the uplink/LLDPO ports back into the external bridge if they
    /// vanished, and make both bridges hold exactly our desired flows:
    /// the 4 pass-through flows (stale NCB LLDP/ECP flows removed) and the
    /// translation flows of every network in the table (our flows of those
    /// networks with old ofports or old VLANs removed, plus deletions that
    /// failed earlier). Flows of networks the table does not know (e.g.
    /// before the bulk resync after a restart) are left alone. Cost: one
    /// `ovs-vsctl`, one dump per bridge, at most one fix per bridge.
    pub fn check_flows(&self) -> Result<FlowCheck, OvsError> {
        let mut st = self.state.lock();
        if st.uplink.is_none() && st.table.is_empty() && st.leftovers.is_empty() {
            return Ok(FlowCheck::default());
        }
        let mut report = FlowCheck::default();
        let names: Vec<String> = st
            .uplink
            .as_ref()
            .map(|u| vec![u.uplink.clone(), u.ovs_veth.clone()])
            .unwrap_or_default();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let snap = self.snapshot(&name_refs)?;
        let patch = self.check_bridges(&snap)?;
        if st.patch.as_ref() != Some(&patch) {
            log::warn!("ovs: patch ports changed: {:?} -> {patch:?}", st.patch);
        }
        st.patch = Some(patch.clone());
        let mut ex_want = Vec::new();
        let mut first = None;
        let mut has_uplink = false;
        if let Some(u) = st.uplink.clone() {
            match self.ensure_ports(&snap, &u.uplink, &u.ovs_veth, false) {
                Ok((up, lo, readded)) => {
                    if readded {
                        log::warn!(
                            "ovs: uplink ports were missing from {}; put back",
                            self.br_ex
                        );
                    }
                    report.ports_readded = readded;
                    if let Some(cur) = st.uplink.as_mut() {
                        cur.uplink_ofport = up;
                        cur.ovs_veth_ofport = lo;
                        cur.ex_patch = patch.ex.clone();
                        cur.ex_patch_ofport = patch.ex_ofport;
                        cur.int_patch = patch.int.clone();
                        cur.int_patch_ofport = patch.int_ofport;
                    }
                    ex_want.extend(flows::passthrough_flows(lo, up));
                    has_uplink = true;
                }
                Err(e) => {
                    // Pass-through flows cannot be right without the ports;
                    // the VM flows are still checked.
                    log::error!("ovs: flow check: uplink ports of {}: {e}", u.uplink);
                    first = Some(e);
                }
            }
        }
        let installed = st.table.installed();
        let locals: Vec<u16> = st.table.iter().map(|(_, l)| l.local_vlan).collect();
        let mut int_want = Vec::new();
        for (_, l, v) in &installed {
            ex_want.push(flows::vm_ex_flow(patch.ex_ofport, *l, *v));
            int_want.push(flows::vm_int_flow(patch.int_ofport, *l, *v));
        }
        let leftovers = st.leftovers.clone();
        let is_leftover =
            |br: &str, f: &Flow| leftovers.iter().any(|(b, l)| b == br && l.same_match(f));

        let ex_present = self.dump_flows(&self.br_ex, None)?;
        let ex_ops = flows::reconcile(&ex_present, &ex_want, |f| {
            (has_uplink && flows::is_passthrough_class(f))
                || (f.cookie == FLOW_COOKIE
                    && f.priority == flows::VM_EX_PRIO
                    && f.get("dl_vlan")
                        .and_then(|v| v.parse::<u16>().ok())
                        .is_some_and(|v| locals.contains(&v)))
                || is_leftover(&self.br_ex, f)
        });
        let int_present = self.dump_flows(&self.br_int, Some(&ofctl::our_cookie_filter()))?;
        let int_ops = flows::reconcile(&int_present, &int_want, |f| {
            (f.cookie == FLOW_COOKIE
                && f.priority == flows::VM_INT_PRIO
                && flows::mod_vlan_target(f).is_some_and(|v| locals.contains(&v)))
                || is_leftover(&self.br_int, f)
        });
        for (br, ops) in [(&self.br_ex, &ex_ops), (&self.br_int, &int_ops)] {
            if ops.is_empty() {
                st.leftovers.retain(|(b, _)| b != br.as_str());
                continue;
            }
            log::warn!(
                "ovs: flow check on {br}: {} flow-mods: {:?}",
                ops.len(),
                ops
            );
            match self.run_ops(br, ops) {
                Ok(()) => {
                    st.leftovers.retain(|(b, _)| b != br.as_str());
                    let (a, r) = count_ops(ops);
                    report.restored += a;
                    report.removed += r;
                }
                Err(e) => {
                    log::error!("ovs: flow check on {br}: {e}");
                    for op in ops.iter() {
                        if let FlowOp::DeleteStrict(f) = op {
                            if !st.leftovers.iter().any(|(b, l)| b == br.as_str() && l == f) {
                                st.leftovers.push((br.to_string(), f.clone()));
                            }
                        }
                    }
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

fn count_ops(ops: &[FlowOp]) -> (usize, usize) {
    let added = ops.iter().filter(|o| matches!(o, FlowOp::Add(_))).count();
    (added, ops.len() - added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_reason_texts() {
        let e = OvsError::BridgesMissing {
            bridges: vec!["br-int".into()],
            br_int: "br-int".into(),
            br_ex: "br-ethd".into(),
        };
        assert_eq!(
            e.to_string(),
            "Integ or Physical Bridge not created by Openstack. Bridge_list: ['br-int'] Integ Br: br-int Ext Br: br-ethd"
        );
        let e = OvsError::PatchPortsMissing {
            ex_peer: None,
            int_peer: None,
        };
        assert_eq!(
            e.to_string(),
            "Integ or Physical Patch/Veth Ports not configured by Openstack. Ext Peer: None Integ Peer: None"
        );
        assert_eq!(
            OvsError::PeerOfport { phy: -1, int: 1 }.to_string(),
            "int or phy peer OF Port not detected on Int or Phy Bridge. Phy Peer: -1 Int Peer: 1"
        );
        assert_eq!(
            OvsError::UnknownPortName("u".into()).to_string(),
            "Unknown portname for uuid u"
        );
    }

    #[test]
    fn port_ids() {
        assert!(valid_port_id("11111111-2222-3333-4444-555555555555"));
        assert!(!valid_port_id("x,y"));
        assert!(!valid_port_id("a b"));
        assert!(!valid_port_id("-x"));
        assert!(!valid_port_id(""));
    }
}
