//! `OvsDriver`, bridges and uplink: the bridges' presence, the patch ports,
//! the LLDP veth pair, the uplink and veth ports of the external bridge and
//! the pass-through flows (set up, tear down).
//!
//! Owns nothing of its own (the driver's state). Calls `ip`, `ovs-vsctl`,
//! `ovs-ofctl` through the driver's runner.

use super::*;

impl OvsDriver {
    // ---- bridges and uplink --------------------------------------------

    /// `is_openstack_running`: both bridges exist (one `ovs-vsctl list-br`).
    pub fn bridges_present(&self) -> bool {
        match self.runner.run(&vsctl::list_br_argv()) {
            Ok(out) => {
                let brs = vsctl::parse_list_br(&out.stdout);
                brs.contains(&self.br_int) && brs.contains(&self.br_ex)
            }
            Err(e) => {
                log::warn!("ovs: cannot list bridges: {e}");
                false
            }
        }
    }

    pub(super) fn check_bridges(&self, snap: &vsctl::Snapshot) -> Result<Patch, OvsError> {
        if !snap.has_bridge(&self.br_int) || !snap.has_bridge(&self.br_ex) {
            return Err(OvsError::BridgesMissing {
                bridges: snap.bridges.keys().cloned().collect(),
                br_int: self.br_int.clone(),
                br_ex: self.br_ex.clone(),
            });
        }
        let Some((ex, int)) = snap.interconnect(&self.br_int, &self.br_ex) else {
            return Err(OvsError::PatchPortsMissing {
                ex_peer: None,
                int_peer: None,
            });
        };
        match (
            vsctl::valid_ofport(ex.ofport),
            vsctl::valid_ofport(int.ofport),
        ) {
            (Some(e), Some(i)) => Ok(Patch {
                ex: ex.name,
                ex_ofport: e,
                int: int.name,
                int_ofport: i,
            }),
            _ => Err(OvsError::PeerOfport {
                phy: ex.ofport.unwrap_or(-1),
                int: int.ofport.unwrap_or(-1),
            }),
        }
    }

    /// Make sure the veth pair exists (reusing an existing pair, so its MAC
    /// and with it the VSIs at the leaf stay the same) and both ends are up.
    /// Returns whether it was created.
    pub(super) fn ensure_veth(&self, ovs_veth: &str, lldp_veth: &str) -> Result<bool, OvsError> {
        let links = self.veths()?;
        let o = links.iter().find(|l| l.name == ovs_veth);
        let l = links.iter().find(|l| l.name == lldp_veth);
        let paired = matches!((o, l), (Some(o), Some(_)) if o.peer.as_deref() == Some(lldp_veth));
        if paired {
            for end in [o, l].into_iter().flatten() {
                if !end.up {
                    self.runner
                        .run(&["ip", "link", "set", "dev", &end.name, "up"])?;
                }
            }
            return Ok(false);
        }
        // A half pair (one end renamed or a stray device): start clean.
        for stray in [o, l].into_iter().flatten() {
            log::warn!("ovs: removing unpaired veth end {}", stray.name);
            let _ = self
                .runner
                .run_any(&["ip", "link", "del", "dev", &stray.name]);
        }
        self.runner
            .run(&[
                "ip", "link", "add", lldp_veth, "up", "type", "veth", "peer", "name", ovs_veth,
            ])
            .map_err(|e| OvsError::Veth(e.to_string()))?;
        self.runner
            .run(&["ip", "link", "set", "dev", ovs_veth, "up"])
            .map_err(|e| OvsError::Veth(e.to_string()))?;
        log::info!("ovs: created veth pair {lldp_veth}/{ovs_veth}");
        Ok(true)
    }

    /// Put the uplink and LLDPO ports into the external bridge (one
    /// transaction) unless they are there with a valid ofport; returns
    /// their ofports and whether anything was added. `veth_new`: the veth
    /// pair was just (re)created, so an LLDPO row left from the old device
    /// is replaced to make OVS open the new one.
    pub(super) fn ensure_ports(
        &self,
        snap: &vsctl::Snapshot,
        uplink: &str,
        ovs_veth: &str,
        veth_new: bool,
    ) -> Result<(u32, u32, bool), OvsError> {
        let mut argv = vec![
            "ovs-vsctl".to_string(),
            format!("--timeout={}", vsctl::VSCTL_TIMEOUT_S),
        ];
        let mut current = Vec::new();
        for port in [uplink, ovs_veth] {
            match snap.bridge_of(port) {
                Some(br) if br == self.br_ex => {
                    let of = snap.ifaces.get(port).copied().flatten();
                    let stale = veth_new && port == ovs_veth;
                    if let (Some(of), false) = (vsctl::valid_ofport(of), stale) {
                        current.push(Some(of));
                        continue;
                    }
                    // In the bridge but OVS could not open it (device was
                    // recreated): replace the row so OVS opens it again.
                    argv.extend(
                        ["--", "--if-exists", "del-port", &self.br_ex, port]
                            .iter()
                            .map(|s| s.to_string()),
                    );
                    argv.extend(
                        ["--", "add-port", &self.br_ex, port]
                            .iter()
                            .map(|s| s.to_string()),
                    );
                }
                Some(br) => {
                    return Err(OvsError::UplinkOnOtherBridge {
                        port: port.to_string(),
                        bridge: br.to_string(),
                    })
                }
                None => {
                    argv.extend(
                        ["--", "--may-exist", "add-port", &self.br_ex, port]
                            .iter()
                            .map(|s| s.to_string()),
                    );
                }
            }
            current.push(None);
        }
        let added = current.iter().any(Option::is_none);
        if added {
            self.vsctl(&argv)?;
            let of = self.ofports(&[uplink, ovs_veth])?;
            current = of.into_iter().map(vsctl::valid_ofport).collect();
        }
        let up = current[0].ok_or(OvsError::UplinkOfport)?;
        let lo = current[1].ok_or(OvsError::LldpOfport)?;
        Ok((up, lo, added))
    }

    /// Passthrough flows on the external bridge: dump, then one call with
    /// the difference (stale NCB LLDP/ECP flows out, missing ones in).
    /// Returns (added, removed).
    pub(super) fn ensure_passthrough(
        &self,
        lldp_ofport: u32,
        uplink_ofport: u32,
    ) -> Result<(usize, usize, Vec<Flow>), OvsError> {
        let present = self.dump_flows(&self.br_ex, None)?;
        let want = flows::passthrough_flows(lldp_ofport, uplink_ofport);
        let ops = flows::reconcile(&present, &want, flows::is_passthrough_class);
        self.run_ops(&self.br_ex, &ops)?;
        let (added, removed) = count_ops(&ops);
        Ok((added, removed, present))
    }

    /// Our VM translation flows present on both bridges when the uplink is
    /// set up (`ex_present`: the external bridge's dump already taken; one
    /// more dump of the integration bridge), for [`State::adoptable`].
    fn adoptable_flows(&self, ex_present: Vec<Flow>) -> BTreeSet<(String, Flow)> {
        let int_present = self
            .dump_flows(&self.br_int, Some(&ofctl::our_cookie_filter()))
            .map_err(|e| log::warn!("ovs: reading {}'s flows: {e}", self.br_int))
            .unwrap_or_default();
        let mut set = BTreeSet::new();
        for (br, prio, present) in [
            (&self.br_ex, flows::VM_EX_PRIO, ex_present),
            (&self.br_int, flows::VM_INT_PRIO, int_present),
        ] {
            set.extend(
                present
                    .into_iter()
                    .filter(|f| f.cookie == FLOW_COOKIE && f.priority == prio)
                    .map(|f| (br.clone(), f)),
            );
        }
        set
    }

    /// Set the uplink up on the OVS side: veth pair (reused when present),
    /// both ends up, uplink + LLDPO ports in the external bridge (one
    /// transaction, `--may-exist`: ports already there keep their ofports),
    /// patch ports found, and exactly the 4 pass-through flows on the
    /// external bridge. VM translation flows are not touched (an agent
    /// restart must not disturb traffic).
    pub fn setup_uplink(&self, uplink: &str) -> Result<UplinkPorts, OvsError> {
        check_ifname(uplink)?;
        let (ovs_veth, lldp_veth) = veth::veth_names(uplink);
        let mut st = self.lock_state();
        if let Some(old) = st.uplink.as_ref().filter(|u| u.uplink != uplink) {
            log::warn!(
                "ovs: setting up uplink {uplink} while {} is set up; its pass-through flows are replaced, its ports stay (tear it down first)",
                old.uplink
            );
        }
        let snap = self.snapshot(&[uplink, &ovs_veth])?;
        let patch = self.check_bridges(&snap)?;
        st.patch = Some(patch.clone());
        let veth_created = self.ensure_veth(&ovs_veth, &lldp_veth)?;
        let (uplink_ofport, ovs_veth_ofport, _) =
            self.ensure_ports(&snap, uplink, &ovs_veth, veth_created)?;
        let (added, removed, ex_present) =
            self.ensure_passthrough(ovs_veth_ofport, uplink_ofport)?;
        st.adoptable = self.adoptable_flows(ex_present);
        log::info!(
            "ovs: uplink {uplink} set up (veth {lldp_veth}/{ovs_veth} {}; ofports uplink {uplink_ofport} veth {ovs_veth_ofport}; passthrough +{added} -{removed})",
            if veth_created { "created" } else { "reused" }
        );
        let ports = UplinkPorts {
            uplink: uplink.to_string(),
            ovs_veth,
            lldp_veth,
            uplink_ofport,
            ovs_veth_ofport,
            ex_patch: patch.ex,
            ex_patch_ofport: patch.ex_ofport,
            int_patch: patch.int,
            int_patch_ofport: patch.int_ofport,
            veth_created,
        };
        st.uplink = Some(ports.clone());
        Ok(ports)
    }

    /// The uplink as last set up.
    pub fn uplink(&self) -> Option<UplinkPorts> {
        self.view().uplink.clone()
    }

    /// Tear the uplink down (`clear_obj_params`): every flow of ours on both
    /// bridges (pass-through, with any other NCB LLDP/ECP flow, and VM
    /// translation flows), the LLDPO and uplink ports of the external bridge
    /// (one transaction), and the LocalVlan table. The veth pair stays, as
    /// in the original: recreating it would change its MAC and the leaf
    /// would see the station's VSIs come from a new station. For an uplink
    /// this driver did not set up, does `delete_uplink_and_flows`.
    /// Goes on after errors; returns the first.
    pub fn teardown_uplink(&self, uplink: &str) -> Result<(), OvsError> {
        check_ifname(uplink)?;
        let mut st = self.lock_state();
        if st.uplink.as_ref().map(|u| u.uplink.as_str()) != Some(uplink) {
            drop(st);
            return self.delete_uplink_and_flows(uplink);
        }
        let (ovs_veth, _) = veth::veth_names(uplink);
        st.adoptable.clear();
        let mut first: Option<OvsError> = None;
        let mut ex_ops = flows::passthrough_glob_deletes();
        ex_ops.push(FlowOp::Delete(ofctl::our_cookie_filter()));
        if let Err(e) = self.run_ops(&self.br_ex, &ex_ops) {
            log::error!("ovs: teardown: flows of {}: {e}", self.br_ex);
            first.get_or_insert(e);
        }
        let int_ops = [FlowOp::Delete(ofctl::our_cookie_filter())];
        if let Err(e) = self.run_ops(&self.br_int, &int_ops) {
            log::error!("ovs: teardown: flows of {}: {e}", self.br_int);
            first.get_or_insert(e);
        }
        if let Err(e) = self.vsctl(&vsctl::del_ports_argv(&self.br_ex, &[&ovs_veth, uplink])) {
            log::error!("ovs: teardown: ports: {e}");
            first.get_or_insert(e);
        }
        let had = st.table.clear();
        st.leftovers.clear();
        st.uplink = None;
        log::info!(
            "ovs: uplink {uplink} torn down ({} networks' flows removed)",
            had.len()
        );
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The original's `delete_uplink_and_flows` for an uplink this process
    /// never set up: every NCB LLDP/ECP flow of the external bridge, then —
    /// only when the uplink is a port of the external bridge — the uplink and
    /// LLDPO ports (one transaction). VM flows are left alone. Unlike the
    /// original, the LLDPO name is cut to 10 characters like at setup.
    pub fn delete_uplink_and_flows(&self, uplink: &str) -> Result<(), OvsError> {
        check_ifname(uplink)?;
        let (ovs_veth, _) = veth::veth_names(uplink);
        let mut first: Option<OvsError> = None;
        if let Err(e) = self.run_ops(&self.br_ex, &flows::passthrough_glob_deletes()) {
            log::error!("ovs: delete_uplink_and_flows: flows: {e}");
            first.get_or_insert(e);
        }
        let on_br = self
            .runner
            .run_any(&vsctl::port_to_br_argv(uplink))
            .map(|o| {
                if o.success() {
                    o.stdout.trim().to_string()
                } else {
                    String::new()
                }
            });
        match on_br {
            Ok(br) if br == self.br_ex => {
                if let Err(e) =
                    self.vsctl(&vsctl::del_ports_argv(&self.br_ex, &[uplink, &ovs_veth]))
                {
                    log::error!("ovs: delete_uplink_and_flows: ports: {e}");
                    first.get_or_insert(e);
                }
            }
            Ok(br) if !br.is_empty() => {
                log::error!(
                    "ovs: port {uplink} added to wrong bridge {br}, given {}",
                    self.br_ex
                );
            }
            Ok(_) => {}
            Err(e) => {
                first.get_or_insert(e.into());
            }
        }
        let mut st = self.lock_state();
        if st.uplink.as_ref().map(|u| u.uplink.as_str()) == Some(uplink) {
            st.uplink = None;
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
