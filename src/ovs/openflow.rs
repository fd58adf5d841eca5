//! OpenFlow 1.0 messages for the VM translation flows, and the client that
//! sends them to a bridge's management socket (`{run dir}/{bridge}.mgmt`,
//! the socket `ovs-ofctl BRIDGE` uses), so a VM's flow change costs no
//! process.
//!
//! The codec is pure: `encode_ops` turns the flow-mods the driver wants
//! into the exact messages `ovs-ofctl add-flow` / `--strict del-flows`
//! send with its default protocol (OpenFlow 1.0: `in_port`/`dl_vlan`
//! match, `mod_vlan_vid` + `normal` actions, our cookie), or `None` for
//! anything else (the uplink's pass-through flows, raw deletes), which the
//! driver leaves to `ovs-ofctl`; `parse_header` and `parse_error` read
//! what the switch sends back, bounded and without panics.
//!
//! `Client::apply` (the only I/O here): connect, HELLO, the flow-mods, a
//! BARRIER; done when the barrier's reply comes, refused when an ERROR for
//! one of them comes first. Every read and write is bounded by one
//! deadline. Owns nothing persistent (one connection per call).

use super::ofctl::{Flow, FlowOp};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const OFP10_VERSION: u8 = 0x01;
pub const OFPT_HELLO: u8 = 0;
pub const OFPT_ERROR: u8 = 1;
pub const OFPT_ECHO_REQUEST: u8 = 2;
pub const OFPT_ECHO_REPLY: u8 = 3;
pub const OFPT_FLOW_MOD: u8 = 14;
pub const OFPT_BARRIER_REQUEST: u8 = 18;
pub const OFPT_BARRIER_REPLY: u8 = 19;

const OFPFC_ADD: u16 = 0;
const OFPFC_DELETE_STRICT: u16 = 4;
const OFPP_NORMAL: u16 = 0xfffa;
const OFPP_NONE: u16 = 0xffff;
const OFPAT_OUTPUT: u16 = 0;
const OFPAT_SET_VLAN_VID: u16 = 1;
/// Every wildcard bit of an OpenFlow 1.0 match.
const OFPFW_ALL: u32 = (1 << 22) - 1;
const OFPFW_IN_PORT: u32 = 1 << 0;
const OFPFW_DL_VLAN: u32 = 1 << 1;
/// Largest message read back (the switch's replies here are small).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// An OpenFlow header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub msg_type: u8,
    pub length: u16,
    pub xid: u32,
}

/// What went wrong on the OpenFlow path (the driver then uses ovs-ofctl).
#[derive(Debug)]
pub enum OfError {
    /// The management socket could not be reached.
    Connect(PathBuf, std::io::Error),
    Io(std::io::Error),
    /// No reply within the deadline.
    Timeout,
    /// A message that is not OpenFlow as expected.
    Protocol(String),
    /// The switch answered one of our messages with an ERROR.
    Refused {
        err_type: u16,
        code: u16,
    },
}

impl std::fmt::Display for OfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OfError::Connect(p, e) => write!(f, "connect {}: {e}", p.display()),
            OfError::Io(e) => write!(f, "{e}"),
            OfError::Timeout => f.write_str("no reply in time"),
            OfError::Protocol(d) => write!(f, "protocol: {d}"),
            OfError::Refused { err_type, code } => {
                write!(f, "refused: error type {err_type} code {code}")
            }
        }
    }
}

impl std::error::Error for OfError {}

fn header(msg_type: u8, length: usize, xid: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(length);
    v.push(OFP10_VERSION);
    v.push(msg_type);
    v.extend_from_slice(&(length as u16).to_be_bytes());
    v.extend_from_slice(&xid.to_be_bytes());
    v
}

/// A message with no body (HELLO, BARRIER_REQUEST).
pub fn bare(msg_type: u8, xid: u32) -> Vec<u8> {
    header(msg_type, 8, xid)
}

/// ECHO_REPLY carrying the request's body.
pub fn echo_reply(xid: u32, body: &[u8]) -> Vec<u8> {
    let mut v = header(OFPT_ECHO_REPLY, 8 + body.len(), xid);
    v.extend_from_slice(body);
    v
}

/// Read a header; `Err` when too short or the length is impossible.
pub fn parse_header(b: &[u8]) -> Result<Header, String> {
    if b.len() < 8 {
        return Err(format!("{} bytes, a header has 8", b.len()));
    }
    let h = Header {
        version: b[0],
        msg_type: b[1],
        length: u16::from_be_bytes([b[2], b[3]]),
        xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    };
    if (h.length as usize) < 8 {
        return Err(format!("length {} below the header's 8", h.length));
    }
    Ok(h)
}

/// The type and code of an ERROR message's body.
pub fn parse_error(body: &[u8]) -> Option<(u16, u16)> {
    if body.len() < 4 {
        return None;
    }
    Some((
        u16::from_be_bytes([body[0], body[1]]),
        u16::from_be_bytes([body[2], body[3]]),
    ))
}

/// The match of a flow in OpenFlow 1.0 terms: `(in_port, dl_vlan)`, each
/// optional; `None` for any other field or a value that does not fit.
fn match_of(f: &Flow) -> Option<(Option<u16>, Option<u16>)> {
    if f.table != 0 {
        return None;
    }
    let mut in_port = None;
    let mut vlan = None;
    for (k, v) in &f.matches {
        match k.as_str() {
            "in_port" => in_port = Some(v.parse::<u16>().ok().filter(|p| *p < 0xff00)?),
            "dl_vlan" => vlan = Some(v.parse::<u16>().ok().filter(|x| *x <= 4095)?),
            _ => return None,
        }
    }
    Some((in_port, vlan))
}

/// The 40-byte `ofp_match`.
fn put_match(v: &mut Vec<u8>, in_port: Option<u16>, vlan: Option<u16>) {
    let mut wild = OFPFW_ALL;
    if in_port.is_some() {
        wild &= !OFPFW_IN_PORT;
    }
    if vlan.is_some() {
        wild &= !OFPFW_DL_VLAN;
    }
    v.extend_from_slice(&wild.to_be_bytes());
    v.extend_from_slice(&in_port.unwrap_or(0).to_be_bytes());
    v.extend_from_slice(&[0; 12]); // dl_src, dl_dst
    v.extend_from_slice(&vlan.unwrap_or(0).to_be_bytes());
    v.extend_from_slice(&[0; 20]); // pcp, pad, type, tos, proto, pad, nw, tp
}

/// The actions of a flow: `mod_vlan_vid:N` and `normal` only.
fn actions_of(f: &Flow) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    for act in f.actions.split(',') {
        if act == "normal" {
            v.extend_from_slice(&OFPAT_OUTPUT.to_be_bytes());
            v.extend_from_slice(&8u16.to_be_bytes());
            v.extend_from_slice(&OFPP_NORMAL.to_be_bytes());
            v.extend_from_slice(&0u16.to_be_bytes());
        } else if let Some(n) = act.strip_prefix("mod_vlan_vid:") {
            let vid = n.parse::<u16>().ok().filter(|x| (1..=4095).contains(x))?;
            v.extend_from_slice(&OFPAT_SET_VLAN_VID.to_be_bytes());
            v.extend_from_slice(&8u16.to_be_bytes());
            v.extend_from_slice(&vid.to_be_bytes());
            v.extend_from_slice(&[0, 0]);
        } else {
            return None;
        }
    }
    Some(v)
}

/// One FLOW_MOD (`ovs-ofctl add-flow` / `--strict del-flows` with the
/// default protocol), or `None` when the op needs more than OpenFlow 1.0's
/// plain match (the driver then runs ovs-ofctl).
pub fn flow_mod(op: &FlowOp, xid: u32) -> Option<Vec<u8>> {
    let (flow, command, actions) = match op {
        FlowOp::Add(f) => (f, OFPFC_ADD, actions_of(f)?),
        FlowOp::DeleteStrict(f) => (f, OFPFC_DELETE_STRICT, Vec::new()),
        FlowOp::Delete(_) => return None,
    };
    let (in_port, vlan) = match_of(flow)?;
    let len = 8 + 40 + 24 + actions.len();
    let mut v = header(OFPT_FLOW_MOD, len, xid);
    put_match(&mut v, in_port, vlan);
    let cookie = if command == OFPFC_ADD { flow.cookie } else { 0 };
    v.extend_from_slice(&cookie.to_be_bytes());
    v.extend_from_slice(&command.to_be_bytes());
    v.extend_from_slice(&0u16.to_be_bytes()); // idle_timeout
    v.extend_from_slice(&0u16.to_be_bytes()); // hard_timeout
    v.extend_from_slice(&flow.priority.to_be_bytes());
    v.extend_from_slice(&u32::MAX.to_be_bytes()); // buffer_id: none
    v.extend_from_slice(&OFPP_NONE.to_be_bytes()); // out_port: any
    v.extend_from_slice(&0u16.to_be_bytes()); // flags
    v.extend_from_slice(&actions);
    debug_assert_eq!(v.len(), len);
    Some(v)
}

/// Every op as a FLOW_MOD (xids 1..=n), or `None` when one of them cannot
/// be sent this way.
pub fn encode_ops(ops: &[FlowOp]) -> Option<Vec<Vec<u8>>> {
    ops.iter()
        .enumerate()
        .map(|(i, op)| flow_mod(op, i as u32 + 1))
        .collect()
}

/// Sends flow-mods to bridges over their management sockets.
#[derive(Debug, Clone)]
pub struct Client {
    run_dir: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn new(run_dir: impl Into<PathBuf>, timeout: Duration) -> Client {
        Client {
            run_dir: run_dir.into(),
            timeout,
        }
    }

    /// `{run dir}/{bridge}.mgmt`; `None` for a name that is not a plain
    /// interface name.
    pub fn socket_path(&self, br: &str) -> Option<PathBuf> {
        let ok = !br.is_empty()
            && br.len() <= 15
            && br
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && !br.starts_with('.');
        ok.then(|| self.run_dir.join(format!("{br}.mgmt")))
    }

    /// Send `msgs` (FLOW_MODs numbered 1..=n by `encode_ops`) to `br` and
    /// wait until the switch has processed them (BARRIER reply).
    pub fn apply(&self, br: &str, msgs: &[Vec<u8>]) -> Result<(), OfError> {
        let path = self
            .socket_path(br)
            .ok_or_else(|| OfError::Protocol(format!("bridge name {br:?}")))?;
        let deadline = Instant::now() + self.timeout;
        let mut s = connect_now(&path).map_err(|e| OfError::Connect(path.clone(), e))?;
        s.set_write_timeout(Some(self.timeout))
            .map_err(OfError::Io)?;
        let barrier_xid = msgs.len() as u32 + 1;
        let mut out = bare(OFPT_HELLO, 0);
        for m in msgs {
            out.extend_from_slice(m);
        }
        out.extend_from_slice(&bare(OFPT_BARRIER_REQUEST, barrier_xid));
        s.write_all(&out).map_err(OfError::Io)?;
        let mut hello_seen = false;
        loop {
            let (h, body) = read_message(&mut s, deadline)?;
            match h.msg_type {
                OFPT_HELLO => hello_seen = true,
                OFPT_ERROR => {
                    let (err_type, code) = parse_error(&body)
                        .ok_or_else(|| OfError::Protocol("short ERROR".into()))?;
                    return Err(OfError::Refused { err_type, code });
                }
                OFPT_ECHO_REQUEST => {
                    let _ = s.write_all(&echo_reply(h.xid, &body));
                }
                OFPT_BARRIER_REPLY if h.xid == barrier_xid => {
                    if !hello_seen || h.version != OFP10_VERSION {
                        return Err(OfError::Protocol(format!(
                            "barrier reply of version {:#x}",
                            h.version
                        )));
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
    }
}

/// Connect without waiting: a unix socket's connect blocks while the
/// listener's backlog is full (a hung ovs-vswitchd that accepts nothing);
/// non-blocking it fails at once with EAGAIN instead, and the driver uses
/// ovs-ofctl, whose own wait the runner's timeout bounds.
fn connect_now(path: &Path) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    connect(fd.as_raw_fd(), &addr)?;
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

/// Read one whole message before `deadline`.
fn read_message(s: &mut UnixStream, deadline: Instant) -> Result<(Header, Vec<u8>), OfError> {
    let mut hdr = [0u8; 8];
    read_exact_by(s, &mut hdr, deadline)?;
    let h = parse_header(&hdr).map_err(OfError::Protocol)?;
    let n = h.length as usize - 8;
    if n > MAX_MESSAGE {
        return Err(OfError::Protocol(format!("message of {} bytes", h.length)));
    }
    let mut body = vec![0u8; n];
    read_exact_by(s, &mut body, deadline)?;
    Ok((h, body))
}

fn read_exact_by(s: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> Result<(), OfError> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(OfError::Timeout);
        }
        s.set_read_timeout(Some(left)).map_err(OfError::Io)?;
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(OfError::Protocol("connection closed".into())),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(OfError::Timeout)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(OfError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovs::flows;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn flow_mod_add_bytes() {
        // priority=4,in_port=7,dl_vlan=5 actions=mod_vlan_vid:3003,normal
        let f = flows::vm_ex_flow(7, 5, 3003);
        let m = flow_mod(&FlowOp::Add(f), 9).unwrap();
        let want = [
            "01",
            "0e",
            "0058",
            "00000009", // header, 88 bytes
            "003ffffc",
            "0007",
            "000000000000",
            "000000000000",
            "0005",                                     // wildcards, in_port, dl_*, vlan
            "0000000000000000000000000000000000000000", // the rest of the match
            "7664706167656e74",
            "0000",
            "0000",
            "0000",
            "0004", // cookie, ADD, timeouts, priority
            "ffffffff",
            "ffff",
            "0000", // buffer, out_port, flags
            "000100080bbb0000",
            "00000008fffa0000", // set_vlan_vid 3003, output NORMAL
        ]
        .concat();
        assert_eq!(hex(&m), want);
    }

    #[test]
    fn flow_mod_delete_strict_bytes() {
        let f = flows::vm_int_flow(2, 5, 3003);
        let m = flow_mod(&FlowOp::DeleteStrict(f), 1).unwrap();
        assert_eq!(m.len(), 72);
        assert_eq!(hex(&m[..4]), "010e0048");
        assert_eq!(hex(&m[8..14]), "003ffffc0002");
        assert_eq!(hex(&m[26..28]), "0bbb", "dl_vlan 3003");
        assert_eq!(hex(&m[48..56]), "0000000000000000", "no cookie");
        assert_eq!(hex(&m[56..58]), "0004", "DELETE_STRICT");
        assert_eq!(hex(&m[62..64]), "0003", "priority 3");
    }

    #[test]
    fn other_flows_are_left_to_ofctl() {
        let pass = Flow::ours(
            99,
            &[("in_port", "1".into()), ("dl_type", "0x88cc".into())],
            "output:2",
        );
        assert!(flow_mod(&FlowOp::Add(pass), 1).is_none());
        assert!(flow_mod(&FlowOp::Delete("dl_type=0x8940".into()), 1).is_none());
        let named = Flow::ours(4, &[("in_port", "LOCAL".into())], "normal");
        assert!(flow_mod(&FlowOp::Add(named), 1).is_none());
        let ops = [
            FlowOp::Add(flows::vm_ex_flow(7, 5, 3003)),
            FlowOp::Delete("x".into()),
        ];
        assert!(encode_ops(&ops).is_none());
        let ops = [
            FlowOp::Add(flows::vm_ex_flow(7, 5, 3004)),
            FlowOp::DeleteStrict(flows::vm_ex_flow(7, 5, 3003)),
        ];
        let m = encode_ops(&ops).unwrap();
        assert_eq!(parse_header(&m[1]).unwrap().xid, 2);
    }

    #[test]
    fn headers_and_errors() {
        let h = parse_header(&[1, 19, 0, 8, 0, 0, 0, 3]).unwrap();
        assert_eq!((h.msg_type, h.length, h.xid), (OFPT_BARRIER_REPLY, 8, 3));
        assert!(parse_header(&[1, 0, 0, 7, 0, 0, 0, 0]).is_err());
        assert!(parse_header(&[1, 0]).is_err());
        assert_eq!(parse_error(&[0, 4, 0, 6, 1]), Some((4, 6)));
        assert_eq!(parse_error(&[0]), None);
        assert_eq!(hex(&echo_reply(5, b"ab")), "0103000a000000056162");
    }

    #[test]
    fn socket_paths() {
        let c = Client::new("/run/ovs", Duration::from_secs(1));
        assert_eq!(
            c.socket_path("br-int"),
            Some(PathBuf::from("/run/ovs/br-int.mgmt"))
        );
        assert_eq!(c.socket_path("../x"), None);
        assert_eq!(c.socket_path(""), None);
        assert_eq!(c.socket_path("a/b"), None);
    }

    /// A listening `{dir}/{br}.mgmt` in a fresh temp dir: (dir, socket path,
    /// listener).
    fn fake_switch(tag: &str, br: &str) -> (PathBuf, PathBuf, std::os::unix::net::UnixListener) {
        let dir = std::env::temp_dir().join(format!("of-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{br}.mgmt"));
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        (dir, path, l)
    }

    #[test]
    fn a_switch_that_accepts_nothing_is_not_waited_for() {
        let (dir, path, _listener) = fake_switch("backlog", "br-x");
        let t0 = Instant::now();
        let mut held = Vec::new();
        let full = loop {
            match connect_now(&path) {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
            assert!(held.len() < 10_000, "the backlog never filled");
        };
        assert_eq!(full.kind(), std::io::ErrorKind::WouldBlock, "{full}");
        let c = Client::new(&dir, Duration::from_secs(2));
        let m = encode_ops(&[FlowOp::Add(flows::vm_ex_flow(7, 5, 3003))]).unwrap();
        assert!(matches!(c.apply("br-x", &m), Err(OfError::Connect(..))));
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        drop(held);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_silent_switch_costs_the_deadline_only() {
        let (dir, _path, listener) = fake_switch("silent", "br-y");
        let holder = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let c = Client::new(&dir, Duration::from_millis(300));
        let m = encode_ops(&[FlowOp::Add(flows::vm_ex_flow(7, 5, 3003))]).unwrap();
        let t0 = Instant::now();
        assert!(matches!(c.apply("br-y", &m), Err(OfError::Timeout)));
        assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
        drop(holder.join());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_socket_is_a_connect_error() {
        let c = Client::new("/nonexistent-run-dir", Duration::from_millis(200));
        let m = encode_ops(&[FlowOp::Add(flows::vm_ex_flow(7, 5, 3003))]).unwrap();
        assert!(matches!(c.apply("br-int", &m), Err(OfError::Connect(..))));
    }
}
