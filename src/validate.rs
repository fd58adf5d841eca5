//! Validation of controller input (docs/protocol.md): turns the JSON of
//! `vm_info` and `uplink` events into `model` values, or into a rejection
//! naming the bad field. Nothing from the controller reaches the queue (and
//! so no command line) without passing through here.
//!
//! Owns no state; calls nothing but `serde_json` and `model`.
//!
//! Rules (decisions documented here):
//! - `port_uuid`, `net_uuid`: 8-4-4-4-12 hex digits (either case, kept as
//!   sent). `oui.vm_uuid` may also be 32 hex digits without dashes.
//! - `vm_mac`, `oui.gw_mac`: `xx:xx:xx:xx:xx:xx` hex, stored lower-case;
//!   `gw_mac` may be null/absent.
//! - `segmentation_id`: a JSON integer 1..=16777215 (strings, floats,
//!   booleans are wrong types and rejected).
//! - `status`: exactly `"up"` or `"down"`.
//! - `local_vlan`, `vdp_vlan` (bulk down entries): integers 1..=4094; `-1`,
//!   `null` or absent mean "unknown" (`None`); anything else is rejected.
//! - `oui.ip_addr`: dotted-quad IPv4 (null/absent allowed).
//! - `oui.vm_name` (free text ending up in `-c oui=cisco,vm_name=NAME`): at
//!   most [`VM_NAME_MAX`] bytes, no `,` (item separator), no `=` (key/value
//!   separator), no control characters and no whitespace other than a plain
//!   space; any other Unicode is allowed (VM names are user text). Empty is
//!   treated as absent.
//! - `oui.fwd_mod`, `oui.oui_id`: tokens of ASCII letters, digits, `_`, `-`
//!   (1..=32).
//! - `oui` null/absent: no OUI. An `oui_id` other than `cisco` is kept (for
//!   logs) with its data fields dropped, since only Cisco OUI data is sent
//!   to the switch; invalid data inside a non-Cisco OUI therefore does not
//!   reject the port.
//! - `host`: optional, at most 255 bytes, no control characters (only
//!   logged).
//! - Uplink object: `uplink` and `veth_intf` are interface names (1..=15 of
//!   ASCII letters, digits, `_ . @ -`) or empty/null; other keys ignored.

use crate::model::{Oui, PortStatus, UplinkInfo, VmPort};
use serde_json::Value;
use std::fmt;
use std::net::Ipv4Addr;

/// Longest accepted `oui.vm_name`, in bytes.
pub(crate) const VM_NAME_MAX: usize = 128;
/// Largest segmentation id (24-bit VNI).
pub(crate) const SEGMENTATION_ID_MAX: u64 = 16_777_215;

/// A VM object that failed validation. `port_uuid`/`status` are filled when
/// they themselves were valid, so the caller can report
/// `CREATE:FAIL`/`DELETE:FAIL` for the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRejection {
    pub port_uuid: Option<String>,
    pub status: Option<PortStatus>,
    /// The JSON field path, e.g. `vm_mac`, `oui.vm_name`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for VmRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for VmRejection {}

/// An uplink object that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkRejection {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for UplinkRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for UplinkRejection {}

/// 8-4-4-4-12 hex digits.
pub(crate) fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// 32 hex digits (UUID without dashes).
fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// `xx:xx:xx:xx:xx:xx` hex.
pub(crate) fn is_mac(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, c)| {
            if i % 3 == 2 {
                *c == b':'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Interface name as the kernel accepts and our commands can carry.
pub(crate) fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'@' | b'-'))
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

/// Why a `vm_name` is unsafe, or `None` when it is fine (the one rule:
/// validation and the vdptool argv builder both use it).
pub(crate) fn vm_name_problem(s: &str) -> Option<&'static str> {
    if s.len() > VM_NAME_MAX {
        return Some("longer than 128 bytes");
    }
    for c in s.chars() {
        if c == ',' {
            return Some("contains ','");
        }
        if c == '=' {
            return Some("contains '='");
        }
        if c.is_control() {
            return Some("contains a control character");
        }
        if c.is_whitespace() && c != ' ' {
            return Some("contains whitespace other than a space");
        }
    }
    None
}

/// Short printable rendering of a hostile value for reasons/logs.
fn show(v: &Value) -> String {
    let s = v.to_string();
    let s: String = s.chars().flat_map(|c| c.escape_default()).collect();
    if s.len() > 60 {
        let mut cut = 60;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

struct Ctx {
    port_uuid: Option<String>,
    status: Option<PortStatus>,
}

impl Ctx {
    fn reject(&self, field: &str, reason: impl Into<String>) -> VmRejection {
        VmRejection {
            port_uuid: self.port_uuid.clone(),
            status: self.status,
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

fn get<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn req_str<'a>(
    ctx: &Ctx,
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a str, VmRejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(ctx.reject(field, "missing")),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(ctx.reject(field, format!("not a string: {}", show(v)))),
    }
}

fn opt_str<'a>(
    ctx: &Ctx,
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<&'a str>, VmRejection> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ctx.reject(field, format!("not a string: {}", show(v)))),
    }
}

fn vlan(
    ctx: &Ctx,
    obj: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<u16>, VmRejection> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(-1) => Ok(None),
            Some(n) if (1..=4094).contains(&n) => Ok(Some(n as u16)),
            _ => Err(ctx.reject(key, format!("not a VLAN 1..4094 or -1: {}", show(v)))),
        },
    }
}

fn validate_oui(ctx: &Ctx, v: &Value) -> Result<Option<Oui>, VmRejection> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        other => return Err(ctx.reject("oui", format!("not an object: {}", show(other)))),
    };
    let oui_id = match get(obj, "oui_id") {
        None => return Err(ctx.reject("oui.oui_id", "missing")),
        Some(Value::String(s)) if is_token(s) => s.clone(),
        Some(v) => return Err(ctx.reject("oui.oui_id", format!("not a token: {}", show(v)))),
    };
    let mut oui = Oui {
        oui_id,
        ..Oui::default()
    };
    let cisco = oui.is_cisco();
    // Data of a non-Cisco OUI is never sent: drop it instead of judging it.
    if !cisco {
        return Ok(Some(oui));
    }
    if let Some(name) = opt_str(ctx, obj, "vm_name", "oui.vm_name")? {
        if let Some(p) = vm_name_problem(name) {
            return Err(ctx.reject("oui.vm_name", p));
        }
        if !name.is_empty() {
            oui.vm_name = Some(name.to_string());
        }
    }
    if let Some(u) = opt_str(ctx, obj, "vm_uuid", "oui.vm_uuid")? {
        if !(is_uuid(u) || is_hex32(u)) {
            return Err(ctx.reject(
                "oui.vm_uuid",
                format!("not a UUID: {}", show(&Value::from(u))),
            ));
        }
        oui.vm_uuid = Some(u.to_string());
    }
    if let Some(ip) = opt_str(ctx, obj, "ip_addr", "oui.ip_addr")? {
        // `Ipv4Addr::from_str` accepts only the strict dotted-quad form.
        match ip.parse::<Ipv4Addr>() {
            Ok(a) => oui.ip_addr = Some(a),
            Err(_) => {
                return Err(ctx.reject(
                    "oui.ip_addr",
                    format!("not an IPv4 address: {}", show(&Value::from(ip))),
                ))
            }
        }
    }
    if let Some(m) = opt_str(ctx, obj, "gw_mac", "oui.gw_mac")? {
        if !is_mac(m) {
            return Err(ctx.reject(
                "oui.gw_mac",
                format!("not a MAC: {}", show(&Value::from(m))),
            ));
        }
        oui.gw_mac = Some(m.to_ascii_lowercase());
    }
    if let Some(f) = opt_str(ctx, obj, "fwd_mod", "oui.fwd_mod")? {
        if !f.is_empty() {
            if !is_token(f) {
                return Err(ctx.reject(
                    "oui.fwd_mod",
                    format!("not a token: {}", show(&Value::from(f))),
                ));
            }
            oui.fwd_mod = Some(f.to_string());
        }
    }
    Ok(Some(oui))
}

/// Validate one VM object (docs/protocol.md).
pub fn validate_vm(v: &Value) -> Result<VmPort, VmRejection> {
    let mut ctx = Ctx {
        port_uuid: None,
        status: None,
    };
    let obj = match v {
        Value::Object(o) => o,
        other => return Err(ctx.reject("vm", format!("not an object: {}", show(other)))),
    };
    // port_uuid and status first, so later rejections can be reported.
    let port_uuid = req_str(&ctx, obj, "port_uuid", "port_uuid")?;
    if !is_uuid(port_uuid) {
        return Err(ctx.reject(
            "port_uuid",
            format!("not a UUID: {}", show(&Value::from(port_uuid))),
        ));
    }
    ctx.port_uuid = Some(port_uuid.to_string());
    let status = match req_str(&ctx, obj, "status", "status")? {
        "up" => PortStatus::Up,
        "down" => PortStatus::Down,
        other => {
            return Err(ctx.reject(
                "status",
                format!("not up/down: {}", show(&Value::from(other))),
            ))
        }
    };
    ctx.status = Some(status);

    let mac = req_str(&ctx, obj, "vm_mac", "vm_mac")?;
    if !is_mac(mac) {
        return Err(ctx.reject("vm_mac", format!("not a MAC: {}", show(&Value::from(mac)))));
    }
    let net_uuid = req_str(&ctx, obj, "net_uuid", "net_uuid")?;
    if !is_uuid(net_uuid) {
        return Err(ctx.reject(
            "net_uuid",
            format!("not a UUID: {}", show(&Value::from(net_uuid))),
        ));
    }
    let seg = match obj.get("segmentation_id") {
        None | Some(Value::Null) => return Err(ctx.reject("segmentation_id", "missing")),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=SEGMENTATION_ID_MAX).contains(&n) => n as u32,
            _ => {
                return Err(ctx.reject(
                    "segmentation_id",
                    format!("not an integer 1..16777215: {}", show(v)),
                ))
            }
        },
    };
    let host = opt_str(&ctx, obj, "host", "host")?;
    if let Some(h) = host {
        if h.len() > 255 || h.chars().any(char::is_control) {
            return Err(ctx.reject("host", "too long or contains control characters"));
        }
    }
    let oui = match obj.get("oui") {
        None => None,
        Some(v) => validate_oui(&ctx, v)?,
    };
    let local_vlan = vlan(&ctx, obj, "local_vlan")?;
    let vdp_vlan = vlan(&ctx, obj, "vdp_vlan")?;
    Ok(VmPort {
        port_uuid: port_uuid.to_string(),
        vm_mac: mac.to_ascii_lowercase(),
        net_uuid: net_uuid.to_string(),
        segmentation_id: seg,
        status,
        host: host.map(String::from),
        oui,
        local_vlan,
        vdp_vlan,
    })
}

/// Shape of a `vm_info` payload after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
// One short-lived value per controller event: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum VmEvent {
    /// One VM object.
    Single(Result<VmPort, VmRejection>),
    /// A list (bulk resync); each entry judged on its own.
    Bulk(Vec<Result<VmPort, VmRejection>>),
}

/// Validate a `vm_info` payload: one VM object or a list of them. A payload
/// that is neither yields one rejection with field `payload`.
pub fn validate_vm_event(payload: &Value) -> VmEvent {
    match payload {
        Value::Array(items) => VmEvent::Bulk(items.iter().map(validate_vm).collect()),
        Value::Object(_) => VmEvent::Single(validate_vm(payload)),
        other => VmEvent::Single(Err(VmRejection {
            port_uuid: None,
            status: None,
            field: "payload".into(),
            reason: format!("not a VM object or list: {}", show(other)),
        })),
    }
}

/// Validate an uplink object (`request_uplink_info` result / `uplink`
/// event). `null` and `{}` give empty names (no uplink stored).
pub fn validate_uplink(v: &Value) -> Result<UplinkInfo, UplinkRejection> {
    let obj = match v {
        Value::Null => return Ok(UplinkInfo::default()),
        Value::Object(o) => o,
        other => {
            return Err(UplinkRejection {
                field: "uplink".into(),
                reason: format!("not an object: {}", show(other)),
            })
        }
    };
    let name = |key: &str| -> Result<String, UplinkRejection> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) if s.is_empty() || is_ifname(s) => Ok(s.clone()),
            Some(v) => Err(UplinkRejection {
                field: key.into(),
                reason: format!("not an interface name: {}", show(v)),
            }),
        }
    };
    Ok(UplinkInfo {
        uplink: name("uplink")?,
        veth_intf: name("veth_intf")?,
    })
}

#[cfg(test)]
mod tests;

pub use crate::model::MigrationPhase;

/// Validate a `vm_migration` payload: a VM object plus `phase`
/// (`arriving`, `arrived`, `aborted`, `left`). `status` may be absent (the
/// phase implies it); when present it must agree with the phase.
pub fn validate_migration(payload: &Value) -> Result<(MigrationPhase, VmPort), VmRejection> {
    let obj = match payload {
        Value::Object(o) => o,
        other => {
            return Err(VmRejection {
                port_uuid: None,
                status: None,
                field: "payload".into(),
                reason: format!("not a migration object: {}", show(other)),
            })
        }
    };
    let port_uuid = obj
        .get("port_uuid")
        .and_then(Value::as_str)
        .filter(|s| is_uuid(s))
        .map(String::from);
    let phase = match obj.get("phase").and_then(Value::as_str) {
        Some("arriving") => MigrationPhase::Arriving,
        Some("arrived") => MigrationPhase::Arrived,
        Some("aborted") => MigrationPhase::Aborted,
        Some("left") => MigrationPhase::Left,
        _ => {
            return Err(VmRejection {
                port_uuid,
                status: None,
                field: "phase".into(),
                reason: format!(
                    "not arriving/arrived/aborted/left: {}",
                    show(obj.get("phase").unwrap_or(&Value::Null))
                ),
            })
        }
    };
    let want = match phase.status() {
        PortStatus::Up => "up",
        PortStatus::Down => "down",
    };
    let mut vm = obj.clone();
    vm.remove("phase");
    match vm.get("status") {
        None | Some(Value::Null) => {
            vm.insert("status".into(), Value::from(want));
        }
        Some(Value::String(s)) if s == want => {}
        Some(other) => {
            return Err(VmRejection {
                port_uuid,
                status: Some(phase.status()),
                field: "status".into(),
                reason: format!("disagrees with phase: {}", show(other)),
            })
        }
    }
    validate_vm(&Value::Object(vm)).map(|p| (phase, p))
}
