//! The leaf's protocol engine: per host port LLDP TX/RX timing and ECP
//! ack/deliver/queue (`port`), VDP request handling against the one VSI
//! table of the switch, keep-alive and move aging, fault knobs, gateway
//! answers, counters and a short history of VDP operations. Frames in (with
//! the port they came from), frames out (via an outbox, with the port to send
//! them on); time is passed in, so the whole bridge can be driven by unit
//! tests without sockets.
//!
//! Owns: the `Leaf` state. Calls `lldp`, `ecp`, `vdp`, `gateway`, and
//! `control::Command` for the operator commands (in `command`).

mod command;
pub mod port;

use super::ecp::{self, EcpOp};
use super::gateway;
use super::lldp::{self, EvbParams, LocalInfo, NCB_MAC};
use super::vdp::{self, Handled, Kind, Unsolicited, VdpTable, VsiMode, VsiTlv};
pub use port::{Port, Station};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Frames sent in a burst (1 s apart) after a station change or start.
const FAST_TX: u8 = 4;
const FAST_INTERVAL: Duration = Duration::from_secs(1);
/// Hold time advertised: 4 × the 30 s interval, as lldpad does.
pub const DEFAULT_TTL: u16 = 120;
/// VDP operations kept for `history`.
pub const HISTORY_LEN: usize = 256;

/// Counters reported by `stats` (all ports together).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub frames_rx: u64,
    pub frames_tx: u64,
    pub lldp_rx: u64,
    pub lldp_tx: u64,
    pub ecp_rx: u64,
    pub ecp_acks_tx: u64,
    pub ecp_acks_rx: u64,
    /// Acks from another source MAC than the port's ECP peer (ignored).
    pub ecp_acks_foreign: u64,
    pub ecp_data_tx: u64,
    pub ecp_duplicates: u64,
    pub ecp_dropped_by_knob: u64,
    pub ecp_bad: u64,
    pub ecp_retransmits: u64,
    pub ecp_given_up: u64,
    pub vdp_bad: u64,
    /// Associations and pre-associations (new, changed or moved).
    pub assoc: u64,
    pub deassoc: u64,
    pub keepalives: u64,
    pub keepalives_ignored: u64,
    pub rejects: u64,
    pub unsolicited_deassoc: u64,
    pub aged_out: u64,
    pub arp_replies: u64,
    pub icmp_replies: u64,
    /// Of `assoc`: requests in mode preassoc or preassoc-rr.
    pub preassoc: u64,
    /// VSIs another port took over; old copies freed by the old port's
    /// deassociate, by the move timer; moves undone.
    pub moves_started: u64,
    pub moves_completed: u64,
    pub moves_timed_out: u64,
    pub moves_reverted: u64,
}

/// Static settings of the simulated bridge.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub evb: EvbParams,
    pub tx_interval: Duration,
    pub ttl: u16,
    pub vlan_lo: u16,
    pub vlan_hi: u16,
}

/// The bridge.
#[derive(Debug)]
pub struct Leaf {
    /// Host ports, in `--iface` order (index 0 is the first).
    pub ports: Vec<Port>,
    cfg: EngineConfig,
    lldp_on: bool,
    pub vdp: VdpTable,
    drop_ecp: u32,
    /// Percentage of ECP requests dropped (`drop-ecp-share`), and the
    /// accumulator spreading the drops evenly.
    drop_share: u8,
    share_acc: u32,
    delay: Duration,
    pub stats: Stats,
    outbox: Vec<(usize, Vec<u8>)>,
    started: Instant,
    history: VecDeque<Value>,
    history_n: u64,
}

fn ethertype(f: &[u8]) -> Option<u16> {
    f.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

impl Leaf {
    /// A bridge with one port.
    pub fn new(local: LocalInfo, cfg: EngineConfig, first_seq: u16, now: Instant) -> Leaf {
        Leaf::with_ports(vec![(local, first_seq)], cfg, now)
    }

    /// A bridge with these ports (interface, first ECP sequence number).
    pub fn with_ports(ports: Vec<(LocalInfo, u16)>, cfg: EngineConfig, now: Instant) -> Leaf {
        Leaf {
            ports: ports
                .into_iter()
                .map(|(l, seq)| Port::new(l, seq, now))
                .collect(),
            vdp: VdpTable::new(cfg.vlan_lo, cfg.vlan_hi),
            cfg,
            lldp_on: true,
            drop_ecp: 0,
            drop_share: 0,
            share_acc: 0,
            delay: Duration::ZERO,
            stats: Stats::default(),
            outbox: Vec::new(),
            started: now,
            history: VecDeque::new(),
            history_n: 0,
        }
    }

    /// Interface names by port index.
    pub fn port_names(&self) -> Vec<String> {
        self.ports.iter().map(|p| p.local.ifname.clone()).collect()
    }

    /// EVB values in use on the first port.
    pub fn effective(&self) -> EvbParams {
        self.ports[0].effective(&self.cfg)
    }

    /// `--ecp-gap-ms`: least gap between two new ECPDUs (None: default).
    pub fn set_ecp_gap(&mut self, gap: Option<Duration>) {
        for p in &mut self.ports {
            p.ecp_tx.gap = gap;
        }
    }

    /// 10 µs·2^RTE with the first port's values.
    pub fn ack_wait(&self) -> Duration {
        self.ports[0].ack_wait(&self.cfg)
    }

    /// Keep-alive timeout of the first port.
    pub fn ka_timeout(&self) -> Duration {
        self.ports[0].ka_timeout(&self.cfg)
    }

    fn emit(&mut self, port: usize, f: Vec<u8>) {
        self.stats.frames_tx += 1;
        self.outbox.push((port, f));
    }

    /// Frames to put on the wire (port index, frame), oldest first.
    pub fn take_outbox(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.outbox)
    }

    /// The LLDPDUs with TTL 0 sent on shutdown or `lldp stop`, one per port.
    pub fn shutdown_lldpdus(&self) -> Vec<(usize, Vec<u8>)> {
        (0..self.ports.len())
            .map(|i| (i, self.ports[i].lldpdu(&self.cfg, 0)))
            .collect()
    }

    fn send_lldp(&mut self, port: usize) {
        let f = self.ports[port].lldpdu(&self.cfg, self.cfg.ttl);
        self.stats.lldp_tx += 1;
        self.emit(port, f);
    }

    /// A frame received on the first port.
    pub fn on_frame(&mut self, now: Instant, frame: &[u8], vlan: Option<u16>) {
        self.on_port_frame(0, now, frame, vlan);
    }

    /// Handle one frame received on `port`; `vlan` is the tag the kernel stripped.
    pub fn on_port_frame(&mut self, port: usize, now: Instant, frame: &[u8], vlan: Option<u16>) {
        self.stats.frames_rx += 1;
        if port >= self.ports.len()
            || frame.len() < 14
            || self.ports.iter().any(|p| frame[6..12] == p.local.mac)
        {
            return;
        }
        if let Some((v, untagged)) = gateway::strip_inline_tag(frame) {
            self.on_vlan_frame(port, v, &untagged);
            return;
        }
        if let Some(v) = vlan {
            self.on_vlan_frame(port, v, frame);
            return;
        }
        match ethertype(frame) {
            Some(lldp::ETH_P_LLDP) if frame[..6] == NCB_MAC => {
                self.on_lldp(port, now, &frame[14..])
            }
            Some(ecp::ETH_P_ECP) => self.on_ecp(port, now, frame),
            _ => {}
        }
    }

    /// The gateway answers on the port the frame came from, for a group
    /// whose VLAN this is and that has an associated VSI on that port. It
    /// is an anycast gateway: one MAC (the first port's) on every port, so
    /// a VM that moves to another port keeps a valid ARP entry.
    fn on_vlan_frame(&mut self, port: usize, vlan: u16, frame: &[u8]) {
        let gws: Vec<(u32, Ipv4Addr)> = self.vdp.gateways.iter().map(|(g, i)| (*g, *i)).collect();
        let mac = self.ports[0].local.mac;
        for (gid, ip) in gws {
            if self.vdp.vlan_of_gid(gid) != Some(vlan) || !self.vdp.forwards(port, gid, vlan) {
                continue;
            }
            if let Some((a, reply)) = gateway::respond(frame, vlan, ip, &mac) {
                match a {
                    gateway::Answer::Arp => self.stats.arp_replies += 1,
                    gateway::Answer::Icmp => self.stats.icmp_replies += 1,
                }
                self.emit(port, reply);
                return;
            }
        }
    }

    fn on_lldp(&mut self, port: usize, now: Instant, p: &[u8]) {
        match self.ports[port].on_lldp(now, p) {
            port::LldpRx::Ignored => {}
            port::LldpRx::Gone => self.stats.lldp_rx += 1,
            port::LldpRx::Seen { changed } => {
                self.stats.lldp_rx += 1;
                if changed && self.lldp_on {
                    // answer at once, then a short burst
                    let p = &mut self.ports[port];
                    p.next_lldp = now;
                    p.fast_left = FAST_TX;
                }
            }
        }
    }

    fn on_ecp(&mut self, port: usize, now: Instant, frame: &[u8]) {
        self.stats.ecp_rx += 1;
        let (h, ulp) = match ecp::parse(&frame[14..]) {
            Ok(x) => x,
            Err(e) => {
                self.stats.ecp_bad += 1;
                log::debug!("ignoring ECPDU: {e}");
                return;
            }
        };
        let mut src = [0u8; 6];
        src.copy_from_slice(&frame[6..12]);
        match h.op {
            EcpOp::Ack => {
                self.stats.ecp_acks_rx += 1;
                let p = &mut self.ports[port];
                if p.ecp_peer.is_some_and(|peer| peer != src) {
                    self.stats.ecp_acks_foreign += 1;
                    return;
                }
                p.ecp_tx.on_ack(h.seq);
            }
            EcpOp::Request => {
                self.ports[port].ecp_peer = Some(src);
                if self.drop_ecp > 0 {
                    self.drop_ecp -= 1;
                    self.stats.ecp_dropped_by_knob += 1;
                    return;
                }
                if self.drop_share > 0 {
                    self.share_acc += u32::from(self.drop_share);
                    if self.share_acc >= 100 {
                        self.share_acc -= 100;
                        self.stats.ecp_dropped_by_knob += 1;
                        return;
                    }
                }
                let ack = ecp::build_frame(&self.ports[port].local.mac, EcpOp::Ack, h.seq, &[]);
                self.stats.ecp_acks_tx += 1;
                self.emit(port, ack);
                if !self.ports[port].ecp_rx.accept(h.seq, ulp) {
                    self.stats.ecp_duplicates += 1;
                    return;
                }
                let ulp = ulp.to_vec();
                self.on_vdp(port, now, &ulp);
            }
        }
    }

    fn on_vdp(&mut self, port: usize, now: Instant, ulp: &[u8]) {
        let pdu = match vdp::parse(ulp) {
            Ok(p) => p,
            Err(e) => {
                self.stats.vdp_bad += 1;
                log::warn!("dropping VDP payload: {e}");
                return;
            }
        };
        for req in &pdu.vsis {
            let h = self.vdp.handle_on(now, port, &pdu.mgrid, req);
            let (reply, kind) = match h {
                Handled::Reply(r, k) => (Some(r), k),
                Handled::Silent(k) => (None, k),
            };
            log_vsi(&self.ports, port, req, reply.as_ref(), kind);
            match (kind, reply.is_some()) {
                (Kind::Assoc | Kind::Moved(_), _) => {
                    self.stats.assoc += 1;
                    if matches!(req.mode, VsiMode::Preassoc | VsiMode::PreassocRr) {
                        self.stats.preassoc += 1;
                    }
                }
                (Kind::Deassoc, _) => self.stats.deassoc += 1,
                (Kind::Keepalive, true) => self.stats.keepalives += 1,
                (Kind::Keepalive, false) => self.stats.keepalives_ignored += 1,
                (Kind::Rejected, _) => self.stats.rejects += 1,
            }
            if kind != Kind::Keepalive {
                self.record(now, port, req, reply.as_ref(), kind);
            }
            self.count_moves();
            if let Some(r) = reply {
                let payload = vdp::build(&pdu.mgrid, &r);
                let p = &mut self.ports[port];
                if self.delay.is_zero() {
                    p.ecp_tx.enqueue(payload);
                } else {
                    p.delayed.push((now + self.delay, payload));
                }
            }
        }
    }

    fn count_moves(&mut self) {
        let m = self.vdp.moves;
        self.stats.moves_started = m.started;
        self.stats.moves_completed = m.completed;
        self.stats.moves_timed_out = m.timed_out;
        self.stats.moves_reverted = m.reverted;
    }

    /// Keep a VDP operation (not a keep-alive) for `history`.
    fn record(
        &mut self,
        now: Instant,
        port: usize,
        req: &VsiTlv,
        reply: Option<&VsiTlv>,
        kind: Kind,
    ) {
        let names = self.port_names();
        let (kind_text, from) = match kind {
            Kind::Assoc => ("assoc", None),
            Kind::Moved(p) => ("moved", names.get(p).cloned()),
            Kind::Keepalive => ("keepalive", None),
            Kind::Deassoc => ("deassoc", None),
            Kind::Rejected => ("rejected", None),
        };
        let shown = reply.unwrap_or(req);
        let e = json!({
            "at_ms": now.saturating_duration_since(self.started).as_millis() as u64,
            "port": names.get(port),
            "uuid": vdp::id_text(req.id_fmt, &req.id),
            "mode": req.mode.name(),
            "hints": vdp::hints_text(req.status),
            "result": kind_text,
            "moved_from": from,
            "status": reply.map(|r| r.status),
            "vlan": shown.entries.first().map(|e| e.vlan()),
            "group_id": shown.entries.first().and_then(|e| e.gid),
        });
        self.push_history(e);
    }

    fn push_history(&mut self, mut e: Value) {
        self.history_n += 1;
        e["n"] = json!(self.history_n);
        self.history.push_back(e);
        while self.history.len() > HISTORY_LEN {
            self.history.pop_front();
        }
    }

    /// Run the timers: LLDP TX, delayed answers, keep-alive and move
    /// aging, ECP TX, on every port.
    pub fn tick(&mut self, now: Instant) {
        for i in 0..self.ports.len() {
            self.ports[i].age_station(now);
            if self.lldp_on && now >= self.ports[i].next_lldp {
                self.send_lldp(i);
                let p = &mut self.ports[i];
                if p.fast_left > 0 {
                    p.fast_left -= 1;
                    p.next_lldp = now + FAST_INTERVAL;
                } else {
                    p.next_lldp = now + self.cfg.tx_interval;
                }
            }
            self.ports[i].release_delayed(now);
        }
        let tos: Vec<Duration> = self.ports.iter().map(|p| p.ka_timeout(&self.cfg)).collect();
        let to = |p: usize| tos.get(p).copied().unwrap_or(tos[0]);
        let timed_out = self.vdp.moves.timed_out;
        let dead = self.vdp.expire_by(now, &to);
        if !dead.is_empty() {
            let moved = (self.vdp.moves.timed_out - timed_out) as usize;
            let aged = dead.len() - moved.min(dead.len());
            log::info!(
                "{aged} VSI(s) aged out without keep-alive, {moved} moved VSI copies freed by the move timer"
            );
            self.stats.aged_out += aged as u64;
            self.queue_unsolicited(now, dead);
        }
        self.count_moves();
        let (mut retransmits, mut given_up) = (0, 0);
        for i in 0..self.ports.len() {
            let (wait, retries) = {
                let p = &self.ports[i];
                (p.ack_wait(&self.cfg), p.effective(&self.cfg).retries)
            };
            let (re0, drop0) = (
                self.ports[i].ecp_tx.retransmits,
                self.ports[i].ecp_tx.dropped,
            );
            let sent = self.ports[i].ecp_tx.poll(now, wait, retries);
            let name = &self.ports[i].local.ifname;
            if self.ports[i].ecp_tx.dropped > drop0 {
                log::warn!("{name}: ECPDU given up after {retries} retransmissions without an ack");
            }
            if let Some((seq, ulp)) = sent {
                if self.ports[i].ecp_tx.retransmits > re0 {
                    log::info!("{name}: ECPDU seq {seq} retransmitted (no ack within {wait:?})");
                }
                let f = ecp::build_frame(&self.ports[i].local.mac, EcpOp::Request, seq, &ulp);
                self.stats.ecp_data_tx += 1;
                self.emit(i, f);
            }
            retransmits += self.ports[i].ecp_tx.retransmits;
            given_up += self.ports[i].ecp_tx.dropped;
        }
        self.stats.ecp_retransmits = retransmits;
        self.stats.ecp_given_up = given_up;
    }

    fn queue_unsolicited(&mut self, now: Instant, list: Vec<Unsolicited>) {
        let names = self.port_names();
        for (port, m, t) in list {
            self.stats.unsolicited_deassoc += 1;
            self.push_history(json!({
                "at_ms": now.saturating_duration_since(self.started).as_millis() as u64,
                "port": names.get(port),
                "uuid": vdp::id_text(t.id_fmt, &t.id),
                "mode": "deassoc",
                "hints": "none",
                "result": "unsolicited",
                "moved_from": null,
                "status": t.status,
                "vlan": t.entries.first().map(|e| e.vlan()),
                "group_id": t.entries.first().and_then(|e| e.gid),
            }));
            if let Some(p) = self.ports.get_mut(port) {
                p.ecp_tx.enqueue(vdp::build(&m, &t));
            }
        }
    }

    /// When `tick` next has work.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut d = now + Duration::from_secs(1);
        for p in &self.ports {
            if self.lldp_on {
                d = d.min(p.next_lldp);
            }
            if let Some(t) = p.delayed.iter().map(|x| x.0).min() {
                d = d.min(t);
            }
            if let Some(t) = p.ecp_tx.next_deadline(p.ack_wait(&self.cfg)) {
                d = d.min(t);
            }
        }
        let tos: Vec<Duration> = self.ports.iter().map(|p| p.ka_timeout(&self.cfg)).collect();
        if let Some(t) = self
            .vdp
            .next_expiry_by(&|p| tos.get(p).copied().unwrap_or(tos[0]))
        {
            d = d.min(t);
        }
        d
    }
}

fn log_vsi(ports: &[Port], i: usize, req: &VsiTlv, reply: Option<&VsiTlv>, kind: Kind) {
    let name = |i: usize| ports.get(i).map_or("?", |p| p.local.ifname.as_str());
    let port = name(i);
    let id = vdp::id_text(req.id_fmt, &req.id);
    let first = |t: &VsiTlv| t.entries.first().map(|e| (e.gid, e.vlan()));
    let hints = vdp::hints_text(req.status);
    match (kind, reply) {
        (Kind::Keepalive, _) => log::debug!("{port}: keep-alive {id} {:?}", first(req)),
        (Kind::Moved(from), Some(r)) => log::info!(
            "{port}: {} {id} (hints {hints}) {:?} -> status {:#04x} {:?}, moved from {}",
            req.mode.name(),
            first(req),
            r.status,
            first(r),
            name(from)
        ),
        (_, Some(r)) => log::info!(
            "{port}: {} {id} (hints {hints}) {:?} -> status {:#04x} {:?}",
            req.mode.name(),
            first(req),
            r.status,
            first(r)
        ),
        (_, None) => log::info!("{port}: {} {id} unanswered", req.mode.name()),
    }
}

#[cfg(test)]
mod tests;
