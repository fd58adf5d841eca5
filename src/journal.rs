//! Log lines for the systemd journal: when stderr is the journal
//! (`$JOURNAL_STREAM` = `DEVICE:INODE` of stderr, set by systemd for
//! `StandardError=journal`), each line starts with the sd-daemon priority
//! `<N>` so `journalctl -p err` filters by level, and carries no timestamp
//! (the journal has its own).
//!
//! Owns: the detection and the priority mapping (pure parts tested without
//! I/O). Calls `fstat(2)` on fd 2 (libc).

use log::Level;

/// sd-daemon priority (syslog levels) of a log level: error 3, warn 4,
/// info 6, debug and trace 7.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `$JOURNAL_STREAM` parsed: `(device, inode)`, both decimal.
pub(crate) fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.trim().split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// True when `$JOURNAL_STREAM` names the file stderr is open on (a
/// redirected stderr, e.g. `2>file` under a journal-connected shell, is not
/// the journal even with the variable set).
pub fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM")
        .ok()
        .as_deref()
        .and_then(parse_stream)
    else {
        return false;
    };
    // SAFETY: fstat writes into the zeroed stat buffer we own; fd 2 is
    // only looked at.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
        assert_eq!(priority(Level::Trace), 7);
    }

    #[test]
    fn stream_variable() {
        assert_eq!(parse_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_stream(" 64769:9\n"), Some((64769, 9)));
        for bad in ["", "8", "8:", ":9", "a:b", "8:9:10", "-1:2"] {
            assert_eq!(parse_stream(bad), None, "{bad:?}");
        }
    }
}
