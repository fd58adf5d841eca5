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

// ---- arguments ----

/// Why an argv could not be built. Values reaching here were validated
/// upstream; this is a cheap second line of defence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// A value that could smuggle extra vdptool arguments, or is malformed.
    BadValue { field: &'static str, value: String },
    /// `vdp.filter` not in 1..=4.
    UnsupportedFilter(u32),
    /// `vdp.vsiidfrmt` other than 5 (UUID).
    UnsupportedVsiIdFormat(u32),
    /// Filter format needs a MAC / non-zero group id that is missing.
    MissingFilterPart { filter: u32, part: &'static str },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::BadValue { field, value } => {
                write!(f, "invalid {field} for vdptool: {value:?}")
            }
            ArgError::UnsupportedFilter(x) => write!(f, "unsupported VDP filter format {x}"),
            ArgError::UnsupportedVsiIdFormat(x) => {
                write!(f, "unsupported VSI ID format {x} (only 5, UUID)")
            }
            ArgError::MissingFilterPart { filter, part } => {
                write!(f, "VDP filter format {filter} needs a {part}")
            }
        }
    }
}

impl std::error::Error for ArgError {}

/// VDP request mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Assoc,
    Deassoc,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Assoc => "assoc",
            Mode::Deassoc => "deassoc",
        }
    }
}

/// The per-VSI values of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsiArgs<'a> {
    /// VSI ID (the port UUID).
    pub uuid: &'a str,
    pub mac: &'a str,
    /// Group id (= segmentation id) for filter formats 3 and 4.
    pub gid: u32,
    /// Filter VLAN field as lldpad stores it (0 = "bridge chooses"; may
    /// carry PS/PCP bits in 15..12 when echoing a stored value).
    pub vlan: u16,
    /// Only `oui_id == "cisco"` is sent, only with assoc.
    pub oui: Option<&'a Oui>,
}

fn bad(field: &'static str, value: &str) -> ArgError {
    ArgError::BadValue {
        field,
        value: value.to_string(),
    }
}

/// A free-text token that lands inside `-c key=value` or `oui=cisco,k=v`:
/// non-empty, no `,` `=` whitespace or control characters.
pub fn check_token(field: &'static str, value: &str) -> Result<(), ArgError> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c == ',' || c == '=' || c.is_whitespace() || c.is_control())
    {
        return Err(bad(field, value));
    }
    Ok(())
}

/// UUID-ish: hex digits and dashes only (8-4-4-4-12 or 32 hex).
fn check_uuid(field: &'static str, value: &str) -> Result<(), ArgError> {
    let hex = value.chars().filter(|c| c.is_ascii_hexdigit()).count();
    if hex != 32 || !value.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(bad(field, value));
    }
    Ok(())
}

fn check_mac(value: &str) -> Result<(), ArgError> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(bad("mac", value));
    }
    Ok(())
}

/// lldpad copies `vm_name` into a 100-byte buffer (`MAX_VM_NAME`).
pub const MAX_VM_NAME: usize = 99;

/// The longest prefix of `s` of at most `max` bytes ending at a character
/// boundary.
fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The `filter=` value for `vdp.filter` format `fmt`
/// (1 `VLAN`, 2 `VLAN-MAC`, 3 `VLAN--GID`, 4 `VLAN-MAC-GID`).
pub fn filter_value(fmt: u32, vlan: u16, mac: &str, gid: u32) -> Result<String, ArgError> {
    match fmt {
        4 => {
            check_mac(mac)?;
            if gid == 0 {
                return Err(ArgError::MissingFilterPart {
                    filter: 4,
                    part: "non-zero group id",
                });
            }
            Ok(format!("{vlan}-{mac}-{gid}"))
        }
        3 => {
            if gid == 0 {
                return Err(ArgError::MissingFilterPart {
                    filter: 3,
                    part: "non-zero group id",
                });
            }
            Ok(format!("{vlan}--{gid}"))
        }
        2 => {
            check_mac(mac)?;
            Ok(format!("{vlan}-{mac}"))
        }
        1 => Ok(format!("{vlan}")),
        x => Err(ArgError::UnsupportedFilter(x)),
    }
}

/// `-c mode=.. -c mgrid2=.. -c typeid=.. -c typeidver=.. -c uuid=..`
fn key_args(
    argv: &mut Vec<String>,
    cfg: &VdpConfig,
    mode: Mode,
    uuid: &str,
) -> Result<(), ArgError> {
    if cfg.vsiidfrmt != VSIID_FORMAT_UUID {
        return Err(ArgError::UnsupportedVsiIdFormat(cfg.vsiidfrmt));
    }
    check_token("vdp.mgrid2", &cfg.mgrid2)?;
    check_uuid("uuid", uuid)?;
    for kv in [
        format!("mode={}", mode.as_str()),
        format!("mgrid2={}", cfg.mgrid2),
        format!("typeid={}", cfg.typeid),
        format!("typeidver={}", cfg.typeidver),
        format!("uuid={uuid}"),
    ] {
        argv.push("-c".into());
        argv.push(kv);
    }
    Ok(())
}

/// Per-VSI query (original `send_vdp_query_msg`):
/// `vdptool -t -i IF -R -V assoc -c mode=assoc -c mgrid2=.. -c typeid=.. -c typeidver=.. -c uuid=U`.
pub fn query_argv(ifname: &str, cfg: &VdpConfig, uuid: &str) -> Result<Vec<String>, ArgError> {
    check_token("interface", ifname)?;
    let mut argv: Vec<String> = [VDPTOOL, "-t", "-i", ifname, "-R", "-V", "assoc"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    key_args(&mut argv, cfg, Mode::Assoc, uuid)?;
    Ok(argv)
}

/// Every associated VSI of the interface in one answer:
/// `vdptool -t -i IF -R -V assoc -c mode=assoc`.
pub fn list_argv(ifname: &str) -> Result<Vec<String>, ArgError> {
    check_token("interface", ifname)?;
    Ok([
        VDPTOOL,
        "-t",
        "-i",
        ifname,
        "-R",
        "-V",
        "assoc",
        "-c",
        "mode=assoc",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect())
}

/// Associate / deassociate (original `send_vdp_msg`):
/// `vdptool -T -i IF [-W] -V MODE -c mode=MODE -c mgrid2=.. -c typeid=.. -c typeidver=.. -c uuid=U -c hints=H -c filter=F`
/// plus, for assoc with a Cisco OUI, `-c oui=cisco,vm_name=N -c oui=cisco,ipv4_addr=A -c oui=cisco,vm_uuid=U2`
/// (each only when known, in that order).
pub fn request_argv(
    ifname: &str,
    cfg: &VdpConfig,
    mode: Mode,
    vsi: &VsiArgs<'_>,
    wait: bool,
) -> Result<Vec<String>, ArgError> {
    check_token("interface", ifname)?;
    let mut argv: Vec<String> = vec![VDPTOOL.into(), "-T".into(), "-i".into(), ifname.into()];
    if wait {
        argv.push("-W".into());
    }
    argv.push("-V".into());
    argv.push(mode.as_str().into());
    key_args(&mut argv, cfg, mode, vsi.uuid)?;
    match cfg.hints.as_str() {
        "none" | "to" | "from" => {}
        other => return Err(bad("vdp.hints", other)),
    }
    let filter = filter_value(cfg.filter, vsi.vlan, vsi.mac, vsi.gid)?;
    argv.push("-c".into());
    argv.push(format!("hints={}", cfg.hints));
    argv.push("-c".into());
    argv.push(format!("filter={filter}"));
    if mode == Mode::Assoc {
        if let Some(oui) = vsi.oui.filter(|o| o.is_cisco()) {
            for item in cisco_oui_items(oui)? {
                argv.push("-c".into());
                argv.push(item);
            }
        }
    }
    Ok(argv)
}

/// `oui=cisco,vm_name=N`, `oui=cisco,ipv4_addr=A`, `oui=cisco,vm_uuid=U`
/// (original `gen_cisco_vdp_oui`).
fn cisco_oui_items(oui: &Oui) -> Result<Vec<String>, ArgError> {
    let mut items = Vec::new();
    if let Some(name) = &oui.vm_name {
        // The validator's rule (spaces allowed, up to 128 bytes); vdptool
        // passes the value as one length-prefixed item, so a space is fine.
        // lldpad keeps at most MAX_VM_NAME bytes: a longer name is cut at a
        // character boundary here rather than refused.
        if name.is_empty() || crate::validate::vm_name_problem(name).is_some() {
            return Err(bad("oui.vm_name", name));
        }
        items.push(format!(
            "oui=cisco,vm_name={}",
            truncate_at_char(name, MAX_VM_NAME)
        ));
    }
    if let Some(ip) = &oui.ip_addr {
        items.push(format!("oui=cisco,ipv4_addr={ip}"));
    }
    if let Some(u) = &oui.vm_uuid {
        check_uuid("oui.vm_uuid", u)?;
        items.push(format!("oui=cisco,vm_uuid={u}"));
    }
    Ok(items)
}

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
    /// Raw `filter = ...` value.
    pub filter: Option<String>,
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
                "filter" if ev.filter.is_none() => ev.filter = Some(v),
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
mod tests {
    use super::*;

    fn cfg() -> VdpConfig {
        VdpConfig::default()
    }

    #[test]
    fn query_and_list_argv() {
        let a = query_argv("LLDPLeth2", &cfg(), "7af441dd-253b-4772-8cf1-a4cfef18efe5").unwrap();
        assert_eq!(
            a.join(" "),
            "vdptool -t -i LLDPLeth2 -R -V assoc -c mode=assoc -c mgrid2=0 -c typeid=0 \
             -c typeidver=0 -c uuid=7af441dd-253b-4772-8cf1-a4cfef18efe5"
        );
        assert_eq!(
            list_argv("LLDPLeth2").unwrap().join(" "),
            "vdptool -t -i LLDPLeth2 -R -V assoc -c mode=assoc"
        );
    }

    #[test]
    fn assoc_argv_with_cisco_oui() {
        let oui = Oui {
            oui_id: "cisco".into(),
            vm_name: Some("vm-1".into()),
            vm_uuid: Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
            ip_addr: Some("10.0.0.5".parse().unwrap()),
            ..Default::default()
        };
        let v = VsiArgs {
            uuid: "7af441dd-253b-4772-8cf1-a4cfef18efe5",
            mac: "fa:16:3e:00:00:01",
            gid: 20000,
            vlan: 0,
            oui: Some(&oui),
        };
        let a = request_argv("LLDPLeth2", &cfg(), Mode::Assoc, &v, true).unwrap();
        assert_eq!(
            a.join(" "),
            "vdptool -T -i LLDPLeth2 -W -V assoc -c mode=assoc -c mgrid2=0 -c typeid=0 \
             -c typeidver=0 -c uuid=7af441dd-253b-4772-8cf1-a4cfef18efe5 -c hints=none \
             -c filter=0-fa:16:3e:00:00:01-20000 -c oui=cisco,vm_name=vm-1 \
             -c oui=cisco,ipv4_addr=10.0.0.5 -c oui=cisco,vm_uuid=0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        );
        // deassoc: no -W, no OUI, stored VLAN field repeated
        let v = VsiArgs { vlan: 3003, ..v };
        let a = request_argv("LLDPLeth2", &cfg(), Mode::Deassoc, &v, false).unwrap();
        assert_eq!(
            a.join(" "),
            "vdptool -T -i LLDPLeth2 -V deassoc -c mode=deassoc -c mgrid2=0 -c typeid=0 \
             -c typeidver=0 -c uuid=7af441dd-253b-4772-8cf1-a4cfef18efe5 -c hints=none \
             -c filter=3003-fa:16:3e:00:00:01-20000"
        );
        // non-cisco OUI is not sent
        let other = Oui {
            oui_id: "acme".into(),
            vm_name: Some("x".into()),
            ..Default::default()
        };
        let v = VsiArgs {
            oui: Some(&other),
            ..v
        };
        let a = request_argv("IF", &cfg(), Mode::Assoc, &v, false).unwrap();
        assert!(!a.iter().any(|s| s.starts_with("oui=")));
    }

    #[test]
    fn vm_name_follows_the_validator_rule() {
        // A space and 100..=128 bytes pass validation, so they must reach
        // lldpad: the space as is, a long name cut to lldpad's 99 bytes at
        // a character boundary.
        let argv_for = |name: &str| {
            let oui = Oui {
                oui_id: "cisco".into(),
                vm_name: Some(name.to_string()),
                ..Default::default()
            };
            let v = VsiArgs {
                uuid: "7af441dd-253b-4772-8cf1-a4cfef18efe5",
                mac: "fa:16:3e:00:00:01",
                gid: 1,
                vlan: 0,
                oui: Some(&oui),
            };
            request_argv("IF", &cfg(), Mode::Assoc, &v, true)
                .unwrap()
                .into_iter()
                .find(|a| a.starts_with("oui=cisco,vm_name="))
                .unwrap()
        };
        assert_eq!(argv_for("web 01"), "oui=cisco,vm_name=web 01");
        let long = "n".repeat(128);
        assert_eq!(
            argv_for(&long),
            format!("oui=cisco,vm_name={}", "n".repeat(99))
        );
        // 98 ASCII bytes + a 2-byte character straddling byte 99: cut before it.
        let straddle = format!("{}é", "n".repeat(98));
        assert_eq!(
            argv_for(&straddle),
            format!("oui=cisco,vm_name={}", "n".repeat(98))
        );
        for ok in ["web 01", long.as_str(), straddle.as_str()] {
            assert_eq!(crate::validate::vm_name_problem(ok), None);
        }
    }

    #[test]
    fn refuses_smuggling() {
        let u = "7af441dd-253b-4772-8cf1-a4cfef18efe5";
        let long = "n".repeat(129);
        for bad in ["a,vm_uuid=x", "a=b", "a\tb", "x\u{7}", "", long.as_str()] {
            let oui = Oui {
                oui_id: "cisco".into(),
                vm_name: Some(bad.to_string()),
                ..Default::default()
            };
            let v = VsiArgs {
                uuid: u,
                mac: "fa:16:3e:00:00:01",
                gid: 1,
                vlan: 0,
                oui: Some(&oui),
            };
            assert!(
                request_argv("IF", &cfg(), Mode::Assoc, &v, true).is_err(),
                "{bad:?}"
            );
        }
        let v = VsiArgs {
            uuid: "abc,mode=deassoc",
            mac: "fa:16:3e:00:00:01",
            gid: 1,
            vlan: 0,
            oui: None,
        };
        assert!(request_argv("IF", &cfg(), Mode::Assoc, &v, true).is_err());
        let v2 = VsiArgs {
            uuid: u,
            mac: "fa:16:3e:00:00:01-9",
            ..v
        };
        assert!(request_argv("IF", &cfg(), Mode::Assoc, &v2, true).is_err());
        let mut c = cfg();
        c.mgrid2 = "0,typeid=5".into();
        assert!(query_argv("IF", &c, u).is_err());
        assert!(list_argv("I F").is_err());
    }

    #[test]
    fn filter_formats() {
        assert_eq!(
            filter_value(4, 0, "fa:16:3e:00:00:01", 5).unwrap(),
            "0-fa:16:3e:00:00:01-5"
        );
        assert_eq!(filter_value(3, 0, "", 5).unwrap(), "0--5");
        assert_eq!(
            filter_value(2, 7, "fa:16:3e:00:00:01", 0).unwrap(),
            "7-fa:16:3e:00:00:01"
        );
        assert_eq!(filter_value(1, 0, "", 0).unwrap(), "0");
        assert!(filter_value(4, 0, "fa:16:3e:00:00:01", 0).is_err());
        assert!(filter_value(5, 0, "", 1).is_err());
        let f = parse_filter("48059-fa:16:3e:00:00:0B-0").unwrap();
        assert_eq!(f.vlan(), 3003);
        assert_eq!(f.valid_vlan(), Some(3003));
        assert_eq!(f.mac.as_deref(), Some("fa:16:3e:00:00:0b"));
        let f = parse_filter("0-20005").unwrap();
        assert_eq!((f.raw_vlan, f.gid, f.mac), (0, Some(20005), None));
        assert_eq!(
            parse_filter("0-fa:16:3e:00:00:01-0").unwrap().valid_vlan(),
            None
        );
        assert!(parse_filter("x-1").is_none());
    }

    #[test]
    fn status_texts() {
        assert_eq!(status_text(2), "Device not found or inactive");
        assert_eq!(status_text(0x0d), "VDP protocol not supported on interface");
        assert_eq!(status_text(0x0f), BUSY_TEXT);
    }
}
