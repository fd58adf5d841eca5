//! lldpad event client: parser tests on live-captured clif datagrams
//! (tests/fixtures/clif/) and live tests against real lldpad daemons in
//! network namespaces (station + bridge-role peer joined by a veth).
//!
//! Live tests need root and lldpad; they print "skipped" otherwise.

use crossbeam_channel::{unbounded, Receiver};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vdp_agent::api::lldpad::events::{
    parse_event, EventClient, LldpadNotice, LldpadWatch, VdpEvent, VdpEventKind,
};
use vdp_agent::api::shutdown::Shutdown;
use vdp_agent::lab::netns::{
    enable_station, lldpad_lab_ok, unique, vdptool_set_argv, veth, wait_evb_bridge, LldpadInstance,
    LldpadRole, Netns, TempDir,
};

fn fixture(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clif");
    let path = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(name))
        })
        .unwrap_or_else(|| panic!("no fixture {name}"));
    std::fs::read(path).expect("read fixture")
}

fn ev(name: &str) -> VdpEvent {
    parse_event(&fixture(name)).unwrap_or_else(|| panic!("{name} did not parse"))
}

#[test]
fn fixture_assoc_events() {
    let e = ev("event_01");
    assert_eq!(e.kind, VdpEventKind::Associated);
    assert_eq!(e.mode, "assoc");
    assert_eq!(e.mgrid2, "0");
    assert_eq!(e.typeid, "0");
    assert_eq!(e.typeidver, "0");
    assert_eq!(e.uuid, "7af441dd-253b-4772-8cf1-a4cfef18efe5");
    assert_eq!(e.hints, Some(0));
    assert_eq!(e.vlan, Some(0));
    assert_eq!(e.mac.as_deref(), Some("fa:16:3e:00:00:01"));
    assert_eq!(e.filters, vec!["0-fa:16:3e:00:00:01-0".to_string()]);
    assert_eq!(e.error, None);
    assert_eq!(e.raw.as_bytes(), &fixture("event_01")[..]);

    let e = ev("event_02");
    assert_eq!((e.kind, e.vlan), (VdpEventKind::Associated, Some(3003)));
    assert_eq!(e.mac.as_deref(), Some("fa:16:3e:00:00:02"));

    // fmt 2 with PS=1 PCP=3: 48059 = 0xbbbb -> VID 3003; ASCII mgrid2.
    let e = ev("event_03");
    assert_eq!(e.filters, vec!["48059-fa:16:3e:00:00:03".to_string()]);
    assert_eq!(e.vlan, Some(3003));
    assert_eq!(
        (e.mgrid2.as_str(), e.typeid.as_str(), e.typeidver.as_str()),
        ("blabla", "5", "1")
    );

    // fmt 1 (VID only) and fmt 3 (VID-GID): no MAC.
    let e = ev("event_06");
    assert_eq!((e.vlan, e.mac.clone()), (Some(3004), None));
    let e = ev("event_07");
    assert_eq!((e.vlan, e.mac.clone()), (Some(3005), None));

    let e = ev("event_08");
    assert_eq!(
        (e.kind, e.mode.as_str()),
        (VdpEventKind::Associated, "preassoc")
    );
}

#[test]
fn fixture_deassoc_and_failures() {
    // Our own deassoc and an unsolicited one from the bridge look the same.
    for name in ["event_05", "event_17"] {
        let e = ev(name);
        assert_eq!(e.kind, VdpEventKind::Deassociated, "{name}");
        assert_eq!(
            (e.mode.as_str(), e.hints, e.error.clone()),
            ("deassoc", Some(0), None)
        );
    }
    // Bridge gone: keep-alive and ack timeout bits (768).
    for name in [
        "event_09", "event_10", "event_11", "event_12", "event_13", "event_14",
    ] {
        let e = ev(name);
        assert_eq!(e.kind, VdpEventKind::Deassociated, "{name}");
        assert_eq!(e.hints, Some(768));
        assert_eq!(
            e.error.as_deref(),
            Some("Keepalive Timeout; Ack not received from bridge")
        );
    }
    assert_eq!(ev("event_12").vlan, Some(3003));
    // New assoc never answered.
    let e = ev("event_15");
    assert_eq!((e.kind, e.hints), (VdpEventKind::Failed, Some(767)));
    assert_eq!(e.error.as_deref(), Some("Ack not received from bridge"));
    assert_eq!(e.uuid, "1f1e8d1c-0000-4000-8000-000000000008");
    // Bridge reject codes.
    let e = ev("event_18");
    assert_eq!((e.kind, e.hints), (VdpEventKind::Failed, Some(2)));
    assert_eq!(
        e.error.as_deref(),
        Some("Error returned by Bridge: Insufficient resources at bridge (code 2)")
    );
    let e = ev("event_19");
    assert_eq!((e.kind, e.hints), (VdpEventKind::Failed, Some(21)));
    assert_eq!(
        e.error.as_deref(),
        Some("Error returned by Bridge: Invalid VID, GroupID or MAC address field (code 5) [HARD]")
    );
}

#[test]
fn fixture_replies_are_not_events_and_truncations_do_not_parse() {
    for name in ["reply_attach_ok", "reply_ping", "reply_no_access"] {
        assert_eq!(parse_event(&fixture(name)), None, "{name}");
    }
    let full = fixture("event_02");
    for cut in 0..full.len() {
        // Any prefix must not panic; a cut inside the record must not parse.
        let r = parse_event(&full[..cut]);
        assert!(r.is_none(), "prefix of {cut} bytes parsed: {r:?}");
    }
}

// ---------------------------------------------------------------- live ----

/// Short EVB timers (2^13 * 10 us = 82 ms keep-alive, ~0.15 s ack wait) so
/// keep-alive loss shows quickly. lldpad uses max(local, received), so they
/// must be set on both sides before the station's first EVB exchange.
fn short_timers(ns: &Netns, ifname: &str) {
    for kv in ["vdprka=13", "vdprwd=13"] {
        ns.exec(&[
            "lldptool", "-T", "-i", ifname, "-g", "ncb", "-V", "evb", "-c", kv,
        ])
        .expect("set EVB timer");
    }
}

fn vdptool(ns: &Netns, mode: &str, uuid: &str, filter: &str) -> Result<String, String> {
    let argv = vdptool_set_argv("evs", mode, uuid, filter, false);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    ns.runner(Duration::from_secs(10))
        .run(&argv)
        .map(|o| o.stdout)
        .map_err(|e| e.to_string())
}

fn station_up(sta: &Netns, dir: &std::path::Path) -> LldpadInstance {
    let s = LldpadInstance::start(sta, LldpadRole::Station, "evs", dir).expect("station lldpad");
    short_timers(sta, "evs");
    enable_station(sta, "evs").expect("enable station");
    assert!(
        wait_evb_bridge(sta, "evs", Duration::from_secs(15)),
        "station never saw the bridge EVB TLV"
    );
    s
}

fn next_vdp(c: &mut EventClient, limit: Duration) -> Option<(VdpEvent, Duration)> {
    let t0 = Instant::now();
    c.recv(limit).expect("recv").map(|e| (e, t0.elapsed()))
}

fn next_notice(
    rx: &Receiver<(Instant, LldpadNotice)>,
    limit: Duration,
    mut want: impl FnMut(&LldpadNotice) -> bool,
) -> Option<(Instant, LldpadNotice)> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((t, n)) if want(&n) => return Some((t, n)),
            Ok((_, n)) => eprintln!("  (notice skipped: {n:?})"),
            Err(_) => return None,
        }
    }
}

/// Send one ECP22 frame carrying a VDP22 DEASSOC (status 0x00, no ACK: an
/// unsolicited deassociation by the bridge) for a format-4 VSI with VID 0,
/// out of `ifname` in `ns` (mgrid2 0, typeid 0, version 0, UUID VSI id).
fn inject_unsolicited_deassoc(ns: &Netns, ifname: &str, uuid: &str, mac: [u8; 6], gid: u32) {
    let src = ns.mac(ifname).expect("mac");
    let mut frame: Vec<u8> = vec![0x01, 0x80, 0xc2, 0, 0, 0];
    frame.extend(
        src.split(':')
            .map(|h| u8::from_str_radix(h, 16).expect("mac hex")),
    );
    frame.extend([0x89, 0x40]); // ECP22 ethertype
    let seq = (std::process::id() as u16) | 1;
    frame.extend([0x10, 0x01]); // version 1, request, subtype VDP
    frame.extend(seq.to_be_bytes());
    frame.extend(((5u16 << 9) | 16).to_be_bytes()); // manager ID TLV, all zero
    frame.extend([0u8; 16]);
    let mut val = vec![0x00, 0, 0, 0, 0, 5]; // status, type id, version, id fmt UUID
    let hex: String = uuid.chars().filter(|c| *c != '-').collect();
    val.extend((0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("uuid")));
    val.push(4); // filter format GroupID/MAC/VID
    val.extend(1u16.to_be_bytes());
    val.extend(gid.to_be_bytes());
    val.extend(mac);
    val.extend(0u16.to_be_bytes());
    frame.extend(((4u16 << 9) | val.len() as u16).to_be_bytes()); // DEASSOC TLV
    frame.extend(val);
    frame.extend([0, 0]); // End TLV
    frame.resize(frame.len().max(60), 0);

    ns.send_frames(ifname, &frame, 1, Duration::ZERO)
        .expect("inject");
}

fn kill9(pid: u32) {
    // SAFETY: kill(2) of an lldpad this test started (pid from its own answer).
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

#[test]
fn live_events_keepalive_ackto_and_restart() {
    if !lldpad_lab_ok() {
        return;
    }
    let dir = TempDir::new("vdp-ev").expect("temp dir");
    let sta = Netns::create(&unique("evs", 1)).expect("netns");
    let br = Netns::create(&unique("evb", 1)).expect("netns");
    veth(&sta, "evs", &br, "evb").expect("veth");

    let mut bridge =
        LldpadInstance::start(&br, LldpadRole::Bridge, "evb", dir.path()).expect("bridge");
    short_timers(&br, "evb");
    let mut station = station_up(&sta, dir.path());
    let station_pid = station.pid().expect("station pid");

    // 1. A client attached in the station netns; ping returns lldpad's pid.
    let mut client = EventClient::connect_in_netns(sta.name()).expect("connect");
    assert!(client.is_attached());
    assert_eq!(client.ping().expect("ping"), station_pid);
    assert_eq!(client.pid(), Some(station_pid));
    assert!(client.local_name().starts_with("/com/intel/lldpad/"));
    // Re-attaching to the same lldpad must not duplicate registrations.
    client.reattach().expect("reattach");

    // A watcher too: Attached first.
    let (ntx, nrx) = unbounded();
    let shutdown = Shutdown::new();
    let watch = LldpadWatch::start_in_netns(sta.name(), &shutdown, move |n| {
        let _ = ntx.send((Instant::now(), n));
    })
    .expect("watch");
    assert!(next_notice(&nrx, Duration::from_secs(3), |n| *n
        == LldpadNotice::Attached)
    .is_some());
    let st = watch.status();
    assert!(st.attached, "{st:?}");
    assert_eq!(st.lldpad_pid, Some(station_pid));

    // 2. vdptool assoc (no -W) -> Associated event with uuid, VLAN, MAC.
    let u1 = "6e0c7a52-0001-4000-8000-00000000e001";
    vdptool(&sta, "assoc", u1, "3003-fa:16:3e:00:e0:01-20001").expect("assoc");
    let (e, took) = next_vdp(&mut client, Duration::from_secs(5)).expect("assoc event");
    eprintln!("assoc event after {took:?}: {}", e.raw);
    assert_eq!(e.kind, VdpEventKind::Associated);
    assert_eq!((e.uuid.as_str(), e.vlan), (u1, Some(3003)));
    assert_eq!(e.mac.as_deref(), Some("fa:16:3e:00:e0:01"));
    assert_eq!(e.hints, Some(0));
    // Exactly one copy (reattach detached the old registration).
    assert!(next_vdp(&mut client, Duration::from_millis(500)).is_none());
    let (_, n) = next_notice(&nrx, Duration::from_secs(3), |n| {
        matches!(n, LldpadNotice::Vdp(_))
    })
    .expect("watch saw assoc");
    assert!(
        matches!(n, LldpadNotice::Vdp(ref e) if e.uuid == u1 && e.kind == VdpEventKind::Associated)
    );

    // 2b. The bridge ends a VSI on its own (unsolicited DEASSOC frame,
    //     injected on the bridge side) -> Deassociated without error.
    let u4 = "6e0c7a52-0004-4000-8000-00000000e004";
    vdptool(&sta, "assoc", u4, "0-fa:16:3e:00:e0:04-20004").expect("assoc");
    let (e, _) = next_vdp(&mut client, Duration::from_secs(5)).expect("assoc event");
    assert_eq!((e.kind, e.uuid.as_str()), (VdpEventKind::Associated, u4));
    // lldpad hands received ECPDUs to VDP through a one-slot buffer: an
    // injected frame that lands right after another ECPDU can be lost, so
    // inject again (at most 3 times) when no event follows.
    let mut got = None;
    for _ in 0..3 {
        inject_unsolicited_deassoc(&br, "evb", u4, [0xfa, 0x16, 0x3e, 0, 0xe0, 4], 20004);
        got = next_vdp(&mut client, Duration::from_secs(2));
        if got.is_some() {
            break;
        }
    }
    let (e, took) = got.expect("unsolicited deassoc");
    eprintln!("unsolicited deassoc event after {took:?}: {}", e.raw);
    assert_eq!((e.kind, e.uuid.as_str()), (VdpEventKind::Deassociated, u4));
    assert_eq!((e.hints, e.error.clone()), (Some(0), None));
    let query = sta
        .runner(Duration::from_secs(10))
        .run(&["vdptool", "-t", "-i", "evs", "-V", "assoc"])
        .expect("query");
    assert!(
        !query.stdout.contains(u4),
        "VSI still listed: {}",
        query.stdout
    );
    assert!(
        query.stdout.contains(u1),
        "other VSI lost: {}",
        query.stdout
    );

    // 3. Bridge lldpad killed: keep-alive unanswered -> Deassociated with KATO.
    let t_kill = Instant::now();
    kill9(bridge.pid().expect("bridge pid"));
    let (t, _) = next_notice(&nrx, Duration::from_secs(10), |n| {
        matches!(n, LldpadNotice::Vdp(e) if e.uuid == u1 && e.kind == VdpEventKind::Deassociated)
    })
    .expect("watch saw the keep-alive loss");
    let took = t.saturating_duration_since(t_kill);
    eprintln!("keep-alive loss noticed {took:?} after the bridge was killed");
    assert!(
        took < Duration::from_secs(3),
        "keep-alive loss seen after {took:?}"
    );
    bridge.stop();
    let (e, _) = next_vdp(&mut client, Duration::from_secs(5)).expect("keep-alive event");
    eprintln!("keep-alive loss event: {}", e.raw);
    assert_eq!(e.kind, VdpEventKind::Deassociated);
    assert_eq!(e.uuid, u1);
    assert_eq!(e.hints, Some(768));
    assert_eq!(
        e.error.as_deref(),
        Some("Keepalive Timeout; Ack not received from bridge")
    );

    // 4. New assoc with no bridge -> Failed, "Ack not received from bridge".
    let u2 = "6e0c7a52-0002-4000-8000-00000000e002";
    vdptool(&sta, "assoc", u2, "0-fa:16:3e:00:e0:02-20001").expect("assoc accepted locally");
    let (e, took) = next_vdp(&mut client, Duration::from_secs(10)).expect("ackto event");
    eprintln!("ack timeout event after {took:?}: {}", e.raw);
    assert_eq!((e.kind, e.uuid.as_str()), (VdpEventKind::Failed, u2));
    assert_eq!(e.error.as_deref(), Some("Ack not received from bridge"));

    // 5. Station lldpad killed and restarted: the watcher reports Lost, then
    //    Restarted{old,new} within ~1-2 s of the new daemon answering.
    kill9(station_pid);
    station.stop();
    let lost = next_notice(&nrx, Duration::from_secs(5), |n| {
        matches!(n, LldpadNotice::Lost(_))
    });
    eprintln!("lost notice: {lost:?}");
    assert!(lost.is_some());
    assert!(!watch.status().attached);
    assert!(client.ping().is_err(), "ping must fail with lldpad gone");

    let mut bridge =
        LldpadInstance::start(&br, LldpadRole::Bridge, "evb", dir.path()).expect("bridge");
    short_timers(&br, "evb");
    let station =
        LldpadInstance::start(&sta, LldpadRole::Station, "evs", dir.path()).expect("station");
    let t_up = Instant::now();
    let new_pid = station.pid().expect("new pid");
    assert_ne!(new_pid, station_pid);
    let (t, n) = next_notice(&nrx, Duration::from_secs(5), |n| {
        matches!(n, LldpadNotice::Restarted { .. })
    })
    .expect("Restarted notice");
    let took = t.saturating_duration_since(t_up);
    eprintln!("restart noticed {took:?} after the new lldpad answered");
    assert_eq!(
        n,
        LldpadNotice::Restarted {
            old_pid: station_pid,
            new_pid
        }
    );
    assert!(
        took < Duration::from_millis(2500),
        "restart noticed after {took:?}"
    );
    assert!(next_notice(&nrx, Duration::from_secs(2), |n| *n
        == LldpadNotice::Attached)
    .is_some());
    let st = watch.status();
    assert!(
        st.attached && st.lldpad_pid == Some(new_pid) && st.restarts == 1,
        "{st:?}"
    );

    // The old client re-attaches explicitly.
    client.reattach().expect("client reattach");
    assert_eq!(client.pid(), Some(new_pid));

    // 6. Both are registered with the new lldpad: a fresh assoc reaches them.
    short_timers(&sta, "evs");
    enable_station(&sta, "evs").expect("enable station");
    assert!(wait_evb_bridge(&sta, "evs", Duration::from_secs(15)));
    let u3 = "6e0c7a52-0003-4000-8000-00000000e003";
    vdptool(&sta, "assoc", u3, "0-fa:16:3e:00:e0:03-20001").expect("assoc");
    let (e, _) = next_vdp(&mut client, Duration::from_secs(5)).expect("assoc after restart");
    assert_eq!((e.kind, e.uuid.as_str()), (VdpEventKind::Associated, u3));
    assert!(next_notice(&nrx, Duration::from_secs(3), |n| {
        matches!(n, LldpadNotice::Vdp(e) if e.uuid == u3 && e.kind == VdpEventKind::Associated)
    })
    .is_some());

    // 7. Our own deassoc is seen as Deassociated without error.
    vdptool(&sta, "deassoc", u3, "0-fa:16:3e:00:e0:03-20001").expect("deassoc");
    let (e, _) = next_vdp(&mut client, Duration::from_secs(5)).expect("deassoc event");
    assert_eq!(
        (e.kind, e.uuid.as_str(), e.error.clone()),
        (VdpEventKind::Deassociated, u3, None)
    );

    // Shutdown stops the watch promptly.
    let t = Instant::now();
    shutdown.trigger();
    watch.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    bridge.stop();
}

#[test]
fn live_lldpad_absent_then_started() {
    if !lldpad_lab_ok() {
        return;
    }
    let dir = TempDir::new("vdp-ev2").expect("temp dir");
    let ns = Netns::create(&unique("evn", 2)).expect("netns");

    // No lldpad: connect fails with a clear reason.
    let err = EventClient::connect_in_netns(ns.name()).expect_err("no lldpad");
    let text = err.to_string();
    assert!(text.contains("lldpad is not running"), "{text}");
    let err = EventClient::connect_in_netns("../etc").expect_err("bad name");
    assert!(err.to_string().contains("bad netns name"), "{err}");

    // The watcher keeps trying and reports why.
    let (ntx, nrx) = unbounded();
    let shutdown = Shutdown::new();
    let watch = LldpadWatch::start_in_netns(ns.name(), &shutdown, move |n| {
        let _ = ntx.send((Instant::now(), n));
    })
    .expect("watch");
    let (_, n) = next_notice(&nrx, Duration::from_secs(3), |_| true).expect("first notice");
    assert!(
        matches!(n, LldpadNotice::Lost(ref r) if r.contains("lldpad is not running")),
        "{n:?}"
    );
    let st = watch.status();
    assert!(!st.attached);
    assert!(
        st.reason
            .as_deref()
            .is_some_and(|r| r.contains("not running")),
        "{st:?}"
    );
    // Lost is reported once per outage.
    assert!(next_notice(&nrx, Duration::from_millis(1500), |_| true).is_none());

    let inst = LldpadInstance::start(&ns, LldpadRole::Station, "lo", dir.path()).expect("lldpad");
    let t_up = Instant::now();
    let (t, n) = next_notice(&nrx, Duration::from_secs(5), |_| true).expect("attached");
    assert_eq!(n, LldpadNotice::Attached);
    let took = t.saturating_duration_since(t_up);
    assert!(
        took < Duration::from_millis(1500),
        "attached after {took:?}"
    );
    assert_eq!(watch.status().lldpad_pid, inst.pid());

    shutdown.trigger();
    drop(watch);
    drop(inst);
}

/// lldpad serves only uid 0: a non-root client gets `R0a` and a clear error.
/// The parent runs this same test again as uid 65534 inside the netns.
#[test]
fn live_non_root_is_refused() {
    if std::env::var_os("VDP_EV_NONROOT_CHILD").is_some() {
        match EventClient::connect() {
            Ok(c) => println!("CHILD-OK pid {:?}", c.pid()),
            Err(e) => println!("CHILD-ERR {e}"),
        }
        return;
    }
    if !lldpad_lab_ok() {
        return;
    }
    let dir = TempDir::new("vdp-ev3").expect("temp dir");
    let ns = Netns::create(&unique("evr", 3)).expect("netns");
    let _inst = LldpadInstance::start(&ns, LldpadRole::Station, "lo", dir.path()).expect("lldpad");
    let exe = std::env::current_exe().expect("exe");
    let out = ns
        .exec_any(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            "VDP_EV_NONROOT_CHILD=1",
            exe.to_str().expect("utf8 path"),
            "--exact",
            "live_non_root_is_refused",
            "--nocapture",
            "--test-threads=1",
        ])
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("child: {stdout}");
    let line = stdout
        .lines()
        .find_map(|l| l.find("CHILD-").map(|i| &l[i..]))
        .expect("child result line");
    assert!(line.starts_with("CHILD-ERR"), "{line}");
    assert!(line.contains("R0a") && line.contains("no access"), "{line}");
}

/// A slow callback must not stall lldpad: the watch drains the socket on its
/// own thread (an attached client that stops reading hangs lldpad after
/// ~140 unread events). 200 events against a callback taking 25 ms each.
#[test]
fn live_slow_callback_does_not_stall_lldpad() {
    if !lldpad_lab_ok() {
        return;
    }
    let dir = TempDir::new("vdp-ev4").expect("temp dir");
    let sta = Netns::create(&unique("evs", 4)).expect("netns");
    let br = Netns::create(&unique("evb", 4)).expect("netns");
    veth(&sta, "evs", &br, "evb").expect("veth");
    let _bridge =
        LldpadInstance::start(&br, LldpadRole::Bridge, "evb", dir.path()).expect("bridge");
    let station = station_up(&sta, dir.path());

    let (ntx, nrx) = unbounded();
    let shutdown = Shutdown::new();
    let watch = LldpadWatch::start_in_netns(sta.name(), &shutdown, move |n| {
        std::thread::sleep(Duration::from_millis(25)); // a slow consumer
        let _ = ntx.send((Instant::now(), n));
    })
    .expect("watch");
    assert!(next_notice(&nrx, Duration::from_secs(3), |n| *n
        == LldpadNotice::Attached)
    .is_some());

    let mut sent = 0;
    for mode in ["assoc", "deassoc"] {
        for i in 0..100 {
            let uuid = format!("6e0c7a52-0005-4000-8000-{i:012x}");
            let filter = format!("0-fa:16:3e:00:05:{i:02x}-20005");
            if vdptool(&sta, mode, &uuid, &filter).is_ok() {
                sent += 1;
            }
        }
    }
    // lldpad still answers at once although the callback is seconds behind.
    let t = Instant::now();
    assert_eq!(
        station.pid(),
        watch.status().lldpad_pid,
        "lldpad did not answer"
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "lldptool -p took {:?}",
        t.elapsed()
    );
    let mut got = 0;
    while got < sent {
        match next_notice(&nrx, Duration::from_secs(15), |n| {
            matches!(n, LldpadNotice::Vdp(_))
        }) {
            Some(_) => got += 1,
            None => break,
        }
    }
    eprintln!("{sent} vdptool requests accepted, {got} events delivered");
    assert!(sent >= 190, "only {sent} requests accepted");
    assert_eq!(got, sent);
    assert_eq!(watch.status().events, sent as u64);
    shutdown.trigger();
    drop(watch);
}
