//! `uplink::SysNet` on fake /sys/class/net + /proc/net/bonding trees built in
//! a temp dir (same layout as the kernel's: `device` and `master` symlinks,
//! `operstate`, `bonding/slaves`).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vdp_agent::api::uplink::SysNet;
use vdp_agent::lab::netns::{self, Netns};

struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let root = std::env::temp_dir().join(format!("lt-sysfs-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("sys")).unwrap();
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::create_dir_all(root.join("devices")).unwrap();
        Tree { root }
    }
    fn sys(&self) -> PathBuf {
        self.root.join("sys")
    }
    fn proc_bonding(&self) -> PathBuf {
        self.root.join("proc")
    }
    /// An interface; `physical` adds a `device` link to a device dir.
    fn intf(&self, name: &str, physical: bool, oper: &str) -> &Tree {
        let d = self.sys().join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("operstate"), format!("{oper}\n")).unwrap();
        if physical {
            let dev = self.root.join("devices").join(name);
            fs::create_dir_all(&dev).unwrap();
            symlink(&dev, d.join("device")).unwrap();
        }
        self
    }
    fn master(&self, member: &str, master: &str) -> &Tree {
        symlink(
            Path::new("..").join(master),
            self.sys().join(member).join("master"),
        )
        .unwrap();
        self
    }
    fn bond(&self, name: &str, slaves: &str, in_proc: bool) -> &Tree {
        self.intf(name, false, "up");
        let b = self.sys().join(name).join("bonding");
        fs::create_dir_all(&b).unwrap();
        fs::write(b.join("slaves"), format!("{slaves}\n")).unwrap();
        if in_proc {
            fs::write(
                self.proc_bonding().join(name),
                "Bonding Mode: IEEE 802.3ad\n",
            )
            .unwrap();
        }
        self
    }
    fn sysnet(&self) -> SysNet {
        SysNet::new(&self.sys(), &self.proc_bonding())
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

#[test]
fn bonds_members_and_masters() {
    let t = Tree::new("bond");
    t.intf("eth1", true, "up")
        .intf("eth2", true, "up")
        .bond("bond0", "eth1 eth2", true);
    t.master("eth1", "bond0").master("eth2", "bond0");
    // A bond known only from its slaves file (no master link on the member),
    // and a member name that is a prefix of another bond's member.
    t.intf("eth5", true, "up").bond("bond1", "eth5", true);
    t.intf("eth55", true, "up").bond("bond2", "eth55", true);
    // A Linux-bridge member: master is not a bond.
    t.intf("eth4", true, "up")
        .intf("br0", false, "up")
        .master("eth4", "br0");
    let s = t.sysnet();

    assert_eq!(s.bond_of("eth1").as_deref(), Some("bond0"));
    assert_eq!(s.bond_of("eth2").as_deref(), Some("bond0"));
    assert_eq!(s.bond_of("eth5").as_deref(), Some("bond1"));
    assert_eq!(s.bond_of("eth55").as_deref(), Some("bond2"));
    assert_eq!(s.bond_of("eth4"), None);
    assert_eq!(s.bond_of("eth9"), None);
    assert_eq!(s.bond_of("bond0"), None);

    assert!(s.is_bond("bond0") && s.is_bond("bond1"));
    assert!(!s.is_bond("eth1") && !s.is_bond("br0") && !s.is_bond("nosuch"));
    assert_eq!(s.bond_members("bond0").as_deref(), Some("eth1 eth2"));
    assert_eq!(s.bond_members("bond1").as_deref(), Some("eth5"));
    assert_eq!(s.bond_members("eth1"), None);

    // Member removed from the bond: kernel rewrites slaves and drops master.
    fs::write(t.sys().join("bond0/bonding/slaves"), "eth1\n").unwrap();
    fs::remove_file(t.sys().join("eth2/master")).unwrap();
    assert_eq!(s.bond_members("bond0").as_deref(), Some("eth1"));
    assert_eq!(s.bond_of("eth2"), None);
}

#[test]
fn bond_in_sysfs_only_without_proc() {
    let t = Tree::new("noproc");
    t.intf("eth1", true, "up")
        .bond("bond0", "eth1", false)
        .master("eth1", "bond0");
    let s = t.sysnet();
    assert!(s.is_bond("bond0"));
    assert_eq!(s.bond_of("eth1").as_deref(), Some("bond0"));
    assert_eq!(s.bond_members("bond0").as_deref(), Some("eth1"));
}

#[test]
fn physical_up_candidates_filters_device_operstate_ipv4() {
    let t = Tree::new("cand");
    t.intf("ltfk0", true, "up")
        .intf("ltfk1", true, "down")
        .intf("ltfk2", true, "up")
        .intf("ltfkv7", false, "up")
        .intf("ltfk3", true, "unknown")
        // `lo` really has 127.0.0.1 in this netns: getifaddrs excludes it.
        .intf("lo", true, "up");
    let s = t.sysnet();
    assert!(s.ipv4_interfaces().contains("lo"));
    assert_eq!(
        s.physical_up_candidates(),
        vec!["ltfk0".to_string(), "ltfk2".to_string()]
    );
}

#[test]
fn ipv4_exclusion_through_runner_in_netns() {
    if !netns::is_root() && netns::skip_missing("root (netns)") {
        return;
    }
    let p = netns::unique("lti", 0);
    let ns = Netns::create(&format!("{p}-ipv4")).unwrap();
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    netns::veth(&ns, &a, &ns, &b).unwrap();
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", &a]).unwrap();
    let t = Tree::new("ipv4");
    t.intf(&a, true, "up").intf(&b, true, "up");
    let s = t
        .sysnet()
        .with_ipv4_runner(Arc::new(ns.runner(Duration::from_secs(5))));
    assert!(
        s.ipv4_interfaces().contains(&a),
        "{:?}",
        s.ipv4_interfaces()
    );
    assert_eq!(s.physical_up_candidates(), vec![b.clone()]);
}
