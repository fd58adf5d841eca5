//! The metric values: counters and histograms as atomics over fixed label
//! sets (no lock on update or scrape), and the VM-event clocks.
//!
//! Owns: [`Metrics`]. Calls nothing.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The process's time base for "when" values kept in atomics.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since [`EPOCH`] (+1, so 0 can mean "never").
fn stamp(now: Instant) -> u64 {
    let base = *EPOCH.get_or_init(|| now);
    u64::try_from(now.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX - 1) + 1
}

/// Upper bounds (seconds) of every histogram's buckets; `+Inf` follows.
pub(crate) const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// `tool` label values (the programs the agent runs; anything else is `other`).
pub(crate) const TOOLS: [&str; 7] = [
    "ovs-vsctl",
    "ovs-ofctl",
    "ovsdb-client",
    "ip",
    "lldptool",
    "vdptool",
    "other",
];

/// `method` label values: the controller RPCs, `events` (the long-poll).
pub(crate) const METHODS: [&str; 7] = [
    "heartbeat",
    "request_uplink_info",
    "save_uplink",
    "update_vm_result",
    "save_topo_disc_params",
    "events",
    "other",
];

/// `mode` of `vdp_agent_vdp_requests_total`.
pub(crate) const VDP_MODES: [&str; 3] = ["assoc", "deassoc", "query"];
/// `outcome` of `vdp_agent_vdp_requests_total`.
pub(crate) const VDP_OUTCOMES: [&str; 3] = ["success", "pending", "failed"];

/// `kind` of `vdp_agent_lldpad_events_total`: VDP events (associated,
/// deassociated, failed) and the watcher's own notices.
pub(crate) const EVENT_KINDS: [&str; 7] = [
    "associated",
    "deassociated",
    "failed",
    "restarted",
    "lost",
    "attached",
    "other",
];

/// `reason` of `vdp_agent_flow_repairs_total`: flows put back, stale flows
/// removed, uplink/veth ports re-added, repairs after an ovs-vswitchd restart.
pub(crate) const FLOW_REASONS: [&str; 5] = [
    "missing_flows",
    "stale_flows",
    "missing_ports",
    "vswitchd_restart",
    "other",
];

/// Most VM-event clocks running at once (ports whose event awaits its
/// result); beyond it, clocks older than [`CLOCK_STALE`] are dropped and,
/// if still full, a new event is not timed.
pub(crate) const MAX_CLOCKS: usize = 16_384;
/// A clock older than this is dropped when the set is full.
pub(crate) const CLOCK_STALE: Duration = Duration::from_secs(3600);

fn index_of(set: &[&str], v: &str) -> usize {
    set.iter()
        .position(|s| *s == v)
        .unwrap_or(set.len().saturating_sub(1))
}

/// A monotonic counter.
#[derive(Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Counter::new()
    }
}

/// A histogram over [`BUCKETS`]: one non-cumulative count per bucket (the
/// last is `+Inf`) and the sum in nanoseconds. A snapshot cumulates the
/// counts it read, so its buckets are monotonic and `+Inf` equals its count
/// even while observations go on.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

/// A histogram as read: cumulative bucket counts (`+Inf` last), sum (s).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnap {
    pub cumulative: Vec<u64>,
    pub sum_s: f64,
}

impl HistogramSnap {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

impl Histogram {
    pub const fn new() -> Histogram {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_ns: AtomicU64::new(0),
        }
    }
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }
    pub fn snapshot(&self) -> HistogramSnap {
        let mut acc = 0u64;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                acc = acc.saturating_add(c.load(Ordering::Relaxed));
                acc
            })
            .collect();
        HistogramSnap {
            cumulative,
            sum_s: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

/// Every value the drivers update (see `crate::metrics` for the hooks).
#[derive(Debug)]
pub struct Metrics {
    pub commands: [Counter; TOOLS.len()],
    pub command_timeouts: [Counter; TOOLS.len()],
    pub command_seconds: [Histogram; TOOLS.len()],
    pub rpc_seconds: [Histogram; METHODS.len()],
    pub rpc_errors: [Counter; METHODS.len()],
    /// `VDP_MODES` x `VDP_OUTCOMES`, mode-major.
    pub vdp_requests: [Counter; VDP_MODES.len() * VDP_OUTCOMES.len()],
    pub lldpad_events: [Counter; EVENT_KINDS.len()],
    pub lldpad_restarts: Counter,
    pub flow_repairs: [Counter; FLOW_REASONS.len()],
    pub pending_results: AtomicU64,
    pub vm_event_seconds: Histogram,
    /// [`stamp`] of the last failed controller call (0 = none yet).
    last_rpc_error: AtomicU64,
    clocks: Mutex<Option<HashMap<String, Instant>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub const fn new() -> Metrics {
        Metrics {
            commands: [const { Counter::new() }; TOOLS.len()],
            command_timeouts: [const { Counter::new() }; TOOLS.len()],
            command_seconds: [const { Histogram::new() }; TOOLS.len()],
            rpc_seconds: [const { Histogram::new() }; METHODS.len()],
            rpc_errors: [const { Counter::new() }; METHODS.len()],
            vdp_requests: [const { Counter::new() }; VDP_MODES.len() * VDP_OUTCOMES.len()],
            lldpad_events: [const { Counter::new() }; EVENT_KINDS.len()],
            lldpad_restarts: Counter::new(),
            flow_repairs: [const { Counter::new() }; FLOW_REASONS.len()],
            pending_results: AtomicU64::new(0),
            vm_event_seconds: Histogram::new(),
            last_rpc_error: AtomicU64::new(0),
            clocks: Mutex::new(None),
        }
    }

    /// The `tool` label of a program path: its base name if known, else `other`.
    pub fn tool_index(program: &str) -> usize {
        let base = program.rsplit('/').next().unwrap_or(program);
        index_of(&TOOLS, base)
    }

    pub fn command_done(&self, program: &str, elapsed: Duration, timed_out: bool) {
        let i = Self::tool_index(program);
        self.commands[i].inc();
        if timed_out {
            self.command_timeouts[i].inc();
        }
        self.command_seconds[i].observe(elapsed);
    }

    pub fn rpc_done(&self, method: &str, elapsed: Duration, ok: bool) {
        let i = index_of(&METHODS, method);
        self.rpc_seconds[i].observe(elapsed);
        if !ok {
            self.rpc_errors[i].inc();
            self.last_rpc_error
                .store(stamp(Instant::now()), Ordering::Relaxed);
        }
    }

    /// How long ago the last controller call failed (None: none failed).
    pub fn rpc_error_age(&self, now: Instant) -> Option<Duration> {
        match self.last_rpc_error.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(stamp(now).saturating_sub(at))),
        }
    }

    pub fn vdp_request(&self, mode: &str, outcome: &str) {
        // An unknown mode is not counted (there is no `other` mode).
        let Some(m) = VDP_MODES.iter().position(|x| *x == mode) else {
            return;
        };
        let o = VDP_OUTCOMES
            .iter()
            .position(|x| *x == outcome)
            .unwrap_or(VDP_OUTCOMES.len() - 1);
        self.vdp_requests[m * VDP_OUTCOMES.len() + o].inc();
    }

    /// `vdp_requests_total{mode,outcome}`.
    pub fn vdp_requests_of(&self, mode: &str, outcome: &str) -> u64 {
        match (
            VDP_MODES.iter().position(|x| *x == mode),
            VDP_OUTCOMES.iter().position(|x| *x == outcome),
        ) {
            (Some(m), Some(o)) => self.vdp_requests[m * VDP_OUTCOMES.len() + o].get(),
            _ => 0,
        }
    }

    pub fn lldpad_event(&self, kind: &str) {
        self.lldpad_events[index_of(&EVENT_KINDS, kind)].inc();
    }

    pub fn flow_repairs(&self, reason: &str, n: u64) {
        if n > 0 {
            self.flow_repairs[index_of(&FLOW_REASONS, reason)].add(n);
        }
    }

    pub fn set_pending_results(&self, n: usize) {
        self.pending_results.store(n as u64, Ordering::Relaxed);
    }

    pub fn vm_event_received(&self, port: &str, now: Instant) {
        let mut guard = self.clocks.lock();
        let clocks = guard.get_or_insert_with(HashMap::new);
        if clocks.contains_key(port) {
            // Coalesced events: timed from the first one.
            return;
        }
        if clocks.len() >= MAX_CLOCKS {
            clocks.retain(|_, t| now.saturating_duration_since(*t) < CLOCK_STALE);
            if clocks.len() >= MAX_CLOCKS {
                return;
            }
        }
        clocks.insert(port.to_string(), now);
    }

    pub fn vm_result_handed(&self, port: &str, now: Instant) {
        let started = self.clocks.lock().as_mut().and_then(|c| c.remove(port));
        if let Some(t) = started {
            self.vm_event_seconds
                .observe(now.saturating_duration_since(t));
        }
    }

    /// VM-event clocks running (tests).
    pub fn clocks_running(&self) -> usize {
        self.clocks.lock().as_ref().map_or(0, HashMap::len)
    }
}
