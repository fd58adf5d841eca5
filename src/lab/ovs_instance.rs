//! A private userspace Open vSwitch for tests and lab scripts: its own
//! ovsdb-server and ovs-vswitchd with every file (database, sockets,
//! pidfiles, logs) in one directory, optionally inside a network namespace,
//! bridges on the `netdev` (userspace) datapath. Plus builders for the
//! Neutron-like topology the agent expects: br-int and br-ethd joined by the
//! patch pair int-br-ethd/phy-br-ethd, Neutron's default drop flows on the
//! patch ports, and "VM" ports (veth) tagged with a local VLAN and carrying
//! the external_ids Nova/Neutron set.
//!
//! Owns: the two daemons it starts (stopped by their own pidfiles only, on
//! `stop()` and on drop). Calls: `ovsdb-tool`, `ovsdb-server`,
//! `ovs-vswitchd`, `ovs-vsctl`, `ovs-ofctl`, `ip` through `exec::Runner`
//! with the root helper `env OVS_RUNDIR=.. OVS_DBDIR=.. OVS_LOGDIR=.. [ip netns exec NS]`.
//! Not used by the daemon.

use crate::exec::Runner;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where Debian/RHEL packages put the Open_vSwitch schema.
pub const SYSTEM_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// Cookie of the flows the topology builder installs in Neutron's place.
pub const NEUTRON_COOKIE: u64 = 0x4e65_7574_726f_6e00;

const DAEMONS: [&str; 2] = ["ovs-vswitchd", "ovsdb-server"];

/// Neutron-like bridge layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeutronTopology {
    pub br_int: String,
    pub br_ex: String,
    /// Patch port on br-int (`int-br-ethd`).
    pub int_patch: String,
    /// Patch port on the external bridge (`phy-br-ethd`).
    pub phy_patch: String,
    /// Install Neutron's flows: NORMAL at priority 0 on both bridges and
    /// `priority=2,in_port=<patch>,actions=drop` on both patch ports (what
    /// the Neutron OVS agent does; the agent's priority 3/4 flows override).
    pub neutron_flows: bool,
}

impl Default for NeutronTopology {
    fn default() -> Self {
        NeutronTopology {
            br_int: "br-int".into(),
            br_ex: "br-ethd".into(),
            int_patch: "int-br-ethd".into(),
            phy_patch: "phy-br-ethd".into(),
            neutron_flows: true,
        }
    }
}

/// A VM port as Nova plugs it and Neutron tags it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPortSpec {
    /// The OVS port (host side of the veth), e.g. `tap1234`.
    pub tap: String,
    /// The "VM" side of the veth.
    pub vm_if: String,
    pub port_uuid: String,
    pub mac: String,
    pub vm_uuid: String,
    /// Local VLAN tag (Neutron sets it once the port is bound).
    pub tag: Option<u16>,
}

/// A running private OVS.
#[derive(Debug)]
pub struct OvsInstance {
    netns: Option<String>,
    dir: PathBuf,
    runner: Runner,
    stopped: bool,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Wait without sleeping the thread in a loop of our own (lab polling).
fn pause(d: Duration) {
    let _ = crossbeam_channel::after(d).recv();
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn pid_is(pid: i32, daemon: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| {
            let c = c.trim();
            // comm is cut to 15 characters
            daemon.starts_with(c) && !c.is_empty()
        })
        .unwrap_or(false)
}

impl OvsInstance {
    /// The handle for an instance in `dir` (canonical), run inside `netns`:
    /// its commands get `OVS_RUNDIR`/`OVS_DBDIR`/`OVS_LOGDIR` = `dir`.
    fn handle(netns: Option<&str>, dir: PathBuf) -> OvsInstance {
        let d = dir.to_string_lossy().into_owned();
        let mut helper = vec![
            "env".to_string(),
            format!("OVS_RUNDIR={d}"),
            format!("OVS_DBDIR={d}"),
            format!("OVS_LOGDIR={d}"),
        ];
        if let Some(ns) = netns {
            helper.extend(["ip", "netns", "exec", ns].iter().map(|s| s.to_string()));
        }
        OvsInstance {
            netns: netns.map(String::from),
            runner: Runner::new(helper, Duration::from_secs(20)),
            dir,
            stopped: false,
        }
    }

    /// Start ovsdb-server and ovs-vswitchd with everything in `dir`
    /// (created if needed; keep its path short: unix socket paths are
    /// limited to 107 bytes), inside `netns` when given.
    pub fn start(netns: Option<&str>, dir: &Path) -> io::Result<OvsInstance> {
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let d = dir.to_string_lossy().into_owned();
        let inst = OvsInstance::handle(netns, dir);
        let db = format!("{d}/conf.db");
        if !Path::new(&db).exists() {
            let schema = std::env::var("OVS_SCHEMA").unwrap_or_else(|_| SYSTEM_SCHEMA.to_string());
            inst.run(&["ovsdb-tool", "create", &db, &schema])?;
        }
        inst.run(&[
            "ovsdb-server",
            &db,
            &format!("--remote=punix:{d}/db.sock"),
            &format!("--pidfile={d}/ovsdb-server.pid"),
            "--detach",
            &format!("--log-file={d}/ovsdb-server.log"),
            "-vconsole:off",
        ])?;
        inst.run(&["ovs-vsctl", "--no-wait", "init"])?;
        inst.start_vswitchd()?;
        Ok(inst)
    }

    /// Take charge of an instance started earlier (e.g. by `scripts/lab up`
    /// in another process) in `dir`, to inspect or `stop()` it. Fails when
    /// its ovsdb-server is not running.
    pub fn attach(netns: Option<&str>, dir: &Path) -> io::Result<OvsInstance> {
        let dir = dir.canonicalize()?;
        let d = dir.to_string_lossy().into_owned();
        let inst = OvsInstance::handle(netns, dir);
        if !inst.is_running("ovsdb-server") {
            let mut inst = inst;
            inst.stopped = true;
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no ovsdb-server running for {d}"),
            ));
        }
        Ok(inst)
    }

    /// Let the daemons run on after this value is dropped (lab scripts).
    pub fn detach(mut self) {
        self.stopped = true;
    }

    /// Whether `daemon` (`ovsdb-server` / `ovs-vswitchd`) of this instance runs.
    pub fn is_running(&self, daemon: &str) -> bool {
        self.daemon_pid(daemon).is_some()
    }

    fn daemon_pid(&self, daemon: &str) -> Option<i32> {
        let s = std::fs::read_to_string(self.pidfile(daemon)).ok()?;
        let pid = s.trim().parse::<i32>().ok()?;
        (pid > 1 && pid_is(pid, daemon)).then_some(pid)
    }

    fn start_vswitchd(&self) -> io::Result<()> {
        let d = self.dir_str();
        self.run(&[
            "ovs-vswitchd",
            &format!("unix:{d}/db.sock"),
            &format!("--pidfile={d}/ovs-vswitchd.pid"),
            "--detach",
            &format!("--log-file={d}/ovs-vswitchd.log"),
            "-vconsole:off",
        ])?;
        Ok(())
    }

    fn dir_str(&self) -> String {
        self.dir.to_string_lossy().into_owned()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// The variables OVS clients need to reach this instance.
    pub fn env(&self) -> Vec<(String, String)> {
        let d = self.dir_str();
        ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR"]
            .iter()
            .map(|k| (k.to_string(), d.clone()))
            .collect()
    }

    /// Root-helper words that run a command against this instance (its
    /// env, inside its netns): `env OVS_RUNDIR=.. .. [ip netns exec NS]`.
    /// Give them to `Runner::new` for the code under test.
    pub fn root_helper(&self) -> Vec<String> {
        self.runner.full_argv::<&str>(&[])
    }

    /// A fresh runner for code under test (own spawn counter).
    pub fn runner(&self, timeout: Duration) -> Runner {
        Runner::new(self.root_helper(), timeout)
    }

    /// Run argv against this instance; stdout on success, an error naming
    /// the command otherwise.
    pub fn run<S: AsRef<str>>(&self, argv: &[S]) -> io::Result<String> {
        self.runner.run(argv).map(|o| o.stdout).map_err(io_err)
    }

    pub fn vsctl(&self, args: &[&str]) -> io::Result<String> {
        let mut v = vec!["ovs-vsctl", "--timeout=10"];
        v.extend_from_slice(args);
        self.run(&v)
    }

    pub fn ofctl(&self, args: &[&str]) -> io::Result<String> {
        let mut v = vec!["ovs-ofctl"];
        v.extend_from_slice(args);
        self.run(&v)
    }

    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut v = vec!["ip"];
        v.extend_from_slice(args);
        self.run(&v)
    }

    fn pidfile(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.pid"))
    }

    /// Stop one of our daemons by its pidfile (SIGTERM, SIGKILL after 5 s).
    fn stop_daemon(&self, daemon: &str) {
        let Some(pid) = self.daemon_pid(daemon) else {
            return;
        };
        let target = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(pid) && Instant::now() < deadline {
            pause(Duration::from_millis(20));
        }
        if pid_alive(pid) && pid_is(pid, daemon) {
            let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(2);
            while pid_alive(pid) && Instant::now() < deadline {
                pause(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_file(self.pidfile(daemon));
    }

    /// Kill and restart ovs-vswitchd (OpenFlow flows are lost, the
    /// database and with it ports and ofports stay). Returns when the new
    /// vswitchd has caught up with the database.
    pub fn restart_vswitchd(&self) -> io::Result<()> {
        self.stop_daemon("ovs-vswitchd");
        self.start_vswitchd()?;
        // A waiting no-op transaction returns once vswitchd reconfigured.
        self.vsctl(&[
            "--",
            "set",
            "Open_vSwitch",
            ".",
            "external_ids:vdp-lab=restart",
        ])?;
        Ok(())
    }

    /// Stop both daemons (by their pidfiles only).
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        for d in DAEMONS {
            self.stop_daemon(d);
        }
        self.stopped = true;
    }

    /// Create br-int and the external bridge (`datapath_type=netdev`,
    /// `fail_mode=secure` like Neutron) with the patch pair between them, in
    /// one transaction, plus Neutron's base flows when asked.
    pub fn build_neutron_topology(&self, t: &NeutronTopology) -> io::Result<()> {
        let int_peer = format!("options:peer={}", t.phy_patch);
        let phy_peer = format!("options:peer={}", t.int_patch);
        self.vsctl(&[
            "--",
            "--may-exist",
            "add-br",
            &t.br_int,
            "--",
            "set",
            "Bridge",
            &t.br_int,
            "datapath_type=netdev",
            "fail_mode=secure",
            "--",
            "--may-exist",
            "add-br",
            &t.br_ex,
            "--",
            "set",
            "Bridge",
            &t.br_ex,
            "datapath_type=netdev",
            "fail_mode=secure",
            "--",
            "--may-exist",
            "add-port",
            &t.br_int,
            &t.int_patch,
            "--",
            "set",
            "Interface",
            &t.int_patch,
            "type=patch",
            &int_peer,
            "--",
            "--may-exist",
            "add-port",
            &t.br_ex,
            &t.phy_patch,
            "--",
            "set",
            "Interface",
            &t.phy_patch,
            "type=patch",
            &phy_peer,
        ])?;
        if t.neutron_flows {
            self.install_neutron_flows(t)?;
        }
        Ok(())
    }

    /// Neutron's base flows (see `NeutronTopology::neutron_flows`); also
    /// what a Neutron agent restart puts back.
    pub fn install_neutron_flows(&self, t: &NeutronTopology) -> io::Result<()> {
        let c = format!("cookie={NEUTRON_COOKIE:#x}");
        for (br, patch) in [(&t.br_int, &t.int_patch), (&t.br_ex, &t.phy_patch)] {
            self.ofctl(&["add-flow", br, &format!("{c},priority=0,actions=normal")])?;
            self.ofctl(&[
                "add-flow",
                br,
                &format!("{c},priority=2,in_port={patch},actions=drop"),
            ])?;
        }
        Ok(())
    }

    /// A veth pair `a`/`b`, both up.
    pub fn add_veth(&self, a: &str, b: &str) -> io::Result<()> {
        self.ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
        self.ip(&["link", "set", "dev", a, "up"])?;
        self.ip(&["link", "set", "dev", b, "up"])?;
        Ok(())
    }

    /// Plug a "VM" into br-int: veth tap/vm_if, the VM's MAC on vm_if, the
    /// tap an OVS port with `tag` (if given) and the external_ids Nova and
    /// Neutron set (`iface-id`, `attached-mac`, `iface-status=active`,
    /// `vm-uuid`). One ovs-vsctl transaction.
    pub fn add_vm_port(&self, br_int: &str, vm: &VmPortSpec) -> io::Result<()> {
        self.ip(&[
            "link", "add", &vm.tap, "type", "veth", "peer", "name", &vm.vm_if,
        ])?;
        self.ip(&["link", "set", "dev", &vm.vm_if, "address", &vm.mac])?;
        self.ip(&["link", "set", "dev", &vm.vm_if, "up"])?;
        self.ip(&["link", "set", "dev", &vm.tap, "up"])?;
        let tag = vm.tag.map(|t| format!("tag={t}"));
        let iface_id = format!("external_ids:iface-id={}", vm.port_uuid);
        let mac = format!("external_ids:attached-mac={}", vm.mac);
        let vm_uuid = format!("external_ids:vm-uuid={}", vm.vm_uuid);
        let mut args = vec!["--", "add-port", br_int, &vm.tap];
        if let Some(t) = &tag {
            args.push(t);
        }
        args.extend_from_slice(&[
            "--",
            "set",
            "Interface",
            &vm.tap,
            &iface_id,
            &mac,
            "external_ids:iface-status=active",
            &vm_uuid,
        ]);
        self.vsctl(&args)?;
        Ok(())
    }

    /// Set (Neutron binding the port) or clear a Port's tag.
    pub fn set_port_tag(&self, port: &str, tag: Option<u16>) -> io::Result<()> {
        match tag {
            Some(t) => self.vsctl(&["set", "Port", port, &format!("tag={t}")]),
            None => self.vsctl(&["clear", "Port", port, "tag"]),
        }
        .map(|_| ())
    }

    /// `ofport` of an interface (`-1`/`[]` -> None).
    pub fn ofport(&self, iface: &str) -> io::Result<Option<u32>> {
        let out = self.vsctl(&["get", "Interface", iface, "ofport"])?;
        Ok(out
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(|n| n as u32))
    }

    /// `ovs-ofctl dump-flows --no-stats --no-names BR [FILTER]`, lines trimmed,
    /// sorted (stable comparisons in tests).
    pub fn flows(&self, br: &str, filter: Option<&str>) -> io::Result<Vec<String>> {
        let mut args = vec!["dump-flows", "--no-stats", "--no-names", br];
        if let Some(f) = filter {
            args.push(f);
        }
        let out = self.ofctl(&args)?;
        let mut v: Vec<String> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("NXST") && !l.starts_with("OFPST"))
            .map(String::from)
            .collect();
        v.sort();
        Ok(v)
    }
}

impl Drop for OvsInstance {
    fn drop(&mut self) {
        self.stop();
    }
}
