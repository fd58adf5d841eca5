//! `OvsDriver`, the flow check: put back ports and flows OVS lost (after a
//! vswitchd restart, a manual deletion) and remove stale ones of ours.
//!
//! Owns nothing of its own (the driver's state). Calls `ovs-vsctl`,
//! `ovs-ofctl` through the driver's runner.

use super::*;

impl OvsDriver {
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
        let mut st = self.lock_state();
        // From here on OVS itself is compared with the table.
        st.adoptable.clear();
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
