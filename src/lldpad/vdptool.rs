//! vdptool argv building and reply parsing: pure functions, no I/O.
//!
//! Owns: the exact command lines the agent gives `vdptool` (query, list,
//! associate, deassociate; the original's argv order and keys), the filter
//! string, and the interpretation of every reply form vdptool prints
//! (`Response from VDP` events, `FAILED: ...`, raw `-R` query lines, empty
//! output after `-W`, rc 255 without lldpad). Failure reasons reuse the
//! original agent's texts (`lldpad_constants.py`) and lldpad's own texts:
//! they are sent to the controller verbatim.
//!
//! Calls: nothing but `crate::config::VdpConfig`, `crate::model::Oui` and
//! `crate::exec::CmdOutput` (data only). `crate::lldpad::vsi` runs the
//! commands.
//!
//! Reply facts (checked live, see `the shared design notes (notes/lldpad-vdp22.md)` §2 and
//! `tests/fixtures/vdptool/`):
//! - `-W` prints the first VDP event *on the interface*, which may belong to
//!   another VSI: events are matched by uuid (and MAC) before use.
//! - Empty output with rc 0 after `-W` means "no answer yet" (lldpad keeps
//!   waiting up to ~15.8 s), not a failure.
//! - The event/query VLAN is `qos<<12 | vid`; only the low 12 bits are the VLAN.
//! - A raw query (`-t -R`) prints the command (`M...`) and the response
//!   (`R...`); records are length-prefixed; `hints` is the VSI status
//!   (0 ok, 255 no answer yet, other = error/KEEP bits).
//! - When the records exceed lldpad's 4096-byte clif buffer (27+ plain
//!   VSIs), the list answer carries NO record at all: a VSI missing from a
//!   list answer must be confirmed by a per-VSI query.

use super::wire::{self, hex_at};
use crate::config::{FilterFormat, VdpConfig};
use crate::exec::CmdOutput;
use crate::model::Oui;
use std::fmt;

pub use super::wire::{
    status_text, Command, Mode, QueryReply, VdpEvent, VdpEventKind, BUSY_TEXT, HINTS_NO_ANSWER,
    VDPTOOL,
};
/// A VSI record of a query answer (`wire::Record`).
pub type VsiRecord = wire::Record;

/// Refresh rounds with an unchanged result after which the result is
/// reported again anyway (original `CALLBACK_THRESHOLD`).
pub const CALLBACK_THRESHOLD: u32 = 5;

/// VSI ID format supported (UUID), original `VDP_VSIFRMT_UUID`.
pub const VSIID_FORMAT_UUID: u32 = 5;

// ---- failure reasons (original lldpad_constants.py texts) ----

/// `retrieve_failure_reason`.
pub fn retrieve_failure_reason(reply: &str) -> String {
    format!("Unable to retrieve failure, reply {reply}")
}
/// `mode_failure_reason`.
pub fn mode_failure_reason(reply: &str) -> String {
    format!("Incorrect Reply,no mode information found: {reply}")
}
/// `filter_failure_reason`.
pub fn filter_failure_reason(reply: &str) -> String {
    format!("Incorrect Reply,no filter information found: {reply}")
}
/// `multiple_filter_failure_reason`.
pub fn multiple_filter_failure_reason(reply: &str) -> String {
    format!("Incorrect Reply,multiple filter information found: {reply}")
}
/// `format_failure_reason`.
pub fn format_failure_reason(reply: &str) -> String {
    format!("Reply not formatted correctly: {reply}")
}
/// `hints_failure_reason`.
pub fn hints_failure_reason(reply: &str) -> String {
    format!("Incorrect Reply,no hints information found: {reply}")
}
/// `multiple_hints_failure_reason`.
pub fn multiple_hints_failure_reason(reply: &str) -> String {
    format!("Incorrect Reply,multiple hints information found: {reply}")
}
/// `nonzero_hints_failure`.
pub fn nonzero_hints_failure(hints: u32) -> String {
    format!("Non-zero hints, value {hints}")
}
/// `vsi_mismatch_failure_reason`.
pub fn vsi_mismatch_failure_reason(req: &str, reply: &str) -> String {
    format!("VSIID Reply mis-match req vsi {req} reply vsi {reply}")
}
/// `mac_mismatch_failure_reason`.
pub fn mac_mismatch_failure_reason(req: &str, reply: &str) -> String {
    format!("VSIID MAC Reply mis-match req mac {req} reply mac {reply}")
}
/// The bridge answered with a VLAN that is not 1..4094 (the original logs
/// "Returned vlan %s is invalid." and reports VLAN 0; we report the text).
pub fn invalid_vlan_reason(vlan: u32) -> String {
    format!("Returned vlan {vlan} is invalid.")
}
/// A deassoc event without any error line: the bridge rejected with the
/// HARD bit set (vdptool does not decode it) or deassociated on its own.
/// The original reported the `uuid = ...` line here.
pub const DEASSOC_NO_REASON: &str =
    "Error returned by Bridge: VSI deassociated, no reason code (HARD bit or bridge deassoc)";

mod argv;
pub use argv::*;

// ---- filters ----

/// A filter value as printed by lldpad: `VLAN[-MAC][-GID]`
/// (fmt 3 prints `VLAN-GID`, requests use `VLAN--GID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The 16-bit field: `qos<<12 | vid`.
    pub raw_vlan: u32,
    pub mac: Option<String>,
    pub gid: Option<u32>,
}

impl Filter {
    /// The VLAN ID (low 12 bits).
    pub fn vlan(&self) -> u32 {
        self.raw_vlan & 0x0fff
    }
    /// The VLAN when it is a usable VDP VLAN (1..4094).
    pub fn valid_vlan(&self) -> Option<u16> {
        let v = self.vlan();
        (1..=4094).contains(&v).then_some(v as u16)
    }
}

/// Parse a filter value; `None` when it has no numeric VLAN.
pub fn parse_filter(s: &str) -> Option<Filter> {
    let mut parts = s.trim().split('-').filter(|p| !p.is_empty());
    let raw_vlan: u32 = parts.next()?.parse().ok()?;
    let mut mac = None;
    let mut gid = None;
    for p in parts {
        if p.contains(':') {
            mac = Some(p.to_ascii_lowercase());
        } else if let Ok(g) = p.parse::<u32>() {
            gid = Some(g);
        } else {
            return None;
        }
    }
    Some(Filter { raw_vlan, mac, gid })
}

// ---- `Response from VDP` blocks (-W) ----

/// All `Response from VDP` blocks of a vdptool output, as events: the
/// tab-indented `key = value` lines are the record's fields, the `Error
/// returned by Bridge` / `Internal Error` lines (vdptool's decoding of the
/// VSI status) the event's error.
pub fn parse_events(stdout: &str) -> Vec<VdpEvent> {
    fn finish(rec: VsiRecord, errors: Vec<String>, raw: String, out: &mut Vec<VdpEvent>) {
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        let kind = match (rec.mode.as_str(), &error) {
            ("assoc" | "preassoc" | "preassoc-rr", None) => VdpEventKind::Associated,
            ("deassoc", None) => VdpEventKind::Deassociated,
            _ => VdpEventKind::Failed,
        };
        out.push(VdpEvent::new(rec, error, kind, raw));
    }
    let mut events = Vec::new();
    let mut cur: Option<(VsiRecord, Vec<String>, String)> = None;
    for line in stdout.lines() {
        if line.trim() == "Response from VDP" {
            if let Some((rec, errs, raw)) = cur.take() {
                finish(rec, errs, raw, &mut events);
            }
            cur = Some((VsiRecord::default(), Vec::new(), format!("{line}\n")));
            continue;
        }
        let Some((rec, errs, raw)) = cur.as_mut() else {
            continue;
        };
        if !line.starts_with('\t') {
            // End of the block (e.g. a FAILED line after it).
            if let Some((rec, errs, raw)) = cur.take() {
                finish(rec, errs, raw, &mut events);
            }
            continue;
        }
        raw.push_str(line);
        raw.push('\n');
        let t = line.trim();
        if t.starts_with("Error returned by Bridge") || t.starts_with("Internal Error") {
            errs.push(t.to_string());
        } else if let Some((k, v)) = t.split_once(" = ") {
            let (k, v) = (k.trim(), v.trim());
            match k {
                "mode" if rec.mode.is_empty() => rec.mode = v.into(),
                "uuid" if rec.uuid.is_empty() => rec.uuid = v.into(),
                "mgrid2" => rec.mgrid2 = v.into(),
                "typeid" => rec.typeid = v.into(),
                "typeidver" => rec.typeidver = v.into(),
                "filter" => rec.filters.push(v.into()),
                _ => {}
            }
            rec.fields.push((k.into(), v.into()));
        }
    }
    if let Some((rec, errs, raw)) = cur {
        finish(rec, errs, raw, &mut events);
    }
    events
}

// ---- raw query (-t -R) ----

/// Parse the `R` line of a raw query (`vdptool -t ... -R`, or the control
/// socket's answer). Err = a reason text (original
/// `format_failure_reason`) when no `R` line can be read.
pub fn parse_query(stdout: &str) -> Result<QueryReply, String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('R'))
        .ok_or_else(|| format_failure_reason(stdout.trim()))?;
    wire::parse_get_reply(line).ok_or_else(|| format_failure_reason(line))
}

// ---- interpretation ----

/// What lldpad holds for one VSI, from a query record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsiState {
    /// hints 0 and a usable VLAN: associated.
    Associated { vlan: u16, raw_vlan: u16 },
    /// hints 255: the first answer of the bridge is still awaited.
    InProgress,
    /// hints 0 with VLAN 0: the bridge took the VSI but assigned no VLAN
    /// (yet). Not a failure (the original reports SUCCESS, VDP VLAN -1, no
    /// reason) and nothing to send again.
    NoVlanYet { raw_vlan: u16 },
    /// Held, but unusable (non-zero hints, VLAN 0/4095): reason text, and the
    /// stored filter VLAN field (what a re-assoc/deassoc must repeat).
    Unusable { reason: String, raw_vlan: u16 },
    /// Held with another MAC or group id: a stale VSI of the same port UUID.
    Mismatch {
        reason: String,
        raw_vlan: u16,
        mac: String,
        gid: u32,
    },
}

/// Judge a record against the request (uuid match is the caller's job).
pub fn record_state(rec: &VsiRecord, mac: &str, gid: u32) -> VsiState {
    if rec.count("filter") > 1 {
        return VsiState::Unusable {
            reason: multiple_filter_failure_reason(&fields_text(rec)),
            raw_vlan: 0,
        };
    }
    if rec.count("hints") > 1 {
        return VsiState::Unusable {
            reason: multiple_hints_failure_reason(&fields_text(rec)),
            raw_vlan: 0,
        };
    }
    let Some(filter) = rec.filter().and_then(parse_filter) else {
        return VsiState::Unusable {
            reason: filter_failure_reason(&fields_text(rec)),
            raw_vlan: 0,
        };
    };
    let raw_vlan = (filter.raw_vlan & 0xffff) as u16;
    let rmac = filter.mac.clone().unwrap_or_default();
    if filter.mac.is_some() && !rmac.eq_ignore_ascii_case(mac) {
        return VsiState::Mismatch {
            reason: mac_mismatch_failure_reason(mac, &rmac),
            raw_vlan,
            mac: rmac,
            gid: filter.gid.unwrap_or(0),
        };
    }
    if let Some(g) = filter.gid {
        if g != gid {
            return VsiState::Mismatch {
                reason: format!("VSI group id mis-match req gid {gid} reply gid {g}"),
                raw_vlan,
                mac: rmac,
                gid: g,
            };
        }
    }
    match rec.hints {
        None => VsiState::Unusable {
            reason: hints_failure_reason(&fields_text(rec)),
            raw_vlan,
        },
        Some(HINTS_NO_ANSWER) => VsiState::InProgress,
        Some(0) => match filter.valid_vlan() {
            Some(vlan) => VsiState::Associated { vlan, raw_vlan },
            None if filter.vlan() == 0 => VsiState::NoVlanYet { raw_vlan },
            None => VsiState::Unusable {
                reason: invalid_vlan_reason(filter.vlan()),
                raw_vlan,
            },
        },
        Some(h) => VsiState::Unusable {
            reason: nonzero_hints_failure(h),
            raw_vlan,
        },
    }
}

/// A record's fields as `k=v k=v` (the failure texts quote it).
fn fields_text(rec: &VsiRecord) -> String {
    rec.fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Cisco OUI data lldpad holds for a VSI (its `oui` record field:
/// `%02x` id length, the id, then `%02x` key length, key, `%04x` value
/// length, value; the IPv4 address as the decimal of its in-memory u32,
/// possibly followed by `l`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordOui {
    pub vm_name: Option<String>,
    pub vm_uuid: Option<String>,
    pub ipv4: Option<std::net::Ipv4Addr>,
}

/// Parse the `oui` field of a record (`None`: none, not Cisco, or malformed).
pub fn record_oui(rec: &VsiRecord) -> Option<RecordOui> {
    let v = rec.get("oui")?;
    let idlen = hex_at(v, 0, 2)?;
    if v.get(2..2 + idlen)? != "cisco" {
        return None;
    }
    let mut out = RecordOui::default();
    let mut at = 2 + idlen;
    while at < v.len() {
        let kl = hex_at(v, at, 2)?;
        let key = v.get(at + 2..at + 2 + kl)?;
        at += 2 + kl;
        let vl = hex_at(v, at, 4)?;
        let val = v.get(at + 4..at + 4 + vl)?;
        at += 4 + vl;
        match key {
            "vm_name" => out.vm_name = Some(val.to_string()),
            "vm_uuid" => out.vm_uuid = Some(val.to_string()),
            "ipv4_addr" => {
                let n: u32 = val.trim_end_matches('l').parse().ok()?;
                out.ipv4 = Some(std::net::Ipv4Addr::from(n.to_le_bytes()));
            }
            _ => {}
        }
    }
    Some(out)
}

/// Does lldpad's record hold the Cisco OUI data of `oui` (what an associate
/// with `oui` would send)? A record without parsable OUI data matches only
/// a request without any.
pub fn oui_matches(rec: &VsiRecord, oui: &Oui) -> bool {
    let want_name = oui
        .vm_name
        .as_deref()
        .map(|n| truncate_at_char(n, MAX_VM_NAME).to_string());
    let held = record_oui(rec).unwrap_or_default();
    let uuid_eq = match (&oui.vm_uuid, &held.vm_uuid) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        // lldpad may not echo the uuid: only a name or address decides.
        (_, None) => true,
        (None, Some(_)) => false,
    };
    held.vm_name == want_name && held.ipv4 == oui.ip_addr && uuid_eq
}

/// Outcome of one vdptool run that expects an answer for one VSI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssocOutcome {
    /// The bridge assigned this VLAN (1..4094).
    Associated { vlan: u16 },
    /// The bridge associated the VSI with VLAN 0: no VLAN (yet), no failure.
    NoVlanYet,
    /// Final failure with the reason for the controller.
    Failed { reason: String },
    /// No verdict yet: `-W` ran out with no event, or lldpad says the VSI
    /// has a request in flight. A later query resolves it.
    Pending,
    /// The event printed belongs to another VSI (`-W` shows the first event
    /// of the interface): the caller must query. Carries the other uuid.
    NotOurs { other_uuid: String },
}

/// A failure line of a command that did not run properly (rc 255 without
/// lldpad, other non-zero exits): lldpad's/vdptool's own text.
pub fn command_failure(out: &CmdOutput) -> Option<String> {
    if let Some(l) = out
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("FAILED:"))
    {
        return Some(l.to_string());
    }
    if out.code == 0 {
        return None;
    }
    let err = out.stderr.trim();
    let text = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::trim)
        .unwrap_or_else(|| out.stdout.trim());
    Some(if text.is_empty() {
        format!("vdptool exited with {}", out.code)
    } else {
        text.to_string()
    })
}

/// Judge the output of `vdptool -T -W -V assoc ...` for VSI `uuid`/`mac`.
pub fn assoc_outcome(out: &CmdOutput, uuid: &str, mac: &str) -> AssocOutcome {
    assoc_outcome_in(out, uuid, mac, Mode::Assoc)
}

/// [`assoc_outcome`] of a request in `mode` (a pre-association's answer
/// names its own mode; the VLAN it carries is the one the switch reserved).
pub fn assoc_outcome_in(out: &CmdOutput, uuid: &str, mac: &str, mode: Mode) -> AssocOutcome {
    if let Some(f) = command_failure(out) {
        return match Refusal::classify(f) {
            Refusal::Busy => AssocOutcome::Pending,
            r => AssocOutcome::Failed { reason: r.text() },
        };
    }
    let events = parse_events(&out.stdout);
    if events.is_empty() {
        if out.stdout.trim().is_empty() {
            return AssocOutcome::Pending;
        }
        return AssocOutcome::Failed {
            reason: mode_failure_reason(out.stdout.trim()),
        };
    }
    let Some(ev) = events.iter().find(|e| e.uuid.eq_ignore_ascii_case(uuid)) else {
        let other = events.first().map(|e| e.uuid.clone()).unwrap_or_default();
        return AssocOutcome::NotOurs { other_uuid: other };
    };
    event_outcome_in(ev, mac, &out.stdout, mode)
}

/// Judge one event already matched to our uuid.
pub fn event_outcome(ev: &VdpEvent, mac: &str, reply: &str) -> AssocOutcome {
    event_outcome_in(ev, mac, reply, Mode::Assoc)
}

/// [`event_outcome`] of a request in `mode`: the event confirms it when it
/// names the same mode.
pub fn event_outcome_in(ev: &VdpEvent, mac: &str, reply: &str, mode: Mode) -> AssocOutcome {
    if ev.filters.len() > 1 {
        return AssocOutcome::Failed {
            reason: multiple_filter_failure_reason(reply.trim()),
        };
    }
    let Some(filter_text) = ev.filters.first() else {
        return AssocOutcome::Failed {
            reason: filter_failure_reason(reply.trim()),
        };
    };
    let Some(filter) = parse_filter(filter_text) else {
        return AssocOutcome::Failed {
            reason: format_failure_reason(reply.trim()),
        };
    };
    if let Some(m) = &filter.mac {
        if !m.eq_ignore_ascii_case(mac) {
            return AssocOutcome::Failed {
                reason: mac_mismatch_failure_reason(mac, m),
            };
        }
    }
    match ev.mode.as_str() {
        m if m == mode.as_str() => match filter.valid_vlan() {
            Some(vlan) => AssocOutcome::Associated { vlan },
            None if filter.vlan() == 0 => AssocOutcome::NoVlanYet,
            None => AssocOutcome::Failed {
                reason: invalid_vlan_reason(filter.vlan()),
            },
        },
        "" => AssocOutcome::Failed {
            reason: mode_failure_reason(reply.trim()),
        },
        _ => AssocOutcome::Failed {
            reason: ev
                .error
                .clone()
                .unwrap_or_else(|| DEASSOC_NO_REASON.to_string()),
        },
    }
}

/// What a refusal of lldpad (or a vdptool that could not reach it) means,
/// read from its text once, here; the driver decides on the variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The VSI has a request in flight (`VSI association in progress`).
    Busy,
    /// VDP is not usable on the port yet (LLDP/EVB still starting, lldpad
    /// restarting) or lldpad cannot be reached: no verdict.
    NotReady(String),
    /// `Invalid parameters`: also lldpad's answer while its EVB group-id
    /// negotiation is not finished, so "not ready" for a while after the
    /// port was set up, a verdict afterwards.
    InvalidParameters(String),
    /// Any other refusal: a verdict, its text sent to the controller.
    Other(String),
}

/// lldpad's / vdptool's texts that only mean "not usable yet" or "cannot
/// reach lldpad" (vdptool's text when the control socket is refused).
const NOT_READY_TEXTS: [&str; 3] = [
    "VDP protocol not supported on interface",
    "Device not found or inactive",
    "Failed to connect to lldpad",
];

impl Refusal {
    pub fn classify(text: String) -> Refusal {
        if text.trim_start_matches("FAILED:").trim() == BUSY_TEXT {
            Refusal::Busy
        } else if NOT_READY_TEXTS.iter().any(|t| text.contains(t)) {
            Refusal::NotReady(text)
        } else if text.contains(wire::status_text(5)) {
            Refusal::InvalidParameters(text)
        } else {
            Refusal::Other(text)
        }
    }
    /// The text as lldpad / vdptool gave it.
    pub fn text(&self) -> String {
        match self {
            Refusal::Busy => format!("FAILED: {BUSY_TEXT}"),
            Refusal::NotReady(t) | Refusal::InvalidParameters(t) | Refusal::Other(t) => t.clone(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Outcome of a request sent without `-W` (deassoc): `Ok` when lldpad took
/// it, the refusal otherwise.
pub fn request_result(out: &CmdOutput) -> Result<(), Refusal> {
    match command_failure(out) {
        Some(f) => Err(Refusal::classify(f)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
