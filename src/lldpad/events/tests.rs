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
