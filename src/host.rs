//! `LinuxHost`: the production `HostDriver`, built from the host drivers.
//! It is the counterpart of the original's `OVSNeutronVdp` port logic
//! (`send_vdp_port_event`, `port_up_segment_mode`, `port_down_segment_mode`,
//! `vdp_vlan_change_internal`, `is_lldpad_setup_done`) on top of:
//! - `ovs::OvsDriver`: bridges, veth pair, pass-through and translation
//!   flows, the LocalVlan table, the flow check;
//! - `lldpad::LldpadDriver`: the VSIs of the lldpad-side veth (vdptool);
//! - `lldpad::lldptool`: LLDP/EVB/group-id settings on the veth;
//! - `uplink::{UplinkDetector, SysNet}`: uplink detection and bonds;
//! - `topology::TopoDisc`: LLDP neighbour reports.
//!
//! Owns: the current uplink's `LldpadDriver` (created by `uplink_up`,
//! dropped by `uplink_down`). Calls only the drivers above; never the
//! manager. Lock order: `LinuxHost::lldpad` is held only to clone the
//! `Arc` out; no lock of this module is held while a driver runs a command.

use crate::config::{Config, VdpConfig};
use crate::exec::Runner;
use crate::lldpad::events::{LldpadNotice, LldpadWatch, VdpEventKind};
use crate::lldpad::lldptool;
use crate::lldpad::vsi::{LldpadDriver, VdpReply, VsiRequest};
use crate::manager::host::{
    HostDriver, PortOutcome, TopoReport, UplinkDetect, VsiChange, VsiSink, VsiStatus,
};
use crate::model::VmPort;
use crate::ovs::OvsDriver;
use crate::shutdown::Shutdown;
use crate::topology::TopoDisc;
use crate::uplink::{SysNet, UplinkDetector};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// The original's `evb_cfg_fail_reason`.
pub const EVB_CFG_FAIL_REASON: &str = "Unable to cfg EVB";
/// The original's reason when no lldpad port exists yet.
pub const NO_LLDPAD_PORT_REASON: &str = "There is no LLDPad port available.";

/// How long `uplink_up` waits for the bridge's EVB TLV on the veth (VDP is
/// usable once it is there; lab-facts: about 1-2 s after LLDP is enabled).
pub const VDP_READY_WAIT: Duration = Duration::from_secs(10);

/// Is lldpad's verdict on this VSI still to come: an association in
/// flight, one refused only because VDP is not usable yet, or a lost VSI
/// being re-asserted?
fn awaiting_verdict(r: &VdpReply) -> bool {
    r.awaiting_verdict()
}

/// The production host driver.
pub struct LinuxHost {
    runner: Arc<Runner>,
    vdp_cfg: VdpConfig,
    ovs: OvsDriver,
    sysnet: SysNet,
    detector: UplinkDetector,
    topo: TopoDisc,
    shutdown: Shutdown,
    /// What the lldpad event watcher shares with the host.
    shared: Arc<Shared>,
    /// The lldpad event watcher (`start_watchers`).
    watch: Mutex<Option<LldpadWatch>>,
    /// ovs-vswitchd as last seen, and whether a restart awaits repair.
    vswitchd: Mutex<VswitchdSeen>,
}

#[derive(Debug, Default)]
struct VswitchdSeen {
    pid: Option<u32>,
    needs_repair: bool,
}

/// State shared between the host and its lldpad event watcher thread.
/// Lock order: `lldpad` is only held to clone the `Arc` out; `refresh` is
/// held across one refresh round (it serialises rounds of the
/// `lldpad-client` thread and the event watcher, nothing else takes it).
struct Shared {
    runner: Arc<Runner>,
    shutdown: Shutdown,
    /// VSI driver of the uplink that is set up (None before `uplink_up`).
    lldpad: Mutex<Option<Arc<LldpadDriver>>>,
    refresh: Mutex<()>,
    /// lldpad's pid as last seen (restart detection without events).
    lldpad_pid: Mutex<Option<u32>>,
    /// The event watcher is attached to lldpad.
    events_attached: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn driver(&self) -> Option<Arc<LldpadDriver>> {
        self.lldpad.lock().clone()
    }

    fn set_events_attached(&self, on: bool) {
        self.events_attached
            .store(on, std::sync::atomic::Ordering::Relaxed);
        if let Some(d) = self.driver() {
            d.set_events_attached(on);
        }
    }

    /// LLDP, EVB and group ids on the lldpad-side veth (the original's
    /// `enable_lldp` + `enable_evb` + `enable_gpid`).
    fn enable_port(&self, veth: &str) -> Result<(), String> {
        lldptool::enable_lldp(&self.runner, veth)
            .and_then(|_| lldptool::enable_evb(&self.runner, veth))
            .and_then(|_| lldptool::enable_gpid(&self.runner, veth))
            .map_err(|e| {
                log::error!("host: cannot enable LLDP/EVB on {veth}: {e}");
                EVB_CFG_FAIL_REASON.to_string()
            })
    }

    /// Wait (bounded by `VDP_READY_WAIT`, shutdown-aware) until lldpad on
    /// `veth` sees the bridge's EVB TLV, so the first associations do not
    /// hit lldpad's "not supported yet" stage. Not seeing it is no error:
    /// associations made before are pending and retried every second.
    fn wait_vdp_ready(&self, veth: &str) -> bool {
        let start = std::time::Instant::now();
        loop {
            match lldptool::get_tlvs(&self.runner, veth) {
                Ok(t) if t.is_evb_bridge() => {
                    log::info!(
                        "host: EVB bridge seen on {veth} after {:?}",
                        start.elapsed()
                    );
                    return true;
                }
                Ok(_) => {}
                Err(e) => log::debug!("host: get-tlv on {veth}: {e}"),
            }
            if start.elapsed() >= VDP_READY_WAIT || self.shutdown.wait(Duration::from_millis(100)) {
                log::warn!(
                    "host: no EVB bridge on {veth} after {:?}; going on",
                    start.elapsed()
                );
                return false;
            }
        }
    }

    /// One refresh round, serialised with any other.
    fn refresh(&self) -> Vec<VsiChange> {
        let Some(d) = self.driver() else {
            return Vec::new();
        };
        let _round = self.refresh.lock();
        d.refresh()
    }

    /// lldpad restarted (it keeps VSIs and, depending on its version, its
    /// settings only in memory): re-apply LLDP/EVB/group ids on the veth,
    /// wait for VDP, then re-assert every VSI. The refresh compares the
    /// VLANs lldpad/the switch give with what is installed and reports only
    /// differences.
    fn recover_lldpad(&self) -> Vec<VsiChange> {
        let Some(d) = self.driver() else {
            return Vec::new();
        };
        let veth = d.port().to_string();
        log::warn!("host: lldpad restarted: re-applying settings on {veth} and re-asserting VSIs");
        d.note_lldpad_start();
        if self.enable_port(&veth).is_ok() {
            self.wait_vdp_ready(&veth);
        }
        self.refresh()
    }

    /// Has lldpad's pid changed since last seen? (one `lldptool -p`)
    fn lldpad_restarted(&self) -> bool {
        let Ok(pid) = lldptool::lldpad_pid(&self.runner) else {
            return false;
        };
        let mut last = self.lldpad_pid.lock();
        let restarted = last.is_some_and(|old| old != pid);
        *last = Some(pid);
        restarted
    }

    /// One notice of the lldpad event watcher (runs on its notify thread).
    fn on_notice(&self, notice: LldpadNotice, sink: &VsiSink) {
        match notice {
            LldpadNotice::Vdp(ev) => {
                let Some(d) = self.driver() else {
                    return;
                };
                match ev.kind {
                    VdpEventKind::Associated => {
                        if let Some(vlan) = ev.vlan {
                            if let Some(c) = d.apply_event(&ev.uuid, Ok(vlan)) {
                                sink(c);
                            }
                        }
                    }
                    VdpEventKind::Deassociated | VdpEventKind::Failed => {
                        let reason = ev.error.clone().unwrap_or_else(|| {
                            crate::lldpad::vdptool::DEASSOC_NO_REASON.to_string()
                        });
                        let held = d.vsis().into_iter().find_map(|(r, reply)| {
                            (r.port_uuid == ev.uuid).then_some(reply.vdp_vlan)
                        });
                        let lost = d.apply_event(&ev.uuid, Err(reason.clone()));
                        let reasserting = d.reasserting(&ev.uuid);
                        if lost.is_none() && reasserting.is_none() {
                            return;
                        }
                        log::warn!(
                            "host: VSI {} ended by lldpad/switch ({reason}): re-associating",
                            ev.uuid,
                        );
                        // Re-assert at once. A VSI that held a VLAN keeps
                        // its flows (no change is reported for the loss);
                        // the re-association's outcome is reported.
                        let changes = self.refresh();
                        let covered = changes.iter().any(|c| c.port_uuid == ev.uuid);
                        for c in changes {
                            sink(c);
                        }
                        if covered {
                            return;
                        }
                        match lost {
                            // A VSI still waiting for its first VLAN was
                            // refused: that is its verdict.
                            Some(lost) if reasserting.is_none() => sink(lost),
                            _ => {
                                let now =
                                    d.vsis().into_iter().find(|(r, _)| r.port_uuid == ev.uuid);
                                if let Some((req, r)) = now.filter(|(_, r)| r.vdp_vlan.is_some()) {
                                    // Back with a VLAN already: report it.
                                    sink(VsiChange {
                                        port_uuid: req.port_uuid,
                                        net_uuid: req.net_uuid,
                                        vm_mac: req.vm_mac,
                                        segmentation_id: req.segmentation_id,
                                        local_vlan: None,
                                        vdp_vlan: r.vdp_vlan,
                                        old_vdp_vlan: held.flatten(),
                                        fail_reason: r.fail_reason,
                                    });
                                }
                            }
                        }
                    }
                }
            }
            LldpadNotice::Restarted { old_pid, new_pid } => {
                log::warn!("host: lldpad restarted (pid {old_pid} -> {new_pid})");
                *self.lldpad_pid.lock() = Some(new_pid);
                // The watcher re-attached before saying so.
                self.set_events_attached(true);
                for c in self.recover_lldpad() {
                    sink(c);
                }
            }
            LldpadNotice::Attached => {
                log::info!("host: attached to lldpad events");
                self.set_events_attached(true);
                // Events may have been missed while detached: resync.
                for c in self.refresh() {
                    sink(c);
                }
            }
            LldpadNotice::Lost(why) => {
                log::warn!("host: lldpad events lost: {why}");
                self.set_events_attached(false);
            }
        }
    }
}

impl LinuxHost {
    /// Build the drivers from the configuration. `shutdown` bounds the
    /// waits inside detection and the local-VLAN wait.
    pub fn new(cfg: &Config, runner: Arc<Runner>, shutdown: Shutdown) -> LinuxHost {
        let sysnet = || {
            SysNet::new(&cfg.paths.sys_class_net, &cfg.paths.proc_net_bonding)
                .with_ipv4_runner(runner.clone())
        };
        LinuxHost {
            vdp_cfg: cfg.vdp.clone(),
            ovs: OvsDriver::new(
                runner.clone(),
                &cfg.bridges.integration,
                &cfg.bridges.external,
            ),
            detector: UplinkDetector::new(runner.clone(), sysnet(), cfg.uplink.candidates.clone()),
            topo: TopoDisc::new(runner.clone(), sysnet()),
            sysnet: sysnet(),
            shared: Arc::new(Shared {
                runner: runner.clone(),
                shutdown: shutdown.clone(),
                lldpad: Mutex::new(None),
                refresh: Mutex::new(()),
                lldpad_pid: Mutex::new(None),
                events_attached: std::sync::atomic::AtomicBool::new(false),
            }),
            watch: Mutex::new(None),
            vswitchd: Mutex::new(VswitchdSeen::default()),
            shutdown,
            runner,
        }
    }

    /// The OVS driver (tests, status extensions).
    pub fn ovs(&self) -> &OvsDriver {
        &self.ovs
    }

    /// The runner's count of spawned processes (bench).
    pub fn commands_spawned(&self) -> u64 {
        self.runner.spawned()
    }

    /// The VSI driver of the current uplink.
    pub fn lldpad(&self) -> Option<Arc<LldpadDriver>> {
        self.shared.driver()
    }

    fn local_vlan_of(&self, vm: &VmPort) -> Option<u16> {
        self.ovs
            .port_vlans(&vm.net_uuid, &vm.port_uuid)
            .map(|(l, _)| l)
            .or(vm.local_vlan)
    }

    /// Fill the local VLAN of changes coming from the VSI driver.
    fn with_local_vlans(&self, mut changes: Vec<VsiChange>) -> Vec<VsiChange> {
        for c in &mut changes {
            if c.local_vlan.is_none() {
                c.local_vlan = self
                    .ovs
                    .port_vlans(&c.net_uuid, &c.port_uuid)
                    .map(|(l, _)| l);
            }
        }
        changes
    }
}

impl HostDriver for LinuxHost {
    fn bridges_present(&self) -> bool {
        self.ovs.bridges_present()
    }

    fn detect_uplink(&self, veth: Option<&str>) -> UplinkDetect {
        self.detector.detect(veth, &self.shutdown)
    }

    fn bond_of(&self, intf: &str) -> Option<String> {
        self.sysnet.bond_of(intf)
    }

    fn bond_members(&self, intf: &str) -> Option<String> {
        self.sysnet.bond_members(intf)
    }

    fn uplink_up(&self, uplink: &str) -> Result<String, String> {
        let ports = self.ovs.setup_uplink(uplink).map_err(|e| {
            log::error!("host: uplink {uplink} setup failed: {e}");
            e.to_string()
        })?;
        let veth = ports.lldp_veth.clone();
        self.shared.enable_port(&veth)?;
        self.shared.wait_vdp_ready(&veth);
        let _ = self.shared.lldpad_restarted();
        let mut cur = self.shared.lldpad.lock();
        let keep = cur.as_ref().is_some_and(|d| d.port() == veth);
        if let Some(d) = cur.as_ref().filter(|_| keep) {
            // LLDP/EVB were (re-)enabled: lldpad settles again.
            d.note_lldpad_start();
        }
        if !keep {
            let d = LldpadDriver::new(self.runner.clone(), &veth, self.vdp_cfg.clone());
            d.set_query_via_socket(true);
            d.set_events_attached(
                self.shared
                    .events_attached
                    .load(std::sync::atomic::Ordering::Relaxed),
            );
            *cur = Some(Arc::new(d));
        }
        log::info!("host: uplink {uplink} up, lldpad port {veth}");
        Ok(veth)
    }

    fn uplink_down(&self, uplink: &str) {
        if let Err(e) = self.ovs.teardown_uplink(uplink) {
            log::error!("host: uplink {uplink} teardown: {e}");
        }
        if let Some(d) = self.shared.lldpad.lock().take() {
            d.clear();
        }
    }

    fn delete_uplink_and_flows(&self, uplink: &str) {
        if let Err(e) = self.ovs.delete_uplink_and_flows(uplink) {
            log::error!("host: delete uplink {uplink} and flows: {e}");
        }
    }

    fn port_local_vlan(&self, port_uuid: &str, wait: Duration, shutdown: &Shutdown) -> Option<u16> {
        match self.ovs.wait_port_local_vlan(port_uuid, wait, shutdown) {
            Ok(v) => Some(v),
            Err(e) => {
                log::warn!("host: no local VLAN for port {port_uuid}: {e}");
                None
            }
        }
    }

    fn port_up(&self, vm: &VmPort, local_vlan: u16) -> PortOutcome {
        let Some(lldpad) = self.lldpad() else {
            return PortOutcome {
                fail_reason: Some(NO_LLDPAD_PORT_REASON.into()),
                ..Default::default()
            };
        };
        let mut reply = lldpad.associate(&VsiRequest::from(vm));
        if !reply.pending && awaiting_verdict(&reply) {
            log::info!(
                "host: VDP not usable on {} yet for {}: pending",
                lldpad.port(),
                vm.port_uuid
            );
            reply.pending = true;
        }
        let vdp_vlan = if reply.pending { None } else { reply.vdp_vlan };
        // The port joins the network's LocalVlan record even without a VLAN
        // (as the original does), so a later VSI change or port down finds it.
        let flows = self.ovs.add_vm_port(
            &vm.net_uuid,
            local_vlan,
            &vm.port_uuid,
            vdp_vlan,
            reply.fail_reason.clone(),
        );
        let (ok, fail_reason) = match (&flows, vdp_vlan) {
            (Err(e), _) => (false, Some(e.to_string())),
            (Ok(u), Some(_)) if u.error.is_some() => {
                // The table holds the port; the flow check finishes the job.
                log::warn!("host: flows for {} deferred: {:?}", vm.port_uuid, u.error);
                (true, reply.fail_reason.clone())
            }
            (Ok(_), Some(_)) => (true, reply.fail_reason.clone()),
            (Ok(_), None) => (false, reply.fail_reason.clone()),
        };
        PortOutcome {
            ok,
            local_vlan: Some(local_vlan),
            vdp_vlan,
            fail_reason,
            // A port the LocalVlan table refused gets no later verdict:
            // report the failure now even if lldpad is still working.
            pending: reply.pending && flows.is_ok(),
        }
    }

    fn port_down(&self, vm: &VmPort) -> PortOutcome {
        let Some(lldpad) = self.lldpad() else {
            return PortOutcome {
                fail_reason: Some(NO_LLDPAD_PORT_REASON.into()),
                ..Default::default()
            };
        };
        let reply = lldpad.deassociate(&vm.port_uuid);
        match self.ovs.remove_vm_port(&vm.net_uuid, &vm.port_uuid) {
            // As the original reports a down: the port holds no VDP VLAN
            // any more (-1), and the local VLAN is -1 too when the
            // network's last port went.
            Ok(r) => PortOutcome {
                ok: true,
                local_vlan: (!r.net_removed).then_some(r.local_vlan),
                vdp_vlan: None,
                fail_reason: None,
                pending: false,
            },
            Err(e) => PortOutcome {
                ok: false,
                local_vlan: vm.local_vlan,
                vdp_vlan: vm.vdp_vlan,
                fail_reason: Some(reply.fail_reason.unwrap_or_else(|| e.to_string())),
                pending: false,
            },
        }
    }

    fn restore_port(&self, vm: &VmPort) {
        let local = vm
            .local_vlan
            .or_else(|| self.ovs.port_local_vlan(&vm.port_uuid).ok());
        if let Some(l) = local {
            self.ovs
                .restore_vm_port(&vm.net_uuid, l, &vm.port_uuid, vm.vdp_vlan);
        }
        if let Some(d) = self.lldpad() {
            d.restore(&VsiRequest::from(vm), vm.vdp_vlan);
        }
    }

    fn apply_vsi_change(&self, change: &VsiChange) -> PortOutcome {
        match self.ovs.set_port_vdp_vlan(
            &change.net_uuid,
            &change.port_uuid,
            change.vdp_vlan,
            change.fail_reason.clone(),
        ) {
            Ok(v) => PortOutcome {
                ok: true,
                local_vlan: Some(v.local_vlan),
                vdp_vlan: change.vdp_vlan,
                fail_reason: change.fail_reason.clone(),
                pending: false,
            },
            Err(e) => PortOutcome {
                ok: false,
                local_vlan: change.local_vlan,
                vdp_vlan: change.vdp_vlan,
                fail_reason: Some(e.to_string()),
                pending: false,
            },
        }
    }

    fn refresh_vsis(&self) -> Vec<VsiChange> {
        if self.lldpad().is_none() {
            return Vec::new();
        }
        // Without the event watcher this is how an lldpad restart is seen.
        let changes = if self.shared.lldpad_restarted() {
            self.shared.recover_lldpad()
        } else {
            self.shared.refresh()
        };
        self.with_local_vlans(changes)
    }

    fn start_watchers(&self, sink: VsiSink) -> Vec<crate::task::Task> {
        let shared = self.shared.clone();
        let (w, tasks) = LldpadWatch::tasks(&self.shutdown, move |n| shared.on_notice(n, &sink));
        *self.watch.lock() = Some(w);
        tasks
    }

    fn ovs_needs_repair(&self) -> bool {
        let pid = self.ovs.vswitchd_pid();
        let mut seen = self.vswitchd.lock();
        if let Some(p) = pid {
            if seen.pid.is_some_and(|old| old != p) {
                log::warn!(
                    "host: ovs-vswitchd restarted (pid {:?} -> {p}): restoring ports and flows",
                    seen.pid
                );
                seen.needs_repair = true;
            }
            seen.pid = Some(p);
        }
        // While no vswitchd runs there is nothing to repair yet.
        seen.needs_repair && pid.is_some()
    }

    fn check_flows(&self) {
        let result = self.ovs.check_flows();
        if result.is_ok() {
            self.vswitchd.lock().needs_repair = false;
        }
        match result {
            Ok(c) if c.restored > 0 || c.removed > 0 || c.ports_readded => {
                log::warn!(
                    "host: flow check restored {} flows, removed {} stale, ports re-added: {}",
                    c.restored,
                    c.removed,
                    c.ports_readded
                );
            }
            Ok(_) => {}
            Err(e) => log::error!("host: flow check failed: {e}"),
        }
    }

    fn topo_cfg_intf(&self, intf: &str, phy_interface: &str) {
        self.topo.cfg_intf(intf, phy_interface);
    }

    fn topo_uncfg_intf(&self, intf: &str) {
        self.topo.uncfg_intf(intf);
    }

    fn topo_poll(&self) -> Vec<TopoReport> {
        self.topo.poll()
    }

    fn threads(&self) -> Vec<(String, String)> {
        // Whether the watcher is attached to lldpad is in the `host` section.
        self.watch
            .lock()
            .as_ref()
            .map(|w| w.thread_states())
            .unwrap_or_default()
    }

    fn status_extra(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        let mut m = std::collections::BTreeMap::new();
        m.insert("commands_spawned".into(), self.runner.spawned().into());
        m.insert(
            "vdptool_calls".into(),
            self.lldpad().map_or(0, |d| d.vdptool_calls()).into(),
        );
        m.insert(
            "socket_queries".into(),
            self.lldpad().map_or(0, |d| d.socket_queries()).into(),
        );
        m.insert("pending_vsis".into(), self.pending_vsis().into());
        let events = match self.watch.lock().as_ref() {
            Some(w) => {
                let st = w.status();
                serde_json::json!({
                    "attached": st.attached,
                    "lldpad_pid": st.lldpad_pid,
                    "reason": st.reason,
                    "events": st.events,
                    "restarts": st.restarts,
                    "panics": st.panics,
                })
            }
            None => serde_json::json!({"attached": false, "reason": "not started"}),
        };
        m.insert("lldpad_events".into(), events);
        m
    }

    fn pending_vsis(&self) -> usize {
        self.lldpad().map_or(0, |d| {
            d.vsis().iter().filter(|(_, r)| awaiting_verdict(r)).count()
        })
    }

    fn vsis(&self) -> Vec<VsiStatus> {
        let Some(d) = self.lldpad() else {
            return Vec::new();
        };
        d.vsis()
            .into_iter()
            .map(|(req, reply)| {
                let local_vlan = self
                    .ovs
                    .port_vlans(&req.net_uuid, &req.port_uuid)
                    .map(|(l, _)| l);
                let result = if awaiting_verdict(&reply) {
                    "PENDING"
                } else if reply.vdp_vlan.is_some() {
                    "SUCCESS"
                } else {
                    "CREATE:FAIL"
                };
                VsiStatus {
                    port_uuid: req.port_uuid,
                    mac: req.vm_mac,
                    net_uuid: req.net_uuid,
                    segmentation_id: req.segmentation_id,
                    local_vlan,
                    vdp_vlan: reply.vdp_vlan,
                    result: result.into(),
                    fail_reason: reply.fail_reason,
                }
            })
            .collect()
    }
}

impl LinuxHost {
    /// Local VLAN of a VM as the host knows it (table first, then what the
    /// controller sent).
    pub fn known_local_vlan(&self, vm: &VmPort) -> Option<u16> {
        self.local_vlan_of(vm)
    }
}
