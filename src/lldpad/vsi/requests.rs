//! `LldpadDriver`, the requests to lldpad: queries (vdptool or the control
//! socket), associations with and without `-W`, deassociations, and the
//! deassociations postponed until lldpad answers.
//!
//! Owns nothing of its own (the driver's table). Calls `vdptool` through
//! the driver's runner and `clif` for socket queries and, when enabled,
//! socket requests (`clif::ClifSet`, vdptool as the fallback).

use super::*;

impl LldpadDriver {
    pub(super) fn args<'a>(
        &self,
        req: &'a VsiRequest,
        vlan: u16,
    ) -> Result<VsiArgs<'a>, vdptool::ArgError> {
        Ok(VsiArgs {
            uuid: &req.port_uuid,
            mac: &req.vm_mac,
            gid: req.segmentation_id,
            vlan,
            oui: req.oui.as_ref(),
        })
    }

    /// The `vdptool -T` request for `req` with VLAN field `raw_vlan`, in
    /// `mode` and with `hints`; `wait` = `-W`.
    pub(super) fn request_cmd(
        &self,
        req: &VsiRequest,
        raw_vlan: u16,
        mode: Mode,
        wait: bool,
        hints: Hints,
    ) -> Result<Command, vdptool::ArgError> {
        let a = self.args(req, raw_vlan)?;
        vdptool::request_command_hinted(&self.port, &self.cfg, mode, &a, wait, hints)
    }

    pub(super) fn run(
        &self,
        argv: &[String],
        timeout: Duration,
    ) -> Result<CmdOutput, crate::exec::ExecError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.runner.run_any_timeout(argv, timeout)
    }

    /// Per-VSI query among the VSIs lldpad holds in `mode`: `Ok(None)` =
    /// lldpad does not hold the VSI (in that mode).
    pub(super) fn query_state(
        &self,
        req: &VsiRequest,
        mode: Mode,
    ) -> Result<Option<VsiState>, QueryError> {
        Ok(self
            .query_record(req, mode)?
            .map(|r| vdptool::record_state(&r, &req.vm_mac, req.segmentation_id)))
    }

    /// lldpad's record of the VSI (one query).
    pub(super) fn query_record(
        &self,
        req: &VsiRequest,
        mode: Mode,
    ) -> Result<Option<VsiRecord>, QueryError> {
        #[cfg(test)]
        if super::tests::PANIC_NEXT_QUERY.with(|c| c.replace(false)) {
            panic!("injected panic in query_state");
        }
        let cmd = vdptool::query_command_in(&self.port, &self.cfg, mode, &req.port_uuid)
            .map_err(QueryError::Arg)?;
        let q = self.query_reply(&cmd)?;
        Ok(q.records
            .into_iter()
            .find(|r| r.uuid.eq_ignore_ascii_case(&req.port_uuid)))
    }

    /// List query of every associated VSI.
    pub(super) fn list(&self) -> Result<Vec<VsiRecord>, QueryError> {
        let cmd = vdptool::list_command(&self.port).map_err(QueryError::Arg)?;
        Ok(self.query_reply(&cmd)?.records)
    }

    /// A `vdptool -t ... -R` query, over the control socket when enabled
    /// and usable, else as a vdptool process. `Err` unless status 0.
    pub(super) fn query_reply(&self, cmd: &Command) -> Result<vdptool::QueryReply, QueryError> {
        let r = self.query_reply_inner(cmd);
        crate::metrics::vdp_reply("query", r.is_ok(), false);
        r
    }

    fn query_reply_inner(&self, cmd: &Command) -> Result<vdptool::QueryReply, QueryError> {
        let q = match self.socket_query(cmd) {
            Some(line) => vdptool::parse_query(&line).map_err(QueryError::Unreadable)?,
            None => {
                let out = self
                    .run(&cmd.argv(), CMD_TIMEOUT)
                    .map_err(QueryError::Exec)?;
                if out.code != 0 && !out.stdout.contains('R') {
                    return Err(QueryError::Failed(
                        vdptool::command_failure(&out).unwrap_or_default(),
                    ));
                }
                vdptool::parse_query(&out.stdout).map_err(QueryError::Unreadable)?
            }
        };
        if q.status != 0 {
            return Err(QueryError::Status(q.status));
        }
        Ok(q)
    }

    /// lldpad's `R` line for a query over the control socket; `None` when
    /// the socket path is off, suspended or failed (use vdptool).
    pub(super) fn socket_query(&self, cmd: &Command) -> Option<String> {
        let client = {
            let mut st = self.query_socket.lock();
            if st.retry_at.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            st.retry_at = None;
            st.client.clone()?
        };
        match client.get(cmd) {
            Ok(line) => {
                self.socket_queries.fetch_add(1, Ordering::Relaxed);
                Some(line)
            }
            Err(e) if clif::is_no_access(&e) => {
                log::warn!("lldpad refuses control socket queries ({e}); using vdptool");
                self.query_socket.lock().client = None;
                None
            }
            Err(e) => {
                log::warn!(
                    "lldpad control socket query failed ({e}); using vdptool for {}s",
                    SOCKET_RETRY_AFTER.as_secs()
                );
                self.query_socket.lock().retry_at = Some(Instant::now() + SOCKET_RETRY_AFTER);
                None
            }
        }
    }

    /// The associate decision (query first, among the VSIs lldpad holds in
    /// `held`'s mode), without touching the table; the request goes out as
    /// `want`. `fresh`: the driver knows nothing of the VSI, so it is
    /// first sent without the query (`fresh_assoc`).
    pub(super) fn associate_now(
        &self,
        req: &VsiRequest,
        held: Intent,
        want: Intent,
        fresh: bool,
    ) -> VdpReply {
        if fresh {
            if let Some(r) = self.fresh_assoc(req, want) {
                return r;
            }
        }
        let rec = self.query_record(req, held.mode);
        let mut state = rec
            .clone()
            .map(|r| r.map(|r| vdptool::record_state(&r, &req.vm_mac, req.segmentation_id)));
        // A repeated "up" whose Cisco OUI changed (a DHCP-assigned IP, a
        // renamed VM): lldpad takes new OUI data only with a new associate,
        // so the association is not adopted but sent again (as the
        // original, which always sends it), with the VLAN lldpad holds.
        if let (Ok(Some(VsiState::Associated { raw_vlan, .. })), Ok(Some(r)), Some(oui)) =
            (&state, &rec, req.oui.as_ref().filter(|o| o.is_cisco()))
        {
            if !vdptool::oui_matches(r, oui) {
                log::info!(
                    "associate {}: the VM's OUI data changed; associating again",
                    req.port_uuid
                );
                state = Ok(Some(VsiState::Unusable {
                    reason: "OUI data changed".into(),
                    raw_vlan: *raw_vlan,
                }));
            }
        }
        if held.mode != want.mode {
            // A pre-associated VSI arrives: upgrade it in place with the
            // VLAN field lldpad stores (another one is refused).
            if let Ok(Some(
                VsiState::Associated { raw_vlan, .. } | VsiState::NoVlanYet { raw_vlan },
            )) = state
            {
                state = Ok(Some(VsiState::Unusable {
                    reason: format!("{} held, {} asked", held.mode.as_str(), want.mode.as_str()),
                    raw_vlan,
                }));
            }
        }
        self.request_for_state(req, state, true, want)
    }

    /// A new VM port's associate, sent over the control socket without the
    /// query before it (one lldpad round trip less on every VM-up). Only
    /// after the first bulk resync (`allow_fresh_requests`): then a VSI
    /// without a record is one lldpad does not hold. Should lldpad hold it
    /// all the same, it either refuses the request without sending
    /// anything (another filter or VLAN: `Invalid parameters`; a request
    /// in flight: busy), or takes it as a new associate of that VSI, which
    /// the bridge answers again. Any refusal, and a socket that cannot be
    /// used, gives `None`: the caller then queries and decides as for a
    /// known VSI and sends what it would have sent anyway, so a refusal
    /// costs one round trip, never a verdict.
    fn fresh_assoc(&self, req: &VsiRequest, want: Intent) -> Option<VdpReply> {
        let cmd = self.request_cmd(req, 0, want.mode, true, want.hints).ok()?;
        match self.socket_set(&cmd, &req.port_uuid)? {
            SetReply::Refused { text, .. } => {
                log::debug!(
                    "{} {}: lldpad refused it ({text}); asking what it holds",
                    want.mode.as_str(),
                    req.port_uuid
                );
                None
            }
            SetReply::Taken { event } => {
                let r = self.taken_outcome(req, event, want);
                note_assoc(want, &r);
                Some(r)
            }
        }
    }

    /// Bring lldpad's VSI in line with the request, given what lldpad
    /// holds. `wait` = use `-W` (else the verdict is read by a later query).
    /// The request goes out in `want`'s mode and with its hint.
    pub(super) fn request_for_state(
        &self,
        req: &VsiRequest,
        state: Result<Option<VsiState>, QueryError>,
        wait: bool,
        want: Intent,
    ) -> VdpReply {
        let assoc = |raw_vlan: u16| {
            let r = if wait {
                self.assoc_wait(req, raw_vlan, want)
            } else {
                self.send_assoc_nowait(req, raw_vlan, want)
            };
            note_assoc(want, &r);
            r
        };
        match state {
            Ok(Some(VsiState::Associated { vlan, .. })) => {
                log::info!(
                    "{} {}: lldpad holds it with VLAN {vlan}",
                    want.mode.as_str(),
                    req.port_uuid
                );
                VdpReply::associated(vlan)
            }
            Ok(Some(VsiState::InProgress)) => VdpReply::pending(),
            // The bridge holds it without a VLAN: nothing to send again.
            Ok(Some(VsiState::NoVlanYet { .. })) => VdpReply::no_vlan_yet(),
            // Repeat the VLAN field lldpad stores: another one is refused.
            Ok(Some(VsiState::Unusable { raw_vlan, .. })) => assoc(raw_vlan),
            Ok(Some(VsiState::Mismatch {
                raw_vlan, mac, gid, ..
            })) => {
                // A stale VSI of the same port UUID (other MAC/network):
                // lldpad refuses a different filter, so remove it first.
                let stale = VsiRequest {
                    vm_mac: mac,
                    segmentation_id: gid,
                    oui: None,
                    ..req.clone()
                };
                if let Err(e) = self.send_deassoc(&stale, raw_vlan, Hints::None) {
                    log::warn!("associate {}: removing stale VSI: {e}", req.port_uuid);
                }
                assoc(0)
            }
            Ok(None) => assoc(0),
            Err(e) => {
                log::warn!("associate {}: query failed: {e}", req.port_uuid);
                assoc(0)
            }
        }
    }

    /// lldpad's answer to a set over the control socket; `None` when the
    /// socket path is off, suspended or failed (use vdptool).
    pub(super) fn socket_set(&self, cmd: &Command, uuid: &str) -> Option<SetReply> {
        let client = {
            let mut st = self.set_socket.lock();
            if st.retry_at.is_some_and(|t| Instant::now() < t) {
                return None;
            }
            st.retry_at = None;
            st.client.clone()?
        };
        let t0 = Instant::now();
        match client.send(cmd, uuid) {
            Ok(r) => {
                log::debug!(
                    "lldpad socket: {} {uuid} in {:?}",
                    cmd.mode.as_str(),
                    t0.elapsed()
                );
                self.socket_requests.fetch_add(1, Ordering::Relaxed);
                Some(r)
            }
            Err(e) if clif::is_no_access(&e) => {
                log::warn!("lldpad refuses control socket requests ({e}); using vdptool");
                self.set_socket.lock().client = None;
                None
            }
            Err(e) => {
                log::warn!(
                    "lldpad control socket request failed ({e}); using vdptool for {}s",
                    SOCKET_RETRY_AFTER.as_secs()
                );
                self.set_socket.lock().retry_at = Some(Instant::now() + SOCKET_RETRY_AFTER);
                None
            }
        }
    }

    /// The reply to an associate lldpad took over the control socket: the
    /// verdict of the VSI's event, pending without one.
    fn taken_outcome(
        &self,
        req: &VsiRequest,
        event: Option<Box<crate::lldpad::wire::VdpEvent>>,
        want: Intent,
    ) -> VdpReply {
        let Some(ev) = event else {
            return VdpReply::pending();
        };
        match vdptool::event_outcome_in(&ev, &req.vm_mac, &ev.raw, want.mode) {
            AssocOutcome::Associated { vlan } => VdpReply::associated(vlan),
            AssocOutcome::NoVlanYet => VdpReply::no_vlan_yet(),
            AssocOutcome::Failed { reason } => self.refused(vdptool::Refusal::classify(reason), 0),
            AssocOutcome::Pending | AssocOutcome::NotOurs { .. } => VdpReply::pending(),
        }
    }

    /// `vdptool -T -W` assoc and its interpretation (over the control
    /// socket when enabled: the same verdicts and texts; a refusal reads
    /// as vdptool's `FAILED:` line with its exit code 1).
    pub(super) fn assoc_wait(&self, req: &VsiRequest, raw_vlan: u16, want: Intent) -> VdpReply {
        let cmd = match self.request_cmd(req, raw_vlan, want.mode, true, want.hints) {
            Ok(c) => c,
            Err(e) => return VdpReply::failed(e.to_string()),
        };
        match self.socket_set(&cmd, &req.port_uuid) {
            Some(SetReply::Refused { text, .. }) => {
                return match vdptool::Refusal::classify(text) {
                    vdptool::Refusal::Busy => VdpReply::pending(),
                    r => self.refused(r, 1),
                };
            }
            Some(SetReply::Taken { event }) => return self.taken_outcome(req, event, want),
            None => {}
        }
        let argv = cmd.argv();
        let out = match self.run(&argv, WAIT_TIMEOUT) {
            Ok(o) => o,
            Err(e) => return VdpReply::not_ready(e),
        };
        match vdptool::assoc_outcome_in(&out, &req.port_uuid, &req.vm_mac, want.mode) {
            AssocOutcome::Associated { vlan } => VdpReply::associated(vlan),
            AssocOutcome::NoVlanYet => VdpReply::no_vlan_yet(),
            AssocOutcome::Failed { reason } => {
                self.refused(vdptool::Refusal::classify(reason), out.code)
            }
            AssocOutcome::Pending => VdpReply::pending(),
            AssocOutcome::NotOurs { other_uuid } => {
                // -W printed another VSI's event: ask lldpad about ours.
                match self.query_state(req, want.mode) {
                    Ok(Some(VsiState::Associated { vlan, .. })) => VdpReply::associated(vlan),
                    Ok(Some(VsiState::InProgress)) => VdpReply::pending(),
                    Ok(Some(VsiState::NoVlanYet { .. })) => VdpReply::no_vlan_yet(),
                    Ok(Some(VsiState::Unusable { reason, .. }))
                    | Ok(Some(VsiState::Mismatch { reason, .. })) => VdpReply::failed(reason),
                    Ok(None) => VdpReply::failed(vdptool::vsi_mismatch_failure_reason(
                        &req.port_uuid,
                        &other_uuid,
                    )),
                    Err(e) => VdpReply::not_ready(e),
                }
            }
        }
    }

    /// Assoc without `-W` (refresh, bridge silent): pending unless refused.
    pub(super) fn send_assoc_nowait(
        &self,
        req: &VsiRequest,
        raw_vlan: u16,
        want: Intent,
    ) -> VdpReply {
        let cmd = match self.request_cmd(req, raw_vlan, want.mode, false, want.hints) {
            Ok(c) => c,
            Err(e) => return VdpReply::failed(e.to_string()),
        };
        match self.socket_set(&cmd, &req.port_uuid) {
            Some(SetReply::Refused { text, .. }) => {
                return self.refused(vdptool::Refusal::classify(text), 1)
            }
            Some(SetReply::Taken { .. }) => return VdpReply::pending(),
            None => {}
        }
        match self.run(&cmd.argv(), CMD_TIMEOUT) {
            Ok(out) => match vdptool::request_result(&out) {
                Ok(()) => VdpReply::pending(),
                Err(r) => self.refused(r, out.code),
            },
            Err(e) => VdpReply::not_ready(e),
        }
    }

    /// Deassociate a VSI (whatever mode lldpad holds it in), with the hint
    /// `hints`.
    pub(super) fn send_deassoc(
        &self,
        req: &VsiRequest,
        raw_vlan: u16,
        hints: Hints,
    ) -> Result<(), vdptool::Refusal> {
        use vdptool::Refusal;
        let cmd = self
            .request_cmd(req, raw_vlan, Mode::Deassoc, false, hints)
            .map_err(|e| Refusal::Other(e.to_string()))?;
        let r = match self.socket_set(&cmd, &req.port_uuid) {
            Some(SetReply::Refused { text, .. }) => Err(Refusal::classify(text)),
            Some(SetReply::Taken { .. }) => Ok(()),
            None => self
                .run(&cmd.argv(), CMD_TIMEOUT)
                .map_err(|e| Refusal::NotReady(e.to_string()))
                .and_then(|out| vdptool::request_result(&out)),
        };
        let busy = matches!(&r, Err(Refusal::Busy));
        crate::metrics::vdp_reply("deassoc", r.is_ok(), busy);
        r
    }

    /// Query, then deassoc with the stored filter. `pending` = lldpad has
    /// a request in flight for the VSI; retry from `refresh`.
    /// `held`: the mode lldpad holds the VSI in (where the query looks).
    pub(super) fn deassociate_now(
        &self,
        req: &VsiRequest,
        known: Option<u16>,
        held: Mode,
        hints: Hints,
    ) -> VdpReply {
        let raw_vlan = match self.query_state(req, held) {
            Ok(None) => {
                // Nothing to remove in lldpad.
                return VdpReply {
                    vdp_vlan: known,
                    ..Default::default()
                };
            }
            Ok(Some(VsiState::InProgress)) => {
                return VdpReply {
                    vdp_vlan: known,
                    pending: true,
                    ..Default::default()
                }
            }
            Ok(Some(VsiState::Associated { raw_vlan, .. }))
            | Ok(Some(VsiState::NoVlanYet { raw_vlan }))
            | Ok(Some(VsiState::Unusable { raw_vlan, .. })) => raw_vlan,
            Ok(Some(VsiState::Mismatch { .. })) => {
                // lldpad's VSI belongs to another MAC/network: not ours.
                return VdpReply {
                    vdp_vlan: known,
                    ..Default::default()
                };
            }
            Err(e) => {
                log::warn!("deassociate {}: query failed: {e}", req.port_uuid);
                known.unwrap_or(0)
            }
        };
        match self.send_deassoc(req, raw_vlan, hints) {
            Ok(()) => VdpReply {
                vdp_vlan: known,
                ..Default::default()
            },
            Err(vdptool::Refusal::Busy) => VdpReply {
                vdp_vlan: known,
                pending: true,
                ..Default::default()
            },
            Err(r) => VdpReply {
                vdp_vlan: known,
                fail_reason: Some(r.text()),
                ..Default::default()
            },
        }
    }

    /// Deassociations lldpad could not take earlier (request in flight).
    pub(super) fn retry_later_deassocs(&self) {
        let later = std::mem::take(&mut self.table.lock().later);
        let mut keep = Vec::new();
        for mut l in later {
            let r = self.deassociate_now(&l.req, None, l.mode, l.hints);
            l.rounds += 1;
            if r.pending && l.rounds < DEASSOC_RETRY_ROUNDS {
                keep.push(l);
            } else if let Some(f) = r.fail_reason {
                log::warn!("deassociate {} (postponed): {f}", l.req.port_uuid);
            }
        }
        self.table.lock().later.extend(keep);
    }
}

/// An associate's outcome in the metrics (`vdp_replies_total`).
fn note_assoc(want: Intent, r: &VdpReply) {
    crate::metrics::vdp_reply(
        want.mode.as_str(),
        r.vdp_vlan.is_some() && !r.pending,
        r.awaiting_verdict(),
    );
}
