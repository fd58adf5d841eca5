//! The leaf's operator commands and its `status` JSON.
//!
//! Owns the reply shapes of the control commands. Calls the engine's state.

use super::*;
use crate::lab::leaf::control::Command;

impl Leaf {
    /// Execute an operator command; returns the one-line JSON reply.
    pub fn command(&mut self, now: Instant, cmd: &Command) -> Value {
        match cmd {
            Command::Status => self.status(now),
            Command::Stats => json!({"ok": true, "stats": self.stats}),
            Command::History => json!({"ok": true, "history": self.history}),
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
                let n = self.vdp.len();
                self.vdp.reload();
                for p in &mut self.ports {
                    p.ecp_rx = Default::default();
                    p.delayed.clear();
                }
                json!({"ok": true, "forgotten_vsis": n, "pool_offset": self.vdp.pool.offset})
            }
            Command::Lldp(on) => {
                if *on && !self.lldp_on {
                    for p in &mut self.ports {
                        p.next_lldp = now;
                        p.fast_left = FAST_TX;
                    }
                } else if !*on && self.lldp_on {
                    for (i, f) in self.shutdown_lldpdus() {
                        self.stats.lldp_tx += 1;
                        self.emit(i, f);
                    }
                }
                self.lldp_on = *on;
                json!({"ok": true, "lldp": if *on {"on"} else {"off"}})
            }
            Command::Deassoc(target) => {
                let list = self.vdp.deassoc(target.as_deref());
                if list.is_empty() && target.is_some() {
                    return json!({"ok": false, "error": "no such VSI"});
                }
                let mut uuids: Vec<String> = list
                    .iter()
                    .map(|(_, _, t)| vdp::id_text(t.id_fmt, &t.id))
                    .collect();
                uuids.sort();
                uuids.dedup();
                self.queue_unsolicited(now, list);
                self.count_moves();
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

    fn port_status(&self, p: &Port, now: Instant) -> (Option<Value>, Value) {
        let station = p.station.as_ref().map(|s| {
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
        let eff = p.effective(&self.cfg);
        let evb = json!({
            "advertised": format!("{:02x?}", self.cfg.evb.bridge_tlv(p.station_evb()).to_bytes()),
            "retries": eff.retries, "rte": eff.rte, "rwd": eff.rwd, "rka": eff.rka,
            "keepalive_timeout_ms": p.ka_timeout(&self.cfg).as_millis() as u64,
        });
        (station, evb)
    }

    fn status(&self, now: Instant) -> Value {
        let names = self.port_names();
        let (vsis, pool) = self.vdp.status(now, &names);
        let ports: Vec<Value> = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (station, evb) = self.port_status(p, now);
                let held = self.vdp.vsis.values().filter(|v| v.port == i).count();
                let moving = self.vdp.moving.iter().filter(|m| m.vsi.port == i).count();
                json!({
                    "iface": p.local.ifname,
                    "mac": lldp::mac_text(&p.local.mac),
                    "station_seen": p.station.is_some(),
                    "station": station,
                    "evb": evb,
                    "vsis": held,
                    "moving": moving,
                    "ecp_tx_pending": p.ecp_tx.pending(),
                })
            })
            .collect();
        let first = &self.ports[0];
        let (station, evb) = self.port_status(first, now);
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
        let pending: usize = self.ports.iter().map(|p| p.ecp_tx.pending()).sum();
        json!({
            "ok": true,
            "iface": first.local.ifname,
            "mac": lldp::mac_text(&first.local.mac),
            "lldp": if self.lldp_on { "on" } else { "off" },
            "station_seen": first.station.is_some(),
            "station": station,
            "evb": evb,
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
            "ecp_tx_pending": pending,
            "ports": ports,
            "move_timeout_s": self.vdp.move_timeout.as_secs_f64(),
        })
    }
}
