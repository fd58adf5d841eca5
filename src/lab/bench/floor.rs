//! `vdp-lab bench floor`: the protocol floor of the same lab, measured in
//! the same run: N fresh associations sent straight to the station lldpad,
//! one after the other, each waiting for the bridge's verdict (`-W`),
//! without OVS, controller or agent work. `--via socket` sends the exact
//! datagram `vdptool -T -W` sends over lldpad's control socket
//! (`clif::ClifSet`, the agent's own path); `--via vdptool` runs `vdptool`
//! (the primitive of the original agent). The VSIs are deassociated
//! afterwards over the socket, each waiting for its event (timed apart),
//! so the agent's and the leaf's state is as before.
//!
//! Owns nothing persistent. Calls `crate::lldpad::{clif, vdptool}` and
//! `exec::Runner` (vdptool).

use super::*;
use crate::config::VdpConfig;
use crate::lldpad::clif::{ClifSet, SetReply};
use crate::lldpad::vdptool::{self, AssocOutcome, Mode, VsiArgs};
use crate::lldpad::wire::VdpEventKind;

/// A floor VSI: uuid `f1000000-0000-4000-8000-<i>`, MAC `fa:16:3e:f0:<i>`,
/// group id = the bench port's segment (so the leaf sees the same networks).
fn floor_vsi(i: u32, nets: u32) -> (String, String, u32) {
    let p = bench_port(i, nets);
    (
        format!("f1000000-0000-4000-8000-{i:012x}"),
        format!("fa:16:3e:f0:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff),
        p.segment,
    )
}

enum Via {
    Socket(ClifSet),
    Vdptool(Runner),
}

/// One associate (or deassociate with `vlan`) and its verdict: the VLAN.
fn request(
    via: &Via,
    iface: &str,
    mode: Mode,
    (uuid, mac, gid): &(String, String, u32),
    vlan: u16,
) -> Result<u16, String> {
    let cfg = VdpConfig::default();
    let args = VsiArgs {
        uuid,
        mac,
        gid: *gid,
        vlan,
        oui: None,
    };
    let cmd =
        vdptool::request_command(iface, &cfg, mode, &args, true).map_err(|e| e.to_string())?;
    let want = match mode {
        Mode::Deassoc => VdpEventKind::Deassociated,
        _ => VdpEventKind::Associated,
    };
    match via {
        Via::Socket(c) => match c.send(&cmd, uuid).map_err(|e| e.to_string())? {
            SetReply::Refused { text, .. } => Err(text),
            SetReply::Taken { event: None } => Err("no event within the wait".into()),
            SetReply::Taken { event: Some(ev) } => {
                let vlan = ev.vlan.unwrap_or(0);
                if ev.kind == want && (vlan != 0 || mode == Mode::Deassoc) {
                    Ok(vlan)
                } else {
                    Err(format!("event {:?} vlan {:?}", ev.kind, ev.vlan))
                }
            }
        },
        Via::Vdptool(r) => {
            let out = r.run_any_timeout(&cmd.argv(), Duration::from_secs(15));
            let out = out.map_err(|e| e.to_string())?;
            match vdptool::assoc_outcome(&out, uuid, mac) {
                AssocOutcome::Associated { vlan } => Ok(vlan),
                o => Err(format!("{o:?}")),
            }
        }
    }
}

pub(super) fn cmd_floor(o: &Opts) -> Res<()> {
    let iface = o.need("iface")?.to_string();
    let (first, count, nets) = port_range(o)?;
    let via_name = o.get("via").unwrap_or("socket").to_string();
    let via = match via_name.as_str() {
        "socket" => Via::Socket(ClifSet::new()),
        "vdptool" => Via::Vdptool(Runner::new(Vec::new(), Duration::from_secs(15))),
        v => return Err(BenchError::Usage(format!("--via {v}: socket or vdptool"))),
    };
    let vsis: Vec<_> = (first..first + count).map(|i| floor_vsi(i, nets)).collect();
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut done = Vec::new();
    let mut failed: Vec<Value> = Vec::new();
    for v in &vsis {
        let t0 = Instant::now();
        match request(&via, &iface, Mode::Assoc, v, 0) {
            Ok(vlan) => {
                lat.push(ms(t0.elapsed()));
                done.push((v, vlan));
            }
            Err(e) => failed.push(json!({"uuid": v.0, "error": e})),
        }
    }
    let total = started.elapsed();
    // Clean up: remove them again (repeat the VLAN lldpad holds), each
    // waiting for its event, so no event of this phase is left for a
    // later `vdptool -W` (which prints the interface's first event).
    let t_de = Instant::now();
    let mut de_failed = 0;
    let cleanup = Via::Socket(ClifSet::new());
    for (v, vlan) in &done {
        if let Err(e) = request(&cleanup, &iface, Mode::Deassoc, v, *vlan) {
            log::warn!("floor: deassoc {}: {e}", v.0);
            de_failed += 1;
        }
    }
    let n = lat.len();
    let total_s = total.as_secs_f64();
    let v = json!({
        "name": format!("floor_{via_name}"),
        "via": via_name,
        "iface": iface,
        "vsis": count,
        "nets": nets,
        "associated": n,
        "failed": failed.len(),
        "failures": failed.into_iter().take(10).collect::<Vec<_>>(),
        "total_s": round2(total_s),
        "per_vsi_ms": (n > 0).then(|| round2(total_s * 1000.0 / n as f64)),
        "rate_per_s": (total_s > 0.0).then(|| round1(n as f64 / total_s)),
        "latency": summary(lat.clone()),
        "samples_ms": lat.iter().map(|x| round2(*x)).collect::<Vec<_>>(),
        "deassoc_s": round2(t_de.elapsed().as_secs_f64()),
        "deassoc_failed": de_failed,
    });
    write_part(&o.out()?, &v)
}
