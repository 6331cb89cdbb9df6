//! ketchd's side of a container's monitor process: spawning it, waiting
//! for its report, and watching it until the exit it records.

use super::{
    io_err, monitor, sys, ExitRecord, LinuxBackend, Pids, EXIT_FILE, HELPER_BIN, PIDS_FILE,
};
use crate::runtime::{ExitStatus, OutputSink, RuntimeError};
use chrono::{DateTime, Utc};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long ketchd waits for a monitor to report that its container runs.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The helper to spawn from a process whose executable is `exe`: the lean
/// [`HELPER_BIN`] beside it, else `ketchd` itself (which an embedding
/// program finds beside its own executable).
pub(super) fn helper_exe(exe: &Path) -> PathBuf {
    let lean = exe.with_file_name(HELPER_BIN);
    if lean.is_file() {
        lean
    } else if exe.file_name().is_some_and(|n| n == "ketchd") {
        exe.to_path_buf()
    } else {
        exe.with_file_name("ketchd")
    }
}

impl LinuxBackend {
    /// Spawn the monitor and wait for its report.
    pub(super) fn spawn_monitor(
        &self,
        run_dir: &Path,
        stdin: Option<OwnedFd>,
    ) -> Result<Pids, RuntimeError> {
        let failed = |reason: String| RuntimeError::Instantiate {
            name: run_dir.display().to_string(),
            reason,
        };
        let errlog = run_dir.join("monitor.log");
        let errfile = std::fs::File::create(&errlog).map_err(io_err(&errlog))?;
        let mut child = Command::new(&self.monitor_exe)
            .arg("monitor")
            .arg(run_dir)
            .stdin(stdin.map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::piped())
            .stderr(errfile)
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", self.monitor_exe.display())))?;
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| failed("the monitor has no stdout pipe".into()))?;
        // The first process exits right after forking the real monitor.
        let _ = child.wait();
        let mut line = Vec::new();
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        let mut buf = [0u8; 4096];
        while !line.contains(&b'\n') {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut pfd = libc::pollfd {
                fd: out.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
            if n == 0 {
                return Err(failed("the monitor did not report within 60s".into()));
            }
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => line.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(failed(format!("reading the monitor's report: {e}"))),
            }
        }
        match serde_json::from_slice::<monitor::Report>(line.trim_ascii_end()) {
            Ok(monitor::Report::Started(pids)) => Ok(pids),
            Ok(monitor::Report::Failed(reason)) => Err(failed(reason)),
            Ok(monitor::Report::CannotExec { code, reason }) => Err(RuntimeError::CannotExec {
                name: run_dir.display().to_string(),
                code,
                reason,
            }),
            Err(_) => {
                let log = std::fs::read_to_string(&errlog).unwrap_or_default();
                Err(failed(format!(
                    "the monitor exited without a report: {}",
                    log.trim()
                )))
            }
        }
    }
}

/// Resize a running `-t` container's terminal (through its monitor).
pub fn resize(run_dir: &Path, rows: u16, cols: u16) -> std::io::Result<()> {
    use std::io::Write;
    let mut s = sys::connect_unix(&run_dir.join(monitor::RESIZE_SOCKET))?;
    s.write_all(format!("{rows} {cols}\n").as_bytes())
}

/// The network namespace of a running container, from its run dir.
pub fn netns_path(run_dir: &Path) -> Option<PathBuf> {
    let pids: Pids = serde_json::from_slice(&std::fs::read(run_dir.join(PIDS_FILE)).ok()?).ok()?;
    (sys::start_time(pids.monitor) == Some(pids.monitor_start)).then(|| netns_of(&pids))
}

/// The container's network namespace: its monitor's.
pub(super) fn netns_of(pids: &Pids) -> PathBuf {
    PathBuf::from(format!("/proc/{}/ns/net", pids.monitor))
}

pub(super) fn read_exit(run_dir: &Path) -> Option<(ExitStatus, DateTime<Utc>)> {
    let rec: ExitRecord =
        serde_json::from_slice(&std::fs::read(run_dir.join(EXIT_FILE)).ok()?).ok()?;
    if let Some(e) = &rec.error {
        tracing::warn!("monitor of {}: {e}", run_dir.display());
    }
    Some((
        ExitStatus {
            code: rec.code,
            error: None,
            oom_killed: rec.oom_killed,
        },
        rec.finished_at,
    ))
}

/// Relay the log while the monitor lives; then report the exit it recorded.
pub(super) async fn watch(
    run_dir: PathBuf,
    monitor: Option<OwnedFd>,
    output: Arc<dyn OutputSink>,
    tx: oneshot::Sender<ExitStatus>,
) {
    let Some(monitor) = monitor else {
        // The monitor has finished already.
        output.relay();
        output.relay_stop();
        let _ = tx.send(exit_status(&run_dir));
        return;
    };
    // SAFETY: the OwnedFd moves into the AsyncFd, which keeps it open and
    // unchanged for its whole life.
    let afd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(monitor, tokio::io::Interest::READABLE)
    };
    let mut idle = 0u32;
    loop {
        // Poll the log often while output flows, rarely when it is quiet.
        let delay = Duration::from_millis(if idle < 50 { 20 } else { 250 });
        match &afd {
            Ok(afd) => {
                tokio::select! {
                    _ = afd.readable() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(_) => tokio::time::sleep(delay).await,
        }
        if output.relay() {
            idle = 0;
        } else {
            idle = idle.saturating_add(1);
        }
    }
    output.relay();
    output.relay_stop();
    let _ = tx.send(exit_status(&run_dir));
}

fn exit_status(run_dir: &Path) -> ExitStatus {
    read_exit(run_dir).map(|s| s.0).unwrap_or(ExitStatus {
        code: 255,
        error: Some("the container's monitor ended without recording its exit".into()),
        oom_killed: false,
    })
}
