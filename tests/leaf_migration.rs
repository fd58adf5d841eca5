//! `vdp-lab leaf` with two host ports, each cabled to its own network
//! namespace with a real station lldpad (two compute hosts), driven with
//! plain `vdptool` (root and lldpad):
//! - `preassoc_rr_then_assoc_on_one_port`: the VSI shows mode preassoc-rr
//!   (not forwarding) with hint `to`, then assoc, with the group's VLAN;
//! - `a_vsi_moves_between_ports_as_a_live_migration_does`: associated on
//!   port 1, pre-associated (`to`) and associated on port 2, deassociated
//!   on port 1: the leaf moved it and freed the old copy, and its gateway
//!   answered ARP on the port that forwarded at each step; then
//!   moved back without a deassociate: the move timer frees the old copy
//!   (unsolicited DEASSOC, the station drops it).
//!
//! Lab names: netns `lmL…`, `lmH1…`, `lmH2…`; interfaces `lmS1…`/`lmP1…`, `lmS2…`/`lmP2…`.

use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};
use vdp_agent::lab::leaf::{gateway, socket};
use vdp_agent::lab::netns::{self, LldpadInstance, LldpadRole, Netns, NsChild, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_vdp-lab");
const GID: u32 = 30001;
const MOVE_TIMEOUT_S: u64 = 5;

struct Host {
    // Drop order: lldpad, then its namespace.
    _lldpad: LldpadInstance,
    ns: Netns,
    ifname: String,
    port: String,
}

struct Lab {
    _leaf: NsChild,
    hosts: Vec<Host>,
    _lf: Netns,
    dir: TempDir,
}

impl Lab {
    fn new(n: u32) -> Lab {
        let lf = Netns::create(&netns::unique("lmL", n)).expect("netns");
        let dir = TempDir::new("lm-leafmig").expect("temp dir");
        let mut cabled = Vec::new();
        for h in 1..=2 {
            let ns = Netns::create(&netns::unique(&format!("lmH{h}"), n)).expect("netns");
            let sta_if = netns::unique(&format!("lmS{h}"), n);
            let port = netns::unique(&format!("lmP{h}"), n);
            netns::veth(&ns, &sta_if, &lf, &port).expect("veth");
            cabled.push((ns, sta_if, port));
        }
        let ctl = dir.path().join("leaf.sock").display().to_string();
        let timeout = MOVE_TIMEOUT_S.to_string();
        let mut argv = vec![BIN, "leaf", "--vlan-pool", "3001-3010", "--control", &ctl];
        argv.extend(["--move-timeout-s", &timeout]);
        for (_, _, port) in &cabled {
            argv.extend(["--iface", port.as_str()]);
        }
        let leaf = lf
            .spawn(&argv, &dir.path().join("leaf.log"))
            .expect("vdp-lab leaf");
        let hosts = cabled
            .into_iter()
            .map(|(ns, ifname, port)| {
                let l = LldpadInstance::start(&ns, LldpadRole::Station, &ifname, dir.path())
                    .expect("lldpad");
                Host {
                    _lldpad: l,
                    ns,
                    ifname,
                    port,
                }
            })
            .collect();
        let lab = Lab {
            _leaf: leaf,
            hosts,
            _lf: lf,
            dir,
        };
        assert!(
            netns::wait_for(Duration::from_secs(10), Duration::from_millis(50), || {
                lab.ctl("status")["ok"].as_bool().filter(|ok| *ok)
            })
            .is_some(),
            "leaf did not come up"
        );
        for h in &lab.hosts {
            netns::enable_station(&h.ns, &h.ifname).expect("enable station");
        }
        for h in &lab.hosts {
            assert!(
                netns::wait_evb_bridge(&h.ns, &h.ifname, Duration::from_secs(10)),
                "no EVB TLV on {}",
                h.ifname
            );
        }
        lab
    }

    fn ctl(&self, cmd: &str) -> Value {
        let out = Command::new(BIN)
            .args(["leaf-ctl", "--control"])
            .arg(self.dir.path().join("leaf.sock"))
            .args(cmd.split_whitespace())
            .output()
            .expect("leaf-ctl");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// `vdptool -T -W` on host `h` (0 or 1); returns stdout. lldpad's
    /// start-up states ("Device not found", "not supported") are retried.
    fn vdp(&self, h: usize, mode: &str, uuid: &str, hints: &str, vlan: u16) -> String {
        let host = &self.hosts[h];
        let filter = format!("{vlan}-{}-{GID}", mac(uuid));
        let argv: Vec<String> = netns::vdptool_set_argv(&host.ifname, mode, uuid, &filter, true)
            .into_iter()
            .map(|a| {
                if a == "hints=none" {
                    format!("hints={hints}")
                } else {
                    a
                }
            })
            .collect();
        let mut out = String::new();
        for _ in 0..3 {
            out = host.ns.stdout(&argv).expect("vdptool");
            if out.starts_with("Response from VDP") {
                break;
            }
        }
        out
    }

    fn listing(&self, h: usize) -> String {
        netns::vdptool_listing(&self.hosts[h].ns, &self.hosts[h].ifname).unwrap_or_default()
    }

    /// (port, mode, hints, vlan) of every VSI the leaf shows.
    fn vsis(&self) -> Vec<(String, String, String, u64)> {
        self.ctl("status")["vsis"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|v| {
                (
                    v["port"].as_str().unwrap_or("?").to_string(),
                    v["mode"].as_str().unwrap_or("?").to_string(),
                    v["hints"].as_str().unwrap_or("?").to_string(),
                    v["vlan"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    fn port(&self, h: usize) -> String {
        self.hosts[h].port.clone()
    }

    /// Whether the leaf's gateway 10.0.0.1 answers a tagged ARP request
    /// sent from host `h` on `vlan` (within 1 s).
    fn gateway_answers(&self, h: usize, vlan: u16) -> bool {
        let ifn = self.hosts[h].ifname.clone();
        self.hosts[h]
            .ns
            .run_in("lm-vm", move || {
                let s = socket::PacketSocket::open(&ifn, &[]).unwrap();
                let me = socket::iface_mac(&ifn).unwrap();
                let mut f = vec![0xff; 6];
                f.extend_from_slice(&me);
                f.extend_from_slice(&[0x81, 0x00]);
                f.extend_from_slice(&vlan.to_be_bytes());
                f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
                f.extend_from_slice(&me);
                f.extend_from_slice(&[10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
                f.resize(64, 0);
                s.send(&f).unwrap();
                let t0 = Instant::now();
                let mut buf = vec![0u8; 2048];
                while t0.elapsed() < Duration::from_secs(1) {
                    match s.recv(&mut buf).unwrap() {
                        Some(m) if !m.outgoing => {
                            let fr = &buf[..m.len];
                            let (v, fr) = match gateway::strip_inline_tag(fr) {
                                Some((v, u)) => (Some(v), u),
                                None => (m.vlan, fr.to_vec()),
                            };
                            if v == Some(vlan) && fr[12..14] == [0x08, 0x06] && fr[20..22] == [0, 2]
                            {
                                return true;
                            }
                        }
                        Some(_) => {}
                        None => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
                false
            })
            .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("leaf.log")).unwrap_or_default();
            eprintln!("--- leaf.log ---\n{log}");
        }
    }
}

fn mac(uuid: &str) -> String {
    format!("fa:16:3e:00:0e:{}", &uuid[uuid.len() - 2..])
}

fn uuid(n: u8) -> String {
    format!("1eaf0000-0000-4000-8000-0000000000{n:02x}")
}

/// The VLAN of a `Response from VDP` (`filter = V-mac-0`), after checking its mode.
fn answered(out: &str, mode: &str) -> u16 {
    assert!(out.starts_with("Response from VDP\n"), "{out:?}");
    assert!(out.contains(&format!("\tmode = {mode}\n")), "{out:?}");
    out.lines()
        .find_map(|l| l.trim().strip_prefix("filter = "))
        .and_then(|f| f.split('-').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no filter in {out:?}"))
}

fn row(port: &str, mode: &str, hints: &str, vlan: u16) -> (String, String, String, u64) {
    (port.into(), mode.into(), hints.into(), u64::from(vlan))
}

#[test]
fn preassoc_rr_then_assoc_on_one_port() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let lab = Lab::new(1);
    let u = uuid(1);
    let v = answered(&lab.vdp(0, "preassoc-rr", &u, "to", 0), "preassoc-rr");
    assert!((3001..=3010).contains(&v), "{v}");
    let p1 = lab.port(0);
    assert_eq!(lab.vsis(), [row(&p1, "preassoc-rr", "to", v)]);
    let st = lab.ctl("status");
    assert_eq!(st["vsis"][0]["forwarding"], false, "{st}");
    assert_eq!(st["pool"]["groups"][GID.to_string()], v, "{st}");
    // The associate of the same VSI upgrades it, same VLAN. lldpad sends
    // every later request of a VSI it holds with the hints the VSI was
    // created with: `hints=none` here still goes out as "to".
    assert_eq!(answered(&lab.vdp(0, "assoc", &u, "none", v), "assoc"), v);
    assert_eq!(lab.vsis(), [row(&p1, "assoc", "to", v)]);
    assert_eq!(lab.ctl("status")["vsis"][0]["forwarding"], true);
    let s = lab.ctl("stats")["stats"].clone();
    assert_eq!(
        (s["assoc"].as_u64(), s["preassoc"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    assert!(
        lab.listing(0).contains(&format!("filter = {v}-")),
        "{}",
        lab.listing(0)
    );
}

#[test]
fn a_vsi_moves_between_ports_as_a_live_migration_does() {
    if !netns::lldpad_lab_ok() {
        return;
    }
    let lab = Lab::new(2);
    let (p1, p2) = (lab.port(0), lab.port(1));
    let u = uuid(2);
    let v = answered(&lab.vdp(0, "assoc", &u, "none", 0), "assoc");
    // destination: pre-associate with hint "to"; the source still holds it
    assert_eq!(
        answered(&lab.vdp(1, "preassoc-rr", &u, "to", 0), "preassoc-rr"),
        v
    );
    assert_eq!(
        lab.vsis(),
        [
            row(&p1, "moving", "none", v),
            row(&p2, "preassoc-rr", "to", v)
        ]
    );
    // the gateway answers where the VSI is associated (the source), not
    // where it is only pre-associated
    assert_eq!(lab.ctl(&format!("gateway {GID} 10.0.0.1"))["ok"], true);
    assert!(lab.gateway_answers(0, v));
    assert!(!lab.gateway_answers(1, v));
    let st = lab.ctl("status");
    assert_eq!(st["vsis"][0]["held_mode"], "assoc", "{st}");
    assert_eq!(st["vsis"][0]["forwarding"], true, "{st}");
    assert_eq!(st["vsis"][0]["move_deadline_s"], Value::Null, "{st}");
    // switchover: associate on the destination ("to"), deassociate on the source ("from")
    assert_eq!(answered(&lab.vdp(1, "assoc", &u, "to", v), "assoc"), v);
    let st = lab.ctl("status");
    assert_eq!(st["vsis"][0]["moving_to"], p2.as_str(), "{st}");
    assert!(st["vsis"][0]["move_deadline_s"].as_f64().is_some(), "{st}");
    assert_eq!(
        answered(&lab.vdp(0, "deassoc", &u, "from", v), "deassoc"),
        v
    );
    assert_eq!(lab.vsis(), [row(&p2, "assoc", "to", v)]);
    assert!(!lab.listing(0).contains(&u), "{}", lab.listing(0));
    assert!(lab.listing(1).contains(&u), "{}", lab.listing(1));
    let s = lab.ctl("stats")["stats"].clone();
    assert_eq!(s["moves_started"], 1, "{s}");
    assert_eq!(s["moves_completed"], 1, "{s}");
    let h = lab.ctl("history")["history"].clone();
    let ops: Vec<(String, String, String, String)> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let t = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            (t("port"), t("mode"), t("hints"), t("result"))
        })
        .collect();
    let op = |p: &str, m: &str, hi: &str, r: &str| (p.to_string(), m.into(), hi.into(), r.into());
    // The source's deassoc carries the hints its VSI was created with
    // ("none"): lldpad does not put the deassoc command's `hints=from` on
    // the wire for a VSI it already holds.
    assert_eq!(
        ops,
        [
            op(&p1, "assoc", "none", "assoc"),
            op(&p2, "preassoc-rr", "to", "moved"),
            op(&p2, "assoc", "to", "assoc"),
            op(&p1, "deassoc", "none", "deassoc"),
        ]
    );

    // Back to host 1 with a plain assoc and no deassociate from host 2:
    // the move timer frees host 2's copy and tells its station.
    assert_eq!(answered(&lab.vdp(0, "assoc", &u, "to", 0), "assoc"), v);
    assert_eq!(
        lab.vsis(),
        [row(&p2, "moving", "to", v), row(&p1, "assoc", "to", v)]
    );
    let freed = netns::wait_for(
        Duration::from_secs(MOVE_TIMEOUT_S + 5),
        Duration::from_millis(200),
        || (!lab.listing(1).contains(&u)).then_some(()),
    );
    assert!(freed.is_some(), "host 2 still holds it: {}", lab.listing(1));
    assert_eq!(lab.vsis(), [row(&p1, "assoc", "to", v)]);
    let s = lab.ctl("stats")["stats"].clone();
    assert_eq!(
        (s["moves_started"].as_u64(), s["moves_timed_out"].as_u64()),
        (Some(2), Some(1)),
        "{s}"
    );
    assert!(
        lab.listing(0).contains(&format!("filter = {v}-")),
        "{}",
        lab.listing(0)
    );
}
