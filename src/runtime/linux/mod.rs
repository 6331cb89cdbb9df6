//! Linux containers: an ordinary OCI image's layers as an overlay root,
//! run in pid, mount, uts, ipc and net namespaces with cgroup limits.
//!
//! ketchd never forks to make a container. [`LinuxBackend::start`] writes
//! the OCI runtime spec (built in [`spec`]) and a [`MonitorConfig`] into
//! the container's run directory, then spawns `ketch-monitor monitor DIR`
//! ([`monitor`]), which creates the container with youki's libcontainer,
//! holds its stdio, writes its log and records its exit. ketchd watches
//! the monitor through a pidfd and relays the log file to followers; after
//! a ketchd restart, [`LinuxBackend::reattach`] picks the same container up
//! again from `pids.json`, or its exit from `exit.json`.

pub mod copy;
pub mod exec;
pub mod monitor;
pub mod net;
mod proxy;
pub mod spec;
pub mod sys;

use super::{
    Backend, Control, ExitStatus, OutputSink, Program, Reattached, RunSpec, RuntimeError,
    RuntimeStats, Started,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Written by ketchd, read by the monitor.
pub const MONITOR_FILE: &str = "monitor.json";
/// Written by the monitor once the container runs.
pub const PIDS_FILE: &str = "pids.json";
/// Written by the monitor when the container has exited.
pub const EXIT_FILE: &str = "exit.json";
/// How long ketchd waits for a monitor to report that its container runs.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A network namespace of its own with only `lo`.
    None,
    /// The host's network stack.
    Host,
    /// A network namespace of its own, joined to bridges by veth pairs.
    Bridge,
}

/// What a Linux container needs beyond the common [`RunSpec`].
#[derive(Clone, Debug)]
pub struct LinuxProgram {
    pub id: String,
    /// Spec, monitor files and the overlay mount point; made afresh per run.
    pub run_dir: PathBuf,
    /// The container's upper and work dirs; they live as long as it does.
    pub fs_dir: PathBuf,
    /// Unpacked layers, lowest first.
    pub layers: Vec<PathBuf>,
    pub log_path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--tmpfs DEST[:OPTIONS]`.
    pub tmpfs: Vec<(String, String)>,
    pub memory_swap: Option<i64>,
    pub nano_cpus: i64,
    pub pids_limit: Option<i64>,
    pub network: NetworkMode,
    /// Its interfaces on bridge networks, the primary one first.
    pub attachments: Vec<net::Attachment>,
    /// `/etc/hosts` entries for the peers on its user networks.
    pub peer_hosts: Vec<(Ipv4Addr, Vec<String>)>,
    /// `-t`: a pty for its stdio.
    pub tty: bool,
    pub stop_signal: i32,
}

impl LinuxProgram {
    pub fn cgroup_path(&self) -> String {
        cgroup_path(&self.id)
    }
}

pub fn cgroup_path(id: &str) -> String {
    format!("/ketch/{id}")
}

/// Kill whatever is left in a container's cgroup and remove the cgroup.
pub fn remove_cgroup(id: &str) -> Result<(), String> {
    remove_cgroup_under(Path::new(CGROUP_ROOT), id).or_else(|e| {
        // Something the plain walk could not remove (a child cgroup made
        // inside): leave it to libcgroups, which knows every layout.
        tracing::debug!("cgroup of {id}: {e}; retrying through libcgroups");
        use libcgroups::common::CgroupManager;
        libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
            cgroup_path: PathBuf::from(cgroup_path(id)),
            systemd_cgroup: false,
            container_name: id.to_string(),
        })
        .map_err(|e| e.to_string())?
        .remove()
        .map_err(|e| e.to_string())
    })
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// [`remove_cgroup`] under a cgroup filesystem mounted at `root`: the
/// container's directory in every v1 hierarchy (`root/<controller>/...`)
/// and the v2 one (`root/...`), whichever exist. Its processes are killed
/// first (after its init has exited there are normally none: the kernel
/// ended its pid namespace).
fn remove_cgroup_under(root: &Path, id: &str) -> Result<(), String> {
    let rel = cgroup_path(id);
    let rel = rel.trim_start_matches('/');
    let mut dirs = vec![root.join(rel)];
    if let Ok(rd) = std::fs::read_dir(root) {
        dirs.extend(rd.flatten().map(|e| e.path().join(rel)));
    }
    // Co-mounted v1 controllers (`cpu,cpuacct` and its symlinks) name
    // one directory several times.
    dirs.retain(|d| d.is_dir());
    dirs.sort();
    dirs.dedup();
    let mut attempts = 0;
    loop {
        let mut busy = None;
        for d in &dirs {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        // SAFETY: a plain signal to a process of this container's cgroup.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    busy = Some(format!("{}: {e}", d.display()));
                }
            }
        }
        attempts += 1;
        match busy {
            None => return Ok(()),
            Some(e) if attempts == 50 => return Err(e),
            Some(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Moving a process into a cgroup write-locks a kernel-wide per-cpu rwsem,
/// and taking it out of its fast mode waits for an RCU grace period: 7-15
/// ms on a small VM, unless the hierarchy is mounted with `favordynmods`.
/// libcontainer moves the container's first process into its cgroup a few
/// milliseconds after the monitor is spawned, and would wait that long on
/// the critical path of every start. So ketchd takes the lock first, from a
/// thread of its own, by a migration that changes nothing (its own pid into
/// the cgroup it is already in): the grace period elapses while the monitor
/// starts, and the lock stays in its slow mode for about one more grace
/// period, in which libcontainer's migration does not wait.
fn prime_cgroup_migration(procs: PathBuf) {
    let _ = std::thread::Builder::new()
        .name("cgroup-prime".into())
        .spawn(move || {
            let write = std::fs::OpenOptions::new()
                .write(true)
                .open(&procs)
                .and_then(|mut f| {
                    use std::io::Write;
                    f.write_all(std::process::id().to_string().as_bytes())
                });
            if let Err(e) = write {
                tracing::debug!("priming cgroup migration through {}: {e}", procs.display());
            }
        });
}

/// The `cgroup.procs` of the cgroup this process is in, from the text of
/// `/proc/self/cgroup`, under a cgroup filesystem mounted at `root`: the
/// v2 one on a pure v2 host, else one of its v1 hierarchies (the named,
/// controller-less `systemd` one if mounted, whose attach does nothing).
fn own_cgroup_procs(root: &Path, proc_self_cgroup: &str) -> Option<PathBuf> {
    let mut lines: Vec<(&str, &str)> = proc_self_cgroup
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctl, path.trim_start_matches('/')))
        })
        .collect();
    if root.join("cgroup.procs").is_file() {
        let (_, path) = lines.iter().find(|(ctl, _)| ctl.is_empty())?;
        return Some(root.join(path).join("cgroup.procs")).filter(|p| p.is_file());
    }
    lines.retain(|(ctl, _)| !ctl.is_empty());
    lines.sort_by_key(|(ctl, _)| *ctl != "name=systemd");
    lines.iter().find_map(|(ctl, path)| {
        let dir = ctl.strip_prefix("name=").unwrap_or(ctl);
        Some(root.join(dir).join(path).join("cgroup.procs")).filter(|p| p.is_file())
    })
}

/// The file name of the lean helper binary that ketchd spawns for Linux
/// containers (in the role of conmon). ketchd can do the same jobs itself;
/// the helper is used when it sits beside ketchd, since a small binary
/// starts faster.
pub const HELPER_BIN: &str = "ketch-monitor";

/// Run one of the helper commands ketchd spawns, if `argv` names one:
/// `monitor DIR`, `exec REQUEST` or `cp MODE TARGET PATH`. Returns its
/// exit status. Call it first thing in `main`: they fork, so no other
/// thread may exist yet.
pub fn helper_main(argv: &[std::ffi::OsString]) -> Option<i32> {
    let s = |i: usize| argv[i].to_string_lossy().into_owned();
    match (argv.len(), argv.get(1).and_then(|a| a.to_str())) {
        (3, Some("monitor")) => Some(monitor::main(Path::new(&argv[2]))),
        (3, Some("exec")) => Some(exec::main(&s(2))),
        (5, Some("cp")) => Some(copy::main(&s(2), &s(3), &s(4))),
        _ => None,
    }
}

/// The helper to spawn from a process whose executable is `exe`: the lean
/// [`HELPER_BIN`] beside it, else `ketchd` itself (which an embedding
/// program finds beside its own executable).
fn helper_exe(exe: &Path) -> PathBuf {
    let lean = exe.with_file_name(HELPER_BIN);
    if lean.is_file() {
        lean
    } else if exe.file_name().is_some_and(|n| n == "ketchd") {
        exe.to_path_buf()
    } else {
        exe.with_file_name("ketchd")
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MonitorConfig {
    pub id: String,
    /// libcontainer's state directory (one subdirectory per container).
    pub state_root: PathBuf,
    pub bundle: PathBuf,
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub log: PathBuf,
    pub network: NetworkMode,
    #[serde(default)]
    pub attachments: Vec<net::Attachment>,
    pub stdin: bool,
    /// `-t`: the container's stdio is a pty, relayed by the monitor.
    #[serde(default)]
    pub tty: bool,
    pub cgroup_path: String,
    /// Made in the root if the image lacks it.
    pub workdir: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pids {
    pub monitor: i32,
    /// The monitor's start time, so a reused pid is not taken for it.
    pub monitor_start: u64,
    /// The container's init, as the host sees it.
    pub pid: i32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: i64,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub finished_at: DateTime<Utc>,
}

/// Can this host run Linux containers? Root, cgroups and overlayfs.
pub fn host_supports() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("ketchd is not running as root".into());
    }
    if !Path::new("/sys/fs/cgroup").is_dir() {
        return Err("no cgroup filesystem at /sys/fs/cgroup".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.lines().any(|l| l.trim_end().ends_with("overlay")) {
        return Err("the kernel has no overlayfs".into());
    }
    Ok(())
}

pub struct LinuxBackend {
    state_root: PathBuf,
    monitor_exe: PathBuf,
    /// ketchd's own `cgroup.procs`, for [`prime_cgroup_migration`].
    own_cgroup_procs: Option<PathBuf>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl LinuxBackend {
    pub fn new(state_root: &Path) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(state_root).map_err(io_err(state_root))?;
        let exe = std::env::current_exe().map_err(io_err(Path::new("/proc/self/exe")))?;
        Ok(LinuxBackend {
            state_root: state_root.to_path_buf(),
            monitor_exe: helper_exe(&exe),
            own_cgroup_procs: own_cgroup_procs(
                Path::new(CGROUP_ROOT),
                &std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(),
            ),
        })
    }

    fn write_host_files(p: &LinuxProgram) -> Result<(), RuntimeError> {
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let (hosts, resolv) = match p.network {
            NetworkMode::Host => (
                std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
                host_resolv,
            ),
            NetworkMode::None | NetworkMode::Bridge => (
                hosts_file(
                    &p.hostname,
                    p.attachments.first().map(|a| a.ip),
                    &p.peer_hosts,
                ),
                container_resolv(&host_resolv),
            ),
        };
        for (name, data) in [
            ("hosts", hosts),
            ("hostname", format!("{}\n", p.hostname)),
            ("resolv.conf", resolv),
        ] {
            let path = p.run_dir.join(name);
            std::fs::write(&path, data).map_err(io_err(&path))?;
        }
        Ok(())
    }

    /// Spawn the monitor and wait for its report.
    fn spawn_monitor(&self, run_dir: &Path, stdin: Option<OwnedFd>) -> Result<Pids, RuntimeError> {
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
        let mut out = child.stdout.take().expect("piped stdout");
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
            Err(_) => {
                let log = std::fs::read_to_string(&errlog).unwrap_or_default();
                Err(failed(format!(
                    "the monitor exited without a report: {}",
                    log.trim()
                )))
            }
        }
    }

    /// Remove what a container whose monitor was killed left behind: its
    /// processes, cgroup and libcontainer state.
    pub fn cleanup(&self, id: &str) {
        let dir = self.state_root.join(id);
        // The usual case, cheaply: the monitor removed everything.
        let cg = cgroup_path(id);
        let cgroup_left = ["pids", "memory", ""].iter().any(|ctl| {
            Path::new(CGROUP_ROOT)
                .join(ctl)
                .join(cg.trim_start_matches('/'))
                .exists()
        });
        if !cgroup_left && !dir.exists() {
            return;
        }
        if let Ok(mut c) = libcontainer::container::Container::load(dir.clone()) {
            if let Err(e) = c.delete(true) {
                tracing::warn!("cleaning up container {id}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(dir);
        // Without libcontainer's state, go by the cgroup itself.
        if let Err(e) = remove_cgroup(id) {
            tracing::warn!("cleaning up container {id}: {e}");
        }
    }

    /// The command that runs `req` inside its container (see [`exec`]).
    /// The helper joins the container's cgroup, so the migration lock is
    /// primed first, as for a start.
    pub fn exec_command(&self, req: &exec::ExecRequest) -> tokio::process::Command {
        if let Some(procs) = &self.own_cgroup_procs {
            prime_cgroup_migration(procs.clone());
        }
        let mut c = tokio::process::Command::new(&self.monitor_exe);
        c.arg("exec")
            .arg(serde_json::to_string(req).expect("serialises"))
            .kill_on_drop(false);
        c
    }

    /// The command that copies to or from a running container (see
    /// [`copy`]): `mode` is `stat`, `get` or `put`.
    /// `target` is the pid of a running container's process, or a
    /// [`copy::CopyRoot`] as JSON for a stopped one.
    pub fn copy_command(&self, mode: &str, target: &str, path: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.monitor_exe);
        c.arg("cp").arg(mode).arg(target).arg(path);
        c
    }

    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    /// Pick up a container whose monitor outlived a ketchd restart.
    pub fn reattach(
        &self,
        id: &str,
        run_dir: &Path,
        output: Arc<dyn OutputSink>,
        stop_signal: i32,
        ports: Vec<crate::runtime::PortMapping>,
        ip: Option<Ipv4Addr>,
    ) -> Reattached {
        if let Some(st) = read_exit(run_dir) {
            return Reattached::Exited(st.0, st.1);
        }
        let Some(pids) = std::fs::read(run_dir.join(PIDS_FILE))
            .ok()
            .and_then(|d| serde_json::from_slice::<Pids>(&d).ok())
        else {
            return Reattached::Lost;
        };
        let monitor = match sys::pidfd_open(pids.monitor) {
            Ok(fd) if sys::start_time(pids.monitor) == Some(pids.monitor_start) => fd,
            _ => {
                // It may have finished between the two reads.
                return match read_exit(run_dir) {
                    Some(st) => Reattached::Exited(st.0, st.1),
                    None => Reattached::Lost,
                };
            }
        };
        let init = sys::pidfd_open(pids.pid).ok();
        output.relay_from_end();
        // The published ports were ketchd's sockets: listen again.
        let bound = proxy::bind(id, ports).unwrap_or_else(|e| {
            tracing::warn!("container {id}: {e}");
            Vec::new()
        });
        let target = match ip {
            Some(ip) => proxy::Target::Addr(ip),
            None => proxy::Target::Netns(netns_of(&pids)),
        };
        let proxies = proxy::serve(
            bound,
            target,
            crate::accept::config().limits.max_port_connections,
        );
        Reattached::Running(self.started(
            id,
            run_dir,
            pids,
            Some(monitor),
            init,
            output,
            stop_signal,
            proxies,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn started(
        &self,
        id: &str,
        run_dir: &Path,
        pids: Pids,
        monitor: Option<OwnedFd>,
        init: Option<OwnedFd>,
        output: Arc<dyn OutputSink>,
        stop_signal: i32,
        proxies: Vec<tokio::task::JoinHandle<()>>,
    ) -> Started {
        let (tx, rx) = oneshot::channel();
        let control = Arc::new(LinuxControl {
            id: id.to_string(),
            pid: pids.pid,
            init,
            stop_signal,
        });
        let run_dir = run_dir.to_path_buf();
        tokio::spawn(async move {
            watch(run_dir, monitor, output, tx).await;
            for p in proxies {
                p.abort();
            }
        });
        Started {
            control,
            exit: rx,
            ports: Vec::new(),
        }
    }
}

/// Resize a running `-t` container's terminal (through its monitor).
pub fn resize(run_dir: &Path, rows: u16, cols: u16) -> std::io::Result<()> {
    use std::io::Write;
    let mut s = sys::connect_unix(&run_dir.join(monitor::RESIZE_SOCKET))?;
    s.write_all(format!("{rows} {cols}\n").as_bytes())
}

/// A container's `/etc/hosts`: loopback, its own name on its primary
/// address, and its peers.
pub fn hosts_file(
    hostname: &str,
    own: Option<Ipv4Addr>,
    peers: &[(Ipv4Addr, Vec<String>)],
) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    let own = own.map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string());
    s.push_str(&format!("{own}\t{hostname}\n"));
    for (ip, names) in peers {
        s.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    s
}

/// Rewrite a running container's `/etc/hosts` in place: it is bind
/// mounted, so the file (its inode) must stay the same.
pub fn rewrite_hosts(run_dir: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(run_dir.join("hosts"), content)
}

/// The host's resolver configuration without loopback nameservers, which
/// mean nothing inside another network namespace; Docker's public
/// fallback if none remain.
fn container_resolv(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for l in host.lines() {
        let mut f = l.split_whitespace();
        if f.next() == Some("nameserver") {
            match f.next().and_then(|a| a.parse::<std::net::IpAddr>().ok()) {
                Some(a) if a.is_loopback() => continue,
                Some(_) => servers += 1,
                None => continue,
            }
        }
        out.push_str(l);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

/// The network namespace of a running container, from its run dir.
pub fn netns_path(run_dir: &Path) -> Option<PathBuf> {
    let pids: Pids = serde_json::from_slice(&std::fs::read(run_dir.join(PIDS_FILE)).ok()?).ok()?;
    (sys::start_time(pids.monitor) == Some(pids.monitor_start)).then(|| netns_of(&pids))
}

/// The container's network namespace: its monitor's.
fn netns_of(pids: &Pids) -> PathBuf {
    PathBuf::from(format!("/proc/{}/ns/net", pids.monitor))
}

fn read_exit(run_dir: &Path) -> Option<(ExitStatus, DateTime<Utc>)> {
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
async fn watch(
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

impl Backend for LinuxBackend {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn start(&self, run: RunSpec) -> Result<Started, RuntimeError> {
        let Program::Linux(p) = &run.program else {
            return Err(RuntimeError::Unsupported(
                "a Wasm program in the Linux backend".into(),
            ));
        };
        if let Some(procs) = &self.own_cgroup_procs {
            prime_cgroup_migration(procs.clone());
        }
        // With the host's network the container's ports are the host's:
        // nothing to publish (Docker ignores -p there too).
        let bound = match p.network {
            NetworkMode::Host => Vec::new(),
            NetworkMode::None | NetworkMode::Bridge => proxy::bind(&run.name, run.ports.clone())?,
        };
        let _ = std::fs::remove_dir_all(&p.run_dir);
        // A leftover libcontainer state from an earlier run of the same id.
        let _ = std::fs::remove_dir_all(self.state_root.join(&p.id));
        let upper = p.fs_dir.join("upper");
        let work = p.fs_dir.join("work");
        let rootfs = p.run_dir.join("rootfs");
        let empty = p.fs_dir.join("empty");
        for d in [&upper, &work, &rootfs, &empty] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        Self::write_host_files(p)?;
        let spec = spec::build(&run, p, "rootfs")?;
        let cfg_path = p.run_dir.join("config.json");
        spec.save(&cfg_path)
            .map_err(|e| RuntimeError::Instantiate {
                name: run.name.clone(),
                reason: format!("writing {}: {e}", cfg_path.display()),
            })?;
        let lower = if p.layers.is_empty() {
            vec![empty]
        } else {
            p.layers.clone()
        };
        let mc = MonitorConfig {
            id: p.id.clone(),
            state_root: self.state_root.clone(),
            bundle: p.run_dir.clone(),
            lower,
            upper,
            work,
            log: p.log_path.clone(),
            network: p.network,
            attachments: p.attachments.clone(),
            stdin: run.stdin.is_some(),
            tty: p.tty,
            cgroup_path: p.cgroup_path(),
            workdir: run.workdir.clone(),
        };
        let mc_path = p.run_dir.join(MONITOR_FILE);
        // Not fsynced: it is read once, by the monitor spawned next.
        crate::fsutil::write_atomic_volatile(
            &mc_path,
            &serde_json::to_vec(&mc).expect("serialises"),
        )
        .map_err(io_err(&mc_path))?;
        let stdin_fd = match run.stdin {
            Some(mut src) => {
                let (r, w) = sys::pipe().map_err(io_err(&p.run_dir))?;
                let w =
                    tokio::net::unix::pipe::Sender::from_owned_fd(w).map_err(io_err(&p.run_dir))?;
                tokio::spawn(async move {
                    let mut w = w;
                    let _ = tokio::io::copy(&mut src, &mut w).await;
                });
                Some(r)
            }
            None => None,
        };
        run.output.relay_from_end();
        let pids = self
            .spawn_monitor(&p.run_dir, stdin_fd)
            .map_err(|e| match e {
                RuntimeError::Instantiate { reason, .. } => RuntimeError::Start {
                    name: run.name.clone(),
                    image: run.image.clone(),
                    reason,
                },
                e => e,
            })?;
        // Either may be gone already: a container that exits at once is
        // reaped by its monitor, which then records the exit and ends.
        let monitor = sys::pidfd_open(pids.monitor).ok();
        let init = sys::pidfd_open(pids.pid).ok();
        let ports = bound.iter().map(|(m, _)| *m).collect();
        let target = match p.attachments.first() {
            Some(a) => proxy::Target::Addr(a.ip),
            None => proxy::Target::Netns(netns_of(&pids)),
        };
        let proxies = proxy::serve(
            bound,
            target,
            crate::accept::config().limits.max_port_connections,
        );
        let mut started = self.started(
            &p.id,
            &p.run_dir,
            pids,
            monitor,
            init,
            run.output.clone(),
            p.stop_signal,
            proxies,
        );
        started.ports = ports;
        Ok(started)
    }
}

pub struct LinuxControl {
    id: String,
    pid: i32,
    /// `None` when the init had exited before ketchd could open it.
    init: Option<OwnedFd>,
    stop_signal: i32,
}

impl LinuxControl {
    fn cgroup(&self) -> Option<libcgroups::common::AnyCgroupManager> {
        libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
            cgroup_path: PathBuf::from(cgroup_path(&self.id)),
            systemd_cgroup: false,
            container_name: self.id.clone(),
        })
        .map_err(|e| tracing::warn!("cgroup of container {}: {e}", self.id))
        .ok()
    }

    fn freeze(&self, state: libcgroups::common::FreezerState) {
        use libcgroups::common::CgroupManager;
        if let Some(m) = self.cgroup() {
            if let Err(e) = m.freeze(state) {
                tracing::warn!("freezer of container {}: {e}", self.id);
            }
        }
    }
}

impl Control for LinuxControl {
    fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    fn terminate(&self) {
        self.signal(self.stop_signal);
    }

    fn signal(&self, sig: i32) -> bool {
        self.init
            .as_ref()
            .is_some_and(|fd| sys::pidfd_send_signal(fd.as_raw_fd(), sig).is_ok())
    }

    /// The cgroup's processes, the init first (it lives as long as the
    /// container; an exec'd process may be gone by the time it is used).
    fn pids(&self) -> Vec<i32> {
        use libcgroups::common::CgroupManager;
        let mut pids: Vec<i32> = self
            .cgroup()
            .and_then(|m| m.get_all_pids().ok())
            .map(|v| v.into_iter().map(|p| p.as_raw()).collect())
            .unwrap_or_default();
        pids.retain(|p| *p != self.pid);
        pids.insert(0, self.pid);
        pids
    }

    fn pause(&self) {
        self.freeze(libcgroups::common::FreezerState::Frozen);
    }

    fn resume(&self) {
        self.freeze(libcgroups::common::FreezerState::Thawed);
    }

    fn stats(&self) -> RuntimeStats {
        use libcgroups::common::CgroupManager;
        let Some(s) = self.cgroup().and_then(|m| m.stats().ok()) else {
            return RuntimeStats::default();
        };
        RuntimeStats {
            cpu_ns: s.cpu.usage.usage_total,
            memory_bytes: s.memory.memory.usage,
            memory_peak: s.memory.memory.max_usage,
            memory_limit: Some(s.memory.memory.limit).filter(|l| *l > 0 && *l < i64::MAX as u64),
            pids: Some(s.pids.current),
            http: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_are_removed_from_every_hierarchy_and_only_the_containers() {
        let root = tempfile::tempdir().unwrap();
        let mine = ["memory", "pids", "cpu,cpuacct", ""];
        for ctl in mine {
            std::fs::create_dir_all(root.path().join(ctl).join("ketch/c1")).unwrap();
            std::fs::create_dir_all(root.path().join(ctl).join("ketch/c2")).unwrap();
        }
        // A co-mounted hierarchy seen through its symlink as well.
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        remove_cgroup_under(root.path(), "c1").unwrap();
        for ctl in mine {
            let base = root.path().join(ctl).join("ketch");
            assert!(!base.join("c1").exists(), "{ctl}/ketch/c1 is left");
            assert!(base.join("c2").is_dir(), "{ctl}/ketch/c2 was removed");
        }
        // Nothing to remove is not an error.
        remove_cgroup_under(root.path(), "c1").unwrap();
    }

    #[test]
    fn own_cgroup_is_found_on_v1_and_v2() {
        let v1 = tempfile::tempdir().unwrap();
        for d in ["systemd/user.slice", "memory/box", "pids"] {
            std::fs::create_dir_all(v1.path().join(d)).unwrap();
            std::fs::write(v1.path().join(d).join("cgroup.procs"), "").unwrap();
        }
        let text = "9:pids:/\n4:memory:/box\n1:name=systemd:/user.slice\n0::/\n";
        assert_eq!(
            own_cgroup_procs(v1.path(), text),
            Some(v1.path().join("systemd/user.slice/cgroup.procs"))
        );
        assert_eq!(
            own_cgroup_procs(v1.path(), "9:pids:/\n4:memory:/box\n"),
            Some(v1.path().join("pids/cgroup.procs"))
        );
        let v2 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(v2.path().join("system.slice/ketchd.service")).unwrap();
        for d in ["", "system.slice/ketchd.service"] {
            std::fs::write(v2.path().join(d).join("cgroup.procs"), "").unwrap();
        }
        assert_eq!(
            own_cgroup_procs(v2.path(), "0::/system.slice/ketchd.service\n"),
            Some(v2.path().join("system.slice/ketchd.service/cgroup.procs"))
        );
        assert_eq!(own_cgroup_procs(v2.path(), ""), None);
    }
}
