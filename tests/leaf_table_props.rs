//! Properties of the leaf's VSI table across ports under arbitrary request
//! sequences (associate, pre-associate, deassociate with any hints, on any
//! of three ports, with VID 0, the group's VLAN or another), time passing
//! (keep-alive and move aging), bridge deassociation and reload: it never
//! panics, a VSI is held by one port and has at most one old copy per other
//! port, every old copy points at the port holding the VSI, all copies of a
//! group carry the group's one VLAN, and the pool keeps only live groups.

use proptest::prelude::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use vdp_agent::lab::leaf::vdp::{FilterEntry, GroupKey, VdpTable, VsiMode, VsiTlv};

#[derive(Debug, Clone)]
enum Op {
    Req {
        port: usize,
        id: u8,
        gid: u32,
        mode: u8,
        hints: u8,
        vid: u8,
    },
    Advance(u64),
    BridgeDeassoc(Option<u8>),
    Reload,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..3, 0u8..4, prop_oneof![Just(30001u32), Just(30002)], 1u8..=4,
              prop_oneof![Just(0u8), Just(0x10), Just(0x20)], 0u8..3)
            .prop_map(|(port, id, gid, mode, hints, vid)| Op::Req { port, id, gid, mode, hints, vid }),
        2 => (0u64..40).prop_map(Op::Advance),
        1 => prop::option::of(0u8..4).prop_map(Op::BridgeDeassoc),
        1 => Just(Op::Reload),
    ]
}

fn tlv(t: &VdpTable, id: u8, gid: u32, mode: u8, hints: u8, vid: u8) -> VsiTlv {
    let mode = match mode {
        1 => VsiMode::Preassoc,
        2 => VsiMode::PreassocRr,
        3 => VsiMode::Assoc,
        _ => VsiMode::Deassoc,
    };
    let vid = match vid {
        0 => 0,
        1 => t.vlan_of_gid(gid).unwrap_or(0),
        _ => 3003,
    };
    VsiTlv {
        mode,
        status: hints,
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

fn check(t: &VdpTable) -> Result<(), TestCaseError> {
    let mut seen = HashSet::new();
    for m in &t.moving {
        let live = t.vsis.get(&m.key);
        prop_assert!(live.is_some(), "old copy without the VSI: {m:?}");
        let live = live.unwrap();
        prop_assert_ne!(m.vsi.port, live.port, "old copy on the holding port");
        prop_assert_eq!(m.to, live.port, "old copy points elsewhere");
        prop_assert!(
            seen.insert((m.key.id, m.vsi.port)),
            "two old copies on one port"
        );
    }
    let copies = t.vsis.values().chain(t.moving.iter().map(|m| &m.vsi));
    let mut groups = HashSet::new();
    for v in copies {
        for e in &v.tlv.entries {
            let g = GroupKey::Gid(e.gid.unwrap());
            groups.insert(g);
            if let Some(&vlan) = t.pool.by_group.get(&g) {
                prop_assert_eq!(e.vlan(), vlan, "a copy off its group's VLAN");
            }
        }
    }
    for g in t.pool.by_group.keys() {
        prop_assert!(groups.contains(g), "pool keeps a dead group {g:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn table_invariants_hold(ops in prop::collection::vec(op(), 1..60)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut t = VdpTable::new(3001, 3010);
        t.move_timeout = Duration::from_secs(20);
        let m = [0u8; 16];
        for o in ops {
            match o {
                Op::Req { port, id, gid, mode, hints, vid } => {
                    let req = tlv(&t, id, gid, mode, hints, vid);
                    let _ = t.handle_on(now, port, &m, &req);
                }
                Op::Advance(s) => {
                    now += Duration::from_secs(s);
                    let _ = t.expire(now, Duration::from_secs(15));
                }
                Op::BridgeDeassoc(id) => {
                    let u = id.map(|i| vdp_agent::lab::leaf::vdp::id_text(5, &[i; 16]));
                    let _ = t.deassoc(u.as_deref());
                }
                Op::Reload => t.reload(),
            }
            check(&t)?;
            let (v, _) = t.status(now, &["a".into(), "b".into(), "c".into()]);
            prop_assert_eq!(v.as_array().unwrap().len(), t.len());
        }
    }
}
