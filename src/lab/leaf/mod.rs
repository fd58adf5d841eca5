//! `vdp-lab leaf`: an IEEE 802.1Qbg bridge (EVB/LLDP, ECP22, VDP22) on one
//! or more host ports (`--iface` repeated), handing out VDP VLANs from one
//! pool keyed by group ID, with pre-association, migration hints, VSIs that
//! move between ports, fault knobs and a gateway responder driven over a
//! control socket.
//!
//! Layout: pure protocol code in `lldp`, `ecp`, `vdp`, `gateway`, the
//! protocol engine in `engine` (frames and time in, frames out), I/O in
//! `socket` (AF_PACKET) and `control` (unix socket). This file holds the CLI
//! (`leaf` and `leaf-ctl`), the threads and signal handling.
//!
//! Threads: `leaf-io` (poll on every port's packet socket and a wake pipe,
//! runs the engine's timers), `leaf-ctl` (control socket), `leaf-signal` (SIGTERM /
//! SIGINT → shutdown). On shutdown an LLDPDU with TTL 0 is sent.
//!
//! Owns: the leaf process. Calls its submodules, `shutdown::Shutdown`.

pub mod control;
pub mod ecp;
pub mod engine;
pub mod gateway;
pub mod lldp;
pub mod socket;
pub mod vdp;

use crate::shutdown::Shutdown;
use engine::{EngineConfig, Leaf};
use lldp::{EvbParams, LocalInfo};
use parking_lot::Mutex;
use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Usage text of `vdp-lab leaf` and `vdp-lab leaf-ctl`.
pub const USAGE: &str = "\
usage: vdp-lab leaf --iface IF [--iface IF]... [--vlan-pool LO-HI] [--system-name NAME]
                    [--control PATH] [--system-desc TEXT] [--mgmt-addr IPV4] [--gateway GID=IP]...
                    [--retries R] [--rte N] [--rwd N] [--rka N] [--no-bgid]
                    [--tx-interval SECS] [--ecp-gap-ms MS] [--move-timeout-s SECS]
       vdp-lab leaf-ctl --control PATH COMMAND...
defaults: --vlan-pool 3000-3099 --system-name vdp-lab-leaf --mgmt-addr 10.10.0.101
          --retries 3 --rte 10 --rwd 20 --rka 20 --tx-interval 30 (TTL = 4 x interval)
          --ecp-gap-ms: least gap between two new ECPDUs of the leaf (default: the
          ack wait, at least 10 ms; 0 = only stop-and-wait)
          --move-timeout-s 30: a moved VSI's old-port copy is freed this long after the
          VSI was associated on its new port, unless the old port deassociates it first
commands: status | stats | history | drop-ecp N | drop-ecp-share PCT | reject-next CODE [hard] [keep] |
          reload |
          lldp stop|start | deassoc UUID|all | ka-ignore on|off | delay-ms N | gateway GID IP|off";

/// Default VLAN pool.
pub const DEFAULT_POOL: (u16, u16) = (3000, 3099);
pub const DEFAULT_SYSTEM_NAME: &str = "vdp-lab-leaf";
pub const DEFAULT_SYSTEM_DESC: &str = "vdp-lab leaf simulator (IEEE 802.1Qbg EVB bridge)";
pub const DEFAULT_MGMT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 101);

/// `vdp-lab leaf` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafArgs {
    /// Host ports, in order (port 0 first).
    pub ifaces: Vec<String>,
    pub vlan_pool: (u16, u16),
    pub system_name: String,
    pub system_desc: String,
    pub mgmt_addr: Ipv4Addr,
    pub control: Option<PathBuf>,
    pub gateways: Vec<(u32, Ipv4Addr)>,
    pub evb: EvbParams,
    pub tx_interval: Duration,
    /// `--ecp-gap-ms` (None: the ack wait, at least `ecp::MIN_GAP`).
    pub ecp_gap: Option<Duration>,
    /// `--move-timeout-s`.
    pub move_timeout: Duration,
}

/// A bad command line or a runtime failure.
#[derive(Debug)]
pub enum LeafError {
    Usage(String),
    Socket(socket::SocketError),
    Control(control::ControlError),
    Thread(String),
}

impl fmt::Display for LeafError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeafError::Usage(s) => write!(f, "{s}"),
            LeafError::Socket(e) => write!(f, "{e}"),
            LeafError::Control(e) => write!(f, "{e}"),
            LeafError::Thread(s) => write!(f, "thread: {s}"),
        }
    }
}

impl std::error::Error for LeafError {}

fn usage(s: impl Into<String>) -> LeafError {
    LeafError::Usage(s.into())
}

fn parse_pool(s: &str) -> Result<(u16, u16), LeafError> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| usage(format!("--vlan-pool {s:?}: expected LO-HI")))?;
    let lo: u16 = a
        .parse()
        .map_err(|_| usage(format!("--vlan-pool: bad {a:?}")))?;
    let hi: u16 = b
        .parse()
        .map_err(|_| usage(format!("--vlan-pool: bad {b:?}")))?;
    if !(2..=4094).contains(&lo) || !(2..=4094).contains(&hi) || lo > hi {
        return Err(usage("--vlan-pool: need 2 <= LO <= HI <= 4094"));
    }
    Ok((lo, hi))
}

fn parse_exp(flag: &str, v: &str, max: u8) -> Result<u8, LeafError> {
    v.parse::<u8>()
        .ok()
        .filter(|x| *x <= max)
        .ok_or_else(|| usage(format!("{flag}: expected 0..{max}, got {v:?}")))
}

/// Parse `vdp-lab leaf` arguments (after `leaf`).
pub fn parse_args(args: &[String]) -> Result<LeafArgs, LeafError> {
    let mut a = LeafArgs {
        ifaces: Vec::new(),
        vlan_pool: DEFAULT_POOL,
        system_name: DEFAULT_SYSTEM_NAME.into(),
        system_desc: DEFAULT_SYSTEM_DESC.into(),
        mgmt_addr: DEFAULT_MGMT_ADDR,
        control: None,
        gateways: Vec::new(),
        evb: EvbParams::default(),
        tx_interval: Duration::from_secs(30),
        ecp_gap: None,
        move_timeout: vdp::DEFAULT_MOVE_TIMEOUT,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--no-bgid" {
            a.evb.bgid = false;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            return Err(usage(USAGE));
        }
        let v = it
            .next()
            .ok_or_else(|| usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--iface" => {
                if a.ifaces.contains(v) {
                    return Err(usage(format!("--iface {v} given twice")));
                }
                a.ifaces.push(v.clone())
            }
            "--move-timeout-s" => {
                let s: u64 = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or_else(|| usage("--move-timeout-s: expected 1..3600 seconds"))?;
                a.move_timeout = Duration::from_secs(s);
            }
            "--vlan-pool" => a.vlan_pool = parse_pool(v)?,
            "--system-name" => a.system_name = v.clone(),
            "--system-desc" => a.system_desc = v.clone(),
            "--mgmt-addr" => {
                a.mgmt_addr = v
                    .parse()
                    .map_err(|_| usage(format!("--mgmt-addr: bad IPv4 {v:?}")))?
            }
            "--control" => a.control = Some(PathBuf::from(v)),
            "--gateway" => {
                let (g, ip) = v
                    .split_once('=')
                    .ok_or_else(|| usage("--gateway: expected GID=IP"))?;
                let g: u32 = g
                    .parse()
                    .map_err(|_| usage(format!("--gateway: bad group id {g:?}")))?;
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| usage(format!("--gateway: bad IPv4 {ip:?}")))?;
                a.gateways.push((g, ip));
            }
            "--retries" => a.evb.retries = parse_exp(flag, v, 7)?,
            "--rte" => a.evb.rte = parse_exp(flag, v, 31)?,
            "--rwd" => a.evb.rwd = parse_exp(flag, v, 31)?,
            "--rka" => a.evb.rka = parse_exp(flag, v, 31)?,
            "--tx-interval" => {
                let s: u64 = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or_else(|| usage("--tx-interval: expected 1..3600 seconds"))?;
                a.tx_interval = Duration::from_secs(s);
            }
            "--ecp-gap-ms" => {
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|ms| *ms <= 1000)
                    .ok_or_else(|| usage("--ecp-gap-ms: expected 0..1000"))?;
                a.ecp_gap = Some(Duration::from_millis(ms));
            }
            x => return Err(usage(format!("unknown option {x:?}\n{USAGE}"))),
        }
    }
    if a.ifaces.is_empty() {
        return Err(usage(format!("--iface is required\n{USAGE}")));
    }
    Ok(a)
}

fn random_seq() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: writes at most 2 bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, 2, 0) };
    if n == 2 {
        u16::from_ne_bytes(b)
    } else {
        (std::process::id() as u16) ^ (Instant::now().elapsed().subsec_nanos() as u16)
    }
}

/// A pipe that wakes the I/O thread's poll.
#[derive(Debug)]
struct Waker {
    r: OwnedFd,
    w: OwnedFd,
}

impl Waker {
    fn new() -> Result<Waker, LeafError> {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| LeafError::Thread(format!("pipe: {e}")))?;
        Ok(Waker { r, w })
    }
    fn wake(&self) {
        let _ = nix::unistd::write(&self.w, &[1]);
    }
    fn drain(&self) {
        let mut b = [0u8; 64];
        while matches!(nix::unistd::read(self.r.as_raw_fd(), &mut b), Ok(n) if n > 0) {}
    }
}

fn io_loop(
    socks: &[socket::PacketSocket],
    leaf: &Mutex<Leaf>,
    waker: &Waker,
    shutdown: &Shutdown,
) -> Result<(), LeafError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut buf = vec![0u8; 65536];
    let send_all = |frames: Vec<(usize, Vec<u8>)>| {
        for (port, f) in frames {
            let Some(sock) = socks.get(port) else {
                continue;
            };
            if let Err(e) = sock.send(&f) {
                log::warn!("{e}");
            }
        }
    };
    while !shutdown.is_set() {
        let now = Instant::now();
        let wait = leaf
            .lock()
            .next_deadline(now)
            .saturating_duration_since(now);
        let ms = (wait.as_micros().div_ceil(1000)).min(1000) as u16;
        let mut fds: Vec<PollFd> = socks
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(waker.r.as_fd(), PollFlags::POLLIN));
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(LeafError::Thread(format!("poll: {e}"))),
        }
        drop(fds);
        waker.drain();
        for (port, sock) in socks.iter().enumerate() {
            loop {
                match sock.recv(&mut buf) {
                    Ok(Some(m)) if m.outgoing => {}
                    Ok(Some(m)) => {
                        let mut l = leaf.lock();
                        l.on_port_frame(port, Instant::now(), &buf[..m.len], m.vlan);
                        let out = l.take_outbox();
                        drop(l);
                        send_all(out);
                    }
                    Ok(None) => break,
                    Err(socket::SocketError::Syscall { err, .. })
                        if err.raw_os_error() == Some(libc::ENETDOWN) =>
                    {
                        break
                    }
                    Err(e) => return Err(LeafError::Socket(e)),
                }
            }
        }
        let mut l = leaf.lock();
        l.tick(Instant::now());
        let out = l.take_outbox();
        drop(l);
        send_all(out);
    }
    let bye = leaf.lock().shutdown_lldpdus();
    send_all(bye);
    Ok(())
}

/// Block SIGTERM/SIGINT in this thread (inherited by threads spawned
/// later) and turn them into a shutdown from a dedicated thread.
fn spawn_signal_thread(shutdown: Shutdown, waker: Arc<Waker>) -> Result<(), LeafError> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| LeafError::Thread(format!("sigmask: {e}")))?;
    std::thread::Builder::new()
        .name("leaf-signal".into())
        .spawn(move || {
            if let Ok(sig) = set.wait() {
                log::info!("{sig:?}: shutting down");
            }
            shutdown.trigger();
            waker.wake();
        })
        .map_err(|e| LeafError::Thread(e.to_string()))?;
    Ok(())
}

/// Run the leaf until SIGTERM/SIGINT.
pub fn run(a: &LeafArgs) -> Result<(), LeafError> {
    let mut socks = Vec::with_capacity(a.ifaces.len());
    let mut ports = Vec::with_capacity(a.ifaces.len());
    for ifname in &a.ifaces {
        let mac = socket::iface_mac(ifname).map_err(LeafError::Socket)?;
        let sock =
            socket::PacketSocket::open(ifname, &[lldp::NCB_MAC]).map_err(LeafError::Socket)?;
        let local = LocalInfo {
            mac,
            ifname: ifname.clone(),
            ifindex: sock.ifindex,
            system_name: a.system_name.clone(),
            system_desc: a.system_desc.clone(),
            mgmt_addr: a.mgmt_addr,
        };
        log::info!("port {ifname} ({})", lldp::mac_text(&mac));
        ports.push((local, random_seq()));
        socks.push(sock);
    }
    let ttl = u16::try_from(a.tx_interval.as_secs() * 4).unwrap_or(u16::MAX);
    let cfg = EngineConfig {
        evb: a.evb,
        tx_interval: a.tx_interval,
        ttl,
        vlan_lo: a.vlan_pool.0,
        vlan_hi: a.vlan_pool.1,
    };
    let mut engine = Leaf::with_ports(ports, cfg, Instant::now());
    engine.set_ecp_gap(a.ecp_gap);
    engine.vdp.move_timeout = a.move_timeout;
    for (g, ip) in &a.gateways {
        engine.vdp.gateways.insert(*g, *ip);
    }
    let leaf = Arc::new(Mutex::new(engine));
    let shutdown = Shutdown::new();
    let waker = Arc::new(Waker::new()?);
    spawn_signal_thread(shutdown.clone(), waker.clone())?;
    let listener = match &a.control {
        Some(p) => Some(control::bind(p).map_err(LeafError::Control)?),
        None => None,
    };
    log::info!(
        "leaf on {}, VLAN pool {}-{}, control {:?}",
        a.ifaces.join(" "),
        a.vlan_pool.0,
        a.vlan_pool.1,
        a.control
    );
    let ctl = match listener {
        Some(l) => {
            let (leaf, waker, sd) = (leaf.clone(), waker.clone(), shutdown.clone());
            Some(
                std::thread::Builder::new()
                    .name("leaf-ctl".into())
                    .spawn(move || {
                        control::serve(l, &sd, &|line| {
                            let reply = match control::parse_command(line) {
                                Ok(cmd) => {
                                    log::info!("control: {line}");
                                    leaf.lock().command(Instant::now(), &cmd)
                                }
                                Err(e) => serde_json::json!({"ok": false, "error": e}),
                            };
                            waker.wake();
                            reply.to_string()
                        })
                    })
                    .map_err(|e| LeafError::Thread(e.to_string()))?,
            )
        }
        None => None,
    };
    let io = {
        let (leaf, waker, sd) = (leaf.clone(), waker.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("leaf-io".into())
            .spawn(move || {
                let r = io_loop(&socks, &leaf, &waker, &sd);
                sd.trigger();
                r
            })
            .map_err(|e| LeafError::Thread(e.to_string()))?
    };
    let result = io
        .join()
        .map_err(|_| LeafError::Thread("leaf-io panicked".into()))
        .and_then(|r| r);
    shutdown.trigger();
    if let Some(t) = ctl {
        let _ = t.join();
    }
    if let Some(p) = &a.control {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn init_log() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .try_init();
}

/// Entry point of `vdp-lab leaf ARGS`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    init_log();
    let a = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vdp-lab leaf: {e}");
            return 2;
        }
    };
    match run(&a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vdp-lab leaf: {e}");
            1
        }
    }
}

/// Entry point of `vdp-lab leaf-ctl --control PATH COMMAND...`: prints the
/// JSON reply; exit 0 when it says `"ok": true`, 1 otherwise, 2 on usage.
pub fn ctl_main(args: &[String]) -> i32 {
    let (path, words) = match args {
        [flag, p, rest @ ..] if flag == "--control" && !rest.is_empty() => (PathBuf::from(p), rest),
        _ => {
            eprintln!("{USAGE}");
            return 2;
        }
    };
    match control::request(&path, &words.join(" "), Duration::from_secs(10)) {
        Ok(reply) => {
            println!("{reply}");
            let ok = serde_json::from_str::<serde_json::Value>(&reply)
                .ok()
                .and_then(|v| v.get("ok").and_then(|o| o.as_bool()))
                .unwrap_or(false);
            if ok {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("vdp-lab leaf-ctl: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_defaults_and_flags() {
        let a = parse_args(&s(&["--iface", "swp1"])).unwrap();
        assert_eq!(a.vlan_pool, (3000, 3099));
        assert_eq!(a.system_name, "vdp-lab-leaf");
        assert_eq!(a.mgmt_addr, Ipv4Addr::new(10, 10, 0, 101));
        assert_eq!(
            (a.evb.retries, a.evb.rte, a.evb.rwd, a.evb.rka),
            (3, 10, 20, 20)
        );
        let a = parse_args(&s(&[
            "--iface",
            "x",
            "--vlan-pool",
            "10-12",
            "--gateway",
            "30001=10.0.0.1",
            "--rte",
            "14",
            "--control",
            "/tmp/c",
            "--no-bgid",
        ]))
        .unwrap();
        assert_eq!(a.vlan_pool, (10, 12));
        assert_eq!(a.gateways, vec![(30001, Ipv4Addr::new(10, 0, 0, 1))]);
        assert_eq!(a.evb.rte, 14);
        assert!(!a.evb.bgid);
        assert!(parse_args(&s(&[])).is_err());
        assert!(parse_args(&s(&["--iface", "x", "--vlan-pool", "5-1"])).is_err());
        assert!(parse_args(&s(&["--iface", "x", "--vlan-pool", "1-4095"])).is_err());
        assert!(parse_args(&s(&["--iface", "x", "--bogus", "1"])).is_err());
        assert!(parse_args(&s(&["--iface"])).is_err());
        assert_eq!(parse_args(&s(&["--iface", "x"])).unwrap().ecp_gap, None);
        let a = parse_args(&s(&["--iface", "x", "--ecp-gap-ms", "0"])).unwrap();
        assert_eq!(a.ecp_gap, Some(Duration::ZERO));
        assert!(parse_args(&s(&["--iface", "x", "--ecp-gap-ms", "-1"])).is_err());
        let a = parse_args(&s(&[
            "--iface",
            "a",
            "--iface",
            "b",
            "--move-timeout-s",
            "5",
        ]))
        .unwrap();
        assert_eq!(a.ifaces, vec!["a", "b"]);
        assert_eq!(a.move_timeout, Duration::from_secs(5));
        assert_eq!(
            parse_args(&s(&["--iface", "a"])).unwrap().move_timeout,
            Duration::from_secs(30)
        );
        assert!(parse_args(&s(&["--iface", "a", "--iface", "a"])).is_err());
        assert!(parse_args(&s(&["--iface", "a", "--move-timeout-s", "0"])).is_err());
    }
}
