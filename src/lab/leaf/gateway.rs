//! Gateway responder for the leaf: answers ARP requests and ICMP echo
//! requests for a group's gateway IPv4 on the VLAN currently assigned to that
//! group, with 802.1Q-tagged frames from the leaf's MAC.
//!
//! Owns: ARP/IPv4/ICMP byte handling. Pure code. Calls nothing.

use std::net::Ipv4Addr;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;

/// A received frame with its VLAN tag removed (from PACKET_AUXDATA or an
/// in-line tag): `frame` starts with dst/src MAC and the inner ethertype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untagged<'a> {
    pub vlan: Option<u16>,
    pub frame: &'a [u8],
}

/// Remove an in-line 802.1Q tag, if any, giving the VLAN and the untagged
/// frame (dst, src, inner type, payload) as an owned buffer.
pub fn strip_inline_tag(frame: &[u8]) -> Option<(u16, Vec<u8>)> {
    if frame.len() < 18 || u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_8021Q {
        return None;
    }
    let vlan = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&frame[16..]);
    Some((vlan, out))
}

fn tagged(dst: &[u8], src: &[u8; 6], vlan: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64.max(18 + payload.len()));
    f.extend_from_slice(dst);
    f.extend_from_slice(src);
    f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
    f.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < 64 {
        f.resize(64, 0);
    }
    f
}

/// Internet checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What the responder answered, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Arp,
    Icmp,
}

/// Answer an ARP request or ICMP echo request for `gw` on `vlan`. `rx` is
/// the untagged frame. Returns the tagged reply frame.
pub fn respond(
    rx: &[u8],
    vlan: u16,
    gw: Ipv4Addr,
    leaf_mac: &[u8; 6],
) -> Option<(Answer, Vec<u8>)> {
    if rx.len() < 14 {
        return None;
    }
    let dst = &rx[..6];
    let src = &rx[6..12];
    let ty = u16::from_be_bytes([rx[12], rx[13]]);
    let p = &rx[14..];
    match ty {
        ETH_P_ARP => {
            // htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request)
            if p.len() < 28 || p[..8] != [0, 1, 8, 0, 6, 4, 0, 1] {
                return None;
            }
            if p[24..28] != gw.octets() {
                return None;
            }
            let mut a = Vec::with_capacity(28);
            a.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
            a.extend_from_slice(leaf_mac);
            a.extend_from_slice(&gw.octets());
            a.extend_from_slice(&p[8..14]); // requester MAC
            a.extend_from_slice(&p[14..18]); // requester IP
            Some((
                Answer::Arp,
                tagged(&p[8..14], leaf_mac, vlan, ETH_P_ARP, &a),
            ))
        }
        ETH_P_IP => {
            if dst != leaf_mac && dst != [0xff; 6] {
                return None;
            }
            if p.len() < 20 || p[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            if ihl < 20 || total < ihl + 8 || total > p.len() || p[9] != 1 {
                return None;
            }
            if p[16..20] != gw.octets() {
                return None;
            }
            let icmp = &p[ihl..total];
            if icmp[0] != 8 {
                return None;
            }
            let mut ip = p[..ihl].to_vec();
            ip[8] = 64; // TTL
            ip[10] = 0;
            ip[11] = 0;
            let (s, d) = (p[12..16].to_vec(), p[16..20].to_vec());
            ip[12..16].copy_from_slice(&d);
            ip[16..20].copy_from_slice(&s);
            let c = checksum(&ip).to_be_bytes();
            ip[10] = c[0];
            ip[11] = c[1];
            let mut reply = icmp.to_vec();
            reply[0] = 0;
            reply[2] = 0;
            reply[3] = 0;
            let c = checksum(&reply).to_be_bytes();
            reply[2] = c[0];
            reply[3] = c[1];
            ip.extend_from_slice(&reply);
            Some((Answer::Icmp, tagged(src, leaf_mac, vlan, ETH_P_IP, &ip)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAF: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
    const VM: [u8; 6] = [0xfa, 0x16, 0x3e, 0, 0, 1];

    fn arp_request(target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&VM);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&VM);
        f.extend_from_slice(&[10, 0, 0, 5]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&target);
        f
    }

    #[test]
    fn answers_arp_for_gateway_only() {
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let (a, r) = respond(&arp_request([10, 0, 0, 1]), 3001, gw, &LEAF).unwrap();
        assert_eq!(a, Answer::Arp);
        assert_eq!(&r[..6], &VM);
        assert_eq!(&r[6..12], &LEAF);
        assert_eq!(&r[12..18], &[0x81, 0x00, 0x0b, 0xb9, 0x08, 0x06]);
        assert_eq!(&r[18..26], &[0, 1, 8, 0, 6, 4, 0, 2]);
        assert_eq!(&r[26..32], &LEAF);
        assert_eq!(&r[32..36], &[10, 0, 0, 1]);
        assert_eq!(&r[36..42], &VM);
        assert_eq!(&r[42..46], &[10, 0, 0, 5]);
        assert_eq!(r.len(), 64);
        assert!(respond(&arp_request([10, 0, 0, 2]), 3001, gw, &LEAF).is_none());
    }

    #[test]
    fn answers_icmp_echo_with_valid_checksums() {
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let mut f = LEAF.to_vec();
        f.extend_from_slice(&VM);
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 32, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 5, 10, 0, 0, 1,
        ];
        let c = checksum(&ip).to_be_bytes();
        ip[10] = c[0];
        ip[11] = c[1];
        let mut icmp = vec![8, 0, 0, 0, 0x00, 0x07, 0x00, 0x01, 1, 2, 3, 4];
        let c = checksum(&icmp).to_be_bytes();
        icmp[2] = c[0];
        icmp[3] = c[1];
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        f.extend_from_slice(&[0; 6]); // ethernet padding
        let (a, r) = respond(&f, 3002, gw, &LEAF).unwrap();
        assert_eq!(a, Answer::Icmp);
        let ip_r = &r[18..38];
        assert_eq!(&ip_r[12..16], &[10, 0, 0, 1]);
        assert_eq!(&ip_r[16..20], &[10, 0, 0, 5]);
        assert_eq!(checksum(ip_r), 0);
        let icmp_r = &r[38..50];
        assert_eq!(icmp_r[0], 0);
        assert_eq!(checksum(icmp_r), 0);
        assert_eq!(&icmp_r[4..], &icmp[4..]);
        // tagged in-line frames are stripped
        let (v, u) = strip_inline_tag(&r).unwrap();
        assert_eq!(v, 3002);
        assert_eq!(&u[12..14], &[0x08, 0x00]);
        assert!(respond(&f[..30], 3002, gw, &LEAF).is_none());
    }
}
