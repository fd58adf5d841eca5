use super::*;

fn req() -> VsiRequest {
    VsiRequest {
        port_uuid: "7af441dd-253b-4772-8cf1-a4cfef18efe5".into(),
        vm_mac: "fa:16:3e:00:00:01".into(),
        net_uuid: "11111111-2222-3333-4444-555555555555".into(),
        segmentation_id: 20000,
        oui: None,
    }
}

/// One `%02x key %04x value` field of lldpad's records.
fn field(k: &str, v: &str) -> String {
    format!("{:02x}{k}{:04x}{v}", k.len(), v.len())
}

/// An `R` line holding one record for `req()`.
fn r_line(hints: &str, filter: &str) -> String {
    r_line_with(hints, filter, &[])
}

/// The same with further fields after the filter (e.g. `oui`).
fn r_line_with(hints: &str, filter: &str, extra: &[(&str, &str)]) -> String {
    let mut rec = [
        field("mode", "assoc"),
        field("mgrid2", "0"),
        field("typeid", "0"),
        field("typeidver", "0"),
        field("uuid", &req().port_uuid),
        field("hints", hints),
        field("filter", filter),
    ]
    .concat();
    for (k, v) in extra {
        rec.push_str(&field(k, v));
    }
    format!("R00C3010000001509LLDPLeth200000003{:04x}{rec}", rec.len())
}

/// A runner whose "vdptool" is a shell script printing canned output.
fn fake(script: &str) -> (LldpadDriver, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let path = dir.path.join("vdptool");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    // root helper "env PATH=dir:$PATH" puts the fake first.
    let runner = Runner::new(
        vec![
            "env".into(),
            format!(
                "PATH={}:{}",
                dir.path.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ],
        Duration::from_secs(5),
    );
    (
        LldpadDriver::new(Arc::new(runner), "LLDPLeth2", VdpConfig::default()),
        dir,
    )
}

mod tempdir {
    pub(super) struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub(super) fn new() -> Dir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "vd-unit-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[test]
fn adopts_vsi_lldpad_already_holds() {
    // Query shows hints 0 + VLAN 3003: no assoc is sent.
    let (d, _dir) = fake(&format!(
        "case \"$*\" in\n*\"-t -i\"*) echo M00; echo '{}';;\n*) echo unexpected; exit 3;;\nesac",
        r_line("0", "3003-fa:16:3e:00:00:01-20000")
    ));
    let r = d.associate(&req());
    assert_eq!(r, VdpReply::associated(3003));
    assert_eq!(d.vdptool_calls(), 1);
    assert_eq!(d.vsis().len(), 1);
    // Refresh: one list process, nothing changed, nothing reported.
    assert!(d.refresh().is_empty());
    assert_eq!(d.vdptool_calls(), 2);
}

#[test]
fn unusable_query_socket_falls_back_to_vdptool() {
    let (d, _dir) = fake(&format!(
        "case \"$*\" in\n*\"-t -i\"*) echo M00; echo '{}';;\n*) echo unexpected; exit 3;;\nesac",
        r_line("0", "3003-fa:16:3e:00:00:01-20000")
    ));
    // No such namespace: the socket cannot even be created.
    d.set_query_socket(Some(ClifQuery::in_netns(&format!(
        "cq-none-{}",
        std::process::id()
    ))));
    assert_eq!(d.associate(&req()), VdpReply::associated(3003));
    assert!(d.refresh().is_empty());
    assert_eq!((d.vdptool_calls(), d.socket_queries()), (2, 0));
}

#[test]
fn callback_threshold_rereports() {
    let (d, _dir) = fake(&format!(
        "echo M00; echo '{}'",
        r_line("0", "3003-fa:16:3e:00:00:01-20000")
    ));
    assert_eq!(d.associate(&req()).vdp_vlan, Some(3003));
    let mut reported = Vec::new();
    for round in 0..14 {
        if !d.refresh().is_empty() {
            reported.push(round);
        }
    }
    // Unchanged: reported again when more than CALLBACK_THRESHOLD quiet
    // rounds passed (original: callback_count > 5, i.e. every 7th round).
    assert_eq!(reported, vec![6, 13]);
}

/// Put a VSI awaiting its verdict into the driver's table (`busy`: its
/// request is in flight).
fn insert_pending(d: &LldpadDriver, req: VsiRequest, busy: bool) {
    let mut t = d.table.lock();
    let mut e = Entry {
        req,
        reply: VdpReply::pending(),
        busy,
        deassociating: false,
        restored: false,
        intent: d.plain(),
        unchanged_rounds: 0,
        version: 0,
        reasserting: None,
        quiet_send: None,
    };
    e.version = t.bump();
    t.vsis.insert(e.req.port_uuid.clone(), e);
}

#[test]
fn rechecks_while_pending_do_not_count_as_refresh_rounds() {
    let (d, _dir) = fake(&format!(
        "echo M00; echo '{}'",
        r_line("0", "3003-fa:16:3e:00:00:01-20000")
    ));
    assert_eq!(d.associate(&req()).vdp_vlan, Some(3003));
    // Another VSI awaits its verdict (its request is in flight).
    insert_pending(
        &d,
        VsiRequest {
            port_uuid: "7af441dd-0000-4772-8cf1-a4cfef18efe5".into(),
            ..req()
        },
        true,
    );
    // The daemon's 1 s re-checks: the first counts (none before), the
    // others come before a refresh period: nothing re-reported.
    for _ in 0..14 {
        assert!(d.refresh().is_empty());
    }
    // Nothing pending any more: every round counts again.
    d.table.lock().vsis.retain(|_, e| !e.busy);
    let reported: Vec<u32> = (0..14).filter(|_| !d.refresh().is_empty()).collect();
    assert_eq!(reported.len(), 2, "{reported:?}");
}

#[test]
fn pending_recheck_asks_about_the_pending_vsis_only() {
    // Every vdptool call is logged; queries answer with req()'s record
    // (VLAN 3003), requests give no verdict.
    let (d, dir) = fake(&format!(
        "D=$(dirname $0)\necho \"$*\" >> $D/calls\ncase \"$*\" in\n\
         *-T*) ;;\n\
         *) echo M00; echo '{}';;\nesac",
        r_line("0", "3003-fa:16:3e:00:00:01-20000")
    ));
    assert_eq!(d.associate(&req()).vdp_vlan, Some(3003));
    let other = "7af441dd-0000-4772-8cf1-a4cfef18efe5";
    insert_pending(
        &d,
        VsiRequest {
            port_uuid: other.into(),
            vm_mac: "fa:16:3e:00:00:02".into(),
            ..req()
        },
        false,
    );
    let calls = || {
        let all = std::fs::read_to_string(dir.path.join("calls")).unwrap_or_default();
        std::fs::remove_file(dir.path.join("calls")).ok();
        all.lines().map(String::from).collect::<Vec<_>>()
    };
    calls();
    let _ = d.recheck_pending();
    let seen = calls();
    assert!(!seen.is_empty(), "the pending VSI is asked about");
    for c in &seen {
        assert!(
            c.contains(&format!("uuid={other}")),
            "only the pending VSI: {c}"
        );
    }
    // A full round lists everything first.
    let _ = d.refresh();
    let seen = calls();
    let list = vdptool::list_argv("LLDPLeth2").unwrap()[1..].join(" ");
    assert!(seen.contains(&list), "{seen:?}");
}

thread_local! {
    /// Make the next `query_state` on this thread panic.
    pub(super) static PANIC_NEXT_QUERY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[test]
fn panic_in_a_request_leaves_no_vsi_busy() {
    let (d, _dir) = fake(&format!(
        "case \"$*\" in\n*\"-t -i\"*) echo M00; echo '{}';;\n*) echo unexpected; exit 3;;\nesac",
        r_line("0", "3003-fa:16:3e:00:00:01-20000")
    ));
    PANIC_NEXT_QUERY.with(|c| c.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.associate(&req())));
    assert!(r.is_err());
    // Not answered "pending" (busy), not waited on: settled normally.
    assert_eq!(d.associate(&req()), VdpReply::associated(3003));
    // The same for a deassociation that unwinds.
    PANIC_NEXT_QUERY.with(|c| c.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        d.deassociate(&req().port_uuid)
    }));
    assert!(r.is_err());
    assert_eq!(d.associate(&req()), VdpReply::associated(3003));
}

#[test]
fn busy_vsi_is_not_sent_twice() {
    let (d, _dir) = fake("sleep 1; echo M00; echo R00C3010000001509LLDPLeth200000003");
    let d = Arc::new(d);
    let d2 = d.clone();
    let h = std::thread::spawn(move || d2.associate(&req()));
    while d.vsis().is_empty() {
        std::thread::yield_now();
    }
    let r = d.associate(&req());
    assert!(r.pending);
    let _ = h.join().unwrap();
}

#[test]
fn no_associate_storm_while_lldpad_holds_nothing() {
    // -W gives no answer and lldpad then holds nothing for the VSI: the
    // pending re-checks (every second in the daemon) send no new
    // associate before vdp.sync_timeout_s; an lldpad (re)start or an
    // event about the VSI lets the next round send at once.
    let (d, dir) = fake(
        "D=$(dirname $0)\ncase \"$*\" in\n\
         *-T*) echo x >> $D/assoc;;\n\
         *) echo M00; echo R00C3010000001509LLDPLeth200000003;;\nesac",
    );
    let sent = || {
        std::fs::read_to_string(dir.path.join("assoc"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(d.associate(&req()), VdpReply::pending());
    assert_eq!(sent(), 1);
    for _ in 0..5 {
        let _ = d.refresh();
    }
    assert_eq!(sent(), 1, "one associate per sync_timeout_s at most");
    d.note_lldpad_start();
    d.refresh();
    assert_eq!(sent(), 2, "after an lldpad start: at once");
    d.refresh();
    assert_eq!(sent(), 2);
    let _ = d.apply_event(
        &req().port_uuid,
        EventVerdict::Ended("Keepalive Timeout".into()),
    );
    d.refresh();
    assert_eq!(sent(), 3, "after an event about the VSI: at once");
}

#[test]
fn pending_resolved_by_refresh() {
    // -W gives no answer; lldpad answers queries with nothing before the
    // request and with hints 255, then hints 0 + VLAN 3003 afterwards.
    let (d, dir) = fake(&format!(
        "D=$(dirname $0)\ncase \"$*\" in\n\
             *-T*) touch $D/sent;;\n\
             *) echo M00; if [ -f $D/done ]; then echo '{}'; elif [ -f $D/sent ]; then echo '{}'; \
             else echo R00C3010000001509LLDPLeth200000003; fi;;\nesac",
        r_line("0", "3003-fa:16:3e:00:00:01-20000"),
        r_line("255", "0-fa:16:3e:00:00:01-20000"),
    ));
    let r = d.associate(&req());
    assert_eq!(r, VdpReply::pending());
    assert_eq!(d.vdptool_calls(), 2);
    assert!(d.refresh().is_empty(), "still waiting: nothing to say");
    std::fs::write(dir.path.join("done"), "").unwrap();
    let ch = d.refresh();
    assert_eq!(ch.len(), 1);
    assert_eq!((ch[0].old_vdp_vlan, ch[0].vdp_vlan), (None, Some(3003)));
    assert_eq!(ch[0].fail_reason, None);
    assert_eq!(ch[0].segmentation_id, 20000);
    assert_eq!(d.vsis()[0].1, VdpReply::associated(3003));
    // Deassociate: query (stored VID 3003) then deassoc with it.
    let gone = d.deassociate(&req().port_uuid);
    assert_eq!(gone.vdp_vlan, Some(3003));
    assert!(d.vsis().is_empty());
}

/// Flows follow VLANs: a VSI lldpad lost (restart, not ready) is
/// re-asserted without any change reported while lldpad gives no
/// verdict; back with the same VLAN it is reported as unchanged VLAN;
/// a real refusal is the verdict that takes the VLAN away.
#[test]
fn lost_vsi_is_reasserted_without_a_change_until_a_verdict() {
    let (d, dir) = fake(&format!(
            "D=$(dirname $0)\nM=$(cat $D/mode)\ncase \"$M:$*\" in\n\
             held:*-T*) echo 'unexpected';;\n\
             held:*) echo M00; echo '{}';;\n\
             gone:*-T*) echo 'FAILED: Device not found or inactive'; exit 1;;\n\
             down:*) echo 'Failed to connect to lldpad - clif_open: Invalid argument' >&2; exit 255;;\n\
             reject:*-T*) echo 'FAILED: Command not applicable'; exit 1;;\n\
             *) echo M00; echo R00C3010000001509LLDPLeth200000003;;\nesac",
            r_line("0", "3003-fa:16:3e:00:00:01-20000"),
        ));
    let mode = |m: &str| std::fs::write(dir.path.join("mode"), m).unwrap();
    mode("held");
    assert_eq!(d.associate(&req()).vdp_vlan, Some(3003), "adopted");
    for m in ["down", "gone", "down"] {
        mode(m);
        assert_eq!(d.refresh(), Vec::new(), "{m}: no verdict, no change");
        assert_eq!(d.reasserting(&req().port_uuid), Some(3003), "{m}");
        assert!(d.vsis()[0].1.awaiting_verdict(), "{m}");
    }
    mode("held");
    let ch = d.refresh();
    assert_eq!(ch.len(), 1, "{ch:?}");
    assert_eq!(
        (ch[0].old_vdp_vlan, ch[0].vdp_vlan),
        (Some(3003), Some(3003))
    );
    assert_eq!(d.reasserting(&req().port_uuid), None);
    // Lost again, then refused for real: the verdict is reported.
    mode("gone");
    assert!(d.refresh().is_empty());
    mode("reject");
    let ch = d.refresh();
    assert_eq!(ch.len(), 1, "{ch:?}");
    assert_eq!((ch[0].old_vdp_vlan, ch[0].vdp_vlan), (Some(3003), None));
    // vdptool exited non-zero: the original's text (lldpad's is logged).
    assert_eq!(
        ch[0].fail_reason.as_deref(),
        Some("Incorrect Reply,no mode information found: None")
    );
    assert!(d.vsis()[0].1.is_verdict());
}

#[test]
fn events_update_the_table() {
    let (d, _dir) = fake(&format!(
        "case \"$*\" in\n*\"-t -i\"*) echo M00; echo '{}';;\nesac",
        r_line("0", "3003-fa:16:3e:00:00:01-20000")
    ));
    assert!(
        d.apply_event(&req().port_uuid, EventVerdict::Vlan(5))
            .is_none(),
        "unknown VSI"
    );
    assert_eq!(d.associate(&req()).vdp_vlan, Some(3003));
    assert!(
        d.apply_event(&req().port_uuid, EventVerdict::Vlan(3003))
            .is_none(),
        "no change"
    );
    // Lost (keep-alive timeout): re-asserted, nothing reported, so
    // its flows stay (flows follow VLANs, not events).
    let lost = d.apply_event(
        &req().port_uuid,
        EventVerdict::Ended("Internal Error : Keepalive Timeout".into()),
    );
    assert_eq!(lost, None);
    assert_eq!(d.reasserting(&req().port_uuid), Some(3003));
    let now = &d.vsis()[0].1;
    assert!(now.awaiting_verdict() && !now.is_verdict(), "{now:?}");
    assert_eq!(
        now.fail_reason.as_deref(),
        Some("Internal Error : Keepalive Timeout")
    );
    // A second loss event while re-asserting: still nothing.
    assert_eq!(
        d.apply_event(&req().port_uuid, EventVerdict::Ended("again".into())),
        None
    );
    // 48059 = PS/PCP bits + 3003: back with the VLAN it held.
    let back = d
        .apply_event(&req().port_uuid, EventVerdict::Vlan(48059))
        .unwrap();
    assert_eq!((back.old_vdp_vlan, back.vdp_vlan), (Some(3003), Some(3003)));
    assert_eq!(back.fail_reason, None);
    assert_eq!(d.reasserting(&req().port_uuid), None);
    // VLAN 0: "no VLAN yet" from the bridge, a verdict without a reason.
    let zero = d
        .apply_event(&req().port_uuid, EventVerdict::Vlan(0))
        .unwrap();
    assert_eq!(
        (zero.old_vdp_vlan, zero.vdp_vlan, zero.fail_reason),
        (Some(3003), None, None)
    );
    assert!(d.vsis()[0].1.is_verdict());
}

#[test]
fn up_during_down_waits_for_the_deassociation() {
    let (d, _dir) = fake(&format!(
        "case \"$*\" in\n*deassoc*) sleep 1;;\n*\"-t -i\"*) echo M00; echo '{}';;\nesac",
        r_line("0", "3003-fa:16:3e:00:00:01-20000")
    ));
    let d = Arc::new(d);
    assert_eq!(d.associate(&req()).vdp_vlan, Some(3003));
    let d2 = d.clone();
    let h = std::thread::spawn(move || d2.deassociate(&req().port_uuid));
    while !d.vsis().first().is_some_and(|(_, r)| r.pending) {
        std::thread::yield_now();
    }
    // Not a "pending" no-op: it waits, then associates again.
    let up = d.associate(&req());
    assert_eq!(up, VdpReply::associated(3003));
    assert_eq!(h.join().unwrap().fail_reason, None);
    assert_eq!(d.vsis().len(), 1);
}

#[test]
fn refuses_bad_args_without_spawning() {
    let (d, _dir) = fake("exit 0");
    let mut r = req();
    r.vm_mac = "fa:16:3e:00:00:01,x=1".into();
    let rep = d.associate(&r);
    assert!(rep.fail_reason.unwrap().contains("mac"));
    assert_eq!(d.vdptool_calls(), 0);
    assert!(d.vsis().is_empty());
}

/// A repeated "up" whose Cisco OUI data changed is associated again (lldpad
/// updates the OUI only with an associate); unchanged, it is adopted.
#[test]
fn changed_oui_is_associated_again() {
    // lldpad's oui field: vm_name vm-1, ipv4 10.0.0.5 (decimal of the
    // in-memory u32, with lldpad's trailing 'l').
    let ip = u32::from_le_bytes([10, 0, 0, 5]);
    let oui_val = format!(
        "05cisco{}{}",
        field("vm_name", "vm-1"),
        field("ipv4_addr", &format!("{ip}l"))
    );
    let line = r_line_with("0", "3003-fa:16:3e:00:00:01-20000", &[("oui", &oui_val)]);
    let (d, dir) = fake(&format!(
        "D=$(dirname $0)\ncase \"$*\" in\n*-T*) echo x >> $D/assoc;;\n*) echo M00; echo '{line}';;\nesac"
    ));
    let sent = || {
        std::fs::read_to_string(dir.path.join("assoc"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let with = |name: &str, ip: [u8; 4]| VsiRequest {
        oui: Some(crate::model::Oui {
            oui_id: "cisco".into(),
            vm_name: Some(name.into()),
            ip_addr: Some(ip.into()),
            ..Default::default()
        }),
        ..req()
    };
    assert_eq!(
        d.associate(&with("vm-1", [10, 0, 0, 5])),
        VdpReply::associated(3003)
    );
    assert_eq!(sent(), 0, "same OUI: adopted");
    let _ = d.associate(&with("vm-1", [10, 0, 0, 6]));
    assert_eq!(sent(), 1, "new IP: associated again");
    let _ = d.associate(&with("web 01", [10, 0, 0, 5]));
    assert_eq!(sent(), 2, "renamed: associated again");
}
