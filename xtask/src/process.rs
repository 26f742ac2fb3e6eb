//! Background processes `up` starts and `down` stops: detached daemons with a
//! pid file and a log file, optionally inside a network namespace.
//!
//! A daemon runs in its own session (so it outlives `cargo xtask` and a Ctrl-C
//! in the terminal does not reach it). Daemons of a node enter the node's
//! network namespace with `setns(2)` between fork and exec: unlike
//! `ip netns exec`, this keeps the root mount namespace, so `/sys/fs/bpf` (and
//! the pins other nodes share) stays visible. `down` only signals a pid whose
//! executable is still the one we started (a recycled pid is not ours).

use crate::util::step;
use anyhow::{bail, Context, Result};
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Where named network namespaces live (`ip netns add`).
pub const NETNS_DIR: &str = "/var/run/netns";

/// One background process to start.
pub struct Daemon {
    /// Name of its pid file and log file (`<name>.pid`, `<name>.log`).
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its command-line arguments.
    pub args: Vec<String>,
    /// Named network namespace to run in (root namespace when `None`).
    pub netns: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// A daemon in the root network namespace.
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, args: Vec<String>) -> Daemon {
        Daemon {
            name: name.into(),
            program: program.into(),
            args,
            netns: None,
            env: Vec::new(),
        }
    }
}

/// Pid and log files of the daemons of one cluster.
pub struct Files {
    /// Directory of `<name>.pid`.
    pub run_dir: PathBuf,
    /// Directory of `<name>.log`.
    pub log_dir: PathBuf,
}

impl Files {
    /// The pid file of daemon `name`.
    pub fn pid_file(&self, name: &str) -> PathBuf {
        self.run_dir.join(format!("{name}.pid"))
    }

    /// The log file of daemon `name`.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    /// The pid in `name`'s pid file, if that process is alive and still runs `exe`.
    pub fn running_pid(&self, name: &str, exe: &str) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.pid_file(name)).ok()?.trim().parse().ok()?;
        process_runs(pid, exe).then_some(pid)
    }

    /// Start `d` detached, appending its output to its log file; writes its pid file.
    pub fn start(&self, d: &Daemon) -> Result<u32> {
        if d.program.is_absolute() && !d.program.exists() {
            bail!("{} is not built (or not installed)", d.program.display());
        }
        let log_path = self.log_file(&d.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let netns = match &d.netns {
            Some(ns) => {
                let path = Path::new(NETNS_DIR).join(ns);
                Some(fs::File::open(&path).with_context(|| format!("opening network namespace {}", path.display()))?)
            }
            None => None,
        };
        let netns_fd = netns.as_ref().map(|f| f.as_raw_fd());
        let mut cmd = Command::new(&d.program);
        cmd.args(&d.args)
            .envs(d.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: only async-signal-safe syscalls (setsid, setns) run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = netns_fd {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        // `spawn` returns once exec succeeded, so the pid already runs the program.
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", d.program.display()))?;
        drop(netns);
        let pid = child.id();
        fs::write(self.pid_file(&d.name), format!("{pid}\n"))?;
        Ok(pid)
    }

    /// Stop daemon `name` if its pid file names a live `exe`; remove the pid file.
    pub fn stop(&self, name: &str, exe: &str) -> Result<()> {
        match self.running_pid(name, exe) {
            Some(pid) => {
                step(&format!("stopping {name} (pid {pid})"));
                stop(pid)?;
            }
            None => step(&format!("{name} is not running")),
        }
        let _ = fs::remove_file(self.pid_file(name));
        Ok(())
    }

    /// The last lines of `name`'s log.
    pub fn log_tail(&self, name: &str) -> String {
        let text = fs::read_to_string(self.log_file(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Poll `ready` until it holds, failing with the end of the log if the
    /// process exits or `timeout` passes. Prints a note every 10 s.
    pub fn wait_until(
        &self,
        name: &str,
        pid: u32,
        exe: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_note = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            if !process_runs(pid, exe) {
                bail!(
                    "{name} exited during startup; end of {}:\n{}",
                    self.log_file(name).display(),
                    self.log_tail(name)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} not ready after {} s; end of {}:\n{}",
                    timeout.as_secs(),
                    self.log_file(name).display(),
                    self.log_tail(name)
                );
            }
            if last_note.elapsed() > Duration::from_secs(10) {
                step(&format!("still waiting for {name}"));
                last_note = Instant::now();
            }
            sleep(Duration::from_millis(250));
        }
    }
}

/// Whether `pid` is alive (not a zombie) and its executable is named `name`.
pub fn process_runs(pid: u32, name: &str) -> bool {
    let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    // A binary rebuilt while running shows as "<path> (deleted)".
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    !is_zombie(pid) && Path::new(exe).file_name().is_some_and(|f| f == name)
}

/// Send `sig` to `pid` (kill(2); no `kill` binary needed: procps is not on every machine).
pub fn signal(pid: u32, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) takes plain integers; no memory is shared.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        match std::io::Error::last_os_error() {
            // Already gone: nothing to stop.
            e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            e => Err(e),
        }
    }
}

/// SIGTERM, then SIGKILL after 10 s if the process is still there.
pub fn stop(pid: u32) -> Result<()> {
    signal(pid, libc::SIGTERM).with_context(|| format!("sending SIGTERM to {pid}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
            return Ok(());
        }
        sleep(Duration::from_millis(100));
    }
    step(&format!("pid {pid} ignored SIGTERM; sending SIGKILL"));
    signal(pid, libc::SIGKILL).with_context(|| format!("sending SIGKILL to {pid}"))?;
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}
