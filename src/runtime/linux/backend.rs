//! [`LinuxBackend`]'s lifecycle: starting a container (run dir, OCI spec,
//! monitor config, published ports), reattaching after a ketchd restart,
//! and cleaning up after a killed monitor.

use super::cgroup::{own_cgroup_procs, prime_cgroup_migration, CGROUP_ROOT};
use super::control::LinuxControl;
use super::supervise::{helper_exe, netns_of, read_exit, watch};
use super::{
    cgroup_path, exec, io_err, proxy, remove_cgroup, spec, sys, LinuxBackend, MonitorConfig,
    NetworkMode, Pids, MONITOR_FILE, PIDS_FILE,
};
use crate::runtime::{Backend, OutputSink, Program, Reattached, RunSpec, RuntimeError, Started};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

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
    pub fn exec_command(
        &self,
        req: &exec::ExecRequest,
    ) -> Result<tokio::process::Command, RuntimeError> {
        let req = serde_json::to_string(req).map_err(|e| RuntimeError::Io {
            path: "the exec request".into(),
            source: std::io::Error::other(e),
        })?;
        if let Some(procs) = &self.own_cgroup_procs {
            prime_cgroup_migration(procs.clone());
        }
        let mut c = tokio::process::Command::new(&self.monitor_exe);
        c.arg("exec").arg(req).kill_on_drop(false);
        Ok(c)
    }

    /// The command that copies to or from a running container (see
    /// [`copy`](super::copy)): `mode` is `stat`, `get` or `put`.
    /// `target` is the pid of a running container's process, or a
    /// [`CopyRoot`](super::copy::CopyRoot) as JSON for a stopped one.
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
            log_rotation: p.log_rotation,
            network: p.network,
            attachments: p.attachments.clone(),
            stdin: run.stdin.is_some(),
            tty: p.tty,
            cgroup_path: p.cgroup_path(),
            workdir: run.workdir.clone(),
        };
        let mc_path = p.run_dir.join(MONITOR_FILE);
        // Not fsynced: it is read once, by the monitor spawned next.
        let mc_json = serde_json::to_vec(&mc).map_err(|e| io_err(&mc_path)(e.into()))?;
        crate::fsutil::write_atomic_volatile(&mc_path, &mc_json).map_err(io_err(&mc_path))?;
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
                RuntimeError::CannotExec { code, reason, .. } => RuntimeError::CannotExec {
                    name: run.name.clone(),
                    code,
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
