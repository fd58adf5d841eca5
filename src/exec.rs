//! The one runner for privileged commands: `root_helper` words + argv, no
//! shell, a timeout per call, output captured into a typed error naming the
//! command. The environment passes through (so `OVS_RUNDIR` works in labs).
//!
//! Owns: nothing but child processes it spawns. Calls: `std::process` and
//! `libc::killpg`. Every driver (lldpad, OVS, uplink, topology) runs its
//! commands through a `Runner`.

use crate::task::ThreadName;
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a finished command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Why a command did not give a usable result. Each variant names the
/// command (argv joined by spaces, root helper included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecError {
    /// The program could not be started.
    Spawn { cmd: String, err: String },
    /// Killed after the timeout.
    Timeout { cmd: String, after: Duration },
    /// Ran and exited non-zero; output kept for the caller's parser.
    Failed { cmd: String, output: CmdOutput },
}

impl ExecError {
    /// Output of a command that ran but failed, for callers that parse
    /// failure replies (vdptool prints `FAILED: ...` with rc 1).
    pub fn output(&self) -> Option<&CmdOutput> {
        match self {
            ExecError::Failed { output, .. } => Some(output),
            _ => None,
        }
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Spawn { cmd, err } => write!(f, "cannot run `{cmd}`: {err}"),
            ExecError::Timeout { cmd, after } => {
                write!(f, "`{cmd}` timed out after {:.1}s", after.as_secs_f64())
            }
            ExecError::Failed { cmd, output } => {
                let msg = output.stderr.trim();
                let msg = if msg.is_empty() {
                    output.stdout.trim()
                } else {
                    msg
                };
                write!(
                    f,
                    "`{cmd}` exited with {}: {}",
                    output.code,
                    first_line(msg)
                )
            }
        }
    }
}

impl std::error::Error for ExecError {}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Counters, for `scripts/bench` and status: how many processes were spawned.
#[derive(Debug, Default)]
pub(crate) struct ExecStats {
    pub spawned: AtomicU64,
}

/// Runs argv with the configured root helper and a per-call timeout.
#[derive(Debug)]
pub struct Runner {
    root_helper: Vec<String>,
    default_timeout: Duration,
    stats: ExecStats,
}

impl Runner {
    /// `root_helper`: the words of the config's `root_helper` (empty = run directly).
    pub fn new(root_helper: Vec<String>, default_timeout: Duration) -> Runner {
        Runner {
            root_helper,
            default_timeout,
            stats: ExecStats::default(),
        }
    }

    /// A runner that runs commands directly (tests, labs).
    pub fn direct() -> Runner {
        Runner::new(Vec::new(), Duration::from_secs(10))
    }

    pub fn default_timeout(&self) -> Duration {
        self.default_timeout
    }

    /// Number of processes spawned so far.
    pub fn spawned(&self) -> u64 {
        self.stats.spawned.load(Ordering::Relaxed)
    }

    /// The full argv that would run (root helper + argv).
    pub fn full_argv<S: AsRef<str>>(&self, argv: &[S]) -> Vec<String> {
        self.root_helper
            .iter()
            .cloned()
            .chain(argv.iter().map(|s| s.as_ref().to_string()))
            .collect()
    }

    /// Run with the default timeout; non-zero exit is `ExecError::Failed`.
    pub fn run<S: AsRef<str>>(&self, argv: &[S]) -> Result<CmdOutput, ExecError> {
        self.run_timeout(argv, self.default_timeout)
    }

    /// Run with the default timeout; any exit code is `Ok` (the caller
    /// interprets it). Spawn errors and timeouts are still errors.
    pub fn run_any<S: AsRef<str>>(&self, argv: &[S]) -> Result<CmdOutput, ExecError> {
        self.run_inner(argv, self.default_timeout)
    }

    /// Run with an explicit timeout; non-zero exit is `ExecError::Failed`.
    pub fn run_timeout<S: AsRef<str>>(
        &self,
        argv: &[S],
        timeout: Duration,
    ) -> Result<CmdOutput, ExecError> {
        let out = self.run_inner(argv, timeout)?;
        if out.success() {
            Ok(out)
        } else {
            Err(ExecError::Failed {
                cmd: self.full_argv(argv).join(" "),
                output: out,
            })
        }
    }

    /// Run with an explicit timeout, any exit code is `Ok`.
    pub fn run_any_timeout<S: AsRef<str>>(
        &self,
        argv: &[S],
        timeout: Duration,
    ) -> Result<CmdOutput, ExecError> {
        self.run_inner(argv, timeout)
    }

    /// Run with the default timeout, `input` written to the command's
    /// stdin (e.g. `ovs-ofctl add-flows BR -`); non-zero exit is
    /// `ExecError::Failed`. No file is created anywhere.
    pub fn run_with_input<S: AsRef<str>>(
        &self,
        argv: &[S],
        input: &[u8],
    ) -> Result<CmdOutput, ExecError> {
        let out = self.spawn_and_collect(argv, self.default_timeout, Some(input.to_vec()))?;
        if out.success() {
            Ok(out)
        } else {
            Err(ExecError::Failed {
                cmd: self.full_argv(argv).join(" "),
                output: out,
            })
        }
    }

    fn run_inner<S: AsRef<str>>(
        &self,
        argv: &[S],
        timeout: Duration,
    ) -> Result<CmdOutput, ExecError> {
        self.spawn_and_collect(argv, timeout, None)
    }

    /// Spawn, feed stdin, collect stdout/stderr (each bounded by
    /// [`MAX_OUTPUT`]) and the exit status, all by the deadline. The bound
    /// holds whatever the child does: at the deadline its whole process
    /// group is killed and the call returns within [`KILL_GRACE`], without
    /// waiting for pipes a descendant that left the group (`setsid`) may
    /// still hold; after a normal exit such pipes are given
    /// [`EOF_GRACE`], then the output read so far is the output.
    fn spawn_and_collect<S: AsRef<str>>(
        &self,
        argv: &[S],
        timeout: Duration,
        input: Option<Vec<u8>>,
    ) -> Result<CmdOutput, ExecError> {
        let full = self.full_argv(argv);
        let cmd_str = full.join(" ");
        if full.is_empty() {
            return Err(ExecError::Spawn {
                cmd: cmd_str,
                err: "empty command".into(),
            });
        }
        log::debug!("exec: {cmd_str}");
        let start = Instant::now();
        let deadline = start.checked_add(timeout).unwrap_or(start + MAX_TIMEOUT);
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..])
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group, so a timeout kills helpers the child started.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| ExecError::Spawn {
            cmd: cmd_str.clone(),
            err: e.to_string(),
        })?;
        self.stats.spawned.fetch_add(1, Ordering::Relaxed);
        let program = argv.first().map_or("", |s| s.as_ref());
        let pid = child.id() as libc::pid_t;
        let (tx, rx) = crossbeam_channel::unbounded::<Io>();
        let spawn_err = |e: io::Error| ExecError::Spawn {
            cmd: cmd_str.clone(),
            err: format!("cannot start an I/O thread: {e}"),
        };
        let kill_group = || {
            // SAFETY: killpg on the group this call created (its leader is
            // our child, not reaped yet, so the id cannot be reused).
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        };
        let started = (|| -> io::Result<()> {
            if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
                std::thread::Builder::new()
                    .name(ThreadName::ExecIo.to_string())
                    .spawn(move || {
                        use std::io::Write;
                        // A child that does not read gets EPIPE / is killed.
                        let _ = stdin.write_all(&data);
                    })?;
            }
            if let Some(out) = child.stdout.take() {
                spawn_reader(out, Stream::Out, tx.clone())?;
            }
            if let Some(err) = child.stderr.take() {
                spawn_reader(err, Stream::Err, tx.clone())?;
            }
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(ThreadName::ExecWait.to_string())
                .spawn(move || {
                    let _ = tx.send(Io::Exit(child.wait()));
                })?;
            Ok(())
        })();
        if let Err(e) = started {
            kill_group();
            return Err(spawn_err(e));
        }
        drop(tx);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (mut out_eof, mut err_eof) = (false, false);
        let mut status: Option<io::Result<std::process::ExitStatus>> = None;
        let mut until = deadline;
        loop {
            if status.is_some() && out_eof && err_eof {
                break;
            }
            match rx.recv_deadline(until) {
                Ok(Io::Data(Stream::Out, b)) => append_bounded(&mut stdout, &b),
                Ok(Io::Data(Stream::Err, b)) => append_bounded(&mut stderr, &b),
                Ok(Io::Eof(Stream::Out)) => out_eof = true,
                Ok(Io::Eof(Stream::Err)) => err_eof = true,
                Ok(Io::Exit(st)) => {
                    status = Some(st);
                    // Pipes still open after the exit belong to a
                    // descendant: give them a moment, not the whole timeout.
                    until = until.min(Instant::now() + EOF_GRACE);
                }
                Err(_) if status.is_some() => {
                    log::warn!(
                        "exec: `{cmd_str}`: output pipes held open by a descendant; ignored"
                    );
                    kill_group();
                    break;
                }
                Err(_) => {
                    kill_group();
                    // The direct child dies of SIGKILL; wait for it (reap),
                    // bounded even if something is very wrong.
                    let grace = Instant::now() + KILL_GRACE;
                    while let Ok(m) = rx.recv_deadline(grace) {
                        if matches!(m, Io::Exit(_)) {
                            break;
                        }
                    }
                    log::warn!("exec: `{cmd_str}` timed out after {timeout:?}");
                    crate::metrics::command_done(program, start.elapsed(), true);
                    return Err(ExecError::Timeout {
                        cmd: cmd_str,
                        after: timeout,
                    });
                }
            }
        }
        // The loop above only ends without returning once the status is in.
        let st = status
            .unwrap_or_else(|| Err(io::Error::other("no exit status")))
            .map_err(|e| ExecError::Spawn {
                cmd: cmd_str.clone(),
                err: e.to_string(),
            })?;
        let output = CmdOutput {
            code: st.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed: start.elapsed(),
        };
        crate::metrics::command_done(program, output.elapsed, false);
        log::debug!(
            "exec: `{cmd_str}` rc={} in {:?}",
            output.code,
            output.elapsed
        );
        Ok(output)
    }
}

/// Most bytes kept of one output stream; the rest is read and dropped.
pub(crate) const MAX_OUTPUT: usize = 16 * 1024 * 1024;
/// How long a killed command's exit is awaited before the call returns.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(1);
/// How long output pipes may stay open after the command exited.
pub(crate) const EOF_GRACE: Duration = Duration::from_millis(500);
/// Cap for a deadline that would overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

enum Io {
    Data(Stream, Vec<u8>),
    Eof(Stream),
    Exit(io::Result<std::process::ExitStatus>),
}

fn spawn_reader(
    mut r: impl std::io::Read + Send + 'static,
    which: Stream,
    tx: crossbeam_channel::Sender<Io>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name(ThreadName::ExecIo.to_string())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Io::Data(which, buf[..n].to_vec())).is_err() {
                            // The call returned (timeout): drain and drop.
                            continue;
                        }
                    }
                }
            }
            let _ = tx.send(Io::Eof(which));
        })
        .map(|_| ())
}

fn append_bounded(buf: &mut Vec<u8>, more: &[u8]) {
    let room = MAX_OUTPUT.saturating_sub(buf.len());
    buf.extend_from_slice(&more[..more.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_without_shell_and_captures() {
        let r = Runner::direct();
        let out = r.run(&["echo", "a;b", "$HOME"]).unwrap();
        assert_eq!(out.stdout, "a;b $HOME\n");
        assert_eq!(r.spawned(), 1);
    }

    #[test]
    fn root_helper_prefix() {
        let r = Runner::new(vec!["env".into(), "X=1".into()], Duration::from_secs(5));
        assert_eq!(
            r.full_argv(&["printenv", "X"]),
            vec!["env", "X=1", "printenv", "X"]
        );
        let out = r.run(&["printenv", "X"]).unwrap();
        assert_eq!(out.stdout.trim(), "1");
    }

    #[test]
    fn failure_names_command() {
        let r = Runner::direct();
        let e = r.run(&["sh", "-c", "echo nope >&2; exit 3"]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("sh -c"), "{s}");
        assert!(s.contains("exited with 3"), "{s}");
        assert!(s.contains("nope"), "{s}");
        assert_eq!(e.output().unwrap().code, 3);
        let out = r.run_any(&["sh", "-c", "exit 1"]).unwrap();
        assert_eq!(out.code, 1);
    }

    /// A helper that leaves a descendant holding stdout (`setsid sleep &`)
    /// and then hangs: the timeout still holds (within a second of it) and
    /// the process group is killed.
    #[test]
    fn timeout_holds_with_escaped_descendant() {
        let r = Runner::direct();
        let t = Instant::now();
        let e = r
            .run_timeout(
                &["sh", "-c", "setsid sleep 30 & echo started; sleep 30"],
                Duration::from_millis(300),
            )
            .unwrap_err();
        assert!(matches!(e, ExecError::Timeout { .. }), "{e}");
        assert!(
            t.elapsed() < Duration::from_millis(1300),
            "{:?}",
            t.elapsed()
        );
        // Exits at once but leaves a descendant holding the pipes: the
        // output is taken without waiting for the descendant.
        let t = Instant::now();
        let out = r
            .run_timeout(
                &["sh", "-c", "setsid sleep 30 & echo done"],
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!(out.stdout, "done\n");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn input_goes_to_stdin() {
        let r = Runner::direct();
        let out = r.run_with_input(&["cat"], b"add a\ndelete b\n").unwrap();
        assert_eq!(out.stdout, "add a\ndelete b\n");
        // A command that does not read its input is not blocked by it.
        let big = vec![b'x'; 4 << 20];
        let out = r.run_with_input(&["true"], &big).unwrap();
        assert_eq!(out.code, 0);
    }

    #[test]
    fn output_is_bounded() {
        let r = Runner::direct();
        let out = r.run(&["sh", "-c", "head -c 20000000 /dev/zero"]).unwrap();
        assert_eq!(out.stdout.len(), MAX_OUTPUT);
    }

    #[test]
    fn spawn_error() {
        let r = Runner::direct();
        let e = r.run(&["/nonexistent/tool"]).unwrap_err();
        assert!(matches!(e, ExecError::Spawn { .. }));
        assert!(e.to_string().contains("/nonexistent/tool"));
    }
}
