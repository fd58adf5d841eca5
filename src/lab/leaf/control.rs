//! The leaf's control socket: a unix stream socket taking one command per
//! line and answering each with one line of JSON; plus the client used by
//! `vdp-lab leaf-ctl`.
//!
//! Commands: `status`, `stats`, `history`, `drop-ecp N`, `drop-ecp-share PCT`, `reject-next CODE [hard] [keep]`,
//! `reload`, `lldp stop|start`, `deassoc UUID|all`, `ka-ignore on|off`,
//! `delay-ms N`, `gateway GID IP|off`.
//!
//! Owns: the listener and command parsing. Calls `std::os::unix::net`,
//! `nix::poll`, `vdp::Reject`.

use super::vdp::Reject;
use crate::shutdown::Shutdown;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status,
    Stats,
    /// The last VDP operations (not keep-alives), oldest first.
    History,
    DropEcp(u32),
    /// Drop this percentage (0..=100) of ECP requests, spread evenly.
    DropEcpShare(u8),
    RejectNext(Reject),
    Reload,
    Lldp(bool),
    /// `None` = all.
    Deassoc(Option<String>),
    KaIgnore(bool),
    DelayMs(u64),
    /// `None` removes the gateway.
    Gateway(u32, Option<Ipv4Addr>),
}

/// Every command's usage, for error replies.
pub const USAGE: &str =
    "status | stats | history | drop-ecp N | drop-ecp-share PCT | reject-next CODE [hard] [keep] | reload | \
lldp stop|start | deassoc UUID|all | ka-ignore on|off | delay-ms N | gateway GID IP|off";

fn num<T: std::str::FromStr>(w: Option<&&str>, what: &str) -> Result<T, String> {
    w.ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}"))
}

fn on_off(w: Option<&&str>) -> Result<bool, String> {
    match w.copied() {
        Some("on") | Some("start") => Ok(true),
        Some("off") | Some("stop") => Ok(false),
        _ => Err("expected on|off".into()),
    }
}

/// Parse one command line.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let args = &w[w.len().min(1)..];
    let cmd = match w.first().copied() {
        Some("status") => Command::Status,
        Some("stats") => Command::Stats,
        Some("history") => Command::History,
        Some("reload") => Command::Reload,
        Some("drop-ecp") => Command::DropEcp(num(args.first(), "count")?),
        Some("drop-ecp-share") => {
            let pct: u8 = num(args.first(), "percentage")?;
            if pct > 100 {
                return Err("percentage must be 0..100".into());
            }
            Command::DropEcpShare(pct)
        }
        Some("delay-ms") => Command::DelayMs(num(args.first(), "milliseconds")?),
        Some("lldp") => Command::Lldp(on_off(args.first())?),
        Some("ka-ignore") => Command::KaIgnore(on_off(args.first())?),
        Some("reject-next") => {
            let code: u8 = num(args.first(), "code")?;
            if code > 15 {
                return Err("code must be 0..15".into());
            }
            let (mut hard, mut keep) = (false, false);
            for a in &args[1..] {
                match *a {
                    "hard" => hard = true,
                    "keep" => keep = true,
                    x => return Err(format!("unknown flag {x:?}")),
                }
            }
            Command::RejectNext(Reject { code, hard, keep })
        }
        Some("deassoc") => match args.first().copied() {
            Some("all") => Command::Deassoc(None),
            Some(u) => Command::Deassoc(Some(u.to_string())),
            None => return Err("missing UUID|all".into()),
        },
        Some("gateway") => {
            let gid = num(args.first(), "group id")?;
            match args.get(1).copied() {
                Some("off") | Some("none") => Command::Gateway(gid, None),
                _ => Command::Gateway(gid, Some(num(args.get(1), "IPv4 address")?)),
            }
        }
        Some(x) => return Err(format!("unknown command {x:?}; commands: {USAGE}")),
        None => return Err(format!("empty command; commands: {USAGE}")),
    };
    Ok(cmd)
}

/// Control socket failures.
#[derive(Debug)]
pub enum ControlError {
    Bind { path: PathBuf, err: io::Error },
    Io { path: PathBuf, err: io::Error },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Bind { path, err } => {
                write!(f, "cannot listen on {}: {err}", path.display())
            }
            ControlError::Io { path, err } => write!(f, "control socket {}: {err}", path.display()),
        }
    }
}

impl std::error::Error for ControlError {}

/// Bind the listener, replacing a stale socket file.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if path.exists() {
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|err| ControlError::Bind {
        path: path.to_path_buf(),
        err,
    })?;
    l.set_nonblocking(true).map_err(|err| ControlError::Bind {
        path: path.to_path_buf(),
        err,
    })?;
    Ok(l)
}

fn serve_conn(s: UnixStream, handle: &dyn Fn(&str) -> String) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut w = s.try_clone()?;
    for line in BufReader::new(s).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut reply = handle(line.trim());
        reply.push('\n');
        w.write_all(reply.as_bytes())?;
    }
    Ok(())
}

/// Serve until shutdown; connections are handled one at a time.
pub fn serve(listener: UnixListener, shutdown: &Shutdown, handle: &dyn Fn(&str) -> String) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while !shutdown.is_set() {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                log::error!("control socket poll: {e}");
                return;
            }
        }
        match listener.accept() {
            Ok((s, _)) => {
                if let Err(e) = serve_conn(s, handle) {
                    log::debug!("control connection: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => log::warn!("control accept: {e}"),
        }
    }
}

/// Send one command line and return the reply line.
pub fn request(path: &Path, line: &str, timeout: Duration) -> Result<String, ControlError> {
    let io_err = |err| ControlError::Io {
        path: path.to_path_buf(),
        err,
    };
    let mut s = UnixStream::connect(path).map_err(io_err)?;
    s.set_read_timeout(Some(timeout)).map_err(io_err)?;
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(io_err)?;
    s.shutdown(std::net::Shutdown::Write).map_err(io_err)?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).map_err(io_err)?;
    Ok(reply.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        assert_eq!(parse_command("status"), Ok(Command::Status));
        assert_eq!(parse_command(" stats "), Ok(Command::Stats));
        assert_eq!(parse_command("history"), Ok(Command::History));
        assert_eq!(parse_command("drop-ecp 3"), Ok(Command::DropEcp(3)));
        assert_eq!(
            parse_command("reject-next 2 hard keep"),
            Ok(Command::RejectNext(Reject {
                code: 2,
                hard: true,
                keep: true
            }))
        );
        assert_eq!(parse_command("reload"), Ok(Command::Reload));
        assert_eq!(parse_command("lldp stop"), Ok(Command::Lldp(false)));
        assert_eq!(parse_command("lldp start"), Ok(Command::Lldp(true)));
        assert_eq!(parse_command("deassoc all"), Ok(Command::Deassoc(None)));
        assert_eq!(
            parse_command("deassoc 7af441dd-253b-4772-8cf1-a4cfef18efe5"),
            Ok(Command::Deassoc(Some(
                "7af441dd-253b-4772-8cf1-a4cfef18efe5".into()
            )))
        );
        assert_eq!(parse_command("ka-ignore on"), Ok(Command::KaIgnore(true)));
        assert_eq!(parse_command("delay-ms 8000"), Ok(Command::DelayMs(8000)));
        assert_eq!(
            parse_command("gateway 30001 10.0.0.1"),
            Ok(Command::Gateway(30001, Some(Ipv4Addr::new(10, 0, 0, 1))))
        );
        assert_eq!(
            parse_command("gateway 30001 off"),
            Ok(Command::Gateway(30001, None))
        );
        assert!(parse_command("").is_err());
        assert!(parse_command("reject-next 99").is_err());
        assert!(parse_command("reject-next 2 soft").is_err());
        assert!(parse_command("drop-ecp x").is_err());
        assert_eq!(
            parse_command("drop-ecp-share 30"),
            Ok(Command::DropEcpShare(30))
        );
        assert!(parse_command("drop-ecp-share 101").is_err());
        assert!(parse_command("gateway 1 10.0.0").is_err());
        assert!(parse_command("fly").is_err());
    }

    #[test]
    fn socket_roundtrip() {
        let dir = std::env::temp_dir().join(format!("lf-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.sock");
        let l = bind(&path).unwrap();
        let sd = Shutdown::new();
        let sd2 = sd.clone();
        let t = std::thread::Builder::new()
            .name("lf-ctl-test".into())
            .spawn(move || serve(l, &sd2, &|line| format!("{{\"echo\":{line:?}}}")))
            .unwrap();
        let r = request(&path, "status", Duration::from_secs(5)).unwrap();
        assert_eq!(r, "{\"echo\":\"status\"}");
        sd.trigger();
        t.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
