//! One host port of the leaf: its interface identity, LLDP TX timing and
//! the station seen on it, its ECP receiver and sender (sequence numbers
//! are per port) and its delayed VDP answers.
//!
//! Owns per-port protocol state. Pure: time is passed in. Calls `lldp`, `ecp`.

use super::{EngineConfig, FAST_TX};
use crate::lab::leaf::ecp::{self, EcpRx, EcpTx};
use crate::lab::leaf::lldp::{self, EvbParams, EvbTlv, LocalInfo, Neighbor};
use std::time::{Duration, Instant};

/// The station as last seen over LLDP.
#[derive(Debug, Clone)]
pub struct Station {
    pub neighbor: Neighbor,
    pub last_rx: Instant,
}

/// A host port.
#[derive(Debug)]
pub struct Port {
    pub local: LocalInfo,
    pub(super) next_lldp: Instant,
    pub(super) fast_left: u8,
    pub station: Option<Station>,
    pub(super) ecp_rx: EcpRx,
    pub(super) ecp_tx: EcpTx,
    /// Source MAC of the last ECP request on this port: the station's ECP
    /// entity. Only its acks count. Other ECP entities that see our frames
    /// pass also ack them: in the lab, lldpad runs ECP on the uplink and on
    /// the OVS side of its veth, both OVS ports that a userspace datapath
    /// leaves visible to lldpad's packet sockets. Their early ack would
    /// release the next ECPDU before the station has the first one.
    pub(super) ecp_peer: Option<[u8; 6]>,
    /// VDP answers held back by `delay-ms`, with their send time.
    pub(super) delayed: Vec<(Instant, Vec<u8>)>,
}

/// What an LLDPDU from the station did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LldpRx {
    Ignored,
    /// TTL 0: the station left.
    Gone,
    /// Stored; `changed` when the EVB TLV or chassis differs.
    Seen {
        changed: bool,
    },
}

impl Port {
    pub fn new(local: LocalInfo, first_seq: u16, now: Instant) -> Port {
        Port {
            local,
            next_lldp: now,
            fast_left: FAST_TX,
            station: None,
            ecp_rx: EcpRx::default(),
            ecp_tx: EcpTx::new(first_seq),
            ecp_peer: None,
            delayed: Vec::new(),
        }
    }

    pub fn station_evb(&self) -> Option<&EvbTlv> {
        self.station.as_ref().and_then(|s| s.neighbor.evb.as_ref())
    }

    /// EVB values in use on this port (max of ours and the station's).
    pub fn effective(&self, cfg: &EngineConfig) -> EvbParams {
        cfg.evb.effective(self.station_evb())
    }

    /// 10 µs·2^RTE with the values in use.
    pub fn ack_wait(&self, cfg: &EngineConfig) -> Duration {
        ecp::ack_wait(self.effective(cfg).rte)
    }

    /// Keep-alive timeout: 1.5·((1+2R)·10·2^RTE + 10·2^RKA) µs.
    pub fn ka_timeout(&self, cfg: &EngineConfig) -> Duration {
        let e = self.effective(cfg);
        let us =
            (1 + 2 * u64::from(e.retries)) * (10u64 << e.rte.min(31)) + (10u64 << e.rka.min(31));
        Duration::from_micros(us * 3 / 2)
    }

    /// An LLDPDU with this TTL (0 on shutdown or `lldp stop`).
    pub fn lldpdu(&self, cfg: &EngineConfig, ttl: u16) -> Vec<u8> {
        let evb = cfg.evb.bridge_tlv(self.station_evb());
        lldp::build_lldpdu(&self.local, ttl, &evb)
    }

    pub(super) fn on_lldp(&mut self, now: Instant, p: &[u8]) -> LldpRx {
        let n = match lldp::parse_lldpdu(p) {
            Ok(n) => n,
            Err(e) => {
                log::debug!("{}: ignoring LLDPDU: {e}", self.local.ifname);
                return LldpRx::Ignored;
            }
        };
        if n.ttl == 0 {
            log::info!("{}: station sent a shutdown LLDPDU", self.local.ifname);
            self.station = None;
            self.ecp_rx = EcpRx::default();
            return LldpRx::Gone;
        }
        // A station that echoed our EVB bridge status and no longer does
        // has restarted (a new lldpad has not heard us yet): its ECP
        // sequence numbers start again, so forget the last one delivered.
        let echoes = |evb: Option<&EvbTlv>| evb.is_some_and(|e| e.bridge_status & 0x04 != 0);
        if let Some(s) = &self.station {
            if echoes(s.neighbor.evb.as_ref()) && !echoes(n.evb.as_ref()) {
                log::info!(
                    "{}: station restarted (no longer echoes our EVB status): ECP receiver reset",
                    self.local.ifname
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
                "{}: station {} EVB {:02x?}",
                self.local.ifname,
                n.chassis.as_ref().map(lldp::id_text).unwrap_or_default(),
                n.evb.map(|e| e.to_bytes())
            );
        }
        self.station = Some(Station {
            neighbor: n,
            last_rx: now,
        });
        LldpRx::Seen { changed }
    }

    /// Forget the station when its TTL ran out.
    pub(super) fn age_station(&mut self, now: Instant) {
        if let Some(s) = &self.station {
            if now.saturating_duration_since(s.last_rx)
                > Duration::from_secs(u64::from(s.neighbor.ttl))
            {
                log::info!(
                    "{}: station aged out (TTL {})",
                    self.local.ifname,
                    s.neighbor.ttl
                );
                self.station = None;
            }
        }
    }

    /// Move delayed answers whose time came to the ECP sender.
    pub(super) fn release_delayed(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, p) = self.delayed.remove(i);
                self.ecp_tx.enqueue(p);
            } else {
                i += 1;
            }
        }
    }
}
