//! Topology discovery: the LLDP neighbour facts of watched interfaces, turned
//! into `save_topo_disc_params` reports (the original's `topo_disc`): every
//! physical, operationally up interface from start-up (`cfg_physical`), the
//! uplink through its lldpad-side veth; an interface no longer watched gets
//! one empty report (the controller drops its row); a report the
//! controller refused, or that failed, is sent again the next round.
//!
//! Owns: the per-interface state (last neighbour facts, bond, unchanged-round
//! counter). Calls: `lldpad::lldptool` through `exec::Runner`, and
//! `uplink::SysNet` for bonds. The caller (host driver) runs `poll()` every
//! `intervals.topo_disc_s` and sends what it returns.

use crate::exec::Runner;
use crate::lldpad::lldptool::{self, NeighborTlvs};
use crate::model::TopoReport;
use crate::uplink::SysNet;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A report is sent when nothing changed for more than this many rounds
/// (the original's `TOPO_DISC_SEND_THRESHOLD`: the unchanged counter must
/// exceed 4, so the 6th unchanged round after a report sends again).
pub const TOPO_DISC_SEND_THRESHOLD: u32 = 4;

#[derive(Debug)]
struct Watched {
    phy_interface: String,
    lldp_cfgd: bool,
    /// Last facts seen (the original starts from all-null / cfgd false).
    facts: Facts,
    bond_interface: Option<String>,
    bond_member_ports: Option<String>,
    send_cnt: u32,
    /// The last report could not be delivered: send again next round.
    retry: bool,
    /// No longer watched (`uncfg_intf`): one empty report tells the
    /// controller to drop its row, resent until delivered, then the entry
    /// goes.
    leaving: bool,
    /// ... and that empty report was handed out.
    left_reported: bool,
    /// A report of it was ever handed out (else it leaves silently: the
    /// controller holds no row for it).
    ever_reported: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Facts {
    evb_cfgd: bool,
    evb_mode: Option<String>,
    mgmt_addr: Option<String>,
    system_desc: Option<String>,
    system_name: Option<String>,
    port: Option<String>,
    chassis_id_mac: Option<String>,
    port_id_mac: Option<String>,
}

impl From<&NeighborTlvs> for Facts {
    fn from(t: &NeighborTlvs) -> Facts {
        Facts {
            evb_cfgd: t.evb_cfgd,
            evb_mode: t.evb_mode.clone(),
            mgmt_addr: t.mgmt_addr.clone(),
            system_desc: t.system_desc.clone(),
            system_name: t.system_name.clone(),
            port: t.port_desc.clone(),
            chassis_id_mac: t.chassis_id_mac.clone(),
            port_id_mac: t.port_id_mac.clone(),
        }
    }
}

/// Watches interfaces' LLDP neighbours.
pub struct TopoDisc {
    runner: Arc<Runner>,
    sysnet: SysNet,
    watched: Mutex<BTreeMap<String, Watched>>,
}

impl TopoDisc {
    pub fn new(runner: Arc<Runner>, sysnet: SysNet) -> TopoDisc {
        TopoDisc {
            runner,
            sysnet,
            watched: Mutex::new(BTreeMap::new()),
        }
    }

    /// Start watching `intf` (the interface lldpad runs LLDP on, e.g. the
    /// lldpad-side veth) on behalf of `phy_interface` (the uplink). LLDP is
    /// enabled on it as the original did; if that fails, `poll()` retries.
    /// Re-configuring an interface starts it afresh.
    pub fn cfg_intf(&self, intf: &str, phy_interface: &str) {
        let lldp_cfgd = match lldptool::enable_lldp(&self.runner, intf) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("topology: cannot enable LLDP on {intf}: {e}");
                false
            }
        };
        self.watched.lock().insert(
            intf.to_string(),
            Watched {
                phy_interface: phy_interface.to_string(),
                lldp_cfgd,
                facts: Facts::default(),
                bond_interface: None,
                bond_member_ports: None,
                send_cnt: 0,
                retry: false,
                leaving: false,
                left_reported: false,
                ever_reported: false,
            },
        );
    }

    /// Watch every physical, operationally up interface (the original's
    /// start-up: LLDP enabled on each) except those `skip` names (the
    /// uplink, whose LLDP lldpad speaks on the veth) and those already
    /// watched. Each is its own physical interface.
    pub fn cfg_physical(&self, skip: &dyn Fn(&str) -> bool) {
        for n in self.sysnet.physical_up() {
            let known = self.watched.lock().get(&n).is_some_and(|w| !w.leaving);
            if known || skip(&n) {
                continue;
            }
            log::info!("topology: watching {n}");
            self.cfg_intf(&n, &n);
        }
    }

    /// Stop watching `intf` (LLDP is left as it is). The next round sends
    /// one empty report for it (the controller then drops its row), again
    /// until it is delivered.
    pub fn uncfg_intf(&self, intf: &str) {
        if let Some(w) = self.watched.lock().get_mut(intf) {
            w.leaving = true;
            w.left_reported = false;
            w.retry = false;
        }
    }

    /// The interfaces being watched.
    pub fn watched(&self) -> Vec<String> {
        self.watched
            .lock()
            .iter()
            .filter(|(_, w)| !w.leaving)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The caller could not deliver the last report of `intf`: the next
    /// round reports it again (the original's `db_retry_status`).
    pub fn mark_send_failed(&self, intf: &str) {
        if let Some(w) = self.watched.lock().get_mut(intf) {
            w.retry = true;
        }
    }

    /// One discovery round (`_periodic_task_int`). Per watched interface:
    /// LLDP not enabled yet → try again, no report. Otherwise read the bond
    /// of the physical interface and the neighbour's TLVs; report when a
    /// fact or the bond changed, a previous report failed, or the unchanged
    /// counter exceeds `TOPO_DISC_SEND_THRESHOLD`. A failed lldptool read
    /// counts as "no TLVs" (as in the original).
    pub fn poll(&self) -> Vec<TopoReport> {
        let mut reports = Vec::new();
        {
            let mut guard = self.watched.lock();
            guard.retain(|intf, w| {
                if !w.leaving {
                    return true;
                }
                if !w.ever_reported || (w.left_reported && !w.retry) {
                    return false;
                }
                w.left_reported = true;
                w.retry = false;
                reports.push(TopoReport {
                    protocol_interface: intf.clone(),
                    phy_interface: w.phy_interface.clone(),
                    ..TopoReport::default()
                });
                true
            });
        }
        let names = self.watched();
        for intf in names {
            let (lldp_cfgd, phy) = match self.watched.lock().get(&intf) {
                Some(w) => (w.lldp_cfgd, w.phy_interface.clone()),
                None => continue,
            };
            if !lldp_cfgd {
                let ok = match lldptool::enable_lldp(&self.runner, &intf) {
                    Ok(()) => true,
                    Err(e) => {
                        log::warn!("topology: cannot enable LLDP on {intf}: {e}");
                        false
                    }
                };
                if let Some(w) = self.watched.lock().get_mut(&intf) {
                    w.lldp_cfgd = ok;
                }
                continue;
            }
            let bond = if self.sysnet.is_bond(&phy) {
                Some(phy.clone())
            } else {
                self.sysnet.bond_of(&phy)
            };
            let members = bond.as_deref().and_then(|b| self.sysnet.bond_members(b));
            let tlvs = match lldptool::get_tlvs(&self.runner, &intf) {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("topology: reading the neighbour of {intf}: {e}");
                    NeighborTlvs::default()
                }
            };
            let facts = Facts::from(&tlvs);
            let mut guard = self.watched.lock();
            let Some(w) = guard.get_mut(&intf).filter(|w| !w.leaving) else {
                continue;
            };
            let bond_change = bond != w.bond_interface;
            if bond_change {
                w.bond_interface = bond;
                w.bond_member_ports = members;
            }
            let changed = facts != w.facts;
            w.facts = facts;
            if changed || bond_change || w.retry || w.send_cnt > TOPO_DISC_SEND_THRESHOLD {
                w.send_cnt = 0;
                w.retry = false;
                w.ever_reported = true;
                reports.push(report_of(&intf, w));
            } else {
                w.send_cnt += 1;
            }
        }
        reports
    }
}

fn report_of(intf: &str, w: &Watched) -> TopoReport {
    let f = &w.facts;
    TopoReport {
        protocol_interface: intf.to_string(),
        phy_interface: w.phy_interface.clone(),
        remote_evb_cfgd: f.evb_cfgd,
        remote_evb_mode: f.evb_mode.clone(),
        remote_mgmt_addr: f.mgmt_addr.clone(),
        remote_system_desc: f.system_desc.clone(),
        remote_system_name: f.system_name.clone(),
        remote_port: f.port.clone(),
        remote_chassis_id_mac: f.chassis_id_mac.clone(),
        remote_port_id_mac: f.port_id_mac.clone(),
        bond_interface: w.bond_interface.clone(),
        bond_member_ports: w.bond_member_ports.clone(),
    }
}
