//! `OvsDriver`, VM ports: the local VLAN (Neutron's tag) of a VM port, the
//! LocalVlan table and its translation flows (add, remove, VLAN change,
//! restore), and what `status` shows of them.
//!
//! Owns nothing of its own (the driver's state). Calls `ovs-vsctl`,
//! `ovsdb-client`, `ovs-ofctl` through the driver's runner.

use super::*;

impl OvsDriver {
    // ---- VM ports: local VLAN ------------------------------------------

    /// Interface name and usable tag of `port_uuid` with two short
    /// `ovsdb-client` selects (see `vsctl::iface_query_argv`); an error only
    /// means the caller uses the `ovs-vsctl` path.
    pub(super) fn quick_local_vlan(
        &self,
        port_uuid: &str,
    ) -> Result<Option<(String, Option<u16>)>, OvsError> {
        if let Some(m) = &self.ovsdb {
            match m.lookup(port_uuid) {
                Ok(r) => return Ok(r),
                Err(e) => log::debug!("ovs: {e}; using ovsdb-client"),
            }
        }
        let parse_err = |detail| OvsError::Parse {
            cmd: "ovsdb-client transact (local VLAN lookup)".into(),
            detail,
        };
        let out = self.vsctl(&vsctl::iface_query_argv(port_uuid))?;
        let Some((name, id)) = vsctl::parse_iface_query(&out).map_err(parse_err)? else {
            return Ok(None);
        };
        let out = self.vsctl(&vsctl::port_tag_query_argv(&id))?;
        let tag = vsctl::parse_port_tag_query(&out).map_err(parse_err)?;
        Ok(Some((name, tag)))
    }

    pub(super) fn find_iface(&self, port_uuid: &str) -> Result<Option<String>, OvsError> {
        let argv = vsctl::find_iface_argv(port_uuid);
        let out = self.vsctl(&argv)?;
        let names = vsctl::parse_iface_names(&out).map_err(|detail| OvsError::Parse {
            cmd: argv.join(" "),
            detail,
        })?;
        Ok(names.into_iter().next())
    }

    /// The local VLAN (Neutron's tag on the Port) of the interface whose
    /// `external_ids:iface-id` is `port_uuid`, now (2 `ovs-vsctl` calls).
    pub fn port_local_vlan(&self, port_uuid: &str) -> Result<u16, OvsError> {
        if !valid_port_id(port_uuid) {
            return Err(OvsError::BadPortId(port_uuid.to_string()));
        }
        let name = self
            .find_iface(port_uuid)?
            .ok_or_else(|| OvsError::UnknownPortName(port_uuid.to_string()))?;
        let out = self.vsctl(&vsctl::get_tag_argv(&name))?;
        vsctl::parse_tag(&out).ok_or(OvsError::InvalidPortVlan(name))
    }

    /// Like `port_local_vlan`, waiting up to `wait` for the interface and
    /// its tag to appear. The tag is awaited with `ovs-vsctl wait-until`
    /// (an OVSDB monitor: returns the moment Neutron sets it) in slices of
    /// at most 1 s so shutdown is noticed; the interface lookup is polled
    /// every `iface_poll` (100 ms) with shutdown-aware waits. Never waits
    /// longer than `wait` (the last slice is killed at the deadline).
    /// First two short `ovsdb-client` selects: when the port is already
    /// plugged and tagged (the usual case, and every port of a bulk resync)
    /// that is all (a few ms instead of two `ovs-vsctl` calls that each copy
    /// the whole port table: ~40 ms at 1000 ports, measured by scripts/bench).
    pub fn wait_port_local_vlan(
        &self,
        port_uuid: &str,
        wait: Duration,
        shutdown: &Shutdown,
    ) -> Result<u16, OvsError> {
        if !valid_port_id(port_uuid) {
            return Err(OvsError::BadPortId(port_uuid.to_string()));
        }
        let deadline = Instant::now() + wait;
        // With the OVSDB monitor: the tag the moment Neutron sets it.
        if let Some(m) = &self.ovsdb {
            let t0 = Instant::now();
            let r = m.wait_tag(port_uuid, deadline, shutdown);
            log::debug!(
                "ovs: ovsdb monitor tag of {port_uuid} in {:?}",
                t0.elapsed()
            );
            match r {
                Ok(Some((_, Some(tag)))) => return Ok(tag),
                Ok(Some((name, None))) => return Err(OvsError::InvalidPortVlan(name)),
                Ok(None) => return Err(OvsError::UnknownPortName(port_uuid.to_string())),
                Err(_) if shutdown.is_set() => return Err(OvsError::Shutdown),
                Err(e) => log::debug!("ovs: {e}; using ovsdb-client / ovs-vsctl"),
            }
        }
        // Fast path: the port is normally plugged and tagged by now.
        match self.quick_local_vlan(port_uuid) {
            Ok(Some((_, Some(tag)))) => return Ok(tag),
            Ok(_) => {}
            Err(e) => log::debug!("ovs: quick local VLAN lookup of {port_uuid}: {e}"),
        }
        let name = loop {
            if let Some(n) = self.find_iface(port_uuid)? {
                break n;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OvsError::UnknownPortName(port_uuid.to_string()));
            }
            if shutdown.wait(left.min(self.opts.iface_poll)) {
                return Err(OvsError::Shutdown);
            }
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // one last non-blocking look
                let out = self.vsctl(&vsctl::get_tag_argv(&name))?;
                return vsctl::parse_tag(&out).ok_or(OvsError::InvalidPortVlan(name));
            }
            let slice = left.min(Duration::from_secs(1));
            let secs = slice.as_secs_f64().ceil().max(1.0) as u32;
            let argv = vsctl::wait_tag_argv(&name, secs);
            match self.runner.run_any_timeout(&argv, slice) {
                Ok(out) if out.success() => {
                    // The tag may be an invalid one (e.g. 4095 "dead VLAN").
                    if let Some(t) = vsctl::parse_tag(&out.stdout) {
                        return Ok(t);
                    }
                    if shutdown.wait(left.min(self.opts.iface_poll)) {
                        return Err(OvsError::Shutdown);
                    }
                }
                Ok(_) | Err(ExecError::Timeout { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if shutdown.is_set() {
                return Err(OvsError::Shutdown);
            }
        }
    }

    // ---- LocalVlan table + translation flows ---------------------------

    /// Patch ports for VM flows: known from setup / the last check, else
    /// looked up now.
    pub(super) fn patch(&self, st: &mut State) -> Result<Patch, OvsError> {
        if let Some(p) = &st.patch {
            return Ok(p.clone());
        }
        let snap = self.snapshot(&[])?;
        let p = self.check_bridges(&snap)?;
        st.patch = Some(p.clone());
        Ok(p)
    }

    /// Apply a table change: at most one ovs-ofctl call per bridge. A
    /// removal whose match equals the new flow's is folded into the add
    /// (OVS replaces the entry in place: no gap in forwarding).
    pub(super) fn apply(&self, st: &mut State, change: FlowChange) -> FlowUpdate {
        if change.is_empty() {
            return FlowUpdate::default();
        }
        let patch = match self.patch(st) {
            Ok(p) => p,
            Err(e) => {
                log::error!("ovs: cannot program VM flows: {e}");
                return FlowUpdate {
                    change,
                    error: Some(e.to_string()),
                };
            }
        };
        let sides: [(&str, MakeFlow, u32); 2] = [
            (&self.br_int, flows::vm_int_flow, patch.int_ofport),
            (&self.br_ex, flows::vm_ex_flow, patch.ex_ofport),
        ];
        let mut plans = Vec::new();
        for (br, make, ofport) in sides {
            let new = change.install.map(|(l, v)| make(ofport, l, v));
            let old = change.remove.map(|(l, v)| make(ofport, l, v));
            // New flow first, then the old one goes: a VLAN swap never
            // leaves the bridge without a translation flow.
            let mut ops = Vec::new();
            let replaced = old
                .as_ref()
                .filter(|o| !new.as_ref().is_some_and(|n| n.same_match(o)))
                .cloned();
            if let Some(new) = new {
                // A flow the previous run left exactly as wanted is
                // adopted, not written again.
                if !st.adoptable.remove(&(br.to_string(), new.clone())) {
                    ops.push(FlowOp::Add(new));
                }
            }
            if let Some(old) = replaced {
                ops.push(FlowOp::DeleteStrict(old));
            }
            plans.push((br, ops, old));
        }
        // The bridges are independent: their ovs-ofctl calls run side by
        // side (a new network's flows cost one call's time, not two).
        let results =
            self.run_ops_on_bridges(plans.iter().map(|(br, ops, _)| (*br, ops.as_slice())));
        let mut errors = Vec::new();
        for ((br, _, old), res) in plans.into_iter().zip(results) {
            if let Err(e) = res {
                log::error!("ovs: VM flows on {br} ({change:?}): {e}");
                if let Some(old) = old {
                    st.leftovers.push((br.to_string(), old));
                }
                errors.push(e.to_string());
            }
        }
        FlowUpdate {
            change,
            error: if errors.is_empty() {
                None
            } else {
                Some(errors.join("; "))
            },
        }
    }

    /// VM port up with the VDP VLAN the switch gave (`None` + reason when
    /// it gave none). The network's first valid VLAN installs
    /// `priority=4,in_port=<ext patch>,dl_vlan=<local>,actions=mod_vlan_vid:<vdp>,normal`
    /// on the external bridge and
    /// `priority=3,in_port=<int patch>,dl_vlan=<vdp>,actions=mod_vlan_vid:<local>,normal`
    /// on the integration bridge; further ports with the same VLAN only
    /// count; a different valid VLAN moves the flows to it. Err only when
    /// the table refuses (invalid local VLAN); OVS failures are in
    /// `FlowUpdate::error`.
    pub fn add_vm_port(
        &self,
        net_uuid: &str,
        local_vlan: u16,
        port_uuid: &str,
        vdp_vlan: Option<u16>,
        fail_reason: Option<String>,
    ) -> Result<FlowUpdate, OvsError> {
        let mut st = self.lock_state();
        let change = st
            .table
            .add_port(net_uuid, local_vlan, port_uuid, vdp_vlan, fail_reason)?;
        Ok(self.apply(&mut st, change))
    }

    /// VM port down. Flows go with the network's last port (or when no port
    /// left holds a valid VLAN; or they move to the one VLAN the remaining
    /// ports agree on). Err (nothing changed) for an unknown network or
    /// port; the error texts are the original's fail reasons.
    pub fn remove_vm_port(&self, net_uuid: &str, port_uuid: &str) -> Result<PortRemoval, OvsError> {
        let mut st = self.lock_state();
        let r = st.table.remove_port(net_uuid, port_uuid)?;
        let flows = self.apply(&mut st, r.change);
        Ok(PortRemoval {
            local_vlan: r.local_vlan,
            port_vdp_vlan: r.port_vdp_vlan,
            net_vdp_vlan: r.net_vdp_vlan,
            net_removed: r.net_removed,
            flows,
        })
    }

    /// The switch changed one port's VDP VLAN (`vdp_vlan_change`): a new
    /// valid VLAN replaces the network's flows at once (old removed, new
    /// installed); `None` removes them only when no port of the network
    /// holds a valid VLAN any more.
    pub fn set_port_vdp_vlan(
        &self,
        net_uuid: &str,
        port_uuid: &str,
        vdp_vlan: Option<u16>,
        fail_reason: Option<String>,
    ) -> Result<VlanChange, OvsError> {
        let mut st = self.lock_state();
        let (local_vlan, change) =
            st.table
                .set_port_vlan(net_uuid, port_uuid, vdp_vlan, fail_reason)?;
        let flows = self.apply(&mut st, change);
        Ok(VlanChange { local_vlan, flows })
    }

    /// After a restart (`pop_local_cache`): remember a port and its VLANs
    /// without touching flows (they are still in OVS; `check_flows` puts
    /// them back if not).
    pub fn restore_vm_port(
        &self,
        net_uuid: &str,
        local_vlan: u16,
        port_uuid: &str,
        vdp_vlan: Option<u16>,
    ) {
        self.lock_state()
            .table
            .restore_port(net_uuid, local_vlan, port_uuid, vdp_vlan);
    }

    /// `get_lvid_vdp_vlan`: the network's local VLAN and the port's VDP VLAN
    /// (as of the last operation; never waits for a command).
    pub fn port_vlans(&self, net_uuid: &str, port_uuid: &str) -> Option<(u16, Option<u16>)> {
        let v = self.view();
        let net = v.nets.get(net_uuid)?;
        let p = net.ports.iter().find(|p| p.port_uuid == port_uuid)?;
        Some((net.local_vlan, p.vdp_vlan))
    }

    /// The network's local VLAN as the table knows it (another of its
    /// ports is known).
    pub fn net_local_vlan(&self, net_uuid: &str) -> Option<u16> {
        self.view().nets.get(net_uuid).map(|n| n.local_vlan)
    }

    /// The local VLAN our installed translation flow on the integration
    /// bridge maps `vdp_vlan` to (one dump): what a bulk "down" entry that
    /// carries no VLANs still left in OVS after a restart, when the table
    /// does not know its network.
    pub fn installed_local_vlan(&self, vdp_vlan: u16) -> Option<u16> {
        let present = self
            .dump_flows(&self.br_int, Some(&ofctl::our_cookie_filter()))
            .map_err(|e| log::warn!("ovs: reading {}'s flows: {e}", self.br_int))
            .ok()?;
        let want = vdp_vlan.to_string();
        present
            .iter()
            .filter(|f| f.cookie == FLOW_COOKIE && f.priority == flows::VM_INT_PRIO)
            .find(|f| f.get("dl_vlan") == Some(want.as_str()))
            .and_then(flows::mod_vlan_target)
    }

    /// The network's installed VDP VLAN (`late_binding_vlan`).
    pub fn net_vdp_vlan(&self, net_uuid: &str) -> Option<u16> {
        self.view().nets.get(net_uuid)?.vdp_vlan
    }

    /// Snapshot of the LocalVlan table for `status`.
    pub fn local_vlans(&self) -> Vec<LocalVlanInfo> {
        self.view().nets.values().cloned().collect()
    }

    /// The running ovs-vswitchd's pid, from its pid file (read directly:
    /// no process). `None` when there is no pid file, it is unreadable or
    /// malformed, or the process is gone (a zombie counts as gone).
    pub fn vswitchd_pid(&self) -> Option<u32> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(self.opts.run_dir.join("ovs-vswitchd.pid"))
            .ok()?
            .take(32)
            .read_to_string(&mut text)
            .ok()?;
        let pid: u32 = text.trim().parse().ok().filter(|p| *p > 0)?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // State is the field after the parenthesised command name.
        let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
        (state != "Z" && state != "X").then_some(pid)
    }
}
