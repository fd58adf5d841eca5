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

use crate::config::VdpConfig;
use crate::exec::CmdOutput;
use crate::model::Oui;
use std::fmt;

/// The program name.
pub const VDPTOOL: &str = "vdptool";

/// Refresh rounds with an unchanged result after which the result is
/// reported again anyway (original `CALLBACK_THRESHOLD`).
pub const CALLBACK_THRESHOLD: u32 = 5;

/// VSI ID format supported (UUID), original `VDP_VSIFRMT_UUID`.
pub const VSIID_FORMAT_UUID: u32 = 5;

/// `hints` value of a VSI still waiting for the bridge's first answer.
pub const HINTS_NO_ANSWER: u32 = 255;

/// lldpad's text for a busy VSI (`FAILED: VSI association in progress`).
pub const BUSY_TEXT: &str = "VSI association in progress";

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

// ---- `Response from VDP` events (-W) ----

/// One `Response from VDP` block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VdpEvent {
    pub mode: Option<String>,
    pub uuid: Option<String>,
    /// Raw `filter = ...` value (the first).
    pub filter: Option<String>,
    /// How many `filter = ...` lines the block has (more than one is the
    /// original's "multiple filter information found").
    pub filter_count: usize,
    /// `Error returned by Bridge: X` / `Internal Error : X` lines, in order.
    pub errors: Vec<String>,
}

/// All `Response from VDP` blocks of a vdptool output.
pub fn parse_events(stdout: &str) -> Vec<VdpEvent> {
    let mut events = Vec::new();
    let mut cur: Option<VdpEvent> = None;
    for line in stdout.lines() {
        if line.trim() == "Response from VDP" {
            if let Some(ev) = cur.take() {
                events.push(ev);
            }
            cur = Some(VdpEvent::default());
            continue;
        }
        let Some(ev) = cur.as_mut() else { continue };
        if !line.starts_with('\t') {
            // End of the block (e.g. a FAILED line after it).
            events.push(cur.take().unwrap_or_default());
            continue;
        }
        let t = line.trim();
        if t.starts_with("Error returned by Bridge") || t.starts_with("Internal Error") {
            ev.errors.push(t.to_string());
        } else if let Some((k, v)) = t.split_once(" = ") {
            let v = v.trim().to_string();
            match k.trim() {
                "mode" => ev.mode = Some(v),
                "uuid" => ev.uuid = Some(v),
                "filter" => {
                    ev.filter_count += 1;
                    if ev.filter.is_none() {
                        ev.filter = Some(v);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(ev) = cur {
        events.push(ev);
    }
    events
}

// ---- raw query (-t -R) ----

/// One VSI record of a raw query answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VsiRecord {
    pub mode: String,
    pub uuid: String,
    pub hints: Option<u32>,
    /// Raw filter value (`3003-fa:16:3e:00:00:0b-20000`).
    pub filter: Option<String>,
    /// Every field in order (OUI data included).
    pub fields: Vec<(String, String)>,
}

impl VsiRecord {
    pub fn parsed_filter(&self) -> Option<Filter> {
        self.filter.as_deref().and_then(parse_filter)
    }
}

/// A parsed raw query answer (the `R` line).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryReply {
    /// lldpad's clif status (0 = ok).
    pub status: u8,
    pub records: Vec<VsiRecord>,
    /// A record's declared length ran past the end of the answer.
    pub truncated: bool,
}

/// lldpad's text for a clif status (vdptool `print_status`).
pub fn status_text(status: u8) -> &'static str {
    match status {
        0 => "Successful",
        1 => "Failed",
        2 => "Device not found or inactive",
        3 => "Agent instance for device not found",
        4 => "Invalid command",
        5 => "Invalid parameters",
        6 => "Peer feature not present",
        7 => "Version not compatible",
        8 => "Device not capable",
        9 => "Command not applicable",
        10 => "Access denied",
        11 => "TLV does not support agent type",
        0x0d => "VDP protocol not supported on interface",
        0x0e => "Not enough memory",
        0x0f => BUSY_TEXT,
        _ => "Unknown status",
    }
}

fn hex_at(s: &str, at: usize, n: usize) -> Option<usize> {
    let t = s.get(at..at + n)?;
    if !t.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    usize::from_str_radix(t, 16).ok()
}

/// Parse one record body: `KK key VVVV value` repeated.
fn parse_record(body: &str) -> Option<VsiRecord> {
    let mut rec = VsiRecord::default();
    let mut at = 0;
    while at < body.len() {
        let klen = hex_at(body, at, 2)?;
        let key = body.get(at + 2..at + 2 + klen)?.to_string();
        at += 2 + klen;
        let vlen = hex_at(body, at, 4)?;
        let val = body.get(at + 4..at + 4 + vlen)?.to_string();
        at += 4 + vlen;
        match key.as_str() {
            "mode" => rec.mode = val.clone(),
            "uuid" => rec.uuid = val.clone(),
            "hints" => rec.hints = val.parse().ok(),
            "filter" if rec.filter.is_none() => rec.filter = Some(val.clone()),
            _ => {}
        }
        rec.fields.push((key, val));
    }
    Some(rec)
}

/// Parse the `R` line of a raw query (`vdptool -t ... -R`). Err = a reason
/// text (original `format_failure_reason`) when no `R` line can be read.
pub fn parse_query(stdout: &str) -> Result<QueryReply, String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('R'))
        .ok_or_else(|| format_failure_reason(stdout.trim()))?;
    let bad = || format_failure_reason(line);
    // R SS C V CC OOOOOOOO LL ifname [TTTTTTTT records]
    let status = hex_at(line, 1, 2).ok_or_else(bad)? as u8;
    if line.get(3..4) != Some("C") {
        return Err(bad());
    }
    let iflen = hex_at(line, 15, 2).ok_or_else(bad)?;
    let mut at = 17 + iflen;
    if line.len() < at {
        return Err(bad());
    }
    let mut reply = QueryReply {
        status,
        ..Default::default()
    };
    if status != 0 || line.len() == at {
        return Ok(reply);
    }
    hex_at(line, at, 8).ok_or_else(bad)?; // TLV id
    at += 8;
    while at < line.len() {
        let Some(len) = hex_at(line, at, 4) else {
            reply.truncated = true;
            break;
        };
        let Some(body) = line.get(at + 4..at + 4 + len) else {
            reply.truncated = true;
            break;
        };
        match parse_record(body) {
            Some(r) => reply.records.push(r),
            None => {
                reply.truncated = true;
                break;
            }
        }
        at += 4 + len;
    }
    Ok(reply)
}

// ---- interpretation ----

/// What lldpad holds for one VSI, from a query record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VsiState {
    /// hints 0 and a usable VLAN: associated.
    Associated { vlan: u16, raw_vlan: u16 },
    /// hints 255: the first answer of the bridge is still awaited.
    InProgress,
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
    let count = |key: &str| rec.fields.iter().filter(|(k, _)| k == key).count();
    if count("filter") > 1 {
        return VsiState::Unusable {
            reason: multiple_filter_failure_reason(&rec.fields_text()),
            raw_vlan: 0,
        };
    }
    if count("hints") > 1 {
        return VsiState::Unusable {
            reason: multiple_hints_failure_reason(&rec.fields_text()),
            raw_vlan: 0,
        };
    }
    let Some(filter) = rec.parsed_filter() else {
        return VsiState::Unusable {
            reason: filter_failure_reason(&rec.fields_text()),
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
            reason: hints_failure_reason(&rec.fields_text()),
            raw_vlan,
        },
        Some(HINTS_NO_ANSWER) => VsiState::InProgress,
        Some(0) => match filter.valid_vlan() {
            Some(vlan) => VsiState::Associated { vlan, raw_vlan },
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

impl VsiRecord {
    fn fields_text(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
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
    let v = rec.fields.iter().find(|(k, _)| k == "oui")?.1.as_str();
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
    if let Some(f) = command_failure(out) {
        if f.trim_start_matches("FAILED:").trim() == BUSY_TEXT {
            return AssocOutcome::Pending;
        }
        return AssocOutcome::Failed { reason: f };
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
    let Some(ev) = events.iter().find(|e| {
        e.uuid
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
    }) else {
        let other = events
            .first()
            .and_then(|e| e.uuid.clone())
            .unwrap_or_default();
        return AssocOutcome::NotOurs { other_uuid: other };
    };
    event_outcome(ev, mac, &out.stdout)
}

/// Judge one event already matched to our uuid.
pub fn event_outcome(ev: &VdpEvent, mac: &str, reply: &str) -> AssocOutcome {
    if ev.filter_count > 1 {
        return AssocOutcome::Failed {
            reason: multiple_filter_failure_reason(reply.trim()),
        };
    }
    let Some(filter_text) = ev.filter.as_deref() else {
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
    match ev.mode.as_deref() {
        Some("assoc") => match filter.valid_vlan() {
            Some(vlan) => AssocOutcome::Associated { vlan },
            None => AssocOutcome::Failed {
                reason: invalid_vlan_reason(filter.vlan()),
            },
        },
        Some(_) => AssocOutcome::Failed {
            reason: if ev.errors.is_empty() {
                DEASSOC_NO_REASON.to_string()
            } else {
                ev.errors.join("; ")
            },
        },
        None => AssocOutcome::Failed {
            reason: mode_failure_reason(reply.trim()),
        },
    }
}

/// Outcome of a request sent without `-W` (deassoc): `Ok` when lldpad took
/// it, `Err(text)` otherwise.
pub fn request_result(out: &CmdOutput) -> Result<(), String> {
    match command_failure(out) {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
