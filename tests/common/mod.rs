//! End-to-end lab harness for tests: drives `scripts/lab` (namespaces,
//! userspace OVS, station lldpad, `vdp-lab leaf`, VMs), the reference
//! controller (admin API over `curl` in the host netns) and the agent, each
//! lab under its own name so tests can run side by side. Everything is torn
//! down on drop (`KEEP_LAB=1` keeps it for a post-mortem).
//!
//! Two-host labs (`HOSTS=2 scripts/lab`): `Lab::up_hosts` /
//! `Lab::up_running_hosts` bring one up; `Lab::on_host(n)` is a view of
//! compute host `n` (its netns, OVS, station lldpad, agent, `host_id`
//! `<lab>-compute<n>`) on which every per-host helper (`status`, `flows`,
//! `translation_flows`, `expected_flows`, `vm_add`, `port_add`,
//! `send_event`, `start_agent`, ...) acts, while the controller and the
//! leaf stay the lab's; `vm_plug`, `vm_move`, `vm_unplug` re-plug a VM
//! between hosts and `migrate*` drive the controller's live migration.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Cookie of every flow the agent programs ("vdpagent").
pub const COOKIE: &str = "cookie=0x7664706167656e74";

pub fn root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

pub fn have_tools() -> bool {
    ["lldpad", "vdptool", "ovs-vswitchd", "ip", "curl", "ping"]
        .iter()
        .all(|t| {
            Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
}

/// Skip (return true) when the lab cannot run here, printing why.
pub fn skip() -> bool {
    (!root() || !have_tools())
        && vdp_agent::lab::netns::skip_missing(
            "root, lldpad, openvswitch, iproute2, curl (scripts/install-deps)",
        )
}

pub fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vdp-agent"))
        .parent()
        .expect("binary has a directory")
        .to_path_buf()
}

/// Poll `f` every 50 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    vdp_agent::lab::netns::wait_for(limit, Duration::from_millis(50), &mut f)
}

/// Poll `f` until it is true or `limit` passes; true when it became true.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    wait_for(limit, || f().then_some(())).is_some()
}

/// Wait without `thread::sleep` (clippy-friendly in tests too).
pub fn pause(d: Duration) {
    let _ = crossbeam_channel::after(d).recv();
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    pub host_id: String,
    /// Compute host this value speaks for (1 unless made by `on_host`).
    pub host_n: u32,
    /// That host's state directory (agent.yaml, agent.log, ovs/, ...):
    /// `dir` for host 1, `dir/host<n>` otherwise.
    pub host_dir: PathBuf,
    /// Whether dropping this value tears the lab down (not for `on_host` views).
    teardown: bool,
}

#[derive(Debug, Clone)]
pub struct Vm {
    pub name: String,
    pub port_uuid: String,
    pub mac: String,
    pub net_uuid: String,
    pub segment: u32,
    pub local_vlan: u16,
    pub ip: String,
    pub gw: String,
}

impl Vm {
    /// VM number `n` (netns `<lab>-vmN`, tap `tap-vmN`) on network `net`
    /// (segment 30000+net, subnet 10.30.net.0/24, gateway .1 answered by
    /// the leaf: scripts/lab configures gateways for nets 1 and 2).
    pub fn new(n: u32, net: u32, local_vlan: u16) -> Vm {
        Vm {
            name: format!("vm{n}"),
            port_uuid: format!("{n:08x}-1111-4111-8111-{n:012x}"),
            mac: format!("fa:16:3e:00:{:02x}:{:02x}", n / 256, n % 256),
            net_uuid: format!("{net:08x}-2222-4222-8222-{net:012x}"),
            segment: 30000 + net,
            local_vlan,
            ip: format!("10.30.{net}.{}/24", 10 + n),
            gw: format!("10.30.{net}.1"),
        }
    }

    /// The VM object of a `vm_info` event (docs/protocol.md).
    pub fn vm_info(&self, host: &str, status: &str) -> Value {
        json!({
            "status": status,
            "vm_mac": self.mac,
            "segmentation_id": self.segment,
            "host": host,
            "port_uuid": self.port_uuid,
            "net_uuid": self.net_uuid,
            "oui": {"oui_id": "cisco", "vm_name": self.name, "vm_uuid": self.port_uuid,
                    "ip_addr": self.ip.split('/').next().unwrap_or_default(),
                    "gw_mac": null, "fwd_mod": "anycast-gateway"},
        })
    }
}

impl Lab {
    /// Bring a lab up. `name` must be short (namespaces `<name>-host`,
    /// `<name>-vmN`). `env` overrides scripts/lab variables
    /// (SYNC_TIMEOUT_S, FLOW_CHECK_S, LEAF_ARGS, ...). No VMs are created:
    /// use `vm_add`.
    pub fn up(name: &str, env: &[(&str, &str)]) -> Lab {
        let dir = PathBuf::from(format!("/run/vdp-lab/{name}"));
        let mut lab = Lab {
            name: name.into(),
            host_dir: dir.clone(),
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            host_id: format!("{name}-compute1"),
            host_n: 1,
            teardown: true,
        };
        lab.env.push(("LAB_VMS".into(), "0".into()));
        lab.env
            .push(("VDP_BIN".into(), bin_dir().display().to_string()));
        let _ = lab.script(&["down"]);
        lab.script_ok(&["up"]);
        lab
    }

    /// `up` + controller + agent, waiting until the agent has set up the
    /// uplink (status `uplink.detected`).
    pub fn up_running(name: &str, env: &[(&str, &str)]) -> Lab {
        let lab = Lab::up(name, env);
        lab.start_server();
        lab.start_agent();
        lab.wait_uplink(Duration::from_secs(30));
        lab
    }

    /// Bring up a lab of `hosts` compute hosts (`HOSTS=<hosts> scripts/lab
    /// up`: netns `<name>-host`, `<name>-host2`, ..., one leaf with a port
    /// `swp<n>` per host). The value is host 1; `on_host(n)` for the others.
    pub fn up_hosts(name: &str, hosts: u32, env: &[(&str, &str)]) -> Lab {
        let h = hosts.to_string();
        let mut e: Vec<(&str, &str)> = env.to_vec();
        e.push(("HOSTS", &h));
        Lab::up(name, &e)
    }

    /// `up_hosts` + controller + every host's agent, waiting until each
    /// has set up its uplink.
    pub fn up_running_hosts(name: &str, hosts: u32, env: &[(&str, &str)]) -> Lab {
        let lab = Lab::up_hosts(name, hosts, env);
        lab.start_server();
        for n in 1..=hosts {
            lab.on_host(n).start_agent();
        }
        for n in 1..=hosts {
            lab.on_host(n).wait_uplink(Duration::from_secs(30));
        }
        lab
    }

    /// A view of compute host `n` of this lab (`HOST_N=<n>` for
    /// scripts/lab): per-host helpers act on that host; the controller
    /// (`admin`, `vdp_lab`, `port_*`) and the leaf stay the lab's. Dropping
    /// it does not tear anything down.
    pub fn on_host(&self, n: u32) -> Lab {
        let mut env: Vec<(String, String)> = self
            .env
            .iter()
            .filter(|(k, _)| k != "HOST_N")
            .cloned()
            .collect();
        env.push(("HOST_N".into(), n.to_string()));
        Lab {
            name: self.name.clone(),
            dir: self.dir.clone(),
            env,
            host_id: format!("{}-compute{n}", self.name),
            host_n: n,
            host_dir: if n == 1 {
                self.dir.clone()
            } else {
                self.dir.join(format!("host{n}"))
            },
            teardown: false,
        }
    }

    pub fn script(&self, args: &[&str]) -> Output {
        let mut c = Command::new(top().join("scripts/lab"));
        c.args(args).env("LAB", &self.name);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().expect("run scripts/lab")
    }

    /// `script` on host 1 whatever host this value speaks for (the
    /// controller runs in host 1's netns).
    fn script_host1(&self, args: &[&str]) -> Output {
        let mut c = Command::new(top().join("scripts/lab"));
        c.args(args).env("LAB", &self.name);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.env("HOST_N", "1");
        c.output().expect("run scripts/lab")
    }

    pub fn script_ok(&self, args: &[&str]) -> String {
        let out = self.script(args);
        assert!(out.status.success(), "scripts/lab {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn start_server(&self) {
        self.script_ok(&["server-start"]);
    }

    pub fn stop_server(&self) {
        self.script_ok(&["server-stop"]);
    }

    pub fn start_agent(&self) {
        self.script_ok(&["agent-start"]);
    }

    /// SIGTERM the agent and wait until it is gone; returns how long it took.
    pub fn stop_agent(&self) -> Duration {
        let pid = self.agent_pid();
        let t = Instant::now();
        self.script_ok(&["agent-stop"]);
        let took = t.elapsed();
        if let Some(pid) = pid {
            assert!(!pid_alive(pid), "agent {pid} still alive after agent-stop");
        }
        took
    }

    pub fn agent_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.host_dir.join("agent.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn agent_alive(&self) -> bool {
        self.agent_pid().is_some_and(pid_alive)
    }

    /// Kill the station lldpad and start a new one with the same config file.
    pub fn lldpad_restart(&self) {
        self.script_ok(&["lldpad-restart"]);
    }

    /// Kill ovs-vswitchd and start a new one (database kept, flows lost).
    pub fn ovs_restart(&self) {
        self.script_ok(&["ovs-restart"]);
    }

    /// Run argv in the host netns with the lab's OVS environment.
    pub fn host(&self, argv: &[&str]) -> Output {
        let mut a = vec!["host"];
        a.extend_from_slice(argv);
        self.script(&a)
    }

    pub fn host_ok(&self, argv: &[&str]) -> String {
        let out = self.host(argv);
        assert!(out.status.success(), "{argv:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `vdp-lab ARGS` in host 1's netns (where the controller listens).
    pub fn vdp_lab(&self, args: &[&str]) -> Output {
        let bin = bin_dir().join("vdp-lab");
        let bin = bin.to_str().expect("utf-8 path");
        let mut a = vec!["host", bin];
        a.extend_from_slice(args);
        self.script_host1(&a)
    }

    pub fn server_url(&self) -> String {
        "http://127.0.0.1:9696".into()
    }

    // ---- controller admin API ----

    /// An admin API call (`path` below `/admin/`); the JSON answer, or
    /// `Null` when the server is not reachable / did not answer JSON.
    pub fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("{}/admin/{path}", self.server_url());
        let b = body.map(Value::to_string);
        let mut argv = vec!["curl", "-s", "-m", "30", "-X", method, &url];
        if let Some(b) = &b {
            argv.extend_from_slice(&["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let mut a = vec!["host"];
        a.extend_from_slice(&argv);
        let out = self.script_host1(&a);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// `POST /admin/fault` (merged: `fail_next`, `delay_ms`, `down`).
    pub fn fault(&self, f: Value) {
        let v = self.admin("POST", "fault", Some(&f));
        assert!(v.is_object(), "fault {f}: {v}");
    }

    pub fn clear_fault(&self) {
        self.admin("DELETE", "fault", None);
    }

    /// Queue an event of `kind` (any JSON) for this lab's agent.
    pub fn send_event(&self, kind: Value, payload: Value) -> u64 {
        let v = self.admin(
            "POST",
            &format!("events/{}", self.host_id),
            Some(&json!({"type": kind, "payload": payload})),
        );
        v["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("event not queued: {v}"))
    }

    /// Queue `raw` as the whole wire object of an event.
    pub fn send_raw_event(&self, raw: Value) -> u64 {
        let v = self.admin(
            "POST",
            &format!("events/{}", self.host_id),
            Some(&json!({ "raw": raw })),
        );
        v["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("event not queued: {v}"))
    }

    /// The agent's event queue at the controller (`acked`, `next_seq`, `events`).
    pub fn events(&self) -> Value {
        self.admin("GET", &format!("events/{}", self.host_id), None)
    }

    pub fn vm_add(&self, vm: &Vm) {
        let lv = vm.local_vlan.to_string();
        self.script_ok(&["vm-add", &vm.name, &vm.port_uuid, &vm.mac, &lv, &vm.ip]);
    }

    /// Announce the port at the controller (queues a vm_info up event).
    pub fn port_add(&self, vm: &Vm) {
        let seg = vm.segment.to_string();
        let ip = vm.ip.split('/').next().unwrap_or_default().to_string();
        let url = self.server_url();
        let out = self.vdp_lab(&[
            "port",
            "add",
            "--server",
            &url,
            "--host",
            &self.host_id,
            "--port-uuid",
            &vm.port_uuid,
            "--mac",
            &vm.mac,
            "--net-uuid",
            &vm.net_uuid,
            "--segment",
            &seg,
            "--vm-name",
            &vm.name,
            "--ip",
            &ip,
        ]);
        assert!(out.status.success(), "port add: {}", text(&out));
    }

    /// Mark the port down at the controller (queues a vm_info down event).
    pub fn port_del(&self, vm: &Vm) {
        let url = self.server_url();
        let out = self.vdp_lab(&[
            "port",
            "del",
            "--server",
            &url,
            "--port-uuid",
            &vm.port_uuid,
        ]);
        assert!(out.status.success(), "port del: {}", text(&out));
    }

    /// The controller's view of every port.
    pub fn ports(&self) -> Vec<Value> {
        self.admin("GET", "ports", None)["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn port(&self, port_uuid: &str) -> Option<Value> {
        let v = self.admin("GET", &format!("ports/{port_uuid}"), None);
        v.get("port_uuid").is_some().then_some(v)
    }

    /// Wait (server side, `/wait`) until the agent reported `result` for
    /// the port's last add/delete; the port record when it did.
    pub fn wait_result(&self, port_uuid: &str, result: &str, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_secs()
                .max(1);
            let v = self.admin(
                "GET",
                &format!(
                    "ports/{port_uuid}/wait?result={result}&timeout={}",
                    left.min(25)
                ),
                None,
            );
            if v["matched"] == true {
                return Some(v["port"].clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            if v.is_null() {
                pause(Duration::from_millis(200));
            }
        }
    }

    /// Wait until the controller has a record for the port satisfying `pred`.
    pub fn wait_port(
        &self,
        port_uuid: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        wait_for(limit, || self.port(port_uuid).filter(|p| pred(p)))
    }

    /// RPC calls recorded by the reference controller (`method` "" = all),
    /// with ids above `since`.
    pub fn calls_since(&self, method: &str, since: u64) -> Vec<Value> {
        let mut q = format!("calls?since={since}");
        if !method.is_empty() {
            q.push_str(&format!("&method={method}"));
        }
        self.admin("GET", &q, None)["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.calls_since(method, 0)
    }

    /// Id of the newest recorded call (0 when none).
    pub fn last_call_id(&self) -> u64 {
        self.calls("")
            .iter()
            .filter_map(|c| c["id"].as_u64())
            .max()
            .unwrap_or(0)
    }

    /// `update_vm_result` calls (answered 200) for a port after call `since`.
    pub fn results_for(&self, port_uuid: &str, since: u64) -> Vec<Value> {
        self.calls_since("update_vm_result", since)
            .into_iter()
            .filter(|c| c["args"]["port_uuid"] == port_uuid)
            .collect()
    }

    // ---- OVS ----

    pub fn flows(&self, br: &str) -> Vec<String> {
        self.host_ok(&["ovs-ofctl", "dump-flows", br, "--no-stats"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with("NXST") && !l.starts_with("OFPST"))
            .collect()
    }

    /// `flows` or None when OVS does not answer (e.g. while it restarts).
    pub fn try_flows(&self, br: &str) -> Option<Vec<String>> {
        let out = self.host(&["ovs-ofctl", "dump-flows", br, "--no-stats"]);
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty() && !l.starts_with("NXST") && !l.starts_with("OFPST"))
                .collect()
        })
    }

    pub fn ofport(&self, iface: &str) -> u32 {
        self.host_ok(&["ovs-vsctl", "get", "Interface", iface, "ofport"])
            .trim()
            .parse()
            .expect("ofport")
    }

    /// The VLAN translation flows (priority 4 on br-ethd, 3 on br-int), sorted.
    pub fn translation_flows(&self) -> Option<Vec<String>> {
        let mut v: Vec<String> = self
            .try_flows("br-ethd")?
            .into_iter()
            .filter(|f| f.contains("priority=4,"))
            .collect();
        v.extend(
            self.try_flows("br-int")?
                .into_iter()
                .filter(|f| f.contains("priority=3,")),
        );
        v.sort();
        Some(v)
    }

    /// The exact translation flows the agent must program for the given
    /// (local VLAN, VDP VLAN) pairs, sorted like `translation_flows`.
    pub fn expected_flows(&self, pairs: &[(u16, u16)]) -> Vec<String> {
        let phy = self.ofport("phy-br-ethd");
        let int = self.ofport("int-br-ethd");
        let mut v = Vec::new();
        for (lv, vdp) in pairs {
            v.push(format!(
                "{COOKIE}, priority=4,in_port={phy},dl_vlan={lv} actions=mod_vlan_vid:{vdp},NORMAL"
            ));
            v.push(format!(
                "{COOKIE}, priority=3,in_port={int},dl_vlan={vdp} actions=mod_vlan_vid:{lv},NORMAL"
            ));
        }
        v.sort();
        v.dedup();
        v
    }

    // ---- agent ----

    /// `vdp-agent status --json` (`Null` when the agent does not answer).
    pub fn status(&self) -> Value {
        let cfg = self.host_dir.join("agent.yaml");
        let bin = bin_dir().join("vdp-agent");
        let out = self.host(&[
            bin.to_str().expect("utf-8 path"),
            "-c",
            cfg.to_str().expect("utf-8 path"),
            "status",
            "--json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Wait until the agent reports the uplink set up.
    pub fn wait_uplink(&self, limit: Duration) {
        let ok = wait_until(limit, || self.status()["uplink"]["detected"] == true);
        assert!(ok, "uplink not detected in {limit:?}\n{}", self.diag());
    }

    /// The agent's VSI entry for a port.
    pub fn agent_vsi(&self, port_uuid: &str) -> Option<Value> {
        self.status()["vsis"]
            .as_array()?
            .iter()
            .find(|v| v["port_uuid"] == port_uuid)
            .cloned()
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.host_dir.join("agent.log")).unwrap_or_default()
    }

    // ---- leaf / station lldpad ----

    pub fn leaf_ctl(&self, args: &[&str]) -> Value {
        let mut a = vec!["leaf-ctl"];
        a.extend_from_slice(args);
        let out = self.script(&a);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    pub fn leaf_vsis(&self) -> Vec<Value> {
        self.leaf_ctl(&["status"])["vsis"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The leaf's VLAN for a VSI, when it holds it.
    pub fn leaf_vlan(&self, port_uuid: &str) -> Option<u16> {
        self.leaf_vsis()
            .iter()
            .find(|v| v["uuid"] == port_uuid)
            .and_then(|v| v["vlan"].as_u64())
            .map(|v| v as u16)
    }

    pub fn leaf_stats(&self) -> Value {
        self.leaf_ctl(&["stats"])["stats"].clone()
    }

    /// The station lldpad's VSI listing (`vdptool -t -i LLDPLeth2 -V assoc
    /// -c mode=assoc`); empty when lldpad does not answer.
    pub fn station_vsis(&self) -> String {
        let out = self.host(&[
            "vdptool",
            "-t",
            "-i",
            "LLDPLeth2",
            "-V",
            "assoc",
            "-c",
            "mode=assoc",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The VLAN the station lldpad holds for the VM's VSI, when it holds
    /// an answered association (`hints = 0`, `filter = VLAN-MAC-GID`, VLAN
    /// not 0); None when absent or still waiting for the bridge.
    pub fn station_vlan(&self, vm: &Vm) -> Option<u16> {
        let list = self.station_vsis();
        let block = list
            .split("VSI ")
            .find(|b| b.contains(&format!("uuid = {}", vm.port_uuid)))?;
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(k).map(|v| v.trim().to_string()))
        };
        if field("hints = ")? != "0" {
            return None;
        }
        let filter = field("filter = ")?;
        let vlan: u16 = filter.split('-').next()?.parse().ok()?;
        let tail = format!("-{}-{}", vm.mac, vm.segment);
        (vlan != 0 && filter.ends_with(&tail)).then_some(vlan)
    }

    // ---- VMs ----

    /// Ping the VM's gateway `count` times (0.2 s apart, 1 s wait); replies received.
    pub fn ping_count(&self, vm: &Vm, count: u32) -> u32 {
        let ns = format!("{}-{}", self.name, vm.name);
        let c = count.to_string();
        let out = Command::new("ip")
            .args([
                "netns", "exec", &ns, "ping", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "1", &vm.gw,
            ])
            .output();
        let Ok(out) = out else { return 0 };
        let s = String::from_utf8_lossy(&out.stdout);
        s.split(',')
            .find_map(|p| {
                p.trim()
                    .strip_suffix(" received")
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Start pinging the VM's gateway every 0.2 s until `Pinger::finish`.
    pub fn pinger(&self, vm: &Vm) -> Pinger {
        let ns = format!("{}-{}", self.name, vm.name);
        let child = Command::new("ip")
            .args([
                "netns", "exec", &ns, "ping", "-n", "-q", "-i", "0.2", "-W", "1", &vm.gw,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ping");
        Pinger(ChildGuard(Some(child)))
    }

    /// At least one reply out of `count`.
    pub fn ping(&self, vm: &Vm, count: u32) -> bool {
        self.ping_count(vm, count) > 0
    }

    /// Wait until the VM's gateway answers.
    pub fn wait_ping(&self, vm: &Vm, limit: Duration) -> bool {
        wait_until(limit, || self.ping_count(vm, 1) == 1)
    }

    /// Plug VMs in, announce their ports and wait for SUCCESS from the
    /// agent; returns each VM's VDP VLAN as the controller recorded it.
    pub fn bring_up(&self, vms: &[&Vm]) -> Vec<u16> {
        for vm in vms {
            self.vm_add(vm);
            self.port_add(vm);
        }
        vms.iter()
            .map(|vm| {
                let p = self
                    .wait_result(&vm.port_uuid, "SUCCESS", Duration::from_secs(30))
                    .unwrap_or_else(|| panic!("{}: no SUCCESS\n{}", vm.name, self.diag()));
                p["vdp_vlan"].as_u64().expect("vdp_vlan") as u16
            })
            .collect()
    }

    // ---- diagnostics ----

    /// Tails of the logs and the current state, for assertion messages.
    pub fn diag(&self) -> String {
        let tail_in = |d: &Path, f: &str, n: usize| {
            let s = std::fs::read_to_string(d.join(f)).unwrap_or_default();
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let tail = |f: &str, n: usize| tail_in(&self.dir, f, n);
        format!(
            "--- agent.log (tail)\n{}\n--- agent.stderr\n{}\n--- leaf.log (tail)\n{}\n--- server.log (tail)\n{}\n--- flows\n{:?}\n--- leaf vsis\n{:?}\n--- agent status\n{}",
            tail_in(&self.host_dir, "agent.log", 60),
            tail_in(&self.host_dir, "agent.stderr", 20),
            tail("leaf.log", 20),
            tail("server.log", 20),
            self.translation_flows(),
            self.leaf_vsis(),
            self.status()
        )
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.teardown && std::env::var_os("KEEP_LAB").is_none() {
            let _ = self.script(&["down"]);
        }
    }
}

/// A running `ping` (see `Lab::pinger`).
pub struct Pinger(ChildGuard);

impl Pinger {
    /// Stop it; (transmitted, received) and ping's summary.
    pub fn finish(self) -> (u32, u32, String) {
        let out = self.0.interrupt();
        let summary = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = summary
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_default()
            .to_string();
        let num = |what: &str| -> u32 {
            line.split(',')
                .find_map(|p| {
                    p.trim()
                        .strip_suffix(what)
                        .and_then(|n| n.trim().parse().ok())
                })
                .unwrap_or(0)
        };
        (num(" packets transmitted"), num(" received"), summary)
    }
}

/// A child process killed (SIGKILL) and reaped on drop unless taken.
pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    /// SIGINT the child and collect its output.
    pub fn interrupt(mut self) -> Output {
        let child = self.0.take().expect("child");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        child.wait_with_output().expect("child output")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The process exists and has not exited (a zombie waiting for init to
/// reap it counts as gone).
pub fn pid_alive(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    !status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'))
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// Samples the translation flows of a lab every 50 ms in a background
/// thread until `finish`, recording every sample in which a wanted flow was
/// missing (or OVS did not answer): a fault test's continuous view of the
/// data path, not one read at the end. Between samples OVS's own flow
/// monitor ([`FlowModWatch`]) reports every change of a wanted flow, so a
/// flow deleted and put back within a few milliseconds (which a 20 Hz
/// sample would not see, and a 10 ms ping would) is caught too.
pub struct FlowSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<FlowSamples>>,
    watch: FlowModWatch,
    want: Vec<String>,
    t0: Instant,
}

/// What a `FlowSampler` saw.
#[derive(Debug, Default)]
pub struct FlowSamples {
    pub samples: usize,
    /// (time since start, the flows seen or None when OVS did not answer)
    /// of every sample missing a wanted flow.
    pub missing: Vec<(Duration, Option<Vec<String>>)>,
    /// (time since start, OVS's monitor line) of every flow-mod that added,
    /// modified or deleted a wanted flow (even one put back at once).
    pub rewrites: Vec<(Duration, String)>,
}

/// Key of a translation flow: (bridge, matched VLAN, VLAN it is rewritten
/// to). Of a `dump-flows` line (the bridge told by the priority: 4 on
/// br-ethd, 3 on br-int) with `bridge` None, or of an `ovs-ofctl monitor`
/// line of `bridge`.
pub fn translation_key(bridge: Option<&str>, line: &str) -> Option<(String, u16, u16)> {
    let bridge = match bridge {
        Some(b) => b.to_string(),
        None if line.contains("priority=4,") => "br-ethd".to_string(),
        None if line.contains("priority=3,") => "br-int".to_string(),
        None => return None,
    };
    let num = |key: &str| -> Option<u16> {
        let rest = &line[line.find(key)? + key.len()..];
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    Some((bridge, num("dl_vlan=")?, num("mod_vlan_vid:")?))
}

/// One flow-mod OVS reported for a flow of ours.
#[derive(Debug, Clone)]
pub struct FlowMod {
    pub at: Instant,
    pub bridge: String,
    /// The monitor's event line (` event=ADDED table=0 cookie=... ...`).
    pub line: String,
}

impl FlowMod {
    pub fn key(&self) -> Option<(String, u16, u16)> {
        translation_key(Some(&self.bridge), &self.line)
    }
}

/// `ovs-ofctl monitor BR watch:!initial` on both bridges of a lab: every
/// flow-mod of a flow with the agent's cookie, timestamped as it arrives.
pub struct FlowModWatch {
    _children: Vec<ChildGuard>,
    events: std::sync::Arc<std::sync::Mutex<Vec<FlowMod>>>,
}

impl FlowModWatch {
    /// Every flow-mod seen so far, oldest first.
    pub fn events(&self) -> Vec<FlowMod> {
        self.events.lock().unwrap().clone()
    }

    /// The flow-mods from index `from` on (for a caller that keeps its place).
    pub fn since(&self, from: usize) -> Vec<FlowMod> {
        self.events
            .lock()
            .unwrap()
            .get(from..)
            .unwrap_or_default()
            .to_vec()
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }
}

impl Lab {
    /// The network namespace of the compute host this value speaks for.
    pub fn host_ns(&self) -> String {
        if self.host_n == 1 {
            format!("{}-host", self.name)
        } else {
            format!("{}-host{}", self.name, self.host_n)
        }
    }

    /// Start OVS's flow monitors (returns once both are attached).
    pub fn watch_flow_mods(&self) -> FlowModWatch {
        use std::io::BufRead;
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut children = Vec::new();
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        for br in ["br-ethd", "br-int"] {
            // ovs-ofctl prints the updates on stderr: both streams are read.
            let mut child = Command::new("ip")
                .args(["netns", "exec", &self.host_ns(), "env"])
                .arg(format!(
                    "OVS_RUNDIR={}",
                    self.host_dir.join("ovs").display()
                ))
                .args([
                    "sh",
                    "-c",
                    &format!("exec ovs-ofctl monitor {br} 'watch:!initial' 2>&1"),
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("ovs-ofctl monitor");
            let out = child.stdout.take().expect("monitor stdout");
            let (ev, ready, br) = (events.clone(), ready_tx.clone(), br.to_string());
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("NXST_FLOW_MONITOR reply") {
                        let _ = ready.send(());
                    }
                    if line.contains("event=") && line.contains("cookie=0x7664706167656e74") {
                        ev.lock().unwrap().push(FlowMod {
                            at: Instant::now(),
                            bridge: br.clone(),
                            line: line.trim().to_string(),
                        });
                    }
                }
            });
            children.push(ChildGuard(Some(child)));
        }
        for _ in 0..2 {
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("ovs-ofctl monitor attached");
        }
        FlowModWatch {
            _children: children,
            events,
        }
    }
}

/// The flow-mods of `mods` that touch a flow of `want` (dump-flows lines).
pub fn rewrites_of(want: &[String], mods: &[FlowMod]) -> Vec<FlowMod> {
    let keys: Vec<(String, u16, u16)> = want
        .iter()
        .filter_map(|w| translation_key(None, w))
        .collect();
    mods.iter()
        .filter(|m| m.key().is_some_and(|k| keys.contains(&k)))
        .cloned()
        .collect()
}

impl Lab {
    /// The translation flows (priority 4 on br-ethd, 3 on br-int), read
    /// with `ip netns exec` directly (fast enough for 20 Hz sampling).
    pub fn fast_translation_flows(ns: &str, dir: &Path) -> Option<Vec<String>> {
        let mut v = Vec::new();
        for (br, prio) in [("br-ethd", "priority=4,"), ("br-int", "priority=3,")] {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "env"])
                .arg(format!("OVS_RUNDIR={}", dir.join("ovs").display()))
                .args(["ovs-ofctl", "dump-flows", br, "--no-stats"])
                .output()
                .ok()?;
            if !out.status.success() {
                return None;
            }
            v.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(|l| l.trim().to_string())
                    .filter(|l| l.contains(prio)),
            );
        }
        v.sort();
        Some(v)
    }

    /// Start sampling: every sample must hold every flow of `want`.
    pub fn sample_flows(&self, want: &[String]) -> FlowSampler {
        let watch = self.watch_flow_mods();
        let t0 = Instant::now();
        let kept = want.to_vec();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (name, dir, want) = (self.host_ns(), self.host_dir.clone(), want.to_vec());
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut r = FlowSamples::default();
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                let next = Instant::now() + Duration::from_millis(50);
                let seen = Lab::fast_translation_flows(&name, &dir);
                r.samples += 1;
                let ok = seen
                    .as_ref()
                    .is_some_and(|f| want.iter().all(|w| f.contains(w)));
                if !ok {
                    r.missing.push((t0.elapsed(), seen));
                }
                let _ = crossbeam_channel::at(next).recv();
            }
            r
        });
        FlowSampler {
            stop,
            handle: Some(handle),
            watch,
            want: kept,
            t0,
        }
    }
}

impl FlowSampler {
    pub fn finish(mut self) -> FlowSamples {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut r = self
            .handle
            .take()
            .expect("sampler thread")
            .join()
            .expect("sampler");
        r.rewrites = rewrites_of(&self.want, &self.watch.events())
            .into_iter()
            .map(|m| (m.at.saturating_duration_since(self.t0), m.line))
            .collect();
        r
    }
}

impl Drop for FlowSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Two-host helpers: re-plugging a VM between hosts, the leaf's view of
/// ports, and the controller's live migration (`POST
/// /admin/ports/{uuid}/migrate...`, README "vdp-lab server").
impl Lab {
    /// The leaf port this host is wired to (`swp<n>`).
    pub fn leaf_port(&self) -> String {
        format!("swp{}", self.host_n)
    }

    /// The leaf's VSI entry for a port (`port`, `mode`, `hints`, `vlan`, ...).
    pub fn leaf_vsi(&self, port_uuid: &str) -> Option<Value> {
        self.leaf_vsis()
            .into_iter()
            .find(|v| v["uuid"] == port_uuid)
    }

    /// Plug a standby leg of an existing VM into this host's br-int with
    /// the VM's port UUID and MAC, tagged `local_vlan` (`vm-plug`: Nova
    /// plugging the VIF at a migration's destination).
    pub fn vm_plug(&self, vm: &Vm, local_vlan: u16) {
        let lv = local_vlan.to_string();
        self.script_ok(&["vm-plug", &vm.name, &lv]);
    }

    /// The switchover: move the VM's address, route and gateway neighbour
    /// entry to its leg on this host (`vm-move`); the time the move took.
    pub fn vm_move(&self, vm: &Vm) -> Duration {
        let out = self.script_ok(&["vm-move", &vm.name]);
        let ms: f64 = out
            .split(" in ")
            .nth(1)
            .and_then(|t| t.split(" ms").next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("vm-move output: {out}"));
        Duration::from_secs_f64(ms / 1000.0)
    }

    /// Remove the VM's leg on this host (`vm-unplug`: Nova unplugging the
    /// VIF at the source after a migration).
    pub fn vm_unplug(&self, vm: &Vm) {
        self.script_ok(&["vm-unplug", &vm.name]);
    }

    /// Start a live migration of the VM's port to host `to` (its
    /// `host_id`); `manual`: the caller takes the switchover. The answer
    /// (`{"migration"}` or an error object).
    pub fn migrate(&self, vm: &Vm, to: &str, manual: bool) -> Value {
        self.admin(
            "POST",
            &format!("ports/{}/migrate", vm.port_uuid),
            Some(&json!({"to": to, "manual": manual})),
        )
    }

    /// The switchover point of a running migration (`arrived`, `left`).
    pub fn migrate_switchover(&self, vm: &Vm) -> Value {
        self.admin(
            "POST",
            &format!("ports/{}/migrate/switchover", vm.port_uuid),
            Some(&json!({})),
        )
    }

    /// Abort a running migration (`aborted` to the destination).
    pub fn migrate_abort(&self, vm: &Vm) -> Value {
        self.admin(
            "POST",
            &format!("ports/{}/migrate/abort", vm.port_uuid),
            Some(&json!({})),
        )
    }

    /// The port's last migration record (phase, events, `dest_report`,
    /// `source_report`).
    pub fn migration(&self, vm: &Vm) -> Value {
        self.admin("GET", &format!("ports/{}/migrate", vm.port_uuid), None)
    }

    /// Wait (server side) until the destination reported (`until` =
    /// "ready") or the migration is over ("done"), at most `timeout_s`;
    /// `{"matched", "migration"}`.
    pub fn migrate_wait(&self, vm: &Vm, until: &str, timeout_s: u64) -> Value {
        self.admin(
            "GET",
            &format!(
                "ports/{}/migrate/wait?until={until}&timeout={timeout_s}",
                vm.port_uuid
            ),
            None,
        )
    }
}
