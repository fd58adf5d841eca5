//! Live tests of `vdp-lab leaf` (run as root):
//! - `leaf_serves_a_real_lldpad_station`: a real station-role lldpad in one
//!   netns, the built `vdp-lab leaf` in another, joined by a veth; checks
//!   EVB (mode:bridge), VLAN assignment per group, deassoc, reject codes,
//!   pool exhaustion, bridge-initiated deassoc, reload and the TTL-0
//!   shutdown LLDPDU through the real `lldptool`/`vdptool` outputs.
//! - `leaf_gateway_answers_tagged_arp_and_ping`: a raw-socket "VM" in the
//!   other netns associates over ECP/VDP itself, then sends 802.1Q-tagged
//!   ARP and ICMP echo requests to the group's gateway IP.
//!
//! Set `LF_CAPTURE_FIXTURES=1` to (re)write the captured tool outputs under
//! `tests/fixtures/leaf/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vdp_agent::lab::leaf::{ecp, lldp, socket::PacketSocket, vdp};
use vdp_agent::lab::netns::{
    self, poll_until, LldpadInstance, LldpadRole, Netns, NsChild, TempDir,
};

const BIN: &str = env!("CARGO_BIN_EXE_vdp-lab");

fn run(argv: &[&str]) -> (i32, String, String) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two netns joined by a veth; processes stopped and everything removed on
/// drop (fields drop in order: processes, namespaces, files).
struct Lab {
    leaf: Option<NsChild>,
    lldpad: Option<LldpadInstance>,
    ns_sta: Netns,
    ns_br: Netns,
    if_sta: String,
    if_br: String,
    dir: TempDir,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let pid = std::process::id();
        let (if_sta, if_br) = (format!("lf{tag}s{pid}"), format!("lf{tag}b{pid}"));
        assert!(if_sta.len() <= 15);
        let dir = TempDir::new(&format!("lf-{tag}")).unwrap();
        let ns_sta = Netns::create(&format!("lf-{tag}s-{pid}")).unwrap();
        let ns_br = Netns::create(&format!("lf-{tag}b-{pid}")).unwrap();
        netns::veth(&ns_sta, &if_sta, &ns_br, &if_br).unwrap();
        Lab {
            leaf: None,
            lldpad: None,
            ns_sta,
            ns_br,
            if_sta,
            if_br,
            dir,
        }
    }

    fn ctl_path(&self) -> PathBuf {
        self.dir.path().join("leaf.sock")
    }

    fn start_leaf(&mut self, extra: &[&str]) {
        let ctl = self.ctl_path().display().to_string();
        let mut argv = vec![BIN, "leaf", "--iface", &self.if_br, "--control", &ctl];
        argv.extend_from_slice(extra);
        let leaf = self
            .ns_br
            .spawn(&argv, &self.dir.path().join("leaf.log"))
            .unwrap();
        self.leaf = Some(leaf);
        let up = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            ctl_try(&self.ctl_path(), "status").ok_or(())
        });
        assert!(up.is_ok(), "leaf did not come up: {}", self.log("leaf.log"));
    }

    fn start_station_lldpad(&mut self) {
        let l = LldpadInstance::start(
            &self.ns_sta,
            LldpadRole::Station,
            &self.if_sta,
            self.dir.path(),
        )
        .expect("lldpad did not start");
        self.lldpad = Some(l);
    }

    fn sta(&self, tool: &str, args: &[&str]) -> (i32, String, String) {
        let mut argv = vec![tool];
        argv.extend_from_slice(args);
        let out = self
            .ns_sta
            .exec_any(&argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The station's view of the bridge's EVB TLV (`lldptool get-tlv`).
    fn evb_tlv(&self) -> String {
        let ifs = self.if_sta.as_str();
        self.sta(
            "lldptool",
            &["get-tlv", "-n", "-i", ifs, "-g", "ncb", "-V", "evb"],
        )
        .1
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Stop the processes first, then show their logs on failure.
        self.leaf.take();
        let lldpad_log = self.lldpad.take().map(|l| l.log.clone());
        if std::thread::panicking() {
            eprintln!("--- leaf.log\n{}", self.log("leaf.log"));
            eprintln!("--- lldpad.log (tail)\n{}", {
                let l = lldpad_log
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .unwrap_or_default();
                l[l.len().saturating_sub(20000)..].to_string()
            });
        }
    }
}

fn ctl_try(path: &Path, cmd: &str) -> Option<serde_json::Value> {
    let (rc, out, _) = run(&[
        BIN,
        "leaf-ctl",
        "--control",
        &path.display().to_string(),
        cmd,
    ]);
    if rc != 0 {
        return None;
    }
    serde_json::from_str(out.trim()).ok()
}

fn ctl(lab: &Lab, cmd: &str) -> serde_json::Value {
    let v = ctl_try(&lab.ctl_path(), cmd).unwrap_or_else(|| panic!("leaf-ctl {cmd} failed"));
    assert_eq!(v["ok"], true, "{cmd}: {v}");
    v
}

fn fixture(name: &str, text: &str) {
    if std::env::var_os("LF_CAPTURE_FIXTURES").is_some() {
        let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/leaf");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), text).unwrap();
    }
}

const MAC_PREFIX: &str = "fa:16:3e:4c:46";

fn uuid(n: u8) -> String {
    format!("4c460000-0000-4000-8000-0000000000{n:02x}")
}

fn mac(n: u8) -> String {
    format!("{MAC_PREFIX}:{n:02x}")
}

/// `vdptool -T -W` with the Python argv; returns stdout.
fn vdp_op(lab: &Lab, mode: &str, n: u8, vlan: u16, gid: u32) -> String {
    let filter = format!("{vlan}-{}-{gid}", mac(n));
    let argv = netns::vdptool_set_argv(&lab.if_sta, mode, &uuid(n), &filter, true);
    lab.ns_sta.stdout(&argv).expect("vdptool")
}

/// The first association of VSI 1 (group `gid`), retried while lldpad is
/// still in its start-up states; returns vdptool's last answer.
fn first_assoc(lab: &Lab, gid: u32) -> String {
    let mut out = String::new();
    for _ in 0..3 {
        out = vdp_op(lab, "assoc", 1, 0, gid);
        if out.starts_with("Response from VDP") {
            break;
        }
    }
    out
}

fn query(lab: &Lab, n: Option<u8>) -> String {
    let mut args = vec![
        "-t".to_string(),
        "-i".into(),
        lab.if_sta.clone(),
        "-R".into(),
        "-V".into(),
        "assoc".into(),
        "-c".into(),
        "mode=assoc".into(),
        "-c".into(),
        "mgrid2=0".into(),
        "-c".into(),
        "typeid=0".into(),
        "-c".into(),
        "typeidver=0".into(),
    ];
    if let Some(n) = n {
        args.extend(["-c".into(), format!("uuid={}", uuid(n))]);
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.sta("vdptool", &a).1
}

/// VLAN from a `Response from VDP` block (`filter = V-mac-0`).
fn resp_vlan(out: &str) -> u16 {
    let f = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("filter = "))
        .unwrap_or_else(|| panic!("no filter in {out:?}"));
    f.split('-').next().unwrap().parse().unwrap()
}

fn assert_response(out: &str, mode: &str, n: u8) {
    assert!(out.starts_with("Response from VDP\n"), "{out:?}");
    assert!(out.contains(&format!("\tmode = {mode}\n")), "{out:?}");
    assert!(out.contains(&format!("\tuuid = {}\n", uuid(n))), "{out:?}");
}

#[test]
fn leaf_serves_a_real_lldpad_station() {
    let mut lab = Lab::new("v");
    lab.start_station_lldpad();
    lab.start_leaf(&[
        "--vlan-pool",
        "3001-3003",
        "--system-name",
        "lf-leaf-test",
        "--mgmt-addr",
        "10.10.0.101",
    ]);
    let ifs = lab.if_sta.clone();
    // enable the station exactly as the agent does
    let (rc, o, _) = lab.sta(
        "lldptool",
        &["-L", "-i", &ifs, "-g", "ncb", "adminStatus=rxtx"],
    );
    assert_eq!((rc, o.trim()), (0, "adminStatus = rxtx"));
    lab.sta(
        "lldptool",
        &["-T", "-i", &ifs, "-g", "ncb", "-V", "evb", "enableTx=yes"],
    );
    let (rc, _, _) = lab.sta(
        "lldptool",
        &[
            "-T",
            "-i",
            &ifs,
            "-g",
            "ncb",
            "-V",
            "evb",
            "-c",
            "evbgpid=yes",
        ],
    );
    assert_eq!(rc, 0);

    // readiness: the bridge's EVB TLV with BGID, then about 1 s
    let evb = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let o = lab.evb_tlv();
        if o.contains("bridge:bgid") && o.contains("station:sgid") {
            Ok(o)
        } else {
            Err(o)
        }
    })
    .unwrap_or_else(|o| panic!("no EVB TLV: {o:?}"));
    assert!(evb.contains("\tmode:bridge r/l:"), "{evb}");
    assert!(evb.contains("retries:3 rte:10"), "{evb}");
    fixture("lldptool_get_tlv_evb.txt", &evb);
    let (_, all, _) = lab.sta("lldptool", &["get-tlv", "-n", "-i", &ifs, "-g", "ncb"]);
    assert!(all.contains("System Name TLV\n\tlf-leaf-test\n"), "{all}");
    assert!(
        all.contains("Management Address TLV\n\tIPv4: 10.10.0.101\n"),
        "{all}"
    );
    assert!(
        all.contains("System Description TLV\n\tvdp-lab leaf simulator"),
        "{all}"
    );
    fixture("lldptool_get_tlv.txt", &all);
    std::thread::sleep(Duration::from_millis(1200));

    // first association: retry while lldpad is still in its start-up states
    let out = first_assoc(&lab, 30001);
    assert_response(&out, "assoc", 1);
    let v1 = resp_vlan(&out);
    assert!((3001..=3003).contains(&v1), "{out}");
    assert!(
        out.contains(&format!("\tfilter = {v1}-{}-0\n", mac(1))),
        "{out}"
    );
    fixture("vdptool_assoc_ok.txt", &out);

    // same group -> same VLAN; another group -> another VLAN
    let out = vdp_op(&lab, "assoc", 2, 0, 30001);
    assert_response(&out, "assoc", 2);
    assert_eq!(resp_vlan(&out), v1);
    let out = vdp_op(&lab, "assoc", 3, 0, 30002);
    assert_response(&out, "assoc", 3);
    let v2 = resp_vlan(&out);
    assert!((3001..=3003).contains(&v2) && v2 != v1, "{out}");

    // the station's query shows the VLAN with the group id
    let q = query(&lab, Some(1));
    assert!(
        q.contains(&format!("hints0001006filter001c{v1}-{}-30001", mac(1))),
        "{q}"
    );
    fixture("vdptool_query_assoc.txt", &q);

    // deassoc from the station
    let out = vdp_op(&lab, "deassoc", 2, v1, 30001);
    assert_response(&out, "deassoc", 2);
    assert!(!out.contains("Error"), "{out}");
    fixture("vdptool_deassoc_ok.txt", &out);

    // reject-next: the bridge error line; with HARD no error line
    ctl(&lab, "reject-next 5");
    let out = vdp_op(&lab, "assoc", 4, 0, 30001);
    assert_response(&out, "deassoc", 4);
    assert!(
        out.contains("\tError returned by Bridge: Invalid VID, GroupID or MAC address field\n"),
        "{out}"
    );
    fixture("vdptool_assoc_reject5.txt", &out);
    ctl(&lab, "reject-next 4 hard");
    let out = vdp_op(&lab, "assoc", 4, 0, 30001);
    assert_response(&out, "deassoc", 4);
    assert!(!out.contains("Error"), "{out}");
    fixture("vdptool_assoc_reject4_hard.txt", &out);

    // pool exhaustion: third group takes the last VLAN, fourth gets code 2
    let out = vdp_op(&lab, "assoc", 5, 0, 30003);
    assert_response(&out, "assoc", 5);
    let v3 = resp_vlan(&out);
    assert!(v3 != v1 && v3 != v2);
    let out = vdp_op(&lab, "assoc", 6, 0, 30004);
    assert_response(&out, "deassoc", 6);
    assert!(
        out.contains("\tError returned by Bridge: Insufficient resources at bridge\n"),
        "{out}"
    );
    fixture("vdptool_assoc_pool_empty.txt", &out);

    // bridge-initiated deassoc: the station drops the VSI
    let st = ctl(&lab, "status");
    assert_eq!(st["station_seen"], true);
    assert_eq!(st["vsis"].as_array().unwrap().len(), 3, "{st}");
    ctl(&lab, &format!("deassoc {}", uuid(1)));
    let q = poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
        let q = query(&lab, Some(1));
        if !q.contains(&uuid(1)[..8]) || q.lines().last().is_some_and(|l| l.ends_with("00000003")) {
            Ok(q)
        } else {
            Err(q)
        }
    })
    .unwrap_or_else(|q| panic!("VSI still there: {q}"));
    fixture("vdptool_query_gone.txt", &q);

    // reload: silent; new associations of group 30001 get another VLAN
    ctl(&lab, "deassoc all");
    poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
        let q = query(&lab, None);
        if !q.contains("uuid0024") {
            Ok(())
        } else {
            Err(q)
        }
    })
    .unwrap_or_else(|q| panic!("VSIs still there: {q}"));
    let r = ctl(&lab, "reload");
    assert_eq!(r["forgotten_vsis"], 0);
    let out = vdp_op(&lab, "assoc", 7, 0, 30001);
    assert_response(&out, "assoc", 7);
    let v1b = resp_vlan(&out);
    assert!((3001..=3003).contains(&v1b) && v1b != v1, "{v1} -> {out}");

    // drop-ecp: the first ECPDU is dropped unacked, the station's ECP
    // retransmission (after 10 µs·2^10) gets through
    ctl(&lab, "drop-ecp 1");
    let out = vdp_op(&lab, "assoc", 8, 0, 30002);
    assert_response(&out, "assoc", 8);
    let v2b = resp_vlan(&out);
    assert!((3001..=3003).contains(&v2b) && v2b != v1b, "{out}");

    // PREASSOC is answered in kind
    let out = vdp_op(&lab, "preassoc", 9, 0, 30002);
    fixture("vdptool_preassoc_ok.txt", &out);
    assert_response(&out, "preassoc", 9);
    assert_eq!(resp_vlan(&out), v2b);

    let stats = ctl(&lab, "stats");
    let s = &stats["stats"];
    assert_eq!(s["ecp_dropped_by_knob"], 1, "{stats}");
    assert_eq!(s["assoc"], 7, "{stats}");
    assert_eq!(s["deassoc"], 1, "{stats}");
    assert_eq!(s["rejects"], 3, "{stats}");
    assert_eq!(s["unsolicited_deassoc"], 3, "{stats}");
    assert!(s["ecp_acks_tx"].as_u64().unwrap() >= 9, "{stats}");

    // lldp stop: TTL 0, the station forgets the bridge; start: it is back
    ctl(&lab, "lldp stop");
    assert!(
        netns::wait_until(Duration::from_secs(3), || lab.evb_tlv().trim().is_empty()),
        "EVB TLV still there"
    );
    assert_eq!(ctl(&lab, "status")["lldp"], "off");
    ctl(&lab, "lldp start");
    assert!(
        netns::wait_until(Duration::from_secs(3), || lab
            .evb_tlv()
            .contains("mode:bridge")),
        "EVB TLV not back"
    );

    // SIGTERM: TTL 0 LLDPDU, the station forgets the bridge at once
    let leaf = lab.leaf.as_mut().unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(leaf.id() as i32, libc::SIGTERM) };
    let status = leaf.child().wait().unwrap();
    assert!(status.success(), "{status:?}");
    poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
        let o = lab.evb_tlv();
        if o.trim().is_empty() {
            Ok(())
        } else {
            Err(o)
        }
    })
    .unwrap_or_else(|o| panic!("EVB TLV still there: {o}"));
}

/// Wait up to `d` for a frame matching `want`; returns it untagged with its VLAN.
fn recv_match(
    s: &PacketSocket,
    d: Duration,
    want: &dyn Fn(Option<u16>, &[u8]) -> bool,
) -> Option<(Option<u16>, Vec<u8>)> {
    let t0 = Instant::now();
    let mut buf = vec![0u8; 2048];
    while t0.elapsed() < d {
        match s.recv(&mut buf).unwrap() {
            Some(m) if !m.outgoing => {
                let f = &buf[..m.len];
                let (vlan, f) = match vdp_agent::lab::leaf::gateway::strip_inline_tag(f) {
                    Some((v, u)) => (Some(v), u),
                    None => (m.vlan, f.to_vec()),
                };
                if want(vlan, &f) {
                    return Some((vlan, f));
                }
            }
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    None
}

fn tagged(dst: &[u8], src: &[u8; 6], vlan: u16, ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(src);
    f.extend_from_slice(&[0x81, 0x00]);
    f.extend_from_slice(&vlan.to_be_bytes());
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(64), 0);
    f
}

#[test]
fn leaf_gateway_answers_tagged_arp_and_ping() {
    let mut lab = Lab::new("g");
    lab.start_leaf(&["--vlan-pool", "3050-3059", "--gateway", "30001=10.0.0.1"]);
    let leaf_mac = {
        let st = ctl(&lab, "status");
        st["mac"].as_str().unwrap().to_string()
    };
    let ifn = lab.if_sta.clone();
    let (vlan, arp, icmp, wrong_vlan) = lab
        .ns_sta
        .run_in("lf-vm", move || {
            let s = PacketSocket::open(&ifn, &[lldp::NCB_MAC]).unwrap();
            let me = vdp_agent::lab::leaf::socket::iface_mac(&ifn).unwrap();
            // associate a VSI of group 30001 over ECP/VDP ourselves
            let req = vdp::VsiTlv {
                mode: vdp::VsiMode::Assoc,
                status: 0,
                type_id: 0,
                type_ver: 0,
                id_fmt: 5,
                id: [0x4c; 16],
                filter_fmt: 4,
                entries: vec![vdp::FilterEntry {
                    gid: Some(30001),
                    mac: Some(me),
                    vid: 0,
                }],
            };
            let f = ecp::build_frame(&me, ecp::EcpOp::Request, 77, &vdp::build(&[0; 16], &req));
            s.send(&f).unwrap();
            let is_ecp = |f: &[u8], op: ecp::EcpOp| {
                f[12..14] == [0x89, 0x40] && ecp::parse(&f[14..]).is_ok_and(|(h, _)| h.op == op)
            };
            let ack = recv_match(&s, Duration::from_secs(2), &|_, f| {
                is_ecp(f, ecp::EcpOp::Ack)
            });
            assert_eq!(
                ecp::parse(&ack.expect("no ECP ack").1[14..]).unwrap().0.seq,
                77
            );
            let (_, resp) = recv_match(&s, Duration::from_secs(2), &|_, f| {
                is_ecp(f, ecp::EcpOp::Request)
            })
            .expect("no VDP response");
            let (h, ulp) = ecp::parse(&resp[14..]).unwrap();
            s.send(&ecp::build_frame(&me, ecp::EcpOp::Ack, h.seq, &[]))
                .unwrap();
            let r = vdp::parse(ulp).unwrap();
            assert_eq!(r.vsis[0].status, vdp::ST_ACK);
            let vlan = r.vsis[0].entries[0].vlan();

            let arp_req = |target: [u8; 4]| {
                let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
                a.extend_from_slice(&me);
                a.extend_from_slice(&[10, 0, 0, 5]);
                a.extend_from_slice(&[0; 6]);
                a.extend_from_slice(&target);
                a
            };
            let is_arp_reply = |v: Option<u16>, f: &[u8]| {
                f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] && v.is_some()
            };
            s.send(&tagged(
                &[0xff; 6],
                &me,
                vlan,
                0x0806,
                &arp_req([10, 0, 0, 1]),
            ))
            .unwrap();
            let arp = recv_match(&s, Duration::from_secs(2), &is_arp_reply);

            // ICMP echo to the gateway's MAC learned from ARP
            let gw_mac = arp
                .as_ref()
                .map(|(_, f)| f[22..28].to_vec())
                .unwrap_or(vec![0xff; 6]);
            let mut ip = vec![
                0x45, 0, 0, 36, 0x4c, 0x46, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 5, 10, 0, 0, 1,
            ];
            let c = vdp_agent::lab::leaf::gateway::checksum(&ip).to_be_bytes();
            ip[10..12].copy_from_slice(&c);
            let mut icmp = vec![
                8, 0, 0, 0, 0x12, 0x34, 0, 1, b'l', b'f', b'-', b'p', b'i', b'n', b'g', b'!',
            ];
            let c = vdp_agent::lab::leaf::gateway::checksum(&icmp).to_be_bytes();
            icmp[2..4].copy_from_slice(&c);
            ip.extend_from_slice(&icmp);
            s.send(&tagged(&gw_mac, &me, vlan, 0x0800, &ip)).unwrap();
            let reply = recv_match(&s, Duration::from_secs(2), &|v, f| {
                v.is_some() && f[12..14] == [0x08, 0x00] && f.len() > 34 && f[23] == 1 && f[34] == 0
            });

            // wrong VLAN: no answer
            s.send(&tagged(
                &[0xff; 6],
                &me,
                vlan + 1,
                0x0806,
                &arp_req([10, 0, 0, 1]),
            ))
            .unwrap();
            let wrong = recv_match(&s, Duration::from_millis(400), &is_arp_reply);
            (vlan, arp, reply, wrong)
        })
        .unwrap();
    assert!((3050..=3059).contains(&vlan), "{vlan}");
    let (av, a) = arp.expect("no ARP reply");
    assert_eq!(av, Some(vlan));
    assert_eq!(lldp::mac_text(&a[22..28]), leaf_mac, "ARP sender MAC");
    assert_eq!(&a[28..32], &[10, 0, 0, 1], "ARP sender IP");
    let (iv, i) = icmp.expect("no ICMP echo reply");
    assert_eq!(iv, Some(vlan));
    assert_eq!(&i[26..30], &[10, 0, 0, 1]);
    assert_eq!(&i[30..34], &[10, 0, 0, 5]);
    assert_eq!(vdp_agent::lab::leaf::gateway::checksum(&i[34..50]), 0);
    assert_eq!(&i[42..50], b"lf-ping!");
    assert!(
        wrong_vlan.is_none(),
        "answered on a VLAN not assigned to the group"
    );
    let s = ctl(&lab, "stats");
    assert_eq!(s["stats"]["arp_replies"], 1, "{s}");
    assert_eq!(s["stats"]["icmp_replies"], 1, "{s}");
    // the control command adds a gateway at runtime
    let g = ctl(&lab, "gateway 30001 10.0.0.9");
    assert_eq!(g["gateway"]["vlan"], vlan);
}

#[test]
fn leaf_answers_keepalives_and_ages_out_silent_vsis() {
    // short keep-alives on both sides (RKA 16: 0.66 s; leaf KA timeout 1.09 s)
    let mut lab = Lab::new("k");
    lab.start_station_lldpad();
    lab.start_leaf(&["--vlan-pool", "3100-3109", "--rka", "16"]);
    let ifs = lab.if_sta.clone();
    netns::enable_station(&lab.ns_sta, &ifs).expect("enable station");
    let (rc, o, e) = lab.sta(
        "lldptool",
        &[
            "-T",
            "-i",
            &ifs,
            "-g",
            "ncb",
            "-V",
            "evb",
            "-c",
            "vdprka=16",
        ],
    );
    assert_eq!(rc, 0, "{o}{e}");
    poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        let o = lab.evb_tlv();
        if o.contains("bridge:bgid") && o.contains("rka:16") {
            Ok(())
        } else {
            Err(o)
        }
    })
    .unwrap_or_else(|o| panic!("no EVB TLV: {o:?}"));
    std::thread::sleep(Duration::from_millis(1200));
    let out = first_assoc(&lab, 40001);
    assert_response(&out, "assoc", 1);
    let v = resp_vlan(&out);
    assert!((3100..=3109).contains(&v), "{out}");

    // keep-alives (identical requests carrying the VID) are answered
    poll_until(Duration::from_secs(5), Duration::from_millis(200), || {
        let st = ctl(&lab, "status");
        let st_vsis = st["vsis"].as_array().unwrap().clone();
        assert_eq!(st_vsis.len(), 1, "{st}");
        if st_vsis[0]["keepalives"].as_u64().unwrap() >= 3 {
            assert_eq!(st_vsis[0]["vlan"], v);
            Ok(())
        } else {
            Err(st)
        }
    })
    .unwrap_or_else(|st| panic!("no keep-alives: {st}"));
    let q = query(&lab, Some(1));
    assert!(q.contains(&format!("05hints0001006filter001c{v}-")), "{q}");

    // stop answering keep-alives: the leaf ages the VSI out and tells the station
    ctl(&lab, "ka-ignore on");
    poll_until(Duration::from_secs(5), Duration::from_millis(100), || {
        let st = ctl(&lab, "stats");
        if st["stats"]["aged_out"] == 1 {
            assert!(
                st["stats"]["keepalives_ignored"].as_u64().unwrap() >= 1,
                "{st}"
            );
            Ok(())
        } else {
            Err(st)
        }
    })
    .unwrap_or_else(|st| panic!("not aged out: {st}"));
    poll_until(Duration::from_secs(3), Duration::from_millis(100), || {
        let q = query(&lab, Some(1));
        if q.lines().last().is_some_and(|l| l.ends_with("00000003")) {
            Ok(())
        } else {
            Err(q)
        }
    })
    .unwrap_or_else(|q| panic!("VSI still at the station: {q}"));
    assert_eq!(ctl(&lab, "status")["vsis"].as_array().unwrap().len(), 0);
}
