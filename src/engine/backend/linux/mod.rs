//! The engine's side of Linux containers: turning a container record into
//! a [`LinuxProgram`] (unpacked layers, user, network, limits) and picking
//! containers up again after a ketchd restart.

mod build;
mod diff;
pub mod exec;
pub(crate) mod net;
mod user;

use super::{Backend, BoxFuture, Caps, Container, Engine, EngineError, Record};
use crate::api::types::{GraphDriver, HostConfig};
use crate::engine::networks::HostNet;
use crate::image::unpack::Snapshots;
use crate::image::Image;
use crate::model::{signal, Digest, Platform, RuntimeKind};
use crate::runtime::linux::devices::{self, Device, DeviceRule};
use crate::runtime::linux::{LinuxBackend, LinuxProgram, NetworkMode, NsMode};
use crate::runtime::{Backend as _, Program, Reattached, Started};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use user::resolve_user;

/// The Linux backend, or why this host can't have it.
pub(crate) struct LinuxAdapter {
    backend: Result<Arc<LinuxBackend>, Arc<Unavailable>>,
    snapshots: Arc<Snapshots>,
    /// (image id, in-image path) found not to be Wasm: a Linux program,
    /// so a warm create does not scan the image's layers again.
    entries: Mutex<HashMap<(Digest, String), Platform>>,
}

impl LinuxAdapter {
    /// An image's `GraphDriver` as Docker's overlay2 shows it: its top
    /// layer's directory as `UpperDir`, the others as `LowerDir`.
    pub fn image_graph_driver(&self, img: &Image) -> GraphDriver {
        let mut layers = snapshot_paths(&self.snapshots, img).unwrap_or_default();
        let mut data = std::collections::BTreeMap::new();
        if let Some(top) = layers.pop() {
            data.insert("UpperDir".to_string(), top.display().to_string());
        }
        if !layers.is_empty() {
            data.insert("LowerDir".to_string(), overlay_order(&layers));
        }
        GraphDriver {
            name: "overlay2".into(),
            data,
        }
    }

    pub fn open(root: &std::path::Path) -> Result<Self, EngineError> {
        let snapshots = Arc::new(Snapshots::open(
            &root.join("snapshots"),
            crate::confine::archive::Limits::daemon(),
        )?);
        let backend = crate::runtime::linux::host_supports()
            .map_err(Unavailable::Host)
            .and_then(|()| {
                LinuxBackend::new(&root.join("runtime"))
                    .map(Arc::new)
                    .map_err(Unavailable::Backend)
            })
            .map_err(Arc::new);
        if let Err(why) = &backend {
            tracing::info!("Linux containers are unavailable: {why}");
        }
        Ok(LinuxAdapter {
            backend,
            snapshots,
            entries: Mutex::new(HashMap::new()),
        })
    }

    pub fn backend(&self, image: &str) -> Result<Arc<LinuxBackend>, EngineError> {
        self.backend.clone().map_err(|why| {
            EngineError::InvalidArgument(format!(
                "image {image} is a Linux image, and this ketchd cannot run Linux containers: {why}"
            ))
        })
    }
}

/// Why Linux containers cannot run under this ketchd.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unavailable {
    #[error(transparent)]
    Host(crate::runtime::linux::HostUnsupported),
    #[error(transparent)]
    Backend(crate::runtime::RuntimeError),
}

/// The platform recorded for a Linux container.
fn platform(img: &Image) -> Platform {
    Platform::linux(&img.config.architecture().to_string())
}

/// How a container's network is made, from the networks it is on.
fn network_mode(rec: &Record) -> NetworkMode {
    if rec.networks.contains_key("host") {
        NetworkMode::Host
    } else if rec.networks.contains_key("none") || rec.networks.is_empty() {
        NetworkMode::None
    } else {
        NetworkMode::Bridge
    }
}

/// The container's hostname: its own choice, the host's with the host's
/// network, else its short id (as Docker's).
fn hostname(rec: &Record) -> String {
    match (&rec.config.hostname, network_mode(rec)) {
        (h, _) if !h.is_empty() => h.clone(),
        (_, NetworkMode::Host) => host_name(),
        _ => rec.id.as_str()[..12].to_string(),
    }
}

/// Check the Linux-only options of a create request.
fn validate(hc: &HostConfig) -> Result<(), EngineError> {
    for (field, set) in [
        ("CpusetCpus (--cpuset-cpus)", &hc.cpuset_cpus),
        ("CpusetMems (--cpuset-mems)", &hc.cpuset_mems),
    ] {
        let ok = set.split(',').all(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            matches!((a.parse::<u32>(), b.parse::<u32>()), (Ok(a), Ok(b)) if a <= b)
        });
        if !set.is_empty() && !ok {
            return Err(EngineError::InvalidArgument(format!(
                "invalid {field} {set:?}: give CPUs or nodes as 0-3 or 0,1"
            )));
        }
    }
    if let Some(s) = hc.memory_swappiness.filter(|s| *s != -1) {
        if !(0..=100).contains(&s) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid value: {s}, valid memory swappiness range is 0-100"
            )));
        }
    }
    for (field, mode, extra) in [
        ("PidMode (--pid)", &hc.pid_mode, &[][..]),
        (
            "IpcMode (--ipc)",
            &hc.ipc_mode,
            &["private", "shareable"][..],
        ),
        ("UTSMode (--uts)", &hc.uts_mode, &[][..]),
    ] {
        let ok = mode.is_empty()
            || mode == "host"
            || extra.contains(&mode.as_str())
            || mode
                .strip_prefix("container:")
                .is_some_and(|n| !n.is_empty());
        if !ok {
            return Err(EngineError::InvalidArgument(format!(
                "invalid {field} {mode:?}: give host or container:NAME"
            )));
        }
    }
    crate::runtime::linux::spec::capabilities(
        hc.cap_add.as_deref().unwrap_or_default(),
        hc.cap_drop.as_deref().unwrap_or_default(),
    )
    .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
    if hc.memory_swap > 0 && hc.memory_swap < hc.memory {
        return Err(EngineError::InvalidArgument(
            "minimum memoryswap limit should be larger than memory limit, see usage".into(),
        ));
    }
    if hc.memory_swap > 0 && hc.memory == 0 {
        return Err(EngineError::InvalidArgument(
            "you should always set the memory limit when using the memoryswap limit, see usage"
                .into(),
        ));
    }
    for dest in hc.tmpfs.iter().flatten().map(|(d, _)| d) {
        if !dest.starts_with('/') {
            return Err(EngineError::InvalidArgument(format!(
                "invalid tmpfs mount {dest:?}: the container path must be absolute"
            )));
        }
    }
    if !matches!(hc.cgroupns_mode.as_str(), "" | "host" | "private") {
        return Err(EngineError::InvalidArgument(format!(
            "invalid CgroupnsMode (--cgroupns) {:?}: give host or private",
            hc.cgroupns_mode
        )));
    }
    if hc.shm_size < 0 {
        return Err(EngineError::InvalidArgument(
            "HostConfig.ShmSize (--shm-size): SHM size can not be less than 0".into(),
        ));
    }
    devices(hc)?;
    device_rules(hc)?;
    init(hc)?;
    Ok(())
}

/// `HostConfig.Devices`: the host's nodes, read now.
fn devices(hc: &HostConfig) -> Result<Vec<Device>, EngineError> {
    let mut out = Vec::new();
    for m in hc.devices.iter().flatten() {
        let dest = if m.path_in_container.is_empty() {
            &m.path_on_host
        } else {
            &m.path_in_container
        };
        let access = if m.cgroup_permissions.is_empty() {
            "rwm"
        } else {
            &m.cgroup_permissions
        };
        let invalid = |e: String| EngineError::InvalidArgument(format!("HostConfig.Devices: {e}"));
        if !devices::valid_access(access) {
            return Err(invalid(format!("invalid device mode: {access}")));
        }
        if !dest.starts_with('/') {
            return Err(invalid(format!(
                "{dest:?}: the container path must be absolute"
            )));
        }
        out.extend(devices::host_devices(&m.path_on_host, dest, access).map_err(invalid)?);
    }
    Ok(out)
}

/// `HostConfig.DeviceCgroupRules`.
fn device_rules(hc: &HostConfig) -> Result<Vec<DeviceRule>, EngineError> {
    hc.device_cgroup_rules
        .iter()
        .flatten()
        .map(|r| {
            devices::parse_rule(r).map_err(|e| {
                EngineError::InvalidArgument(format!("HostConfig.DeviceCgroupRules: {e}"))
            })
        })
        .collect()
}

/// `HostConfig.Init`: the init binary, when asked for.
fn init(hc: &HostConfig) -> Result<Option<PathBuf>, EngineError> {
    if hc.init != Some(true) {
        return Ok(None);
    }
    devices::init_binary()
        .map(Some)
        .map_err(|e| EngineError::InvalidArgument(format!("HostConfig.Init (--init): {e}")))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Backend for LinuxAdapter {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Linux
    }

    fn caps(&self) -> Caps {
        let up = self.backend.is_ok();
        Caps {
            signals: up,
            processes: up,
            terminal: up,
            exec: up,
            networks: up,
        }
    }

    fn known(&self, image: &Digest, entry: &str) -> Option<Platform> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(image.clone(), entry.to_string()))
            .cloned()
    }

    /// Anything that is not Wasm is a Linux program; an entry the image
    /// does not hold is looked up on the container's PATH when it runs.
    fn prepare<'a>(
        &'a self,
        img: &'a Image,
        image_name: &'a str,
        entry: &'a str,
        _bytes: Option<Arc<[u8]>>,
    ) -> BoxFuture<'a, Result<Option<Platform>, EngineError>> {
        Box::pin(async move {
            self.backend(image_name)?;
            let p = platform(img);
            self.entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((img.id.clone(), entry.to_string()), p.clone());
            Ok(Some(p))
        })
    }

    fn validate(&self, hc: &HostConfig) -> Result<(), EngineError> {
        validate(hc)
    }

    fn start<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Arc<Container>,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<Started, EngineError>> {
        Box::pin(async move {
            let started = async {
                let (backend, program) = engine.linux_program(self, c, rec).await?;
                let spec = engine.run_spec(c, rec, Program::Linux(Box::new(program)))?;
                // Making the namespaces, the veth and the monitor blocks.
                tokio::task::spawn_blocking(move || backend.start(spec))
                    .await
                    .map_err(EngineError::task("starting the container"))?
                    .map_err(EngineError::from)
            }
            .await;
            if started.is_err() {
                engine.release_endpoints(c).await;
            }
            started
        })
    }

    /// Its peers on user networks learn its address, and it theirs.
    fn after_start(&self, engine: &Arc<Engine>, c: &Arc<Container>) {
        engine.refresh_hosts(&c.record(), Some(c));
    }

    /// Its peers forget its address.
    fn after_exit(&self, engine: &Arc<Engine>, rec: &Record) {
        if !rec.networks.is_empty() {
            engine.refresh_peers(rec);
        }
    }

    fn reattach(&self, _engine: &Engine, c: &Container, rec: &Record) -> Reattached {
        self.reattach(c, rec)
    }

    fn resize(&self, c: &Container, rows: u16, cols: u16) -> Result<(), EngineError> {
        crate::runtime::linux::resize(&c.dir().join("run"), rows, cols)
            .map_err(|e| EngineError::Conflict(e.to_string()))
    }

    /// Its own address and its peers' on its user networks.
    fn write_hosts(&self, engine: &Engine, c: &Container, rec: &Record) {
        if network_mode(rec) != NetworkMode::Bridge {
            return;
        }
        let own = rec
            .networks
            .get(crate::engine::networks::default_mode(
                &rec.host_config.network_mode,
            ))
            .and_then(|e| e.ip)
            .or_else(|| rec.networks.values().find_map(|e| e.ip));
        let content =
            crate::runtime::linux::hosts_file(&hostname(rec), own, &engine.peer_hosts(rec));
        if let Err(e) = crate::runtime::linux::rewrite_hosts(&c.dir().join("run"), &content) {
            tracing::warn!("/etc/hosts of container {}: {e}", rec.name);
        }
    }

    fn host_network(&self) -> Option<Arc<dyn HostNet>> {
        self.backend
            .is_ok()
            .then(|| Arc::new(net::LinuxNet) as Arc<dyn HostNet>)
    }

    /// The cgroup namespace Docker would give on this host.
    fn complete(&self, hc: &mut HostConfig) {
        if hc.cgroupns_mode.is_empty() {
            hc.cgroupns_mode = crate::runtime::linux::default_cgroupns().into();
        }
    }

    fn sandbox_key(&self, c: &Container) -> Option<PathBuf> {
        crate::runtime::linux::netns_path(&c.dir().join("run"))
    }

    /// Docker's overlay2 keys: the image's layers as overlayfs lists them
    /// (the topmost first), the container's upper and work directories,
    /// and its merged root. The overlay is mounted in the container's own
    /// mount namespace, so while it runs the host reaches that root as
    /// its init's `/proc/PID/root`; stopped, it is the empty mount point.
    fn graph_driver(&self, engine: &Engine, c: &Container, rec: &Record) -> GraphDriver {
        let fs = c.dir().join("fs");
        let merged = match c.control().and_then(|ctl| ctl.pids().first().copied()) {
            Some(pid) if rec.state.status().is_alive() => format!("/proc/{pid}/root"),
            _ => c.dir().join("run").join("rootfs").display().to_string(),
        };
        let mut lower = engine
            .layer_paths(&self.snapshots, rec.image_id.as_str())
            .unwrap_or_default();
        if lower.is_empty() {
            lower.push(fs.join("empty"));
        }
        let dirs = [
            ("LowerDir", overlay_order(&lower)),
            ("MergedDir", merged),
            ("UpperDir", fs.join("upper").display().to_string()),
            ("WorkDir", fs.join("work").display().to_string()),
        ];
        GraphDriver {
            name: "overlay2".into(),
            data: dirs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }

    fn exec<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        exec: &'a crate::engine::exec::Exec,
        c: &'a Container,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<crate::engine::exec::Spawned, EngineError>> {
        Box::pin(self.exec(engine, exec, c, rec))
    }

    fn copy<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Container,
        rec: &'a Record,
        mode: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, Result<tokio::process::Command, EngineError>> {
        Box::pin(self.copy(engine, c, rec, mode, path))
    }

    fn changes_tar<'a>(
        &'a self,
        c: &'a Container,
        _rec: &'a Record,
    ) -> BoxFuture<'a, Result<std::fs::File, EngineError>> {
        let dir = c.dir().to_path_buf();
        let upper = dir.join("fs").join("upper");
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                crate::image::unpack::diff_upper_file(&upper, &dir)
                    .map_err(|e| EngineError::InvalidArgument(format!("reading its changes: {e}")))
            })
            .await
            .map_err(EngineError::task("reading the container's changes"))?
        })
    }

    fn changes<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Container,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<Vec<crate::api::types::ContainerChange>, EngineError>> {
        Box::pin(self.changes(engine, c, rec))
    }

    /// A killed monitor's cgroup and runtime state.
    fn cleanup(&self, rec: &Record) {
        if let Ok(b) = &self.backend {
            b.cleanup(rec.id.as_str());
        }
    }
}

impl LinuxAdapter {
    /// The container's image's layers, unpacked (off the async runtime):
    /// its overlay's lower directories, the bottom one first.
    async fn lower_dirs(
        &self,
        engine: &Arc<Engine>,
        rec: &Record,
    ) -> Result<Vec<PathBuf>, EngineError> {
        let engine = engine.clone();
        let snapshots = self.snapshots.clone();
        let (image_id, name) = (rec.image_id.to_string(), rec.name.clone());
        let (_, lower) =
            tokio::task::spawn_blocking(move || engine.image_layers(&snapshots, &image_id, &name))
                .await
                .map_err(EngineError::task("unpacking the image"))??;
        Ok(lower)
    }

    /// `cp`: the helper command for a running Linux container's files.
    async fn copy(
        &self,
        engine: &Arc<Engine>,
        c: &Container,
        rec: &Record,
        mode: &str,
        path: &str,
    ) -> Result<tokio::process::Command, EngineError> {
        let backend = self.backend(&rec.image)?;
        let pid = c
            .control()
            .and_then(|ctl| ctl.pids().first().copied())
            .filter(|_| {
                matches!(
                    rec.state.status(),
                    crate::model::Status::Running | crate::model::Status::Paused
                )
            });
        if let Some(pid) = pid {
            return Ok(backend.copy_command(mode, &pid.to_string(), path));
        }
        // Created or stopped: the helper mounts its filesystem privately.
        if !matches!(
            rec.state.status(),
            crate::model::Status::Created | crate::model::Status::Exited
        ) {
            return Err(EngineError::Conflict(format!(
                "container {} is {}: cp needs it running, created or exited",
                rec.name,
                rec.state.status().as_str()
            )));
        }
        let lower = self.lower_dirs(engine, rec).await?;
        let fs = c.dir().join("fs");
        let root = crate::runtime::linux::copy::CopyRoot {
            lower,
            upper: fs.join("upper"),
            work: fs.join("work"),
            mountpoint: c.dir().join("run").join("rootfs"),
            empty: fs.join("empty"),
            binds: crate::engine::config::grants(&rec.host_config, engine.volumes())?
                .into_iter()
                .map(|g| crate::runtime::linux::copy::CopyBind {
                    host: g.host,
                    guest: g.guest,
                    read_only: g.read_only,
                })
                .collect(),
        };
        for d in [&root.upper, &root.work, &root.mountpoint, &root.empty] {
            std::fs::create_dir_all(d).map_err(EngineError::io(d))?;
        }
        let target = serde_json::to_string(&root).map_err(|e| EngineError::Io {
            path: "the cp helper's root".into(),
            source: std::io::Error::other(e),
        })?;
        Ok(backend.copy_command(mode, &target, path))
    }

    /// A container recorded as running when ketchd last stopped: still
    /// running under its monitor, exited meanwhile, or lost.
    fn reattach(&self, c: &Container, rec: &Record) -> Reattached {
        let Ok(backend) = &self.backend else {
            return Reattached::Lost;
        };
        let stop = rec
            .config
            .stop_signal
            .as_deref()
            .and_then(signal::number)
            .unwrap_or(libc::SIGTERM);
        let ports = crate::model::ports::from_api(
            &rec.state
                .ports()
                .iter()
                .map(|(k, v)| {
                    let list = v.iter().map(|b| (b.host_ip.clone(), b.host_port.clone()));
                    (k.clone(), list.collect())
                })
                .collect(),
            &[],
            false,
        )
        .unwrap_or_default();
        backend.reattach(
            rec.id.as_str(),
            &c.dir().join("run"),
            c.log.clone(),
            stop,
            ports,
            rec.networks.values().find_map(|e| e.ip),
        )
    }
}

impl Engine {
    /// Where the image's layers are unpacked, or will be, the bottom one
    /// first; nothing is unpacked for it.
    fn layer_paths(&self, snapshots: &Snapshots, image_id: &str) -> Option<Vec<PathBuf>> {
        snapshot_paths(snapshots, &self.images.resolve(image_id).ok()?)
    }

    /// A container's image and its unpacked layers, lowest first
    /// (unpacked now if they are not yet). Blocking.
    fn image_layers(
        &self,
        snapshots: &Snapshots,
        image_id: &str,
        container: &str,
    ) -> Result<(Image, Vec<std::path::PathBuf>), EngineError> {
        let img = self.images.resolve(image_id).map_err(|e| {
            EngineError::Conflict(format!("container {container}: its image is gone: {e}"))
        })?;
        let mut layers = Vec::new();
        for l in img.manifest.layers() {
            let d: Digest = crate::image::store::digest_of(l.digest())
                .map_err(crate::image::ImageError::from)?;
            layers.push(snapshots.ensure(&self.images, &d)?);
        }
        Ok((img, layers))
    }

    /// `--pid`/`--ipc`/`--uts` as the namespace to use: the container's
    /// own, the host's, or a running Linux container's (its init's).
    fn ns_mode(&self, rec: &Record, kind: &str, mode: &str) -> Result<NsMode, EngineError> {
        match mode {
            "" | "private" | "shareable" => Ok(NsMode::Private),
            "host" => Ok(NsMode::Host),
            other => {
                let name = other.strip_prefix("container:").unwrap_or("");
                let c = self.lookup(name)?;
                let pid = c
                    .control()
                    .and_then(|ctl| ctl.pids().first().copied())
                    .filter(|_| c.status().is_alive() && c.record().is(RuntimeKind::Linux))
                    .ok_or_else(|| {
                        EngineError::Conflict(format!(
                            "cannot join the {kind} namespace of container {name} for {}: it is not a running Linux container",
                            rec.name
                        ))
                    })?;
                Ok(NsMode::Join(PathBuf::from(format!(
                    "/proc/{pid}/ns/{kind}"
                ))))
            }
        }
    }

    /// Everything the Linux backend needs to run this container; unpacks
    /// the image's layers on first use.
    async fn linux_program(
        self: &Arc<Self>,
        linux: &LinuxAdapter,
        c: &Container,
        rec: &Record,
    ) -> Result<(Arc<LinuxBackend>, LinuxProgram), EngineError> {
        let backend = linux.backend(&rec.image)?;
        let snapshots = linux.snapshots.clone();
        let engine = self.clone();
        let image_id = rec.image_id.to_string();
        let user = rec.config.user.clone();
        let group_add = rec.host_config.group_add.clone().unwrap_or_default();
        let name = rec.name.clone();
        let (img, layers, ids) = tokio::task::spawn_blocking(move || {
            let (img, layers) = engine.image_layers(&snapshots, &image_id, &name)?;
            let ids = resolve_user(&engine, &img, &user, &group_add)?;
            Ok::<_, EngineError>((img, layers, ids))
        })
        .await
        .map_err(EngineError::task("unpacking the image"))??;
        let hc = &rec.host_config;
        let network = network_mode(rec);
        let hostname = hostname(rec);
        let attachments = if network == NetworkMode::Bridge {
            self.allocate_endpoints(c).await?
        } else {
            Vec::new()
        };
        let peer_hosts = self.peer_hosts(rec);
        let stop_signal = match rec.config.stop_signal.as_deref().or(img
            .config
            .config()
            .as_ref()
            .and_then(|c| c.stop_signal().as_deref()))
        {
            Some(s) if !s.is_empty() => signal::number(s).ok_or_else(|| {
                EngineError::InvalidArgument(format!("invalid stop signal {s:?}"))
            })?,
            _ => libc::SIGTERM,
        };
        let (uid, gid, additional_gids) = ids;
        Ok((
            backend,
            LinuxProgram {
                id: rec.id.to_string(),
                run_dir: c.dir().join("run"),
                fs_dir: c.dir().join("fs"),
                layers,
                log_path: c.log.path().to_path_buf(),
                log_rotation: c.log.rotation(),
                uid,
                gid,
                additional_gids,
                hostname,
                read_only: hc.readonly_rootfs,
                cap_add: hc.cap_add.clone().unwrap_or_default(),
                cap_drop: hc.cap_drop.clone().unwrap_or_default(),
                tmpfs: hc
                    .tmpfs
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                memory_swap: (hc.memory_swap != 0).then_some(hc.memory_swap),
                nano_cpus: hc.nano_cpus,
                cpu_shares: u64::try_from(hc.cpu_shares).ok().filter(|s| *s > 0),
                cpuset_cpus: hc.cpuset_cpus.clone(),
                cpuset_mems: hc.cpuset_mems.clone(),
                memory_swappiness: hc.memory_swappiness.and_then(|s| u64::try_from(s).ok()),
                pid_ns: self.ns_mode(rec, "pid", &hc.pid_mode)?,
                ipc_ns: self.ns_mode(rec, "ipc", &hc.ipc_mode)?,
                uts_ns: self.ns_mode(rec, "uts", &hc.uts_mode)?,
                private_cgroupns: hc.cgroupns_mode == "private",
                pids_limit: hc.pids_limit,
                network,
                attachments,
                peer_hosts,
                tty: rec.config.tty,
                devices: devices(hc)?,
                device_rules: device_rules(hc)?,
                init: init(hc)?,
                shm_size: if hc.shm_size > 0 {
                    hc.shm_size
                } else {
                    crate::api::types::DEFAULT_SHM_SIZE
                },
                stop_signal,
            },
        ))
    }
}

/// Where `img`'s layers are unpacked, or will be, the bottom one first.
fn snapshot_paths(snapshots: &Snapshots, img: &Image) -> Option<Vec<PathBuf>> {
    img.manifest
        .layers()
        .iter()
        .map(|l| {
            let d = crate::image::store::digest_of(l.digest()).ok()?;
            Some(snapshots.path(&d))
        })
        .collect()
}

/// Paths as overlayfs's `lowerdir` lists them: the topmost first.
fn overlay_order(dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().rev().map(|p| p.display().to_string()).collect();
    dirs.join(":")
}
