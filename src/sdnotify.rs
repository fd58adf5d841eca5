//! systemd service notifications (the `sd_notify` protocol of
//! `Type=notify` units): `READY=1` once the daemon is up, `WATCHDOG=1`
//! keep-alives while every task thread makes progress, `STATUS=` with a
//! one-line summary, `STOPPING=1` at shutdown.
//!
//! The protocol: systemd puts the address of a unix datagram socket in
//! `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket); each
//! message is one datagram of newline-separated `KEY=VALUE` lines. With
//! `WatchdogSec=` it also sets `$WATCHDOG_USEC` (and `$WATCHDOG_PID`, the
//! pid meant to ping). Written by hand (a few lines of std), no libsystemd.
//!
//! Owns: parsing of those variables and the message text (pure, tested
//! without I/O) and the one datagram socket that sends them. Calls std only.
//! Without `$NOTIFY_SOCKET` (SysV script, a shell) nothing is sent.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Longest `STATUS=` text sent (systemd shows one line).
pub(crate) const MAX_STATUS_BYTES: usize = 400;

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddr {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket (`@name` in `$NOTIFY_SOCKET`).
    Abstract(Vec<u8>),
}

/// `$NOTIFY_SOCKET` as an address: an absolute path or `@name`; anything
/// else (empty, relative, `vsock:` which we do not speak) is ignored.
pub(crate) fn parse_notify_socket(value: &str) -> Option<NotifyAddr> {
    if value.len() > 107 || value.contains('\0') {
        return None; // longer than sun_path
    }
    if let Some(name) = value.strip_prefix('@') {
        if name.is_empty() {
            return None;
        }
        return Some(NotifyAddr::Abstract(name.as_bytes().to_vec()));
    }
    if value.starts_with('/') {
        return Some(NotifyAddr::Path(PathBuf::from(value)));
    }
    None
}

/// The watchdog period from `$WATCHDOG_USEC`, when it is meant for this
/// process (`$WATCHDOG_PID` unset or equal to `my_pid`). None = no watchdog.
pub(crate) fn parse_watchdog(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Option<Duration> {
    let us: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok() != Some(my_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(us))
}

/// How often to ping a watchdog of `period`: half of it (systemd's advice),
/// at least every 100 ms apart.
pub(crate) fn ping_interval(period: Duration) -> Duration {
    (period / 2).max(Duration::from_millis(100))
}

/// `STATUS=` text: one line, control characters replaced, bounded.
pub(crate) fn status_field(text: &str) -> String {
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > MAX_STATUS_BYTES {
        let mut cut = MAX_STATUS_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    format!("STATUS={s}")
}

/// One datagram: the lines, newline-separated.
pub(crate) fn message(lines: &[&str]) -> String {
    let mut m = lines.join("\n");
    m.push('\n');
    m
}

/// A sender of notifications to the service manager.
#[derive(Debug)]
pub struct Notifier {
    addr: NotifyAddr,
    watchdog: Option<Duration>,
    sock: UnixDatagram,
}

impl Notifier {
    /// From the environment (`$NOTIFY_SOCKET`, `$WATCHDOG_USEC`,
    /// `$WATCHDOG_PID`). None when there is no usable socket address.
    pub fn from_env() -> Option<Notifier> {
        let var = |k| std::env::var(k).ok();
        let addr = parse_notify_socket(&var("NOTIFY_SOCKET")?)?;
        let watchdog = parse_watchdog(
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        Notifier::new(addr, watchdog).ok()
    }

    /// Remove the variables so commands the daemon runs do not inherit
    /// them. Call while the process has one thread (environment writes race
    /// with readers on other threads).
    pub fn clear_env() {
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(k);
        }
    }

    pub fn new(addr: NotifyAddr, watchdog: Option<Duration>) -> io::Result<Notifier> {
        Ok(Notifier {
            addr,
            watchdog,
            sock: UnixDatagram::unbound()?,
        })
    }

    /// The watchdog period systemd expects pings within (None = no watchdog).
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send one message (lines as built by [`message`]).
    pub fn send(&self, msg: &str) -> io::Result<()> {
        let n = match &self.addr {
            NotifyAddr::Path(p) => self.sock.send_to(msg.as_bytes(), p)?,
            NotifyAddr::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let a = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.sock.send_to_addr(msg.as_bytes(), &a)?
            }
        };
        if n != msg.len() {
            return Err(io::Error::other("short datagram write"));
        }
        Ok(())
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.send(&message(&["READY=1", &status_field(status)]))
    }

    /// `WATCHDOG=1` with a status line.
    pub fn watchdog_ping(&self, status: &str) -> io::Result<()> {
        self.send(&message(&["WATCHDOG=1", &status_field(status)]))
    }

    /// Only a status line (no keep-alive).
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&message(&[&status_field(status)]))
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) -> io::Result<()> {
        self.send(&message(&["STOPPING=1", &status_field("stopping")]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses() {
        assert_eq!(
            parse_notify_socket("/run/systemd/notify"),
            Some(NotifyAddr::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_notify_socket("@/org/freedesktop/systemd1/notify/1"),
            Some(NotifyAddr::Abstract(
                b"/org/freedesktop/systemd1/notify/1".to_vec()
            ))
        );
        for bad in ["", "@", "relative/sock", "vsock:2:1234", "/a\0b"] {
            assert_eq!(parse_notify_socket(bad), None, "{bad:?}");
        }
        assert_eq!(parse_notify_socket(&format!("/{}", "x".repeat(200))), None);
    }

    #[test]
    fn watchdog_variables() {
        assert_eq!(
            parse_watchdog(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_watchdog(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        // Meant for another process (a parent that exec'd us is fine only
        // when the pid matches), zero, garbage, unset: no watchdog.
        assert_eq!(parse_watchdog(Some("2000000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("x"), None, 7), None);
        assert_eq!(parse_watchdog(None, Some("7"), 7), None);
        assert_eq!(
            ping_interval(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(
            ping_interval(Duration::from_millis(50)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn messages() {
        assert_eq!(
            message(&["READY=1", &status_field("up")]),
            "READY=1\nSTATUS=up\n"
        );
        assert_eq!(status_field("a\nb\tc"), "STATUS=a b c");
        let long = "é".repeat(MAX_STATUS_BYTES);
        let f = status_field(&long);
        assert!(f.len() <= "STATUS=".len() + MAX_STATUS_BYTES);
        assert!(f.starts_with("STATUS=é"));
    }

    #[test]
    fn sends_datagrams_to_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("co-sdnotify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(NotifyAddr::Path(path), Some(Duration::from_secs(4))).unwrap();
        assert_eq!(n.watchdog(), Some(Duration::from_secs(4)));
        n.ready("started").unwrap();
        n.watchdog_ping("ok").unwrap();
        let mut buf = [0u8; 512];
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1\nSTATUS=started\n");
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1\nSTATUS=ok\n");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("co-sdnotify-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&a).unwrap();
        let n = Notifier::new(NotifyAddr::Abstract(name.into_bytes()), None).unwrap();
        n.stopping().unwrap();
        let k = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"STOPPING=1\nSTATUS=stopping\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
