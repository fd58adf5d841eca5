//! Network-namespace harness for tests and lab tools: named network
//! namespaces, veth pairs between them, and lldpad instances (one per
//! namespace, each with a private `/dev/shm`, as lldpad keeps its pid in
//! POSIX shm). Everything is removed on `Drop`.
//!
//! Also the small pieces every live test needs: root/lldpad checks, a temp
//! dir removed on drop, deadline polling, lldpad config texts.
//!
//! Owns: the namespaces, processes and temp dirs it creates. Calls `ip`,
//! `unshare`, `lldpad`, `lldptool` directly (lab code); the station is
//! enabled through `exec::Runner`, as the agent does it. Not used by the
//! daemon.

use crate::exec::Runner;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn check(out: io::Result<Output>, what: &str) -> io::Result<Output> {
    let out = out?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Wait until `f` returns `Some`, polling every `step`, at most `limit`.
/// Lab helper: the wait is a channel timeout, not a sleep, so it is cheap.
pub fn wait_for<T>(limit: Duration, step: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    let tick = crossbeam_channel::tick(step);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        let _ = tick.recv();
    }
}

/// Like `wait_for`, but `f` says why it is not done yet: `Ok` as soon as
/// `f` returns `Ok`, else the last `Err` once `limit` has passed (so a
/// failed wait can show the last thing it saw).
pub fn poll_until<T, E>(
    limit: Duration,
    step: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + limit;
    let tick = crossbeam_channel::tick(step);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                let _ = tick.recv();
            }
        }
    }
}

/// Poll `f` every 100 ms until it is true (`true`) or `limit` passes
/// (`false`).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    wait_for(limit, Duration::from_millis(100), || f().then_some(())).is_some()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Whether a missing test prerequisite must fail the test instead of
/// skipping it: under `CI=true` and when `VDP_REQUIRE_PREREQS=1` (set by
/// `scripts/test`), a live test never passes without having run.
pub fn prerequisites_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("VDP_REQUIRE_PREREQS").is_ok_and(|v| v == "1")
}

/// Report a missing prerequisite of the calling test: panics (the test
/// fails) when [`prerequisites_required`], otherwise prints
/// `skipped: <test>: needs <what>` and returns `true` so the test can
/// return early. Every live test's early return goes through here.
pub fn skip_missing(what: &str) -> bool {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    if prerequisites_required() {
        panic!("{test}: prerequisite missing ({what}); CI=true forbids skipping");
    }
    eprintln!("skipped: {test}: needs {what}");
    true
}

/// Whether live lldpad tests can run here (root and an `lldpad` binary);
/// when they cannot, [`skip_missing`] decides between skip and failure.
pub fn lldpad_lab_ok() -> bool {
    let ok = is_root() && Command::new("lldpad").arg("-v").output().is_ok();
    if !ok {
        skip_missing("root and lldpad");
    }
    ok
}

/// A fresh private temp dir, `<tmp>/<tag>-<pid>-<n>`, removed (with all it
/// holds) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> io::Result<TempDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    /// Take charge of `path` (a short fixed path, e.g. for unix sockets):
    /// anything stale there is removed, the dir created afresh.
    pub fn at(path: PathBuf) -> io::Result<TempDir> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace created by the harness; deleted (with every process
/// still inside it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `name` (deleting a stale one left by an earlier run) and bring
    /// its loopback up.
    pub fn create(name: &str) -> io::Result<Netns> {
        if Path::new("/run/netns").join(name).exists() {
            kill_netns_pids(name);
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
        check(
            Command::new("ip").args(["netns", "add", name]).output(),
            "ip netns add",
        )?;
        let ns = Netns { name: name.into() };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, prog]);
        c
    }

    /// Run argv inside the namespace; error (with stderr) on non-zero exit.
    pub fn exec(&self, argv: &[&str]) -> io::Result<Output> {
        let mut c = self.command(argv[0]);
        c.args(&argv[1..]);
        check(c.output(), &argv.join(" "))
    }

    /// Run argv inside the namespace and return stdout; any exit code.
    pub fn exec_any(&self, argv: &[&str]) -> io::Result<Output> {
        let mut c = self.command(argv[0]);
        c.args(&argv[1..]);
        c.output()
    }

    /// Run argv inside the namespace, any exit code; its stdout as text.
    pub fn stdout<S: AsRef<str>>(&self, argv: &[S]) -> io::Result<String> {
        let argv: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
        let out = self.exec_any(&argv)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Start argv inside the namespace in the background, stdin from
    /// /dev/null, stdout and stderr to the file `log` (created afresh).
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(&self, argv: &[S], log: &Path) -> io::Result<NsChild> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::other("spawn: empty argv"))?;
        let logf = std::fs::File::create(log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()?;
        Ok(NsChild { child })
    }

    /// Run `f` on a thread (named `thread`) that has joined this namespace,
    /// e.g. to open raw sockets there; returns what `f` returns. A panic in
    /// `f` goes on in the caller.
    pub fn run_in<T: Send + 'static>(
        &self,
        thread: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        let path = Path::new("/run/netns").join(&self.name);
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || -> io::Result<T> {
                let fd = std::fs::File::open(&path)?;
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Ok(f())
            })?
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Send `frame` (a full Ethernet frame) `count` times out of `ifname`
    /// in this namespace from a raw packet socket, waiting `gap` after each.
    pub fn send_frames(
        &self,
        ifname: &str,
        frame: &[u8],
        count: usize,
        gap: Duration,
    ) -> io::Result<()> {
        let (ifname, frame) = (ifname.to_string(), frame.to_vec());
        self.run_in("netns-send", move || -> io::Result<()> {
            let sock = crate::lab::leaf::socket::PacketSocket::open(&ifname, &[])
                .map_err(|e| io::Error::other(e.to_string()))?;
            for _ in 0..count {
                sock.send(&frame)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                if !gap.is_zero() {
                    let _ = crossbeam_channel::after(gap).recv();
                }
            }
            Ok(())
        })?
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        let mut argv = vec!["ip"];
        argv.extend_from_slice(args);
        self.exec(&argv)
    }

    /// Runner prefix that makes `exec::Runner` run commands in this namespace.
    pub fn root_helper(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// An `exec::Runner` whose commands run inside this namespace.
    pub fn runner(&self, timeout: Duration) -> Runner {
        Runner::new(self.root_helper(), timeout)
    }

    /// MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> io::Result<String> {
        let out = self.exec(&["cat", &format!("/sys/class/net/{ifname}/address")])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// A process started in a namespace by `Netns::spawn`: SIGTERM on drop,
/// SIGKILL when it has not ended 3 s later.
#[derive(Debug)]
pub struct NsChild {
    child: Child,
}

impl NsChild {
    /// Its pid: the program itself (`ip netns exec` execs it).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The process, e.g. to signal it and `wait()` for its exit status.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for NsChild {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) of our own, not yet reaped child.
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGTERM);
            }
            let child = &mut self.child;
            let done = wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
                child.try_wait().ok().flatten()
            });
            if done.is_some() {
                return;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kill_netns_pids(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: plain kill(2) of a process inside our own namespace.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_netns_pids(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Create a veth pair `a_if` (in `a`) <-> `b_if` (in `b`), both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> io::Result<()> {
    veth_pair(a, a_if, b, b_if, None)
}

/// `veth`, with `b_if` given the MAC address `b_mac` before it comes up
/// (a known neighbour chassis/port id for LLDP tests).
pub fn veth_with_mac(a: &Netns, a_if: &str, b: &Netns, b_if: &str, b_mac: &str) -> io::Result<()> {
    veth_pair(a, a_if, b, b_if, Some(b_mac))
}

fn veth_pair(a: &Netns, a_if: &str, b: &Netns, b_if: &str, b_mac: Option<&str>) -> io::Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])?;
    if let Some(mac) = b_mac {
        b.ip(&["link", "set", b_if, "address", mac])?;
    }
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

mod lldpad;
pub use lldpad::*;

/// Unique short name for test resources: `<tag><pid%10000><n>`; fits in an
/// interface name when `tag` is at most 4 characters.
pub fn unique(tag: &str, n: u32) -> String {
    format!("{tag}{}{n}", std::process::id() % 10000)
}

/// A station lldpad and a bridge-role lldpad (Debian's, which echoes VLAN 0)
/// in two namespaces joined by a veth; the station side enabled as the agent
/// does it and the bridge's EVB TLV already seen. Dropped in field order:
/// daemons, then namespaces, then files; a bridge stopped with SIGSTOP is
/// resumed first so it can take its SIGTERM.
pub struct StationBridgeLab {
    pub bridge: LldpadInstance,
    pub station: LldpadInstance,
    pub sta: Netns,
    pub br: Netns,
    pub dir: TempDir,
    pub bridge_pid: u32,
    pub sta_if: String,
    pub br_if: String,
}

impl StationBridgeLab {
    /// Names: namespaces `<tag>s<..>`/`<tag>b<..>`, interfaces
    /// `<tag>S<..>`/`<tag>B<..>` (see `unique`; keep `tag` to 2-3 chars).
    pub fn start(tag: &str, n: u32) -> io::Result<StationBridgeLab> {
        let sta = Netns::create(&unique(&format!("{tag}s"), n))?;
        let br = Netns::create(&unique(&format!("{tag}b"), n))?;
        let sta_if = unique(&format!("{tag}S"), n);
        let br_if = unique(&format!("{tag}B"), n);
        veth(&sta, &sta_if, &br, &br_if)?;
        let dir = TempDir::new(&format!("{tag}-{n}"))?;
        let bridge = LldpadInstance::start(&br, LldpadRole::Bridge, &br_if, dir.path())?;
        let bridge_pid = bridge
            .pid()
            .ok_or_else(|| io::Error::other("bridge lldpad has no pid"))?;
        let station = LldpadInstance::start(&sta, LldpadRole::Station, &sta_if, dir.path())?;
        // Station side exactly as the agent enables it, through exec::Runner.
        enable_station(&sta, &sta_if)?;
        if !wait_evb_bridge(&sta, &sta_if, Duration::from_secs(10)) {
            return Err(io::Error::other("no EVB bridge seen by the station"));
        }
        Ok(StationBridgeLab {
            bridge,
            station,
            sta,
            br,
            dir,
            bridge_pid,
            sta_if,
            br_if,
        })
    }
}

impl Drop for StationBridgeLab {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the bridge lldpad this lab started.
        unsafe {
            libc::kill(self.bridge_pid as i32, libc::SIGCONT);
        }
    }
}

#[cfg(test)]
mod tests;
