//! Domain values shared by every module: validated VM ports, port status,
//! results reported to the controller, uplink records, the C `ctime()`
//! time format of the controller protocol (docs/protocol.md), and the
//! vocabulary the drivers and the manager share (a detection step, a VSI
//! change, a VSI's status, a topology report), so no driver imports the
//! manager.
//!
//! Owns no state and calls nothing; every other module may use it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

/// VM port status as sent by the controller (`up`/`down`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortStatus {
    Up,
    Down,
}

impl PortStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PortStatus::Up => "up",
            PortStatus::Down => "down",
        }
    }
    /// The failure result matching this status (`CREATE:FAIL` for up).
    pub fn fail_result(self) -> VmResult {
        match self {
            PortStatus::Up => VmResult::CreateFail,
            PortStatus::Down => VmResult::DeleteFail,
        }
    }
}

impl fmt::Display for PortStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Result of a VM port operation as reported by `update_vm_result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VmResult {
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "CREATE:FAIL")]
    CreateFail,
    #[serde(rename = "DELETE:FAIL")]
    DeleteFail,
}

impl VmResult {
    pub fn as_str(self) -> &'static str {
        match self {
            VmResult::Success => "SUCCESS",
            VmResult::CreateFail => "CREATE:FAIL",
            VmResult::DeleteFail => "DELETE:FAIL",
        }
    }
}

impl fmt::Display for VmResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Cisco OUI data of a VM (only `oui_id: "cisco"` is sent to the switch).
/// Every field has passed `validate` before it is stored here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Oui {
    pub oui_id: String,
    pub vm_name: Option<String>,
    /// As the controller sent it (dashed UUID or 32 hex digits).
    pub vm_uuid: Option<String>,
    pub ip_addr: Option<Ipv4Addr>,
    pub gw_mac: Option<String>,
    pub fwd_mod: Option<String>,
}

impl Oui {
    pub fn is_cisco(&self) -> bool {
        self.oui_id == "cisco"
    }
}

/// One VM port (vNIC) as announced by the controller, validated
/// (docs/protocol.md). MACs are stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPort {
    pub port_uuid: String,
    pub vm_mac: String,
    pub net_uuid: String,
    pub segmentation_id: u32,
    pub status: PortStatus,
    pub host: Option<String>,
    pub oui: Option<Oui>,
    /// Only in bulk entries whose status is down, when the controller knows it.
    pub local_vlan: Option<u16>,
    /// Only in bulk entries whose status is down, when the controller knows it.
    pub vdp_vlan: Option<u16>,
}

/// Phase of a `vm_migration` event (docs/protocol.md, live migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPhase {
    /// Destination: the port is about to arrive (inactive binding).
    Arriving,
    /// Destination: the binding was activated.
    Arrived,
    /// Destination: the migration was aborted.
    Aborted,
    /// Source: the port left this host.
    Left,
}

impl MigrationPhase {
    /// The phase as the controller names it.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::Arriving => "arriving",
            MigrationPhase::Arrived => "arrived",
            MigrationPhase::Aborted => "aborted",
            MigrationPhase::Left => "left",
        }
    }
    /// The `vm_info` status the phase implies (up on arrival, down otherwise).
    pub fn status(self) -> PortStatus {
        match self {
            MigrationPhase::Arriving | MigrationPhase::Arrived => PortStatus::Up,
            MigrationPhase::Aborted | MigrationPhase::Left => PortStatus::Down,
        }
    }
}

/// The uplink record stored at the controller (`save_uplink`,
/// `request_uplink_info`, `uplink` event).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UplinkInfo {
    pub uplink: String,
    pub veth_intf: String,
}

/// Format a time the way C `ctime()` does, without the trailing newline,
/// in local time: `Tue Nov 24 22:40:00 2026`.
pub(crate) fn ctime(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r writes into the zeroed struct we own; secs is a valid time_t.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return String::from("Thu Jan  1 00:00:00 1970");
    }
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[(tm.tm_wday.rem_euclid(7)) as usize],
        MONS[(tm.tm_mon.rem_euclid(12)) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

/// `ctime()` of now.
pub(crate) fn ctime_now() -> String {
    ctime(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_shape() {
        std::env::set_var("TZ", "UTC");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_560_000);
        let s = ctime(t);
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with("2026"), "{s}");
    }

    #[test]
    fn result_strings() {
        assert_eq!(VmResult::CreateFail.as_str(), "CREATE:FAIL");
        assert_eq!(
            serde_json::to_string(&VmResult::DeleteFail).unwrap(),
            "\"DELETE:FAIL\""
        );
        assert_eq!(PortStatus::Up.fail_result(), VmResult::CreateFail);
    }
}

// ---- vocabulary shared by the manager and the drivers ----

/// Why the host could not set an uplink up (`HostDriver::uplink_up`). Its
/// text (`Display`) is the reason sent with `save_uplink`, worded as the
/// original's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkSetupError {
    /// The OpenStack bridges or their patch ports are missing (the OVS
    /// driver's description of what is missing).
    OpenStackNotRunning(String),
    /// Another OVS failure (the OVS driver's error text).
    Ovs(String),
    /// LLDP, EVB or group ids could not be enabled on lldpad's veth.
    Evb,
}

/// The original's `evb_cfg_fail_reason`.
pub(crate) const EVB_CFG_FAIL_REASON: &str = "Unable to cfg EVB";

impl fmt::Display for UplinkSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UplinkSetupError::OpenStackNotRunning(what) => {
                write!(f, "Openstck is not running: {what}.")
            }
            UplinkSetupError::Ovs(e) => f.write_str(e),
            UplinkSetupError::Evb => f.write_str(EVB_CFG_FAIL_REASON),
        }
    }
}

/// One step of uplink detection (the original's `detect_uplink` /
/// `static_uplink_detect` return values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkDetect {
    /// A new uplink was found (interface name; may be a bond member, the
    /// manager resolves it to the bond).
    Up(String),
    /// The known uplink is still fine.
    Normal,
    /// The known uplink went away.
    Down,
    /// Nothing found (the original's `None`).
    NotFound,
}

/// A VSI whose state changed behind the manager's back (refresh found a new
/// VLAN, the switch deassociated, lldpad gave a late verdict). The driver has
/// already updated its own tables; the manager fixes flows via
/// `HostDriver::apply_vsi_change` and tells the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsiChange {
    pub port_uuid: String,
    pub net_uuid: String,
    pub vm_mac: String,
    pub segmentation_id: u32,
    pub local_vlan: Option<u16>,
    /// New VDP VLAN (`None` = lost / not known).
    pub vdp_vlan: Option<u16>,
    pub old_vdp_vlan: Option<u16>,
    pub fail_reason: Option<String>,
}

/// What `status` shows per VSI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VsiStatus {
    pub port_uuid: String,
    pub mac: String,
    pub net_uuid: String,
    pub segmentation_id: u32,
    pub local_vlan: Option<u16>,
    pub vdp_vlan: Option<u16>,
    /// `SUCCESS`, `CREATE:FAIL`, `PENDING`.
    pub result: String,
    pub fail_reason: Option<String>,
    /// How lldpad holds the VSI: `assoc`, or `preassoc` / `preassoc-rr`
    /// at a live migration's destination before the switchover.
    pub mode: String,
}

/// LLDP neighbour facts of one interface, as sent by
/// `save_topo_disc_params` (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct TopoReport {
    pub protocol_interface: String,
    pub phy_interface: String,
    pub remote_evb_cfgd: bool,
    pub remote_evb_mode: Option<String>,
    pub remote_mgmt_addr: Option<String>,
    pub remote_system_desc: Option<String>,
    pub remote_system_name: Option<String>,
    pub remote_port: Option<String>,
    pub remote_chassis_id_mac: Option<String>,
    pub remote_port_id_mac: Option<String>,
    pub bond_interface: Option<String>,
    pub bond_member_ports: Option<String>,
}
