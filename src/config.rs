//! Configuration schema of `agent.yaml` (documented in etc/agent.yaml): every key, its
//! default, and loading with unknown keys rejected by name.
//!
//! Owns: the `Config` value (immutable once loaded). Calls nothing but the
//! file system and `gethostname` (for a null `host_id`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Default config file location.
pub const DEFAULT_CONFIG: &str = "/etc/vdp-agent/agent.yaml";

/// Why a configuration could not be loaded. `Display` is the one-line reason
/// printed by `--check-config` (exit 2).
#[derive(Debug)]
pub enum ConfigError {
    Read { path: PathBuf, err: std::io::Error },
    Parse { path: PathBuf, msg: String },
    Invalid { key: &'static str, msg: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, err } => write!(f, "{}: {}", path.display(), err),
            ConfigError::Parse { path, msg } => write!(f, "{}: {}", path.display(), msg),
            ConfigError::Invalid { key, msg } => write!(f, "invalid value for {key}: {msg}"),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// null = system hostname (resolved by `Config::host_id()`).
    pub host_id: Option<String>,
    /// Prefix for every privileged command; "" = run directly.
    pub root_helper: String,
    pub server: ServerConfig,
    pub bridges: BridgesConfig,
    pub uplink: UplinkConfig,
    pub vdp: VdpConfig,
    pub intervals: IntervalsConfig,
    pub paths: PathsConfig,
    pub log: LogConfig,
    /// Extension (README "Metrics"): the Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// `metrics`: where `GET /metrics` is served (null = off, the default).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `IP:PORT` to listen on, e.g. `127.0.0.1:9477`; null = no endpoint.
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// The checked listen address (None = off).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listen.as_deref().and_then(|a| a.parse().ok())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub url: String,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub timeout_s: u64,
    pub events_wait_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BridgesConfig {
    pub integration: String,
    pub external: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UplinkConfig {
    /// Interface name used instead of auto-detection.
    #[serde(rename = "static")]
    pub static_uplink: Option<String>,
    /// null = physical, operationally-up interfaces; or a list of names.
    pub candidates: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct VdpConfig {
    pub mgrid2: String,
    pub typeid: u32,
    pub typeidver: u32,
    pub vsiidfrmt: u32,
    pub hints: String,
    pub filter: u32,
    /// `preassoc` or `preassoc-rr` (live migration, docs/protocol.md).
    pub preassoc: String,
    /// VSI refresh period.
    pub sync_timeout_s: u64,
    /// VM events of different ports processed at once (1..=16; 1 = one
    /// after the other, as the original).
    pub in_flight: u32,
}

/// `vdp.hints`: the `hints=` value of every associate (migration hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hints {
    /// `none` (the original always sends it).
    None,
    /// `to`: the VM migrates to this host.
    To,
    /// `from`: the VM migrates away from this host.
    From,
}

impl Hints {
    pub fn parse(s: &str) -> Option<Hints> {
        match s {
            "none" => Some(Hints::None),
            "to" => Some(Hints::To),
            "from" => Some(Hints::From),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Hints::None => "none",
            Hints::To => "to",
            Hints::From => "from",
        }
    }
}

/// `vdp.filter`: the VDP filter info format of the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterFormat {
    /// 1: `VLAN`.
    Vid,
    /// 2: `VLAN-MAC`.
    MacVid,
    /// 3: `VLAN--GID`.
    GroupVid,
    /// 4: `VLAN-MAC-GID` (the default, the original's).
    GroupMacVid,
}

impl FilterFormat {
    pub fn from_number(n: u32) -> Option<FilterFormat> {
        match n {
            1 => Some(FilterFormat::Vid),
            2 => Some(FilterFormat::MacVid),
            3 => Some(FilterFormat::GroupVid),
            4 => Some(FilterFormat::GroupMacVid),
            _ => None,
        }
    }
    pub fn number(self) -> u32 {
        match self {
            FilterFormat::Vid => 1,
            FilterFormat::MacVid => 2,
            FilterFormat::GroupVid => 3,
            FilterFormat::GroupMacVid => 4,
        }
    }
}

impl VdpConfig {
    /// `vdp.hints` as a value; `None` for a text `validate` refuses. The
    /// file keeps the text (so a bad value is refused naming the key, as
    /// every other key); code reads the value.
    pub fn hints_value(&self) -> Option<Hints> {
        Hints::parse(&self.hints)
    }
    /// `vdp.preassoc`: `Some(true)` for `preassoc-rr` (with resource
    /// reservation), `Some(false)` for `preassoc`, `None` when refused.
    pub fn preassoc_rr(&self) -> Option<bool> {
        match self.preassoc.as_str() {
            "preassoc-rr" => Some(true),
            "preassoc" => Some(false),
            _ => None,
        }
    }
    /// `vdp.filter` as a value; `None` for a number `validate` refuses.
    pub fn filter_format(&self) -> Option<FilterFormat> {
        FilterFormat::from_number(self.filter)
    }
}

impl LogConfig {
    /// `log.level` as a value (`info` for a text `validate` refuses).
    pub fn level_filter(&self) -> log::LevelFilter {
        log::LevelFilter::from_str_opt(&self.level).unwrap_or(log::LevelFilter::Info)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IntervalsConfig {
    pub heartbeat_s: u64,
    pub uplink_detect_s: u64,
    pub err_queue_s: u64,
    pub flow_check_s: u64,
    pub topo_disc_s: u64,
    /// Max wait for the VM port's local VLAN tag.
    pub vm_port_wait_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub sys_class_net: PathBuf,
    pub proc_net_bonding: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
    pub file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host_id: None,
            root_helper: "sudo".into(),
            server: ServerConfig::default(),
            bridges: BridgesConfig::default(),
            uplink: UplinkConfig::default(),
            vdp: VdpConfig::default(),
            intervals: IntervalsConfig::default(),
            paths: PathsConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            url: "http://127.0.0.1:9696".into(),
            token_file: None,
            ca_file: None,
            timeout_s: 10,
            events_wait_s: 25,
        }
    }
}

impl Default for BridgesConfig {
    fn default() -> Self {
        BridgesConfig {
            integration: "br-int".into(),
            external: "br-ethd".into(),
        }
    }
}

impl Default for VdpConfig {
    fn default() -> Self {
        VdpConfig {
            mgrid2: "0".into(),
            typeid: 0,
            typeidver: 0,
            vsiidfrmt: 5,
            hints: "none".into(),
            preassoc: "preassoc-rr".into(),
            filter: 4,
            sync_timeout_s: 30,
            in_flight: 4,
        }
    }
}

impl Default for IntervalsConfig {
    fn default() -> Self {
        IntervalsConfig {
            heartbeat_s: 30,
            uplink_detect_s: 10,
            err_queue_s: 20,
            flow_check_s: 60,
            topo_disc_s: 15,
            vm_port_wait_s: 10,
        }
    }
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            state_dir: "/var/lib/vdp-agent".into(),
            run_dir: "/run/vdp-agent".into(),
            sys_class_net: "/sys/class/net".into(),
            proc_net_bonding: "/proc/net/bonding".into(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            file: None,
        }
    }
}

/// mgrid2 accepted by vdptool: a decimal/hex number, a UUID-looking string,
/// or up to 15 ASCII alphanumerics.
fn mgrid2_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 36 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn ifname_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// The keys whose value may be YAML `null` (it means "not set"); every
/// other key given as `null`/`~` is an error naming it (serde would read a
/// null string as the text "null").
pub(crate) const NULLABLE_KEYS: [&str; 7] = [
    "host_id",
    "server.token_file",
    "server.ca_file",
    "uplink.static",
    "uplink.candidates",
    "log.file",
    "metrics.listen",
];

/// Largest config file read, in bytes.
pub(crate) const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Upper bounds of the duration keys, in seconds (values above are
/// refused: they would overflow deadlines or never fire).
pub(crate) const MAX_TIMEOUT_S: u64 = 3600;
pub(crate) const MAX_INTERVAL_S: u64 = 86_400;

/// First key path (`a.b`) whose value is null and may not be.
fn null_key(v: &serde_yaml::Value, prefix: &str) -> Option<String> {
    let serde_yaml::Value::Mapping(m) = v else {
        return None;
    };
    for (k, val) in m {
        let name = k.as_str().unwrap_or("?");
        let key = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}.{name}")
        };
        if val.is_null() && !NULLABLE_KEYS.contains(&key.as_str()) {
            return Some(key);
        }
        if let Some(k) = null_key(val, &key) {
            return Some(k);
        }
    }
    None
}

impl Config {
    /// Parse YAML text (an empty document gives all defaults).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let parse_err = |e: serde_yaml::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string().replace('\n', " "),
        };
        let cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(parse_err)?;
            if doc.is_null() {
                Config::default()
            } else {
                if let Some(key) = null_key(&doc, "") {
                    return Err(ConfigError::Parse {
                        path: path.to_path_buf(),
                        msg: format!("{key}: must not be null (leave the key out for its default)"),
                    });
                }
                // From the text again: its errors name the key path.
                serde_yaml::from_str(text).map_err(parse_err)?
            }
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Load and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let read_err = |err| ConfigError::Read {
            path: path.to_path_buf(),
            err,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                msg: format!("larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        Config::from_yaml(&text, path)
    }

    /// Value checks serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, msg: &str| {
            Err(ConfigError::Invalid {
                key,
                msg: msg.to_string(),
            })
        };
        if let Some(h) = &self.host_id {
            if h.is_empty() || h.len() > 255 || h.chars().any(|c| c.is_whitespace() || c == '/') {
                return bad("host_id", "must be a non-empty name without spaces or '/'");
            }
        }
        let url = &self.server.url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return bad("server.url", "must start with http:// or https://");
        }
        if !(1..=MAX_TIMEOUT_S).contains(&self.server.timeout_s) {
            return bad("server.timeout_s", "must be 1..3600");
        }
        if self.server.events_wait_s > MAX_TIMEOUT_S {
            return bad("server.events_wait_s", "must be 0..3600");
        }
        if self.intervals.vm_port_wait_s > MAX_TIMEOUT_S {
            return bad("intervals.vm_port_wait_s", "must be 0..3600");
        }
        for (key, v) in [
            ("bridges.integration", &self.bridges.integration),
            ("bridges.external", &self.bridges.external),
        ] {
            if !ifname_ok(v) {
                return bad(key, "must be an interface name (1-15 characters)");
            }
        }
        if let Some(s) = &self.uplink.static_uplink {
            if !ifname_ok(s) {
                return bad(
                    "uplink.static",
                    "must be an interface name (1-15 characters)",
                );
            }
        }
        if let Some(c) = &self.uplink.candidates {
            if c.iter().any(|s| !ifname_ok(s)) {
                return bad("uplink.candidates", "every entry must be an interface name");
            }
        }
        if !mgrid2_ok(&self.vdp.mgrid2) {
            return bad(
                "vdp.mgrid2",
                "must be a number, UUID or up to 15 alphanumerics",
            );
        }
        if self.vdp.hints_value().is_none() {
            return bad("vdp.hints", "must be one of none, to, from");
        }
        if self.vdp.preassoc_rr().is_none() {
            return bad("vdp.preassoc", "must be preassoc or preassoc-rr");
        }
        if !(1..=16).contains(&self.vdp.in_flight) {
            return bad("vdp.in_flight", "must be 1..16");
        }
        if self.vdp.filter_format().is_none() {
            return bad("vdp.filter", "must be 1..4");
        }
        if self.vdp.vsiidfrmt != 5 {
            return bad("vdp.vsiidfrmt", "only 5 (UUID) is supported by vdptool");
        }
        if self.vdp.typeid > 0xff_ffff {
            return bad("vdp.typeid", "must fit in 24 bits");
        }
        if self.vdp.typeidver > 0xff {
            return bad("vdp.typeidver", "must fit in 8 bits");
        }
        let iv = &self.intervals;
        for (key, v) in [
            ("vdp.sync_timeout_s", self.vdp.sync_timeout_s),
            ("intervals.heartbeat_s", iv.heartbeat_s),
            ("intervals.uplink_detect_s", iv.uplink_detect_s),
            ("intervals.err_queue_s", iv.err_queue_s),
            ("intervals.flow_check_s", iv.flow_check_s),
            ("intervals.topo_disc_s", iv.topo_disc_s),
        ] {
            if !(1..=MAX_INTERVAL_S).contains(&v) {
                return bad(key, "must be 1..86400");
            }
        }
        if let Some(a) = &self.metrics.listen {
            match a.parse::<std::net::SocketAddr>() {
                Ok(addr) if addr.port() != 0 => {}
                _ => {
                    return bad(
                        "metrics.listen",
                        "must be IP:PORT with a port 1..65535 (e.g. 127.0.0.1:9477, [::1]:9477) or null",
                    )
                }
            }
        }
        if log::LevelFilter::from_str_opt(&self.log.level).is_none() {
            return bad(
                "log.level",
                "must be one of off, error, warn, info, debug, trace",
            );
        }
        Ok(())
    }

    /// The effective host id: `host_id`, or the system hostname.
    pub fn host_id(&self) -> String {
        if let Some(h) = &self.host_id {
            return h.clone();
        }
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    }

    /// The effective config (host_id resolved) as YAML, for `--check-config`.
    pub fn effective_yaml(&self) -> String {
        let mut c = self.clone();
        c.host_id = Some(self.host_id());
        serde_yaml::to_string(&c).unwrap_or_default()
    }

    /// `root_helper` split into words (empty = run directly).
    pub fn root_helper_argv(&self) -> Vec<String> {
        self.root_helper
            .split_whitespace()
            .map(String::from)
            .collect()
    }

    /// Path of the status socket.
    pub fn status_socket(&self) -> PathBuf {
        self.paths.run_dir.join("vdp-agent.sock")
    }

    /// Default pid file path.
    pub fn pid_file(&self) -> PathBuf {
        self.paths.run_dir.join("vdp-agent.pid")
    }
}

/// Small helper so config validation does not depend on `FromStr` details.
trait LevelFromStr {
    fn from_str_opt(s: &str) -> Option<log::LevelFilter>;
}

impl LevelFromStr for log::LevelFilter {
    fn from_str_opt(s: &str) -> Option<log::LevelFilter> {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(s, Path::new("t.yaml"))
    }

    #[test]
    fn empty_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.root_helper, "sudo");
        assert_eq!(c.server.url, "http://127.0.0.1:9696");
        assert_eq!(c.server.events_wait_s, 25);
        assert_eq!(c.bridges.external, "br-ethd");
        assert_eq!(c.vdp.filter, 4);
        assert_eq!(c.vdp.sync_timeout_s, 30);
        assert_eq!(c.intervals.vm_port_wait_s, 10);
        assert_eq!(c.paths.proc_net_bonding, PathBuf::from("/proc/net/bonding"));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("server:\n  urll: http://x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("urll"), "{e}");
        let e = parse("bogus: 1\n").unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn partial_sections_keep_defaults() {
        let c = parse("uplink:\n  static: eth2\nvdp:\n  sync_timeout_s: 5\n").unwrap();
        assert_eq!(c.uplink.static_uplink.as_deref(), Some("eth2"));
        assert_eq!(c.vdp.sync_timeout_s, 5);
        assert_eq!(c.vdp.hints, "none");
        assert_eq!(c.vdp.preassoc_rr(), Some(true));
    }

    #[test]
    fn bad_values_rejected() {
        for (y, key) in [
            ("server:\n  url: ftp://x\n", "server.url"),
            ("vdp:\n  hints: maybe\n", "vdp.hints"),
            ("vdp:\n  preassoc: assoc\n", "vdp.preassoc"),
            ("vdp:\n  in_flight: 0\n", "vdp.in_flight"),
            ("vdp:\n  in_flight: 17\n", "vdp.in_flight"),
            ("vdp:\n  filter: 9\n", "vdp.filter"),
            ("uplink:\n  static: 'eth2 x'\n", "uplink.static"),
            ("log:\n  level: loud\n", "log.level"),
            ("intervals:\n  heartbeat_s: 0\n", "intervals.heartbeat_s"),
            ("metrics:\n  listen: localhost:9477\n", "metrics.listen"),
            ("metrics:\n  listen: 127.0.0.1\n", "metrics.listen"),
            ("metrics:\n  listen: 127.0.0.1:0\n", "metrics.listen"),
            ("metrics:\n  listen: 127.0.0.1:70000\n", "metrics.listen"),
            ("metrics:\n  listen: 9477\n", "metrics.listen"),
            ("metrics:\n  port: 9477\n", "port"),
        ] {
            let e = parse(y).unwrap_err().to_string();
            assert!(e.contains(key), "{y}: {e}");
        }
        let e = parse("server:\n  timeout_s: -1\n").unwrap_err().to_string();
        assert!(e.contains("timeout_s"), "{e}");
    }

    /// Regression: huge durations passed the check and then panicked
    /// ("overflow when adding duration to instant"); null became "null".
    #[test]
    fn huge_durations_and_nulls_are_refused_by_name() {
        let huge = u64::MAX - 1;
        for key in [
            "server:\n  timeout_s",
            "server:\n  events_wait_s",
            "intervals:\n  heartbeat_s",
            "intervals:\n  flow_check_s",
            "intervals:\n  vm_port_wait_s",
            "vdp:\n  sync_timeout_s",
        ] {
            let e = parse(&format!("{key}: {huge}\n")).unwrap_err().to_string();
            let name = key.replace(":\n  ", ".");
            assert!(e.contains(&name), "{key}: {e}");
        }
        for (y, key) in [
            ("root_helper: null\n", "root_helper"),
            ("paths:\n  run_dir: ~\n", "paths.run_dir"),
            ("bridges:\n  integration: null\n", "bridges.integration"),
            ("vdp:\n  mgrid2: null\n", "vdp.mgrid2"),
            ("server: ~\n", "server"),
        ] {
            let e = parse(y).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("null"), "{y}: {e}");
        }
        // Optional keys may be null.
        let c = parse("host_id: ~\nlog:\n  file: null\nuplink:\n  static: ~\n").unwrap();
        assert_eq!(c, Config::default());
        // The largest accepted values still make valid deadlines.
        let c = parse("server:\n  timeout_s: 3600\n  events_wait_s: 3600\n").unwrap();
        assert!(std::time::Instant::now()
            .checked_add(std::time::Duration::from_secs(
                c.server.timeout_s + c.server.events_wait_s
            ))
            .is_some());
    }

    #[test]
    fn metrics_listen() {
        assert_eq!(parse("").unwrap().metrics.listen_addr(), None);
        let c = parse("metrics:\n  listen: null\n").unwrap();
        assert_eq!(c, Config::default());
        let c = parse("metrics:\n  listen: 127.0.0.1:9477\n").unwrap();
        assert_eq!(
            c.metrics.listen_addr(),
            Some("127.0.0.1:9477".parse().unwrap())
        );
        let c = parse("metrics:\n  listen: '[::]:9477'\n").unwrap();
        assert_eq!(c.metrics.listen_addr().map(|a| a.port()), Some(9477));
    }

    #[test]
    fn root_helper_words() {
        let c = parse("root_helper: 'sudo -E'\n").unwrap();
        assert_eq!(c.root_helper_argv(), vec!["sudo", "-E"]);
        let c = parse("root_helper: ''\n").unwrap();
        assert!(c.root_helper_argv().is_empty());
    }
}
