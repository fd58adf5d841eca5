//! Network-namespace harness for tests and lab tools: named network
//! namespaces, veth pairs between them, and lldpad instances (one per
//! namespace, each with a private `/dev/shm`, as lldpad keeps its pid in
//! POSIX shm). Everything is removed on `Drop`.
//!
//! Owns: the namespaces and processes it creates. Calls `ip`, `unshare`,
//! `lldpad`, `lldptool` directly (lab code, not the daemon's runner).
//! Not used by the daemon.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

    /// MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> io::Result<String> {
        let out = self.exec(&["cat", &format!("/sys/class/net/{ifname}/address")])?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
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
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Role of an lldpad instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LldpadRole {
    /// Default role (VDP station): what runs on a compute host.
    Station,
    /// EVB bridge role (`evbmode = "bridge"`, group ids on) on the given
    /// interface, LLDP rxtx with the EVB TLV sent.
    Bridge,
}

/// An lldpad daemon running in a namespace with a private `/dev/shm` and a
/// private, writable config file. Killed on drop.
#[derive(Debug)]
pub struct LldpadInstance {
    netns: String,
    child: Option<Child>,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl LldpadInstance {
    /// Start lldpad in `ns`. For `Bridge`, `ifname` is the interface the
    /// bridge role is configured on. `dir` holds the config and the log.
    pub fn start(
        ns: &Netns,
        role: LldpadRole,
        ifname: &str,
        dir: &Path,
    ) -> io::Result<LldpadInstance> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join(format!("lldpad-{}.conf", ns.name()));
        let log = dir.join(format!("lldpad-{}.log", ns.name()));
        let text = match role {
            LldpadRole::Station => String::new(),
            LldpadRole::Bridge => format!(
                "nearest_customer_bridge : {{\n  {ifname} : {{\n    adminStatus = 3;\n    \
                 tlvid0080c20d : {{ enableTx = true; evbmode = \"bridge\"; evbgpid = true; }};\n  }};\n}};\n"
            ),
        };
        std::fs::write(&config, text)?;
        let logf = std::fs::File::create(&log)?;
        let script = format!(
            "mount -t tmpfs tmpfs /dev/shm && exec lldpad -p -f {} -V 6",
            config.display()
        );
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns.name(),
                "unshare",
                "--ipc",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()?;
        let inst = LldpadInstance {
            netns: ns.name().into(),
            child: Some(child),
            config,
            log,
        };
        // Ready when lldptool gets an answer (its pid).
        let ok = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            let out = Command::new("ip")
                .args(["netns", "exec", &inst.netns, "lldptool", "-p"])
                .output()
                .ok()?;
            out.status.success().then_some(())
        });
        if ok.is_none() {
            return Err(io::Error::other(format!(
                "lldpad in {} did not answer within 10 s",
                inst.netns
            )));
        }
        Ok(inst)
    }

    /// The daemon's pid as lldptool reports it.
    pub fn pid(&self) -> Option<u32> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns, "lldptool", "-p"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Stop the daemon (SIGTERM, then SIGKILL after 3 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = self.pid() {
                // SAFETY: kill(2) of the lldpad we started (pid from its own answer).
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
            let done = wait_for(Duration::from_secs(3), Duration::from_millis(20), || {
                child.try_wait().ok().flatten()
            });
            if done.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for LldpadInstance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Enable the station side on `ifname` the way the agent does (LLDP rxtx,
/// EVB TX, group ids) with plain lldptool calls.
pub fn enable_station(ns: &Netns, ifname: &str) -> io::Result<()> {
    ns.exec(&[
        "lldptool",
        "-L",
        "-i",
        ifname,
        "-g",
        "ncb",
        "adminStatus=rxtx",
    ])?;
    // rc 1 "Failed" when already enabled: ignore.
    let _ = ns.exec_any(&[
        "lldptool",
        "-T",
        "-i",
        ifname,
        "-g",
        "ncb",
        "-V",
        "evb",
        "enableTx=yes",
    ]);
    ns.exec(&[
        "lldptool",
        "-T",
        "-i",
        ifname,
        "-g",
        "ncb",
        "-V",
        "evb",
        "-c",
        "evbgpid=yes",
    ])?;
    Ok(())
}

/// Wait until the station on `ifname` sees a bridge EVB TLV with a group id
/// (`bridge:bgid`), then one more second for VDP to become usable
/// (lab-facts: readiness stages).
pub fn wait_evb_bridge(ns: &Netns, ifname: &str, limit: Duration) -> bool {
    let seen = wait_for(limit, Duration::from_millis(100), || {
        let out = ns
            .exec_any(&[
                "lldptool", "get-tlv", "-n", "-i", ifname, "-g", "ncb", "-V", "evb",
            ])
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("bridge:bgid")
            .then_some(())
    });
    if seen.is_some() {
        let _ = wait_for(
            Duration::from_millis(1200),
            Duration::from_millis(1200),
            || None::<()>,
        );
    }
    seen.is_some()
}

/// Unique short name for test resources: `<tag><pid%10000><n>`; fits in an
/// interface name when `tag` is at most 4 characters.
pub fn unique(tag: &str, n: u32) -> String {
    format!("{tag}{}{n}", std::process::id() % 10000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::Uid::effective().is_root()
    }

    #[test]
    fn netns_veth_and_station_bridge_evb() {
        if !root() || Command::new("lldpad").arg("-v").output().is_err() {
            eprintln!("skipped: needs root and lldpad");
            return;
        }
        let dir = std::env::temp_dir().join(unique("nsh", 0));
        let sta = Netns::create(&unique("nss", 0)).unwrap();
        let br = Netns::create(&unique("nsb", 0)).unwrap();
        veth(&sta, "s0", &br, "b0").unwrap();
        assert_eq!(sta.mac("s0").unwrap().len(), 17);
        let _b = LldpadInstance::start(&br, LldpadRole::Bridge, "b0", &dir).unwrap();
        let s = LldpadInstance::start(&sta, LldpadRole::Station, "s0", &dir).unwrap();
        assert!(s.pid().is_some());
        enable_station(&sta, "s0").unwrap();
        assert!(wait_evb_bridge(&sta, "s0", Duration::from_secs(10)));
        let _ = std::fs::remove_dir_all(dir);
    }
}
