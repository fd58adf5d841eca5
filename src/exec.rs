//! The one runner for privileged commands: `root_helper` words + argv, no
//! shell, a timeout per call, output captured into a typed error naming the
//! command. The environment passes through (so `OVS_RUNDIR` works in labs).
//!
//! Owns: nothing but child processes it spawns. Calls: `std::process` and
//! `libc::killpg`. Every driver (lldpad, OVS, uplink, topology) runs its
//! commands through a `Runner`.

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
pub struct ExecStats {
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

    fn run_inner<S: AsRef<str>>(
        &self,
        argv: &[S],
        timeout: Duration,
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
        let mut cmd = Command::new(&full[0]);
        cmd.args(&full[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group, so a timeout kills helpers the child started.
            .process_group(0);
        let child = cmd.spawn().map_err(|e| ExecError::Spawn {
            cmd: cmd_str.clone(),
            err: e.to_string(),
        })?;
        self.stats.spawned.fetch_add(1, Ordering::Relaxed);
        let pid = child.id() as libc::pid_t;
        let (tx, rx) = crossbeam_channel::bounded::<io::Result<std::process::Output>>(1);
        let waiter = std::thread::Builder::new()
            .name("exec-wait".into())
            .spawn(move || {
                let _ = tx.send(child.wait_with_output());
            })
            .map_err(|e| ExecError::Spawn {
                cmd: cmd_str.clone(),
                err: format!("cannot start waiter thread: {e}"),
            })?;
        let res = match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(_) => {
                // SAFETY: killpg on the group we created; harmless if it is gone.
                unsafe {
                    libc::killpg(pid, libc::SIGKILL);
                }
                let _ = rx.recv();
                let _ = waiter.join();
                log::warn!("exec: `{cmd_str}` timed out after {timeout:?}");
                return Err(ExecError::Timeout {
                    cmd: cmd_str,
                    after: timeout,
                });
            }
        };
        let _ = waiter.join();
        let out = res.map_err(|e| ExecError::Spawn {
            cmd: cmd_str.clone(),
            err: e.to_string(),
        })?;
        let output = CmdOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        };
        log::debug!(
            "exec: `{cmd_str}` rc={} in {:?}",
            output.code,
            output.elapsed
        );
        Ok(output)
    }
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

    #[test]
    fn timeout_kills() {
        let r = Runner::direct();
        let t = Instant::now();
        let e = r
            .run_timeout(
                &["sh", "-c", "sleep 5 & sleep 5"],
                Duration::from_millis(200),
            )
            .unwrap_err();
        assert!(matches!(e, ExecError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn spawn_error() {
        let r = Runner::direct();
        let e = r.run(&["/nonexistent/tool"]).unwrap_err();
        assert!(matches!(e, ExecError::Spawn { .. }));
        assert!(e.to_string().contains("/nonexistent/tool"));
    }
}
