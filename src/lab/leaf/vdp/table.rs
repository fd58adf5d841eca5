//! The bridge's VSI table: associations and pre-associations per port,
//! VSIs that move between ports (live migration), keep-alive tracking,
//! aging, reload, and the fault knobs that act on VDP answers.
//!
//! A VSI (keyed by manager ID, type, version, VSI ID, filter format) is held
//! by one port at a time (`vsis`). When another port associates or
//! pre-associates it, that port takes it and the old port's copy becomes a
//! "moving" copy (`moving`): still answered (keep-alives) and still
//! forwarding if it was associated, until the old port deassociates it, its
//! keep-alives stop, or `move_timeout` passes after the VSI was associated
//! on the new port (then an unsolicited DEASSOC goes to the old port). When
//! the new port's copy goes away first (deassociated, refused, aged out),
//! the old copy is the VSI again (the move is reverted).
//!
//! Owns VSI state and VLAN assignment (through `pool`). Pure: time is passed in.

use super::pool::{group_of, Pool};
use super::*;

/// Request status bits carrying the migration hints (IEEE 802.1Qbg 41.2.3):
/// M (migrate-to, vdptool `hints=to`) and S (suspend/migrate-from, `hints=from`).
pub const HINT_TO: u8 = 0x10;
pub const HINT_FROM: u8 = 0x20;
/// Default `--move-timeout-s`.
pub const DEFAULT_MOVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The hints of a request status byte as text: `none`, `to`, `from`, `to,from`.
pub fn hints_text(status: u8) -> &'static str {
    match status & (HINT_TO | HINT_FROM) {
        0 => "none",
        HINT_TO => "to",
        HINT_FROM => "from",
        _ => "to,from",
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

/// A VSI held by a port (associated or pre-associated).
#[derive(Debug, Clone)]
pub struct Vsi {
    pub mgrid: [u8; 16],
    /// The last answered request, entries holding the VIDs in use; its
    /// `mode` is the VSI's mode, its `status` the request's hint bits.
    pub tlv: VsiTlv,
    /// Index of the port (`--iface` order).
    pub port: usize,
    pub since: Instant,
    pub last_ka: Instant,
    pub keepalives: u64,
}

impl Vsi {
    /// Whether the gateway forwards for it (associated, not pre-associated).
    pub fn forwarding(&self) -> bool {
        self.tlv.mode == VsiMode::Assoc
    }
}

/// The old port's copy of a VSI another port took over.
#[derive(Debug, Clone)]
pub struct Moving {
    pub key: VsiKey,
    pub vsi: Vsi,
    /// The port holding the VSI now.
    pub to: usize,
    /// Freed then (set when the VSI is associated on `to`).
    pub deadline: Option<Instant>,
}

/// A one-shot rejection armed by `reject-next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub code: u8,
    pub hard: bool,
    pub keep: bool,
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
    /// An association or pre-association that took the VSI from this port.
    Moved(usize),
    Keepalive,
    Deassoc,
    Rejected,
}

/// Counters of VSI moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveStats {
    /// VSIs taken over by another port.
    pub started: u64,
    /// Old copies freed by the old port's deassociate.
    pub completed: u64,
    /// Old copies freed by the move timer (unsolicited DEASSOC).
    pub timed_out: u64,
    /// Moves undone: the new port's copy went first, the old one is the VSI again.
    pub reverted: u64,
}

/// The bridge's VSI table and VDP fault knobs.
#[derive(Debug, Clone)]
pub struct VdpTable {
    /// The VSIs, each on the port that holds it.
    pub vsis: HashMap<VsiKey, Vsi>,
    /// Old ports' copies of VSIs that moved.
    pub moving: Vec<Moving>,
    pub pool: Pool,
    pub reject_next: Option<Reject>,
    pub ka_ignore: bool,
    /// Groups with a gateway IPv4 configured.
    pub gateways: BTreeMap<u32, std::net::Ipv4Addr>,
    /// `--move-timeout-s`.
    pub move_timeout: Duration,
    pub moves: MoveStats,
}

/// An unsolicited DEASSOC to send: port, manager ID, TLV.
pub type Unsolicited = (usize, [u8; 16], VsiTlv);

impl VdpTable {
    pub fn new(lo: u16, hi: u16) -> VdpTable {
        VdpTable {
            vsis: HashMap::new(),
            moving: Vec::new(),
            pool: Pool::new(lo, hi),
            reject_next: None,
            ka_ignore: false,
            gateways: BTreeMap::new(),
            move_timeout: DEFAULT_MOVE_TIMEOUT,
            moves: MoveStats::default(),
        }
    }

    fn response(req: &VsiTlv, status: u8, entries: Vec<FilterEntry>) -> VsiTlv {
        VsiTlv {
            status,
            entries,
            ..req.clone()
        }
    }

    /// VSIs known, moving copies included.
    pub fn len(&self) -> usize {
        self.vsis.len() + self.moving.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn moving_idx(&self, key: &VsiKey, port: usize) -> Option<usize> {
        self.moving
            .iter()
            .position(|m| m.key == *key && m.vsi.port == port)
    }

    /// Drop pool entries of groups without VSIs.
    fn gc_pool(&mut self) {
        let mut live = Vec::new();
        let copies = self.vsis.values().chain(self.moving.iter().map(|m| &m.vsi));
        for v in copies {
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
    ) -> Result<(Vec<FilterEntry>, HashMap<pool::GroupKey, u16>), u8> {
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

    /// The live copy on `port` went away: an old copy that moved to it is
    /// the VSI again (the newest one when there are several).
    fn revert(&mut self, key: &VsiKey, port: usize) {
        let Some(i) = self
            .moving
            .iter()
            .rposition(|m| m.key == *key && m.to == port)
        else {
            return;
        };
        let m = self.moving.remove(i);
        let back = m.vsi.port;
        for o in self.moving.iter_mut().filter(|o| o.key == *key) {
            o.to = back;
        }
        self.moves.reverted += 1;
        self.vsis.insert(m.key, m.vsi);
    }

    /// Handle one VSI TLV of a request received on port 0.
    pub fn handle(&mut self, now: Instant, mgrid: &[u8; 16], req: &VsiTlv) -> Handled {
        self.handle_on(now, 0, mgrid, req)
    }

    /// Handle one VSI TLV of a request received on `port`.
    pub fn handle_on(
        &mut self,
        now: Instant,
        port: usize,
        mgrid: &[u8; 16],
        req: &VsiTlv,
    ) -> Handled {
        let key = VsiKey::of(mgrid, req);
        if req.mode == VsiMode::Deassoc {
            if let Some(i) = self.moving_idx(&key, port) {
                self.moving.remove(i);
                self.moves.completed += 1;
            } else if self.vsis.get(&key).is_some_and(|v| v.port == port) {
                self.vsis.remove(&key);
                self.revert(&key, port);
            }
            // Not held on this port: acknowledged, nothing else touched.
            self.gc_pool();
            return Handled::Reply(
                Self::response(req, ST_ACK, req.entries.clone()),
                Kind::Deassoc,
            );
        }
        // A keep-alive re-sends the identical TLV; for an old copy the hints
        // must match too (the same request with new hints is a move back).
        let ka = |v: &mut Vsi, ignore: bool, hints: bool| -> Option<Handled> {
            if v.tlv.mode != req.mode
                || v.tlv.entries != req.entries
                || (hints && v.tlv.status != req.status)
            {
                return None;
            }
            if ignore {
                return Some(Handled::Silent(Kind::Keepalive));
            }
            v.last_ka = now;
            v.keepalives += 1;
            v.tlv.status = req.status;
            Some(Handled::Reply(
                Self::response(req, ST_ACK, req.entries.clone()),
                Kind::Keepalive,
            ))
        };
        let ignore = self.ka_ignore;
        let old_copy = self.moving_idx(&key, port);
        if let Some(i) = old_copy {
            if let Some(h) = ka(&mut self.moving[i].vsi, ignore, true) {
                return h;
            }
        }
        let here = self.vsis.get(&key).is_some_and(|v| v.port == port);
        if here {
            if let Some(h) = self.vsis.get_mut(&key).and_then(|v| ka(v, ignore, false)) {
                return h;
            }
        } else if old_copy.is_none() {
            if let Some(r) = self.reject_next.take() {
                let mut st = ST_ACK | (r.code & 0x0f);
                if r.hard {
                    st |= ST_HARD;
                }
                if r.keep {
                    st |= ST_KEEP;
                }
                return Handled::Reply(
                    Self::response(req, st, req.entries.clone()),
                    Kind::Rejected,
                );
            }
        }
        match self.assign(mgrid, req) {
            Ok((entries, map)) => {
                let resp = Self::response(req, ST_ACK, entries);
                let mut kind = Kind::Assoc;
                let since = match self.vsis.remove(&key) {
                    Some(v) if v.port == port => v.since,
                    Some(v) => {
                        kind = Kind::Moved(v.port);
                        self.moves.started += 1;
                        self.moving.push(Moving {
                            key: key.clone(),
                            vsi: v,
                            to: port,
                            deadline: None,
                        });
                        now
                    }
                    None => now,
                };
                // Our own old copy (a move back) is replaced by the live one.
                if let Some(i) = self.moving_idx(&key, port) {
                    self.moving.remove(i);
                }
                for m in self.moving.iter_mut().filter(|m| m.key == key) {
                    m.to = port;
                    if req.mode == VsiMode::Assoc && m.deadline.is_none() {
                        m.deadline = Some(now + self.move_timeout);
                    }
                }
                self.vsis.insert(
                    key,
                    Vsi {
                        mgrid: *mgrid,
                        tlv: VsiTlv {
                            status: req.status,
                            ..resp.clone()
                        },
                        port,
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
                Handled::Reply(resp, kind)
            }
            Err(code) => {
                if here {
                    self.vsis.remove(&key);
                    self.revert(&key, port);
                }
                self.gc_pool();
                Handled::Reply(
                    Self::response(req, ST_ACK | code, req.entries.clone()),
                    Kind::Rejected,
                )
            }
        }
    }

    /// The unsolicited DEASSOC (status 0x00) for a VSI, with its current VIDs.
    fn unsolicited(v: &Vsi) -> Unsolicited {
        (
            v.port,
            v.mgrid,
            VsiTlv {
                mode: VsiMode::Deassoc,
                status: 0,
                ..v.tlv.clone()
            },
        )
    }

    /// `expire_by` with one keep-alive timeout for every port.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<Unsolicited> {
        self.expire_by(now, &|_| timeout)
    }

    /// Remove VSIs whose keep-alives stopped for their port's timeout, and
    /// moving copies whose move timer ran out; returns the unsolicited
    /// DEASSOCs to send.
    pub fn expire_by(
        &mut self,
        now: Instant,
        timeout: &dyn Fn(usize) -> Duration,
    ) -> Vec<Unsolicited> {
        let silent = |v: &Vsi| now.saturating_duration_since(v.last_ka) >= timeout(v.port);
        let dead: Vec<VsiKey> = self
            .vsis
            .iter()
            .filter(|(_, v)| silent(v))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for k in dead {
            if let Some(v) = self.vsis.remove(&k) {
                out.push(Self::unsolicited(&v));
                self.revert(&k, v.port);
            }
        }
        let mut i = 0;
        while i < self.moving.len() {
            let m = &self.moving[i];
            let timed_out = m.deadline.is_some_and(|d| now >= d);
            if timed_out || silent(&m.vsi) {
                if timed_out {
                    self.moves.timed_out += 1;
                }
                let m = self.moving.remove(i);
                out.push(Self::unsolicited(&m.vsi));
            } else {
                i += 1;
            }
        }
        self.gc_pool();
        out
    }

    /// `next_expiry_by` with one keep-alive timeout for every port.
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.next_expiry_by(&|_| timeout)
    }

    /// Earliest keep-alive expiry or move deadline.
    pub fn next_expiry_by(&self, timeout: &dyn Fn(usize) -> Duration) -> Option<Instant> {
        let ka = self
            .vsis
            .values()
            .chain(self.moving.iter().map(|m| &m.vsi))
            .map(|v| v.last_ka + timeout(v.port));
        ka.chain(self.moving.iter().filter_map(|m| m.deadline))
            .min()
    }

    /// Bridge-initiated DEASSOC of one VSI (by VSI ID text) or all (`None`),
    /// every copy of it on every port.
    pub fn deassoc(&mut self, uuid: Option<&str>) -> Vec<Unsolicited> {
        let hit =
            |k: &VsiKey| uuid.is_none_or(|u| id_text(k.id_fmt, &k.id).eq_ignore_ascii_case(u));
        let keys: Vec<VsiKey> = self.vsis.keys().filter(|k| hit(k)).cloned().collect();
        let mut out: Vec<Unsolicited> = keys
            .iter()
            .filter_map(|k| self.vsis.remove(k))
            .map(|v| Self::unsolicited(&v))
            .collect();
        let (gone, kept): (Vec<Moving>, Vec<Moving>) = std::mem::take(&mut self.moving)
            .into_iter()
            .partition(|m| hit(&m.key));
        self.moving = kept;
        out.extend(gone.iter().map(|m| Self::unsolicited(&m.vsi)));
        self.gc_pool();
        out
    }

    /// A silent switch reload: forget every VSI and VLAN, hand out other
    /// VLANs from now on.
    pub fn reload(&mut self) {
        let n = self.pool.by_group.len().max(1) as u16;
        for (g, v) in self.pool.by_group.drain() {
            self.pool.stale.insert(g, v);
        }
        self.vsis.clear();
        self.moving.clear();
        self.pool.offset = (self.pool.offset + n) % self.pool.size();
    }

    /// VLAN currently assigned to a group ID.
    pub fn vlan_of_gid(&self, gid: u32) -> Option<u16> {
        self.pool
            .by_group
            .get(&pool::GroupKey::Gid(gid))
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

    /// Whether `port` forwards `vlan` for group `gid`: it holds an
    /// associated VSI of that group on that VLAN (a moving copy counts while
    /// it is held and was associated; pre-associated VSIs do not forward).
    pub fn forwards(&self, port: usize, gid: u32, vlan: u16) -> bool {
        self.vsis
            .values()
            .chain(self.moving.iter().map(|m| &m.vsi))
            .filter(|v| v.port == port && v.forwarding())
            .any(|v| {
                v.tlv
                    .entries
                    .iter()
                    .any(|e| e.gid == Some(gid) && e.vlan() == vlan)
            })
    }
}
