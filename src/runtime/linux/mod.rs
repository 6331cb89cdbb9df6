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

mod backend;
mod cgroup;
mod control;
pub mod copy;
pub mod devices;
pub mod exec;
mod hostfiles;
pub mod monitor;
pub mod net;
mod proxy;
pub mod spec;
pub mod step;
mod supervise;
pub mod sys;

pub use cgroup::{cgroup_path, default_cgroupns, remove_cgroup};
pub use control::LinuxControl;
pub use hostfiles::{hosts_file, rewrite_hosts};
pub use supervise::{netns_path, resize};

use super::RuntimeError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Written by ketchd, read by the monitor.
pub const MONITOR_FILE: &str = "monitor.json";
/// Written by the monitor once the container runs.
pub const PIDS_FILE: &str = "pids.json";
/// Written by the monitor when the container has exited.
pub const EXIT_FILE: &str = "exit.json";

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

/// What a Linux container needs beyond the common [`RunSpec`](super::RunSpec).
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
    pub log_rotation: crate::runtime::logfile::Rotation,
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
    /// `--cpu-shares`: the relative weight (cgroup v1 shares; libcgroups
    /// converts it to a v2 weight).
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub memory_swappiness: Option<u64>,
    /// The pid, IPC and UTS namespaces: the container's own, the host's,
    /// or another container's.
    pub pid_ns: NsMode,
    pub ipc_ns: NsMode,
    pub uts_ns: NsMode,
    /// `--cgroupns private`: a cgroup namespace of its own.
    pub private_cgroupns: bool,
    pub pids_limit: Option<i64>,
    pub network: NetworkMode,
    /// Its interfaces on bridge networks, the primary one first.
    pub attachments: Vec<net::Attachment>,
    /// `/etc/hosts` entries for the peers on its user networks.
    pub peer_hosts: Vec<(Ipv4Addr, Vec<String>)>,
    /// `-t`: a pty for its stdio.
    pub tty: bool,
    /// `--device`: host devices made in its `/dev`.
    pub devices: Vec<devices::Device>,
    /// `--device-cgroup-rule`: more devices its cgroup allows.
    pub device_rules: Vec<devices::DeviceRule>,
    /// `--init`: the host's init binary, run as its pid 1.
    pub init: Option<PathBuf>,
    /// `/dev/shm`'s size in bytes.
    pub shm_size: i64,
    pub stop_signal: i32,
}

/// Whose namespace of a kind a container is in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum NsMode {
    /// Its own.
    #[default]
    Private,
    /// The host's (none made).
    Host,
    /// Another container's, joined by this path (`/proc/PID/ns/KIND`).
    Join(PathBuf),
}

impl LinuxProgram {
    pub fn cgroup_path(&self) -> String {
        cgroup_path(&self.id)
    }
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
    #[serde(default)]
    pub log_rotation: crate::runtime::logfile::Rotation,
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

/// Why this host cannot run Linux containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostUnsupported {
    #[error("ketchd is not running as root")]
    NotRoot,
    #[error("no cgroup filesystem at /sys/fs/cgroup")]
    NoCgroups,
    #[error("the kernel has no overlayfs")]
    NoOverlay,
}

/// Can this host run Linux containers? Root, cgroups and overlayfs.
pub fn host_supports() -> Result<(), HostUnsupported> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(HostUnsupported::NotRoot);
    }
    if !Path::new("/sys/fs/cgroup").is_dir() {
        return Err(HostUnsupported::NoCgroups);
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs.lines().any(|l| l.trim_end().ends_with("overlay")) {
        return Err(HostUnsupported::NoOverlay);
    }
    Ok(())
}

pub struct LinuxBackend {
    state_root: PathBuf,
    monitor_exe: PathBuf,
    /// ketchd's own `cgroup.procs`, for [`cgroup::prime_cgroup_migration`].
    own_cgroup_procs: Option<PathBuf>,
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.display().to_string(),
        source,
    }
}
