//! `VdpMgr`, the queue worker: uplink up/down messages, VM events (one and
//! bulk), VSI changes, and what is reported to the controller for each.
//!
//! Owns nothing of its own (the manager's state). Calls the host driver
//! and the controller link.

use super::host::NoLocalVlan;
use super::*;

impl VdpMgr {
    // ----- queue worker --------------------------------------------------------

    /// Dequeue (blocking) and process one message (the original's
    /// `process_queue` loop body; the `queue-worker` task runs it, and its
    /// runner contains a panic); false when the queue is closed.
    pub fn process_one(&self) -> bool {
        match self.que.dequeue() {
            Some((_, VdpQueMsg::Vm { vm, migration })) if self.cfg.vm_lanes > 1 => {
                self.run_vm_burst((vm, migration));
                true
            }
            Some((_, msg)) => {
                self.process_msg(msg);
                true
            }
            None => false,
        }
    }

    /// Dispatch one message by type.
    pub fn process_msg(&self, msg: VdpQueMsg) {
        log::debug!("Msg dequeued type is {}", msg.msg_type());
        match msg {
            VdpQueMsg::Vm { vm, migration } => self.process_vm_step(&vm, migration),
            VdpQueMsg::VmBulk { vms, .. } => self.process_bulk_vm_event(&vms),
            VdpQueMsg::Uplink { .. } => {
                let _reset = OngoingReset(&self.state);
                self.process_uplink_event(msg);
            }
            VdpQueMsg::VsiChanged(change) => self.process_vsi_change(&change),
        }
    }

    /// `process_uplink_event`: "up" sets the uplink up on the host (veth,
    /// OVS ports, pass-through flows, LLDP/EVB) and reports it, or reports
    /// the failure and parks the message on the error queue; "down" tears
    /// the uplink down (or removes a never-set-up stored uplink) and
    /// reports the empty uplink. Topology discovery follows the uplink.
    pub fn process_uplink_event(&self, msg: VdpQueMsg) {
        let VdpQueMsg::Uplink {
            status,
            ref phy_uplink,
            ref veth_intf,
            ..
        } = msg
        else {
            return;
        };
        let phy = phy_uplink.clone();
        log::info!(
            "Received New uplink Msg {} for uplink {phy}",
            status.as_str()
        );
        match status {
            UplinkStatus::Up => {
                let current = self.state.lock().phy_uplink.clone();
                if current.as_deref() != Some(phy.as_str()) {
                    log::warn!("dropping stale uplink up for {phy} (current uplink {current:?})");
                    return;
                }
                match self.host.uplink_up(&phy) {
                    Ok(veth) => {
                        {
                            let mut st = self.state.lock();
                            st.uplink = match st.uplink {
                                UplinkStage::Ongoing { .. } => {
                                    UplinkStage::Ongoing { set_up: true }
                                }
                                _ => UplinkStage::Ready,
                            };
                            st.set_up.insert(phy.clone(), veth.clone());
                            st.veth_intf = Some(veth.clone());
                        }
                        log::info!(
                            "UP Event Processing Complete Saving uplink {phy} and veth {veth}"
                        );
                        self.save_uplink(&phy, &veth, "");
                        self.host.topo_uncfg_intf(&phy);
                        self.host.topo_cfg_intf(&veth, &phy);
                    }
                    Err(reason) => {
                        log::error!("UP Event Processing NOT Complete for {phy}: {reason}");
                        self.err_que.enqueue(Q_UPL_PRIO, msg.clone());
                        self.save_uplink(&phy, "", &reason.to_string());
                    }
                }
            }
            UplinkStatus::Down => {
                let was_set_up = self.state.lock().set_up.remove(&phy).is_some();
                if was_set_up {
                    self.host.uplink_down(&phy);
                } else {
                    self.host.delete_uplink_and_flows(&phy);
                }
                self.save_uplink("", "", "");
                if let Some(v) = veth_intf {
                    self.host.topo_uncfg_intf(v);
                }
                self.host.topo_cfg_intf(&phy, &phy);
            }
        }
    }

    /// `process_vm_event`: one VM port up/down. Before the uplink is ready:
    /// fail with "Uplink Port Event not received yet" and remember the port.
    /// Up: wait for the local VLAN, associate and program flows, report
    /// SUCCESS with both VLANs or CREATE:FAIL. Down: deassociate, report
    /// SUCCESS or DELETE:FAIL.
    pub fn process_vm_event(&self, vm: &VmPort) {
        self.process_vm_step(vm, None)
    }

    /// [`process_vm_event`](Self::process_vm_event) of a `vm_migration`
    /// step (`migration`), or of a plain `vm_info` (`None`). `arriving`
    /// pre-associates and installs the flows (reported like an up: the
    /// controller learns the destination is ready); `arrived` associates
    /// with the hint `to`; `left` and `aborted` are downs (`left` with the
    /// hint `from`). An `arriving` before the uplink is ready is answered
    /// CREATE:FAIL and not remembered: replayed later as a plain up it
    /// would take the VSI from the source before the switchover.
    pub fn process_vm_step(&self, vm: &VmPort, migration: Option<MigrationPhase>) {
        log::info!(
            "In processing VM Event status {} for MAC {} UUID {} oui {:?}{}",
            vm.status,
            vm.vm_mac,
            vm.port_uuid,
            vm.oui,
            migration.map_or(String::new(), |m| format!(" migration {}", m.as_str()))
        );
        let res_fail = vm.status.fail_result();
        {
            let mut st = self.state.lock();
            if !st.uplink_ready() {
                if migration != Some(MigrationPhase::Arriving) {
                    remember_early(&mut st.early_ports, vm);
                }
                drop(st);
                log::error!("{UPLINK_NOT_RECEIVED_REASON} (port {})", vm.port_uuid);
                self.update_vm_result(
                    &vm.port_uuid,
                    res_fail,
                    None,
                    None,
                    Some(UPLINK_NOT_RECEIVED_REASON),
                );
                return;
            }
            st.early_ports.remove(&vm.port_uuid);
        }
        let (outcome, lvid) = match vm.status {
            PortStatus::Up => {
                let wait = self.cfg.vm_port_wait;
                let lvid = match self
                    .host
                    .port_local_vlan(&vm.port_uuid, wait, &self.shutdown)
                {
                    Ok(l) => l,
                    Err(e) => {
                        if e == NoLocalVlan::Shutdown || self.shutdown.is_set() {
                            log::info!(
                                "shutdown while waiting for the local VLAN of {}; not reported",
                                vm.port_uuid
                            );
                            return;
                        }
                        let reason = no_local_vlan_reason(&vm.port_uuid, &e);
                        log::error!("{reason}");
                        self.update_vm_result(&vm.port_uuid, res_fail, None, None, Some(&reason));
                        return;
                    }
                };
                let out = match migration {
                    Some(step) => self.host.port_up_migrating(vm, lvid, step),
                    None => self.host.port_up(vm, lvid),
                };
                (out, Some(lvid))
            }
            PortStatus::Down => match migration {
                Some(step) => (self.host.port_down_migrating(vm, step), None),
                None => (self.host.port_down(vm), None),
            },
        };
        self.report_outcome(&vm.port_uuid, res_fail, &outcome, lvid);
    }

    pub(super) fn report_outcome(
        &self,
        port_uuid: &str,
        res_fail: VmResult,
        out: &PortOutcome,
        lvid: Option<u16>,
    ) {
        if out.pending && !out.ok {
            // vdptool gave up waiting but lldpad is still trying: nothing to
            // report yet; lldpad's verdict arrives as a VSI change.
            log::info!("VDP association of {port_uuid} pending; the verdict comes as a VSI change");
            return;
        }
        if out.ok {
            log::info!("Success in VDP port event for {port_uuid}");
            self.update_vm_result(
                port_uuid,
                VmResult::Success,
                out.local_vlan.or(lvid),
                out.vdp_vlan,
                out.fail_reason.as_deref(),
            );
        } else {
            log::error!(
                "Error in VDP port event for {port_uuid}: {:?}",
                out.fail_reason
            );
            let reason = out
                .fail_reason
                .clone()
                .unwrap_or_else(|| "VDP port event failed".to_string());
            self.update_vm_result(port_uuid, res_fail, None, None, Some(&reason));
        }
    }

    /// `process_bulk_vm_event`: bulk resync (after save_uplink). The "up"
    /// entries are processed first (in list order per port, on the VM
    /// lanes: `lanes`), then the "down" ones, one after the other:
    /// each first restores what the controller or the host still knows
    /// (`pop_local_cache` -> `HostDriver::restore_port`) and is then
    /// processed as a VM event. Ups first, so a down finds every live port
    /// of its network in place and never takes (and puts back) flows that
    /// live VMs use; the original goes in list order. Remembered early ports
    /// not in the list are replayed afterwards.
    pub fn process_bulk_vm_event(&self, vms: &[VmPort]) {
        log::info!("In processing Bulk VM Event with {} entries", vms.len());
        {
            let mut st = self.state.lock();
            if !st.uplink_ready() {
                log::error!(
                    "Uplink Port Event not received, yet in bulk process; remembering the list"
                );
                for vm in vms {
                    remember_early(&mut st.early_ports, vm);
                }
                st.bulk = BulkStage::Awaited { rounds: 0 };
                return;
            }
        }
        let ups: Vec<&VmPort> = vms.iter().filter(|v| v.status == PortStatus::Up).collect();
        self.bulk_ups_in_lanes(&ups);
        for vm in vms.iter().filter(|v| v.status == PortStatus::Down) {
            if self.shutdown.is_set() {
                break;
            }
            self.host.restore_port(vm);
            self.process_vm_event(vm);
        }
        if self.shutdown.is_set() {
            log::info!("shutdown during bulk processing; the rest resyncs after restart");
            return;
        }
        self.host.bulk_resync_done();
        let leftovers: Vec<VmPort> = {
            let mut st = self.state.lock();
            std::mem::take(&mut st.early_ports).into_values().collect()
        };
        for vm in leftovers {
            if self.shutdown.is_set() {
                return;
            }
            log::info!(
                "replaying early event for port {} ({})",
                vm.port_uuid,
                vm.status
            );
            self.process_vm_event(&vm);
        }
    }

    /// A VSI changed (refresh / lldpad event): fix flows via
    /// `apply_vsi_change`, then report like `vdp_vlan_change_cb` (SUCCESS
    /// with the new VLANs), or CREATE:FAIL when the host could not apply it.
    pub fn process_vsi_change(&self, change: &VsiChange) {
        log::info!(
            "VSI change for {}: VDP VLAN {:?} -> {:?}",
            change.port_uuid,
            change.old_vdp_vlan,
            change.vdp_vlan
        );
        let out = self.host.apply_vsi_change(change);
        let lvid = out.local_vlan.or(change.local_vlan);
        let reason = out
            .fail_reason
            .clone()
            .or_else(|| change.fail_reason.clone());
        if out.ok {
            self.vdp_vlan_change_cb(
                &change.port_uuid,
                lvid,
                out.vdp_vlan.or(change.vdp_vlan),
                reason.as_deref(),
            );
        } else {
            let reason = reason.unwrap_or_else(|| "VSI change could not be applied".into());
            self.update_vm_result(
                &change.port_uuid,
                VmResult::CreateFail,
                None,
                None,
                Some(&reason),
            );
        }
    }
}
