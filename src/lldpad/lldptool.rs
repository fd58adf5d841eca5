//! `lldptool`: LLDP/EVB settings on an interface and the neighbour's TLVs.
//!
//! Owns: the exact `lldptool` argv the original agent used (always the
//! nearest-customer-bridge agent, `-g ncb`) and the parsing of its replies.
//! Calls: `exec::Runner` only. Used by `uplink` (detection), `topology`
//! (neighbour reports) and the lldpad driver (setting up the lldpad-side veth).
//!
//! Reply facts (captured live, see `tests/fixtures/lldptool/`):
//! - `-L ... adminStatus=X` prints `adminStatus = X` (rc 0).
//! - `-T ... -V evb enableTx=yes` prints nothing the first time and
//!   `Failed 20d` with rc 1 when EVB TX is already on.
//! - `get-tlv -n` prints nothing (rc 0) when there is no neighbour.
//! - Unknown interface: `Device not found or inactive` (rc 1).
//! - No lldpad reachable: rc 255, message on stderr.

use crate::exec::{CmdOutput, Runner};
use crate::lldpad::LldpadError;

/// The program every call runs (found through `PATH`, after the root helper).
const LLDPTOOL: &str = "lldptool";

fn run(r: &Runner, args: &[&str]) -> Result<CmdOutput, LldpadError> {
    let argv: Vec<&str> = std::iter::once(LLDPTOOL)
        .chain(args.iter().copied())
        .collect();
    Ok(r.run(&argv)?)
}

fn run_any(r: &Runner, args: &[&str]) -> Result<CmdOutput, LldpadError> {
    let argv: Vec<&str> = std::iter::once(LLDPTOOL)
        .chain(args.iter().copied())
        .collect();
    Ok(r.run_any(&argv)?)
}

/// True when `reply` holds `key=value` (spaces ignored, case-insensitive),
/// the check the original applied to the `-L` reply.
fn reply_has(reply: &str, key: &str, value: &str) -> bool {
    let want = format!("{key}={value}").to_ascii_lowercase();
    reply
        .lines()
        .any(|l| l.replace([' ', '\t'], "").to_ascii_lowercase() == want)
}

fn set_admin_status(r: &Runner, intf: &str, status: &str) -> Result<(), LldpadError> {
    let arg = format!("adminStatus={status}");
    let out = run(r, &["-L", "-i", intf, "-g", "ncb", &arg])?;
    if reply_has(&out.stdout, "adminStatus", status) {
        Ok(())
    } else {
        Err(LldpadError::Reply {
            what: format!("lldptool -L -i {intf} -g ncb {arg}"),
            reply: out.stdout,
        })
    }
}

/// Turn LLDP RX+TX on for the NCB agent of `intf`
/// (`lldptool -L -i IF -g ncb adminStatus=rxtx`, reply `adminStatus = rxtx`).
pub fn enable_lldp(r: &Runner, intf: &str) -> Result<(), LldpadError> {
    set_admin_status(r, intf, "rxtx")
}

/// Turn LLDP off for the NCB agent of `intf` (`adminStatus=disabled`).
pub fn disable_lldp(r: &Runner, intf: &str) -> Result<(), LldpadError> {
    set_admin_status(r, intf, "disabled")
}

/// The NCB agent's `adminStatus` of `intf` (`lldptool -l -i IF -g ncb
/// adminStatus`, reply `adminStatus=rxtx`): `rxtx`, `rx`, `tx`, `disabled`.
pub fn admin_status(r: &Runner, intf: &str) -> Result<String, LldpadError> {
    let out = run(r, &["-l", "-i", intf, "-g", "ncb", "adminStatus"])?;
    config_value(&out.stdout, "adminStatus").ok_or_else(|| LldpadError::Reply {
        what: format!("lldptool -l -i {intf} -g ncb adminStatus"),
        reply: out.stdout,
    })
}

/// Parse `key=value` listings (`-t ... -V evb -c`, `-l ... adminStatus`):
/// the value of `key`, if listed.
pub fn config_value(listing: &str, key: &str) -> Option<String> {
    listing.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// The local EVB configuration (`lldptool -t -i IF -g ncb -V evb -c [ARG]`):
/// the whole `key=value` listing.
pub fn evb_config(r: &Runner, intf: &str, arg: Option<&str>) -> Result<String, LldpadError> {
    let mut args = vec!["-t", "-i", intf, "-g", "ncb", "-V", "evb", "-c"];
    if let Some(a) = arg {
        args.push(a);
    }
    Ok(run(r, &args)?.stdout)
}

fn evb_tx_on(r: &Runner, intf: &str) -> Result<bool, LldpadError> {
    let listing = evb_config(r, intf, Some("enableTx"))?;
    Ok(config_value(&listing, "enableTx").as_deref() == Some("yes"))
}

/// Turn on EVB TLV transmission (`lldptool -T -i IF -g ncb -V evb
/// enableTx=yes`). Idempotent: when it is already on (lldpad would answer
/// `Failed`, rc 1) nothing is sent; a `Failed` reply is accepted when a
/// re-read shows `enableTx=yes`.
pub fn enable_evb(r: &Runner, intf: &str) -> Result<(), LldpadError> {
    if evb_tx_on(r, intf)? {
        return Ok(());
    }
    let args = ["-T", "-i", intf, "-g", "ncb", "-V", "evb", "enableTx=yes"];
    let out = run_any(r, &args)?;
    if out.success() {
        return Ok(());
    }
    // Lost a race with another writer, or lldpad refused: trust the read-back.
    if out.code == 1 && evb_tx_on(r, intf)? {
        return Ok(());
    }
    let cmd = r.full_argv(&[LLDPTOOL]).join(" ") + " " + &args.join(" ");
    Err(LldpadError::Exec(crate::exec::ExecError::Failed {
        cmd,
        output: out,
    }))
}

/// Turn on the EVB group-ID capability (`lldptool -T -i IF -g ncb -V evb -c
/// evbgpid=yes`; idempotent in lldpad).
pub fn enable_gpid(r: &Runner, intf: &str) -> Result<(), LldpadError> {
    run(
        r,
        &[
            "-T",
            "-i",
            intf,
            "-g",
            "ncb",
            "-V",
            "evb",
            "-c",
            "evbgpid=yes",
        ],
    )?;
    Ok(())
}

/// True when lldpad still holds what the agent configured on `intf`:
/// `adminStatus=rxtx`, EVB `enableTx=yes` and `evbgpid=yes`. False means an
/// lldpad that restarted or lost its settings; the caller re-applies them.
pub fn lldp_settings_ok(r: &Runner, intf: &str) -> Result<bool, LldpadError> {
    if admin_status(r, intf)? != "rxtx" {
        return Ok(false);
    }
    let listing = evb_config(r, intf, None)?;
    Ok(config_value(&listing, "enableTx").as_deref() == Some("yes")
        && config_value(&listing, "evbgpid").as_deref() == Some("yes"))
}

/// The pid of the lldpad this runner reaches (`lldptool -p`). A change of
/// pid means lldpad restarted.
pub fn lldpad_pid(r: &Runner) -> Result<u32, LldpadError> {
    let out = run(r, &["-p"])?;
    out.stdout
        .trim()
        .parse::<u32>()
        .map_err(|_| LldpadError::Reply {
            what: "lldptool -p".into(),
            reply: out.stdout,
        })
}

/// The neighbour's TLVs on one interface, parsed as the original agent did
/// (`topo_disc/pub_lldp_api.py`). `None` = the neighbour does not send it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NeighborTlvs {
    /// Chassis ID TLV, MAC subtype, lower-case (`xx:xx:xx:xx:xx:xx`).
    pub chassis_id_mac: Option<String>,
    /// Port ID TLV, MAC subtype, lower-case.
    pub port_id_mac: Option<String>,
    /// Port ID TLV value whatever its subtype, with the subtype label
    /// (`MAC:`, `Local:`, `Ifname:` ...) removed.
    pub port_id: Option<String>,
    /// Port Description TLV text: what the original reports as `remote_port`.
    pub port_desc: Option<String>,
    /// System Name TLV text.
    pub system_name: Option<String>,
    /// System Description TLV text.
    pub system_desc: Option<String>,
    /// Management Address TLV, IPv4 only, with its family prefix:
    /// `IPv4:10.10.0.101`.
    pub mgmt_addr: Option<String>,
    /// The word after `mode:` in the EVB TLV: `bridge` or `station`.
    pub evb_mode: Option<String>,
    /// The EVB TLV shows a mode (`remote_evb_cfgd`).
    pub evb_cfgd: bool,
    /// lldptool's output as read.
    pub raw: String,
}

impl NeighborTlvs {
    /// The neighbour announces itself as an EVB bridge (`mode:bridge`).
    pub fn is_evb_bridge(&self) -> bool {
        self.evb_mode.as_deref() == Some("bridge")
    }
}

/// All neighbour TLVs of `intf` in one call (`lldptool get-tlv -n -i IF -g ncb`).
pub fn get_tlvs(r: &Runner, intf: &str) -> Result<NeighborTlvs, LldpadError> {
    let out = run(r, &["get-tlv", "-n", "-i", intf, "-g", "ncb"])?;
    Ok(parse_tlvs(&out.stdout))
}

/// The text of TLV `header` up to the next TLV header, split on `pattern`:
/// the original's `_check_common_tlv_format` (None when the header or the
/// pattern is absent). Returns what follows the first `pattern`.
fn tlv_after<'a>(text: &'a str, header: &str, pattern: &str) -> Option<&'a str> {
    let (_, rest) = text.split_once(header)?;
    let section = rest.split("TLV").next().unwrap_or("");
    let mut parts = section.split(pattern);
    parts.next()?;
    parts.next()
}

fn first_line_trimmed(s: &str) -> Option<String> {
    let v = s.split('\n').next().unwrap_or("").trim();
    Some(v.to_string())
}

fn mac_of(text: &str, header: &str) -> Option<String> {
    let v = first_line_trimmed(tlv_after(text, header, "MAC:")?)?;
    Some(v.to_ascii_lowercase())
}

fn whole_line(text: &str, header: &str) -> Option<String> {
    // `split("\n")[1].strip()`: the line right after the header.
    Some(tlv_after(text, header, "\n")?.trim().to_string())
}

/// Parse `lldptool get-tlv -n` output. Same rules as the original:
/// - the section of a TLV runs from its header line to the next `TLV`;
/// - MACs: text after `MAC:` up to the end of the line, trimmed (and
///   lower-cased, as the contract asks);
/// - system name / description, port description: the first line after the
///   header, trimmed;
/// - management address: `IPv4:` + the text after `IPv4:` on that line;
/// - EVB: `evb_cfgd` when the section contains `mode:`, `evb_mode` = the word
///   after it.
pub fn parse_tlvs(text: &str) -> NeighborTlvs {
    let evb = tlv_after(text, "EVB Configuration TLV", "mode:");
    let evb_mode = evb
        .and_then(|s| s.split_whitespace().next())
        .map(str::to_string);
    let port_id = tlv_after(text, "Port ID TLV", "\n").and_then(|line| {
        let line = line.trim();
        let v = match line.split_once(": ") {
            Some((label, v)) if !label.contains(' ') => v.trim(),
            _ => line,
        };
        (!v.is_empty()).then(|| v.to_string())
    });
    NeighborTlvs {
        chassis_id_mac: mac_of(text, "Chassis ID TLV"),
        port_id_mac: mac_of(text, "Port ID TLV"),
        port_id,
        port_desc: whole_line(text, "Port Description TLV"),
        system_name: whole_line(text, "System Name TLV"),
        system_desc: whole_line(text, "System Description TLV"),
        mgmt_addr: tlv_after(text, "Management Address TLV", "IPv4:")
            .and_then(first_line_trimmed)
            .map(|a| format!("IPv4:{a}")),
        evb_cfgd: evb.is_some(),
        evb_mode,
        raw: text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_value_finds_key() {
        let l = "vdprka=20\nevbgpid=yes\nenableTx=no\n";
        assert_eq!(config_value(l, "evbgpid").as_deref(), Some("yes"));
        assert_eq!(config_value(l, "enableTx").as_deref(), Some("no"));
        assert_eq!(config_value(l, "evbmode"), None);
    }

    #[test]
    fn reply_has_ignores_spaces_and_case() {
        assert!(reply_has("adminStatus = rxtx\n", "adminStatus", "rxtx"));
        assert!(!reply_has(
            "adminStatus = disabled\n",
            "adminStatus",
            "rxtx"
        ));
        assert!(!reply_has("", "adminStatus", "rxtx"));
    }

    #[test]
    fn parse_garbage_does_not_panic() {
        for t in [
            "TLV",
            "EVB Configuration TLV",
            "EVB Configuration TLV mode:",
            "Port ID TLV\n",
            "\u{0}",
        ] {
            let n = parse_tlvs(t);
            assert!(!n.is_evb_bridge());
        }
        let n = parse_tlvs("EVB Configuration TLV\n\tmode:");
        assert!(n.evb_cfgd);
        assert_eq!(n.evb_mode, None);
    }
}
