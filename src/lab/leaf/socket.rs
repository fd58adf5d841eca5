//! Raw AF_PACKET socket for the leaf: bound to one interface (ETH_P_ALL),
//! member of 01:80:c2:00:00:00, PACKET_AUXDATA on so that VLAN tags the
//! kernel stripped into metadata are reported, non-blocking receive.
//!
//! Owns: the socket fd. Calls `libc` (socket, bind, setsockopt, recvmsg, send).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Why the socket could not be used.
#[derive(Debug)]
pub enum SocketError {
    NoInterface {
        iface: String,
        err: io::Error,
    },
    Syscall {
        what: &'static str,
        iface: String,
        err: io::Error,
    },
}

impl fmt::Display for SocketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketError::NoInterface { iface, err } => write!(f, "interface {iface}: {err}"),
            SocketError::Syscall { what, iface, err } => {
                write!(f, "{what} on packet socket for {iface}: {err}")
            }
        }
    }
}

impl std::error::Error for SocketError {}

/// One received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    pub len: usize,
    /// VLAN the kernel stripped into auxdata.
    pub vlan: Option<u16>,
    /// Our own transmission looped back to the tap.
    pub outgoing: bool,
}

/// The leaf's packet socket.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    iface: String,
    pub ifindex: u32,
}

fn last_err(what: &'static str, iface: &str) -> SocketError {
    SocketError::Syscall {
        what,
        iface: iface.to_string(),
        err: io::Error::last_os_error(),
    }
}

/// Interface MAC (SIOCGIFHWADDR on a socket of the caller's netns).
pub fn iface_mac(iface: &str) -> Result<[u8; 6], SocketError> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(SocketError::NoInterface {
            iface: iface.to_string(),
            err: io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"),
        });
    }
    // SAFETY: plain socket(2); owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(last_err("socket", iface));
    }
    // SAFETY: raw is a fresh valid fd.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: zeroed ifreq is valid; the name fits (checked above).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills req.ifr_ifru.ifru_hwaddr.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc < 0 {
        return Err(SocketError::NoInterface {
            iface: iface.to_string(),
            err: io::Error::last_os_error(),
        });
    }
    // SAFETY: the union member written by SIOCGIFHWADDR.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// Receive buffer asked for each port's socket.
const RCVBUF_BYTES: libc::c_int = 4 << 20;

impl PacketSocket {
    pub fn open(iface: &str, groups: &[[u8; 6]]) -> Result<PacketSocket, SocketError> {
        let ifindex =
            nix::net::if_::if_nametoindex(iface).map_err(|e| SocketError::NoInterface {
                iface: iface.to_string(),
                err: io::Error::from_raw_os_error(e as i32),
            })?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            )
        };
        if raw < 0 {
            return Err(last_err("socket", iface));
        }
        // SAFETY: raw is a fresh valid fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: zeroed sockaddr_ll is valid; fields set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: pointer/len describe sll.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(last_err("bind", iface));
        }
        // Room for a burst of ~2000 frames while the loop is busy (the
        // gateway answers 10 ms pingers of many VMs): a full queue drops
        // frames silently. Best effort: FORCE needs root, plain is capped
        // by rmem_max.
        let buf: libc::c_int = RCVBUF_BYTES;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: option value is a c_int.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &buf as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                )
            };
            if rc == 0 {
                break;
            }
        }
        let one: libc::c_int = 1;
        // SAFETY: option value is a c_int.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if rc < 0 {
            return Err(last_err("PACKET_AUXDATA", iface));
        }
        for g in groups {
            // SAFETY: zeroed packet_mreq is valid.
            let mut mr: libc::packet_mreq = unsafe { std::mem::zeroed() };
            mr.mr_ifindex = ifindex as i32;
            mr.mr_type = libc::PACKET_MR_MULTICAST as u16;
            mr.mr_alen = 6;
            mr.mr_address[..6].copy_from_slice(g);
            // SAFETY: option value is a packet_mreq.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_PACKET,
                    libc::PACKET_ADD_MEMBERSHIP,
                    &mr as *const libc::packet_mreq as *const libc::c_void,
                    std::mem::size_of::<libc::packet_mreq>() as u32,
                )
            };
            if rc < 0 {
                return Err(last_err("PACKET_ADD_MEMBERSHIP", iface));
            }
        }
        Ok(PacketSocket {
            fd,
            iface: iface.to_string(),
            ifindex,
        })
    }

    /// Receive one frame if one is waiting (`Ok(None)` when none).
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<RxMeta>, SocketError> {
        // SAFETY: zeroed structs are valid; all pointers point at live locals.
        unsafe {
            let mut from: libc::sockaddr_ll = std::mem::zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            let mut cbuf = [0u64; 16];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = &mut from as *mut libc::sockaddr_ll as *mut libc::c_void;
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
            msg.msg_controllen = std::mem::size_of_val(&cbuf);
            let n = libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC);
            if n < 0 {
                let err = io::Error::last_os_error();
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    return Ok(None);
                }
                return Err(SocketError::Syscall {
                    what: "recvmsg",
                    iface: self.iface.clone(),
                    err,
                });
            }
            let mut vlan = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA {
                    let aux = std::ptr::read_unaligned(
                        libc::CMSG_DATA(c) as *const libc::tpacket_auxdata
                    );
                    if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                        vlan = Some(aux.tp_vlan_tci & 0x0fff);
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            Ok(Some(RxMeta {
                len: (n as usize).min(buf.len()),
                vlan,
                outgoing: from.sll_pkttype == libc::PACKET_OUTGOING,
            }))
        }
    }

    /// Send one full Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> Result<(), SocketError> {
        // SAFETY: pointer/len describe `frame`.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        if n < 0 {
            return Err(last_err("send", &self.iface));
        }
        Ok(())
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
