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
}
