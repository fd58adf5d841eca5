//! Minimal private netns + lldpad harness for the lldptool/uplink/topology
//! integration tests (root only). Every name carries the helper tag `lt`,
//! this process's pid and a per-test letter; everything is removed on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::exec::Runner;

/// Bridge-role lldpad: EVB bridge TLV on the NCB agent.
pub const BRIDGE_CONF: &str = r#"nearest_customer_bridge : {
  common : {
    adminStatus = 3;
    tlvid0080c20d : { enableTx = true; evbmode = "bridge"; evbgpid = true; };
  };
};
"#;

/// Bridge-role lldpad that also sends Port Description, System Name,
/// System Description and Management Address (10.10.0.101).
pub const BRIDGE_FULL_CONF: &str = r#"nearest_customer_bridge : {
  common : {
    adminStatus = 3;
    tlvid0080c20d : { enableTx = true; evbmode = "bridge"; evbgpid = true; };
    tlvid00000004 : { enableTx = true; };
    tlvid00000005 : { enableTx = true; };
    tlvid00000006 : { enableTx = true; };
    tlvid00000008 : { enableTx = true; ipv4 = "10.10.0.101"; };
  };
};
"#;

/// Station-role lldpad sending its EVB TLV.
pub const STATION_CONF: &str = r#"nearest_customer_bridge : {
  common : {
    adminStatus = 3;
    tlvid0080c20d : { enableTx = true; };
  };
};
"#;

/// Fresh station: nothing configured (the agent's side).
pub const EMPTY_CONF: &str = "";

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skip (return early) unless root.
#[macro_export]
macro_rules! need_root {
    () => {
        if !lldptool_lab::is_root() {
            eprintln!("skipped: needs root (netns, lldpad)");
            return;
        }
    };
}

fn sh(argv: &[&str]) {
    let st = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(st.success(), "{argv:?} failed: {st}");
}

/// Unique short prefix for this test: `lt<pid%100000><letter>`.
pub fn prefix(letter: char) -> String {
    format!("lt{}{}", std::process::id() % 100000, letter)
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        sh(&["ip", "netns", "add", name]);
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        Netns {
            name: name.to_string(),
        }
    }

    /// A runner whose commands run inside this netns.
    pub fn runner(&self) -> Arc<Runner> {
        Arc::new(Runner::new(
            vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                self.name.clone(),
            ],
            Duration::from_secs(5),
        ))
    }

    pub fn exec(&self, argv: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .expect("ip netns exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair `a` (in `ns_a`) <-> `b` (in `ns_b`), both up. Deleted with
/// the namespaces.
pub fn veth(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str, mac_b: &str) {
    sh(&[
        "ip", "link", "add", a, "netns", &ns_a.name, "type", "veth", "peer", "name", b, "netns",
        &ns_b.name,
    ]);
    sh(&["ip", "-n", &ns_b.name, "link", "set", b, "address", mac_b]);
    sh(&["ip", "-n", &ns_a.name, "link", "set", a, "up"]);
    sh(&["ip", "-n", &ns_b.name, "link", "set", b, "up"]);
}

/// One lldpad in a netns (private /dev/shm), config from `conf`.
pub struct Lldpad {
    child: Child,
    dir: PathBuf,
    pub ns: String,
}

impl Lldpad {
    pub fn start(ns: &Netns, conf: &str) -> Lldpad {
        let dir = std::env::temp_dir().join(format!("{}-lldpad", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let conf_path = dir.join("lldpad.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        let log = std::fs::File::create(dir.join("lldpad.log")).expect("log");
        let script = format!(
            "mount -t tmpfs tmpfs /dev/shm && exec lldpad -p -f {} -V 6",
            conf_path.display()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "unshare", "--ipc", "--mount"])
            .args(["--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn lldpad");
        let l = Lldpad {
            child,
            dir,
            ns: ns.name.clone(),
        };
        let t = Instant::now();
        loop {
            let ok = Command::new("ip")
                .args(["netns", "exec", &ns.name, "lldptool", "-p"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "lldpad in {} did not start",
                ns.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        l
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Lldpad {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let t = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if t.elapsed() < Duration::from_secs(3) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Poll `f` every 100 ms until it is true or `max` passes.
pub fn wait_until(max: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t.elapsed() > max {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
