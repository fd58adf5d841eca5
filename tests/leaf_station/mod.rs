//! A station lldpad and the project's leaf simulator (`vdp-lab leaf`) in
//! two network namespaces joined by a veth pair, the station enabled as
//! the agent enables it and the bridge's EVB TLV seen: the lab of the
//! lldpad driver tests (`mod leaf_station;`). Root only.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;
use vdp_agent::lab::netns::{self, LldpadInstance, LldpadRole, Netns, NsChild, TempDir};

pub const BIN: &str = env!("CARGO_BIN_EXE_vdp-lab");

/// Name prefixes of one test file's labs: station netns, leaf netns,
/// station interface, leaf interface (each made unique with the test's
/// number and the process id).
pub struct Tags {
    pub sta: &'static str,
    pub leaf: &'static str,
    pub sta_if: &'static str,
    pub leaf_if: &'static str,
    pub dir: &'static str,
}

pub struct LeafStation {
    // Drop order: processes, namespaces, files.
    _leaf: NsChild,
    _station: LldpadInstance,
    pub sta: Netns,
    _lf: Netns,
    pub dir: TempDir,
    pub sta_if: String,
}

impl LeafStation {
    /// `n`: the test's number, so tests of one file can run side by side.
    pub fn new(tags: &Tags, n: u32) -> LeafStation {
        let sta = Netns::create(&netns::unique(tags.sta, n)).expect("netns");
        let lf = Netns::create(&netns::unique(tags.leaf, n)).expect("netns");
        let sta_if = netns::unique(tags.sta_if, n);
        let lf_if = netns::unique(tags.leaf_if, n);
        netns::veth(&sta, &sta_if, &lf, &lf_if).expect("veth");
        let dir = TempDir::new(tags.dir).expect("temp dir");
        let ctl = dir.path().join("leaf.sock").display().to_string();
        let leaf = lf
            .spawn(
                &[
                    BIN,
                    "leaf",
                    "--iface",
                    &lf_if,
                    "--vlan-pool",
                    "3001-3010",
                    "--control",
                    &ctl,
                ],
                &dir.path().join("leaf.log"),
            )
            .expect("vdp-lab leaf");
        let station =
            LldpadInstance::start(&sta, LldpadRole::Station, &sta_if, dir.path()).expect("lldpad");
        let lab = LeafStation {
            _leaf: leaf,
            _station: station,
            sta,
            _lf: lf,
            dir,
            sta_if,
        };
        assert!(
            netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
                lab.ctl("status").contains("\"ok\":true").then_some(())
            })
            .is_some(),
            "leaf did not come up"
        );
        // Station side as the agent enables it, through exec::Runner.
        netns::enable_station(&lab.sta, &lab.sta_if).expect("enable station");
        assert!(netns::wait_evb_bridge(
            &lab.sta,
            &lab.sta_if,
            Duration::from_secs(10)
        ));
        lab
    }

    /// A `vdp-lab leaf-ctl` command's output.
    pub fn ctl(&self, cmd: &str) -> String {
        let out = Command::new(BIN)
            .args(["leaf-ctl", "--control"])
            .arg(self.dir.path().join("leaf.sock"))
            .args(cmd.split_whitespace())
            .output()
            .expect("leaf-ctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
