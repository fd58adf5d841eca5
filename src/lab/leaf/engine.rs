//! The leaf's protocol engine: LLDP TX/RX timing, ECP ack/deliver/queue,
//! VDP request handling, keep-alive aging, fault knobs, gateway answers and
//! counters. Frames in, frames out (via an outbox); time is passed in, so
//! the whole bridge can be driven by unit tests without sockets.
//!
//! Owns: the `Leaf` state. Calls `lldp`, `ecp`, `vdp`, `gateway`, and
//! `control::Command` for the operator commands.

use super::control::Command;
use super::ecp::{self, EcpOp, EcpRx, EcpTx};
use super::gateway;
use super::lldp::{self, EvbParams, EvbTlv, LocalInfo, Neighbor, NCB_MAC};
use super::vdp::{self, Handled, Kind, VdpTable, VsiTlv};
use serde::Serialize;
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Frames sent in a burst (1 s apart) after a station change or start.
const FAST_TX: u8 = 4;
const FAST_INTERVAL: Duration = Duration::from_secs(1);
/// Hold time advertised: 4 × the 30 s interval, as lldpad does.
pub const DEFAULT_TTL: u16 = 120;

/// Counters reported by `stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub frames_rx: u64,
    pub frames_tx: u64,
    pub lldp_rx: u64,
    pub lldp_tx: u64,
    pub ecp_rx: u64,
    pub ecp_acks_tx: u64,
    pub ecp_acks_rx: u64,
    pub ecp_data_tx: u64,
    pub ecp_duplicates: u64,
    pub ecp_dropped_by_knob: u64,
    pub ecp_bad: u64,
    pub ecp_retransmits: u64,
    pub ecp_given_up: u64,
    pub vdp_bad: u64,
    pub assoc: u64,
    pub deassoc: u64,
    pub keepalives: u64,
    pub keepalives_ignored: u64,
    pub rejects: u64,
    pub unsolicited_deassoc: u64,
    pub aged_out: u64,
    pub arp_replies: u64,
    pub icmp_replies: u64,
}

/// The station as last seen over LLDP.
#[derive(Debug, Clone)]
pub struct Station {
    pub neighbor: Neighbor,
    pub last_rx: Instant,
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
    pub local: LocalInfo,
    cfg: EngineConfig,
    lldp_on: bool,
    next_lldp: Instant,
    fast_left: u8,
    pub station: Option<Station>,
    ecp_rx: EcpRx,
    ecp_tx: EcpTx,
    pub vdp: VdpTable,
    drop_ecp: u32,
    /// Percentage of ECP requests dropped (`drop-ecp-share`), and the
    /// accumulator spreading the drops evenly.
    drop_share: u8,
    share_acc: u32,
    delay: Duration,
    delayed: Vec<(Instant, Vec<u8>)>,
    pub stats: Stats,
    outbox: Vec<Vec<u8>>,
}

fn ethertype(f: &[u8]) -> Option<u16> {
    f.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

impl Leaf {
    pub fn new(local: LocalInfo, cfg: EngineConfig, first_seq: u16, now: Instant) -> Leaf {
        Leaf {
            local,
            vdp: VdpTable::new(cfg.vlan_lo, cfg.vlan_hi),
            cfg,
            lldp_on: true,
            next_lldp: now,
            fast_left: FAST_TX,
            station: None,
            ecp_rx: EcpRx::default(),
            ecp_tx: EcpTx::new(first_seq),
            drop_ecp: 0,
            drop_share: 0,
            share_acc: 0,
            delay: Duration::ZERO,
            delayed: Vec::new(),
            stats: Stats::default(),
            outbox: Vec::new(),
        }
    }

    fn station_evb(&self) -> Option<&EvbTlv> {
        self.station.as_ref().and_then(|s| s.neighbor.evb.as_ref())
    }

    /// EVB values in use (max of ours and the station's).
    pub fn effective(&self) -> EvbParams {
        self.cfg.evb.effective(self.station_evb())
    }

    /// `--ecp-gap-ms`: least gap between two new ECPDUs (None: default).
    pub fn set_ecp_gap(&mut self, gap: Option<Duration>) {
        self.ecp_tx.gap = gap;
    }

    /// 10 µs·2^RTE with the values in use.
    pub fn ack_wait(&self) -> Duration {
        ecp::ack_wait(self.effective().rte)
    }

    /// Keep-alive timeout: 1.5·((1+2R)·10·2^RTE + 10·2^RKA) µs.
    pub fn ka_timeout(&self) -> Duration {
        let e = self.effective();
        let us =
            (1 + 2 * u64::from(e.retries)) * (10u64 << e.rte.min(31)) + (10u64 << e.rka.min(31));
        Duration::from_micros(us * 3 / 2)
    }

    fn emit(&mut self, f: Vec<u8>) {
        self.stats.frames_tx += 1;
        self.outbox.push(f);
    }

    /// Frames to put on the wire, oldest first.
    pub fn take_outbox(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.outbox)
    }

    /// The LLDPDU with TTL 0 sent on shutdown or `lldp stop`.
    pub fn shutdown_lldpdu(&self) -> Vec<u8> {
        let evb = self.cfg.evb.bridge_tlv(self.station_evb());
        lldp::build_lldpdu(&self.local, 0, &evb)
    }

    fn send_lldp(&mut self) {
        let evb = self.cfg.evb.bridge_tlv(self.station_evb());
        let f = lldp::build_lldpdu(&self.local, self.cfg.ttl, &evb);
        self.stats.lldp_tx += 1;
        self.emit(f);
    }

    /// Handle one received frame; `vlan` is the tag the kernel stripped.
    pub fn on_frame(&mut self, now: Instant, frame: &[u8], vlan: Option<u16>) {
        self.stats.frames_rx += 1;
        if frame.len() < 14 || frame[6..12] == self.local.mac {
            return;
        }
        if let Some((v, untagged)) = gateway::strip_inline_tag(frame) {
            self.on_vlan_frame(v, &untagged);
            return;
        }
        if let Some(v) = vlan {
            self.on_vlan_frame(v, frame);
            return;
        }
        match ethertype(frame) {
            Some(lldp::ETH_P_LLDP) if frame[..6] == NCB_MAC => self.on_lldp(now, &frame[14..]),
            Some(ecp::ETH_P_ECP) => self.on_ecp(now, frame),
            _ => {}
        }
    }

    fn on_vlan_frame(&mut self, vlan: u16, frame: &[u8]) {
        let gws: Vec<(u32, Ipv4Addr)> = self.vdp.gateways.iter().map(|(g, i)| (*g, *i)).collect();
        for (gid, ip) in gws {
            if self.vdp.vlan_of_gid(gid) != Some(vlan) {
                continue;
            }
            if let Some((a, reply)) = gateway::respond(frame, vlan, ip, &self.local.mac) {
                match a {
                    gateway::Answer::Arp => self.stats.arp_replies += 1,
                    gateway::Answer::Icmp => self.stats.icmp_replies += 1,
                }
                self.emit(reply);
                return;
            }
        }
    }

    fn on_lldp(&mut self, now: Instant, p: &[u8]) {
        let n = match lldp::parse_lldpdu(p) {
            Ok(n) => n,
            Err(e) => {
                log::debug!("ignoring LLDPDU: {e}");
                return;
            }
        };
        self.stats.lldp_rx += 1;
        if n.ttl == 0 {
            log::info!("station sent a shutdown LLDPDU");
            self.station = None;
            self.ecp_rx = EcpRx::default();
            return;
        }
        // A station that echoed our EVB bridge status and no longer does
        // has restarted (a new lldpad has not heard us yet): its ECP
        // sequence numbers start again, so forget the last one delivered.
        let echoes = |evb: Option<&lldp::EvbTlv>| evb.is_some_and(|e| e.bridge_status & 0x04 != 0);
        if let Some(s) = &self.station {
            if echoes(s.neighbor.evb.as_ref()) && !echoes(n.evb.as_ref()) {
                log::info!(
                    "station restarted (no longer echoes our EVB status): ECP receiver reset"
                );
                self.ecp_rx = EcpRx::default();
            }
        }
        let changed = match &self.station {
            None => true,
            Some(s) => s.neighbor.evb != n.evb || s.neighbor.chassis != n.chassis,
        };
        if changed {
            log::info!(
                "station {} EVB {:02x?}",
                n.chassis.as_ref().map(lldp::id_text).unwrap_or_default(),
                n.evb.map(|e| e.to_bytes())
            );
        }
        self.station = Some(Station {
            neighbor: n,
            last_rx: now,
        });
        if changed && self.lldp_on {
            // answer at once, then a short burst
            self.next_lldp = now;
            self.fast_left = FAST_TX;
        }
    }

    fn on_ecp(&mut self, now: Instant, frame: &[u8]) {
        self.stats.ecp_rx += 1;
        let (h, ulp) = match ecp::parse(&frame[14..]) {
            Ok(x) => x,
            Err(e) => {
                self.stats.ecp_bad += 1;
                log::debug!("ignoring ECPDU: {e}");
                return;
            }
        };
        match h.op {
            EcpOp::Ack => {
                self.stats.ecp_acks_rx += 1;
                self.ecp_tx.on_ack(h.seq);
            }
            EcpOp::Request => {
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
                let ack = ecp::build_frame(&self.local.mac, EcpOp::Ack, h.seq, &[]);
                self.stats.ecp_acks_tx += 1;
                self.emit(ack);
                if !self.ecp_rx.accept(h.seq, ulp) {
                    self.stats.ecp_duplicates += 1;
                    return;
                }
                let ulp = ulp.to_vec();
                self.on_vdp(now, &ulp);
            }
        }
    }

    fn on_vdp(&mut self, now: Instant, ulp: &[u8]) {
        let pdu = match vdp::parse(ulp) {
            Ok(p) => p,
            Err(e) => {
                self.stats.vdp_bad += 1;
                log::warn!("dropping VDP payload: {e}");
                return;
            }
        };
        for req in &pdu.vsis {
            let h = self.vdp.handle(now, &pdu.mgrid, req);
            let (reply, kind) = match h {
                Handled::Reply(r, k) => (Some(r), k),
                Handled::Silent(k) => (None, k),
            };
            log_vsi(req, reply.as_ref(), kind);
            match (kind, reply.is_some()) {
                (Kind::Assoc, _) => self.stats.assoc += 1,
                (Kind::Deassoc, _) => self.stats.deassoc += 1,
                (Kind::Keepalive, true) => self.stats.keepalives += 1,
                (Kind::Keepalive, false) => self.stats.keepalives_ignored += 1,
                (Kind::Rejected, _) => self.stats.rejects += 1,
            }
            if let Some(r) = reply {
                let payload = vdp::build(&pdu.mgrid, &r);
                if self.delay.is_zero() {
                    self.ecp_tx.enqueue(payload);
                } else {
                    self.delayed.push((now + self.delay, payload));
                }
            }
        }
    }

    /// Run the timers: LLDP TX, delayed answers, keep-alive aging, ECP TX.
    pub fn tick(&mut self, now: Instant) {
        if let Some(s) = &self.station {
            if now.saturating_duration_since(s.last_rx)
                > Duration::from_secs(u64::from(s.neighbor.ttl))
            {
                log::info!("station aged out (TTL {})", s.neighbor.ttl);
                self.station = None;
            }
        }
        if self.lldp_on && now >= self.next_lldp {
            self.send_lldp();
            if self.fast_left > 0 {
                self.fast_left -= 1;
                self.next_lldp = now + FAST_INTERVAL;
            } else {
                self.next_lldp = now + self.cfg.tx_interval;
            }
        }
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, p) = self.delayed.remove(i);
                self.ecp_tx.enqueue(p);
            } else {
                i += 1;
            }
        }
        let to = self.ka_timeout();
        let dead = self.vdp.expire(now, to);
        if !dead.is_empty() {
            log::info!(
                "{} VSI(s) aged out after {:?} without keep-alive",
                dead.len(),
                to
            );
            self.stats.aged_out += dead.len() as u64;
            self.queue_unsolicited(dead);
        }
        let (wait, retries) = (self.ack_wait(), self.effective().retries);
        if let Some((seq, ulp)) = self.ecp_tx.poll(now, wait, retries) {
            let f = ecp::build_frame(&self.local.mac, EcpOp::Request, seq, &ulp);
            self.stats.ecp_data_tx += 1;
            self.emit(f);
        }
        self.stats.ecp_retransmits = self.ecp_tx.retransmits;
        self.stats.ecp_given_up = self.ecp_tx.dropped;
    }

    fn queue_unsolicited(&mut self, list: Vec<([u8; 16], VsiTlv)>) {
        for (m, t) in list {
            self.stats.unsolicited_deassoc += 1;
            self.ecp_tx.enqueue(vdp::build(&m, &t));
        }
    }

    /// When `tick` next has work.
    pub fn next_deadline(&self, now: Instant) -> Instant {
        let mut d = now + Duration::from_secs(1);
        if self.lldp_on {
            d = d.min(self.next_lldp);
        }
        if let Some(t) = self.delayed.iter().map(|x| x.0).min() {
            d = d.min(t);
        }
        if let Some(t) = self.vdp.next_expiry(self.ka_timeout()) {
            d = d.min(t);
        }
        if let Some(t) = self.ecp_tx.next_deadline(self.ack_wait()) {
            d = d.min(t);
        }
        d
    }

    /// Execute an operator command; returns the one-line JSON reply.
    pub fn command(&mut self, now: Instant, cmd: &Command) -> Value {
        match cmd {
            Command::Status => self.status(now),
            Command::Stats => json!({"ok": true, "stats": self.stats}),
            Command::DropEcp(n) => {
                self.drop_ecp = *n;
                json!({"ok": true, "drop_ecp": n})
            }
            Command::DropEcpShare(p) => {
                self.drop_share = *p;
                self.share_acc = 0;
                json!({"ok": true, "drop_ecp_share": p})
            }
            Command::RejectNext(r) => {
                self.vdp.reject_next = Some(*r);
                json!({"ok": true, "reject_next": {"code": r.code, "hard": r.hard, "keep": r.keep}})
            }
            Command::Reload => {
                let n = self.vdp.vsis.len();
                self.vdp.reload();
                self.ecp_rx = EcpRx::default();
                self.delayed.clear();
                json!({"ok": true, "forgotten_vsis": n, "pool_offset": self.vdp.pool.offset})
            }
            Command::Lldp(on) => {
                if *on && !self.lldp_on {
                    self.next_lldp = now;
                    self.fast_left = FAST_TX;
                } else if !*on && self.lldp_on {
                    let f = self.shutdown_lldpdu();
                    self.stats.lldp_tx += 1;
                    self.emit(f);
                }
                self.lldp_on = *on;
                json!({"ok": true, "lldp": if *on {"on"} else {"off"}})
            }
            Command::Deassoc(target) => {
                let list = self.vdp.deassoc(target.as_deref());
                if list.is_empty() && target.is_some() {
                    return json!({"ok": false, "error": "no such VSI"});
                }
                let uuids: Vec<String> = list
                    .iter()
                    .map(|(_, t)| vdp::id_text(t.id_fmt, &t.id))
                    .collect();
                self.queue_unsolicited(list);
                json!({"ok": true, "deassociated": uuids})
            }
            Command::KaIgnore(on) => {
                self.vdp.ka_ignore = *on;
                json!({"ok": true, "ka_ignore": on})
            }
            Command::DelayMs(ms) => {
                self.delay = Duration::from_millis(*ms);
                json!({"ok": true, "delay_ms": ms})
            }
            Command::Gateway(gid, ip) => {
                match ip {
                    Some(ip) => self.vdp.gateways.insert(*gid, *ip),
                    None => self.vdp.gateways.remove(gid),
                };
                json!({"ok": true, "gateway": {"group_id": gid, "ip": ip.map(|i| i.to_string()), "vlan": self.vdp.vlan_of_gid(*gid)}})
            }
        }
    }

    fn status(&self, now: Instant) -> Value {
        let (vsis, pool) = self.vdp.status(now);
        let station = self.station.as_ref().map(|s| {
            json!({
                "chassis_id": s.neighbor.chassis.as_ref().map(lldp::id_text),
                "port_id": s.neighbor.port.as_ref().map(lldp::id_text),
                "system_name": s.neighbor.system_name,
                "ttl": s.neighbor.ttl,
                "evb": s.neighbor.evb.map(|e| json!({
                    "mode": e.mode_name(),
                    "sgid": e.station_status & lldp::EVB_SGID != 0,
                    "bytes": format!("{:02x?}", e.to_bytes()),
                })),
                "last_rx_age_s": now.saturating_duration_since(s.last_rx).as_secs(),
            })
        });
        let eff = self.effective();
        let gateways: serde_json::Map<String, Value> = self
            .vdp
            .gateways
            .iter()
            .map(|(g, ip)| {
                (
                    g.to_string(),
                    json!({"ip": ip.to_string(), "vlan": self.vdp.vlan_of_gid(*g)}),
                )
            })
            .collect();
        json!({
            "ok": true,
            "iface": self.local.ifname,
            "mac": lldp::mac_text(&self.local.mac),
            "lldp": if self.lldp_on { "on" } else { "off" },
            "station_seen": self.station.is_some(),
            "station": station,
            "evb": {
                "advertised": format!("{:02x?}", self.cfg.evb.bridge_tlv(self.station_evb()).to_bytes()),
                "retries": eff.retries, "rte": eff.rte, "rwd": eff.rwd, "rka": eff.rka,
                "keepalive_timeout_ms": self.ka_timeout().as_millis() as u64,
            },
            "vsis": vsis,
            "pool": pool,
            "gateways": gateways,
            "knobs": {
                "drop_ecp": self.drop_ecp,
                "drop_ecp_share": self.drop_share,
                "reject_next": self.vdp.reject_next.map(|r| json!({"code": r.code, "hard": r.hard, "keep": r.keep})),
                "ka_ignore": self.vdp.ka_ignore,
                "delay_ms": self.delay.as_millis() as u64,
            },
            "ecp_tx_pending": self.ecp_tx.pending(),
        })
    }
}

fn log_vsi(req: &VsiTlv, reply: Option<&VsiTlv>, kind: Kind) {
    let id = vdp::id_text(req.id_fmt, &req.id);
    let first = |t: &VsiTlv| t.entries.first().map(|e| (e.gid, e.vlan()));
    match (kind, reply) {
        (Kind::Keepalive, _) => log::debug!("keep-alive {id} {:?}", first(req)),
        (_, Some(r)) => log::info!(
            "{} {id} {:?} -> status {:#04x} {:?}",
            req.mode.name(),
            first(req),
            r.status,
            first(r)
        ),
        (_, None) => log::info!("{} {id} unanswered", req.mode.name()),
    }
}

#[cfg(test)]
mod tests;
