//! ECP22 (IEEE 802.1Qbg-2012 clause 43, ethertype 0x8940) for the leaf:
//! header build/parse, the receive rule (ack every request at once, deliver
//! only when the seq differs from the last delivered one) and the
//! stop-and-wait transmitter (one ECPDU outstanding, retransmit after
//! 10 µs·2^RTE up to R times, then drop silently).
//!
//! Owns: ECP byte layout and sequence/retransmit state. Pure code: time is
//! passed in. Calls `lldp` for Ethernet framing.

use super::lldp::{eth_header, pad, NCB_MAC};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// ECP22 ethertype as lldpad uses it.
pub const ETH_P_ECP: u16 = 0x8940;
/// ULP subtype of VDP.
pub const SUBTYPE_VDP: u16 = 1;

/// Request or acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcpOp {
    Request,
    Ack,
}

/// The 4-byte ECPDU header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcpHeader {
    pub version: u8,
    pub op: EcpOp,
    pub subtype: u16,
    pub seq: u16,
}

/// Why an ECPDU was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcpError {
    Short(usize),
    Version(u8),
    Subtype(u16),
    Op(u8),
}

impl fmt::Display for EcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EcpError::Short(n) => write!(f, "ECPDU of {n} bytes is too short"),
            EcpError::Version(v) => write!(f, "ECP version {v} is not 1"),
            EcpError::Subtype(s) => write!(f, "ECP subtype {s} is not VDP"),
            EcpError::Op(o) => write!(f, "ECP operation {o} unknown"),
        }
    }
}

impl std::error::Error for EcpError {}

impl EcpHeader {
    pub fn to_bytes(&self) -> [u8; 4] {
        let op = match self.op {
            EcpOp::Request => 0u16,
            EcpOp::Ack => 1,
        };
        let w = (u16::from(self.version) << 12) | (op << 10) | (self.subtype & 0x3ff);
        let w = w.to_be_bytes();
        let s = self.seq.to_be_bytes();
        [w[0], w[1], s[0], s[1]]
    }
}

/// Parse an ECPDU (bytes after the Ethernet header): header and ULP payload.
/// Only version 1, subtype VDP is accepted, as lldpad does.
pub fn parse(p: &[u8]) -> Result<(EcpHeader, &[u8]), EcpError> {
    if p.len() < 4 {
        return Err(EcpError::Short(p.len()));
    }
    let w = u16::from_be_bytes([p[0], p[1]]);
    let version = (w >> 12) as u8;
    let op = ((w >> 10) & 0x3) as u8;
    let subtype = w & 0x3ff;
    if version != 1 {
        return Err(EcpError::Version(version));
    }
    if subtype != SUBTYPE_VDP {
        return Err(EcpError::Subtype(subtype));
    }
    let op = match op {
        0 => EcpOp::Request,
        1 => EcpOp::Ack,
        o => return Err(EcpError::Op(o)),
    };
    let seq = u16::from_be_bytes([p[2], p[3]]);
    Ok((
        EcpHeader {
            version,
            op,
            subtype,
            seq,
        },
        &p[4..],
    ))
}

/// A full ECP frame to 01:80:c2:00:00:00, padded to 60 bytes.
pub fn build_frame(src: &[u8; 6], op: EcpOp, seq: u16, ulp: &[u8]) -> Vec<u8> {
    let mut f = eth_header(&NCB_MAC, src, ETH_P_ECP);
    let h = EcpHeader {
        version: 1,
        op,
        subtype: SUBTYPE_VDP,
        seq,
    };
    f.extend_from_slice(&h.to_bytes());
    f.extend_from_slice(ulp);
    pad(f)
}

/// Least time between the starts of two ECPDUs. Measured live: the lldpad
/// station hands a received ECPDU to VDP through a one-slot buffer read
/// about 2 ms later, so a second ECPDU sent right after the first one's ack
/// overwrites it and the first is lost. lldpad's own sender is spaced by its
/// ack timer; we keep at least the ack wait, and never less than this.
pub const MIN_GAP: Duration = Duration::from_millis(10);

/// The ack wait for an RTE exponent: 10 µs·2^RTE.
pub fn ack_wait(rte: u8) -> Duration {
    Duration::from_micros(10u64 << rte.min(31))
}

/// Receive side: remembers the last delivered seq.
#[derive(Debug, Default, Clone)]
pub struct EcpRx {
    last_delivered: Option<u16>,
    /// Payload of the last delivered request.
    last_payload: Vec<u8>,
}

impl EcpRx {
    /// Should a request with `seq` and payload `ulp` be delivered to VDP?
    /// (It is acked either way.) A repeat of the last delivered sequence
    /// number is a retransmission and is not delivered again, as lldpad's
    /// receiver does; unlike lldpad, the simulator does deliver a repeat
    /// whose payload differs: that is a station restarted (lldpad starts
    /// again at sequence 1) whose first request would otherwise be lost
    /// until its own ack timer expires (about 16 s).
    pub fn accept(&mut self, seq: u16, ulp: &[u8]) -> bool {
        if self.last_delivered == Some(seq) && self.last_payload == ulp {
            return false;
        }
        self.last_delivered = Some(seq);
        self.last_payload = ulp.to_vec();
        true
    }
}

#[derive(Debug, Clone)]
struct Outstanding {
    seq: u16,
    ulp: Vec<u8>,
    sent_at: Instant,
    tries: u8,
}

/// Stop-and-wait transmitter.
#[derive(Debug, Clone)]
pub struct EcpTx {
    queue: VecDeque<Vec<u8>>,
    next_seq: u16,
    outstanding: Option<Outstanding>,
    /// When the last new ECPDU was first sent.
    last_new: Option<Instant>,
    /// ECPDUs given up after R retransmissions.
    pub dropped: u64,
    /// Retransmissions sent.
    pub retransmits: u64,
    /// Least gap between two new ECPDUs (`--ecp-gap-ms`); None: the ack
    /// wait, never less than `MIN_GAP`.
    pub gap: Option<Duration>,
}

impl EcpTx {
    /// `first_seq` should be random (0 is skipped).
    pub fn new(first_seq: u16) -> EcpTx {
        EcpTx {
            queue: VecDeque::new(),
            next_seq: if first_seq == 0 { 1 } else { first_seq },
            outstanding: None,
            last_new: None,
            dropped: 0,
            retransmits: 0,
            gap: None,
        }
    }

    pub fn enqueue(&mut self, ulp: Vec<u8>) {
        self.queue.push_back(ulp);
    }

    /// Queued plus outstanding ECPDUs.
    pub fn pending(&self) -> usize {
        self.queue.len() + usize::from(self.outstanding.is_some())
    }

    /// An ack arrived; true when it matched the outstanding ECPDU.
    pub fn on_ack(&mut self, seq: u16) -> bool {
        if self.outstanding.as_ref().is_some_and(|o| o.seq == seq) {
            self.outstanding = None;
            true
        } else {
            false
        }
    }

    fn take_seq(&mut self) -> u16 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        if self.next_seq == 0 {
            self.next_seq = 1;
        }
        s
    }

    /// What to send now, as (seq, ULP payload): a retransmission when the
    /// outstanding ECPDU's wait ran out, or the next queued one. Gives up on
    /// an ECPDU after `retries` retransmissions.
    pub fn poll(&mut self, now: Instant, wait: Duration, retries: u8) -> Option<(u16, Vec<u8>)> {
        if let Some(o) = &mut self.outstanding {
            if now.saturating_duration_since(o.sent_at) < wait {
                return None;
            }
            if o.tries <= retries {
                o.tries += 1;
                o.sent_at = now;
                self.retransmits += 1;
                return Some((o.seq, o.ulp.clone()));
            }
            self.outstanding = None;
            self.dropped += 1;
        }
        if self.queue.is_empty() {
            return None;
        }
        let gap = self.gap.unwrap_or(wait.max(MIN_GAP));
        if self.last_new.is_some_and(|t| now < t + gap) {
            return None;
        }
        let ulp = self.queue.pop_front()?;
        self.last_new = Some(now);
        let seq = self.take_seq();
        self.outstanding = Some(Outstanding {
            seq,
            ulp: ulp.clone(),
            sent_at: now,
            tries: 1,
        });
        Some((seq, ulp))
    }

    /// When `poll` next has something to do.
    pub fn next_deadline(&self, wait: Duration) -> Option<Instant> {
        match &self.outstanding {
            Some(o) => Some(o.sent_at + wait),
            None if !self.queue.is_empty() => Some(
                self.last_new
                    .map_or_else(Instant::now, |t| t + self.gap.unwrap_or(wait.max(MIN_GAP))),
            ),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_live_bytes() {
        // notes §4: request `10 01 ssss`, ack `14 01 ssss`
        let f = build_frame(&[2, 0, 0, 0, 0, 1], EcpOp::Ack, 0x0001, &[]);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[..6], &NCB_MAC);
        assert_eq!(&f[12..18], &[0x89, 0x40, 0x14, 0x01, 0x00, 0x01]);
        let (h, rest) = parse(&[0x10, 0x01, 0x12, 0x34, 0xaa]).unwrap();
        assert_eq!(h.op, EcpOp::Request);
        assert_eq!(h.seq, 0x1234);
        assert_eq!(rest, &[0xaa]);
        assert_eq!(parse(&[0x20, 0x01, 0, 1]), Err(EcpError::Version(2)));
        assert_eq!(parse(&[0x10, 0x02, 0, 1]), Err(EcpError::Subtype(2)));
        assert_eq!(parse(&[0x10]), Err(EcpError::Short(1)));
    }

    #[test]
    fn rx_delivers_only_new_seq() {
        let mut rx = EcpRx::default();
        assert!(rx.accept(7, b"a"));
        assert!(!rx.accept(7, b"a"));
        assert!(rx.accept(8, b"a"));
        assert!(rx.accept(7, b"a"));
    }

    #[test]
    fn rx_delivers_a_restarted_senders_first_request() {
        let mut rx = EcpRx::default();
        assert!(rx.accept(1, b"keepalive"));
        // The station restarted and starts again at 1 with a new request.
        assert!(rx.accept(1, b"assoc"));
        assert!(!rx.accept(1, b"assoc"));
    }

    #[test]
    fn tx_stop_and_wait_with_retransmits() {
        let t0 = Instant::now();
        let w = ack_wait(10);
        assert_eq!(w, Duration::from_micros(10240));
        let mut tx = EcpTx::new(0xffff);
        tx.enqueue(vec![1]);
        tx.enqueue(vec![2]);
        assert_eq!(tx.poll(t0, w, 3), Some((0xffff, vec![1])));
        assert_eq!(tx.poll(t0, w, 3), None, "one outstanding");
        // no ack: 3 retransmissions, then dropped
        for i in 1..=3u32 {
            assert_eq!(tx.poll(t0 + w * i, w, 3), Some((0xffff, vec![1])));
        }
        // dropped, next one goes with seq 1 (0 skipped)
        assert_eq!(tx.poll(t0 + w * 4, w, 3), Some((1, vec![2])));
        assert_eq!(tx.dropped, 1);
        assert!(!tx.on_ack(0xffff));
        assert!(tx.on_ack(1));
        assert_eq!(tx.pending(), 0);
        // back-to-back ECPDUs are spaced by at least MIN_GAP
        let t1 = t0 + w * 4;
        tx.enqueue(vec![3]);
        assert_eq!(tx.poll(t1 + Duration::from_millis(1), w, 3), None);
        assert_eq!(tx.next_deadline(w), Some(t1 + w));
        assert_eq!(tx.poll(t1 + w, w, 3), Some((2, vec![3])));
        tx.on_ack(2);
        assert_eq!(tx.poll(t1 + w * 3, w, 3), None);
        // --ecp-gap-ms 0: the next one goes as soon as the last is acked
        tx.gap = Some(Duration::ZERO);
        tx.enqueue(vec![4]);
        assert_eq!(tx.poll(t1 + w, w, 3), Some((3, vec![4])));
    }
}
