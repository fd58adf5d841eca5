use super::*;

/// notes §5: live assoc request (after the ECP header), fmt 4,
/// uuid 7af441dd-253b-4772-8cf1-a4cfef18efe5, gid 20000, fa:16:3e:00:00:01.
fn live_assoc() -> Vec<u8> {
    let mut p = vec![0x0a, 0x10];
    p.extend_from_slice(&[0; 16]);
    p.extend_from_slice(&[0x06, 0x25, 0x00, 0, 0, 0, 0x00, 0x05]);
    p.extend_from_slice(&[
        0x7a, 0xf4, 0x41, 0xdd, 0x25, 0x3b, 0x47, 0x72, 0x8c, 0xf1, 0xa4, 0xcf, 0xef, 0x18, 0xef,
        0xe5,
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
    assert_eq!(d[0].2.mode, VsiMode::Deassoc);
    assert_eq!(d[0].2.status, 0);
    assert_eq!(d[0].2.entries[0].vid, 3001);
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
