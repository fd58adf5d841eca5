//! VM lanes: the queue worker processes a burst of VM events of different
//! ports at once (`vdp.in_flight`, default 4), so while one VSI waits for
//! the switch's verdict the next ports' host work (local VLAN, the request
//! to lldpad, flows) goes on and several VSIs are in flight at lldpad.
//!
//! Rules (they keep every guarantee of one-at-a-time processing that a
//! port or the rest of the daemon can see):
//! - Order per port: a port whose event is in flight is not handed out
//!   again before it finishes (`VdpMsgPriQue::take_for_lane`); a newer event
//!   of a queued port still replaces the queued one.
//! - Everything else stays serial: a burst ends when the head of the queue
//!   is not a VM event (an uplink message, a VSI change, a bulk resync) and
//!   nothing is in flight; only then is that message processed.
//! - Bulk resync: its "up" entries are processed by the same number of
//!   lanes, a port always in the same lane, in list order; its "down"
//!   entries and the replay of remembered ports follow one at a time, as
//!   before.
//! - The lldpad driver, the OVS table and the result store are shared and
//!   safe for concurrent use (each operation takes its own leaf lock).
//!
//! Owns: one burst's scoped `vm-lane` threads and the channel that feeds
//! them; they end with the burst. Calls `VdpMgr::process_vm_step` and the
//! queue's lane calls. Locks: a lane holds none of its own; the queue's
//! lock is taken only inside `take_for_lane` / `begin` / `finish`.

use super::*;
use crate::queue::LaneTake;
use crossbeam_channel::Receiver;
use std::hash::{Hash, Hasher};

/// Longest wait of the burst's dispatcher between looks at the queue
/// (a finishing lane or a new message wakes it at once).
const TAKE_WAIT: Duration = Duration::from_millis(250);

type Job = (VmPort, Option<MigrationPhase>);

impl VdpMgr {
    /// A burst of VM events, starting with `first` (taken by `dequeue`):
    /// hand out every VM event at the head of the queue to up to
    /// `vm_lanes` lanes until the head is no VM event and all are done.
    pub(super) fn run_vm_burst(&self, first: Job) {
        let max = self.cfg.vm_lanes.max(1);
        self.que.begin(&first.0.port_uuid);
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        std::thread::scope(|s| {
            let mut spawned = 0usize;
            let mut job = Some(first);
            loop {
                if let Some(j) = job.take() {
                    let _ = tx.send(j);
                    if spawned < max && spawned < self.que.in_flight() {
                        let rx = rx.clone();
                        match std::thread::Builder::new()
                            .name(ThreadName::VmLane.as_str().into())
                            .spawn_scoped(s, move || self.lane(&rx))
                        {
                            Ok(_) => spawned += 1,
                            Err(e) => {
                                log::warn!("cannot start a {} thread: {e}", ThreadName::VmLane)
                            }
                        }
                    }
                    if spawned == 0 {
                        // No lane could start: do the work here.
                        while let Ok(j) = rx.try_recv() {
                            self.lane_job(j);
                        }
                    }
                }
                match self.que.take_for_lane(max, TAKE_WAIT) {
                    LaneTake::Vm { vm, migration } => job = Some((vm, migration)),
                    LaneTake::Idle => {}
                    LaneTake::Done => break,
                }
            }
            drop(tx);
        });
    }

    /// One lane: its jobs until the burst's channel closes.
    fn lane(&self, rx: &Receiver<Job>) {
        for j in rx.iter() {
            self.lane_job(j);
        }
    }

    /// One VM event on a lane; the port is finished whatever happens (a
    /// panic is caught and logged, as the task runner does for a step).
    fn lane_job(&self, (vm, migration): Job) {
        if !self.shutdown.is_set() {
            self.guarded_step(&vm, migration);
        }
        self.que.finish(&vm.port_uuid);
    }

    /// `process_vm_step` with a panic caught and logged.
    fn guarded_step(&self, vm: &VmPort, migration: Option<MigrationPhase>) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.process_vm_step(vm, migration)
        }));
        if let Err(p) = r {
            log::error!(
                "thread {}: panic caught processing port {}: {}",
                ThreadName::VmLane,
                vm.port_uuid,
                crate::task::panic_message(&*p)
            );
        }
    }

    /// Bulk resync's "up" entries (in list order per port) on up to
    /// `vm_lanes` lanes, a port always in the same lane.
    pub(super) fn bulk_ups_in_lanes(&self, ups: &[&VmPort]) {
        let lanes = self.cfg.vm_lanes.clamp(1, ups.len().max(1));
        if lanes == 1 {
            for vm in ups {
                if self.shutdown.is_set() {
                    return;
                }
                self.process_vm_event(vm);
            }
            return;
        }
        let run = |lane: usize| {
            for vm in ups.iter().filter(|v| lane_of(&v.port_uuid, lanes) == lane) {
                if self.shutdown.is_set() {
                    return;
                }
                self.guarded_step(vm, None);
            }
        };
        std::thread::scope(|s| {
            let mut started = vec![false; lanes];
            for (lane, ok) in started.iter_mut().enumerate().skip(1) {
                let run = &run;
                *ok = std::thread::Builder::new()
                    .name(ThreadName::VmLane.as_str().into())
                    .spawn_scoped(s, move || run(lane))
                    .map_err(|e| log::warn!("cannot start a {} thread: {e}", ThreadName::VmLane))
                    .is_ok();
            }
            run(0);
            // A lane that could not start is done here.
            for (lane, ok) in started.iter().enumerate().skip(1) {
                if !ok {
                    run(lane);
                }
            }
        });
    }
}

/// The lane of a port (stable for the run).
fn lane_of(port_uuid: &str, lanes: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    port_uuid.hash(&mut h);
    (h.finish() % lanes as u64) as usize
}
