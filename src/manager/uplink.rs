//! `VdpMgr`, the uplink side: the periodic uplink task (detection stages up
//! / normal / down / none, down debounce, bond transitions, the bulk-VM
//! safety net) and the error queue.
//!
//! Owns nothing of its own (the manager's state). Calls the host driver
//! and the manager's queues.

use super::*;

impl VdpMgr {
    // ----- uplink periodic task ----------------------------------------------

    /// `is_openstack_running`: both bridges exist.
    pub fn is_openstack_running(&self) -> bool {
        self.host.bridges_present()
    }

    pub(super) fn uplink_msg(
        &self,
        status: UplinkStatus,
        phy: String,
        veth: Option<String>,
    ) -> VdpQueMsg {
        VdpQueMsg::Uplink {
            status,
            phy_uplink: phy,
            veth_intf: veth,
        }
    }

    /// `vdp_uplink_proc`: one round of uplink detection.
    /// Gates: OpenStack bridges present (checked until first seen), stored
    /// uplink obtained (past `UplinkStage::AwaitingStored`), no uplink message in
    /// flight (`UplinkStage::Ongoing`). Then the detection result drives
    /// the stage: down (debounced in auto mode), none (report "not yet
    /// discovered"), normal (bond check, re-create setup after restart, bulk
    /// safety net), or a new uplink (save + queue "up").
    pub fn vdp_uplink_proc(&self) {
        let os_run = self.state.lock().is_os_run;
        if !os_run {
            if !self.is_openstack_running() {
                log::info!("OpenStack is not running");
                return;
            }
            self.state.lock().is_os_run = true;
        }
        let veth = {
            let mut st = self.state.lock();
            if !st.uplink.restored() || st.uplink.ongoing() {
                log::debug!(
                    "Uplink before restart not refreshed yet, stage {:?}",
                    st.uplink
                );
                return;
            }
            if let Some(phy) = st.phy_uplink.clone() {
                let set_up_veth = st.set_up.get(&phy).cloned();
                if st.uplink.det_compl() && set_up_veth.is_none() {
                    log::error!("Not Initialized for phy {phy}");
                    return;
                }
                match set_up_veth {
                    Some(v) => st.veth_intf = Some(v),
                    None if st.veth_intf.is_none() => {
                        log::error!("Incorrect state: uplink {phy} without veth and not set up");
                        return;
                    }
                    None => {}
                }
            }
            st.veth_intf.clone()
        };
        let ret = if self.cfg.static_uplink.is_some() {
            self.static_uplink_detect(veth.as_deref())
        } else {
            self.host.detect_uplink(veth.as_deref())
        };
        match ret {
            UplinkDetect::Down => {
                let msg = {
                    let mut st = self.state.lock();
                    let Some(phy) = st.phy_uplink.clone() else {
                        log::error!("Wrong status down");
                        return;
                    };
                    st.uplink_down_cnt += 1;
                    if self.cfg.static_uplink.is_none() && st.uplink_down_cnt < UPLINK_DOWN_THRES {
                        log::info!("uplink {phy} down {} time(s)", st.uplink_down_cnt);
                        return;
                    }
                    st.uplink = UplinkStage::Ongoing { set_up: false };
                    let veth = st.veth_intf.take();
                    st.phy_uplink = None;
                    st.uplink_down_cnt = 0;
                    self.uplink_msg(UplinkStatus::Down, phy, veth)
                };
                log::info!("uplink down, queued down message");
                self.que.enqueue(Q_UPL_PRIO, msg);
            }
            UplinkDetect::NotFound => {
                if self.state.lock().veth_intf.is_some() {
                    log::error!("Wrong status None");
                    return;
                }
                self.save_uplink("", "", UPLINK_UNDISCOVERED_REASON);
            }
            UplinkDetect::Normal => {
                {
                    let mut st = self.state.lock();
                    if st.veth_intf.is_none() {
                        log::error!("Wrong status Normal");
                        return;
                    }
                    st.uplink_down_cnt = 0;
                }
                let bond_det = self.uplink_bond_intf_process();
                let msg = {
                    let mut st = self.state.lock();
                    if !st.uplink.det_compl() && !bond_det {
                        let Some(phy) = st.phy_uplink.clone() else {
                            log::error!("Incorrect state, no uplink in normal stage");
                            return;
                        };
                        st.uplink = UplinkStage::Ongoing { set_up: false };
                        Some(self.uplink_msg(UplinkStatus::Up, phy, None))
                    } else {
                        None
                    }
                };
                if let Some(msg) = msg {
                    self.que.enqueue(Q_UPL_PRIO, msg);
                    log::info!("Enqueued Uplink Msg from normal");
                }
                self.check_periodic_bulk_vm_notif_rcvd();
            }
            UplinkDetect::Up(found) => {
                log::info!("In Periodic Uplink Task uplink found {found}");
                let uplink = match self.host.bond_of(&found) {
                    Some(bond) => {
                        log::info!("Interface {found} part of bond {bond}");
                        bond
                    }
                    None => found,
                };
                let veth = self.state.lock().veth_intf.clone().unwrap_or_default();
                self.save_uplink(&uplink, &veth, "");
                {
                    let mut st = self.state.lock();
                    st.phy_uplink = Some(uplink.clone());
                    st.uplink = UplinkStage::Ongoing { set_up: false };
                }
                self.que
                    .enqueue(Q_UPL_PRIO, self.uplink_msg(UplinkStatus::Up, uplink, None));
                log::info!("Enqueued Uplink Msg");
            }
        }
    }

    /// `static_uplink_detect`: the configured uplink when no veth is set up
    /// yet, "normal" when it is; on the first call after a restart, "down"
    /// when the stored uplink differs from the configured one (a stored
    /// bond that has the configured port as member counts as the same).
    pub fn static_uplink_detect(&self, veth: Option<&str>) -> UplinkDetect {
        let Some(port) = self.cfg.static_uplink.clone() else {
            return UplinkDetect::NotFound;
        };
        log::debug!("In static_uplink_detect {veth:?}");
        let first = std::mem::replace(&mut self.state.lock().static_uplink_first, false);
        if first {
            // A stored bond whose member is the configured port is the same
            // uplink (the "up" stage resolves members to their bond).
            let bond = self.host.bond_of(&port);
            let stored = self.state.lock().phy_uplink.clone();
            if let Some(p) = stored {
                if p != port && Some(&p) != bond.as_ref() {
                    return UplinkDetect::Down;
                }
            }
        }
        match veth {
            None => UplinkDetect::Up(port),
            Some(_) => UplinkDetect::Normal,
        }
    }

    /// `uplink_bond_intf_process`: the uplink became a member of a bond.
    /// Report an intermittent down (and queue "down" for the member), then
    /// an intermittent up on the bond (and queue "up" for it). Returns true
    /// when that happened.
    pub fn uplink_bond_intf_process(&self) -> bool {
        let Some(phy) = self.state.lock().phy_uplink.clone() else {
            return false;
        };
        let Some(bond) = self.host.bond_of(&phy) else {
            return false;
        };
        log::info!("uplink {phy} became a member of bond {bond}");
        self.save_uplink("", "", PORT_TRANSITION_BOND_DOWN_REASON);
        let down = {
            let mut st = self.state.lock();
            st.uplink = UplinkStage::Ongoing { set_up: false };
            let veth = st.veth_intf.take();
            st.phy_uplink = None;
            self.uplink_msg(UplinkStatus::Down, phy, veth)
        };
        self.que.enqueue(Q_UPL_PRIO, down);
        self.save_uplink(&bond, "", PORT_TRANSITION_BOND_UP_REASON);
        {
            let mut st = self.state.lock();
            st.phy_uplink = Some(bond.clone());
            st.uplink = UplinkStage::Ongoing { set_up: false };
        }
        self.que
            .enqueue(Q_UPL_PRIO, self.uplink_msg(UplinkStatus::Up, bond, None));
        true
    }

    /// `check_periodic_bulk_vm_notif_rcvd`: bulk-resync safety net. In the
    /// "normal" stage, when no bulk list has arrived for two rounds, send
    /// `save_uplink` again (the controller answers it with a bulk list).
    pub fn check_periodic_bulk_vm_notif_rcvd(&self) {
        let resend = {
            let mut st = self.state.lock();
            match st.bulk {
                BulkStage::Received => None,
                BulkStage::Awaited { rounds } if rounds >= 1 => {
                    st.bulk = BulkStage::Awaited { rounds: 0 };
                    Some((
                        st.phy_uplink.clone().unwrap_or_default(),
                        st.veth_intf.clone().unwrap_or_default(),
                    ))
                }
                BulkStage::Awaited { rounds } => {
                    log::info!("Bulk VM not received, incrementing count");
                    st.bulk = BulkStage::Awaited { rounds: rounds + 1 };
                    None
                }
            }
        };
        if let Some((uplink, veth)) = resend {
            log::info!("Doing save_uplink again to request Bulk VM's");
            self.save_uplink(&uplink, &veth, "");
        }
    }

    // ----- error queue -------------------------------------------------------

    /// `process_err_queue`: move failed uplink messages back to the main
    /// queue (other message types are never put there; dropped if seen).
    pub fn process_err_queue(&self) {
        while let Some((_, msg)) = self.err_que.dequeue_nonblock() {
            log::info!("Msg dequeued from err queue type is {}", msg.msg_type());
            if matches!(msg, VdpQueMsg::Uplink { .. }) {
                self.que.enqueue(Q_UPL_PRIO, msg);
            }
        }
    }
}
