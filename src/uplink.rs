//! Uplink detection: which interface leads to the EVB bridge (the leaf), and
//! the sysfs facts around it (bonds, physical interfaces).
//!
//! Owns: reading `sys_class_net` / `proc_net_bonding` (both configurable so
//! tests use fake trees) and the automatic detection step
//! (`detect_uplink.detect_uplink(veth)` of the original). Calls:
//! `lldpad::lldptool` (through `exec::Runner`), `nix::ifaddrs` for IPv4
//! addresses, `shutdown::Shutdown` for waiting. The static uplink and the
//! bond-to-uplink resolution are the manager's business.

use crate::exec::Runner;
use crate::lldpad::lldptool;
use crate::model::UplinkDetect;
use crate::shutdown::Shutdown;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default for how long one `detect()` waits for a candidate's neighbour to
/// show the EVB bridge TLV. An LLDP neighbour sends at least every 30 s
/// (msgTxInterval) and usually at once when it sees a new neighbour (lldpad:
/// 0.2-1.9 s); 35 s covers one full interval. (The original waited 40 s per
/// candidate, one candidate after the other.)
pub(crate) const DEFAULT_DETECT_WAIT: Duration = Duration::from_secs(35);

/// Time between two reads of the candidates' neighbour TLVs.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// The kernel's view of network interfaces: `/sys/class/net` and
/// `/proc/net/bonding` (or fake trees with the same layout).
#[derive(Debug, Clone)]
pub struct SysNet {
    sys_class_net: PathBuf,
    proc_net_bonding: PathBuf,
    /// When set, IPv4 addresses are read with `ip -4 -o addr show` through
    /// this runner (e.g. inside a netns); otherwise with getifaddrs(3).
    ipv4_runner: Option<Arc<Runner>>,
}

fn read_trimmed(p: &Path) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| s.trim_matches('\n').to_string())
}

impl SysNet {
    pub fn new(sys_class_net: &Path, proc_net_bonding: &Path) -> SysNet {
        SysNet {
            sys_class_net: sys_class_net.to_path_buf(),
            proc_net_bonding: proc_net_bonding.to_path_buf(),
            ipv4_runner: None,
        }
    }

    /// Read IPv4 addresses with `ip -4 -o addr show` through `runner`
    /// instead of getifaddrs(3) (for a runner that enters another netns).
    pub fn with_ipv4_runner(mut self, runner: Arc<Runner>) -> SysNet {
        self.ipv4_runner = Some(runner);
        self
    }

    fn intf_dir(&self, intf: &str) -> Option<PathBuf> {
        // Never let a name walk out of the tree.
        if intf.is_empty() || intf.contains('/') || intf == "." || intf == ".." {
            return None;
        }
        Some(self.sys_class_net.join(intf))
    }

    /// The bond `intf` is enslaved to (`get_bond_intf`): its `master` link
    /// when that is a bond, else the bond whose `bonding/slaves` lists it
    /// (bonds enumerated from `proc_net_bonding`, as the original did).
    pub fn bond_of(&self, intf: &str) -> Option<String> {
        let dir = self.intf_dir(intf)?;
        if let Ok(target) = fs::read_link(dir.join("master")) {
            if let Some(name) = target.file_name().and_then(|n| n.to_str()) {
                if self.is_bond(name) {
                    return Some(name.to_string());
                }
            }
        }
        let mut bonds: Vec<String> = fs::read_dir(&self.proc_net_bonding)
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        bonds.sort();
        bonds.into_iter().find(|bond| {
            self.slaves(bond)
                .map(|s| s.split_whitespace().any(|m| m == intf))
                .unwrap_or(false)
        })
    }

    fn slaves(&self, bond: &str) -> Option<String> {
        read_trimmed(&self.intf_dir(bond)?.join("bonding").join("slaves"))
    }

    /// The member list of bond `intf` as the kernel prints it
    /// (`bonding/slaves`, newline stripped), `None` if `intf` is not a bond
    /// (`get_member_ports`).
    pub fn bond_members(&self, intf: &str) -> Option<String> {
        if !self.is_bond(intf) {
            return None;
        }
        self.slaves(intf)
    }

    /// `intf` is a bond: `proc_net_bonding/intf` exists (`is_intf_bond`), or
    /// sysfs has `intf/bonding`.
    pub fn is_bond(&self, intf: &str) -> bool {
        let Some(dir) = self.intf_dir(intf) else {
            return false;
        };
        self.proc_net_bonding.join(intf).exists() || dir.join("bonding").is_dir()
    }

    /// `operstate` is `up` (`is_intf_up`).
    pub fn is_up(&self, intf: &str) -> bool {
        self.intf_dir(intf)
            .and_then(|d| read_trimmed(&d.join("operstate")))
            .as_deref()
            == Some("up")
    }

    /// Physical (has a `device` link), operationally up interfaces, sorted
    /// by name (`get_all_run_phy_intf`).
    pub fn physical_up(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(&self.sys_class_net) else {
            log::warn!("uplink: cannot list {}", self.sys_class_net.display());
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| self.sys_class_net.join(n).join("device").exists() && self.is_up(n))
            .collect();
        names.sort();
        names
    }

    /// Physical, operationally up interfaces without an IPv4 address,
    /// sorted by name: the automatic uplink candidates (`physical_up` plus
    /// `find_uplink`'s "no inet addr" filter).
    pub fn physical_up_candidates(&self) -> Vec<String> {
        let mut names = self.physical_up();
        if names.is_empty() {
            return names;
        }
        let with_ipv4 = self.ipv4_interfaces();
        names.retain(|n| !with_ipv4.contains(n));
        names
    }

    /// Names of interfaces holding an IPv4 address.
    pub fn ipv4_interfaces(&self) -> BTreeSet<String> {
        match &self.ipv4_runner {
            Some(r) => match r.run(&["ip", "-4", "-o", "addr", "show"]) {
                Ok(out) => parse_ip_o_addr(&out.stdout),
                Err(e) => {
                    log::warn!("uplink: cannot list IPv4 addresses: {e}");
                    BTreeSet::new()
                }
            },
            None => match nix::ifaddrs::getifaddrs() {
                Ok(addrs) => addrs
                    .filter(|a| {
                        a.address
                            .as_ref()
                            .and_then(|s| s.as_sockaddr_in())
                            .is_some()
                    })
                    .map(|a| a.interface_name)
                    .collect(),
                Err(e) => {
                    log::warn!("uplink: getifaddrs failed: {e}");
                    BTreeSet::new()
                }
            },
        }
    }
}

/// Interface names from `ip -4 -o addr show` (`2: eth0    inet 10.0.0.1/24 ...`).
fn parse_ip_o_addr(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next()?;
            let name = w.next()?;
            (w.next()? == "inet").then(|| name.split('@').next().unwrap_or(name).to_string())
        })
        .collect()
}

/// Automatic uplink detection through lldpad's view of each candidate's
/// LLDP neighbour.
pub struct UplinkDetector {
    runner: Arc<Runner>,
    sysnet: SysNet,
    candidates: Option<Vec<String>>,
    wait: Duration,
}

impl UplinkDetector {
    /// `candidates`: the configured `uplink.candidates`; `None` = every
    /// physical, operationally up interface without IPv4
    /// (`SysNet::physical_up_candidates`).
    pub fn new(
        runner: Arc<Runner>,
        sysnet: SysNet,
        candidates: Option<Vec<String>>,
    ) -> UplinkDetector {
        UplinkDetector {
            runner,
            sysnet,
            candidates,
            wait: DEFAULT_DETECT_WAIT,
        }
    }

    /// Max time one `detect(None, ..)` waits for a neighbour's EVB bridge
    /// TLV (default `DEFAULT_DETECT_WAIT`, 35 s).
    pub fn set_wait(&mut self, d: Duration) {
        self.wait = d;
    }

    /// One detection step, with the original's semantics:
    /// - `veth` = the lldpad-side veth of the uplink in use: `Normal` while
    ///   its neighbour still shows the EVB TLV with `mode:bridge`, `Down`
    ///   when lldpad shows no such neighbour; `Normal` when lldpad cannot be
    ///   asked (timeout, not running): that is no evidence of a down link.
    /// - `None`: enable LLDP on all candidates at once, read their neighbours
    ///   every `POLL_INTERVAL` until one shows `mode:bridge` (`Up(name)`, the
    ///   member name for a bond member) or the wait ends (`NotFound`). LLDP is
    ///   turned off again on every candidate where this call turned it on,
    ///   except the winner. Shutdown ends the wait early (`NotFound`).
    pub fn detect(&self, veth: Option<&str>, shutdown: &Shutdown) -> UplinkDetect {
        match veth {
            Some(v) => match lldptool::get_tlvs(&self.runner, v) {
                Ok(t) if t.is_evb_bridge() => UplinkDetect::Normal,
                Ok(_) => UplinkDetect::Down,
                // Cannot tell is not down: an lldpad that is restarting or
                // busy must not count towards tearing the uplink (and every
                // VM's flows) down.
                Err(e) => {
                    log::warn!(
                        "uplink: cannot read the neighbour of {v} ({e}); keeping the uplink"
                    );
                    UplinkDetect::Normal
                }
            },
            None => self.find_uplink(shutdown),
        }
    }

    fn find_uplink(&self, shutdown: &Shutdown) -> UplinkDetect {
        let candidates = match &self.candidates {
            Some(c) => c.clone(),
            None => self.sysnet.physical_up_candidates(),
        };
        if candidates.is_empty() {
            log::debug!("uplink: no candidate interfaces");
            return UplinkDetect::NotFound;
        }
        // (name, we turned LLDP on here)
        let mut probing: Vec<(String, bool)> = Vec::new();
        for c in &candidates {
            let was_on = lldptool::admin_status(&self.runner, c)
                .map(|s| s == "rxtx")
                .unwrap_or(false);
            if was_on {
                probing.push((c.clone(), false));
                continue;
            }
            match lldptool::enable_lldp(&self.runner, c) {
                Ok(()) => probing.push((c.clone(), true)),
                Err(e) => log::warn!("uplink: cannot enable LLDP on candidate {c}: {e}"),
            }
        }
        log::info!(
            "uplink: probing {} for an EVB bridge neighbour (up to {:?})",
            probing
                .iter()
                .map(|p| p.0.as_str())
                .collect::<Vec<_>>()
                .join(","),
            self.wait
        );
        let start = Instant::now();
        let deadline = start + self.wait;
        let mut winner: Option<String> = None;
        'poll: loop {
            for (c, _) in &probing {
                match lldptool::get_tlvs(&self.runner, c) {
                    Ok(t) if t.is_evb_bridge() => {
                        winner = Some(c.clone());
                        break 'poll;
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("uplink: reading the neighbour of {c}: {e}"),
                }
            }
            let now = Instant::now();
            if probing.is_empty() || now >= deadline {
                break;
            }
            if shutdown.wait(POLL_INTERVAL.min(deadline - now)) {
                break;
            }
        }
        // LLDP off again where the probe turned it on, and always on the
        // winner (as the original): lldpad speaks for the uplink on the
        // LLDPL veth, and a second LLDP agent on the physical port would
        // show the switch two stations on one port.
        for (c, enabled_here) in &probing {
            if *enabled_here || winner.as_deref() == Some(c.as_str()) {
                if let Err(e) = lldptool::disable_lldp(&self.runner, c) {
                    log::warn!("uplink: cannot disable LLDP on {c}: {e}");
                }
            }
        }
        match winner {
            Some(w) => {
                log::info!(
                    "uplink: {w} leads to an EVB bridge (found in {:?})",
                    start.elapsed()
                );
                UplinkDetect::Up(w)
            }
            None => UplinkDetect::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_o_addr_names_live() {
        // The real `ip` of this netns: loopback always has 127.0.0.1.
        let r = Runner::direct();
        let out = r.run(&["ip", "-4", "-o", "addr", "show"]).expect("ip");
        assert!(
            parse_ip_o_addr(&out.stdout).contains("lo"),
            "{}",
            out.stdout
        );
        assert!(parse_ip_o_addr("garbage\n\n").is_empty());
    }

    #[test]
    fn shareable_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<SysNet>();
        send_sync::<UplinkDetector>();
        send_sync::<crate::topology::TopoDisc>();
    }

    #[test]
    fn names_cannot_escape_tree() {
        let s = SysNet::new(Path::new("/nonexistent-lt"), Path::new("/nonexistent-lt"));
        assert!(!s.is_bond("../x"));
        assert_eq!(s.bond_of(".."), None);
        assert!(s.physical_up_candidates().is_empty());
    }
}
