//! VDP22 for the leaf: TLV parse/build (Manager ID, VSI TLVs with filter
//! formats 1-4) and the bridge's VSI table with its VLAN pool, keep-alive
//! tracking, aging and the fault knobs that act on VDP answers.
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

/// What a VLAN from the pool is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    /// Filter formats 3/4: the group ID.
    Gid(u32),
    /// Filter formats 1/2: manager ID + type ID.
    Mgr([u8; 16], u32),
}

impl GroupKey {
    fn text(&self) -> String {
        match self {
            GroupKey::Gid(g) => g.to_string(),
            GroupKey::Mgr(m, t) => format!(
                "mgr:{}/type:{t}",
                m.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        }
    }
}

/// The identity of a VSI at the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VsiKey {
    pub mgrid: [u8; 16],
    pub type_id: u32,
    pub type_ver: u8,
    pub id_fmt: u8,
    pub id: [u8; 16],
    pub filter_fmt: u8,
}

impl VsiKey {
    fn of(mgrid: &[u8; 16], v: &VsiTlv) -> VsiKey {
        VsiKey {
            mgrid: *mgrid,
            type_id: v.type_id,
            type_ver: v.type_ver,
            id_fmt: v.id_fmt,
            id: v.id,
            filter_fmt: v.filter_fmt,
        }
    }
}

/// An associated VSI.
#[derive(Debug, Clone)]
pub struct Vsi {
    pub mgrid: [u8; 16],
    /// The last answered request, entries holding the VIDs in use.
    pub tlv: VsiTlv,
    pub since: Instant,
    pub last_ka: Instant,
    pub keepalives: u64,
}

fn group_of(mgrid: &[u8; 16], fmt: u8, type_id: u32, e: &FilterEntry) -> GroupKey {
    match (fmt, e.gid) {
        (3 | 4, Some(g)) => GroupKey::Gid(g),
        _ => GroupKey::Mgr(*mgrid, type_id),
    }
}

/// A one-shot rejection armed by `reject-next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub code: u8,
    pub hard: bool,
    pub keep: bool,
}

/// VLAN pool: groups → VLAN while they have VSIs.
#[derive(Debug, Clone)]
pub struct Pool {
    pub lo: u16,
    pub hi: u16,
    /// Start of the search, moved by `reload`.
    pub offset: u16,
    pub by_group: HashMap<GroupKey, u16>,
    /// VLANs groups had before the last reload; avoided when possible.
    pub stale: HashMap<GroupKey, u16>,
}

impl Pool {
    pub fn new(lo: u16, hi: u16) -> Pool {
        Pool {
            lo,
            hi,
            offset: 0,
            by_group: HashMap::new(),
            stale: HashMap::new(),
        }
    }

    fn size(&self) -> u16 {
        self.hi - self.lo + 1
    }

    pub fn contains(&self, v: u16) -> bool {
        (self.lo..=self.hi).contains(&v)
    }

    fn used_by_other(map: &HashMap<GroupKey, u16>, g: &GroupKey, v: u16) -> bool {
        map.iter().any(|(k, &x)| x == v && k != g)
    }

    /// Choose a VLAN for `g` in `map` (a trial copy of `by_group`).
    fn pick(&self, map: &HashMap<GroupKey, u16>, g: &GroupKey) -> Option<u16> {
        let size = self.size();
        let free: Vec<u16> = (0..size)
            .map(|i| self.lo + (self.offset + i) % size)
            .filter(|v| !map.values().any(|x| x == v))
            .collect();
        let avoid = self.stale.get(g);
        free.iter()
            .find(|v| Some(*v) != avoid)
            .or(free.first())
            .copied()
    }

    /// Free VLAN count.
    pub fn free(&self) -> usize {
        usize::from(self.size()).saturating_sub(self.by_group.len())
    }
}

/// Result of handling one VSI TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Send this response.
    Reply(VsiTlv, Kind),
    /// Send nothing (keep-alive ignored).
    Silent(Kind),
}

/// What a request turned out to be, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Assoc,
    Keepalive,
    Deassoc,
    Rejected,
}

/// The bridge's VSI table and VDP fault knobs.
#[derive(Debug, Clone)]
pub struct VdpTable {
    pub vsis: HashMap<VsiKey, Vsi>,
    pub pool: Pool,
    pub reject_next: Option<Reject>,
    pub ka_ignore: bool,
    /// Groups with a gateway IPv4 configured.
    pub gateways: BTreeMap<u32, std::net::Ipv4Addr>,
}

impl VdpTable {
    pub fn new(lo: u16, hi: u16) -> VdpTable {
        VdpTable {
            vsis: HashMap::new(),
            pool: Pool::new(lo, hi),
            reject_next: None,
            ka_ignore: false,
            gateways: BTreeMap::new(),
        }
    }

    fn response(req: &VsiTlv, status: u8, entries: Vec<FilterEntry>) -> VsiTlv {
        VsiTlv {
            status,
            entries,
            ..req.clone()
        }
    }

    /// Drop pool entries of groups without VSIs.
    fn gc_pool(&mut self) {
        let mut live: Vec<GroupKey> = Vec::new();
        for v in self.vsis.values() {
            for e in &v.tlv.entries {
                live.push(group_of(&v.mgrid, v.tlv.filter_fmt, v.tlv.type_id, e));
            }
        }
        self.pool.by_group.retain(|g, _| live.contains(g));
    }

    /// Work out the VIDs for a request; Err(code) on failure. Returns the
    /// trial pool map to commit.
    fn assign(
        &self,
        mgrid: &[u8; 16],
        req: &VsiTlv,
    ) -> Result<(Vec<FilterEntry>, HashMap<GroupKey, u16>), u8> {
        let mut map = self.pool.by_group.clone();
        let mut out = Vec::with_capacity(req.entries.len());
        for e in &req.entries {
            let g = group_of(mgrid, req.filter_fmt, req.type_id, e);
            let want = e.vlan();
            let vid = if want == 0 {
                match map.get(&g) {
                    Some(&v) => v,
                    None => {
                        let v = self.pool.pick(&map, &g).ok_or(CODE_NO_RESOURCES)?;
                        map.insert(g, v);
                        v
                    }
                }
            } else if let Some(&cur) = map.get(&g) {
                if cur != want {
                    return Err(CODE_INVALID_VID);
                }
                want
            } else if self.pool.contains(want) {
                if Pool::used_by_other(&map, &g, want) || self.pool.stale.get(&g) == Some(&want) {
                    return Err(CODE_INVALID_VID);
                }
                map.insert(g, want);
                want
            } else {
                // outside the pool: returned unchanged, not tracked
                want
            };
            out.push(FilterEntry {
                vid: (e.vid & 0xf000) | vid,
                ..*e
            });
        }
        Ok((out, map))
    }

    /// Handle one VSI TLV of a request.
    pub fn handle(&mut self, now: Instant, mgrid: &[u8; 16], req: &VsiTlv) -> Handled {
        let key = VsiKey::of(mgrid, req);
        if req.mode == VsiMode::Deassoc {
            self.vsis.remove(&key);
            self.gc_pool();
            return Handled::Reply(
                Self::response(req, ST_ACK, req.entries.clone()),
                Kind::Deassoc,
            );
        }
        if let Some(v) = self.vsis.get_mut(&key) {
            if v.tlv.mode == req.mode && v.tlv.entries == req.entries {
                if self.ka_ignore {
                    return Handled::Silent(Kind::Keepalive);
                }
                v.last_ka = now;
                v.keepalives += 1;
                return Handled::Reply(
                    Self::response(req, ST_ACK, req.entries.clone()),
                    Kind::Keepalive,
                );
            }
        } else if let Some(r) = self.reject_next.take() {
            let mut st = ST_ACK | (r.code & 0x0f);
            if r.hard {
                st |= ST_HARD;
            }
            if r.keep {
                st |= ST_KEEP;
            }
            return Handled::Reply(Self::response(req, st, req.entries.clone()), Kind::Rejected);
        }
        match self.assign(mgrid, req) {
            Ok((entries, map)) => {
                let resp = Self::response(req, ST_ACK, entries);
                let since = self.vsis.get(&key).map_or(now, |v| v.since);
                self.vsis.insert(
                    key,
                    Vsi {
                        mgrid: *mgrid,
                        tlv: VsiTlv {
                            status: req.status,
                            ..resp.clone()
                        },
                        since,
                        last_ka: now,
                        keepalives: 0,
                    },
                );
                for g in map.keys() {
                    self.pool.stale.remove(g);
                }
                self.pool.by_group = map;
                self.gc_pool();
                Handled::Reply(resp, Kind::Assoc)
            }
            Err(code) => {
                self.vsis.remove(&key);
                self.gc_pool();
                Handled::Reply(
                    Self::response(req, ST_ACK | code, req.entries.clone()),
                    Kind::Rejected,
                )
            }
        }
    }

    /// The unsolicited DEASSOC (status 0x00) for a VSI, with its current VIDs.
    fn unsolicited(v: &Vsi) -> ([u8; 16], VsiTlv) {
        (
            v.mgrid,
            VsiTlv {
                mode: VsiMode::Deassoc,
                status: 0,
                ..v.tlv.clone()
            },
        )
    }

    /// Remove VSIs whose keep-alives stopped for `timeout`; returns the
    /// unsolicited DEASSOCs to send.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<([u8; 16], VsiTlv)> {
        let dead: Vec<VsiKey> = self
            .vsis
            .iter()
            .filter(|(_, v)| now.saturating_duration_since(v.last_ka) >= timeout)
            .map(|(k, _)| k.clone())
            .collect();
        self.remove_keys(&dead)
    }

    fn remove_keys(&mut self, keys: &[VsiKey]) -> Vec<([u8; 16], VsiTlv)> {
        let out = keys
            .iter()
            .filter_map(|k| self.vsis.remove(k))
            .map(|v| Self::unsolicited(&v))
            .collect();
        self.gc_pool();
        out
    }

    /// Earliest keep-alive expiry.
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.vsis.values().map(|v| v.last_ka + timeout).min()
    }

    /// Bridge-initiated DEASSOC of one VSI (by VSI ID text) or all (`None`).
    pub fn deassoc(&mut self, uuid: Option<&str>) -> Vec<([u8; 16], VsiTlv)> {
        let keys: Vec<VsiKey> = self
            .vsis
            .iter()
            .filter(|(k, _)| uuid.is_none_or(|u| id_text(k.id_fmt, &k.id).eq_ignore_ascii_case(u)))
            .map(|(k, _)| k.clone())
            .collect();
        self.remove_keys(&keys)
    }

    /// A silent switch reload: forget every VSI and VLAN, hand out other
    /// VLANs from now on.
    pub fn reload(&mut self) {
        let n = self.pool.by_group.len().max(1) as u16;
        for (g, v) in self.pool.by_group.drain() {
            self.pool.stale.insert(g, v);
        }
        self.vsis.clear();
        self.pool.offset = (self.pool.offset + n) % self.pool.size();
    }

    /// VLAN currently assigned to a group ID.
    pub fn vlan_of_gid(&self, gid: u32) -> Option<u16> {
        self.pool
            .by_group
            .get(&GroupKey::Gid(gid))
            .copied()
            .or_else(|| {
                // a VSI of that group holding a VID outside the pool
                self.vsis.values().find_map(|v| {
                    v.tlv
                        .entries
                        .iter()
                        .find(|e| e.gid == Some(gid) && e.vlan() != 0)
                        .map(|e| e.vlan())
                })
            })
    }

    /// Status JSON: VSIs and pool.
    pub fn status(&self, now: Instant) -> (Value, Value) {
        let mut vsis: Vec<(Instant, Value)> = self
            .vsis
            .values()
            .map(|v| {
                let first = v.tlv.entries.first();
                let entries: Vec<Value> = v
                    .tlv
                    .entries
                    .iter()
                    .map(|e| {
                        json!({
                            "mac": e.mac.map(|m| super::lldp::mac_text(&m)),
                            "group_id": e.gid,
                            "vlan": e.vlan(),
                        })
                    })
                    .collect();
                (
                    v.since,
                    json!({
                        "uuid": id_text(v.tlv.id_fmt, &v.tlv.id),
                        "mac": first.and_then(|e| e.mac).map(|m| super::lldp::mac_text(&m)),
                        "group_id": first.and_then(|e| e.gid),
                        "vlan": first.map(|e| e.vlan()),
                        "mode": v.tlv.mode.name(),
                        "filter_format": v.tlv.filter_fmt,
                        "type_id": v.tlv.type_id,
                        "entries": entries,
                        "keepalives": v.keepalives,
                        "last_keepalive_age_s":
                            (now.saturating_duration_since(v.last_ka).as_secs_f64() * 1000.0).round() / 1000.0,
                    }),
                )
            })
            .collect();
        vsis.sort_by_key(|(t, _)| *t);
        let groups: BTreeMap<String, u16> = self
            .pool
            .by_group
            .iter()
            .map(|(g, v)| (g.text(), *v))
            .collect();
        let pool = json!({
            "lo": self.pool.lo,
            "hi": self.pool.hi,
            "offset": self.pool.offset,
            "free": self.pool.free(),
            "groups": groups,
        });
        (
            Value::Array(vsis.into_iter().map(|(_, v)| v).collect()),
            pool,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// notes §5: live assoc request (after the ECP header), fmt 4,
    /// uuid 7af441dd-253b-4772-8cf1-a4cfef18efe5, gid 20000, fa:16:3e:00:00:01.
    fn live_assoc() -> Vec<u8> {
        let mut p = vec![0x0a, 0x10];
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&[0x06, 0x25, 0x00, 0, 0, 0, 0x00, 0x05]);
        p.extend_from_slice(&[
            0x7a, 0xf4, 0x41, 0xdd, 0x25, 0x3b, 0x47, 0x72, 0x8c, 0xf1, 0xa4, 0xcf, 0xef, 0x18,
            0xef, 0xe5,
        ]);
        p.extend_from_slice(&[0x04, 0x00, 0x01, 0x00, 0x00, 0x4e, 0x20]);
        p.extend_from_slice(&[0xfa, 0x16, 0x3e, 0, 0, 1, 0, 0]);
        p
    }

    #[test]
    fn parses_live_request_and_echo_matches() {
        let p = live_assoc();
        assert_eq!(p.len(), 75 - 14 - 4);
        let pdu = parse(&p).unwrap();
        assert_eq!(pdu.mgrid, [0; 16]);
        let v = &pdu.vsis[0];
        assert_eq!(v.mode, VsiMode::Assoc);
        assert_eq!(
            id_text(v.id_fmt, &v.id),
            "7af441dd-253b-4772-8cf1-a4cfef18efe5"
        );
        assert_eq!(v.entries[0].gid, Some(20000));
        assert_eq!(v.entries[0].mac, Some([0xfa, 0x16, 0x3e, 0, 0, 1]));
        // lldpad bridge reply: identical except status 0x40 (plus our End)
        let reply = build(
            &pdu.mgrid,
            &VsiTlv {
                status: ST_ACK,
                ..v.clone()
            },
        );
        let mut want = p.clone();
        want[20] = 0x40;
        want.extend_from_slice(&[0, 0]);
        assert_eq!(reply, want);
    }

    #[test]
    fn parse_tolerates_org_and_padding_rejects_garbage() {
        let mut p = live_assoc();
        // Cisco L3 org TLV seen live, then End and padding
        p.extend_from_slice(&[0xfe, 0x1b, 0x00, 0x00, 0x0c, 0xf2, 0x05]);
        p.extend_from_slice(&[0x11; 16]);
        p.extend_from_slice(&[0x00, 0x01, 10, 0, 0, 5]);
        p.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(parse(&p).unwrap().vsis.len(), 1);
        assert_eq!(parse(&p[18..]), Err(VdpError::NoManagerId));
        assert!(parse(&p[..30]).is_err());
        let mut two = p[..18].to_vec();
        two.extend_from_slice(&p[..18]);
        assert_eq!(parse(&two), Err(VdpError::DuplicateManagerId));
        let mut badlen = live_assoc();
        badlen[19] = 0x24;
        assert!(parse(&badlen).is_err());
    }

    fn req(mode: VsiMode, id: u8, gid: u32, vid: u16) -> VsiTlv {
        VsiTlv {
            mode,
            status: 0,
            type_id: 0,
            type_ver: 0,
            id_fmt: 5,
            id: [id; 16],
            filter_fmt: 4,
            entries: vec![FilterEntry {
                gid: Some(gid),
                mac: Some([2, 0, 0, 0, 0, id]),
                vid,
            }],
        }
    }

    fn reply_vid(h: &Handled) -> (u8, u16) {
        match h {
            Handled::Reply(t, _) => (t.status, t.entries[0].vid),
            Handled::Silent(_) => panic!("silent"),
        }
    }

    #[test]
    fn pool_by_group_keepalive_deassoc_and_exhaustion() {
        let now = Instant::now();
        let m = [0u8; 16];
        let mut t = VdpTable::new(3001, 3002);
        let a = reply_vid(&t.handle(now, &m, &req(VsiMode::Assoc, 1, 30001, 0)));
        assert_eq!(a, (0x40, 3001));
        // same group -> same VLAN
        assert_eq!(
            reply_vid(&t.handle(now, &m, &req(VsiMode::Assoc, 2, 30001, 0))),
            (0x40, 3001)
        );
        // another group -> another VLAN
        assert_eq!(
            reply_vid(&t.handle(now, &m, &req(VsiMode::Assoc, 3, 30002, 0))),
            (0x40, 3002)
        );
        // pool empty
        assert_eq!(
            reply_vid(&t.handle(now, &m, &req(VsiMode::Assoc, 4, 30003, 0))),
            (0x42, 0)
        );
        // keep-alive carries the learned VID
        let ka = t.handle(now, &m, &req(VsiMode::Assoc, 1, 30001, 3001));
        assert!(matches!(ka, Handled::Reply(_, Kind::Keepalive)));
        assert_eq!(reply_vid(&ka), (0x40, 3001));
        // conflicting specific VID
        assert_eq!(
            reply_vid(&t.handle(now, &m, &req(VsiMode::Assoc, 5, 30001, 3002))),
            (0x45, 3002)
        );
        // deassoc of both VSIs of group 30001 frees 3001
        t.handle(now, &m, &req(VsiMode::Deassoc, 1, 30001, 3001));
        assert_eq!(t.vlan_of_gid(30001), Some(3001));
        t.handle(now, &m, &req(VsiMode::Deassoc, 2, 30001, 3001));
        assert_eq!(t.vlan_of_gid(30001), None);
        assert_eq!(
            reply_vid(&t.handle(now, &m, &req(VsiMode::Assoc, 4, 30003, 0))),
            (0x40, 3001)
        );
    }

    #[test]
    fn reject_next_ka_ignore_expire_reload() {
        let now = Instant::now();
        let m = [0u8; 16];
        let mut t = VdpTable::new(3001, 3010);
        t.reject_next = Some(Reject {
            code: 4,
            hard: true,
            keep: false,
        });
        assert_eq!(
            reply_vid(&t.handle(now, &m, &req(VsiMode::Assoc, 1, 7, 0))),
            (0x54, 0)
        );
        assert!(t.vsis.is_empty());
        assert_eq!(
            reply_vid(&t.handle(now, &m, &req(VsiMode::Preassoc, 1, 7, 0))),
            (0x40, 3001)
        );
        match t.handle(now, &m, &req(VsiMode::Preassoc, 1, 7, 3001)) {
            Handled::Reply(r, Kind::Keepalive) => assert_eq!(r.mode, VsiMode::Preassoc),
            h => panic!("{h:?}"),
        }
        t.ka_ignore = true;
        assert_eq!(
            t.handle(now, &m, &req(VsiMode::Preassoc, 1, 7, 3001)),
            Handled::Silent(Kind::Keepalive)
        );
        let to = Duration::from_secs(15);
        assert!(t.expire(now + Duration::from_secs(14), to).is_empty());
        let d = t.expire(now + to, to);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].1.mode, VsiMode::Deassoc);
        assert_eq!(d[0].1.status, 0);
        assert_eq!(d[0].1.entries[0].vid, 3001);
        t.ka_ignore = false;
        // reload: silent, next association of the same group gets another VLAN,
        // and a stale keep-alive is refused with code 5
        t.handle(now, &m, &req(VsiMode::Assoc, 1, 7, 0));
        assert_eq!(t.vlan_of_gid(7), Some(3001));
        t.reload();
        assert!(t.vsis.is_empty());
        assert_eq!(
            reply_vid(&t.handle(now, &m, &req(VsiMode::Assoc, 1, 7, 3001))),
            (0x45, 3001)
        );
        let (_, v) = reply_vid(&t.handle(now, &m, &req(VsiMode::Assoc, 1, 7, 0)));
        assert_ne!(v, 3001);
        // bridge-initiated deassoc by uuid
        let d = t.deassoc(Some(&id_text(5, &[1; 16])));
        assert_eq!(d.len(), 1);
        assert!(t.vsis.is_empty());
    }

    #[test]
    fn fmt2_and_fmt1_key_on_manager_and_type() {
        let now = Instant::now();
        let m = [0u8; 16];
        let mut t = VdpTable::new(3001, 3005);
        let fmt2 = |id: u8, type_id: u32| VsiTlv {
            filter_fmt: 2,
            type_id,
            entries: vec![FilterEntry {
                gid: None,
                mac: Some([2, 0, 0, 0, 0, id]),
                vid: 0,
            }],
            ..req(VsiMode::Assoc, id, 0, 0)
        };
        let a = reply_vid(&t.handle(now, &m, &fmt2(1, 0)));
        let b = reply_vid(&t.handle(now, &m, &fmt2(2, 0)));
        let c = reply_vid(&t.handle(now, &m, &fmt2(3, 9)));
        assert_eq!(a, (0x40, 3001));
        assert_eq!(b, (0x40, 3001));
        assert_eq!(c, (0x40, 3002));
        // build/parse roundtrip of formats 1 and 2
        for f in [1u8, 2] {
            let mut v = fmt2(4, 0);
            v.filter_fmt = f;
            if f == 1 {
                v.entries[0].mac = None;
            }
            v.entries[0].vid = 0xb000 | 3003;
            let p = parse(&build(&m, &v)).unwrap();
            assert_eq!(p.vsis[0], v);
            assert_eq!(p.vsis[0].entries[0].vlan(), 3003);
        }
        // PS/PCP bits of a requested VID 0 are kept in the answer
        let mut q = fmt2(5, 0);
        q.entries[0].vid = 0xb000;
        let (_, vid) = reply_vid(&t.handle(now, &m, &q));
        assert_eq!(vid, 0xb000 | 3001);
    }
}
