//! `vdp-agent` binary: the command line of README "Running" (hand-written, no
//! argument crate), configuration loading, logging setup, and the hand-off
//! to `daemon::run_with`.
//!
//! Owns: process exit codes (0 ok, 2 usage/configuration error, 1 runtime
//! failure) and the logger. Calls: `config`, `daemon`, `status`.
//!
//! Decisions: without `-c`, `/etc/vdp-agent/agent.yaml` is used when it
//! exists and built-in defaults otherwise (a given `-c FILE` must exist).
//! Logging: `log.level` unless `RUST_LOG` is set; to stderr or appended to
//! `log.file`, reopened on SIGHUP. Log lines carry the thread name; on a
//! stderr that is the journal (`$JOURNAL_STREAM`) they start with `<N>`
//! and carry no timestamp. `--default-root-helper` sets `root_helper` only
//! for a config file that leaves the key out (the packaged service: "").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vdp_agent::api::config::{Config, DEFAULT_CONFIG};
use vdp_agent::api::daemon::{self, LogFile, RunOptions};
use vdp_agent::api::manager::host::HostDriver;
use vdp_agent::api::manager::link::ControllerLink;

const USAGE: &str = "\
usage: vdp-agent [-c FILE] [--pid-file FILE]      run the daemon in the foreground
       vdp-agent -c FILE --check-config           validate config, print the effective config
       --default-root-helper=HELPER (run, --check-config): root_helper when the
                                                  config file does not set it (empty = none)
       vdp-agent [-c FILE] status [--json]        show the running daemon's state
       vdp-agent [-c FILE] status --check         monitoring-plugin check (exit 0/1/2/3)
       vdp-agent --version | --help
";

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run { pid_file: Option<PathBuf> },
    CheckConfig,
    Status { json: bool, check: bool },
    Version,
    Help,
}

#[derive(Debug)]
struct Cli {
    config: Option<PathBuf>,
    /// `--default-root-helper`: the root_helper used when the config file
    /// does not set the key (the packaged service passes "").
    default_root_helper: Option<String>,
    command: Command,
}

fn parse_args(args: &[String]) -> Result<Cli, String> {
    let mut config = None;
    let mut default_root_helper = None;
    let mut pid_file = None;
    let mut check = false;
    let mut status = false;
    let mut json = false;
    let mut health = false;
    let mut version = false;
    let mut help = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => {
                let v = it.next().ok_or_else(|| format!("{a} needs a FILE"))?;
                config = Some(PathBuf::from(v));
            }
            "--pid-file" => {
                let v = it.next().ok_or("--pid-file needs a FILE")?;
                pid_file = Some(PathBuf::from(v));
            }
            "--default-root-helper" => {
                let v = it.next().ok_or("--default-root-helper needs a HELPER")?;
                default_root_helper = Some(v.clone());
            }
            s if s.starts_with("--default-root-helper=") => {
                default_root_helper = Some(s["--default-root-helper=".len()..].to_string());
            }
            "--check-config" => check = true,
            "status" => status = true,
            "--json" => json = true,
            "--check" => health = true,
            "--version" | "-V" => version = true,
            "--help" | "-h" => help = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let command = if help {
        Command::Help
    } else if version {
        Command::Version
    } else if check {
        if status || json || health || pid_file.is_some() {
            return Err("--check-config takes only -c FILE".into());
        }
        Command::CheckConfig
    } else if status {
        if pid_file.is_some() {
            return Err("status does not take --pid-file".into());
        }
        if json && health {
            return Err("status takes --json or --check, not both".into());
        }
        Command::Status {
            json,
            check: health,
        }
    } else {
        if json || health {
            return Err("--json and --check only go with status".into());
        }
        Command::Run { pid_file }
    };
    if default_root_helper.is_some()
        && !matches!(command, Command::Run { .. } | Command::CheckConfig)
    {
        return Err("--default-root-helper goes with running the daemon or --check-config".into());
    }
    Ok(Cli {
        config,
        default_root_helper,
        command,
    })
}

/// Whether the config file sets `root_helper` itself (top-level key).
fn file_sets_root_helper(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_yaml::from_str::<serde_yaml::Value>(&t).ok())
        .is_some_and(|v| v.get("root_helper").is_some())
}

/// `load_config`, then `--default-root-helper` for a file that leaves
/// `root_helper` out (the built-in default "sudo" stays for everyone else).
fn load_config_with(cli: &Cli) -> Result<Config, String> {
    let mut cfg = load_config(cli.config.as_deref())?;
    if let Some(h) = &cli.default_root_helper {
        let file = cli.config.as_deref().unwrap_or(Path::new(DEFAULT_CONFIG));
        if !file_sets_root_helper(file) {
            cfg.root_helper = h.clone();
        }
    }
    Ok(cfg)
}

fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => {
            let p = Path::new(DEFAULT_CONFIG);
            // Only a config that does not exist means "built-in defaults";
            // one that cannot be looked at (permissions) is an error.
            match std::fs::metadata(p) {
                Ok(_) => Config::load(p).map_err(|e| e.to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
                Err(e) => Err(format!(
                    "{}: {e} (not using the built-in defaults; run as root or pass -c FILE)",
                    p.display()
                )),
            }
        }
    }
}

/// Every check the daemon makes of its configuration before it changes
/// anything (`--check-config` and the daemon's start both run it): the
/// controller link's URL, token and CA files, and the log file.
fn preflight(cfg: &Config) -> Result<(), String> {
    vdp_agent::api::controller::preflight(cfg).map_err(|e| e.to_string())?;
    for (key, dir) in [
        ("paths.run_dir", &cfg.paths.run_dir),
        ("paths.state_dir", &cfg.paths.state_dir),
    ] {
        vdp_agent::api::fsutil::check_private_dir(dir).map_err(|e| format!("{key}: {e}"))?;
    }
    if let Some(f) = &cfg.log.file {
        match std::fs::metadata(f) {
            Ok(m) if !m.is_file() => {
                return Err(format!("log.file {}: not a regular file", f.display()));
            }
            Ok(_) => {}
            Err(_) => {
                let dir = f.parent().filter(|d| !d.as_os_str().is_empty());
                if dir.is_some_and(|d| !d.is_dir()) {
                    return Err(format!(
                        "log.file {}: its directory does not exist",
                        f.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Set up env_logger; returns the log file (for SIGHUP reopen) if any.
fn init_logging(cfg: &Config) -> Result<Option<Arc<LogFile>>, String> {
    let mut b = env_logger::Builder::new();
    b.filter_level(cfg.log.level_filter());
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    // stderr that is the journal: `<N>` priority prefix, no timestamp.
    let journal = cfg.log.file.is_none() && vdp_agent::api::journal::stderr_is_journal();
    b.format(move |buf, rec| {
        let th = std::thread::current();
        let th = th.name().unwrap_or("?");
        if journal {
            let prio = vdp_agent::api::journal::priority(rec.level());
            return writeln!(
                buf,
                "<{prio}>{:<5} [{th}] {}: {}",
                rec.level(),
                rec.target(),
                rec.args()
            );
        }
        let ts = buf.timestamp_millis();
        writeln!(
            buf,
            "{ts} {:<5} [{th}] {}: {}",
            rec.level(),
            rec.target(),
            rec.args()
        )
    });
    let file = match &cfg.log.file {
        Some(p) => {
            let f = LogFile::open(p)
                .map_err(|e| format!("cannot open log file {}: {e}", p.display()))?;
            b.target(env_logger::Target::Pipe(Box::new(f.writer())));
            Some(f)
        }
        None => {
            b.target(env_logger::Target::Stderr);
            None
        }
    };
    b.try_init().map_err(|e| e.to_string())?;
    Ok(file)
}

/// Build the production host driver (`host::LinuxHost` over the OVS,
/// lldpad, uplink and topology drivers, commands through one
/// `exec::Runner` with `root_helper`) and controller link
/// (`controller::Controller`). Err = (exit code, reason): 2 for a
/// configuration problem (bad URL, token or CA file), 1 for a runtime one
/// (state dir not writable). Spawns no thread.
type HostAndLink = (Arc<dyn HostDriver>, Arc<dyn ControllerLink>);

/// Timeout of one privileged command. vdptool `-W` waits 5 s by itself;
/// the margin covers a slow root helper.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

fn build_host_and_link(
    cfg: &Config,
    shutdown: &vdp_agent::api::shutdown::Shutdown,
) -> Result<HostAndLink, (i32, String)> {
    use vdp_agent::api::controller::{Controller, ControllerError};
    let link = Controller::new(cfg, cfg.host_id()).map_err(|e| {
        let code = if matches!(e, ControllerError::StateDir { .. }) {
            1
        } else {
            2
        };
        (code, format!("controller link: {e}"))
    })?;
    let runner = Arc::new(vdp_agent::api::exec::Runner::new(
        cfg.root_helper_argv(),
        COMMAND_TIMEOUT,
    ));
    let host = vdp_agent::api::host::LinuxHost::new(cfg, runner, shutdown.clone());
    Ok((Arc::new(host), Arc::new(link)))
}

fn real_main() -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vdp-agent: {e}\n{USAGE}");
            return 2;
        }
    };
    match cli.command {
        Command::Help => {
            print!("{USAGE}");
            0
        }
        Command::Version => {
            println!("vdp-agent {}", vdp_agent::VERSION);
            0
        }
        Command::CheckConfig => {
            match load_config_with(&cli).and_then(|cfg| preflight(&cfg).map(|_| cfg)) {
                Ok(cfg) => {
                    print!("{}", cfg.effective_yaml());
                    0
                }
                Err(e) => {
                    eprintln!("vdp-agent: {e}");
                    2
                }
            }
        }
        Command::Status { check: true, .. } => {
            use vdp_agent::api::health::{judge, line, Health};
            let cfg = match load_config(cli.config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    println!("{}", line(Health::Unknown, &format!("config: {e}")));
                    return Health::Unknown.exit_code();
                }
            };
            let (state, what) = match vdp_agent::api::status::query_raw(&cfg.status_socket()) {
                Ok((_, v)) => judge(&v),
                Err(e) => (Health::Critical, format!("daemon not answering: {e}")),
            };
            println!("{}", line(state, &what));
            state.exit_code()
        }
        Command::Status { json, .. } => {
            let cfg = match load_config(cli.config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("vdp-agent: {e}");
                    return 2;
                }
            };
            match vdp_agent::api::status::query_raw(&cfg.status_socket()) {
                Ok((raw, v)) => {
                    if json {
                        println!("{raw}");
                    } else {
                        print!("{}", vdp_agent::api::status::render_table(&v));
                    }
                    0
                }
                Err(e) => {
                    eprintln!("vdp-agent: {e}");
                    1
                }
            }
        }
        Command::Run { ref pid_file } => {
            limit_malloc_arenas();
            let pid_file = pid_file.clone();
            let cfg = match load_config_with(&cli).and_then(|cfg| preflight(&cfg).map(|_| cfg)) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("vdp-agent: {e}");
                    return 2;
                }
            };
            let log_file = match init_logging(&cfg) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("vdp-agent: {e}");
                    return 1;
                }
            };
            // Panics (caught per loop step by the daemon) go to the log too.
            std::panic::set_hook(Box::new(|info| {
                let th = std::thread::current();
                log::error!("panic in thread {}: {info}", th.name().unwrap_or("?"));
            }));
            let on_hup: Option<Arc<dyn Fn() + Send + Sync>> = log_file.map(|f| {
                Arc::new(move || match f.reopen() {
                    Ok(()) => log::info!("log file reopened"),
                    Err(e) => eprintln!("vdp-agent: reopening log file: {e}"),
                }) as Arc<dyn Fn() + Send + Sync>
            });
            // systemd's notify socket, taken out of the environment while
            // this process has one thread (children do not inherit it).
            let notify = vdp_agent::api::sdnotify::Notifier::from_env().map(Arc::new);
            vdp_agent::api::sdnotify::Notifier::clear_env();
            // Signals are blocked before any thread exists (run_with does it
            // first thing); build_host_and_link must not spawn threads.
            if let Err(e) = daemon::block_signals() {
                eprintln!("vdp-agent: {e}");
                return 1;
            }
            let shutdown = vdp_agent::api::shutdown::Shutdown::new();
            let (host, link) = match build_host_and_link(&cfg, &shutdown) {
                Ok(x) => x,
                Err((code, e)) => {
                    log::error!("{e}");
                    eprintln!("vdp-agent: {e}");
                    return code;
                }
            };
            let opts = RunOptions {
                pid_file: Some(pid_file.unwrap_or_else(|| cfg.pid_file())),
                handle_signals: true,
                on_hup,
                shutdown: Some(shutdown),
                notify,
            };
            match daemon::run_with(cfg, host, link, opts) {
                Ok(()) => 0,
                Err(e) => {
                    log::error!("{e}");
                    eprintln!("vdp-agent: {e}");
                    1
                }
            }
        }
    }
}

/// Malloc arenas the daemon's allocator may use (glibc's default is eight
/// per core, one per thread that allocates): the daemon allocates little
/// and rarely, so per-thread arenas only hold memory, and one shared arena
/// costs no measurable latency (docs/bench.md runs I, J, K: RSS with 1000
/// VSIs 20.2 MB with the default, 15.3 MB with 2 arenas, 14.7 MB with 1).
/// `MALLOC_ARENA_MAX` in the environment, when set, wins. (glibc only.)
#[cfg(target_env = "gnu")]
const MALLOC_ARENAS: i32 = 1;

fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called once,
        // before the daemon starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
        }
    }
}

fn main() {
    std::process::exit(real_main());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(a: &[&str]) -> Result<Cli, String> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn cli_forms() {
        assert_eq!(p(&[]).unwrap().command, Command::Run { pid_file: None });
        let c = p(&["-c", "/x.yaml", "--pid-file", "/p"]).unwrap();
        assert_eq!(c.config, Some(PathBuf::from("/x.yaml")));
        assert_eq!(
            c.command,
            Command::Run {
                pid_file: Some("/p".into())
            }
        );
        assert_eq!(
            p(&["-c", "f", "--check-config"]).unwrap().command,
            Command::CheckConfig
        );
        assert_eq!(
            p(&["status", "--json"]).unwrap().command,
            Command::Status {
                json: true,
                check: false
            }
        );
        assert_eq!(
            p(&["-c", "f", "status"]).unwrap().command,
            Command::Status {
                json: false,
                check: false
            }
        );
        assert_eq!(p(&["--version"]).unwrap().command, Command::Version);
        assert_eq!(p(&["--help"]).unwrap().command, Command::Help);
        assert!(p(&["-c"]).is_err());
        assert!(p(&["--json"]).is_err());
        assert!(p(&["--check"]).is_err());
        assert!(p(&["status", "--json", "--check"]).is_err());
        assert_eq!(
            p(&["status", "--check"]).unwrap().command,
            Command::Status {
                json: false,
                check: true
            }
        );
        assert!(p(&["--bogus"]).is_err());
        let c = p(&["-c", "f", "--default-root-helper=", "--pid-file", "/p"]).unwrap();
        assert_eq!(c.default_root_helper.as_deref(), Some(""));
        let c = p(&["--default-root-helper", "sudo -n", "--check-config"]).unwrap();
        assert_eq!(c.default_root_helper.as_deref(), Some("sudo -n"));
        assert!(p(&["status", "--default-root-helper="]).is_err());
        assert!(p(&["--default-root-helper"]).is_err());
        assert!(p(&["status", "--check-config"]).is_err());
    }
}
