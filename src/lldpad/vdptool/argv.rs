//! vdptool command lines (pure): the argv of queries, lists, associations
//! and deassociations, with every value checked so nothing can smuggle an
//! item into another (`,` and `=` separate vdptool's items).
//!
//! Owns the argv format. Calls nothing.

use super::*;
use crate::config::Hints;

/// Why an argv could not be built. Values reaching here were validated
/// upstream; this is a cheap second line of defence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    /// A value that could smuggle extra vdptool arguments, or is malformed.
    BadValue { field: &'static str, value: String },
    /// `vdp.filter` not in 1..=4.
    UnsupportedFilter(u32),
    /// `vdp.vsiidfrmt` other than 5 (UUID).
    UnsupportedVsiIdFormat(u32),
    /// Filter format needs a MAC / non-zero group id that is missing.
    MissingFilterPart { filter: u32, part: &'static str },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::BadValue { field, value } => {
                write!(f, "invalid {field} for vdptool: {value:?}")
            }
            ArgError::UnsupportedFilter(x) => write!(f, "unsupported VDP filter format {x}"),
            ArgError::UnsupportedVsiIdFormat(x) => {
                write!(f, "unsupported VSI ID format {x} (only 5, UUID)")
            }
            ArgError::MissingFilterPart { filter, part } => {
                write!(f, "VDP filter format {filter} needs a {part}")
            }
        }
    }
}

impl std::error::Error for ArgError {}

/// The per-VSI values of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsiArgs<'a> {
    /// VSI ID (the port UUID).
    pub uuid: &'a str,
    pub mac: &'a str,
    /// Group id (= segmentation id) for filter formats 3 and 4.
    pub gid: u32,
    /// Filter VLAN field as lldpad stores it (0 = "bridge chooses"; may
    /// carry PS/PCP bits in 15..12 when echoing a stored value).
    pub vlan: u16,
    /// Only `oui_id == "cisco"` is sent, only with assoc.
    pub oui: Option<&'a Oui>,
}

pub(super) fn bad(field: &'static str, value: &str) -> ArgError {
    ArgError::BadValue {
        field,
        value: value.to_string(),
    }
}

/// A free-text token that lands inside `-c key=value` or `oui=cisco,k=v`:
/// non-empty, no `,` `=` whitespace or control characters.
pub fn check_token(field: &'static str, value: &str) -> Result<(), ArgError> {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c == ',' || c == '=' || c.is_whitespace() || c.is_control())
    {
        return Err(bad(field, value));
    }
    Ok(())
}

/// UUID-ish: hex digits and dashes only (8-4-4-4-12 or 32 hex).
pub(super) fn check_uuid(field: &'static str, value: &str) -> Result<(), ArgError> {
    let hex = value.chars().filter(|c| c.is_ascii_hexdigit()).count();
    if hex != 32 || !value.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(bad(field, value));
    }
    Ok(())
}

pub(super) fn check_mac(value: &str) -> Result<(), ArgError> {
    let parts: Vec<&str> = value.split(':').collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return Err(bad("mac", value));
    }
    Ok(())
}

/// lldpad copies `vm_name` into a 100-byte buffer (`MAX_VM_NAME`).
pub const MAX_VM_NAME: usize = 99;

/// The longest prefix of `s` of at most `max` bytes ending at a character
/// boundary.
pub(super) fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The `filter=` value for `vdp.filter` format `fmt`
/// (1 `VLAN`, 2 `VLAN-MAC`, 3 `VLAN--GID`, 4 `VLAN-MAC-GID`).
pub fn filter_value(fmt: FilterFormat, vlan: u16, mac: &str, gid: u32) -> Result<String, ArgError> {
    let need_gid = |filter: u32| {
        if gid == 0 {
            Err(ArgError::MissingFilterPart {
                filter,
                part: "non-zero group id",
            })
        } else {
            Ok(())
        }
    };
    match fmt {
        FilterFormat::GroupMacVid => {
            check_mac(mac)?;
            need_gid(4)?;
            Ok(format!("{vlan}-{mac}-{gid}"))
        }
        FilterFormat::GroupVid => {
            need_gid(3)?;
            Ok(format!("{vlan}--{gid}"))
        }
        FilterFormat::MacVid => {
            check_mac(mac)?;
            Ok(format!("{vlan}-{mac}"))
        }
        FilterFormat::Vid => Ok(format!("{vlan}")),
    }
}

/// `mode=.. mgrid2=.. typeid=.. typeidver=.. uuid=..`, checked.
pub(super) fn key_args(
    cfg: &VdpConfig,
    mode: Mode,
    uuid: &str,
) -> Result<Vec<(String, String)>, ArgError> {
    if cfg.vsiidfrmt != VSIID_FORMAT_UUID {
        return Err(ArgError::UnsupportedVsiIdFormat(cfg.vsiidfrmt));
    }
    check_token("vdp.mgrid2", &cfg.mgrid2)?;
    check_uuid("uuid", uuid)?;
    Ok(wire::key_args(cfg, mode, uuid))
}

/// Per-VSI query (original `send_vdp_query_msg`):
/// `vdptool -t -i IF -R -V assoc -c mode=assoc -c mgrid2=.. -c typeid=.. -c typeidver=.. -c uuid=U`.
pub fn query_command(ifname: &str, cfg: &VdpConfig, uuid: &str) -> Result<Command, ArgError> {
    query_command_in(ifname, cfg, Mode::Assoc, uuid)
}

/// [`query_command`] among the VSIs lldpad holds in `mode` (a
/// pre-associated VSI: `-V preassoc-rr -c mode=preassoc-rr ...`).
pub fn query_command_in(
    ifname: &str,
    cfg: &VdpConfig,
    mode: Mode,
    uuid: &str,
) -> Result<Command, ArgError> {
    check_token("interface", ifname)?;
    Ok(Command::get_in(ifname, mode, key_args(cfg, mode, uuid)?))
}

/// The argv of `query_command`.
pub fn query_argv(ifname: &str, cfg: &VdpConfig, uuid: &str) -> Result<Vec<String>, ArgError> {
    Ok(query_command(ifname, cfg, uuid)?.argv())
}

/// Every associated VSI of the interface in one answer:
/// `vdptool -t -i IF -R -V assoc -c mode=assoc`.
pub fn list_command(ifname: &str) -> Result<Command, ArgError> {
    check_token("interface", ifname)?;
    Ok(Command::get(
        ifname,
        vec![("mode".into(), Mode::Assoc.as_str().into())],
    ))
}

/// The argv of `list_command`.
pub fn list_argv(ifname: &str) -> Result<Vec<String>, ArgError> {
    Ok(list_command(ifname)?.argv())
}

/// Associate / deassociate (original `send_vdp_msg`):
/// `vdptool -T -i IF [-W] -V MODE -c mode=MODE -c mgrid2=.. -c typeid=.. -c typeidver=.. -c uuid=U -c hints=H -c filter=F`
/// plus, for assoc with a Cisco OUI, `-c oui=cisco,vm_name=N -c oui=cisco,ipv4_addr=A -c oui=cisco,vm_uuid=U2`
/// (each only when known, in that order).
pub fn request_command(
    ifname: &str,
    cfg: &VdpConfig,
    mode: Mode,
    vsi: &VsiArgs<'_>,
    wait: bool,
) -> Result<Command, ArgError> {
    let hints = cfg
        .hints_value()
        .ok_or_else(|| bad("vdp.hints", &cfg.hints))?;
    request_command_hinted(ifname, cfg, mode, vsi, wait, hints)
}

/// [`request_command`] with the migration hint of this one request
/// (`to` at a migration's destination, `from` at its source) instead of
/// `vdp.hints`; any mode, pre-associations included (they carry the OUI
/// data as an associate does).
pub fn request_command_hinted(
    ifname: &str,
    cfg: &VdpConfig,
    mode: Mode,
    vsi: &VsiArgs<'_>,
    wait: bool,
    hints: Hints,
) -> Result<Command, ArgError> {
    check_token("interface", ifname)?;
    let mut args = key_args(cfg, mode, vsi.uuid)?;
    let fmt = cfg
        .filter_format()
        .ok_or(ArgError::UnsupportedFilter(cfg.filter))?;
    let filter = filter_value(fmt, vsi.vlan, vsi.mac, vsi.gid)?;
    args.push(("hints".into(), hints.as_str().into()));
    args.push(("filter".into(), filter));
    if mode.asks_resources() {
        if let Some(oui) = vsi.oui.filter(|o| o.is_cisco()) {
            for item in cisco_oui_items(oui)? {
                args.push(("oui".into(), item));
            }
        }
    }
    Ok(Command::set(ifname, mode, wait, args))
}

/// The argv of `request_command`.
pub fn request_argv(
    ifname: &str,
    cfg: &VdpConfig,
    mode: Mode,
    vsi: &VsiArgs<'_>,
    wait: bool,
) -> Result<Vec<String>, ArgError> {
    Ok(request_command(ifname, cfg, mode, vsi, wait)?.argv())
}

/// The `oui=` values `cisco,vm_name=N`, `cisco,ipv4_addr=A`, `cisco,vm_uuid=U`
/// (original `gen_cisco_vdp_oui`).
pub(super) fn cisco_oui_items(oui: &Oui) -> Result<Vec<String>, ArgError> {
    let mut items = Vec::new();
    if let Some(name) = &oui.vm_name {
        // The validator's rule (spaces allowed, up to 128 bytes); vdptool
        // passes the value as one length-prefixed item, so a space is fine.
        // lldpad keeps at most MAX_VM_NAME bytes: a longer name is cut at a
        // character boundary here rather than refused.
        if name.is_empty() || crate::validate::vm_name_problem(name).is_some() {
            return Err(bad("oui.vm_name", name));
        }
        items.push(format!(
            "cisco,vm_name={}",
            truncate_at_char(name, MAX_VM_NAME)
        ));
    }
    if let Some(ip) = &oui.ip_addr {
        items.push(format!("cisco,ipv4_addr={ip}"));
    }
    if let Some(u) = &oui.vm_uuid {
        check_uuid("oui.vm_uuid", u)?;
        items.push(format!("cisco,vm_uuid={u}"));
    }
    Ok(items)
}
