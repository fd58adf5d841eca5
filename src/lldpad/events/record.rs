//! Decoding of the VDP22 event records lldpad broadcasts (pure: bytes in,
//! typed values out), and the texts of lldpad's status codes.
//!
//! Owns: the record format. Calls nothing.

/// The event header `M000080c4E16` is 12 bytes (clif.c `EVTHEADER`).
pub(super) const EVENT_PREFIX: &[u8] = b"M000080c4E";

/// VSI status bits carried in the event's `hints` above the 8-bit status
/// (`vdp22_getsm_errcode`, `VDP22_STATUS_BITS`).
pub(super) const ERR_KATO: u32 = 1 << 8;
pub(super) const ERR_ACKTO: u32 = 2 << 8;
pub(super) const ERR_TXERR: u32 = 4 << 8;

/// What an lldpad VDP event means for the VSI.
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

/// One decoded VDP22 event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdpEvent {
    pub kind: VdpEventKind,
    /// Always empty when decoded from a clif event: lldpad's record carries
    /// no interface name (one lldpad, usually one VDP interface per host).
    pub ifname: String,
    /// `assoc`, `preassoc`, `preassoc-rr`, `deassoc` (lldpad shows
    /// `deassoc` for every ended VSI, including failed associations).
    pub mode: String,
    pub mgrid2: String,
    pub typeid: String,
    pub typeidver: String,
    pub uuid: String,
    /// VID (low 12 bits) of the first filter entry; PS/PCP bits dropped.
    pub vlan: Option<u16>,
    /// MAC of the first filter entry (formats 2 and 4).
    pub mac: Option<String>,
    /// Raw `hints` number: VSI status (low 8 bits) | error bits << 8.
    pub hints: Option<u32>,
    /// Decoded reason (vdptool's texts joined by "; "), None when clean.
    pub error: Option<String>,
    /// Every `filter` value as lldpad printed it (`vlan[-mac][-gid]`).
    pub filters: Vec<String>,
    /// The datagram as text (lossy UTF-8).
    pub raw: String,
}

/// Parse one clif datagram; `None` unless it is a well-formed VDP22 event
/// with at least mode and uuid. Never panics on any input.
pub fn parse_event(datagram: &[u8]) -> Option<VdpEvent> {
    let body = datagram.strip_prefix(EVENT_PREFIX)?;
    let text = std::str::from_utf8(body).ok()?;
    // After 'E' come the level digits (VDP22 always sends "16"), then the
    // 4-hex record length: use the split whose length fits what follows.
    let digits = text.bytes().take_while(|b| b.is_ascii_digit()).count();
    let record = [2, 1, 3]
        .into_iter()
        .filter(|k| *k <= digits)
        .find_map(|k| {
            let rest = text.get(k..)?;
            let len = usize::from_str_radix(rest.get(..4)?, 16).ok()?;
            let rec = rest.get(4..)?;
            // `get`: a length that ends inside a UTF-8 character is no record.
            (len > 0).then(|| rec.get(..len)).flatten()
        })?;
    let mut ev = parse_record(record)?;
    ev.raw = String::from_utf8_lossy(datagram).into_owned();
    Some(ev)
}

/// Parse one VSI record (`%02x key %04x value` repeated).
pub(super) fn parse_record(rec: &str) -> Option<VdpEvent> {
    let mut ev = VdpEvent {
        kind: VdpEventKind::Failed,
        ifname: String::new(),
        mode: String::new(),
        mgrid2: String::new(),
        typeid: String::new(),
        typeidver: String::new(),
        uuid: String::new(),
        vlan: None,
        mac: None,
        hints: None,
        error: None,
        filters: Vec::new(),
        raw: String::new(),
    };
    let mut pos = 0;
    while pos < rec.len() {
        let Some((key, value, next)) = next_field(rec, pos) else {
            break; // e.g. OUI data, which has its own encoding
        };
        pos = next;
        match key {
            "mode" => ev.mode = value.to_string(),
            "mgrid2" => ev.mgrid2 = value.to_string(),
            "typeid" => ev.typeid = value.to_string(),
            "typeidver" => ev.typeidver = value.to_string(),
            "uuid" => ev.uuid = value.to_string(),
            "hints" => ev.hints = value.parse().ok(),
            "filter" => ev.filters.push(value.to_string()),
            _ => {}
        }
    }
    if ev.mode.is_empty() || ev.uuid.is_empty() {
        return None;
    }
    if let Some(first) = ev.filters.first() {
        let mut parts = first.split('-');
        ev.vlan = parts
            .next()
            .and_then(|v| v.parse::<u32>().ok())
            .and_then(|v| u16::try_from(v & 0x0fff).ok());
        ev.mac = parts.find(|p| p.contains(':')).map(str::to_string);
    }
    let status = ev.hints.unwrap_or(0);
    ev.kind = classify(&ev.mode, status);
    ev.error = describe_status(status);
    Some(ev)
}

pub(super) fn next_field(rec: &str, pos: usize) -> Option<(&str, &str, usize)> {
    let klen = usize::from_str_radix(rec.get(pos..pos + 2)?, 16).ok()?;
    let kend = pos + 2 + klen;
    let key = rec.get(pos + 2..kend)?;
    let vlen = usize::from_str_radix(rec.get(kend..kend + 4)?, 16).ok()?;
    let vend = kend + 4 + vlen;
    let value = rec.get(kend + 4..vend)?;
    Some((key, value, vend))
}

pub(super) fn classify(mode: &str, status: u32) -> VdpEventKind {
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

pub(super) fn status_text(code: u8) -> &'static str {
    match code {
        0 => "success",
        1 => "failed",
        2 => "device not found",
        3 => "agent not found",
        4 => "invalid command",
        5 => "bad parameters",
        6 => "peer not present",
        7 => "client version not compatible",
        8 => "not capable",
        9 => "not applicable",
        10 => "no access (lldpad serves uid 0 only)",
        11 => "agent not supported",
        _ => "unknown status",
    }
}
