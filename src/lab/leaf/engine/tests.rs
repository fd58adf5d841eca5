use super::*;
use crate::lab::leaf::vdp::{FilterEntry, VsiMode, ST_ACK};

const STA: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

fn leaf(now: Instant) -> Leaf {
    Leaf::new(
        LocalInfo {
            mac: [0x02, 0xaa, 0, 0, 0, 1],
            ifname: "swp1".into(),
            ifindex: 3,
            system_name: "leaf".into(),
            system_desc: "d".into(),
            mgmt_addr: Ipv4Addr::new(10, 10, 0, 101),
        },
        EngineConfig {
            evb: EvbParams::default(),
            tx_interval: Duration::from_secs(30),
            ttl: 120,
            vlan_lo: 3001,
            vlan_hi: 3005,
        },
        500,
        now,
    )
}

fn ecp_req(seq: u16, mode: VsiMode, vid: u16) -> Vec<u8> {
    let t = VsiTlv {
        mode,
        status: 0,
        type_id: 0,
        type_ver: 0,
        id_fmt: 5,
        id: [7; 16],
        filter_fmt: 4,
        entries: vec![FilterEntry {
            gid: Some(30001),
            mac: Some([0xfa, 0x16, 0x3e, 0, 0, 1]),
            vid,
        }],
    };
    let mut payload = vdp::build(&[0; 16], &t);
    payload.truncate(payload.len() - 2); // lldpad sends no End TLV
    let mut f = ecp::build_frame(&STA, EcpOp::Request, seq, &payload);
    f[6..12].copy_from_slice(&STA);
    f
}

fn station_lldp() -> Vec<u8> {
    station_lldp_with(&[0x04, 0x08, 0x68, 0xb4, 0x34])
}

fn station_lldp_with(evb_bytes: &[u8]) -> Vec<u8> {
    let local = LocalInfo {
        mac: STA,
        ifname: "x".into(),
        ifindex: 1,
        system_name: "s".into(),
        system_desc: "s".into(),
        mgmt_addr: Ipv4Addr::LOCALHOST,
    };
    let evb = EvbTlv::from_bytes(evb_bytes).unwrap();
    lldp::build_lldpdu(&local, 120, &evb)
}

#[test]
fn restarted_station_gets_its_first_request_delivered() {
    let t0 = Instant::now();
    let mut l = leaf(t0);
    l.on_frame(t0, &station_lldp(), None);
    l.on_frame(t0, &ecp_req(1, VsiMode::Assoc, 0), None);
    assert_eq!(l.stats.assoc, 1);
    // The same frame again is a retransmission.
    l.on_frame(t0, &ecp_req(1, VsiMode::Assoc, 0), None);
    assert_eq!((l.stats.assoc, l.stats.ecp_duplicates), (1, 1));
    // A new lldpad: its first LLDPDU no longer echoes our BGID, and its
    // first request (seq 1 again, same bytes) is new.
    l.on_frame(
        t0,
        &station_lldp_with(&[0x00, 0x0b, 0x68, 0x94, 0x14]),
        None,
    );
    l.on_frame(t0, &ecp_req(1, VsiMode::Assoc, 0), None);
    assert_eq!((l.stats.assoc, l.stats.ecp_duplicates), (2, 1));
}

#[test]
fn lldp_burst_and_prompt_answer_to_station() {
    let t0 = Instant::now();
    let mut l = leaf(t0);
    l.tick(t0);
    assert_eq!(l.take_outbox().len(), 1);
    l.tick(t0 + Duration::from_millis(500));
    assert!(l.take_outbox().is_empty());
    l.on_frame(t0 + Duration::from_millis(600), &station_lldp(), None);
    l.tick(t0 + Duration::from_millis(600));
    let out = l.take_outbox();
    assert_eq!(out.len(), 1, "answered at once");
    let n = lldp::parse_lldpdu(&out[0][14..]).unwrap();
    assert_eq!(n.evb.unwrap().to_bytes(), [0x04, 0x08, 0x6a, 0x74, 0x34]);
    // default timers: 1.5*(7*10.24ms + 10.486s)
    assert_eq!(l.ka_timeout(), Duration::from_micros(15_836_160));
}

#[test]
fn ecp_ack_deliver_once_reply_and_retransmit() {
    let t0 = Instant::now();
    let mut l = leaf(t0);
    l.tick(t0);
    l.take_outbox();
    l.on_frame(t0, &ecp_req(9, VsiMode::Assoc, 0), None);
    l.tick(t0);
    let out = l.take_outbox();
    assert_eq!(out.len(), 2);
    assert_eq!(&out[0][14..18], &[0x14, 0x01, 0x00, 0x09]);
    let (h, ulp) = ecp::parse(&out[1][14..]).unwrap();
    assert_eq!((h.op, h.seq), (EcpOp::Request, 500));
    let r = vdp::parse(ulp).unwrap();
    assert_eq!(r.vsis[0].status, ST_ACK);
    assert_eq!(r.vsis[0].entries[0].vid, 3001);
    // duplicate seq: acked, not delivered
    l.on_frame(t0, &ecp_req(9, VsiMode::Assoc, 0), None);
    assert_eq!(l.take_outbox().len(), 1);
    assert_eq!(l.stats.ecp_duplicates, 1);
    // no ack from the station: retransmitted after 10.24 ms
    l.tick(t0 + Duration::from_millis(11));
    let out = l.take_outbox();
    assert_eq!(out.len(), 1);
    assert_eq!(ecp::parse(&out[0][14..]).unwrap().0.seq, 500);
    // ack, then a keep-alive with the learned VID
    let mut ack = ecp::build_frame(&STA, EcpOp::Ack, 500, &[]);
    ack[6..12].copy_from_slice(&STA);
    l.on_frame(t0, &ack, None);
    l.on_frame(t0, &ecp_req(10, VsiMode::Assoc, 3001), None);
    l.tick(t0 + Duration::from_millis(12));
    let out = l.take_outbox();
    assert_eq!(out.len(), 2);
    assert_eq!(ecp::parse(&out[1][14..]).unwrap().0.seq, 501);
    assert_eq!(l.stats.keepalives, 1);
    // drop-ecp knob: no ack at all
    l.command(t0, &Command::DropEcp(1));
    l.on_frame(t0, &ecp_req(11, VsiMode::Assoc, 3001), None);
    assert!(l.take_outbox().is_empty());
    // drop-ecp-share 50: every second request goes unacked
    l.command(t0, &Command::DropEcpShare(50));
    let mut acked = 0;
    for seq in 12..16 {
        l.on_frame(t0, &ecp_req(seq, VsiMode::Assoc, 3001), None);
        acked += l.take_outbox().len().min(1);
    }
    assert_eq!(acked, 2);
}

#[test]
fn aging_sends_unsolicited_deassoc() {
    let t0 = Instant::now();
    let mut l = leaf(t0);
    l.on_frame(t0, &ecp_req(1, VsiMode::Assoc, 0), None);
    l.tick(t0);
    l.take_outbox();
    let mut ack = ecp::build_frame(&STA, EcpOp::Ack, 500, &[]);
    ack[6..12].copy_from_slice(&STA);
    l.on_frame(t0, &ack, None);
    let later = t0 + l.ka_timeout();
    assert!(l.next_deadline(t0 + Duration::from_secs(15)) <= later);
    l.tick(later);
    let out = l.take_outbox();
    let f = out
        .iter()
        .find(|f| ethertype(f) == Some(ecp::ETH_P_ECP))
        .unwrap();
    let (_, ulp) = ecp::parse(&f[14..]).unwrap();
    let r = vdp::parse(ulp).unwrap();
    assert_eq!(r.vsis[0].mode, VsiMode::Deassoc);
    assert_eq!(r.vsis[0].status, 0);
    assert_eq!(r.vsis[0].entries[0].vid, 3001);
    assert!(l.vdp.vsis.is_empty());
}
