//! lldpad's VDP22 wire codec: pure, bytes in and typed values out, no I/O.
//!
//! Owns:
//! - `Command`: one typed request to lldpad's VDP22 module (a query of one
//!   VSI, a list of every VSI, an associate or a deassociate). It renders to
//!   the exact `vdptool` argv (`Command::argv`) **and** to the exact control
//!   socket datagram vdptool sends for that argv (`Command::datagram`), so
//!   the two transports can never disagree.
//! - `Record`: the one parser of lldpad's VSI records (`%02x key %04x
//!   value` repeated), used for query answers and for event datagrams alike.
//! - `QueryReply` (`parse_get_reply`): the `R` answer to a "get".
//! - `VdpEvent`: the one event type, decoded from an event datagram
//!   (`parse_event`) or from vdptool's printed `Response from VDP` blocks
//!   (`crate::lldpad::vdptool::parse_events`).
//! - The texts of lldpad's command status (`status_text`, vdptool's
//!   `print_status`) and of a VSI status (`describe_status`).
//!
//! Calls nothing (data types of `crate::config` only).
//!
//! Wire facts (openlldp `vdptool.c` `render_cmd`, `clif.c`, `ctrl_iface.c`,
//! `qbg/vdp22_cmds.c`, checked live: `tests/lldpad_clif_query.rs` and
//! `tests/fixtures/clif/`):
//! - A command is ASCII: `M` `%08x` module (`000080c4`) `C` `%1x` clif
//!   version (3) `%02x` command (01 get, 02 set) `%08x` ops `%02x` ifname
//!   length, ifname, `%02x` type (02 = nearest customer bridge) `%08x` TLV
//!   id (preassoc 1, preassoc-rr 2, assoc 3, deassoc 4), then per `-c
//!   key=value`: `%02x` key, `%04x` value.
//! - ops of a get: local 0x01, plus arg 0x04 | config 0x10 with arguments.
//!   ops of a set: config 0x10 | arg 0x04 | argval 0x08, the number of
//!   `filter` arguments in bits 15..8 and of OUI blocks in bits 23..16.
//! - vdptool merges the `-c oui=NAME,k=v` items of one OUI name into one
//!   `oui` argument: `%02x` name length, name, then per item `%02x` key
//!   `%04x` value (the Cisco handler's encoding), in argv order.
//! - lldpad answers `R` + 2-hex status + the command header echoed from `C`
//!   to the ifname + data; a get's data is the TLV id and the records, each
//!   `%04x` length + record. Events are `M000080c4E` + level digits + `%04x`
//!   length + one record.

use crate::config::VdpConfig;

/// lldpad module id of VDP22 (`LLDP_MOD_VDP22`).
pub const LLDP_MOD_VDP22: u32 = 0x80c4;
/// The program a `Command` renders its argv for.
pub const VDPTOOL: &str = "vdptool";
/// `hints` value of a VSI still waiting for the bridge's first answer.
pub const HINTS_NO_ANSWER: u32 = 255;
/// lldpad's text for a busy VSI (status 0x0f).
pub const BUSY_TEXT: &str = "VSI association in progress";
/// lldpad's `cmd_no_access` status: it refuses clients that are not uid 0.
pub const STATUS_NO_ACCESS: u8 = 0x0a;

/// The event header `M000080c4E` (clif.c `EVTHEADER` without the level).
pub const EVENT_PREFIX: &[u8] = b"M000080c4E";

const CLIF_VERSION: u8 = 3;
const CMD_GET: u8 = 1;
const CMD_SET: u8 = 2;
const TYPE_NCB: u8 = 2;
const OP_LOCAL: u32 = 0x01;
const OP_ARG: u32 = 0x04;
const OP_ARGVAL: u32 = 0x08;
const OP_CONFIG: u32 = 0x10;
const OP_FID_POS: u32 = 8;
const OP_OUI_POS: u32 = 16;

/// VSI status bits carried in `hints` above the 8-bit status
/// (`vdp22_getsm_errcode`, `VDP22_STATUS_BITS`).
pub const ERR_KATO: u32 = 1 << 8;
pub const ERR_ACKTO: u32 = 2 << 8;
pub const ERR_TXERR: u32 = 4 << 8;

/// VDP request mode (the `-V` TLV and the `mode=` value). The two
/// pre-association modes (IEEE 802.1Qbg 41.2.1: the switch prepares the
/// VSI, with or without reserving its resources, before the VM arrives)
/// are what a live migration's destination sends ahead of the switchover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pre-associate (live migration destination, `vdp.preassoc: preassoc`).
    Preassoc,
    /// Pre-associate with resource reservation (`preassoc-rr`).
    PreassocRr,
    Assoc,
    Deassoc,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Preassoc => "preassoc",
            Mode::PreassocRr => "preassoc-rr",
            Mode::Assoc => "assoc",
            Mode::Deassoc => "deassoc",
        }
    }
    /// The VDP22 TLV id vdptool looks the name up to (lldpad's
    /// `vdp22_modes`: 1 preassoc, 2 preassoc with resource reservation,
    /// 3 assoc, 4 deassoc).
    pub fn tlv_id(self) -> u32 {
        match self {
            Mode::Preassoc => 1,
            Mode::PreassocRr => 2,
            Mode::Assoc => 3,
            Mode::Deassoc => 4,
        }
    }
    /// A request that asks the switch for the VSI's resources (and so
    /// carries the VM's OUI data): every mode but deassoc.
    pub fn asks_resources(self) -> bool {
        self != Mode::Deassoc
    }
}

/// One request to lldpad's VDP22 module, with its values already checked
/// (the builders in `crate::lldpad::vdptool` check them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// get (`-t ... -R`) or set (`-T`).
    pub set: bool,
    /// `-W`: wait for the VSI's event (set only; not part of the datagram).
    pub wait: bool,
    pub ifname: String,
    pub mode: Mode,
    /// The `-c key=value` arguments in order; an OUI item is
    /// (`oui`, `NAME,k=v`).
    pub args: Vec<(String, String)>,
}

/// The identity keys every VSI request carries (`mode mgrid2 typeid
/// typeidver uuid`).
pub fn key_args(cfg: &VdpConfig, mode: Mode, uuid: &str) -> Vec<(String, String)> {
    vec![
        ("mode".into(), mode.as_str().into()),
        ("mgrid2".into(), cfg.mgrid2.clone()),
        ("typeid".into(), cfg.typeid.to_string()),
        ("typeidver".into(), cfg.typeidver.to_string()),
        ("uuid".into(), uuid.into()),
    ]
}

impl Command {
    /// A get of one VSI (`uuid`) or, with `uuid: None` and no keys, of every
    /// VSI of the interface.
    pub fn get(ifname: &str, args: Vec<(String, String)>) -> Command {
        Command::get_in(ifname, Mode::Assoc, args)
    }

    /// A get among the VSIs lldpad holds in `mode`: lldpad answers a
    /// query only with VSIs whose mode is the query's (`-V MODE`), so a
    /// pre-associated VSI is found only by a `-V preassoc[-rr]` query.
    pub fn get_in(ifname: &str, mode: Mode, args: Vec<(String, String)>) -> Command {
        Command {
            set: false,
            wait: false,
            ifname: ifname.into(),
            mode,
            args,
        }
    }

    /// An associate or deassociate.
    pub fn set(ifname: &str, mode: Mode, wait: bool, args: Vec<(String, String)>) -> Command {
        Command {
            set: true,
            wait,
            ifname: ifname.into(),
            mode,
            args,
        }
    }

    /// The vdptool command line.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = vec![VDPTOOL.into()];
        argv.push(if self.set { "-T" } else { "-t" }.into());
        argv.push("-i".into());
        argv.push(self.ifname.clone());
        if self.set && self.wait {
            argv.push("-W".into());
        }
        if !self.set {
            argv.push("-R".into());
        }
        argv.push("-V".into());
        argv.push(self.mode.as_str().into());
        for (k, v) in &self.args {
            argv.push("-c".into());
            argv.push(format!("{k}={v}"));
        }
        argv
    }

    /// The control socket datagram vdptool sends for `argv()`. `None` when
    /// a field does not fit the encoding (ifname > 255 bytes, key > 255,
    /// value > 65535, more than 255 filters or OUI blocks, an OUI item
    /// without `NAME,`).
    pub fn datagram(&self) -> Option<String> {
        if self.ifname.len() > 0xff {
            return None;
        }
        let args = if self.set {
            merge_oui(&self.args)?
        } else {
            self.args.clone()
        };
        let (cmd, ops) = if self.set {
            let fid = args.iter().filter(|(k, _)| k == "filter").count() as u32;
            let oui = args.iter().filter(|(k, _)| k == "oui").count() as u32;
            if fid > 0xff || oui > 0xff {
                return None;
            }
            let mut ops = fid << OP_FID_POS | oui << OP_OUI_POS;
            if !args.is_empty() {
                ops |= OP_CONFIG | OP_ARG | OP_ARGVAL;
            }
            (CMD_SET, ops)
        } else if args.is_empty() {
            (CMD_GET, OP_LOCAL)
        } else {
            (CMD_GET, OP_LOCAL | OP_ARG | OP_CONFIG)
        };
        let mut out = format!(
            "M{LLDP_MOD_VDP22:08x}C{CLIF_VERSION:1x}{cmd:02x}{ops:08x}{:02x}{}{TYPE_NCB:02x}{:08x}",
            self.ifname.len(),
            self.ifname,
            self.mode.tlv_id()
        );
        for (k, v) in &args {
            push_field(&mut out, k, v, 4)?;
        }
        Some(out)
    }
}

/// `%02x key %0Nx value` (N = `vwidth` hex digits).
fn push_field(out: &mut String, k: &str, v: &str, vwidth: usize) -> Option<()> {
    let vmax = (1usize << (4 * vwidth)) - 1;
    if k.len() > 0xff || v.len() > vmax {
        return None;
    }
    out.push_str(&format!(
        "{:02x}{k}{:0w$x}{v}",
        k.len(),
        v.len(),
        w = vwidth
    ));
    Some(())
}

/// vdptool's OUI rewrite: every `oui=NAME,k=v` item of one NAME becomes
/// part of one `oui` argument `%02x NAME` + `%02x k %04x v`..., placed
/// where that NAME first appeared.
fn merge_oui(args: &[(String, String)]) -> Option<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(args.len());
    let mut blocks: Vec<(String, usize)> = Vec::new(); // OUI name -> index in out
    for (k, v) in args {
        if k != "oui" {
            out.push((k.clone(), v.clone()));
            continue;
        }
        let (name, item) = v.split_once(',')?;
        let (ik, iv) = item.split_once('=')?;
        let at = match blocks.iter().find(|(n, _)| n == name) {
            Some((_, i)) => *i,
            None => {
                if name.len() > 0xff {
                    return None;
                }
                out.push(("oui".into(), format!("{:02x}{name}", name.len())));
                blocks.push((name.to_string(), out.len() - 1));
                out.len() - 1
            }
        };
        push_field(&mut out[at].1, ik, iv, 4)?;
    }
    Some(out)
}

// ---- records ----

/// One VSI record as lldpad stores and prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub mode: String,
    pub uuid: String,
    pub mgrid2: String,
    pub typeid: String,
    pub typeidver: String,
    /// VSI status (low 8 bits) | error bits << 8.
    pub hints: Option<u32>,
    /// Every `filter` value in order (`vlan[-mac][-gid]`).
    pub filters: Vec<String>,
    /// Every field in order (OUI data included), as read.
    pub fields: Vec<(String, String)>,
    /// False when a field ran past the end or had a malformed length: the
    /// fields before it are kept.
    pub complete: bool,
}

impl Record {
    /// The first filter value.
    pub fn filter(&self) -> Option<&str> {
        self.filters.first().map(String::as_str)
    }
    /// How many times `key` occurs.
    pub fn count(&self, key: &str) -> usize {
        self.fields.iter().filter(|(k, _)| k == key).count()
    }
    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `n` hex digits at `at`, or None (never panics, never slices inside a
/// UTF-8 character).
pub fn hex_at(s: &str, at: usize, n: usize) -> Option<usize> {
    let t = s.get(at..at.checked_add(n)?)?;
    if !t.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    usize::from_str_radix(t, 16).ok()
}

/// One `%02x key %04x value` field at `pos`: (key, value, next position).
pub fn next_field(rec: &str, pos: usize) -> Option<(&str, &str, usize)> {
    let klen = hex_at(rec, pos, 2)?;
    let kend = pos + 2 + klen;
    let key = rec.get(pos + 2..kend)?;
    let vlen = hex_at(rec, kend, 4)?;
    let vend = kend + 4 + vlen;
    let value = rec.get(kend + 4..vend)?;
    Some((key, value, vend))
}

/// Parse one record body. Never panics.
pub fn parse_record(body: &str) -> Record {
    let mut rec = Record {
        complete: true,
        ..Record::default()
    };
    let mut pos = 0;
    while pos < body.len() {
        let Some((key, value, next)) = next_field(body, pos) else {
            rec.complete = false;
            break;
        };
        pos = next;
        match key {
            "mode" if rec.mode.is_empty() => rec.mode = value.into(),
            "uuid" if rec.uuid.is_empty() => rec.uuid = value.into(),
            "mgrid2" => rec.mgrid2 = value.into(),
            "typeid" => rec.typeid = value.into(),
            "typeidver" => rec.typeidver = value.into(),
            "hints" if rec.hints.is_none() => rec.hints = value.parse().ok(),
            "filter" => rec.filters.push(value.into()),
            _ => {}
        }
        rec.fields.push((key.into(), value.into()));
    }
    rec
}

/// The answer to a get (`R` line).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryReply {
    /// lldpad's clif status (0 = ok).
    pub status: u8,
    pub records: Vec<Record>,
    /// A record ran past the end of the answer or was malformed.
    pub truncated: bool,
}

/// Parse a get's `R` line: `R SS C V CC OOOOOOOO LL ifname [TTTTTTTT
/// records]`. None when it is not one.
pub fn parse_get_reply(line: &str) -> Option<QueryReply> {
    if !line.starts_with('R') {
        return None;
    }
    let status = hex_at(line, 1, 2)? as u8;
    if line.get(3..4) != Some("C") {
        return None;
    }
    let iflen = hex_at(line, 15, 2)?;
    let mut at = 17 + iflen;
    if line.len() < at {
        return None;
    }
    let mut reply = QueryReply {
        status,
        ..Default::default()
    };
    if status != 0 || line.len() == at {
        return Some(reply);
    }
    hex_at(line, at, 8)?; // TLV id
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
        let rec = parse_record(body);
        if !rec.complete {
            reply.truncated = true;
            break;
        }
        reply.records.push(rec);
        at += 4 + len;
    }
    Some(reply)
}

/// The 2-hex-digit status of an `R` datagram, read from the bytes.
pub fn reply_status(d: &[u8]) -> Option<u8> {
    if d.first() != Some(&b'R') {
        return None;
    }
    let hex = std::str::from_utf8(d.get(1..3)?).ok()?;
    u8::from_str_radix(hex, 16).ok()
}

/// True for an lldpad event datagram (`E...` or `M<module>E...`).
pub fn is_event(d: &[u8]) -> bool {
    d.first() == Some(&b'E') || (d.first() == Some(&b'M') && d.get(9) == Some(&b'E'))
}

// ---- events ----

/// What a VDP event means for the VSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VdpEventKind {
    /// The bridge confirmed an assoc/preassoc/preassoc-rr (status 0); see
    /// `VdpEvent::mode` for which.
    Associated,
    /// The VSI is gone after having been up: our own deassoc, an unsolicited
    /// deassoc from the bridge, or a keep-alive timeout (`error` set).
    Deassociated,
    /// A request did not succeed: bridge reject code, ack timeout or
    /// transmission error on a VSI that was not up. lldpad dropped the VSI.
    Failed,
}

/// One VDP event, from an event datagram or from vdptool's printout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdpEvent {
    pub kind: VdpEventKind,
    /// `assoc`, `preassoc`, `preassoc-rr`, `deassoc` (lldpad shows
    /// `deassoc` for every ended VSI, including failed associations); empty
    /// when the printout had no mode line.
    pub mode: String,
    pub mgrid2: String,
    pub typeid: String,
    pub typeidver: String,
    pub uuid: String,
    /// VID (low 12 bits) of the first filter entry; PS/PCP bits dropped.
    pub vlan: Option<u16>,
    /// MAC of the first filter entry (formats 2 and 4).
    pub mac: Option<String>,
    /// Raw `hints` (datagrams only; vdptool prints it as error lines).
    pub hints: Option<u32>,
    /// The reason texts joined by "; ", None when clean.
    pub error: Option<String>,
    /// Every `filter` value as lldpad printed it (`vlan[-mac][-gid]`).
    pub filters: Vec<String>,
    /// The datagram or printed block as text (lossy UTF-8).
    pub raw: String,
}

impl VdpEvent {
    /// An event from its record fields; `error` already decoded.
    pub fn new(rec: Record, error: Option<String>, kind: VdpEventKind, raw: String) -> VdpEvent {
        let (vlan, mac) = match rec.filters.first() {
            Some(first) => {
                let mut parts = first.split('-');
                let vlan = parts
                    .next()
                    .and_then(|v| v.parse::<u32>().ok())
                    .and_then(|v| u16::try_from(v & 0x0fff).ok());
                (vlan, parts.find(|p| p.contains(':')).map(str::to_string))
            }
            None => (None, None),
        };
        VdpEvent {
            kind,
            mode: rec.mode,
            mgrid2: rec.mgrid2,
            typeid: rec.typeid,
            typeidver: rec.typeidver,
            uuid: rec.uuid,
            vlan,
            mac,
            hints: rec.hints,
            error,
            filters: rec.filters,
            raw,
        }
    }
}

/// Parse one event datagram; `None` unless it is a VDP22 event with at
/// least mode and uuid. Never panics on any input.
pub fn parse_event(datagram: &[u8]) -> Option<VdpEvent> {
    let body = datagram.strip_prefix(EVENT_PREFIX)?;
    let text = std::str::from_utf8(body).ok()?;
    // After 'E' come the level digits (VDP22 always sends "16"), then the
    // 4-hex record length: use the split whose length fits what follows.
    let digits = text.bytes().take_while(|b| b.is_ascii_digit()).count();
    let body = [2, 1, 3]
        .into_iter()
        .filter(|k| *k <= digits)
        .find_map(|k| {
            let rest = text.get(k..)?;
            let len = usize::from_str_radix(rest.get(..4)?, 16).ok()?;
            let rec = rest.get(4..)?;
            (len > 0).then(|| rec.get(..len)).flatten()
        })?;
    let rec = parse_record(body);
    if rec.mode.is_empty() || rec.uuid.is_empty() {
        return None;
    }
    let status = rec.hints.unwrap_or(0);
    let kind = classify(&rec.mode, status);
    let error = describe_status(status);
    Some(VdpEvent::new(
        rec,
        error,
        kind,
        String::from_utf8_lossy(datagram).into_owned(),
    ))
}

/// What a VSI status means, given the record's mode.
pub fn classify(mode: &str, status: u32) -> VdpEventKind {
    let code = status & 0xff;
    if status & ERR_KATO != 0 {
        VdpEventKind::Deassociated
    } else if status & (ERR_ACKTO | ERR_TXERR) != 0 || code != 0 {
        VdpEventKind::Failed
    } else if mode == "deassoc" {
        VdpEventKind::Deassociated
    } else {
        VdpEventKind::Associated
    }
}

// ---- texts ----

/// lldpad's text for a command status (vdptool's `print_status`, plus the
/// VDP22 codes 0x0d-0x0f).
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
        STATUS_NO_ACCESS => "Access denied",
        11 => "TLV does not support agent type",
        0x0d => "VDP protocol not supported on interface",
        0x0e => "Not enough memory",
        0x0f => BUSY_TEXT,
        _ => "Unknown status",
    }
}

/// vdptool's texts for a VSI status (`hints`), joined by "; "; None when
/// the status is 0. The 4-bit bridge code is decoded even when the HARD or
/// KEEP bit is set (vdptool prints nothing then).
pub fn describe_status(status: u32) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    let resp = status & 0xff;
    let bridge = match resp {
        252 => Some("Deassoc received from switch".to_string()),
        253 => Some("Timeout Error".to_string()),
        254 => Some(
            "Command rejected by bridge and state prior to command retained (KEEP)".to_string(),
        ),
        255 | 0 => None,
        _ => {
            let text = match resp & 0x0f {
                1 => "VDP TLV Format is Invalid",
                2 => "Insufficient resources at bridge",
                3 => "Unable to contact VSI Mgr",
                4 => "Other Failures",
                5 => "Invalid VID, GroupID or MAC address field",
                0 => "",
                _ => "Unknown error",
            };
            let mut s = if text.is_empty() {
                String::new()
            } else {
                format!("Error returned by Bridge: {text} (code {})", resp & 0x0f)
            };
            for (bit, name) in [(0x10, "HARD"), (0x20, "KEEP")] {
                if resp & bit != 0 {
                    if s.is_empty() {
                        s = "Bridge status".to_string();
                    }
                    s.push_str(&format!(" [{name}]"));
                }
            }
            (!s.is_empty()).then_some(s)
        }
    };
    out.extend(bridge);
    if status & ERR_KATO != 0 {
        out.push("Keepalive Timeout".into());
    }
    if status & ERR_ACKTO != 0 {
        out.push("Ack not received from bridge".into());
    }
    if status & ERR_TXERR != 0 {
        out.push("Transmission Error".into());
    }
    if out.is_empty() && resp == 255 {
        out.push("No response from bridge".into());
    }
    (!out.is_empty()).then(|| out.join("; "))
}

#[cfg(test)]
mod tests;
