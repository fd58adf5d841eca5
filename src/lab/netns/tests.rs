use super::*;

#[test]
fn vdptool_argv_is_the_agents() {
    assert_eq!(
        vdptool_set_argv("eth1", "assoc", "u-1", "0-fa:16:3e:00:00:01-20001", true).join(" "),
        "vdptool -T -i eth1 -W -V assoc -c mode=assoc -c mgrid2=0 -c typeid=0 \
             -c typeidver=0 -c uuid=u-1 -c hints=none -c filter=0-fa:16:3e:00:00:01-20001"
    );
    assert!(!vdptool_set_argv("e", "deassoc", "u", "f", false).contains(&"-W".to_string()));
}

#[test]
fn poll_until_returns_first_ok_or_last_err() {
    let mut n = 0;
    let r: Result<u32, u32> = poll_until(Duration::from_secs(5), Duration::from_millis(1), || {
        n += 1;
        if n == 3 {
            Ok(n)
        } else {
            Err(n)
        }
    });
    assert_eq!(r, Ok(3));
    let t = Instant::now();
    let mut n = 0;
    let r: Result<(), u32> =
        poll_until(Duration::from_millis(50), Duration::from_millis(10), || {
            n += 1;
            Err(n)
        });
    assert_eq!(r, Err(n));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(!wait_until(Duration::from_millis(10), || false));
    assert!(wait_until(Duration::from_millis(10), || true));
}

#[test]
fn temp_dir_is_removed_on_drop() {
    let d = TempDir::new("nsh-td").unwrap();
    let p = d.path().to_path_buf();
    std::fs::write(p.join("x"), "y").unwrap();
    drop(d);
    assert!(!p.exists());
}

#[test]
fn config_texts() {
    assert_eq!(lldpad_config(LldpadRole::Station, "x"), "");
    assert!(lldpad_config(LldpadRole::Bridge, "b0").contains("  b0 : {"));
    let full = bridge_config_with_info("10.10.0.101");
    assert!(full.contains("  common : {"), "{full}");
    assert!(full.contains("tlvid00000008 : { enableTx = true; ipv4 = \"10.10.0.101\"; };"));
    assert!(STATION_TX_CONFIG.contains("tlvid0080c20d : { enableTx = true; };"));
}

#[test]
fn netns_veth_and_station_bridge_evb() {
    if !lldpad_lab_ok() {
        return;
    }
    let tmp = TempDir::new(&unique("nsh", 0)).unwrap();
    let dir = tmp.path();
    let sta = Netns::create(&unique("nss", 0)).unwrap();
    let br = Netns::create(&unique("nsb", 0)).unwrap();
    veth(&sta, "s0", &br, "b0").unwrap();
    assert_eq!(sta.mac("s0").unwrap().len(), 17);
    let _b = LldpadInstance::start(&br, LldpadRole::Bridge, "b0", dir).unwrap();
    let mut s = LldpadInstance::start(&sta, LldpadRole::Station, "s0", dir).unwrap();
    assert!(s.pid().is_some());
    assert_eq!(s.pid(), s.child_pid());
    enable_station(&sta, "s0").unwrap();
    assert!(wait_evb_bridge(&sta, "s0", Duration::from_secs(10)));
    let old = s.pid();
    s.restart().unwrap();
    assert_ne!(s.pid(), old);
    assert_eq!(s.pid(), s.child_pid());
    let lldp = sta.stdout(&["lldptool", "-l", "-i", "s0", "-g", "ncb", "adminStatus"]);
    assert_eq!(
        lldp.unwrap().trim(),
        "adminStatus=disabled",
        "settings lost"
    );
}
