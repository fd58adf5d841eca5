//! `LldpadDriver`, the periodic refresh: one list query, per-VSI queries
//! for what the list misses (and for pre-associated VSIs, which lldpad
//! lists only under their own mode), and the re-assertion of lost or
//! unusable VSIs in the mode and with the hints lldpad is to hold them.
//!
//! Owns nothing of its own (the driver's table). Calls the driver's
//! requests (`requests`) and `settle`.

use super::*;

impl LldpadDriver {
    /// One refresh round; returns the VSIs whose VLAN / fail reason changed
    /// (or unchanged for more than `CALLBACK_THRESHOLD` rounds).
    /// `local_vlan` is left `None` for the caller to fill.
    pub fn refresh(&self) -> Vec<VsiChange> {
        self.refresh_scoped(false)
    }

    /// A re-check of the VSIs awaiting their verdict only (the daemon's
    /// round every second while one is pending): one query each, nothing
    /// asked about the others, so a pending VSI among a thousand costs
    /// lldpad a few queries a second, not a thousand (which slowed its
    /// associations of a burst down). The others wait for the next
    /// refresh period.
    pub fn recheck_pending(&self) -> Vec<VsiChange> {
        self.refresh_scoped(true)
    }

    fn refresh_scoped(&self, only_pending: bool) -> Vec<VsiChange> {
        if !only_pending {
            self.retry_later_deassocs();
        }
        let (work, generation, recheck) = {
            let t = self.table.lock();
            // The daemon re-checks every second while a VSI awaits its
            // verdict: such a round is not a refresh period, so it does not
            // count toward the unchanged re-reports (else every VSI would
            // be re-reported every few seconds while one is pending).
            let pending = only_pending || t.vsis.values().any(|e| e.reply.awaiting_verdict());
            let work: Vec<(VsiRequest, u64, Intent)> = t
                .vsis
                .values()
                .filter(|e| !e.busy && !e.restored)
                .filter(|e| !only_pending || e.reply.awaiting_verdict())
                .map(|e| (e.req.clone(), e.version, e.intent))
                .collect();
            (work, t.generation, pending)
        };
        let rereport = self.round_rereport(recheck);
        if work.is_empty() {
            return Vec::new();
        }
        let mut listed: HashMap<String, VsiRecord> = HashMap::new();
        // A full round starts with one list query; a pending re-check asks
        // for its few VSIs one by one.
        let list = if only_pending {
            Ok(Vec::new())
        } else {
            self.list()
        };
        match list {
            Ok(recs) => {
                for r in recs {
                    listed.insert(r.uuid.to_ascii_lowercase(), r);
                }
            }
            Err(e) => log::warn!("refresh: list query on {} failed: {e}", self.port),
        }
        let mut bridge_silent = false;
        let nowait = self.events_attached.load(Ordering::Relaxed);
        let mut results: Vec<(String, u64, VdpReply)> = Vec::new();
        for (req, version, intent) in work {
            // The list holds assoc VSIs only; a pre-associated one is asked
            // for under its own mode.
            let listed = listed
                .get(&req.port_uuid.to_ascii_lowercase())
                .filter(|_| intent.mode == Mode::Assoc);
            let state = match listed {
                Some(rec) => Ok(Some(vdptool::record_state(
                    rec,
                    &req.vm_mac,
                    req.segmentation_id,
                ))),
                None => self.query_state(&req, intent.mode),
            };
            let reply = match state {
                Ok(Some(VsiState::Associated { vlan, .. })) => VdpReply::associated(vlan),
                Ok(Some(VsiState::InProgress)) => VdpReply::pending(),
                Ok(Some(VsiState::NoVlanYet { .. })) => VdpReply::no_vlan_yet(),
                other => {
                    // Missing or unusable: re-associate (the original's
                    // refresh sends assoc -W when the query is not valid).
                    let unusable = match &other {
                        Ok(Some(VsiState::Unusable { reason, .. })) => Some(reason.clone()),
                        _ => None,
                    };
                    if matches!(other, Ok(None)) && self.sent_quietly_lately(&req.port_uuid) {
                        // lldpad took an associate without a verdict and
                        // holds nothing: not again before sync_timeout_s,
                        // but say why the VSI is gone.
                        let lost = VdpReply {
                            fail_reason: Some(REASON_VSI_LOST.into()),
                            ..VdpReply::pending()
                        };
                        results.push((req.port_uuid.clone(), version, lost));
                        continue;
                    }
                    if !self.mark_busy(&req.port_uuid, version, generation) {
                        continue;
                    }
                    let guard = BusyGuard::new(self, &req.port_uuid);
                    let r = self.request_for_state(&req, other, !bridge_silent && !nowait, intent);
                    guard.disarm();
                    self.note_send(&req.port_uuid, &r);
                    bridge_silent |= r.pending && !nowait;
                    self.unmark_busy(&req.port_uuid);
                    if r.pending && nowait && r.fail_reason.is_none() {
                        // Sent; the verdict comes as an lldpad event (or a
                        // later round's query). Keep the known state.
                        VdpReply::pending()
                    } else if r.pending {
                        // Still no verdict: say why the VLAN is gone.
                        VdpReply {
                            fail_reason: Some(unusable.unwrap_or_else(|| REASON_VSI_LOST.into())),
                            ..r
                        }
                    } else {
                        r
                    }
                }
            };
            results.push((req.port_uuid.clone(), version, reply));
        }
        self.idle.notify_all();
        self.apply_refresh(results, generation, rereport)
    }

    pub(super) fn apply_refresh(
        &self,
        results: Vec<(String, u64, VdpReply)>,
        generation: u64,
        rereport: Rereport,
    ) -> Vec<VsiChange> {
        let mut changes = Vec::new();
        let mut t = self.table.lock();
        if t.generation != generation {
            return changes;
        }
        for (uuid, version, new) in results {
            let Some(e) = t.vsis.get_mut(&uuid) else {
                continue;
            };
            if e.version != version || e.busy {
                continue;
            }
            let old = e.reply.clone();
            // Pending without anything new to say: keep the old state.
            if new.pending && new.fail_reason.is_none() && new.vdp_vlan.is_none() {
                if !old.pending && old.vdp_vlan.is_none() && old.fail_reason.is_none() {
                    e.reply.pending = true;
                }
                continue;
            }
            if let Some(c) = settle(e, new, rereport) {
                changes.push(c);
            }
        }
        changes
    }

    pub(super) fn mark_busy(&self, uuid: &str, version: u64, generation: u64) -> bool {
        let mut t = self.table.lock();
        if t.generation != generation {
            return false;
        }
        match t.vsis.get_mut(uuid) {
            Some(e) if !e.busy && e.version == version => {
                e.busy = true;
                true
            }
            _ => false,
        }
    }

    pub(super) fn unmark_busy(&self, uuid: &str) {
        let mut t = self.table.lock();
        if let Some(e) = t.vsis.get_mut(uuid) {
            e.busy = false;
        }
        drop(t);
        self.idle.notify_all();
    }
}
