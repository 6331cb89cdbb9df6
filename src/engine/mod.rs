//! The engine: containers and their lifecycle (created -> running <->
//! paused -> exited -> removed), persisted state, restart policies, logs,
//! and the one place that decides which runtime backend runs an image.

pub mod error;
pub mod events;
#[cfg(all(feature = "linux", target_os = "linux"))]
pub mod exec;
#[cfg(all(feature = "linux", target_os = "linux"))]
mod linux;
pub mod logs;
pub mod networks;
pub mod record;
pub mod view;
pub mod volumes;

pub use error::EngineError;
pub use record::{Record, StateRecord};

use crate::api::types::{ContainerConfig, ContainerCreateRequest, HostConfig, PortBinding};
use crate::fsutil;
use crate::image::registry::{Registry, RegistryConfig};
use crate::image::{Image, ImageStore};
use crate::model::{
    ids, ports, ContainerId, Digest, HttpOptions, PortMapping, Proto, RestartPolicy, Status,
    TransitionError,
};
use crate::runtime::{
    Backend, Control, ExitStatus, Grant, Program, RunSpec, RuntimeStats, Started,
};
use chrono::Utc;
use logs::Log;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::sync::watch;

#[cfg(feature = "wasm")]
use crate::runtime::wasm::WasmBackend;

/// Is this a Linux container (rather than a Wasm one)?
pub(crate) fn is_linux_record(rec: &Record) -> bool {
    rec.platform.starts_with("linux/")
}

/// Suffix of a container directory being deleted.
const REMOVING_SUFFIX: &str = "removing";
/// A container being created: renamed to its id once its record is whole.
const CREATING_SUFFIX: &str = "creating";
/// Exit code recorded for a container that was running when ketchd went away.
pub const EXIT_DAEMON_GONE: i64 = 255;
/// Bytes buffered between an attached client's stdin and the guest.
const STDIN_BUFFER: usize = 64 * 1024;
const RESTART_BACKOFF_START: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run longer than this resets the restart backoff.
const RESTART_BACKOFF_RESET: Duration = Duration::from_secs(10);

/// One container in memory.
pub struct Container {
    pub id: ContainerId,
    dir: PathBuf,
    record: Mutex<Record>,
    pub log: Arc<Log>,
    control: Mutex<Option<Arc<dyn Control>>>,
    /// Host side of the guest's stdin (containers with `OpenStdin`). Made
    /// at create and after each exit, so a client may attach before start.
    stdin: Mutex<Option<DuplexStream>>,
    stdin_guest: Mutex<Option<DuplexStream>>,
    /// Counts exits; waiters watch it.
    exits: watch::Sender<u64>,
    removed: watch::Sender<bool>,
    /// Serialises lifecycle verbs on this container.
    op: tokio::sync::Mutex<()>,
}

impl Container {
    pub fn record(&self) -> Record {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Status {
        self.lock().state.status
    }

    pub fn name(&self) -> String {
        self.lock().name.clone()
    }

    /// Apply `f` to the record and persist it atomically.
    fn update(&self, f: impl FnOnce(&mut Record)) -> Result<Record, EngineError> {
        let mut g = self.lock();
        f(&mut g);
        let data = serde_json::to_vec_pretty(&*g).expect("record serialises");
        let path = self.dir.join("container.json");
        write_record(&path, &data, g.host_config.auto_remove)?;
        Ok(g.clone())
    }

    /// Apply `f` in memory only (for a container about to be removed).
    fn set(&self, f: impl FnOnce(&mut Record)) -> Record {
        let mut g = self.lock();
        f(&mut g);
        g.clone()
    }

    /// Take the host end of stdin (for an attached client).
    pub fn take_stdin(&self) -> Option<DuplexStream> {
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Give the host end back after a client detached without closing it.
    pub fn stdin_return(&self, w: DuplexStream) {
        let mut g = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none() {
            *g = Some(w);
        }
    }

    /// A new stdin pipe for the next run.
    fn fresh_stdin(&self) {
        let open = self.lock().config.open_stdin;
        let (host, guest) = if open {
            let (h, g) = tokio::io::duplex(STDIN_BUFFER);
            (Some(h), Some(g))
        } else {
            (None, None)
        };
        *self.stdin.lock().unwrap_or_else(|e| e.into_inner()) = host;
        *self.stdin_guest.lock().unwrap_or_else(|e| e.into_inner()) = guest;
    }

    fn transition_error(&self, verb: &str, e: TransitionError) -> EngineError {
        let name = self.name();
        match e {
            TransitionError::AlreadyRunning if verb == "start" => EngineError::NotModified(name),
            TransitionError::NotRunning if verb == "stop" => EngineError::NotModified(name),
            e => EngineError::Conflict(format!("cannot {verb} container {name}: {e}")),
        }
    }
}

#[derive(Default)]
struct Table {
    by_id: HashMap<ContainerId, Arc<Container>>,
    names: HashMap<String, ContainerId>,
}

pub struct Engine {
    root: PathBuf,
    pub images: Arc<ImageStore>,
    pub registry: Arc<Registry>,
    pub events: events::Events,
    pub volumes: volumes::Volumes,
    pub networks: networks::Networks,
    /// Held while an address is picked and recorded, so two starts
    /// cannot take the same one.
    #[cfg_attr(not(all(feature = "linux", target_os = "linux")), allow(dead_code))]
    ipam: Mutex<()>,
    containers: RwLock<Table>,
    #[cfg(feature = "wasm")]
    wasm: Arc<WasmBackend>,
    #[cfg(all(feature = "linux", target_os = "linux"))]
    linux: linux::Linux,
    /// (image id, in-image path) -> module digest, so a warm run does not
    /// read the image's layers again.
    modules: Mutex<HashMap<(Digest, String), Digest>>,
    /// (image id, in-image path) found not to be Wasm: a Linux program,
    /// so a warm create does not scan the image's layers again.
    #[cfg(all(feature = "linux", target_os = "linux"))]
    linux_entries: Mutex<std::collections::HashSet<(Digest, String)>>,
    #[cfg(all(feature = "linux", target_os = "linux"))]
    execs: Mutex<HashMap<String, Arc<exec::Exec>>>,
}

/// What `wait` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl Engine {
    /// Open the data root and reconcile: containers recorded as running
    /// that no longer run are marked exited, then restarted per policy.
    /// `wasm_memory` holds the Wasm guests to their caps and budget.
    pub async fn open(
        root: &Path,
        registry: RegistryConfig,
        #[cfg_attr(not(feature = "wasm"), allow(unused_variables))]
        wasm_memory: crate::runtime::memory::WasmMemory,
    ) -> Result<Arc<Self>, EngineError> {
        for d in ["containers", "image", "tmp", "wasm-cache"] {
            std::fs::create_dir_all(root.join(d)).map_err(EngineError::io(root.join(d)))?;
        }
        let tmp = root.join("tmp");
        if let Ok(rd) = std::fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let _ =
                    std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        let images = Arc::new(ImageStore::open(&root.join("image"))?);
        let registry = Arc::new(Registry::new(registry)?);
        #[cfg(feature = "wasm")]
        let wasm = Arc::new(WasmBackend::new(&root.join("wasm-cache"), wasm_memory)?);
        #[cfg(all(feature = "linux", target_os = "linux"))]
        let linux = linux::Linux::open(root)?;
        #[cfg(all(feature = "linux", target_os = "linux"))]
        let linux_networks = linux.backend.is_ok();
        #[cfg(not(all(feature = "linux", target_os = "linux")))]
        let linux_networks = false;
        let engine = Arc::new(Engine {
            root: root.to_path_buf(),
            images,
            registry,
            events: events::Events::default(),
            volumes: volumes::Volumes::open(&root.join("volumes"))?,
            networks: networks::Networks::open(&root.join("networks"), linux_networks)?,
            ipam: Mutex::new(()),
            containers: RwLock::new(Table::default()),
            #[cfg(feature = "wasm")]
            wasm,
            #[cfg(all(feature = "linux", target_os = "linux"))]
            linux,
            modules: Mutex::new(HashMap::new()),
            #[cfg(all(feature = "linux", target_os = "linux"))]
            linux_entries: Mutex::new(Default::default()),
            #[cfg(all(feature = "linux", target_os = "linux"))]
            execs: Mutex::new(HashMap::new()),
        });
        engine.reconcile().await?;
        Ok(engine)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    async fn reconcile(self: &Arc<Self>) -> Result<(), EngineError> {
        let dir = self.root.join("containers");
        let mut to_restart = Vec::new();
        for e in std::fs::read_dir(&dir)
            .map_err(EngineError::io(&dir))?
            .flatten()
        {
            if e.path()
                .extension()
                .is_some_and(|x| x == REMOVING_SUFFIX || x == CREATING_SUFFIX)
            {
                // A removal that ketchd did not finish deleting, or a
                // create it did not finish making.
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!("cannot delete {}: {err}", e.path().display());
                }
                continue;
            }
            let path = e.path().join("container.json");
            if e.path().is_dir() && !path.exists() {
                // Half made by an older ketchd that crashed mid-create:
                // nothing refers to it.
                tracing::warn!("removing {}: it has no record", e.path().display());
                let _ = std::fs::remove_dir_all(e.path());
                continue;
            }
            let rec: Record = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|d| serde_json::from_slice(&d).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(err) => {
                    tracing::warn!(
                        "ignoring unreadable container record {}: {err}",
                        path.display()
                    );
                    continue;
                }
            };
            let c = self.register(rec, e.path());
            let rec = c.record();
            let was_alive = matches!(
                rec.state.status,
                Status::Running | Status::Paused | Status::Restarting
            );
            if was_alive {
                #[allow(unused_mut)] // only the Linux backend revises it
                let mut exit = (
                    ExitStatus {
                        code: EXIT_DAEMON_GONE,
                        error: Some("ketchd stopped while the container was running".into()),
                        oom_killed: false,
                    },
                    Utc::now(),
                );
                #[cfg(all(feature = "linux", target_os = "linux"))]
                if linux::is_linux(&rec) {
                    use crate::runtime::linux::Reattached;
                    match self.reattach_linux(&c, &rec) {
                        Reattached::Running(started) => {
                            let at = rec.state.started_at.unwrap_or_else(Utc::now);
                            self.adopt(&c, started, at);
                            continue;
                        }
                        Reattached::Exited(status, at) => exit = (status, at),
                        Reattached::Lost => {
                            exit.0.error = Some("the container's monitor was killed".into());
                            self.cleanup_linux(&rec);
                        }
                    }
                }
                c.update(|r| {
                    r.state.status = Status::Exited;
                    r.state.ports.clear();
                    r.networks
                        .values_mut()
                        .for_each(networks::Endpoint::release);
                    r.state.exit_code = exit.0.code;
                    r.state.oom_killed = exit.0.oom_killed;
                    r.state.error = exit.0.error.clone().unwrap_or_default();
                    r.state.finished_at = Some(exit.1);
                })?;
            }
            // An --rm container that outlived its daemon is removed, as Docker does.
            if matches!(rec.state.status, Status::Removing) || rec.host_config.auto_remove {
                let _ = self.remove_now(&c);
                continue;
            }
            let rec = c.record();
            if rec.restart_policy().restart_on_daemon_start(
                rec.state.exit_code,
                was_alive,
                rec.state.manually_stopped,
            ) {
                to_restart.push(c);
            }
        }
        for c in to_restart {
            if let Err(e) = self.start_container(&c).await {
                tracing::warn!("cannot restart container {}: {e}", c.name());
            }
        }
        Ok(())
    }

    fn register(&self, rec: Record, dir: PathBuf) -> Arc<Container> {
        let (exits, _) = watch::channel(0);
        let (removed, _) = watch::channel(false);
        let c = Arc::new(Container {
            id: rec.id.clone(),
            log: Arc::new(Log::open(&dir.join(format!("{}-json.log", rec.id)))),
            dir,
            control: Mutex::new(None),
            stdin: Mutex::new(None),
            stdin_guest: Mutex::new(None),
            exits,
            removed,
            op: tokio::sync::Mutex::new(()),
            record: Mutex::new(rec.clone()),
        });
        c.fresh_stdin();
        let mut t = self.containers.write().unwrap_or_else(|e| e.into_inner());
        t.names.insert(rec.name.clone(), rec.id.clone());
        t.by_id.insert(rec.id.clone(), c.clone());
        c
    }

    /// Find a container by full id, name, or unique id prefix.
    pub fn lookup(&self, name: &str) -> Result<Arc<Container>, EngineError> {
        let t = self.containers.read().unwrap_or_else(|e| e.into_inner());
        let key = name.strip_prefix('/').unwrap_or(name);
        if let Some(id) = ContainerId::parse(key) {
            if let Some(c) = t.by_id.get(&id) {
                return Ok(c.clone());
            }
        }
        if let Some(id) = t.names.get(key) {
            if let Some(c) = t.by_id.get(id) {
                return Ok(c.clone());
            }
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hits: Vec<&Arc<Container>> = t
                .by_id
                .values()
                .filter(|c| c.id.as_str().starts_with(key))
                .collect();
            match hits.len() {
                1 => return Ok(hits[0].clone()),
                0 => {}
                _ => {
                    return Err(EngineError::InvalidArgument(format!(
                        "multiple containers match the id prefix {key}"
                    )))
                }
            }
        }
        Err(EngineError::no_such_container(name))
    }

    pub fn list(&self) -> Vec<Arc<Container>> {
        let t = self.containers.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = t.by_id.values().cloned().collect();
        v.sort_by_key(|c| std::cmp::Reverse(c.record().created));
        v
    }

    /// `POST /containers/create`.
    pub async fn create(
        self: &Arc<Self>,
        name: Option<&str>,
        req: ContainerCreateRequest,
    ) -> Result<Record, EngineError> {
        let mut host_config = req.host_config.unwrap_or_default();
        self.prepare_volumes(&mut host_config)?;
        validate_host_config(&host_config, &self.volumes)?;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n);
                if !ids::valid_container_name(n) {
                    return Err(EngineError::InvalidArgument(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.to_string()
            }
            None => self.unused_name(),
        };
        if req.config.image.is_empty() {
            return Err(EngineError::InvalidArgument(
                "no image given in the create request".into(),
            ));
        }
        let images = self.images.clone();
        let image_name = req.config.image.clone();
        let img = tokio::task::spawn_blocking(move || images.resolve(&image_name))
            .await
            .expect("resolve task")?;
        let config = merge_config(&img, req.config);
        let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
        argv.extend(config.cmd.clone().unwrap_or_default());
        if argv.is_empty() || argv[0].is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "no command specified: image {} has no ENTRYPOINT or CMD and none was given",
                config.image
            )));
        }
        let platform = self
            .prepare_program(&img, &argv[0], &config.working_dir)
            .await?;
        #[allow(unused_mut)] // only Linux containers have networks
        let mut endpoints = BTreeMap::new();
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if platform.starts_with("linux/") {
            linux::validate(&host_config)?;
            endpoints =
                self.initial_endpoints(&host_config.network_mode, req.networking_config.as_ref())?;
            // Recorded by name, however the request named it.
            if let Some(name) = endpoints.keys().next() {
                host_config.network_mode = name.clone();
            }
        }
        let mappings = port_mappings(&config, &host_config)?;
        if !mappings.is_empty() && !self.serves_ports(&img.id, &argv[0], &config.working_dir) {
            return Err(EngineError::InvalidArgument(format!(
                "image {}: cannot publish ports: the program is a Wasm command with no sockets; only wasi:http components (functions) serve ports",
                config.image
            )));
        }
        let id = ContainerId::random();
        let rec = Record {
            id: id.clone(),
            name: name.clone(),
            created: Utc::now(),
            image: config.image.clone(),
            image_id: img.id.clone(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config,
            host_config,
            platform,
            state: StateRecord::default(),
            networks: endpoints,
        };
        let dir = self.root.join("containers").join(id.as_str());
        {
            // Reserve the name and write the record under the table lock so two
            // creates of one name cannot both succeed.
            let mut t = self.containers.write().unwrap_or_else(|e| e.into_inner());
            if let Some(other) = t.names.get(&name) {
                return Err(EngineError::Conflict(format!(
                    "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
                )));
            }
            t.names.insert(name.clone(), id.clone());
            drop(t);
            // Made under a staging name and renamed into place once its
            // record is written: a crash never leaves a half-made container.
            let staging = dir.with_extension(CREATING_SUFFIX);
            let write = std::fs::create_dir_all(&staging)
                .map_err(EngineError::io(&staging))
                .and_then(|()| {
                    write_record(
                        &staging.join("container.json"),
                        &serde_json::to_vec_pretty(&rec).expect("record serialises"),
                        rec.host_config.auto_remove,
                    )
                })
                .and_then(|()| std::fs::rename(&staging, &dir).map_err(EngineError::io(&dir)))
                .and_then(|()| {
                    if rec.host_config.auto_remove {
                        return Ok(());
                    }
                    let parent = self.root.join("containers");
                    crate::fsutil::sync_dir(&parent).map_err(EngineError::io(parent))
                });
            if let Err(e) = write {
                let _ = std::fs::remove_dir_all(&staging);
                let _ = std::fs::remove_dir_all(&dir);
                self.containers
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .names
                    .remove(&name);
                return Err(e);
            }
        }
        self.register(rec.clone(), dir);
        self.event(&rec, "create", &[]);
        Ok(rec)
    }

    /// Make the volumes a create request names (as Docker does), and give
    /// `-v /path` an anonymous one, recorded by name in its binds.
    fn prepare_volumes(&self, hc: &mut HostConfig) -> Result<(), EngineError> {
        let ensure = |name: Option<&str>| -> Result<String, EngineError> {
            let existed = name.is_some_and(|n| self.volumes.get(n).is_ok());
            let v = self.volumes.create(name, BTreeMap::new(), name.is_none())?;
            if !existed {
                self.events
                    .emit("volume", "create", &v.name, &[("driver", "local")]);
            }
            Ok(v.name)
        };
        for b in hc.binds.iter_mut().flatten() {
            let parts: Vec<&str> = b.split(':').collect();
            match parts.as_slice() {
                [guest] if guest.starts_with('/') => {
                    let name = ensure(None)?;
                    *b = format!("{name}:{guest}");
                }
                [src, ..] => {
                    if let Some(n) = volumes::named(src) {
                        ensure(Some(n))?;
                    }
                }
                [] => {}
            }
        }
        for m in hc.mounts.iter_mut().flatten() {
            if m.kind == "volume" {
                m.source = ensure(
                    Some(&m.source)
                        .filter(|s| !s.is_empty())
                        .map(|s| s.as_str()),
                )?;
            }
        }
        Ok(())
    }

    fn unused_name(&self) -> String {
        let t = self.containers.read().unwrap_or_else(|e| e.into_inner());
        loop {
            let n = ids::random_name();
            if !t.names.contains_key(&n) {
                return n;
            }
            let n2 = format!("{n}_{}", rand::random::<u16>());
            if !t.names.contains_key(&n2) {
                return n2;
            }
        }
    }

    /// Decide the backend for an image and make its program ready.
    /// Returns the platform string to record.
    async fn prepare_program(
        &self,
        img: &Image,
        entry: &str,
        workdir: &str,
    ) -> Result<String, EngineError> {
        let path = entry_path(entry, workdir);
        let known = self.known_module(&img.id, &path);
        #[cfg(feature = "wasm")]
        if let Some(d) = &known {
            if self.wasm.is_prepared(d) {
                return Ok("wasi/wasm".into());
            }
        }
        let _ = known;
        #[cfg_attr(
            not(all(feature = "linux", target_os = "linux")),
            allow(unused_variables)
        )]
        let key = (img.id.clone(), path.clone());
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if self
            .linux_entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(linux::platform(img));
        }
        let images = self.images.clone();
        let manifest = img.manifest.clone();
        let p = path.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            crate::image::layer::read_image_file(&images, &manifest, &p)
        })
        .await
        .expect("read task")?;
        let image_name = img
            .refs
            .first()
            .map(|r| r.familiar())
            .unwrap_or_else(|| img.id.to_string());
        let Some(bytes) = bytes else {
            if img.is_wasi_platform() {
                return Err(EngineError::InvalidArgument(format!(
                    "image {image_name}: entrypoint {path} not found in the image"
                )));
            }
            // A Linux container looks its command up on its PATH.
            #[cfg(all(feature = "linux", target_os = "linux"))]
            {
                return self.linux_entry(img, &image_name, key);
            }
            #[allow(unreachable_code)]
            return Err(EngineError::InvalidArgument(format!("image {image_name}: entrypoint {path} not found in the image, and this ketchd has no Linux container backend to look it up on a PATH")));
        };
        #[cfg(feature = "wasm")]
        if img.is_wasi_platform() || crate::runtime::wasm::is_wasm(&bytes) {
            let digest = Digest::of(&bytes);
            let wasm = self.wasm.clone();
            let (d, name) = (digest.clone(), format!("{path} in image {image_name}"));
            tokio::task::spawn_blocking(move || wasm.prepare(&name, &d, &bytes))
                .await
                .expect("compile task")
                .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
            self.modules
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((img.id.clone(), path.clone()), digest);
            return Ok("wasi/wasm".into());
        }
        let _ = bytes;
        #[cfg(all(feature = "linux", target_os = "linux"))]
        {
            return self.linux_entry(img, &image_name, key);
        }
        #[allow(unreachable_code)]
        Err(self.no_backend(&image_name))
    }

    /// The module digest prepared for (image, entrypoint path), if any.
    fn known_module(&self, image_id: &Digest, path: &str) -> Option<Digest> {
        self.modules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(image_id.clone(), path.to_string()))
            .cloned()
    }

    /// Can this program serve published ports? Wasm commands cannot: they
    /// have no sockets. Functions (wasi:http components) can.
    fn serves_ports(&self, image_id: &Digest, entry: &str, workdir: &str) -> bool {
        #[cfg(feature = "wasm")]
        {
            if let Some(m) = self.known_module(image_id, &entry_path(entry, workdir)) {
                return self.wasm.is_function(&m);
            }
        }
        let _ = (image_id, entry, workdir);
        true
    }

    fn no_backend(&self, image: &str) -> EngineError {
        EngineError::InvalidArgument(format!(
            "image {image} is not a Wasm image, and this ketchd has no Linux container backend"
        ))
    }

    fn backend_for(&self, rec: &Record) -> Result<(Arc<dyn Backend>, Program), EngineError> {
        #[cfg(feature = "wasm")]
        if rec.platform == "wasi/wasm" {
            let path = entry_path(&rec.path, &rec.config.working_dir);
            let module = self.known_module(&rec.image_id, &path);
            if let Some(module) = module.filter(|m| self.wasm.is_prepared(m)) {
                return Ok((self.wasm.clone(), Program::Wasm { module }));
            }
            return Err(EngineError::InvalidArgument(format!(
                "container {}: its module is not prepared",
                rec.name
            )));
        }
        Err(self.no_backend(&rec.image))
    }

    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        c.status()
            .can_start()
            .map_err(|e| c.transition_error("start", e))?;
        self.start_container(&c).await
    }

    #[allow(clippy::manual_async_fn)] // the explicit `+ Send` breaks the future cycle
    fn start_container_owned(
        self: Arc<Self>,
        c: Arc<Container>,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> + Send {
        async move { self.start_container(&c).await }
    }

    /// Start without the op lock (callers hold it, or are the restart loop).
    async fn start_container(self: &Arc<Self>, c: &Arc<Container>) -> Result<(), EngineError> {
        let rec = c.record();
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if linux::is_linux(&rec) {
            let started = async {
                let (backend, program) = self.linux_program(c, &rec).await?;
                let spec = self.run_spec(c, &rec, Program::Linux(Box::new(program)))?;
                Ok::<_, EngineError>(tokio::task::block_in_place(|| backend.start(spec))?)
            }
            .await;
            let started = match started {
                Ok(s) => s,
                Err(e) => {
                    self.release_endpoints(c);
                    return Err(e);
                }
            };
            self.started(c, started)?;
            // Its peers on user networks learn its address.
            self.refresh_peers(&c.record());
            return Ok(());
        }
        // Warm path: the module is hot. After a daemon restart it is not:
        // prepare it again from the image (or the on-disk compile cache).
        let (backend, program) = match self.backend_for(&rec) {
            Ok(found) => found,
            Err(_) => {
                let images = self.images.clone();
                let image_id = rec.image_id.to_string();
                let img = tokio::task::spawn_blocking(move || images.resolve(&image_id))
                    .await
                    .expect("resolve task")
                    .map_err(|e| {
                        EngineError::Conflict(format!(
                            "cannot start container {}: its image is gone: {e}",
                            rec.name
                        ))
                    })?;
                self.prepare_program(&img, &rec.path, &rec.config.working_dir)
                    .await?;
                self.backend_for(&rec)?
            }
        };
        let spec = self.run_spec(c, &rec, program)?;
        let started = backend.start(spec)?;
        self.started(c, started)
    }

    fn run_spec(
        &self,
        c: &Container,
        rec: &Record,
        program: Program,
    ) -> Result<RunSpec, EngineError> {
        let stdin = if rec.config.open_stdin {
            let guest = c
                .stdin_guest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            let guest = match guest {
                Some(g) => g,
                None => {
                    c.fresh_stdin();
                    c.stdin_guest
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .expect("fresh stdin")
                }
            };
            Some(Box::pin(guest) as crate::runtime::Stdin)
        } else {
            None
        };
        Ok(RunSpec {
            name: rec.name.clone(),
            image: rec.image.clone(),
            program,
            argv: rec.argv(),
            env: parse_env(rec.config.env.as_deref().unwrap_or_default()),
            workdir: rec.config.working_dir.clone(),
            grants: grants(&rec.host_config, &self.volumes)?,
            memory_limit: (rec.host_config.memory > 0).then_some(rec.host_config.memory as u64),
            stdin,
            output: c.log.clone(),
            ports: port_mappings(&rec.config, &rec.host_config)?,
            exposed: exposed_ports(&rec.config)?,
            http: http_options(&rec.host_config)?,
        })
    }

    /// Record a container as running and watch for its exit.
    fn started(self: &Arc<Self>, c: &Arc<Container>, started: Started) -> Result<(), EngineError> {
        let started_at = Utc::now();
        let mut published: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
        for m in &started.ports {
            published.entry(m.key()).or_default().push(PortBinding {
                host_ip: m.host_ip.to_string(),
                host_port: m.host_port.to_string(),
            });
        }
        let rec = c.update(|r| {
            r.state.ports = published;
            r.state.status = Status::Running;
            r.state.manually_stopped = false;
            r.state.started_at = Some(started_at);
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.oom_killed = false;
        })?;
        self.event(&rec, "start", &[]);
        self.adopt(c, started, started_at);
        Ok(())
    }

    /// Take control of a started instance and handle its exit.
    fn adopt(
        self: &Arc<Self>,
        c: &Arc<Container>,
        started: Started,
        started_at: chrono::DateTime<Utc>,
    ) {
        *c.control.lock().unwrap_or_else(|e| e.into_inner()) = Some(started.control.clone());
        let engine = self.clone();
        let c2 = c.clone();
        tokio::spawn(async move {
            let status = started.exit.await.unwrap_or(ExitStatus {
                code: crate::runtime::EXIT_KILLED,
                error: Some("instance task vanished".into()),
                oom_killed: false,
            });
            engine.on_exit(&c2, status, started_at).await;
        });
    }

    async fn on_exit(
        self: &Arc<Self>,
        c: &Arc<Container>,
        status: ExitStatus,
        started_at: chrono::DateTime<Utc>,
    ) {
        *c.control.lock().unwrap_or_else(|e| e.into_inner()) = None;
        c.fresh_stdin();
        #[cfg(all(feature = "linux", target_os = "linux"))]
        self.release_endpoints(c);
        if let Some(err) = &status.error {
            use crate::runtime::OutputSink;
            c.log.write(
                crate::api::stream::StdStream::Stderr,
                format!("{err}\n").as_bytes(),
            );
        }
        let exited = |r: &mut Record| {
            r.state.ports.clear();
            r.state.status = Status::Exited;
            r.state.exit_code = status.code;
            r.state.error = status.error.clone().unwrap_or_default();
            r.state.oom_killed = status.oom_killed;
            r.state.finished_at = Some(Utc::now());
        };
        // A container about to be auto-removed need not persist its exit.
        let rec = if c.lock().host_config.auto_remove {
            c.set(exited)
        } else {
            c.update(exited).unwrap_or_else(|e| {
                tracing::error!("cannot record exit of container {}: {e}", c.name());
                c.record()
            })
        };
        c.log.exit();
        let code = status.code.to_string();
        self.event(&rec, "die", &[("exitCode", &code)]);
        c.exits.send_modify(|n| *n += 1);
        if rec.host_config.auto_remove {
            if let Err(e) = self.remove_now(c) {
                tracing::warn!("cannot auto-remove container {}: {e}", rec.name);
            }
            return;
        }
        let policy = rec.restart_policy();
        if !policy.should_restart(
            status.code,
            rec.state.restart_count,
            rec.state.manually_stopped,
        ) {
            return;
        }
        let ran = (Utc::now() - started_at).to_std().unwrap_or_default();
        let n = if ran > RESTART_BACKOFF_RESET {
            0
        } else {
            rec.state.restart_count.min(16)
        };
        let delay = (RESTART_BACKOFF_START * 2u32.pow(n)).min(RESTART_BACKOFF_MAX);
        if c.update(|r| r.state.status = Status::Restarting).is_err() {
            return;
        }
        let engine = self.clone();
        let c = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _op = c.op.lock().await;
            if c.status() != Status::Restarting || *c.removed.borrow() {
                return;
            }
            let _ = c.update(|r| r.state.restart_count += 1);
            // Boxed: start -> exit -> restart -> start is a cycle of futures.
            let restart: std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<(), EngineError>> + Send>,
            > = Box::pin(engine.start_container_owned(c.clone()));
            if let Err(e) = restart.await {
                tracing::warn!("restart of container {} failed: {e}", c.name());
                let _ = c.update(|r| {
                    r.state.status = Status::Exited;
                    r.state.error = e.to_string();
                });
            }
        });
    }

    fn control(&self, c: &Container) -> Option<Arc<dyn Control>> {
        c.control.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wait until the exit counter moves past `seen`, up to `timeout`.
    async fn wait_exit_after(c: &Container, seen: u64, timeout: Option<Duration>) -> bool {
        let mut rx = c.exits.subscribe();
        let fut = rx.wait_for(|n| *n > seen);
        match timeout {
            Some(t) => matches!(tokio::time::timeout(t, fut).await, Ok(Ok(_))),
            None => fut.await.is_ok(),
        }
    }

    /// `POST /containers/{id}/stop`: close stdin, wait `timeout`, then kill.
    /// A Wasm guest has no signals; stdin EOF is its cue to finish.
    pub async fn stop(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
    ) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        self.stop_locked(&c, timeout).await
    }

    async fn stop_locked(
        &self,
        c: &Arc<Container>,
        timeout: Option<i64>,
    ) -> Result<(), EngineError> {
        let rec = c.record();
        rec.state
            .status
            .can_stop()
            .map_err(|e| c.transition_error("stop", e))?;
        c.update(|r| r.state.manually_stopped = true)?;
        if rec.state.status == Status::Restarting {
            c.update(|r| r.state.status = Status::Exited)?;
            return Ok(());
        }
        let seen = *c.exits.borrow();
        let secs = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        if let Some(ctl) = self.control(c) {
            self.event(&rec, "kill", &[("signal", "15")]);
            ctl.resume();
            drop(c.take_stdin());
            ctl.terminate();
            let drained = secs != 0
                && Self::wait_exit_after(c, seen, Some(Duration::from_secs(secs.max(0) as u64)))
                    .await;
            if !drained {
                self.event(&rec, "kill", &[("signal", "9")]);
                ctl.kill();
                Self::wait_exit_after(c, seen, None).await;
            }
        }
        self.event(&rec, "stop", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(
        self: &Arc<Self>,
        name: &str,
        signal: Option<&str>,
    ) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let sig_name = signal.filter(|s| !s.is_empty()).unwrap_or("KILL");
        let signo = crate::model::signal::number(sig_name)
            .ok_or_else(|| EngineError::InvalidArgument(format!("invalid signal: {sig_name}")))?;
        // A Linux container takes any signal; a Wasm guest has none, so
        // the ones that end a process end it.
        let deliver = c.record().platform.starts_with("linux/") && signo != libc::SIGKILL;
        if !deliver && ![libc::SIGKILL, libc::SIGTERM, libc::SIGINT].contains(&signo) {
            return Err(EngineError::InvalidArgument(format!("signal {sig_name} cannot be delivered to a Wasm container: only KILL, TERM and INT end it")));
        }
        let status = c.status();
        status
            .can_kill()
            .map_err(|e| c.transition_error("kill", e))?;
        c.update(|r| r.state.manually_stopped = true)?;
        if status == Status::Restarting {
            c.update(|r| r.state.status = Status::Exited)?;
            return Ok(());
        }
        let seen = *c.exits.borrow();
        if let Some(ctl) = self.control(&c) {
            self.event(&c.record(), "kill", &[("signal", &signo.to_string())]);
            if deliver {
                // Docker does not wait for the container to act on it.
                ctl.signal(signo);
                return Ok(());
            }
            ctl.kill();
            Self::wait_exit_after(&c, seen, Some(Duration::from_secs(10))).await;
        }
        Ok(())
    }

    pub async fn pause(self: &Arc<Self>, name: &str) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        c.status()
            .can_pause()
            .map_err(|e| c.transition_error("pause", e))?;
        let ctl = self
            .control(&c)
            .ok_or_else(|| c.transition_error("pause", TransitionError::NotRunning))?;
        ctl.pause();
        let rec = c.update(|r| r.state.status = Status::Paused)?;
        self.event(&rec, "pause", &[]);
        Ok(())
    }

    pub async fn unpause(self: &Arc<Self>, name: &str) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        c.status()
            .can_unpause()
            .map_err(|e| c.transition_error("unpause", e))?;
        if let Some(ctl) = self.control(&c) {
            ctl.resume();
        }
        let rec = c.update(|r| {
            if r.state.status == Status::Paused {
                r.state.status = Status::Running;
            }
        })?;
        self.event(&rec, "unpause", &[]);
        Ok(())
    }

    pub async fn restart(
        self: &Arc<Self>,
        name: &str,
        timeout: Option<i64>,
    ) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        if c.status().can_stop().is_ok() {
            self.stop_locked(&c, timeout).await?;
        }
        c.status()
            .can_start()
            .map_err(|e| c.transition_error("restart", e))?;
        self.start_container(&c).await?;
        self.event(&c.record(), "restart", &[]);
        Ok(())
    }

    /// `DELETE /containers/{id}`.
    pub async fn remove(self: &Arc<Self>, name: &str, force: bool) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let _op = c.op.lock().await;
        let status = c.status();
        status
            .can_remove(force)
            .map_err(|e| c.transition_error("remove", e))?;
        if status.is_alive() || status == Status::Restarting {
            c.update(|r| {
                r.state.manually_stopped = true;
                // Suppress auto-remove racing with this removal.
                r.host_config.auto_remove = false;
            })?;
            let seen = *c.exits.borrow();
            if let Some(ctl) = self.control(&c) {
                ctl.kill();
                Self::wait_exit_after(&c, seen, Some(Duration::from_secs(10))).await;
            }
        }
        self.remove_now(&c)
    }

    fn remove_now(&self, c: &Arc<Container>) -> Result<(), EngineError> {
        let rec = c.set(|r| r.state.status = Status::Removing);
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if linux::is_linux(&rec) {
            self.cleanup_linux(&rec);
            self.execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, e| e.container != rec.id);
        }
        let _ = rec;
        // Rename first (atomic): a crash mid-delete leaves a tombstone that
        // the next start deletes, never a half-removed container.
        let tomb = c.dir.with_extension(REMOVING_SUFFIX);
        std::fs::rename(&c.dir, &tomb).map_err(EngineError::io(&c.dir))?;
        // From here the container is gone; its files need not delay the
        // answer (`run --rm` waits for it).
        let delete = move || {
            if let Err(e) = std::fs::remove_dir_all(&tomb) {
                tracing::warn!(
                    "cannot delete {}: {e}; it goes at the next start",
                    tomb.display()
                );
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(delete)),
            Err(_) => delete(),
        }
        let mut t = self.containers.write().unwrap_or_else(|e| e.into_inner());
        t.by_id.remove(&c.id);
        let name = c.name();
        if t.names.get(&name) == Some(&c.id) {
            t.names.remove(&name);
        }
        drop(t);
        self.event(&c.record(), "destroy", &[]);
        c.removed.send_replace(true);
        Ok(())
    }

    /// `POST /containers/{id}/resize`: a running `-t` Linux container's
    /// terminal size (anything else has no terminal to size).
    pub fn resize(&self, name: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let c = self.lookup(name)?;
        let rec = c.record();
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if is_linux_record(&rec) && rec.config.tty && rec.state.status.is_alive() {
            crate::runtime::linux::resize(&c.dir.join("run"), rows, cols).map_err(|e| {
                EngineError::Conflict(format!(
                    "resizing the terminal of container {}: {e}",
                    rec.name
                ))
            })?;
        }
        let _ = (rec, rows, cols);
        Ok(())
    }

    /// A container event, with Docker's attributes: image, name, labels.
    fn event(&self, rec: &Record, action: &str, extra: &[(&str, &str)]) {
        let mut attrs: Vec<(&str, &str)> = vec![("image", &rec.image), ("name", &rec.name)];
        for (k, v) in rec.config.labels.iter().flatten() {
            attrs.push((k, v));
        }
        attrs.extend_from_slice(extra);
        self.events
            .emit("container", action, rec.id.as_str(), &attrs);
    }

    /// `GET /containers/{id}/stats`: live counters of a running container
    /// (`None` when it is not running).
    pub fn stats(&self, name: &str) -> Result<(Record, Option<RuntimeStats>), EngineError> {
        let c = self.lookup(name)?;
        let stats = self.control(&c).map(|ctl| ctl.stats());
        Ok((c.record(), stats))
    }

    /// `GET /containers/{id}/top`: the host pids of a running container's
    /// processes.
    pub fn top(&self, name: &str) -> Result<Vec<i32>, EngineError> {
        let c = self.lookup(name)?;
        let rec = c.record();
        if !matches!(rec.state.status, Status::Running | Status::Paused) {
            return Err(EngineError::Conflict(format!(
                "container {} is not running",
                rec.name
            )));
        }
        let ctl = self.control(&c).ok_or_else(|| {
            EngineError::Conflict(format!("container {} is not running", rec.name))
        })?;
        let pids = ctl.pids();
        if pids.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "container {}: a Wasm container has no processes to list (its instance runs inside ketchd)",
                rec.name
            )));
        }
        Ok(pids)
    }

    /// `POST /containers/{id}/wait`: resolves to the exit code. Subscribes
    /// before returning, so a caller may start the container afterwards.
    pub fn wait(
        self: &Arc<Self>,
        name: &str,
        cond: WaitCondition,
    ) -> Result<
        impl std::future::Future<Output = (i64, Option<String>)> + Send + 'static,
        EngineError,
    > {
        let c = self.lookup(name)?;
        let mut exits = c.exits.subscribe();
        let mut removed = c.removed.subscribe();
        let seen = *exits.borrow();
        let status = c.status();
        Ok(async move {
            let result = |c: &Container| {
                let r = c.record();
                (
                    r.state.exit_code,
                    Some(r.state.error).filter(|e| !e.is_empty()),
                )
            };
            match cond {
                WaitCondition::NotRunning if !status.is_alive() && status != Status::Restarting => {
                    return result(&c)
                }
                WaitCondition::NotRunning | WaitCondition::NextExit => {
                    let _ = exits.wait_for(|n| *n > seen).await;
                }
                WaitCondition::Removed => {
                    let _ = removed.wait_for(|r| *r).await;
                }
            }
            result(&c)
        })
    }

    /// Containers using this image (for `rmi` conflicts).
    pub fn containers_using(&self, image_id: &Digest) -> Vec<Arc<Container>> {
        self.list()
            .into_iter()
            .filter(|c| &c.record().image_id == image_id)
            .collect()
    }
}

/// Write a container record atomically. Durable (fsynced) unless the
/// container is `--rm`: such a record is worthless after a crash, since
/// the next start removes the container anyway.
fn write_record(path: &Path, data: &[u8], auto_remove: bool) -> Result<(), EngineError> {
    let write = if auto_remove {
        fsutil::write_atomic_volatile
    } else {
        fsutil::write_atomic
    };
    write(path, data).map_err(EngineError::io(path))
}

/// The absolute path of a container's argv[0] inside its image.
fn entry_path(entry: &str, workdir: &str) -> String {
    if entry.starts_with('/') {
        fsutil::clean_abs(entry)
    } else {
        fsutil::clean_abs(&format!(
            "{}/{entry}",
            if workdir.is_empty() { "/" } else { workdir }
        ))
    }
}

fn validate_host_config(hc: &HostConfig, volumes: &volumes::Volumes) -> Result<(), EngineError> {
    if hc.memory < 0 {
        return Err(EngineError::InvalidArgument(format!(
            "invalid memory limit {}",
            hc.memory
        )));
    }
    if hc.memory > 0 && hc.memory < 64 * 1024 {
        return Err(EngineError::InvalidArgument(
            "minimum memory limit allowed is 64KiB (one Wasm page)".into(),
        ));
    }
    let policy = RestartPolicy::from_api(
        &hc.restart_policy.name,
        hc.restart_policy.maximum_retry_count,
    )
    .map_err(|e| EngineError::InvalidArgument(e.to_string()))?;
    if hc.auto_remove && policy != RestartPolicy::No {
        return Err(EngineError::InvalidArgument(
            "conflicting options: cannot specify both --restart and --rm".into(),
        ));
    }
    if hc.restart_policy.maximum_retry_count != 0
        && !matches!(policy, RestartPolicy::OnFailure { .. })
    {
        return Err(EngineError::InvalidArgument(
            "maximum retry count cannot be used with restart policy other than on-failure".into(),
        ));
    }
    grants(hc, volumes)?;
    http_options(hc)?;
    Ok(())
}

/// The ports a container asks for: `PortBindings`, plus its exposed ports
/// with `PublishAllPorts`.
pub fn port_mappings(
    cfg: &ContainerConfig,
    hc: &HostConfig,
) -> Result<Vec<PortMapping>, EngineError> {
    let bindings = hc
        .port_bindings
        .iter()
        .flatten()
        .map(|(k, v)| {
            let list = v
                .iter()
                .flatten()
                .map(|b| (b.host_ip.clone(), b.host_port.clone()))
                .collect();
            (k.clone(), list)
        })
        .collect();
    ports::from_api(&bindings, &exposed_ports(cfg)?, hc.publish_all_ports)
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))
}

/// `Config.ExposedPorts` (`EXPOSE` merged with the request).
fn exposed_ports(cfg: &ContainerConfig) -> Result<Vec<(u16, Proto)>, EngineError> {
    cfg.exposed_ports
        .iter()
        .flatten()
        .map(|(k, _)| {
            ports::parse_port_key(k).map_err(|e| EngineError::InvalidArgument(e.to_string()))
        })
        .collect()
}

fn http_options(hc: &HostConfig) -> Result<HttpOptions, EngineError> {
    crate::api::annotations::http_options(&hc.annotations.clone().unwrap_or_default())
        .map_err(|e| EngineError::InvalidArgument(e.to_string()))
}

/// `-v host:guest[:ro]`, `-v volume:guest[:ro]` and `--mount
/// type=bind|volume` into directory grants. Host paths must be absolute
/// existing directories; volumes exist by now (made at create).
fn grants(hc: &HostConfig, volumes: &volumes::Volumes) -> Result<Vec<Grant>, EngineError> {
    let mut out = Vec::new();
    for b in hc.binds.iter().flatten() {
        let parts: Vec<&str> = b.split(':').collect();
        let (host, guest, mode) = match parts.as_slice() {
            [h, g] => (*h, *g, ""),
            [h, g, m] => (*h, *g, *m),
            _ => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid volume specification: {b:?}"
                )))
            }
        };
        let read_only = match mode {
            "" | "rw" => false,
            "ro" => true,
            m if m.split(',').all(|x| matches!(x, "ro" | "rw" | "z" | "Z")) => {
                m.split(',').any(|x| x == "ro")
            }
            m => {
                return Err(EngineError::InvalidArgument(format!(
                    "invalid volume mode {m:?} in {b:?}"
                )))
            }
        };
        out.push(grant(&source_path(host, volumes)?, guest, read_only)?);
    }
    for m in hc.mounts.iter().flatten() {
        if m.kind != "bind" && m.kind != "volume" {
            return Err(EngineError::InvalidArgument(format!(
                "mount type {:?} for {} is not supported yet: use a bind mount or a volume",
                m.kind, m.target
            )));
        }
        out.push(grant(
            &source_path(&m.source, volumes)?,
            &m.target,
            m.read_only,
        )?);
    }
    Ok(out)
}

/// A bind source: a host path, or the data directory of a named volume.
fn source_path(source: &str, volumes: &volumes::Volumes) -> Result<String, EngineError> {
    match volumes::named(source) {
        Some(name) => Ok(volumes.data_path(name)?.display().to_string()),
        None => Ok(source.to_string()),
    }
}

fn grant(host: &str, guest: &str, read_only: bool) -> Result<Grant, EngineError> {
    if !host.starts_with('/') {
        return Err(EngineError::InvalidArgument(format!("invalid volume {host}:{guest}: named volumes are not supported yet, give an absolute host path")));
    }
    if !guest.starts_with('/') {
        return Err(EngineError::InvalidArgument(format!(
            "invalid volume {host}:{guest}: the container path must be absolute"
        )));
    }
    let meta = std::fs::metadata(host)
        .map_err(|e| EngineError::InvalidArgument(format!("invalid volume {host}:{guest}: {e}")))?;
    if !meta.is_dir() {
        return Err(EngineError::InvalidArgument(format!(
            "invalid volume {host}:{guest}: a Wasm container can only be granted directories"
        )));
    }
    Ok(Grant {
        host: PathBuf::from(host),
        guest: fsutil::clean_abs(guest),
        read_only,
    })
}

fn parse_env(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Image config defaults under the create request, as Docker merges them.
fn merge_config(img: &Image, mut req: ContainerConfig) -> ContainerConfig {
    let ic = img.config.config().clone().unwrap_or_default();
    let mut env: Vec<String> = ic.env().clone().unwrap_or_default();
    for kv in req.env.take().unwrap_or_default() {
        let key = kv.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    req.env = Some(env);
    match &req.entrypoint {
        Some(e) => {
            if e.len() == 1 && e[0].is_empty() {
                req.entrypoint = None;
            }
        }
        None => {
            req.entrypoint = ic.entrypoint().clone();
            if req.cmd.is_none() {
                req.cmd = ic.cmd().clone();
            }
        }
    }
    if req.working_dir.is_empty() {
        req.working_dir = ic.working_dir().clone().unwrap_or_default();
    }
    if req.user.is_empty() {
        req.user = ic.user().clone().unwrap_or_default();
    }
    let mut labels: std::collections::BTreeMap<String, String> = ic
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(req.labels.take().unwrap_or_default());
    req.labels = Some(labels);
    // Exposed ports are the union of the image's and the request's, as Docker.
    if let Some(p) = ic.exposed_ports() {
        let set = req.exposed_ports.get_or_insert_with(Default::default);
        for k in p {
            set.entry(k.clone())
                .or_insert_with(|| serde_json::json!({}));
        }
    }
    if req.stop_signal.is_none() {
        req.stop_signal = ic.stop_signal().clone();
    }
    req
}
