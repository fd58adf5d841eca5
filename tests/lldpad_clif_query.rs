//! VDP22 queries over lldpad's control socket (`lldpad::clif::ClifQuery`)
//! against real lldpad daemons (root): a station lldpad and a Debian
//! bridge-role lldpad (which echoes every requested VID) in two network
//! namespaces joined by a veth.
//!
//! Proves: the datagram equals what vdptool sends (strace); the socket's
//! `R` line equals `vdptool -R`'s byte for byte (no VSI, one, a full list,
//! a pending one with hints 255); lldpad's `R0a` refusal of non-root
//! senders is recognised; a driver refresh of many associated VSIs spawns
//! no vdptool process; an unusable socket falls back to vdptool.
//! `VDP_CLIFQ_BENCH_N=200` sets the VSI count of the refresh test.

use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::api::config::VdpConfig;
use vdp_agent::api::lldpad::clif::{self, ClifQuery};
use vdp_agent::api::lldpad::vdptool;
use vdp_agent::api::lldpad::wire::Command;
use vdp_agent::lab::netns::{self, Netns, StationBridgeLab};

/// A get of every VSI with the identity keys but no uuid.
fn keys_only(ifname: &str) -> Command {
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    Command::get(
        ifname,
        vec![
            kv("mode", "assoc"),
            kv("mgrid2", "0"),
            kv("typeid", "0"),
            kv("typeidver", "0"),
        ],
    )
}
use vdp_agent::api::lldpad::vsi::{LldpadDriver, VsiRequest};

macro_rules! need_root {
    () => {
        if !netns::lldpad_lab_ok() {
            return;
        }
    };
}

/// The shared station + bridge-role lldpad pair, with this file's helpers.
struct Lab(StationBridgeLab);

impl std::ops::Deref for Lab {
    type Target = StationBridgeLab;
    fn deref(&self) -> &StationBridgeLab {
        &self.0
    }
}

fn lab(n: u32) -> Lab {
    Lab(StationBridgeLab::start("cq", n).expect("station + bridge lldpad lab"))
}

fn uuid(n: u32) -> String {
    format!("5c0f7e2a-0000-4000-8000-{n:012x}")
}

fn mac(n: u32) -> String {
    format!("fa:16:3e:00:{:02x}:{:02x}", n >> 8, n & 0xff)
}

impl Lab {
    /// Plain `vdptool -T [-W]` association of VSI `n` with VLAN `vid`.
    fn plain_assoc(&self, n: u32, vid: u32, wait: bool) -> String {
        let argv = netns::vdptool_set_argv(
            &self.sta_if,
            "assoc",
            &uuid(n),
            &format!("{vid}-{}-{}", mac(n), 20000 + n),
            wait,
        );
        self.sta.stdout(&argv).unwrap()
    }
    /// The `R` line `vdptool -R` prints for a query argv.
    fn vdptool_r_line(&self, argv: &[String]) -> String {
        let out = self.sta.stdout(argv).unwrap();
        out.lines()
            .find(|l| l.starts_with('R'))
            .unwrap_or_else(|| panic!("no R line in {out:?}"))
            .to_string()
    }
    fn driver(&self) -> LldpadDriver {
        let runner = Arc::new(self.sta.runner(Duration::from_secs(10)));
        LldpadDriver::new(runner, &self.sta_if, VdpConfig::default())
    }
    fn req(&self, n: u32) -> VsiRequest {
        VsiRequest {
            port_uuid: uuid(n),
            vm_mac: mac(n),
            net_uuid: "11111111-2222-3333-4444-555555555555".into(),
            segmentation_id: 20000 + n,
            oui: None,
        }
    }
}

/// Socket and vdptool agree byte for byte on the per-VSI and list queries.
fn assert_same(lab: &Lab, q: &ClifQuery, uuids: &[String]) -> usize {
    let cfg = VdpConfig::default();
    let list = vdptool::list_command(&lab.sta_if).unwrap();
    let via_socket = q.get(&list).unwrap();
    assert_eq!(via_socket, lab.vdptool_r_line(&list.argv()), "list");
    for u in uuids {
        let cmd = vdptool::query_command(&lab.sta_if, &cfg, u).unwrap();
        let line = q.get(&cmd).unwrap();
        assert_eq!(line, lab.vdptool_r_line(&cmd.argv()), "query {u}");
    }
    vdptool::parse_query(&via_socket).unwrap().records.len()
}

#[test]
fn socket_query_is_vdptools_query_byte_for_byte() {
    need_root!();
    let lab = lab(1);
    let q = ClifQuery::in_netns(lab.sta.name());
    let cfg = VdpConfig::default();

    // The datagram vdptool sends is the one we build (strace, if present).
    let cmd = vdptool::query_command(&lab.sta_if, &cfg, &uuid(1)).unwrap();
    let argv = cmd.argv();
    let want = cmd.datagram().unwrap();
    if std::path::Path::new("/usr/bin/strace").exists() {
        let trace = lab.dir.path().join("strace.txt");
        let mut st: Vec<String> = [
            "strace",
            "-f",
            "-s",
            "8192",
            "-e",
            "trace=sendto,sendmsg",
            "-o",
            &trace.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        st.extend(argv.iter().cloned());
        lab.sta.stdout(&st).unwrap();
        let text = std::fs::read_to_string(&trace).unwrap();
        let sends: Vec<&str> = text.lines().filter(|l| l.contains("send")).collect();
        assert!(
            sends.iter().any(|l| l.contains(&format!("\"{want}\""))),
            "{want}\n{text}"
        );
    }

    // No VSI at all.
    assert_eq!(assert_same(&lab, &q, &[uuid(1)]), 0);
    // One VSI (VLAN 3001 echoed by the bridge).
    assert!(lab.plain_assoc(1, 3001, true).contains("filter = 3001-"));
    assert_eq!(assert_same(&lab, &q, &[uuid(1), uuid(2)]), 1);
    // Several: the list carries them all, newest first.
    for n in 2..=5 {
        lab.plain_assoc(n, 3000 + n, true);
    }
    let all: Vec<String> = (1..=6).map(uuid).collect();
    assert_eq!(assert_same(&lab, &q, &all), 5);
    // Pending: the bridge is silent, lldpad waits with hints 255.
    // SAFETY: kill(2) of the bridge lldpad this test started.
    assert_eq!(
        unsafe { libc::kill(lab.bridge_pid as i32, libc::SIGSTOP) },
        0
    );
    lab.plain_assoc(7, 3007, false);
    let line = q
        .get(&vdptool::query_command(&lab.sta_if, &cfg, &uuid(7)).unwrap())
        .unwrap();
    assert!(line.contains("05hints0003255"), "{line}");
    let mut all: Vec<String> = (1..=7).map(uuid).collect();
    all.push(uuid(99));
    assert_eq!(assert_same(&lab, &q, &all), 6);
    // SAFETY: as above.
    unsafe {
        libc::kill(lab.bridge_pid as i32, libc::SIGCONT);
    }

    // lldpad refuses a non-root sender (R0a): recognised as "no access".
    // setresuid(2) as a raw syscall changes only the calling thread.
    let q = Arc::new(q);
    let q2 = q.clone();
    let ifname = lab.sta_if.clone();
    let refused = std::thread::Builder::new()
        .name("cq-nonroot".into())
        .spawn(move || {
            // SAFETY: per-thread credential change of this short-lived thread.
            let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
            assert_eq!(rc, 0);
            q2.get(&keys_only(&ifname))
        })
        .unwrap()
        .join()
        .unwrap();
    let e = refused.unwrap_err();
    assert!(clif::is_no_access(&e), "{e}");
    // The same socket still serves root.
    assert!(q.get(&keys_only(&lab.sta_if)).unwrap().starts_with("R00C3"));
}

#[test]
fn refresh_over_the_socket_spawns_no_vdptool() {
    need_root!();
    let n: u32 = std::env::var("VDP_CLIFQ_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let lab = lab(2);
    let t = Instant::now();
    for i in 1..=n {
        let out = lab.plain_assoc(i, 100 + i, true);
        assert!(out.contains(&format!("filter = {}-", 100 + i)), "{out}");
    }
    eprintln!("{n} plain assoc -W: {:?}", t.elapsed());
    // The list answer lldpad cuts at its buffer size: identical too.
    let list = vdptool::list_command(&lab.sta_if).unwrap();
    let via_socket = ClifQuery::in_netns(lab.sta.name()).get(&list).unwrap();
    assert_eq!(via_socket, lab.vdptool_r_line(&list.argv()));
    let d = lab.driver();
    d.set_query_socket(Some(ClifQuery::in_netns(lab.sta.name())));
    // Adopted: lldpad holds them with a VLAN; only socket queries.
    for i in 1..=n {
        assert_eq!(d.associate(&lab.req(i)).vdp_vlan, Some((100 + i) as u16));
    }
    assert_eq!(d.vdptool_calls(), 0);
    assert_eq!(d.socket_queries(), u64::from(n));

    // A refresh round over the socket: zero processes, nothing changed.
    let (calls, queries) = (d.vdptool_calls(), d.socket_queries());
    let t = Instant::now();
    assert!(d.refresh().is_empty());
    let socket_round = t.elapsed();
    assert_eq!(d.vdptool_calls(), calls, "no vdptool process");
    let asked = d.socket_queries() - queries;
    // One list query, plus one per VSI missing from the list (lldpad's
    // answer holds what fits in its 4096-byte buffer).
    let listed =
        vdptool::parse_query(&lab.vdptool_r_line(&vdptool::list_argv(&lab.sta_if).unwrap()))
            .unwrap()
            .records
            .len() as u64;
    assert_eq!(asked, 1 + u64::from(n) - listed, "listed {listed}");

    // The same round through vdptool processes (before this change).
    d.set_query_socket(None);
    let (calls, queries) = (d.vdptool_calls(), d.socket_queries());
    let t = Instant::now();
    assert!(d.refresh().is_empty());
    let process_round = t.elapsed();
    let spawned = d.vdptool_calls() - calls;
    assert_eq!(d.socket_queries(), queries);
    assert_eq!(spawned, asked);
    eprintln!(
        "refresh of {n} VSIs ({listed} in the list answer): socket {asked} queries, \
         0 processes, {socket_round:?}; vdptool {spawned} processes, {process_round:?}"
    );

    // Socket unusable (no lldpad where it is created): vdptool takes over,
    // the refresh still works.
    let empty = Netns::create(&netns::unique("cqe", 2)).expect("netns");
    d.set_query_socket(Some(ClifQuery::in_netns(empty.name())));
    let (calls, queries) = (d.vdptool_calls(), d.socket_queries());
    assert!(d.refresh().is_empty());
    assert_eq!(d.socket_queries(), queries);
    assert_eq!(d.vdptool_calls() - calls, asked);
    // A VSI lldpad lost is still found (through vdptool) and re-asserted.
    let gone = lab.sta.stdout(&netns::vdptool_set_argv(
        &lab.sta_if,
        "deassoc",
        &uuid(1),
        &format!("101-{}-20001", mac(1)),
        false,
    ));
    assert!(gone.is_ok());
    let back = netns::wait_for(Duration::from_secs(5), Duration::from_millis(100), || {
        let ch = d.refresh();
        d.vsis()
            .iter()
            .any(|(r, rep)| r.port_uuid == uuid(1) && rep.fail_reason.is_some())
            .then_some(ch)
    });
    assert!(back.is_some(), "{:?}", d.vsis().first());
    assert_eq!(d.socket_queries(), queries);
}

/// The set (associate / deassociate) datagrams `wire::Command` renders are
/// byte for byte the ones the installed vdptool sends for the same argv:
/// captured on a socket bound to lldpad's name in a namespace of its own.
#[test]
fn set_datagrams_are_vdptools_byte_for_byte() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    need_root!();
    let ns = Netns::create(&netns::unique("cqs", 1)).expect("netns");
    let sock = ns
        .run_in("cq-fake-lldpad", || {
            let addr = SocketAddr::from_abstract_name(clif::LLDPAD_CLIF_SOCKET).unwrap();
            UnixDatagram::bind_addr(&addr).unwrap()
        })
        .expect("bind in netns");
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cfg = VdpConfig::default();
    let oui = vdp_agent::api::model::Oui {
        oui_id: "cisco".into(),
        vm_name: Some("web 01".into()),
        ip_addr: Some("10.0.0.5".parse().unwrap()),
        vm_uuid: Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
        ..Default::default()
    };
    let vsi = |oui| vdptool::VsiArgs {
        uuid: "7af441dd-253b-4772-8cf1-a4cfef18efe5",
        mac: "fa:16:3e:00:00:01",
        gid: 20000,
        vlan: 3001,
        oui,
    };
    use vdp_agent::api::config::Hints;
    use vdptool::{request_command_hinted, Mode};
    // (mode, with the OUI, hint): the agent's requests, then a live
    // migration's: pre-associations at the destination, its associate with
    // hint `to`, the source's deassociate with `from`.
    let cases = [
        (Mode::Assoc, true, Hints::None),
        (Mode::Assoc, false, Hints::None),
        (Mode::Deassoc, false, Hints::None),
        (Mode::Preassoc, true, Hints::None),
        (Mode::PreassocRr, true, Hints::None),
        (Mode::Assoc, true, Hints::To),
        (Mode::Deassoc, false, Hints::From),
    ];
    for (mode, with_oui, hint) in cases {
        let cmd = request_command_hinted(
            "eth0",
            &cfg,
            mode,
            &vsi(with_oui.then_some(&oui)),
            false,
            hint,
        );
        let cmd = cmd.unwrap();
        let argv = cmd.argv();
        let mut child = ns
            .command(&argv[0])
            .args(&argv[1..])
            .spawn()
            .expect("vdptool");
        let mut buf = vec![0u8; 8192];
        let (n, from) = sock.recv_from(&mut buf).expect("vdptool's datagram");
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        // Answer as lldpad does (status 0, header echoed) so vdptool ends.
        let mut reply = b"R00".to_vec();
        reply.extend_from_slice(&buf[9..n]);
        if let Some(p) = from.as_abstract_name() {
            let to = SocketAddr::from_abstract_name(p).unwrap();
            let _ = sock.send_to_addr(&reply, &to);
        }
        let _ = child.wait();
        assert_eq!(Some(got), cmd.datagram(), "{argv:?}");
    }
}
