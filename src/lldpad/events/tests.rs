use super::*;
use crate::shutdown::Shutdown;
use std::sync::Arc;

/// Make the next `Worker::run` panic (only the test below sets it).
pub(super) static PANIC_IN_RUN: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[test]
fn panics_on_the_watch_threads_are_contained() {
    // No such namespace: the worker cannot connect and says so once.
    // Its first run panics, and so does the callback: both threads go
    // on, the panics are counted, the Lost notice still arrives.
    PANIC_IN_RUN.store(true, std::sync::atomic::Ordering::SeqCst);
    let shutdown = Shutdown::new();
    let (tx, rx) = crossbeam_channel::unbounded();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c2 = calls.clone();
    let w = LldpadWatch::start_in_netns(
        &format!("vdp-no-such-ns-{}", std::process::id()),
        &shutdown,
        move |n| {
            if c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                panic!("injected panic in the callback");
            }
            let _ = tx.send(n);
        },
    )
    .unwrap();
    // One panic on each thread: the worker's first run, the callback's
    // first notice (Lost).
    let t = Instant::now();
    while w.status().panics < 2 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(w.status().panics, 2, "{:?}", w.status());
    assert!(w.thread_states().iter().all(|(_, s)| s == "alive"));
    assert!(w.status().reason.is_some());
    drop(rx);
    w.stop();
}

#[test]
fn parses_assoc_event() {
    let d = b"M000080c4E16009704mode0005assoc06mgrid20001006typeid0001009typeidver0001004uuid00241f1e8d1c-0000-4000-8000-00000000000205hints0001006filter00183003-fa:16:3e:00:00:02-0";
    let ev = parse_event(d).expect("event");
    assert_eq!(ev.kind, VdpEventKind::Associated);
    assert_eq!(ev.uuid, "1f1e8d1c-0000-4000-8000-000000000002");
    assert_eq!(ev.vlan, Some(3003));
    assert_eq!(ev.mac.as_deref(), Some("fa:16:3e:00:00:02"));
    assert_eq!(ev.hints, Some(0));
    assert_eq!(ev.error, None);
}

#[test]
fn rejects_garbage_without_panic() {
    for d in [
        &b""[..],
        b"M000080c4E",
        b"M000080c4E16",
        b"M000080c4E16ffff04mode",
        b"M000080c4E1600050",
        b"R00A",
        b"M000080c4E16\xff\xfe",
        b"M000080c4E16001204mode0005assoc",
    ] {
        assert_eq!(parse_event(d), None, "{d:?}");
    }
}

#[test]
fn status_texts() {
    assert_eq!(describe_status(0), None);
    assert_eq!(
        describe_status(768).as_deref(),
        Some("Keepalive Timeout; Ack not received from bridge")
    );
    assert_eq!(
        describe_status(767).as_deref(),
        Some("Ack not received from bridge")
    );
    assert_eq!(
        describe_status(4 << 8).as_deref(),
        Some("Transmission Error")
    );
    assert_eq!(
        describe_status(21).as_deref(),
        Some("Error returned by Bridge: Invalid VID, GroupID or MAC address field (code 5) [HARD]")
    );
    assert_eq!(
        describe_status(255).as_deref(),
        Some("No response from bridge")
    );
    assert_eq!(classify("deassoc", 768), VdpEventKind::Deassociated);
    assert_eq!(classify("deassoc", 767), VdpEventKind::Failed);
    assert_eq!(classify("deassoc", 2), VdpEventKind::Failed);
    assert_eq!(classify("deassoc", 0), VdpEventKind::Deassociated);
    assert_eq!(classify("preassoc", 0), VdpEventKind::Associated);
}
