//! VDP22 for the leaf: TLV parse/build (Manager ID, VSI TLVs of the four
//! modes with filter formats 1-4) and the bridge's VSI table (`table`: VSIs
//! per port, pre-association, moves between ports, keep-alive tracking,
//! aging, fault knobs) with its VLAN pool (`pool`) and status JSON (`status`).
//!
//! Owns: VDP byte layouts, VSI state, VLAN assignment. Pure code: time is
//! passed in. Calls nothing.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

pub const TLV_END: u8 = 0;
pub const TLV_MGRID: u8 = 5;
pub const TLV_ORG: u8 = 127;

/// Response status bits.
pub const ST_ACK: u8 = 0x40;
pub const ST_KEEP: u8 = 0x20;
pub const ST_HARD: u8 = 0x10;
/// Reason codes.
pub const CODE_INVALID_FORMAT: u8 = 1;
pub const CODE_NO_RESOURCES: u8 = 2;
pub const CODE_INVALID_VID: u8 = 5;

/// VSI TLV type (the request/response mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VsiMode {
    Preassoc = 1,
    PreassocRr = 2,
    Assoc = 3,
    Deassoc = 4,
}

impl VsiMode {
    pub fn from_type(t: u8) -> Option<VsiMode> {
        Some(match t {
            1 => VsiMode::Preassoc,
            2 => VsiMode::PreassocRr,
            3 => VsiMode::Assoc,
            4 => VsiMode::Deassoc,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            VsiMode::Preassoc => "preassoc",
            VsiMode::PreassocRr => "preassoc-rr",
            VsiMode::Assoc => "assoc",
            VsiMode::Deassoc => "deassoc",
        }
    }
}

/// One filter entry. `vid` is the full 16-bit field (PS b15, PCP b14-12, VID b11-0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FilterEntry {
    pub gid: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub vid: u16,
}

impl FilterEntry {
    pub fn vlan(&self) -> u16 {
        self.vid & 0x0fff
    }
}

/// A VSI TLV (types 1-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsiTlv {
    pub mode: VsiMode,
    pub status: u8,
    pub type_id: u32,
    pub type_ver: u8,
    pub id_fmt: u8,
    pub id: [u8; 16],
    pub filter_fmt: u8,
    pub entries: Vec<FilterEntry>,
}

/// A parsed VDP ULP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VdpPdu {
    pub mgrid: [u8; 16],
    pub vsis: Vec<VsiTlv>,
}

/// Why a VDP payload was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VdpError {
    Truncated { at: usize },
    NoManagerId,
    DuplicateManagerId,
    BadVsiTlv { reason: String },
}

impl fmt::Display for VdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VdpError::Truncated { at } => write!(f, "VDP TLV truncated at byte {at}"),
            VdpError::NoManagerId => write!(f, "VDP payload does not start with a Manager ID"),
            VdpError::DuplicateManagerId => write!(f, "VDP payload has two Manager IDs"),
            VdpError::BadVsiTlv { reason } => write!(f, "bad VSI TLV: {reason}"),
        }
    }
}

impl std::error::Error for VdpError {}

fn entry_size(fmt: u8) -> Option<usize> {
    match fmt {
        1 => Some(2),
        2 => Some(8),
        3 => Some(6),
        4 => Some(12),
        _ => None,
    }
}

fn bad(reason: impl Into<String>) -> VdpError {
    VdpError::BadVsiTlv {
        reason: reason.into(),
    }
}

fn parse_vsi(mode: VsiMode, v: &[u8]) -> Result<VsiTlv, VdpError> {
    if v.len() < 25 {
        return Err(bad(format!("{} bytes, need at least 25", v.len())));
    }
    let filter_fmt = v[22];
    let n = usize::from(u16::from_be_bytes([v[23], v[24]]));
    let fsz = entry_size(filter_fmt).ok_or_else(|| bad(format!("filter format {filter_fmt}")))?;
    if n == 0 || v.len() != 25 + n * fsz {
        return Err(bad(format!(
            "length {} does not fit {n} entries of format {filter_fmt}",
            v.len()
        )));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&v[6..22]);
    let mut entries = Vec::with_capacity(n);
    for e in v[25..].chunks_exact(fsz) {
        let (gid, rest) = if matches!(filter_fmt, 3 | 4) {
            (Some(u32::from_be_bytes([e[0], e[1], e[2], e[3]])), &e[4..])
        } else {
            (None, e)
        };
        let (mac, rest) = if matches!(filter_fmt, 2 | 4) {
            let mut m = [0u8; 6];
            m.copy_from_slice(&rest[..6]);
            (Some(m), &rest[6..])
        } else {
            (None, rest)
        };
        entries.push(FilterEntry {
            gid,
            mac,
            vid: u16::from_be_bytes([rest[0], rest[1]]),
        });
    }
    Ok(VsiTlv {
        mode,
        status: v[0],
        type_id: u32::from_be_bytes([0, v[1], v[2], v[3]]),
        type_ver: v[4],
        id_fmt: v[5],
        id,
        filter_fmt,
        entries,
    })
}

/// Parse a VDP payload: Manager ID first, then VSI TLVs; org-specific and
/// unknown TLVs are skipped; stops at End or at the end of the data
/// (lldpad sends no End TLV and relies on padding).
pub fn parse(p: &[u8]) -> Result<VdpPdu, VdpError> {
    let mut at = 0;
    let mut mgrid: Option<[u8; 16]> = None;
    let mut vsis = Vec::new();
    while at + 2 <= p.len() {
        let head = u16::from_be_bytes([p[at], p[at + 1]]);
        let ty = (head >> 9) as u8;
        let len = usize::from(head & 0x1ff);
        if ty == TLV_END {
            break;
        }
        let v = p
            .get(at + 2..at + 2 + len)
            .ok_or(VdpError::Truncated { at })?;
        match (ty, &mgrid) {
            (TLV_MGRID, None) => {
                if len != 16 {
                    return Err(bad(format!("Manager ID of {len} bytes")));
                }
                let mut m = [0u8; 16];
                m.copy_from_slice(v);
                mgrid = Some(m);
            }
            (TLV_MGRID, Some(_)) => return Err(VdpError::DuplicateManagerId),
            (_, None) => return Err(VdpError::NoManagerId),
            (t, Some(_)) => {
                if let Some(mode) = VsiMode::from_type(t) {
                    vsis.push(parse_vsi(mode, v)?);
                }
            }
        }
        at += 2 + len;
    }
    Ok(VdpPdu {
        mgrid: mgrid.ok_or(VdpError::NoManagerId)?,
        vsis,
    })
}

fn push_head(out: &mut Vec<u8>, ty: u8, len: usize) {
    let h = (u16::from(ty) << 9) | (len as u16 & 0x1ff);
    out.extend_from_slice(&h.to_be_bytes());
}

/// Build a VDP payload: Manager ID, one VSI TLV, End (`00 00`).
pub fn build(mgrid: &[u8; 16], vsi: &VsiTlv) -> Vec<u8> {
    let mut out = Vec::with_capacity(80);
    push_head(&mut out, TLV_MGRID, 16);
    out.extend_from_slice(mgrid);
    let fsz = entry_size(vsi.filter_fmt).unwrap_or(2);
    push_head(&mut out, vsi.mode as u8, 25 + vsi.entries.len() * fsz);
    out.push(vsi.status);
    out.extend_from_slice(&vsi.type_id.to_be_bytes()[1..]);
    out.push(vsi.type_ver);
    out.push(vsi.id_fmt);
    out.extend_from_slice(&vsi.id);
    out.push(vsi.filter_fmt);
    out.extend_from_slice(&(vsi.entries.len() as u16).to_be_bytes());
    for e in &vsi.entries {
        if matches!(vsi.filter_fmt, 3 | 4) {
            out.extend_from_slice(&e.gid.unwrap_or(0).to_be_bytes());
        }
        if matches!(vsi.filter_fmt, 2 | 4) {
            out.extend_from_slice(&e.mac.unwrap_or([0; 6]));
        }
        out.extend_from_slice(&e.vid.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// VSI ID as text: UUID form for format 5, hex otherwise.
pub fn id_text(fmt: u8, id: &[u8; 16]) -> String {
    let h: String = id.iter().map(|b| format!("{b:02x}")).collect();
    if fmt == 5 {
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    } else {
        h
    }
}

pub mod pool;
mod status;
mod table;
pub use pool::{GroupKey, Pool};
pub use table::*;

#[cfg(test)]
mod move_tests;
#[cfg(test)]
mod tests;
