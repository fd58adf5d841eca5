//! lldpad instances in lab namespaces: their config (station or bridge
//! role), start and stop with a private IPC namespace and /dev/shm, and the
//! vdptool/lldptool steps the live tests use.
//!
//! Owns the lldpad processes it starts. Calls `lldpad`, `lldptool`,
//! `vdptool` inside a `Netns`.

use super::*;

/// Role of an lldpad instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LldpadRole {
    /// Default role (VDP station): what runs on a compute host.
    Station,
    /// EVB bridge role (`evbmode = "bridge"`, group ids on) on the given
    /// interface, LLDP rxtx with the EVB TLV sent.
    Bridge,
}

/// lldpad config text for `role` on `ifname` (empty for a station: a fresh
/// lldpad with nothing set, as on a compute host).
pub fn lldpad_config(role: LldpadRole, ifname: &str) -> String {
    match role {
        LldpadRole::Station => String::new(),
        LldpadRole::Bridge => format!(
            "nearest_customer_bridge : {{\n  {ifname} : {{\n    adminStatus = 3;\n    \
             tlvid0080c20d : {{ enableTx = true; evbmode = \"bridge\"; evbgpid = true; }};\n  }};\n}};\n"
        ),
    }
}

/// Bridge-role lldpad config for all its interfaces (`common`) that also
/// sends Port Description, System Name, System Description and a
/// Management Address (`mgmt_ipv4`): a leaf as topology discovery sees it.
pub fn bridge_config_with_info(mgmt_ipv4: &str) -> String {
    format!(
        "nearest_customer_bridge : {{\n  common : {{\n    adminStatus = 3;\n    \
         tlvid0080c20d : {{ enableTx = true; evbmode = \"bridge\"; evbgpid = true; }};\n    \
         tlvid00000004 : {{ enableTx = true; }};\n    \
         tlvid00000005 : {{ enableTx = true; }};\n    \
         tlvid00000006 : {{ enableTx = true; }};\n    \
         tlvid00000008 : {{ enableTx = true; ipv4 = \"{mgmt_ipv4}\"; }};\n  }};\n}};\n"
    )
}

/// Station-role lldpad config (all interfaces) sending its EVB TLV: a
/// neighbour that is NOT a bridge.
pub const STATION_TX_CONFIG: &str = "nearest_customer_bridge : {\n  common : {\n    \
     adminStatus = 3;\n    tlvid0080c20d : { enableTx = true; };\n  };\n};\n";

/// An lldpad daemon running in a namespace with a private `/dev/shm` and a
/// private, writable config file. Killed on drop.
#[derive(Debug)]
pub struct LldpadInstance {
    netns: String,
    child: Option<Child>,
    /// The config text it was started with (written again by `restart`).
    config_text: String,
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
        Self::start_with_config(ns, &lldpad_config(role, ifname), dir)
    }

    /// Start lldpad in `ns` with `config_text` as its (private, writable)
    /// config file `dir/lldpad-<ns>.conf`; log in `dir/lldpad-<ns>.log`.
    /// Returns once lldptool gets an answer (at most 10 s).
    pub fn start_with_config(
        ns: &Netns,
        config_text: &str,
        dir: &Path,
    ) -> io::Result<LldpadInstance> {
        std::fs::create_dir_all(dir)?;
        let mut inst = LldpadInstance {
            netns: ns.name().into(),
            child: None,
            config_text: config_text.into(),
            config: dir.join(format!("lldpad-{}.conf", ns.name())),
            log: dir.join(format!("lldpad-{}.log", ns.name())),
        };
        inst.spawn()?;
        Ok(inst)
    }

    /// Write the config afresh, spawn lldpad, wait for its answer.
    fn spawn(&mut self) -> io::Result<()> {
        std::fs::write(&self.config, &self.config_text)?;
        let logf = std::fs::File::create(&self.log)?;
        let script = format!(
            "mount -t tmpfs tmpfs /dev/shm && exec lldpad -p -f {} -V 6",
            self.config.display()
        );
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
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
        self.child = Some(child);
        // Ready when lldptool gets an answer (its pid).
        let ok = wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.netns, "lldptool", "-p"])
                .output()
                .ok()?;
            out.status.success().then_some(())
        });
        if ok.is_none() {
            return Err(io::Error::other(format!(
                "lldpad in {} did not answer within 10 s",
                self.netns
            )));
        }
        Ok(())
    }

    /// Stop the daemon (if running) and start a new one with the config
    /// text it was first started with: settings made since are lost, the
    /// pid changes.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// The daemon's pid as lldptool reports it.
    pub fn pid(&self) -> Option<u32> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns, "lldptool", "-p"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// The pid of the process the harness spawned: lldpad itself (`ip netns
    /// exec`, `unshare` and `sh -c exec` all exec), independent of what
    /// lldpad answers. `None` once stopped.
    pub fn child_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
/// EVB TX, group ids): the agent's own `lldpad::lldptool` calls, through an
/// `exec::Runner` in `ns`.
pub fn enable_station(ns: &Netns, ifname: &str) -> io::Result<()> {
    use crate::lldpad::lldptool;
    let r = ns.runner(Duration::from_secs(10));
    let fail = |e: crate::lldpad::LldpadError| io::Error::other(e.to_string());
    lldptool::enable_lldp(&r, ifname).map_err(fail)?;
    lldptool::enable_evb(&r, ifname).map_err(fail)?;
    lldptool::enable_gpid(&r, ifname).map_err(fail)?;
    Ok(())
}

/// The `vdptool -T` argv (the Python agent's) that asks lldpad for a VSI
/// request `mode` (assoc, deassoc, preassoc) on `ifname`: manager id 0,
/// type 0 version 0, `uuid`, no hints, `filter` as `VLAN-MAC-GROUP`. With
/// `wait`, `-W`: vdptool waits for the bridge's answer.
pub fn vdptool_set_argv(
    ifname: &str,
    mode: &str,
    uuid: &str,
    filter: &str,
    wait: bool,
) -> Vec<String> {
    let mut argv: Vec<String> = vec!["vdptool".into(), "-T".into(), "-i".into(), ifname.into()];
    if wait {
        argv.push("-W".into());
    }
    argv.extend(["-V".into(), mode.into()]);
    for c in [
        format!("mode={mode}"),
        "mgrid2=0".into(),
        "typeid=0".into(),
        "typeidver=0".into(),
        format!("uuid={uuid}"),
        "hints=none".into(),
        format!("filter={filter}"),
    ] {
        argv.extend(["-c".into(), c]);
    }
    argv
}

/// Plain readable listing of the VSIs lldpad in `ns` holds on `ifname`
/// (`vdptool -t -i IF -V assoc -c mode=assoc`), whatever its exit code.
pub fn vdptool_listing(ns: &Netns, ifname: &str) -> io::Result<String> {
    ns.stdout(&[
        "vdptool",
        "-t",
        "-i",
        ifname,
        "-V",
        "assoc",
        "-c",
        "mode=assoc",
    ])
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
