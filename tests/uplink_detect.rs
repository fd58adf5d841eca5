//! Automatic uplink detection against real lldpads (root): a "host" netns
//! with its own lldpad and three candidate veths, each to a different peer
//! netns: one peer runs a bridge-role lldpad, one a station-role lldpad, one
//! nothing. Candidates are given explicitly (veths have no `device` link).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::api::lldpad::lldptool as lt;
use vdp_agent::api::manager::host::UplinkDetect;
use vdp_agent::api::shutdown::Shutdown;
use vdp_agent::api::uplink::{SysNet, UplinkDetector};
use vdp_agent::lab::netns::{
    self, veth_with_mac, LldpadInstance, LldpadRole, Netns, TempDir, STATION_TX_CONFIG,
};

fn sysnet() -> SysNet {
    SysNet::new(
        Path::new("/nonexistent-lt/sys"),
        Path::new("/nonexistent-lt/bonding"),
    )
}

#[test]
fn detects_the_bridge_neighbour_among_three_candidates() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let p = netns::unique("ltd", 0);
    let dir = TempDir::new(&p).unwrap();
    let host = Netns::create(&format!("{p}-host")).unwrap();
    let peers: Vec<Netns> = (0..3)
        .map(|i| Netns::create(&format!("{p}-p{i}")).unwrap())
        .collect();
    let cands: Vec<String> = (0..3).map(|i| format!("{p}c{i}")).collect();
    for i in 0..3 {
        veth_with_mac(
            &host,
            &cands[i],
            &peers[i],
            &format!("{p}q{i}"),
            &format!("52:54:00:1d:00:0{i}"),
        )
        .unwrap();
    }
    // c0: station-role neighbour, c1: no lldpad at all, c2: the bridge.
    let _station_peer =
        LldpadInstance::start_with_config(&peers[0], STATION_TX_CONFIG, dir.path()).unwrap();
    let bridge =
        LldpadInstance::start(&peers[2], LldpadRole::Bridge, &format!("{p}q2"), dir.path())
            .unwrap();
    let _host_lldpad =
        LldpadInstance::start(&host, LldpadRole::Station, &cands[0], dir.path()).unwrap();
    let r = Arc::new(host.runner(Duration::from_secs(5)));
    let shutdown = Shutdown::new();

    let det = UplinkDetector::new(Arc::clone(&r), sysnet(), Some(cands.clone()));
    let t = Instant::now();
    let got = det.detect(None, &shutdown);
    let took = t.elapsed();
    println!("auto-detection over 3 candidates took {took:?}");
    assert_eq!(got, UplinkDetect::Up(cands[2].clone()));
    assert!(took < Duration::from_secs(6), "took {took:?}");
    // LLDP off again on every candidate, the winner included (lldpad
    // speaks for the uplink on the veth; the original does the same).
    assert_eq!(lt::admin_status(&r, &cands[0]).unwrap(), "disabled");
    assert_eq!(lt::admin_status(&r, &cands[1]).unwrap(), "disabled");
    assert_eq!(lt::admin_status(&r, &cands[2]).unwrap(), "disabled");

    // Uplink in use (here the candidate stands in for the veth): Normal
    // while the bridge TLV is there.
    lt::enable_lldp(&r, &cands[2]).unwrap();
    assert!(netns::wait_until(Duration::from_secs(10), || {
        det.detect(Some(&cands[2]), &shutdown) == UplinkDetect::Normal
    }));
    // The station-role neighbour is not an uplink (c0 has LLDP on now).
    lt::enable_lldp(&r, &cands[0]).unwrap();
    assert!(netns::wait_until(Duration::from_secs(10), || {
        lt::get_tlvs(&r, &cands[0])
            .map(|t| t.evb_cfgd)
            .unwrap_or(false)
    }));
    assert_eq!(det.detect(Some(&cands[0]), &shutdown), UplinkDetect::Down);
    lt::disable_lldp(&r, &cands[0]).unwrap();

    // Bridge goes away (shutdown LLDPDU, TTL 0): Down.
    drop(bridge);
    assert!(netns::wait_until(Duration::from_secs(5), || {
        det.detect(Some(&cands[2]), &shutdown) == UplinkDetect::Down
    }));

    // No bridge anywhere: NotFound after the wait, LLDP off on all of them
    // (c2 had LLDP on before this call, so it stays on).
    let mut det2 = UplinkDetector::new(Arc::clone(&r), sysnet(), Some(cands[..2].to_vec()));
    det2.set_wait(Duration::from_millis(1500));
    let t = Instant::now();
    assert_eq!(det2.detect(None, &shutdown), UplinkDetect::NotFound);
    assert!(t.elapsed() >= Duration::from_millis(1500) && t.elapsed() < Duration::from_secs(5));
    assert_eq!(lt::admin_status(&r, &cands[0]).unwrap(), "disabled");
    assert_eq!(lt::admin_status(&r, &cands[1]).unwrap(), "disabled");

    // Shutdown ends a long wait early.
    det2.set_wait(Duration::from_secs(60));
    let s2 = shutdown.clone();
    let trig = std::thread::Builder::new()
        .name("lt-trigger".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            s2.trigger();
        })
        .unwrap();
    let t = Instant::now();
    assert_eq!(det2.detect(None, &shutdown), UplinkDetect::NotFound);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    trig.join().unwrap();
    assert_eq!(lt::admin_status(&r, &cands[0]).unwrap(), "disabled");
}

#[test]
fn no_candidates_is_not_found_at_once() {
    let r = Arc::new(vdp_agent::api::exec::Runner::direct());
    let det = UplinkDetector::new(r, sysnet(), Some(vec![]));
    let t = Instant::now();
    assert_eq!(det.detect(None, &Shutdown::new()), UplinkDetect::NotFound);
    assert!(t.elapsed() < Duration::from_secs(1));
}

/// An uplink in use whose neighbour cannot be read because lldpad does not
/// answer (not running, restarting) stays `Normal`: no evidence of a down
/// link must count towards tearing the uplink and every VM's flows down.
#[test]
fn unreadable_neighbour_is_not_down() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let ns = Netns::create(&netns::unique("ltn", 0)).unwrap();
    let runner = Arc::new(ns.runner(Duration::from_secs(5)));
    let det = UplinkDetector::new(runner, sysnet(), Some(vec![]));
    assert_eq!(
        det.detect(Some("LLDPLeth2"), &Shutdown::new()),
        UplinkDetect::Normal
    );
}
