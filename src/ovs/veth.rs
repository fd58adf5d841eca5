//! The LLDP veth pair of an uplink: its names (`LLDPO<uplink>` plugged into
//! the external bridge, `LLDPL<uplink>` where lldpad runs, both cut to 10
//! characters the way the original cuts them), interface-name checks, and
//! the `ip -j link show type veth` parser used to find an existing pair.
//!
//! Owns nothing; pure functions. The driver (`super`) runs the `ip`
//! commands through `exec::Runner`.

use serde::Deserialize;

/// Prefix of the veth end that is a port of the external bridge.
pub const OVS_VETH_PREFIX: &str = "LLDPO";
/// Prefix of the veth end lldpad runs on.
pub const LLDPAD_VETH_PREFIX: &str = "LLDPL";
/// The original's `MAX_VETH_NAME`: longer names keep the uplink's tail.
pub const MAX_VETH_NAME: usize = 10;
/// Linux `IFNAMSIZ - 1`.
pub const MAX_IFNAME: usize = 15;

/// `(LLDPO.., LLDPL..)` for an uplink. When `prefix + uplink` is longer than
/// 10 characters, the prefix is followed by the LAST 5 characters of the
/// uplink name (`enp129s0f1` -> `LLDPO9s0f1`), exactly like the
/// original's `gen_veth_str`.
pub fn veth_names(uplink: &str) -> (String, String) {
    (
        veth_name(OVS_VETH_PREFIX, uplink),
        veth_name(LLDPAD_VETH_PREFIX, uplink),
    )
}

fn veth_name(prefix: &str, uplink: &str) -> String {
    let chars: Vec<char> = uplink.chars().collect();
    let avail = MAX_VETH_NAME - prefix.len();
    if prefix.len() + chars.len() <= MAX_VETH_NAME {
        return format!("{prefix}{uplink}");
    }
    let tail: String = chars[chars.len() - avail..].iter().collect();
    format!("{prefix}{tail}")
}

/// A Linux interface name that is safe to put on a command line: 1..=15
/// printable ASCII characters, none of `/ : " , = \`, and not starting
/// with `-` (so it cannot be taken for an option or smuggle an OVSDB
/// `key=value`).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | ':' | '"' | ',' | '=' | '\\'))
}

/// One veth as `ip -j link show type veth` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethLink {
    pub name: String,
    /// Peer name when the peer is in the same namespace.
    pub peer: Option<String>,
    pub up: bool,
    pub mac: Option<String>,
}

#[derive(Deserialize)]
struct IpLinkJson {
    ifname: Option<String>,
    link: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
    address: Option<String>,
}

/// Parse `ip -j link show type veth`. Entries without a name are skipped.
pub fn parse_ip_link_json(out: &str) -> Result<Vec<VethLink>, String> {
    let trimmed = out.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let links: Vec<IpLinkJson> =
        serde_json::from_str(trimmed).map_err(|e| format!("bad `ip -j link` output: {e}"))?;
    Ok(links
        .into_iter()
        .filter_map(|l| {
            let name = l.ifname?;
            Some(VethLink {
                name,
                peer: l.link,
                up: l.flags.iter().any(|f| f == "UP"),
                mac: l.address,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_kept() {
        assert_eq!(
            veth_names("eth2"),
            ("LLDPOeth2".to_string(), "LLDPLeth2".to_string())
        );
        // exactly 10
        assert_eq!(veth_names("eth10").0, "LLDPOeth10");
    }

    #[test]
    fn long_names_keep_tail() {
        assert_eq!(veth_names("enp129s0f1np1").0, "LLDPOf1np1");
        assert_eq!(veth_names("enp129s0f1np1").1, "LLDPLf1np1");
        assert_eq!(veth_names("ens1f0").0, "LLDPOns1f0");
        assert_eq!(veth_names("bond0.100").0, "LLDPO0.100");
        for n in ["a", "eth0", "enp3s0f0", "enp129s0f1np1", "x23456789012345"] {
            let (o, l) = veth_names(n);
            assert!(
                o.len() <= MAX_VETH_NAME && l.len() <= MAX_VETH_NAME,
                "{o} {l}"
            );
        }
    }

    #[test]
    fn ifname_checks() {
        assert!(valid_ifname("eth2"));
        assert!(valid_ifname("enp129s0f1np1"));
        assert!(valid_ifname("bond0.100"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("-x"));
        assert!(!valid_ifname("a b"));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("a:b"));
        assert!(!valid_ifname("0123456789abcdef"));
        assert!(!valid_ifname("a=b"));
    }
}
