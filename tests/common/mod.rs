//! End-to-end lab harness for tests: drives `scripts/lab` (namespaces,
//! userspace OVS, station lldpad, `vdp-lab leaf`, VMs), the reference
//! controller and the agent, each lab under its own name so tests can run
//! side by side. Everything is torn down on drop.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

pub fn have_tools() -> bool {
    ["lldpad", "ovs-vswitchd", "ip"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

/// Skip (return true) when the lab cannot run here, printing why.
pub fn skip() -> bool {
    if !root() || !have_tools() {
        eprintln!("skipped: needs root, lldpad, openvswitch and iproute2 (scripts/install-deps)");
        return true;
    }
    false
}

pub fn top() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vdp-agent"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Poll `f` every 50 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    vdp_agent::lab::netns::wait_for(limit, Duration::from_millis(50), &mut f)
}

pub struct Lab {
    pub name: String,
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    pub host_id: String,
}

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
}

impl Lab {
    /// Bring a lab up. `name` must be short (interface names: `tap-vmN`,
    /// namespaces `<name>-host`). `env` overrides scripts/lab variables
    /// (SYNC_TIMEOUT_S, FLOW_CHECK_S, LEAF_ARGS, ...). No VMs are created:
    /// use `vm_add`.
    pub fn up(name: &str, env: &[(&str, &str)]) -> Lab {
        let mut lab = Lab {
            name: name.into(),
            dir: PathBuf::from(format!("/run/vdp-lab/{name}")),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            host_id: format!("{name}-compute1"),
        };
        lab.env.push(("LAB_VMS".into(), "0".into()));
        lab.env
            .push(("VDP_BIN".into(), bin_dir().display().to_string()));
        let _ = lab.script(&["down"]);
        let out = lab.script(&["up"]);
        assert!(
            out.status.success(),
            "lab up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    pub fn script(&self, args: &[&str]) -> Output {
        let mut c = Command::new(top().join("scripts/lab"));
        c.args(args).env("LAB", &self.name);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().expect("run scripts/lab")
    }

    pub fn start_server(&self) {
        let out = self.script(&["server-start"]);
        assert!(
            out.status.success(),
            "server-start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start_agent(&self) {
        let out = self.script(&["agent-start"]);
        assert!(
            out.status.success(),
            "agent-start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop_agent(&self) -> Duration {
        let t = Instant::now();
        let out = self.script(&["agent-stop"]);
        assert!(out.status.success());
        t.elapsed()
    }

    /// Run argv in the host netns with the lab's OVS environment.
    pub fn host(&self, argv: &[&str]) -> Output {
        let mut a = vec!["host"];
        a.extend_from_slice(argv);
        self.script(&a)
    }

    pub fn host_ok(&self, argv: &[&str]) -> String {
        let out = self.host(argv);
        assert!(
            out.status.success(),
            "{argv:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn vdp_lab(&self, args: &[&str]) -> Output {
        let bin = bin_dir().join("vdp-lab");
        let mut a = vec![bin.to_str().unwrap()];
        a.extend_from_slice(args);
        self.host(&a)
    }

    pub fn server_url(&self) -> String {
        "http://127.0.0.1:9696".into()
    }

    pub fn vm_add(&self, vm: &Vm) {
        let lv = vm.local_vlan.to_string();
        let out = self.script(&["vm-add", &vm.name, &vm.port_uuid, &vm.mac, &lv, &vm.ip]);
        assert!(
            out.status.success(),
            "vm-add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Announce the port at the controller (queues a vm_info up event).
    pub fn port_add(&self, vm: &Vm) {
        let seg = vm.segment.to_string();
        let ip = vm.ip.split('/').next().unwrap().to_string();
        let out = self.vdp_lab(&[
            "port",
            "add",
            "--server",
            &self.server_url(),
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
        assert!(
            out.status.success(),
            "port add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn port_del(&self, vm: &Vm) {
        let out = self.vdp_lab(&[
            "port",
            "del",
            "--server",
            &self.server_url(),
            "--port-uuid",
            &vm.port_uuid,
        ]);
        assert!(
            out.status.success(),
            "port del: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The controller's view of every port (`port list --json`).
    pub fn ports(&self) -> Value {
        let out = self.vdp_lab(&["port", "list", "--server", &self.server_url(), "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    pub fn port(&self, port_uuid: &str) -> Option<Value> {
        let ports = self.ports();
        let list = ports
            .as_array()
            .cloned()
            .or_else(|| ports.get("ports").and_then(|p| p.as_array().cloned()))?;
        list.into_iter()
            .find(|p| p.get("port_uuid").and_then(Value::as_str) == Some(port_uuid))
    }

    /// Wait until the controller has a result for the port satisfying `pred`.
    pub fn wait_port(
        &self,
        port_uuid: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        wait_for(limit, || self.port(port_uuid).filter(|p| pred(p)))
    }

    /// RPC calls recorded by the reference controller.
    pub fn calls(&self, method: &str) -> Vec<Value> {
        let url = format!("{}/admin/calls?method={method}", self.server_url());
        let out = self.host(&["curl", "-sf", &url]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        v.as_array()
            .cloned()
            .or_else(|| v.get("calls").and_then(|c| c.as_array().cloned()))
            .unwrap_or_default()
    }

    pub fn flows(&self, br: &str) -> Vec<String> {
        self.host_ok(&["ovs-ofctl", "dump-flows", br, "--no-stats"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with("NXST") && !l.starts_with("OFPST"))
            .collect()
    }

    /// `vdp-agent status --json`.
    pub fn status(&self) -> Value {
        let cfg = self.dir.join("agent.yaml");
        let bin = bin_dir().join("vdp-agent");
        let out = self.host(&[
            bin.to_str().unwrap(),
            "-c",
            cfg.to_str().unwrap(),
            "status",
            "--json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    pub fn leaf_ctl(&self, args: &[&str]) -> Value {
        let mut a = vec!["leaf-ctl"];
        a.extend_from_slice(args);
        let out = self.script(&a);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    pub fn ping(&self, vm: &Vm, count: u32) -> bool {
        let ns = format!("{}-{}", self.name, vm.name);
        let c = count.to_string();
        Command::new("ip")
            .args([
                "netns", "exec", &ns, "ping", "-c", &c, "-i", "0.2", "-W", "1", &vm.gw,
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::env::var_os("KEEP_LAB").is_none() {
            let _ = self.script(&["down"]);
        }
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
