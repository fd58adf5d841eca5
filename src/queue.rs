//! `VdpMsgPriQue` / `VdpQueMsg`: the manager's priority queues and the typed
//! messages they carry (the original `dfa_vdp_mgr.VdpMsgPriQue` and
//! `VdpQueMsg`).
//!
//! Owns: queue contents. Calls nothing (pure data structure + a condvar).
//!
//! Decisions:
//! - Lower priority number is served first: [`Q_UPL_PRIO`] = 1 (uplink),
//!   [`Q_VM_PRIO`] = 2 (VM and bulk VM), [`Q_VSI_PRIO`] = 2 (VSI change). VSI
//!   changes share the VM priority so a change found by refresh is applied
//!   in arrival order relative to VM events for the same port (a VM "down"
//!   queued before a refresh result must not be overtaken by it).
//! - Equal priorities are FIFO by a per-queue sequence number; message bodies
//!   are never compared (the original's tuple ordering could fall through to
//!   comparing message objects).
//! - VM lanes (`manager::lanes`): during a burst of VM events the worker
//!   takes VM messages with [`VdpMsgPriQue::take_for_lane`], which marks the
//!   port in flight until [`VdpMsgPriQue::finish`]; a port in flight is never
//!   handed out again before it finishes (order per port), and a message that
//!   is not a VM event at the head ends the burst once nothing is in flight
//!   (everything else stays serial with VM events).
//! - `dequeue` blocks until a message arrives or the queue is closed; after
//!   [`VdpMsgPriQue::close`] it returns `None` at once, even if messages are
//!   left (shutdown must not start new work). `dequeue_nonblock` still drains
//!   a closed queue (nothing is lost for the error-queue mover).

use crate::model::VsiChange;
use crate::model::{MigrationPhase, VmPort};
use parking_lot::{Condvar, Mutex};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Priority of uplink messages (`constants.Q_UPL_PRIO`).
pub(crate) const Q_UPL_PRIO: u8 = 1;
/// Priority of VM and bulk VM messages (`constants.Q_VM_PRIO`).
pub(crate) const Q_VM_PRIO: u8 = 2;
/// Priority of VSI-change messages (new here; same as VM, see module doc).
pub(crate) const Q_VSI_PRIO: u8 = 2;
/// Priority of VSI re-reports that carry no VLAN change (the refresh's
/// periodic re-confirmation, the original's CALLBACK_THRESHOLD): after VM
/// events, so a batch of 1000 confirmations never delays a new port.
pub(crate) const Q_VSI_REREPORT_PRIO: u8 = 3;

/// Uplink state carried by an uplink message (`'up'`/`'down'` strings of
/// the original).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UplinkStatus {
    Up,
    Down,
}

impl UplinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UplinkStatus::Up => "up",
            UplinkStatus::Down => "down",
        }
    }
}

/// One message of the manager queue (`VdpQueMsg`; `msg_type` is the enum
/// variant: `VM_MSG_TYPE`, `VM_BULK_SYNC_MSG_TYPE`, `UPLINK_MSG_TYPE`, plus
/// the new VSI change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VdpQueMsg {
    /// One VM port event (`construct_vm_msg`). The original also carried
    /// the uplink known when it was queued; the manager checks readiness
    /// against its current state when processing, so it is not kept.
    /// `migration`: the live migration step it is (a `vm_migration`
    /// event), `None` for a plain `vm_info`. A newer event of the port
    /// replaces it in the queue, step included.
    Vm {
        vm: VmPort,
        migration: Option<MigrationPhase>,
    },
    /// Bulk resync list (`construct_vm_bulk_sync_msg`).
    VmBulk { vms: Vec<VmPort> },
    /// Uplink up/down (`construct_uplink_msg`). `veth_intf` is new: the
    /// lldpad-side veth known when a down was decided (the original read its
    /// already-cleared `self.veth_intf`), so topology discovery can be
    /// unconfigured on the right interface. The root helper and the bridge
    /// names are not carried: the host driver owns them.
    Uplink {
        status: UplinkStatus,
        phy_uplink: String,
        veth_intf: Option<String>,
    },
    /// A VSI changed behind the manager's back (refresh / lldpad event).
    VsiChanged(VsiChange),
}

impl VdpQueMsg {
    /// The original's `msg_type` constant, for logs.
    pub fn msg_type(&self) -> &'static str {
        match self {
            VdpQueMsg::Vm { .. } => "vm",
            VdpQueMsg::VmBulk { .. } => "vm_bulk",
            VdpQueMsg::Uplink { .. } => "uplink",
            VdpQueMsg::VsiChanged(_) => "vsi_changed",
        }
    }
}

struct Entry {
    prio: u8,
    seq: u64,
    /// The message, or None for a VM event whose newest state waits in
    /// `Inner::vms` under `vm_key` (coalesced per port).
    msg: Option<VdpQueMsg>,
    vm_key: Option<String>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.prio == other.prio && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// BinaryHeap is a max-heap: the "greatest" entry is the one with the
    /// lowest priority number, then the lowest sequence number.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .prio
            .cmp(&self.prio)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

#[derive(Default)]
struct Inner {
    heap: BinaryHeap<Entry>,
    /// Newest queued VM event per port (its place in `heap` is the first
    /// one's: order per port is kept, only the newest state is processed).
    vms: std::collections::HashMap<String, VdpQueMsg>,
    next_seq: u64,
    closed: bool,
    /// Ports whose VM event a lane is processing (`take_for_lane` ..
    /// `finish`).
    in_flight: std::collections::HashSet<String>,
}

impl Inner {
    fn pop(&mut self) -> Option<(u8, VdpQueMsg)> {
        let e = self.heap.pop()?;
        match (e.msg, e.vm_key) {
            (Some(m), _) => Some((e.prio, m)),
            (None, Some(k)) => self.vms.remove(&k).map(|m| (e.prio, m)),
            (None, None) => None,
        }
    }

    /// The port of the head message when it is a VM event.
    fn head_vm(&self) -> Option<&str> {
        self.heap.peek()?.vm_key.as_deref()
    }
}

/// What [`VdpMsgPriQue::take_for_lane`] hands the worker.
#[allow(clippy::large_enum_variant)] // moved out at once; boxing would allocate per event
#[derive(Debug)]
pub enum LaneTake {
    /// A VM event, its port now in flight.
    Vm {
        vm: VmPort,
        migration: Option<MigrationPhase>,
    },
    /// Nothing to hand out within the wait (ports still in flight).
    Idle,
    /// The burst is over: nothing in flight and the head (if any) is not a
    /// VM event, or the queue is closed.
    Done,
}

/// Queue length above which the controller's events are not polled (the
/// event poller waits until the worker drained below it): with VM events
/// coalesced per port, memory stays bounded whatever the controller sends.
pub(crate) const HIGH_WATER: usize = 10_000;

/// Priority queue of `VdpQueMsg` (`VdpMsgPriQue`). Shared by reference
/// (`Arc`) between the producers and the worker.
#[derive(Default)]
pub struct VdpMsgPriQue {
    inner: Mutex<Inner>,
    cv: Condvar,
}

impl VdpMsgPriQue {
    pub fn new() -> VdpMsgPriQue {
        VdpMsgPriQue::default()
    }

    /// `enqueue(priority, msg)`. Messages enqueued after `close` are dropped.
    pub fn enqueue(&self, priority: u8, msg: VdpQueMsg) {
        let mut q = self.inner.lock();
        if q.closed {
            log::debug!("queue closed, dropping {} message", msg.msg_type());
            return;
        }
        let vm_key = match &msg {
            VdpQueMsg::Vm { vm, .. } => Some(vm.port_uuid.clone()),
            _ => None,
        };
        if let Some(k) = &vm_key {
            if let Some(queued) = q.vms.get_mut(k) {
                log::debug!("queue: newer event for port {k} replaces the queued one");
                *queued = msg;
                return;
            }
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        let msg = match vm_key.clone() {
            Some(k) => {
                q.vms.insert(k, msg);
                None
            }
            None => Some(msg),
        };
        q.heap.push(Entry {
            prio: priority,
            seq,
            msg,
            vm_key,
        });
        self.cv.notify_one();
    }

    /// Blocking `dequeue`: the next message, or `None` once the queue is
    /// closed.
    pub fn dequeue(&self) -> Option<(u8, VdpQueMsg)> {
        let mut q = self.inner.lock();
        loop {
            if q.closed {
                return None;
            }
            if let Some(m) = q.pop() {
                return Some(m);
            }
            self.cv.wait(&mut q);
        }
    }

    /// Like `dequeue`, giving up after `d` (`None` on timeout or close).
    pub fn dequeue_timeout(&self, d: Duration) -> Option<(u8, VdpQueMsg)> {
        let deadline = Instant::now() + d;
        let mut q = self.inner.lock();
        loop {
            if q.closed {
                return None;
            }
            if let Some(m) = q.pop() {
                return Some(m);
            }
            if self.cv.wait_until(&mut q, deadline).timed_out() {
                if q.closed {
                    return None;
                }
                return q.pop();
            }
        }
    }

    /// `dequeue_nonblock`: the next message if any (also on a closed queue).
    pub fn dequeue_nonblock(&self) -> Option<(u8, VdpQueMsg)> {
        self.inner.lock().pop()
    }

    /// The next VM event for a lane: the head message when it is a VM
    /// event whose port is not in flight and fewer than `max` ports are;
    /// the port is then in flight until [`finish`](Self::finish). Waits up
    /// to `wait` for that (a lane finishing or a new message wakes it).
    pub fn take_for_lane(&self, max: usize, wait: Duration) -> LaneTake {
        let deadline = Instant::now() + wait;
        let mut q = self.inner.lock();
        loop {
            if q.closed {
                return LaneTake::Done;
            }
            match q.head_vm() {
                Some(port) if !q.in_flight.contains(port) && q.in_flight.len() < max => {
                    if let Some((_, VdpQueMsg::Vm { vm, migration })) = q.pop() {
                        q.in_flight.insert(vm.port_uuid.clone());
                        return LaneTake::Vm { vm, migration };
                    }
                    continue;
                }
                Some(_) => {}
                None if q.in_flight.is_empty() => return LaneTake::Done,
                None => {}
            }
            if self.cv.wait_until(&mut q, deadline).timed_out() {
                return LaneTake::Idle;
            }
        }
    }

    /// `port`'s event is in flight although it was taken by `dequeue` (the
    /// first event of a burst).
    pub fn begin(&self, port: &str) {
        self.inner.lock().in_flight.insert(port.to_string());
    }

    /// A lane is done with `port`'s event (see `take_for_lane`).
    pub fn finish(&self, port: &str) {
        let mut q = self.inner.lock();
        q.in_flight.remove(port);
        self.cv.notify_all();
    }

    /// Ports in flight (taken by `take_for_lane`, not finished yet).
    pub fn in_flight(&self) -> usize {
        self.inner.lock().in_flight.len()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// At or above [`HIGH_WATER`]: producers of outside input should wait.
    pub fn is_full(&self) -> bool {
        self.len() >= HIGH_WATER
    }

    /// Wake every blocked `dequeue` with `None` and refuse new messages.
    pub fn close(&self) {
        let mut q = self.inner.lock();
        q.closed = true;
        self.cv.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PortStatus;
    use std::sync::Arc;

    fn up(name: &str) -> VdpQueMsg {
        VdpQueMsg::Uplink {
            status: UplinkStatus::Up,
            phy_uplink: name.into(),
            veth_intf: None,
        }
    }

    /// The port uuid of a VM message, the uplink of an uplink message.
    fn key(m: &VdpQueMsg) -> String {
        match m {
            VdpQueMsg::Vm { vm, .. } => vm.port_uuid.clone(),
            VdpQueMsg::Uplink { phy_uplink, .. } => phy_uplink.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn status(m: &VdpQueMsg) -> PortStatus {
        match m {
            VdpQueMsg::Vm { vm, .. } => vm.status,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn vm(port: &str) -> VdpQueMsg {
        VdpQueMsg::Vm {
            vm: VmPort {
                port_uuid: port.into(),
                vm_mac: "fa:16:3e:00:00:01".into(),
                net_uuid: "n".into(),
                segmentation_id: 30001,
                status: PortStatus::Up,
                host: None,
                oui: None,
                local_vlan: None,
                vdp_vlan: None,
            },
            migration: None,
        }
    }

    #[test]
    fn lower_priority_first_fifo_ties() {
        let q = VdpMsgPriQue::new();
        q.enqueue(Q_VM_PRIO, vm("a"));
        q.enqueue(Q_VM_PRIO, vm("b"));
        q.enqueue(Q_UPL_PRIO, up("eth1"));
        q.enqueue(Q_VM_PRIO, vm("c"));
        q.enqueue(Q_UPL_PRIO, up("eth2"));
        assert_eq!(q.len(), 5);
        let order: Vec<String> = std::iter::from_fn(|| q.dequeue_nonblock())
            .map(|(_, m)| key(&m))
            .collect();
        assert_eq!(order, vec!["eth1", "eth2", "a", "b", "c"]);
        assert!(q.is_empty());
    }

    /// Hardening: a controller flooding events for the same ports grows
    /// nothing — one entry per port, the newest state, at the first one's
    /// place in the order.
    #[test]
    fn vm_events_coalesce_per_port_newest_wins() {
        let q = VdpMsgPriQue::new();
        q.enqueue(Q_VM_PRIO, vm("a"));
        q.enqueue(Q_VM_PRIO, vm("b"));
        for _ in 0..100_000 {
            let mut m = vm("a");
            if let VdpQueMsg::Vm { vm, .. } = &mut m {
                vm.status = PortStatus::Down;
            }
            q.enqueue(Q_VM_PRIO, m);
        }
        assert_eq!(q.len(), 2);
        let (_, first) = q.dequeue_nonblock().unwrap();
        assert_eq!(
            (key(&first), status(&first)),
            ("a".into(), PortStatus::Down)
        );
        let (_, second) = q.dequeue_nonblock().unwrap();
        assert_eq!(key(&second), "b");
        assert!(q.is_empty());
        // Distinct ports: bounded by the poller at HIGH_WATER.
        for i in 0..HIGH_WATER {
            q.enqueue(Q_VM_PRIO, vm(&format!("p{i}")));
        }
        assert!(q.is_full());
    }

    #[test]
    fn many_equal_priorities_stay_fifo() {
        let q = VdpMsgPriQue::new();
        for i in 0..1000 {
            q.enqueue(Q_VM_PRIO, vm(&i.to_string()));
        }
        for i in 0..1000 {
            let (p, m) = q.dequeue().unwrap();
            assert_eq!(p, Q_VM_PRIO);
            assert_eq!(key(&m), i.to_string());
        }
    }

    #[test]
    fn blocking_dequeue_wakes_on_enqueue_and_close() {
        let q = Arc::new(VdpMsgPriQue::new());
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.dequeue());
        std::thread::yield_now();
        q.enqueue(Q_UPL_PRIO, up("eth1"));
        let got = t.join().unwrap().unwrap();
        assert_eq!(key(&got.1), "eth1");

        let q3 = q.clone();
        let start = Instant::now();
        let t = std::thread::spawn(move || q3.dequeue());
        q.close();
        assert!(t.join().unwrap().is_none());
        assert!(start.elapsed() < Duration::from_secs(2));
        // closed: enqueue dropped, dequeue returns None at once
        q.enqueue(Q_VM_PRIO, vm("x"));
        assert!(q.dequeue().is_none());
        assert!(q.is_closed());
    }

    #[test]
    fn dequeue_timeout_returns_none_when_empty() {
        let q = VdpMsgPriQue::new();
        let t = Instant::now();
        assert!(q.dequeue_timeout(Duration::from_millis(30)).is_none());
        assert!(t.elapsed() >= Duration::from_millis(25));
        q.enqueue(Q_VM_PRIO, vm("a"));
        assert!(q.dequeue_timeout(Duration::from_millis(30)).is_some());
    }

    fn taken(t: LaneTake) -> Option<String> {
        match t {
            LaneTake::Vm { vm, .. } => Some(vm.port_uuid),
            LaneTake::Idle => None,
            LaneTake::Done => Some("done".into()),
        }
    }

    #[test]
    fn lanes_never_get_a_port_in_flight_and_a_burst_ends_at_other_messages() {
        let q = VdpMsgPriQue::new();
        let w = Duration::from_millis(5);
        q.enqueue(Q_VM_PRIO, vm("a"));
        q.enqueue(Q_VM_PRIO, vm("b"));
        assert_eq!(taken(q.take_for_lane(4, w)).as_deref(), Some("a"));
        // a's newer event waits behind a in flight, and holds the head.
        q.enqueue(Q_VM_PRIO, vm("c"));
        assert_eq!(taken(q.take_for_lane(4, w)).as_deref(), Some("b"));
        q.enqueue(Q_VM_PRIO, vm("a"));
        assert_eq!(taken(q.take_for_lane(4, w)).as_deref(), Some("c"));
        assert_eq!(taken(q.take_for_lane(4, w)), None, "a is in flight");
        q.finish("a");
        assert_eq!(taken(q.take_for_lane(4, w)).as_deref(), Some("a"));
        // at most `max` in flight
        q.enqueue(Q_VM_PRIO, vm("d"));
        assert_eq!(taken(q.take_for_lane(3, w)), None);
        q.finish("b");
        assert_eq!(taken(q.take_for_lane(3, w)).as_deref(), Some("d"));
        // an uplink message at the head: no more VM events, and the burst
        // ends only when nothing is in flight
        q.enqueue(Q_UPL_PRIO, up("eth2"));
        q.enqueue(Q_VM_PRIO, vm("e"));
        assert_eq!(taken(q.take_for_lane(4, w)), None);
        for p in ["a", "c", "d"] {
            q.finish(p);
        }
        assert_eq!(q.in_flight(), 0);
        assert_eq!(taken(q.take_for_lane(4, w)).as_deref(), Some("done"));
        assert_eq!(key(&q.dequeue().unwrap().1), "eth2");
        // an empty queue with nothing in flight ends it too; so does close
        assert_eq!(taken(q.take_for_lane(4, w)).as_deref(), Some("e"));
        q.finish("e");
        assert_eq!(taken(q.take_for_lane(4, w)).as_deref(), Some("done"));
        q.begin("f");
        q.close();
        assert_eq!(taken(q.take_for_lane(4, w)).as_deref(), Some("done"));
    }

    #[test]
    fn a_finishing_lane_wakes_the_dispatcher() {
        let q = Arc::new(VdpMsgPriQue::new());
        q.enqueue(Q_VM_PRIO, vm("a"));
        assert_eq!(
            taken(q.take_for_lane(1, Duration::ZERO)).as_deref(),
            Some("a")
        );
        q.enqueue(Q_VM_PRIO, vm("b"));
        // "b" waits while "a" is in flight (one lane) ...
        assert!(matches!(q.take_for_lane(1, Duration::ZERO), LaneTake::Idle));
        // ... and is taken once another thread finishes "a" (whether the
        // finish comes before or during the wait).
        let q2 = q.clone();
        let h = std::thread::spawn(move || q2.finish("a"));
        assert_eq!(
            taken(q.take_for_lane(1, Duration::from_secs(30))).as_deref(),
            Some("b")
        );
        h.join().unwrap();
    }
}
