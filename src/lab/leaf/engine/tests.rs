use super::*;
use crate::lab::leaf::control::Command;
use crate::lab::leaf::lldp::EvbTlv;
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
    assert_eq!(frames(&mut l).len(), 1);
    l.tick(t0 + Duration::from_millis(500));
    assert!(frames(&mut l).is_empty());
    l.on_frame(t0 + Duration::from_millis(600), &station_lldp(), None);
    l.tick(t0 + Duration::from_millis(600));
    let out = frames(&mut l);
    assert_eq!(out.len(), 1, "answered at once");
    let n = lldp::parse_lldpdu(&out[0][14..]).unwrap();
    assert_eq!(n.evb.unwrap().to_bytes(), [0x04, 0x08, 0x6a, 0x74, 0x34]);
    // default timers: 1.5*(7*10.24ms + 10.486s)
    assert_eq!(l.ka_timeout(), Duration::from_micros(15_836_160));
}

/// A leaf that answered an associate (seq 9) at `t0`: the leaf and what
/// it sent (our ack, then its answer with seq 500).
fn answered_assoc(t0: Instant) -> (Leaf, Vec<Vec<u8>>) {
    let mut l = leaf(t0);
    l.tick(t0);
    frames(&mut l);
    l.on_frame(t0, &ecp_req(9, VsiMode::Assoc, 0), None);
    l.tick(t0);
    let out = frames(&mut l);
    (l, out)
}

/// An ECP ack of `seq` from `mac`.
fn ack_from(mac: [u8; 6], seq: u16) -> Vec<u8> {
    let mut ack = ecp::build_frame(&mac, EcpOp::Ack, seq, &[]);
    ack[6..12].copy_from_slice(&mac);
    ack
}

#[test]
fn ecp_ack_deliver_once_reply_and_retransmit() {
    let t0 = Instant::now();
    let (mut l, out) = answered_assoc(t0);
    assert_eq!(out.len(), 2);
    assert_eq!(&out[0][14..18], &[0x14, 0x01, 0x00, 0x09]);
    let (h, ulp) = ecp::parse(&out[1][14..]).unwrap();
    assert_eq!((h.op, h.seq), (EcpOp::Request, 500));
    let r = vdp::parse(ulp).unwrap();
    assert_eq!(r.vsis[0].status, ST_ACK);
    assert_eq!(r.vsis[0].entries[0].vid, 3001);
    // duplicate seq: acked, not delivered
    l.on_frame(t0, &ecp_req(9, VsiMode::Assoc, 0), None);
    assert_eq!(frames(&mut l).len(), 1);
    assert_eq!(l.stats.ecp_duplicates, 1);
    // no ack from the station: retransmitted after 10.24 ms
    l.tick(t0 + Duration::from_millis(11));
    let out = frames(&mut l);
    assert_eq!(out.len(), 1);
    assert_eq!(ecp::parse(&out[0][14..]).unwrap().0.seq, 500);
    // ack, then a keep-alive with the learned VID
    l.on_frame(t0, &ack_from(STA, 500), None);
    l.on_frame(t0, &ecp_req(10, VsiMode::Assoc, 3001), None);
    l.tick(t0 + Duration::from_millis(12));
    let out = frames(&mut l);
    assert_eq!(out.len(), 2);
    assert_eq!(ecp::parse(&out[1][14..]).unwrap().0.seq, 501);
    assert_eq!(l.stats.keepalives, 1);
    // drop-ecp knob: no ack at all
    l.command(t0, &Command::DropEcp(1));
    l.on_frame(t0, &ecp_req(11, VsiMode::Assoc, 3001), None);
    assert!(frames(&mut l).is_empty());
    // drop-ecp-share 50: every second request goes unacked
    l.command(t0, &Command::DropEcpShare(50));
    let mut acked = 0;
    for seq in 12..16 {
        l.on_frame(t0, &ecp_req(seq, VsiMode::Assoc, 3001), None);
        acked += frames(&mut l).len().min(1);
    }
    assert_eq!(acked, 2);
}

#[test]
fn only_the_requesting_station_acks_count() {
    // lldpad also runs ECP on the uplink and on the OVS side of its veth;
    // in a userspace-datapath lab those see our frames and ack them first.
    let t0 = Instant::now();
    let (mut l, out) = answered_assoc(t0);
    assert_eq!(ecp::parse(&out[1][14..]).unwrap().0.seq, 500);
    l.on_frame(t0, &ack_from([0x52, 0x54, 0, 0, 0, 9], 500), None);
    assert_eq!((l.stats.ecp_acks_rx, l.stats.ecp_acks_foreign), (1, 1));
    // still outstanding: retransmitted after the ack wait
    l.tick(t0 + Duration::from_millis(11));
    let out = frames(&mut l);
    assert_eq!(out.len(), 1);
    assert_eq!(ecp::parse(&out[0][14..]).unwrap().0.seq, 500);
    // the station's own ack ends it
    l.on_frame(t0, &ack_from(STA, 500), None);
    l.tick(t0 + Duration::from_millis(40));
    assert!(frames(&mut l).is_empty());
    assert_eq!((l.stats.ecp_retransmits, l.stats.ecp_given_up), (1, 0));
}

#[test]
fn aging_sends_unsolicited_deassoc() {
    let t0 = Instant::now();
    let mut l = leaf(t0);
    l.on_frame(t0, &ecp_req(1, VsiMode::Assoc, 0), None);
    l.tick(t0);
    frames(&mut l);
    l.on_frame(t0, &ack_from(STA, 500), None);
    let later = t0 + l.ka_timeout();
    assert!(l.next_deadline(t0 + Duration::from_secs(15)) <= later);
    l.tick(later);
    let out = frames(&mut l);
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

/// The outbox's frames (all of port 0 in these tests).
fn frames(l: &mut Leaf) -> Vec<Vec<u8>> {
    l.take_outbox()
        .into_iter()
        .map(|(p, f)| {
            assert_eq!(p, 0);
            f
        })
        .collect()
}

fn two_ports(now: Instant) -> Leaf {
    let port = |i: u8| LocalInfo {
        mac: [0x02, 0xaa, 0, 0, 0, i],
        ifname: format!("swp{i}"),
        ifindex: u32::from(i) + 2,
        system_name: "leaf".into(),
        system_desc: "d".into(),
        mgmt_addr: Ipv4Addr::new(10, 10, 0, 101),
    };
    let cfg = leaf(now).cfg.clone();
    Leaf::with_ports(vec![(port(1), 100), (port(2), 700)], cfg, now)
}

fn ecp_req_with(seq: u16, mode: VsiMode, hints: u8, vid: u16) -> Vec<u8> {
    let mut f = ecp_req(seq, mode, vid);
    // status byte of the VSI TLV: ECP header 4, Manager ID 18, VSI head 2
    f[14 + 4 + 18 + 2] = hints;
    f
}

/// The VDP answers (ECP data frames) of the outbox, by port.
fn answers(l: &mut Leaf, at: Instant) -> Vec<(usize, u16, VsiTlv)> {
    l.tick(at);
    l.take_outbox()
        .into_iter()
        .filter(|(_, f)| ethertype(f) == Some(ecp::ETH_P_ECP))
        .filter_map(|(p, f)| {
            let (h, ulp) = ecp::parse(&f[14..]).ok()?;
            (h.op == EcpOp::Request).then(|| (p, h.seq, vdp::parse(ulp).unwrap().vsis[0].clone()))
        })
        .collect()
}

#[test]
fn two_ports_answer_on_their_own_port_and_a_vsi_moves() {
    let t0 = Instant::now();
    let mut l = two_ports(t0);
    l.on_port_frame(0, t0, &ecp_req(1, VsiMode::Assoc, 0), None);
    let a = answers(&mut l, t0 + Duration::from_millis(100));
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].0, a[0].1, a[0].2.entries[0].vlan()), (0, 100, 3001));
    // ack it, so the next answer of port 0 can go
    l.on_port_frame(0, t0, &ack_from(STA, 100), None);
    // the same VSI pre-associated on port 1 (its own ECP sequence)
    l.on_port_frame(1, t0, &ecp_req_with(1, VsiMode::PreassocRr, 0x10, 0), None);
    let a = answers(&mut l, t0 + Duration::from_millis(200));
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].0, a[0].1), (1, 700));
    assert_eq!(
        (a[0].2.mode, a[0].2.entries[0].vlan()),
        (VsiMode::PreassocRr, 3001)
    );
    assert_eq!((l.stats.preassoc, l.stats.moves_started), (1, 1));
    let st = l.command(t0, &Command::Status);
    let vsis = st["vsis"].as_array().unwrap();
    let by_port: Vec<(&str, &str, &str)> = vsis
        .iter()
        .map(|v| {
            (
                v["port"].as_str().unwrap(),
                v["mode"].as_str().unwrap(),
                v["hints"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_port,
        [("swp1", "moving", "none"), ("swp2", "preassoc-rr", "to")]
    );
    assert_eq!(st["iface"], "swp1");
    assert_eq!(st["ports"][1]["iface"], "swp2");
    assert_eq!(st["ports"][1]["vsis"], 1);
    assert_eq!(st["ports"][0]["moving"], 1);
    // the gateway answers ARP for the group's VLAN only where it is associated
    l.command(
        t0,
        &Command::Gateway(30001, Some(Ipv4Addr::new(10, 0, 0, 1))),
    );
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&STA);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&STA);
    arp.extend_from_slice(&[10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    l.on_port_frame(1, t0, &arp, Some(3001));
    assert!(l.take_outbox().is_empty(), "pre-associated: no answer");
    l.on_port_frame(0, t0, &arp, Some(3001));
    let out = l.take_outbox();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 0);
    // switchover on port 1, then the source's deassoc with hint "from"
    l.on_port_frame(1, t0, &ack_from(STA, 700), None);
    l.on_port_frame(1, t0, &ecp_req_with(2, VsiMode::Assoc, 0x10, 3001), None);
    l.on_port_frame(1, t0, &arp, Some(3001));
    l.on_port_frame(0, t0, &ecp_req_with(2, VsiMode::Deassoc, 0x20, 3001), None);
    let a = answers(&mut l, t0 + Duration::from_millis(300));
    let got: Vec<(usize, VsiMode)> = a.iter().map(|x| (x.0, x.2.mode)).collect();
    assert_eq!(got, [(0, VsiMode::Deassoc), (1, VsiMode::Assoc)]);
    assert_eq!(l.stats.moves_completed, 1);
    assert_eq!(l.stats.arp_replies, 2);
    let st = l.command(t0, &Command::Status);
    assert_eq!(st["vsis"].as_array().unwrap().len(), 1);
    assert_eq!(st["vsis"][0]["port"], "swp2");
    assert_eq!(st["vsis"][0]["mode"], "assoc");
    // anycast gateway: the answer on port 1 comes from the first port's MAC
    l.on_port_frame(1, t0, &arp, Some(3001));
    let out = l.take_outbox();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 1);
    assert_eq!(out[0].1[6..12], l.ports[0].local.mac);
    // history: every operation but keep-alives, in order
    let h = l.command(t0, &Command::History);
    let ops: Vec<(&str, &str, &str, &str)> = h["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["port"].as_str().unwrap(),
                e["mode"].as_str().unwrap(),
                e["hints"].as_str().unwrap(),
                e["result"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("swp1", "assoc", "none", "assoc"),
            ("swp2", "preassoc-rr", "to", "moved"),
            ("swp2", "assoc", "to", "assoc"),
            ("swp1", "deassoc", "from", "deassoc"),
        ]
    );
    assert_eq!(h["history"][1]["moved_from"], "swp1");
    assert_eq!(h["history"][2]["vlan"], 3001);
}
