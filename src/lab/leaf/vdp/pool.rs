//! The leaf's VLAN pool: one VLAN per group (group ID for filter formats
//! 3/4, manager ID + type ID for 1/2) while the group has VSIs anywhere on
//! the switch, whichever port they are on.
//!
//! Owns VLAN choice. Pure. Calls nothing.

use super::FilterEntry;
use std::collections::HashMap;

/// What a VLAN from the pool is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    /// Filter formats 3/4: the group ID.
    Gid(u32),
    /// Filter formats 1/2: manager ID + type ID.
    Mgr([u8; 16], u32),
}

impl GroupKey {
    pub(super) fn text(&self) -> String {
        match self {
            GroupKey::Gid(g) => g.to_string(),
            GroupKey::Mgr(m, t) => format!(
                "mgr:{}/type:{t}",
                m.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ),
        }
    }
}

pub(super) fn group_of(mgrid: &[u8; 16], fmt: u8, type_id: u32, e: &FilterEntry) -> GroupKey {
    match (fmt, e.gid) {
        (3 | 4, Some(g)) => GroupKey::Gid(g),
        _ => GroupKey::Mgr(*mgrid, type_id),
    }
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

    pub(super) fn size(&self) -> u16 {
        self.hi - self.lo + 1
    }

    pub fn contains(&self, v: u16) -> bool {
        (self.lo..=self.hi).contains(&v)
    }

    pub(super) fn used_by_other(map: &HashMap<GroupKey, u16>, g: &GroupKey, v: u16) -> bool {
        map.iter().any(|(k, &x)| x == v && k != g)
    }

    /// Choose a VLAN for `g` in `map` (a trial copy of `by_group`).
    pub(super) fn pick(&self, map: &HashMap<GroupKey, u16>, g: &GroupKey) -> Option<u16> {
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
