//! The LocalVlan table: per network, its local VLAN (Neutron's tag on
//! br-int), the VM ports with the VDP VLAN the switch gave each and its
//! fail reason, a refcount per VDP VLAN, and the VDP VLAN whose translation
//! flows are installed (the original's `late_binding_vlan`).
//!
//! Every mutation returns a [`FlowChange`]: the (local, VDP) pair whose
//! flows must go and the pair whose flows must come. The driver applies it.
//! Rules (from the original's `port_up_segment_mode`,
//! `port_down_segment_mode`, `vdp_vlan_change_internal`):
//! - the first valid VDP VLAN of a network installs flows;
//! - a newer valid VLAN from the switch (port up or VLAN change) replaces
//!   the flows at once (the other ports follow on their own refresh);
//! - a VLAN lost (`None`) removes the flows only when no port of the
//!   network holds a valid VLAN any more;
//! - a port leaving: last port -> flows and network gone; no valid VLAN
//!   left -> flows gone; exactly one VLAN left among the others and it
//!   differs from the installed one -> flows switch to it.
//!
//! Owns the table; pure logic, no commands.

use std::collections::BTreeMap;

/// A VLAN the switch or Neutron may use (1..=4094); anything else is "none".
pub(crate) fn valid_vlan(v: Option<u16>) -> Option<u16> {
    v.filter(|v| (1..=4094).contains(v))
}

/// One VM port of a network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortVlan {
    pub port_uuid: String,
    pub vdp_vlan: Option<u16>,
    pub fail_reason: Option<String>,
}

/// One network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct LocalVlan {
    pub local_vlan: u16,
    pub ports: BTreeMap<String, PortVlan>,
    /// VDP VLAN -> number of ports holding it.
    vlan_refs: BTreeMap<u16, u32>,
    /// VDP VLAN whose flows are installed (`late_binding_vlan`).
    pub flow_vlan: Option<u16>,
}

impl LocalVlan {
    fn new(local_vlan: u16) -> LocalVlan {
        LocalVlan {
            local_vlan,
            ..Default::default()
        }
    }

    fn flows(&self) -> Option<(u16, u16)> {
        self.flow_vlan.map(|v| (self.local_vlan, v))
    }

    fn incr(&mut self, v: Option<u16>) {
        if let Some(v) = valid_vlan(v) {
            *self.vlan_refs.entry(v).or_insert(0) += 1;
        }
    }

    fn decr(&mut self, v: Option<u16>) {
        if let Some(v) = valid_vlan(v) {
            if let Some(n) = self.vlan_refs.get_mut(&v) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.vlan_refs.remove(&v);
                }
            }
        }
    }

    /// Some port holds a valid VDP VLAN.
    pub(crate) fn any_valid_vlan(&self) -> bool {
        !self.vlan_refs.is_empty()
    }

    /// The one VDP VLAN all VLAN-holding ports agree on.
    pub(crate) fn consistent_vlan(&self) -> Option<u16> {
        if self.vlan_refs.len() == 1 {
            self.vlan_refs.keys().next().copied()
        } else {
            None
        }
    }

    /// Set (or reset) one port's VLAN and fail reason, keeping refcounts.
    fn set_port(&mut self, port_uuid: &str, vdp_vlan: Option<u16>, fail_reason: Option<String>) {
        let old = self.ports.get(port_uuid).map(|p| p.vdp_vlan);
        if let Some(old) = old {
            self.decr(old);
        }
        self.incr(vdp_vlan);
        self.ports.insert(
            port_uuid.to_string(),
            PortVlan {
                port_uuid: port_uuid.to_string(),
                vdp_vlan,
                fail_reason,
            },
        );
    }
}

/// Flows to remove and to install, as (local VLAN, VDP VLAN) pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowChange {
    pub remove: Option<(u16, u16)>,
    pub install: Option<(u16, u16)>,
}

impl FlowChange {
    fn between(before: Option<(u16, u16)>, after: Option<(u16, u16)>) -> FlowChange {
        if before == after {
            FlowChange::default()
        } else {
            FlowChange {
                remove: before,
                install: after,
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.remove.is_none() && self.install.is_none()
    }
}

/// What `remove_port` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemovedPort {
    pub local_vlan: u16,
    /// The VDP VLAN this port held (updated by VLAN changes).
    pub port_vdp_vlan: Option<u16>,
    /// The network's installed VDP VLAN before the removal (the VLAN the
    /// original sends in the deassociation).
    pub net_vdp_vlan: Option<u16>,
    /// The network had no port left and was dropped.
    pub net_removed: bool,
    pub change: FlowChange,
}

/// Why a table operation could not be done. The texts are the original's
/// fail reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableError {
    UnknownNetwork(String),
    UnknownPort(String),
    InvalidLocalVlan(u16),
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::UnknownNetwork(_) => {
                f.write_str("Local VLAN Map not available in port_down")
            }
            TableError::UnknownPort(p) => write!(f, "port_uuid {p} not in cache for port_down"),
            TableError::InvalidLocalVlan(v) => write!(f, "Invalid OVS VLAN {v}"),
        }
    }
}

impl std::error::Error for TableError {}

/// net_uuid -> LocalVlan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LocalVlanTable {
    nets: BTreeMap<String, LocalVlan>,
}

impl LocalVlanTable {
    #[cfg(test)]
    pub(crate) fn new() -> LocalVlanTable {
        LocalVlanTable::default()
    }

    #[cfg(test)]
    pub(crate) fn get(&self, net_uuid: &str) -> Option<&LocalVlan> {
        self.nets.get(net_uuid)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &LocalVlan)> {
        self.nets.iter()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Every (net, local VLAN, VDP VLAN) whose flows should be installed.
    pub(crate) fn installed(&self) -> Vec<(String, u16, u16)> {
        self.nets
            .iter()
            .filter_map(|(n, l)| l.flows().map(|(lv, v)| (n.clone(), lv, v)))
            .collect()
    }

    /// Forget everything (uplink torn down); returns the flows that were installed.
    pub(crate) fn clear(&mut self) -> Vec<(u16, u16)> {
        let out = self.nets.values().filter_map(LocalVlan::flows).collect();
        self.nets.clear();
        out
    }

    /// VM port up with the VLAN the switch gave (or none, with a reason).
    /// A repeated call for the same port updates it. A changed local VLAN
    /// (Neutron renumbered the network) moves the flows to it.
    pub(crate) fn add_port(
        &mut self,
        net_uuid: &str,
        local_vlan: u16,
        port_uuid: &str,
        vdp_vlan: Option<u16>,
        fail_reason: Option<String>,
    ) -> Result<FlowChange, TableError> {
        if valid_vlan(Some(local_vlan)).is_none() {
            return Err(TableError::InvalidLocalVlan(local_vlan));
        }
        let vdp_vlan = valid_vlan(vdp_vlan);
        let lvm = self
            .nets
            .entry(net_uuid.to_string())
            .or_insert_with(|| LocalVlan::new(local_vlan));
        let before = lvm.flows();
        lvm.local_vlan = local_vlan;
        lvm.set_port(port_uuid, vdp_vlan, fail_reason);
        if vdp_vlan.is_some() {
            lvm.flow_vlan = vdp_vlan;
        }
        Ok(FlowChange::between(before, lvm.flows()))
    }

    /// After a restart (`pop_local_cache`): remember a port without touching
    /// flows; a valid VDP VLAN is taken as installed.
    pub(crate) fn restore_port(
        &mut self,
        net_uuid: &str,
        local_vlan: u16,
        port_uuid: &str,
        vdp_vlan: Option<u16>,
    ) {
        if valid_vlan(Some(local_vlan)).is_none() {
            return;
        }
        let vdp_vlan = valid_vlan(vdp_vlan);
        let lvm = self
            .nets
            .entry(net_uuid.to_string())
            .or_insert_with(|| LocalVlan::new(local_vlan));
        lvm.local_vlan = local_vlan;
        lvm.set_port(port_uuid, vdp_vlan, None);
        if vdp_vlan.is_some() {
            lvm.flow_vlan = vdp_vlan;
        }
    }

    /// VM port down.
    pub(crate) fn remove_port(
        &mut self,
        net_uuid: &str,
        port_uuid: &str,
    ) -> Result<RemovedPort, TableError> {
        let lvm = self
            .nets
            .get_mut(net_uuid)
            .ok_or_else(|| TableError::UnknownNetwork(net_uuid.to_string()))?;
        let port = lvm
            .ports
            .remove(port_uuid)
            .ok_or_else(|| TableError::UnknownPort(port_uuid.to_string()))?;
        let before = lvm.flows();
        let net_vdp_vlan = lvm.flow_vlan;
        lvm.decr(port.vdp_vlan);
        let local_vlan = lvm.local_vlan;
        let net_removed = lvm.ports.is_empty();
        if net_removed {
            self.nets.remove(net_uuid);
            return Ok(RemovedPort {
                local_vlan,
                port_vdp_vlan: port.vdp_vlan,
                net_vdp_vlan,
                net_removed,
                change: FlowChange::between(before, None),
            });
        }
        if !lvm.any_valid_vlan() {
            lvm.flow_vlan = None;
        } else if let Some(other) = lvm.consistent_vlan() {
            lvm.flow_vlan = Some(other);
        }
        Ok(RemovedPort {
            local_vlan,
            port_vdp_vlan: port.vdp_vlan,
            net_vdp_vlan,
            net_removed,
            change: FlowChange::between(before, lvm.flows()),
        })
    }

    /// The switch changed (or took away) one port's VLAN. Returns the
    /// network's local VLAN and the flow change.
    pub(crate) fn set_port_vlan(
        &mut self,
        net_uuid: &str,
        port_uuid: &str,
        vdp_vlan: Option<u16>,
        fail_reason: Option<String>,
    ) -> Result<(u16, FlowChange), TableError> {
        let lvm = self
            .nets
            .get_mut(net_uuid)
            .ok_or_else(|| TableError::UnknownNetwork(net_uuid.to_string()))?;
        if !lvm.ports.contains_key(port_uuid) {
            return Err(TableError::UnknownPort(port_uuid.to_string()));
        }
        let vdp_vlan = valid_vlan(vdp_vlan);
        let before = lvm.flows();
        lvm.set_port(port_uuid, vdp_vlan, fail_reason);
        match vdp_vlan {
            Some(v) => lvm.flow_vlan = Some(v),
            None => {
                if !lvm.any_valid_vlan() {
                    lvm.flow_vlan = None;
                }
            }
        }
        Ok((lvm.local_vlan, FlowChange::between(before, lvm.flows())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "net-a";

    #[test]
    fn first_port_installs_second_shares() {
        let mut t = LocalVlanTable::new();
        let c = t.add_port(N, 5, "p1", Some(3003), None).unwrap();
        assert_eq!(
            c,
            FlowChange {
                remove: None,
                install: Some((5, 3003))
            }
        );
        let c = t.add_port(N, 5, "p2", Some(3003), None).unwrap();
        assert!(c.is_empty());
        // repeated event: harmless
        assert!(t.add_port(N, 5, "p2", Some(3003), None).unwrap().is_empty());
        let r = t.remove_port(N, "p1").unwrap();
        assert!(r.change.is_empty());
        assert!(!r.net_removed);
        assert_eq!(r.port_vdp_vlan, Some(3003));
        let r = t.remove_port(N, "p2").unwrap();
        assert!(r.net_removed);
        assert_eq!(
            r.change,
            FlowChange {
                remove: Some((5, 3003)),
                install: None
            }
        );
        assert!(t.is_empty());
        assert_eq!(
            t.remove_port(N, "p2").unwrap_err().to_string(),
            "Local VLAN Map not available in port_down"
        );
    }

    #[test]
    fn failed_port_no_flows() {
        let mut t = LocalVlanTable::new();
        let c = t
            .add_port(N, 5, "p1", None, Some("no VLAN".into()))
            .unwrap();
        assert!(c.is_empty());
        assert_eq!(
            t.get(N).unwrap().ports["p1"].fail_reason.as_deref(),
            Some("no VLAN")
        );
        let c = t.add_port(N, 5, "p2", Some(3003), None).unwrap();
        assert_eq!(c.install, Some((5, 3003)));
        // the VLAN-holding port leaves: no valid VLAN left -> flows go
        let r = t.remove_port(N, "p2").unwrap();
        assert_eq!(
            r.change,
            FlowChange {
                remove: Some((5, 3003)),
                install: None
            }
        );
        assert!(!r.net_removed);
        assert_eq!(
            t.remove_port(N, "px").unwrap_err().to_string(),
            "port_uuid px not in cache for port_down"
        );
    }

    #[test]
    fn vlan_change_and_loss() {
        let mut t = LocalVlanTable::new();
        t.add_port(N, 5, "p1", Some(3003), None).unwrap();
        t.add_port(N, 5, "p2", Some(3003), None).unwrap();
        let (lv, c) = t.set_port_vlan(N, "p1", Some(3004), None).unwrap();
        assert_eq!(lv, 5);
        assert_eq!(
            c,
            FlowChange {
                remove: Some((5, 3003)),
                install: Some((5, 3004))
            }
        );
        // p2 follows: no change
        assert!(t
            .set_port_vlan(N, "p2", Some(3004), None)
            .unwrap()
            .1
            .is_empty());
        // p1 loses its VLAN; p2 still holds one -> flows stay
        assert!(t
            .set_port_vlan(N, "p1", None, Some("gone".into()))
            .unwrap()
            .1
            .is_empty());
        // p2 loses it too -> flows go
        let (_, c) = t.set_port_vlan(N, "p2", None, None).unwrap();
        assert_eq!(
            c,
            FlowChange {
                remove: Some((5, 3004)),
                install: None
            }
        );
        // comes back
        let (_, c) = t.set_port_vlan(N, "p2", Some(3005), None).unwrap();
        assert_eq!(c.install, Some((5, 3005)));
    }

    #[test]
    fn leaving_port_switches_to_remaining_vlan() {
        let mut t = LocalVlanTable::new();
        t.add_port(N, 5, "p1", Some(3003), None).unwrap();
        t.add_port(N, 5, "p2", Some(3003), None).unwrap();
        t.set_port_vlan(N, "p1", Some(3004), None).unwrap();
        // p1 (3004, installed) leaves; p2 still on 3003 -> back to 3003
        let r = t.remove_port(N, "p1").unwrap();
        assert_eq!(r.net_vdp_vlan, Some(3004));
        assert_eq!(
            r.change,
            FlowChange {
                remove: Some((5, 3004)),
                install: Some((5, 3003))
            }
        );
    }

    #[test]
    fn restore_and_local_change() {
        let mut t = LocalVlanTable::new();
        t.restore_port(N, 7, "p1", Some(3003));
        assert_eq!(t.installed(), vec![(N.to_string(), 7, 3003)]);
        let c = t.add_port(N, 8, "p2", Some(3003), None).unwrap();
        assert_eq!(
            c,
            FlowChange {
                remove: Some((7, 3003)),
                install: Some((8, 3003))
            }
        );
        assert!(t.add_port(N, 0, "p3", Some(3003), None).is_err());
        assert_eq!(t.clear(), vec![(8, 3003)]);
    }
}
