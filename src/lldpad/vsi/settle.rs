//! How a new reply for a VSI is put into its table entry, following the rule
//! "flows follow VLANs", and what change (if any) is reported for it.
//!
//! Owns the rule, and which refresh rounds count toward the unchanged
//! re-reports (`round_rereport`). Calls nothing.

use super::*;

/// The change to report for a VSI whose reply went from `old` to `new`
/// (`local_vlan` is left for the caller to fill).
pub(super) fn vsi_change(req: &VsiRequest, old_vlan: Option<u16>, new: &VdpReply) -> VsiChange {
    VsiChange {
        port_uuid: req.port_uuid.clone(),
        net_uuid: req.net_uuid.clone(),
        vm_mac: req.vm_mac.clone(),
        segmentation_id: req.segmentation_id,
        local_vlan: None,
        vdp_vlan: new.vdp_vlan,
        old_vdp_vlan: old_vlan,
        fail_reason: new.fail_reason.clone(),
    }
}

/// Whether a settled state is reported even when unchanged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Rereport {
    /// Refresh: again after `CALLBACK_THRESHOLD` unchanged rounds.
    AfterThreshold,
    /// Events: only changes.
    Never,
}

impl LldpadDriver {
    /// Does this refresh round count toward the unchanged re-reports? Not a
    /// `recheck` (a VSI awaits its verdict: the daemon's 1 s re-check)
    /// unless a refresh period passed since the last counted round.
    pub(super) fn round_rereport(&self, recheck: bool) -> Rereport {
        let mut last = self.counted_round.lock();
        let period = Duration::from_secs(self.cfg.sync_timeout_s);
        if !recheck || last.is_none_or(|t| t.elapsed() + RECHECK_SLACK >= period) {
            *last = Some(Instant::now());
            Rereport::AfterThreshold
        } else {
            Rereport::Never
        }
    }
}

/// Put a new reply into an entry, following the rule "flows follow VLANs":
/// a VSI that held a VLAN and now has none without a verdict (lost at the
/// switch or in lldpad, no answer, lldpad not ready) is marked as being
/// re-asserted and nothing is reported (its flows stay); a VLAN coming
/// back, another VLAN, or a verdict is reported as a change from the VLAN
/// it held.
pub(super) fn settle(e: &mut Entry, new: VdpReply, rereport: Rereport) -> Option<VsiChange> {
    let held = e.reply.vdp_vlan.or(e.reasserting);
    if new.vdp_vlan.is_none() && !new.is_verdict() && held.is_some() {
        if e.reasserting.is_none() {
            log::warn!(
                "VSI {} lost ({}): re-asserting; the flows of VDP VLAN {held:?} stay",
                e.req.port_uuid,
                new.fail_reason.as_deref().unwrap_or("no answer")
            );
        }
        e.reasserting = held;
        e.reply = VdpReply {
            vdp_vlan: None,
            fail_reason: new.fail_reason.or_else(|| Some(REASON_VSI_LOST.into())),
            pending: true,
            transient: true,
            no_vlan_yet: false,
        };
        e.unchanged_rounds = 0;
        return None;
    }
    let old = std::mem::replace(&mut e.reply, new.clone());
    let old_vlan = old.vdp_vlan.or(e.reasserting.take());
    let changed = new.vdp_vlan != old_vlan
        || new.fail_reason != old.fail_reason
        || new.no_vlan_yet != old.no_vlan_yet;
    if changed || (rereport == Rereport::AfterThreshold && e.unchanged_rounds > CALLBACK_THRESHOLD)
    {
        e.unchanged_rounds = 0;
        Some(vsi_change(&e.req, old_vlan, &new))
    } else {
        if rereport == Rereport::AfterThreshold {
            e.unchanged_rounds += 1;
        }
        None
    }
}
