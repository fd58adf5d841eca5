//! The bridge's VSI table: VLAN pool per group, associations, keep-alive
//! tracking, aging, reload, and the fault knobs that act on VDP answers.
//!
//! Owns VSI state and VLAN assignment. Pure: time is passed in.

use super::*;

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

pub(super) fn group_of(mgrid: &[u8; 16], fmt: u8, type_id: u32, e: &FilterEntry) -> GroupKey {
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
                            "mac": e.mac.map(|m| super::super::lldp::mac_text(&m)),
                            "group_id": e.gid,
                            "vlan": e.vlan(),
                        })
                    })
                    .collect();
                (
                    v.since,
                    json!({
                        "uuid": id_text(v.tlv.id_fmt, &v.tlv.id),
                        "mac": first.and_then(|e| e.mac).map(|m| super::super::lldp::mac_text(&m)),
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
