//! What is asked of lldpad for one VSI (`VsiRequest`) and what it answered
//! (`VdpReply`), with the texts that mean "lldpad is not ready yet" and the
//! driver's timing constants.
//!
//! Owns the vocabulary. Calls nothing.

use super::*;

/// One VSI (VM port) to associate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsiRequest {
    pub port_uuid: String,
    pub vm_mac: String,
    pub net_uuid: String,
    pub segmentation_id: u32,
    pub oui: Option<Oui>,
}

impl From<&crate::model::VmPort> for VsiRequest {
    fn from(vm: &crate::model::VmPort) -> VsiRequest {
        VsiRequest {
            port_uuid: vm.port_uuid.clone(),
            vm_mac: vm.vm_mac.clone(),
            net_uuid: vm.net_uuid.clone(),
            segmentation_id: vm.segmentation_id,
            oui: vm.oui.clone(),
        }
    }
}

/// How lldpad is to hold a VSI: the request mode (assoc, or a
/// pre-association at a live migration's destination) and the migration
/// hint of the request. lldpad 1.1 puts the hints a VSI was created with
/// on every later request of it (a later `hints=` is not used), so the
/// hint that reaches the switch is the one of the VSI's first request; the
/// driver still sends the hint of each request, for an lldpad that uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    pub mode: Mode,
    pub hints: Hints,
}

impl Intent {
    /// A plain associate with `vdp.hints` (what the original sends).
    pub fn assoc(hints: Hints) -> Intent {
        Intent {
            mode: Mode::Assoc,
            hints,
        }
    }
    /// Is this a pre-association (`preassoc` or `preassoc-rr`)?
    pub fn is_preassoc(self) -> bool {
        matches!(self.mode, Mode::Preassoc | Mode::PreassocRr)
    }
}

/// What lldpad / the bridge said about a VSI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VdpReply {
    /// The VDP VLAN given by the bridge (1..4094).
    pub vdp_vlan: Option<u16>,
    /// Why there is no VLAN (sent to the controller as is).
    pub fail_reason: Option<String>,
    /// Sent, verdict not known yet; a later `refresh` reports it.
    pub pending: bool,
    /// No VLAN, but no verdict of the bridge either: lldpad was not ready
    /// or not reachable, or the switch ended the VSI and it is being
    /// re-asserted. Such a state never removes flows (see
    /// [`VdpReply::is_verdict`]).
    pub transient: bool,
    /// The bridge associated the VSI with VLAN 0: no VLAN yet, and no
    /// failure either (`fail_reason` None). A verdict: nothing is sent
    /// again until the bridge gives a VLAN or drops the VSI.
    pub no_vlan_yet: bool,
}

impl VdpReply {
    pub(super) fn associated(vlan: u16) -> VdpReply {
        VdpReply {
            vdp_vlan: Some(vlan),
            ..Default::default()
        }
    }
    pub(super) fn failed(reason: impl Into<String>) -> VdpReply {
        VdpReply {
            fail_reason: Some(reason.into()),
            ..Default::default()
        }
    }
    pub(super) fn pending() -> VdpReply {
        VdpReply {
            pending: true,
            ..Default::default()
        }
    }
    pub(super) fn no_vlan_yet() -> VdpReply {
        VdpReply {
            no_vlan_yet: true,
            ..Default::default()
        }
    }
    pub(super) fn not_ready(reason: impl std::fmt::Display) -> VdpReply {
        VdpReply {
            fail_reason: Some(reason.to_string()),
            transient: true,
            ..Default::default()
        }
    }

    /// Is this VLAN-less state the final word on the VSI (a refusal or
    /// unusable answer from the bridge), as opposed to "no answer yet"?
    /// Only a verdict may take a VSI's flows away ("flows follow VLANs").
    pub fn is_verdict(&self) -> bool {
        self.vdp_vlan.is_none()
            && !self.pending
            && !self.transient
            && (self.fail_reason.is_some() || self.no_vlan_yet)
    }

    /// Is lldpad's verdict on this VSI still to come (in flight, or no
    /// verdict possible yet)?
    pub fn awaiting_verdict(&self) -> bool {
        self.pending || self.transient
    }
}

/// Why lldpad could not be asked about VSIs (a query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// The request could not be built (a bad value).
    Arg(vdptool::ArgError),
    /// vdptool could not run or timed out.
    Exec(crate::exec::ExecError),
    /// vdptool failed without an answer (its text).
    Failed(String),
    /// lldpad answered with a non-zero status.
    Status(u8),
    /// The answer could not be read (the original's reason text).
    Unreadable(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Arg(e) => write!(f, "{e}"),
            QueryError::Exec(e) => write!(f, "{e}"),
            QueryError::Failed(t) | QueryError::Unreadable(t) => f.write_str(t),
            QueryError::Status(s) => write!(f, "FAILED: {}", vdptool::status_text(*s)),
        }
    }
}

/// How long after the lldpad port is set up (or lldpad restarted) an
/// `Invalid parameters` refusal counts as "not ready yet".
pub(crate) const SETTLE_TIME: Duration = Duration::from_secs(20);

/// Reason reported when a VSI lldpad held (or was still waiting for) is no
/// longer in lldpad and a new request got no answer yet.
pub const REASON_VSI_LOST: &str =
    "VSI association lost: lldpad no longer holds the VSI (no answer from the bridge)";

/// `vdptool -W` waits 5 s for an event; allow for process start and load.
pub(super) const WAIT_TIMEOUT: Duration = Duration::from_secs(12);
/// Plain clif commands time out after 2 s inside vdptool.
pub(super) const CMD_TIMEOUT: Duration = Duration::from_secs(6);
/// How long deassociate waits for an in-flight request of the same VSI.
pub(super) const BUSY_WAIT: Duration = Duration::from_secs(20);
/// Refresh rounds a postponed deassociation is retried before it is dropped.
pub(super) const DEASSOC_RETRY_ROUNDS: u32 = 8;
/// After a failed socket query (lldpad unreachable or not answering), the
/// queries go through vdptool for this long before the socket is tried again.
pub(super) const SOCKET_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A refresh round started this much before a full `vdp.sync_timeout_s`
/// since the last counted one still counts toward the unchanged re-reports
/// (the daemon's rounds come in 1 s steps).
pub(super) const RECHECK_SLACK: Duration = Duration::from_secs(1);
