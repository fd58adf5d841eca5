//! LLDP for the leaf simulator: build the bridge's LLDPDU (Chassis, Port,
//! TTL, Port Description, System Name/Description, System Capabilities,
//! Management Address, EVB TLV in bridge mode, End) and parse the station's
//! LLDPDU (Chassis/Port IDs, TTL, System Name, EVB TLV).
//!
//! Owns: LLDP byte layouts and the EVB parameter negotiation (max of local and
//! received values, ROL bits). Pure code: no I/O. Calls nothing.

use std::fmt;
use std::net::Ipv4Addr;

/// LLDP ethertype.
pub const ETH_P_LLDP: u16 = 0x88cc;
/// Nearest-customer-bridge group address: EVB, ECP and VDP all use it.
pub const NCB_MAC: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x00];
/// Minimum Ethernet frame length without FCS.
pub const MIN_FRAME: usize = 60;

const TLV_END: u8 = 0;
const TLV_CHASSIS: u8 = 1;
const TLV_PORT: u8 = 2;
const TLV_TTL: u8 = 3;
const TLV_PORT_DESC: u8 = 4;
const TLV_SYS_NAME: u8 = 5;
const TLV_SYS_DESC: u8 = 6;
const TLV_SYS_CAPS: u8 = 7;
const TLV_MGMT: u8 = 8;
const TLV_ORG: u8 = 127;
const OUI_8021: [u8; 3] = [0x00, 0x80, 0xc2];
const EVB_SUBTYPE: u8 = 0x0d;

/// EVB bridge-status bit: group IDs supported.
pub const EVB_BGID: u8 = 0x04;
/// EVB station-status bit: group IDs supported.
pub const EVB_SGID: u8 = 0x08;

/// Why a received LLDPDU was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LldpError {
    Truncated { at: usize },
    MissingMandatory(&'static str),
}

impl fmt::Display for LldpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LldpError::Truncated { at } => write!(f, "LLDPDU truncated at byte {at}"),
            LldpError::MissingMandatory(t) => write!(f, "LLDPDU lacks the {t} TLV"),
        }
    }
}

impl std::error::Error for LldpError {}

/// The 5 value bytes of an 802.1Qbg-2012 EVB TLV after OUI and subtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvbTlv {
    /// B: bridge status (BGID 0x04, RRCAP 0x02, RRCTR 0x01).
    pub bridge_status: u8,
    /// S: station status (SGID 0x08, RRREQ 0x04, RRSTAT b1-0).
    pub station_status: u8,
    /// R: max ECP retries (3 bits).
    pub retries: u8,
    /// RTE: ECP ack wait exponent (10 µs·2^RTE).
    pub rte: u8,
    /// Mode: 1 bridge, 2 station.
    pub mode: u8,
    pub rol_rwd: bool,
    /// RWD: resource wait delay exponent.
    pub rwd: u8,
    pub rol_rka: bool,
    /// RKA: keep-alive exponent.
    pub rka: u8,
}

impl EvbTlv {
    pub fn to_bytes(&self) -> [u8; 5] {
        [
            self.bridge_status,
            self.station_status,
            (self.retries & 0x07) << 5 | (self.rte & 0x1f),
            (self.mode & 0x03) << 6 | u8::from(self.rol_rwd) << 5 | (self.rwd & 0x1f),
            u8::from(self.rol_rka) << 5 | (self.rka & 0x1f),
        ]
    }

    pub fn from_bytes(b: &[u8]) -> Option<EvbTlv> {
        if b.len() < 5 {
            return None;
        }
        Some(EvbTlv {
            bridge_status: b[0],
            station_status: b[1],
            retries: b[2] >> 5,
            rte: b[2] & 0x1f,
            mode: b[3] >> 6,
            rol_rwd: b[3] & 0x20 != 0,
            rwd: b[3] & 0x1f,
            rol_rka: b[4] & 0x20 != 0,
            rka: b[4] & 0x1f,
        })
    }

    /// Mode name as lldptool prints it.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            1 => "bridge",
            2 => "station",
            _ => "unknown",
        }
    }
}

/// The bridge's own EVB settings (what it would advertise alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvbParams {
    pub retries: u8,
    pub rte: u8,
    pub rwd: u8,
    pub rka: u8,
    /// Advertise BGID (group-ID support).
    pub bgid: bool,
}

impl Default for EvbParams {
    fn default() -> Self {
        EvbParams {
            retries: 3,
            rte: 10,
            rwd: 20,
            rka: 20,
            bgid: true,
        }
    }
}

impl EvbParams {
    /// Values in use: the max of local and received, as lldpad does.
    pub fn effective(&self, station: Option<&EvbTlv>) -> EvbParams {
        match station {
            None => *self,
            Some(s) => EvbParams {
                retries: self.retries.max(s.retries),
                rte: self.rte.max(s.rte),
                rwd: self.rwd.max(s.rwd),
                rka: self.rka.max(s.rka),
                bgid: self.bgid,
            },
        }
    }

    /// The bridge-mode EVB TLV: B from local flags, S copied from the
    /// station's last TLV, timers = max(local, received), ROL set when the
    /// received value is >= local.
    pub fn bridge_tlv(&self, station: Option<&EvbTlv>) -> EvbTlv {
        let eff = self.effective(station);
        EvbTlv {
            bridge_status: if self.bgid { EVB_BGID } else { 0 },
            station_status: station.map_or(0, |s| s.station_status),
            retries: eff.retries,
            rte: eff.rte,
            mode: 1,
            rol_rwd: station.is_some_and(|s| s.rwd >= self.rwd),
            rwd: eff.rwd,
            rol_rka: station.is_some_and(|s| s.rka >= self.rka),
            rka: eff.rka,
        }
    }
}

/// What the bridge says about itself in its LLDPDUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalInfo {
    pub mac: [u8; 6],
    pub ifname: String,
    pub ifindex: u32,
    pub system_name: String,
    pub system_desc: String,
    pub mgmt_addr: Ipv4Addr,
}

fn push_tlv(out: &mut Vec<u8>, ty: u8, value: &[u8]) {
    let len = value.len().min(511);
    let head = (u16::from(ty) << 9) | len as u16;
    out.extend_from_slice(&head.to_be_bytes());
    out.extend_from_slice(&value[..len]);
}

/// Ethernet header for a frame to `dst`.
pub fn eth_header(dst: &[u8; 6], src: &[u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(MIN_FRAME);
    f.extend_from_slice(dst);
    f.extend_from_slice(src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Pad a frame with zeros to the 60-byte minimum.
pub fn pad(mut frame: Vec<u8>) -> Vec<u8> {
    if frame.len() < MIN_FRAME {
        frame.resize(MIN_FRAME, 0);
    }
    frame
}

/// The full LLDP frame (to 01:80:c2:00:00:00, padded).
pub fn build_lldpdu(local: &LocalInfo, ttl: u16, evb: &EvbTlv) -> Vec<u8> {
    let mut f = eth_header(&NCB_MAC, &local.mac, ETH_P_LLDP);
    let mut id = vec![4u8];
    id.extend_from_slice(&local.mac);
    push_tlv(&mut f, TLV_CHASSIS, &id);
    id[0] = 3;
    push_tlv(&mut f, TLV_PORT, &id);
    push_tlv(&mut f, TLV_TTL, &ttl.to_be_bytes());
    if ttl != 0 {
        push_tlv(&mut f, TLV_PORT_DESC, local.ifname.as_bytes());
        push_tlv(&mut f, TLV_SYS_NAME, local.system_name.as_bytes());
        push_tlv(&mut f, TLV_SYS_DESC, local.system_desc.as_bytes());
        // capabilities: bridge; enabled: bridge
        push_tlv(&mut f, TLV_SYS_CAPS, &[0x00, 0x04, 0x00, 0x04]);
        let mut m = vec![5u8, 1];
        m.extend_from_slice(&local.mgmt_addr.octets());
        m.push(2); // interface numbering: ifIndex
        m.extend_from_slice(&local.ifindex.to_be_bytes());
        m.push(0); // no OID
        push_tlv(&mut f, TLV_MGMT, &m);
        let mut e = OUI_8021.to_vec();
        e.push(EVB_SUBTYPE);
        e.extend_from_slice(&evb.to_bytes());
        push_tlv(&mut f, TLV_ORG, &e);
    }
    push_tlv(&mut f, TLV_END, &[]);
    pad(f)
}

/// What the leaf learned from the station's LLDPDU.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Neighbor {
    /// (subtype, id bytes)
    pub chassis: Option<(u8, Vec<u8>)>,
    pub port: Option<(u8, Vec<u8>)>,
    pub ttl: u16,
    pub system_name: Option<String>,
    pub evb: Option<EvbTlv>,
}

/// Format an ID: MAC subtypes as `xx:..`, text subtypes as text, else hex.
pub fn id_text(id: &(u8, Vec<u8>)) -> String {
    let (st, b) = id;
    if b.len() == 6 && ((*st == 4) || (*st == 3)) {
        return mac_text(b);
    }
    if matches!(st, 1 | 2 | 5 | 6 | 7) {
        if let Ok(s) = std::str::from_utf8(b) {
            return s.to_string();
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Lower-case colon MAC text.
pub fn mac_text(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse an LLDPDU (the bytes after the Ethernet header).
pub fn parse_lldpdu(p: &[u8]) -> Result<Neighbor, LldpError> {
    let mut n = Neighbor::default();
    let mut seen_ttl = false;
    let mut at = 0;
    while at + 2 <= p.len() {
        let head = u16::from_be_bytes([p[at], p[at + 1]]);
        let ty = (head >> 9) as u8;
        let len = usize::from(head & 0x1ff);
        let v = p
            .get(at + 2..at + 2 + len)
            .ok_or(LldpError::Truncated { at })?;
        at += 2 + len;
        match ty {
            TLV_END => break,
            TLV_CHASSIS | TLV_PORT if !v.is_empty() => {
                let id = Some((v[0], v[1..].to_vec()));
                if ty == TLV_CHASSIS {
                    n.chassis = id;
                } else {
                    n.port = id;
                }
            }
            TLV_TTL if v.len() >= 2 => {
                n.ttl = u16::from_be_bytes([v[0], v[1]]);
                seen_ttl = true;
            }
            TLV_SYS_NAME => n.system_name = Some(String::from_utf8_lossy(v).into_owned()),
            TLV_ORG if v.len() >= 9 && v[..3] == OUI_8021 && v[3] == EVB_SUBTYPE => {
                n.evb = EvbTlv::from_bytes(&v[4..]);
            }
            _ => {}
        }
    }
    if n.chassis.is_none() {
        return Err(LldpError::MissingMandatory("Chassis ID"));
    }
    if n.port.is_none() {
        return Err(LldpError::MissingMandatory("Port ID"));
    }
    if !seen_ttl {
        return Err(LldpError::MissingMandatory("TTL"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lldpad_defaults() -> EvbParams {
        EvbParams {
            retries: 3,
            rte: 8,
            rwd: 20,
            rka: 20,
            bgid: true,
        }
    }

    #[test]
    fn bridge_tlv_matches_live_lldpad_bytes() {
        // notes §3: bridge before the station appeared `04 00 68 54 14`
        let p = lldpad_defaults();
        assert_eq!(
            p.bridge_tlv(None).to_bytes(),
            [0x04, 0x00, 0x68, 0x54, 0x14]
        );
        // station steady `04 08 68 b4 34` -> bridge steady `04 08 68 74 34`
        let st = EvbTlv::from_bytes(&[0x04, 0x08, 0x68, 0xb4, 0x34]).unwrap();
        assert_eq!(st.mode_name(), "station");
        assert_eq!((st.retries, st.rte, st.rwd, st.rka), (3, 8, 20, 20));
        assert_eq!(
            p.bridge_tlv(Some(&st)).to_bytes(),
            [0x04, 0x08, 0x68, 0x74, 0x34]
        );
        // station first frame `00 0b 68 94 14`: S copied, no ROL for rka 20 vs... rka equal -> ROL
        let first = EvbTlv::from_bytes(&[0x00, 0x0b, 0x68, 0x94, 0x14]).unwrap();
        assert_eq!(first.station_status, 0x0b);
        assert_eq!(p.bridge_tlv(Some(&first)).station_status, 0x0b);
    }

    #[test]
    fn larger_local_rte_wins() {
        let p = EvbParams {
            rte: 14,
            rka: 22,
            ..lldpad_defaults()
        };
        let st = EvbTlv::from_bytes(&[0x04, 0x08, 0x68, 0xb4, 0x34]).unwrap();
        let t = p.bridge_tlv(Some(&st));
        assert_eq!(t.rte, 14);
        assert_eq!(t.rka, 22);
        assert!(!t.rol_rka);
        assert!(t.rol_rwd);
    }

    #[test]
    fn lldpdu_roundtrip_and_layout() {
        let local = LocalInfo {
            mac: [0x52, 0x54, 0, 0, 0, 2],
            ifname: "swp1".into(),
            ifindex: 7,
            system_name: "leaf1".into(),
            system_desc: "desc".into(),
            mgmt_addr: Ipv4Addr::new(10, 10, 0, 101),
        };
        let evb = lldpad_defaults().bridge_tlv(None);
        let f = build_lldpdu(&local, 120, &evb);
        assert_eq!(&f[..6], &NCB_MAC);
        assert_eq!(&f[12..14], &[0x88, 0xcc]);
        // notes §3 live bytes
        assert_eq!(&f[14..23], &[0x02, 0x07, 0x04, 0x52, 0x54, 0, 0, 0, 2]);
        assert_eq!(&f[23..32], &[0x04, 0x07, 0x03, 0x52, 0x54, 0, 0, 0, 2]);
        assert_eq!(&f[32..36], &[0x06, 0x02, 0x00, 0x78]);
        let evb_at = f
            .windows(6)
            .position(|w| w == [0xfe, 0x09, 0x00, 0x80, 0xc2, 0x0d])
            .unwrap();
        assert_eq!(&f[evb_at + 6..evb_at + 11], &[0x04, 0x00, 0x68, 0x54, 0x14]);
        let n = parse_lldpdu(&f[14..]).unwrap();
        assert_eq!(n.ttl, 120);
        assert_eq!(id_text(n.chassis.as_ref().unwrap()), "52:54:00:00:00:02");
        assert_eq!(n.system_name.as_deref(), Some("leaf1"));
        assert_eq!(n.evb, Some(evb));
        let shut = build_lldpdu(&local, 0, &evb);
        assert_eq!(shut.len(), 60);
        assert_eq!(parse_lldpdu(&shut[14..]).unwrap().ttl, 0);
    }

    #[test]
    fn bad_lldpdu_is_an_error_not_a_panic() {
        assert!(parse_lldpdu(&[]).is_err());
        assert!(parse_lldpdu(&[0x02, 0x07, 0x04]).is_err());
        assert!(parse_lldpdu(&[0xff, 0xff, 0x00]).is_err());
    }
}
