//! The lldpad side of the host driver, shared with the lldpad event
//! watcher's tasks: the current VSI driver, lldpad restart detection, and
//! what a watcher notice does (re-assert a lost VSI, recover after an
//! lldpad restart).
//!
//! Owns the shared state. Calls `lldptool` and the VSI driver.

use super::*;

/// State shared between the host and its lldpad event watcher thread.
/// Lock order: `lldpad` is only held to clone the `Arc` out; `refresh` is
/// held across one refresh round (it serialises rounds of the
/// `lldpad-client` thread and the event watcher, nothing else takes it).
pub(super) struct Shared {
    pub(super) runner: Arc<Runner>,
    pub(super) shutdown: Shutdown,
    /// VSI driver of the uplink that is set up (None before `uplink_up`).
    pub(super) lldpad: Mutex<Option<Arc<LldpadDriver>>>,
    pub(super) refresh: Mutex<()>,
    /// lldpad's pid as last seen (restart detection without events).
    pub(super) lldpad_pid: Mutex<Option<u32>>,
    /// The event watcher is attached to lldpad.
    pub(super) events_attached: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(super) fn driver(&self) -> Option<Arc<LldpadDriver>> {
        self.lldpad.lock().clone()
    }

    pub(super) fn set_events_attached(&self, on: bool) {
        self.events_attached
            .store(on, std::sync::atomic::Ordering::Relaxed);
        if let Some(d) = self.driver() {
            d.set_events_attached(on);
        }
    }

    /// LLDP, EVB and group ids on the lldpad-side veth (the original's
    /// `enable_lldp` + `enable_evb` + `enable_gpid`).
    pub(super) fn enable_port(&self, veth: &str) -> Result<(), UplinkSetupError> {
        lldptool::enable_lldp(&self.runner, veth)
            .and_then(|_| lldptool::enable_evb(&self.runner, veth))
            .and_then(|_| lldptool::enable_gpid(&self.runner, veth))
            .map_err(|e| {
                log::error!("host: cannot enable LLDP/EVB on {veth}: {e}");
                UplinkSetupError::Evb
            })
    }

    /// Wait (bounded by `VDP_READY_WAIT`, shutdown-aware) until lldpad on
    /// `veth` sees the bridge's EVB TLV, so the first associations do not
    /// hit lldpad's "not supported yet" stage. Not seeing it is no error:
    /// associations made before are pending and retried every second.
    pub(super) fn wait_vdp_ready(&self, veth: &str) -> bool {
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
    pub(super) fn refresh(&self) -> Vec<VsiChange> {
        let Some(d) = self.driver() else {
            return Vec::new();
        };
        let _round = self.refresh.lock();
        d.refresh()
    }

    /// A re-check of the pending VSIs only, serialised with any round.
    pub(super) fn recheck_pending(&self) -> Vec<VsiChange> {
        let Some(d) = self.driver() else {
            return Vec::new();
        };
        let _round = self.refresh.lock();
        d.recheck_pending()
    }

    /// lldpad restarted (it keeps VSIs and, depending on its version, its
    /// settings only in memory): re-apply LLDP/EVB/group ids on the veth,
    /// wait for VDP, then re-assert every VSI. The refresh compares the
    /// VLANs lldpad/the switch give with what is installed and reports only
    /// differences.
    pub(super) fn recover_lldpad(&self) -> Vec<VsiChange> {
        let Some(d) = self.driver() else {
            return Vec::new();
        };
        let veth = d.port().to_string();
        log::warn!("host: lldpad restarted: re-applying settings on {veth} and re-asserting VSIs");
        crate::metrics::lldpad_restart();
        d.note_lldpad_start();
        if self.enable_port(&veth).is_ok() {
            self.wait_vdp_ready(&veth);
        }
        self.refresh()
    }

    /// Has lldpad's pid changed since last seen? (one `lldptool -p`)
    pub(super) fn lldpad_restarted(&self) -> bool {
        let Ok(pid) = lldptool::lldpad_pid(&self.runner) else {
            return false;
        };
        let mut last = self.lldpad_pid.lock();
        let restarted = last.is_some_and(|old| old != pid);
        *last = Some(pid);
        restarted
    }

    /// One notice of the lldpad event watcher (runs on its notify thread).
    pub(super) fn on_notice(&self, notice: LldpadNotice, sink: &VsiSink) {
        crate::metrics::lldpad_event(notice_kind(&notice));
        match notice {
            LldpadNotice::Vdp(ev) => {
                let Some(d) = self.driver() else {
                    return;
                };
                match ev.kind {
                    VdpEventKind::Associated => {
                        if let Some(vlan) = ev.vlan {
                            if let Some(c) = d.apply_event(&ev.uuid, EventVerdict::Vlan(vlan)) {
                                sink(c);
                            }
                        }
                    }
                    VdpEventKind::Deassociated | VdpEventKind::Failed => {
                        // The reason as vdptool prints it (what the controller
                        // is told when the request went through vdptool),
                        // whichever way the verdict arrives.
                        let reason = ev
                            .hints
                            .and_then(crate::lldpad::clif::vdptool_error_text)
                            .or_else(|| ev.error.clone())
                            .unwrap_or_else(|| {
                                crate::lldpad::vdptool::DEASSOC_NO_REASON.to_string()
                            });
                        let held = d.vsis().into_iter().find_map(|(r, reply)| {
                            (r.port_uuid == ev.uuid).then_some(reply.vdp_vlan)
                        });
                        let lost = d.apply_event(&ev.uuid, EventVerdict::Ended(reason.clone()));
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

/// The `kind` label of a watcher notice (`crate::metrics`).
fn notice_kind(n: &LldpadNotice) -> &'static str {
    match n {
        LldpadNotice::Vdp(ev) => match ev.kind {
            VdpEventKind::Associated => "associated",
            VdpEventKind::Deassociated => "deassociated",
            VdpEventKind::Failed => "failed",
        },
        LldpadNotice::Restarted { .. } => "restarted",
        LldpadNotice::Lost(_) => "lost",
        LldpadNotice::Attached => "attached",
    }
}
