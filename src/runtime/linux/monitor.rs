//! The monitor: one small process per running Linux container
//! (`ketch-monitor monitor DIR`, or `ketchd monitor DIR`), in the role of
//! conmon.
//!
//! ketchd is multi-threaded and must never fork to make a container, so it
//! spawns this instead. The monitor forks once (ketchd reaps the parent at
//! once), leaves ketchd's session, and then:
//! - makes a private mount namespace, so the container's overlay root
//!   exists only while the monitor lives and can never leak onto the host;
//! - makes the network namespace (with `lo` up), and joins it to its
//!   bridge networks by veth pairs;
//! - creates and starts the container with libcontainer, holding its
//!   stdout and stderr, and writes them to the json-file log;
//! - reaps the container's exit, reads whether the kernel's OOM killer
//!   ended it, removes its cgroup, and records the exit in `exit.json`.
//!
//! It outlives ketchd, so containers keep running across a daemon restart;
//! ketchd finds it again through `pids.json` and a pidfd.

use super::step::{Step, StepError};
use super::sys;
use super::{ExitRecord, MonitorConfig, NetworkMode, Pids, EXIT_FILE, PIDS_FILE};
use crate::api::stream::StdStream;
use chrono::Utc;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// How the monitor reports back to ketchd: one JSON line on its stdout.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    Started(Pids),
    Failed(String),
    /// The command is not there or cannot be run, with Docker's exit
    /// status for it and runc's words.
    CannotExec {
        code: i64,
        reason: String,
    },
}

fn report(r: &Report) {
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    let mut out = io::stdout().lock();
    let _ = out.write_all(&line);
    let _ = out.flush();
}

/// Entry point of `ketch-monitor monitor DIR`. Must run before any other thread
/// exists in the process: it forks.
pub fn main(run_dir: &Path) -> i32 {
    // libcontainer explains its failures through tracing; they go to
    // `monitor.log` (the monitor's stderr until it detaches).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KETCH_MONITOR_LOG")
                .unwrap_or_else(|_| "warn,libcgroups=error".into()),
        )
        .with_ansi(false)
        .with_writer(io::stderr)
        .try_init();
    let cfg: MonitorConfig = match std::fs::read(run_dir.join(super::MONITOR_FILE))
        .map_err(|e| e.to_string())
        .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            report(&Report::Failed(format!(
                "cannot read monitor config in {}: {e}",
                run_dir.display()
            )));
            return 1;
        }
    };
    // SAFETY: single-threaded at this point (checked by the caller's
    // contract), so the child may do anything.
    match unsafe { libc::fork() } {
        -1 => {
            report(&Report::Failed(format!(
                "fork: {}",
                io::Error::last_os_error()
            )));
            return 1;
        }
        0 => {}
        _ => return 0,
    }
    // SAFETY: plain calls with integer arguments.
    unsafe {
        libc::setsid();
        // Its own name in `ps`, so that `pkill ketchd` leaves it alone.
        libc::prctl(libc::PR_SET_NAME, c"ketch-monitor".as_ptr(), 0, 0, 0);
        // Reap the container's init (a grandchild by way of libcontainer's
        // intermediate process) and anything it leaves behind.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let running = match start(run_dir, &cfg) {
        Ok(r) => r,
        Err(StepError::CannotExec { code, reason }) => {
            report(&Report::CannotExec { code, reason });
            return 1;
        }
        Err(e) => {
            report(&Report::Failed(e.to_string()));
            return 1;
        }
    };
    report(&Report::Started(running.pids.clone()));
    detach_stdio();
    let code = running.supervise(&cfg);
    finish(run_dir, &cfg, code);
    0
}

fn detach_stdio() {
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors we own.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

/// What the monitor relays while the container runs.
enum Source {
    /// Container output for the log.
    Output(StdStream),
    /// `-t`: ketchd's stdin for the container, written to the pty master.
    Stdin,
    /// `-t`: resize requests (`ROWS COLS`) from ketchd.
    Resize(std::os::unix::net::UnixListener),
}

struct Running {
    pids: Pids,
    sources: Vec<(OwnedFd, Source)>,
    /// `-t`: the pty master (a second descriptor, for input and resizes).
    master: Option<OwnedFd>,
}

/// Name of the socket in the run dir that takes `-t` resize requests.
pub const RESIZE_SOCKET: &str = "tty.sock";

fn start(run_dir: &Path, cfg: &MonitorConfig) -> Result<Running, StepError> {
    sys::private_mount_namespace().step("mount namespace")?;
    if cfg.network != NetworkMode::Host {
        // Opened before leaving: these stay in the host's namespace.
        let host = if cfg.attachments.is_empty() {
            None
        } else {
            let nl = super::net::Netlink::open().step("netlink")?;
            let ns = File::open("/proc/self/ns/net").step("host netns")?;
            Some((nl, ns))
        };
        sys::unshare(libc::CLONE_NEWNET).step("network namespace")?;
        sys::loopback_up().step("bringing lo up")?;
        if let Some((mut host_nl, host_ns)) = host {
            let mut ns = super::net::Netlink::open().step("netlink")?;
            for a in &cfg.attachments {
                super::net::attach(&mut host_nl, &mut ns, host_ns.as_raw_fd(), a)
                    .step(format!("network {}", a.ifname))?;
            }
        }
        // Name it in the spec, so an exec joins it too (the init is
        // already in it).
        let spec = cfg.bundle.join("config.json");
        let mut v: serde_json::Value = std::fs::read(&spec)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .ok_or_else(|| StepError::missing(format!("cannot read {}", spec.display())))?;
        if let Some(ns) = v["linux"]["namespaces"].as_array_mut() {
            ns.push(serde_json::json!({
                "type": "network",
                "path": format!("/proc/{}/ns/net", std::process::id()),
            }));
        }
        crate::fsutil::write_atomic_volatile(&spec, &serde_json::to_vec(&v).unwrap_or_default())
            .step(format!("writing {}", spec.display()))?;
    }
    let rootfs = cfg.bundle.join("rootfs");
    sys::mount_overlay(&cfg.lower, &cfg.upper, &cfg.work, &rootfs)
        .step(format!("mounting the overlay root at {}", rootfs.display()))?;
    if !cfg.workdir.is_empty() {
        make_workdir(&rootfs, &cfg.workdir);
    }
    check_command(&rootfs, &cfg.bundle.join("config.json"))?;
    let (out_r, out_w) = sys::pipe().step("pipe")?;
    let (err_r, err_w) = sys::pipe().step("pipe")?;
    // `-t`: the container's init makes a pty and sends its master here.
    let console = if cfg.tty {
        let path = run_dir.join("console.sock");
        let _ = std::fs::remove_file(&path);
        let l = sys::bind_unix(&path).step("console socket")?;
        Some((l, path))
    } else {
        None
    };
    let stdin: OwnedFd = if cfg.stdin && !cfg.tty {
        // ketchd handed us the container's stdin as our own.
        // SAFETY: dup of our fd 0 gives a new descriptor we own.
        let fd = unsafe { libc::dup(0) };
        if fd < 0 {
            return Err(io::Error::last_os_error()).step("stdin");
        }
        // SAFETY: fd is ours from dup.
        unsafe { OwnedFd::from_raw_fd(fd) }
    } else {
        File::open("/dev/null").step("opening /dev/null")?.into()
    };
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    let mut container = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_root_path(&cfg.state_root)
        .step("the container's state root")?
        .with_stdin(stdin)
        .with_stdout(out_w)
        .with_stderr(err_w)
        .with_console_socket(console.as_ref().map(|(_, p)| p.clone()))
        .as_init(&cfg.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .step("creating the container")?;
    let mut sources = vec![
        (out_r, Source::Output(StdStream::Stdout)),
        (err_r, Source::Output(StdStream::Stderr)),
    ];
    let mut master = None;
    if let Some((l, _)) = &console {
        let got = sys::accept_within(l, std::time::Duration::from_secs(10))
            .and_then(|s| sys::recv_fd(s.as_raw_fd()));
        let m = match got {
            Ok(m) => m,
            Err(e) => {
                let _ = container.delete(true);
                return Err(e).step("receiving the container's terminal");
            }
        };
        let resize_path = run_dir.join(RESIZE_SOCKET);
        let _ = std::fs::remove_file(&resize_path);
        let resize = sys::bind_unix(&resize_path).step("resize socket")?;
        let second = m.try_clone().step("pty")?;
        // The pty is the container's only output; the pipes stay empty.
        sources = vec![(m, Source::Output(StdStream::Stdout))];
        if cfg.stdin {
            // SAFETY: dup of our fd 0 gives a new descriptor we own.
            let fd = unsafe { libc::dup(0) };
            if fd >= 0 {
                // SAFETY: fd is ours from dup.
                sources.push((unsafe { OwnedFd::from_raw_fd(fd) }, Source::Stdin));
            }
        }
        let fd = resize.as_raw_fd();
        // SAFETY: a dup of the listener's descriptor, owned from here on.
        let dup = unsafe { libc::dup(fd) };
        if dup >= 0 {
            // SAFETY: dup is ours.
            sources.push((unsafe { OwnedFd::from_raw_fd(dup) }, Source::Resize(resize)));
        }
        master = Some(second);
    }
    if let Err(e) = container.start() {
        let _ = container.delete(true);
        return Err(e).step("starting the container");
    }
    let pid = container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| StepError::missing("the container has no init process"))?;
    let me = std::process::id() as i32;
    let pids = Pids {
        monitor: me,
        monitor_start: sys::start_time(me).unwrap_or(0),
        pid,
    };
    // Not fsynced: after a machine crash there is no container to find.
    crate::fsutil::write_atomic_volatile(
        &run_dir.join(PIDS_FILE),
        &serde_json::to_vec(&pids).unwrap_or_default(),
    )
    .step(format!("writing {PIDS_FILE}"))?;
    Ok(Running {
        pids,
        sources,
        master,
    })
}

/// Create a missing working directory in the container's root, as Docker
/// does. The path comes from the image or the request: it is hostile, so
/// it is made through `confine`, component by component with no symlink
/// on the way (a symlink could point anywhere on the host); creation stops
/// at anything that is not a plain directory.
fn make_workdir(rootfs: &Path, workdir: &str) {
    let clean = crate::fsutil::clean_abs(workdir);
    let Ok(rel) = crate::confine::RelPath::parse(clean.trim_start_matches('/').as_bytes()) else {
        return;
    };
    if let Ok(root) = crate::confine::Root::open(rootfs) {
        let _ = root.dir_nofollow(&rel, true);
    }
}

/// The search path a process without `PATH` gets, as runc's.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Find the process's command in the container's root as `execve` would
/// (a name through `PATH`, a path as given, from the working directory),
/// every symlink resolved inside the root; refuse it with runc's words and
/// Docker's exit status when it is missing (127) or cannot be run (126).
fn check_command(rootfs: &Path, spec: &Path) -> Result<(), StepError> {
    let spec = oci_spec::runtime::Spec::load(spec).step("reading the container's spec")?;
    let Some(process) = spec.process() else {
        return Ok(());
    };
    let args = process.args().as_deref().unwrap_or_default();
    // With `--init`, the command is the init's to run: it is checked as
    // if it were run alone (the init itself is mounted later).
    let args = match args {
        [init, dashes, rest @ ..] if init == super::devices::INIT_DEST && dashes == "--" => rest,
        all => all,
    };
    let Some(cmd) = args.first() else {
        return Ok(());
    };
    let root = crate::confine::Root::open(rootfs).step("opening the container's root")?;
    let cwd = process.cwd().to_string_lossy().into_owned();
    let path = process
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="));
    find_command(&root, cmd, &cwd, path)
        .map_err(|(code, reason)| StepError::CannotExec { code, reason })
}

/// Find `cmd` in the container's root as `execve` would: a name through
/// `path` (runc's default without one), a path as given, from `cwd`;
/// every symlink resolved inside the root. When it is missing (127) or
/// cannot be run (126): Docker's status and runc's words.
pub(super) fn find_command(
    root: &crate::confine::Root,
    cmd: &str,
    cwd: &str,
    path: Option<&str>,
) -> Result<(), (i64, String)> {
    let at = |p: &str| -> String {
        if p.starts_with('/') {
            p.to_string()
        } else {
            format!("{}/{p}", cwd.trim_end_matches('/'))
        }
    };
    let denied = |code: i64, why: String| Err((code, format!("exec: {cmd:?}: {why}")));
    if cmd.contains('/') {
        return match executable(root, &at(cmd)) {
            Ok(true) => Ok(()),
            Ok(false) => denied(126, "permission denied".into()),
            Err(Missing::Dir) => denied(126, "is a directory".into()),
            Err(Missing::Absent) => denied(127, format!("stat {cmd}: no such file or directory")),
        };
    }
    let found = path
        .unwrap_or(DEFAULT_PATH)
        .split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .any(|d| matches!(executable(root, &at(&format!("{d}/{cmd}"))), Ok(true)));
    if found {
        Ok(())
    } else {
        denied(127, "executable file not found in $PATH".into())
    }
}

/// Why a command's path names nothing to run.
enum Missing {
    Absent,
    Dir,
}

/// Is `path` in the root a regular file with an execute bit?
fn executable(root: &crate::confine::Root, path: &str) -> Result<bool, Missing> {
    use rustix::fs::{FileType, OFlags};
    let fd = root
        .open_in_root(path.as_bytes(), OFlags::PATH)
        .map_err(|_| Missing::Absent)?;
    let st = rustix::fs::fstat(&fd).map_err(|_| Missing::Absent)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Err(Missing::Dir),
        FileType::RegularFile => Ok(st.st_mode & 0o111 != 0),
        _ => Ok(false),
    }
}

/// Appends json-file lines and rotates the file, as ketchd's own log
/// writer does.
struct LogWriter {
    file: crate::runtime::logfile::LogFile,
}

impl LogWriter {
    fn write(&mut self, stream: StdStream, data: &[u8]) {
        let mut buf = Vec::with_capacity(data.len() + 64);
        crate::runtime::logfile::encode(stream, data, Utc::now(), &mut buf);
        let _ = self.file.append(&buf);
    }
}

fn wait_status_code(status: libc::c_int) -> i64 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as i64
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status) as i64
    } else {
        255
    }
}

impl Running {
    /// Relay output (and, with `-t`, input and resizes) until the
    /// container's init exits; returns its code.
    fn supervise(mut self, cfg: &MonitorConfig) -> i64 {
        let mut log = LogWriter {
            file: crate::runtime::logfile::LogFile::new(&cfg.log, cfg.log_rotation),
        };
        let outputs_open =
            |s: &[(OwnedFd, Source)]| s.iter().any(|(_, k)| matches!(k, Source::Output(_)));
        let mut buf = vec![0u8; 64 * 1024];
        let mut code = None;
        loop {
            let mut pfds: Vec<libc::pollfd> = self
                .sources
                .iter()
                .map(|(fd, _)| libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // Once the init is gone, only drain what is already buffered.
            let timeout = if code.is_some() { 0 } else { 100 };
            // SAFETY: pfds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as _, timeout) };
            let mut progressed = false;
            let mut closed = Vec::new();
            if n > 0 {
                for (i, p) in pfds.iter().enumerate() {
                    if p.revents == 0 {
                        continue;
                    }
                    let (fd, kind) = &self.sources[i];
                    if let Source::Resize(l) = kind {
                        if let Ok((conn, _)) = l.accept() {
                            self.resize(conn);
                        }
                        continue;
                    }
                    // SAFETY: reading into a buffer we own from our own fd.
                    let r =
                        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                    if r > 0 {
                        let data = &buf[..r as usize];
                        match kind {
                            Source::Output(stream) => {
                                log.write(*stream, data);
                                progressed = true;
                            }
                            Source::Stdin => {
                                // Like a failed write, a failed dup (out of
                                // descriptors) drops the input, not the monitor.
                                if let Some(Ok(m)) = self.master.as_ref().map(|m| m.try_clone()) {
                                    let _ = File::from(m).write_all(data);
                                }
                            }
                            Source::Resize(_) => {}
                        }
                    } else if r == 0
                        || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted
                    {
                        // End of output (a pty master reads EIO once the
                        // container's side is closed).
                        closed.push(i);
                    }
                }
            }
            for i in closed.into_iter().rev() {
                self.sources.remove(i);
            }
            loop {
                let mut status = 0;
                // SAFETY: status is a valid out pointer.
                let reaped = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if reaped <= 0 {
                    break;
                }
                if reaped == self.pids.pid {
                    code = Some(wait_status_code(status));
                }
            }
            if let Some(c) = code {
                if !progressed || !outputs_open(&self.sources) {
                    return c;
                }
            } else if self.sources.is_empty() {
                // Nothing left to relay: just wait for the exit.
                let mut status = 0;
                // SAFETY: status is a valid out pointer.
                let reaped = unsafe { libc::waitpid(self.pids.pid, &mut status, 0) };
                if reaped == self.pids.pid {
                    return wait_status_code(status);
                }
            }
        }
    }

    /// One resize request: `ROWS COLS`, read with a short deadline so a
    /// silent client cannot stall the relay.
    fn resize(&self, conn: std::os::unix::net::UnixStream) {
        use std::io::Read;
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_millis(200)));
        let mut line = String::new();
        let _ = (&conn).take(64).read_to_string(&mut line);
        let mut f = line.split_whitespace().map(|x| x.parse::<u16>());
        if let (Some(Ok(rows)), Some(Ok(cols)), Some(m)) = (f.next(), f.next(), &self.master) {
            let _ = sys::set_winsize(m.as_raw_fd(), rows, cols);
        }
    }
}

/// Did the kernel's OOM killer act in this cgroup (v1 or v2)?
pub fn oom_killed(cgroup_path: &str) -> bool {
    oom_killed_in(Path::new("/sys/fs/cgroup"), cgroup_path)
}

/// The same, under a cgroup filesystem mounted at `root`: v1's
/// `memory/<path>/memory.oom_control` or v2's `<path>/memory.events`, each
/// with an `oom_kill N` line.
fn oom_killed_in(root: &Path, cgroup_path: &str) -> bool {
    let rel = cgroup_path.trim_start_matches('/');
    let files = [
        root.join("memory").join(rel).join("memory.oom_control"),
        root.join(rel).join("memory.events"),
    ];
    files.iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|s| {
            s.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

fn finish(run_dir: &Path, cfg: &MonitorConfig, code: i64) {
    let oom = oom_killed(&cfg.cgroup_path);
    // The init has exited, so the kernel has killed the rest of its pid
    // namespace: what is left is the cgroup and libcontainer's state. (No
    // libcontainer `delete`: it would first probe the dead init through a
    // fresh procfs instance.)
    let error = super::remove_cgroup(&cfg.id)
        .err()
        .map(|e| format!("removing the container's cgroup: {e}"));
    let state = cfg.state_root.join(&cfg.id);
    if let Err(e) = std::fs::remove_dir_all(&state) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("removing {}: {e}", state.display());
        }
    }
    let rec = ExitRecord {
        code,
        oom_killed: oom,
        error,
        finished_at: Utc::now(),
    };
    let _ = crate::fsutil::write_atomic_volatile(
        &run_dir.join(EXIT_FILE),
        &serde_json::to_vec(&rec).unwrap_or_default(),
    );
    // No unmount: the overlay lives in this process's private mount
    // namespace, which goes away with it.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (p, data) in files {
            let f = root.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, data).unwrap();
        }
        root
    }

    #[test]
    fn oom_kills_are_read_on_cgroup_v2() {
        let v2 = fake(&[(
            "ketch/c1/memory.events",
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n",
        )]);
        assert!(oom_killed_in(v2.path(), "/ketch/c1"));
        let calm = fake(&[(
            "ketch/c1/memory.events",
            "low 0\nmax 0\noom 0\noom_kill 0\n",
        )]);
        assert!(!oom_killed_in(calm.path(), "/ketch/c1"));
    }

    #[test]
    fn oom_kills_are_read_on_cgroup_v1() {
        let v1 = fake(&[(
            "memory/ketch/c1/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )]);
        assert!(oom_killed_in(v1.path(), "/ketch/c1"));
        assert!(!oom_killed_in(v1.path(), "/ketch/other"));
    }
}
