//! The VSI table across ports: pre-association modes, upgrade, hints,
//! moves (completed by deassociate, by the timer, reverted), forwarding.

use super::*;

const M: [u8; 16] = [0; 16];
const A: usize = 0;
const B: usize = 1;

fn req(mode: VsiMode, hints: u8, vid: u16) -> VsiTlv {
    VsiTlv {
        mode,
        status: hints,
        type_id: 0,
        type_ver: 0,
        id_fmt: 5,
        id: [9; 16],
        filter_fmt: 4,
        entries: vec![FilterEntry {
            gid: Some(30001),
            mac: Some([2, 0, 0, 0, 0, 9]),
            vid,
        }],
    }
}

fn answer(h: Handled) -> (u8, u16, VsiMode, Kind) {
    match h {
        Handled::Reply(t, k) => (t.status, t.entries[0].vlan(), t.mode, k),
        Handled::Silent(_) => panic!("silent"),
    }
}

fn names() -> Vec<String> {
    vec!["swp1".into(), "swp2".into()]
}

/// (port, mode, hints) of every VSI in the status, in order.
fn shown(t: &VdpTable, now: Instant) -> Vec<(String, String, String)> {
    let (v, _) = t.status(now, &names());
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["port"].as_str().unwrap().to_string(),
                x["mode"].as_str().unwrap().to_string(),
                x["hints"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}

#[test]
fn hints_text_of_the_status_bits() {
    assert_eq!(hints_text(0), "none");
    assert_eq!(hints_text(HINT_TO), "to");
    assert_eq!(hints_text(HINT_FROM), "from");
    assert_eq!(hints_text(HINT_TO | HINT_FROM | ST_ACK), "to,from");
}

#[test]
fn preassoc_rr_then_assoc_upgrades_in_place_with_the_group_vlan() {
    let t0 = Instant::now();
    let mut t = VdpTable::new(3001, 3005);
    let (st, vlan, mode, kind) = answer(t.handle_on(t0, A, &M, &req(VsiMode::PreassocRr, 0, 0)));
    assert_eq!(
        (st, vlan, mode, kind),
        (ST_ACK, 3001, VsiMode::PreassocRr, Kind::Assoc)
    );
    assert_eq!(shown(&t, t0), [s("swp1", "preassoc-rr", "none")]);
    // pre-associated: reserved, not forwarding
    assert_eq!(t.vlan_of_gid(30001), Some(3001));
    assert!(!t.forwards(A, 30001, 3001));
    // its keep-alive keeps the mode
    let (_, _, mode, kind) = answer(t.handle_on(t0, A, &M, &req(VsiMode::PreassocRr, 0, 3001)));
    assert_eq!((mode, kind), (VsiMode::PreassocRr, Kind::Keepalive));
    // assoc (with the learned VID, hint "to") upgrades it
    let t1 = t0 + Duration::from_secs(1);
    let (st, vlan, mode, kind) =
        answer(t.handle_on(t1, A, &M, &req(VsiMode::Assoc, HINT_TO, 3001)));
    assert_eq!(
        (st, vlan, mode, kind),
        (ST_ACK, 3001, VsiMode::Assoc, Kind::Assoc)
    );
    assert_eq!(shown(&t, t1), [s("swp1", "assoc", "to")]);
    assert_eq!(t.vsis.len(), 1);
    assert_eq!(t.vsis.values().next().unwrap().since, t0, "same VSI");
    assert!(t.forwards(A, 30001, 3001));
    assert!(!t.forwards(B, 30001, 3001));
    // plain preassoc works alike
    let mut p = req(VsiMode::Preassoc, 0, 0);
    p.id = [8; 16];
    assert_eq!(answer(t.handle_on(t1, A, &M, &p)).2, VsiMode::Preassoc);
    assert_eq!(t.moves, MoveStats::default());
}

#[test]
fn a_vsi_moves_and_the_source_deassociate_frees_the_old_copy() {
    let t0 = Instant::now();
    let mut t = VdpTable::new(3001, 3005);
    t.move_timeout = Duration::from_secs(30);
    answer(t.handle_on(t0, A, &M, &req(VsiMode::Assoc, 0, 0)));
    // destination pre-associates with hint "to": taken over, old copy moving
    let (st, vlan, mode, kind) =
        answer(t.handle_on(t0, B, &M, &req(VsiMode::PreassocRr, HINT_TO, 0)));
    assert_eq!(
        (st, vlan, mode, kind),
        (ST_ACK, 3001, VsiMode::PreassocRr, Kind::Moved(A))
    );
    assert_eq!(
        shown(&t, t0),
        [s("swp1", "moving", "none"), s("swp2", "preassoc-rr", "to")]
    );
    // the source still forwards while the VM runs there; no timer yet
    assert!(t.forwards(A, 30001, 3001));
    assert!(!t.forwards(B, 30001, 3001));
    assert_eq!(t.moving[0].deadline, None);
    // the source's keep-alive is answered and keeps its copy
    let (_, _, mode, kind) = answer(t.handle_on(t0, A, &M, &req(VsiMode::Assoc, 0, 3001)));
    assert_eq!((mode, kind), (VsiMode::Assoc, Kind::Keepalive));
    assert_eq!(t.moving.len(), 1);
    // switchover: assoc on the destination starts the move timer
    let t1 = t0 + Duration::from_secs(2);
    let (_, vlan, _, kind) = answer(t.handle_on(t1, B, &M, &req(VsiMode::Assoc, HINT_TO, 3001)));
    assert_eq!((vlan, kind), (3001, Kind::Assoc));
    assert_eq!(t.moving[0].deadline, Some(t1 + Duration::from_secs(30)));
    assert!(t.forwards(B, 30001, 3001));
    let (v, _) = t.status(t1, &names());
    let old = &v[0];
    assert_eq!(
        (old["mode"].as_str(), old["held_mode"].as_str()),
        (Some("moving"), Some("assoc"))
    );
    assert_eq!(old["moving_to"], "swp2");
    assert_eq!(old["move_deadline_s"], 30.0);
    assert_eq!(v[1]["vlan"], 3001);
    // the source deassociates with hint "from": acked, only the old copy goes
    let (st, _, mode, kind) =
        answer(t.handle_on(t1, A, &M, &req(VsiMode::Deassoc, HINT_FROM, 3001)));
    assert_eq!((st, mode, kind), (ST_ACK, VsiMode::Deassoc, Kind::Deassoc));
    assert_eq!(shown(&t, t1), [s("swp2", "assoc", "to")]);
    assert_eq!(t.vlan_of_gid(30001), Some(3001));
    // a late second deassoc from the source touches nothing
    answer(t.handle_on(t1, A, &M, &req(VsiMode::Deassoc, HINT_FROM, 3001)));
    assert_eq!(t.vsis.len(), 1);
    assert_eq!(
        t.moves,
        MoveStats {
            started: 1,
            completed: 1,
            ..Default::default()
        }
    );
}

#[test]
fn the_move_timer_frees_the_old_copy_with_an_unsolicited_deassoc() {
    let t0 = Instant::now();
    let mut t = VdpTable::new(3001, 3005);
    t.move_timeout = Duration::from_secs(5);
    answer(t.handle_on(t0, A, &M, &req(VsiMode::Assoc, 0, 0)));
    // straight assoc on the new port (no pre-association)
    let (_, vlan, _, kind) = answer(t.handle_on(t0, B, &M, &req(VsiMode::Assoc, HINT_TO, 0)));
    assert_eq!((vlan, kind), (3001, Kind::Moved(A)));
    let ka = Duration::from_secs(60);
    assert_eq!(t.next_expiry(ka), Some(t0 + Duration::from_secs(5)));
    assert!(t.expire(t0 + Duration::from_secs(4), ka).is_empty());
    let d = t.expire(t0 + Duration::from_secs(5), ka);
    assert_eq!(d.len(), 1);
    let (port, _, tlv) = &d[0];
    assert_eq!(
        (*port, tlv.mode, tlv.status, tlv.entries[0].vlan()),
        (A, VsiMode::Deassoc, 0, 3001)
    );
    assert_eq!(shown(&t, t0), [s("swp2", "assoc", "to")]);
    assert_eq!(t.moves.timed_out, 1);
    assert_eq!(t.vlan_of_gid(30001), Some(3001));
}

#[test]
fn an_aborted_preassociation_reverts_the_move() {
    let t0 = Instant::now();
    let mut t = VdpTable::new(3001, 3005);
    answer(t.handle_on(t0, A, &M, &req(VsiMode::Assoc, 0, 0)));
    answer(t.handle_on(t0, B, &M, &req(VsiMode::Preassoc, HINT_TO, 0)));
    // the destination gives up: its deassoc leaves the source's VSI as it was
    answer(t.handle_on(t0, B, &M, &req(VsiMode::Deassoc, 0, 3001)));
    assert_eq!(shown(&t, t0), [s("swp1", "assoc", "none")]);
    assert!(t.moving.is_empty());
    assert!(t.forwards(A, 30001, 3001));
    assert_eq!(t.moves.reverted, 1);
    // a keep-alive of the source is a keep-alive again
    assert_eq!(
        answer(t.handle_on(t0, A, &M, &req(VsiMode::Assoc, 0, 3001))).3,
        Kind::Keepalive
    );
    // a refused move leaves the source's VSI alone
    t.reject_next = Some(Reject {
        code: 2,
        hard: false,
        keep: false,
    });
    assert_eq!(
        answer(t.handle_on(t0, B, &M, &req(VsiMode::Assoc, 0, 0))).3,
        Kind::Rejected
    );
    assert_eq!(shown(&t, t0), [s("swp1", "assoc", "none")]);
    // a stray deassoc from a port that does not hold it is acked, no effect
    answer(t.handle_on(t0, B, &M, &req(VsiMode::Deassoc, 0, 3001)));
    assert_eq!(t.vsis.len(), 1);
}

#[test]
fn moving_back_aging_and_bridge_deassoc_of_every_copy() {
    let t0 = Instant::now();
    let mut t = VdpTable::new(3001, 3005);
    answer(t.handle_on(t0, A, &M, &req(VsiMode::Assoc, 0, 0)));
    answer(t.handle_on(t0, B, &M, &req(VsiMode::Assoc, HINT_TO, 0)));
    // the VSI comes back to A (a second migration before the timer)
    let (_, vlan, _, kind) = answer(t.handle_on(t0, A, &M, &req(VsiMode::Assoc, HINT_TO, 3001)));
    assert_eq!(vlan, 3001);
    assert_eq!(kind, Kind::Moved(B));
    assert_eq!(
        shown(&t, t0),
        [s("swp1", "assoc", "to"), s("swp2", "moving", "to")],
        "one copy per port"
    );
    // the destination copy dies without keep-alives: the old copy becomes
    // the VSI again only if it still is held
    let mut t = VdpTable::new(3001, 3005);
    answer(t.handle_on(t0, A, &M, &req(VsiMode::Assoc, 0, 0)));
    answer(t.handle_on(t0, B, &M, &req(VsiMode::Preassoc, HINT_TO, 0)));
    let to = Duration::from_secs(15);
    let t1 = t0 + Duration::from_secs(10);
    answer(t.handle_on(t1, A, &M, &req(VsiMode::Assoc, 0, 3001)));
    let d = t.expire(t0 + to, to);
    assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), [B]);
    assert_eq!(shown(&t, t1), [s("swp1", "assoc", "none")]);
    // bridge deassoc removes every copy, one DEASSOC per port
    answer(t.handle_on(t1, B, &M, &req(VsiMode::Assoc, HINT_TO, 0)));
    let mut ports: Vec<usize> = t.deassoc(None).iter().map(|x| x.0).collect();
    ports.sort();
    assert_eq!(ports, [A, B]);
    assert!(t.is_empty());
    assert_eq!(t.vlan_of_gid(30001), None);
}
