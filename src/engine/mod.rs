//! The engine: containers and their lifecycle (created -> running <->
//! paused -> exited -> removed), persisted state, restart policies, logs,
//! events, and the runtime boundary.
//!
//! - [`container`]: one file per verb around the [`StateRecord`] state
//!   machine;
//! - [`config`]: a create request parsed and checked once, pure;
//! - `reconcile`: the container table made true again at start;
//! - `backend`: the one trait every runtime is driven through, and the
//!   one function that builds the runtimes this ketchd has.

mod backend;
pub mod config;
pub mod container;
mod create_journal;
pub mod error;
pub mod events;
pub mod exec;
pub mod health;
pub mod images;
pub mod logs;
pub mod networks;
mod reconcile;
pub mod record;
mod record_file;
mod spare_dirs;
pub mod view;
pub mod volumes;

pub use backend::host_network;
pub use config::port_mappings;
pub use container::{Container, WaitCondition};
pub use error::EngineError;
pub use reconcile::EXIT_DAEMON_GONE;
pub use record::{Record, StateRecord};

use crate::image::registry::{Registry, RegistryConfig};
use crate::image::{Image, ImageStore};
use crate::model::{ContainerId, Digest};
use backend::Backends;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A poisoned lock only means a panic elsewhere; the data is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Suffixes an older ketchd gave a container directory while it was being
/// deleted, and while being created.
const REMOVING_SUFFIX: &str = "removing";
const CREATING_SUFFIX: &str = "creating";

#[derive(Default)]
struct Table {
    /// Ordered, so an id prefix is a range, not a scan.
    by_id: BTreeMap<ContainerId, Arc<Container>>,
    names: HashMap<String, ContainerId>,
}

/// Which objects a prune may remove (Docker's `label`, `label!` and
/// `until` filters), asked of each with its labels and when it was made.
pub type PruneFilter = std::sync::Arc<
    dyn Fn(
            &std::collections::BTreeMap<String, String>,
            Option<chrono::DateTime<chrono::Utc>>,
        ) -> bool
        + Send
        + Sync,
>;

pub struct Engine {
    root: PathBuf,
    images: Arc<ImageStore>,
    registry: Arc<Registry>,
    events: events::Events,
    volumes: volumes::Volumes,
    networks: networks::Networks,
    /// Held while an address is picked and recorded, so two starts
    /// cannot take the same one.
    ipam: tokio::sync::Mutex<()>,
    /// Held while a container's `/etc/hosts` is computed and written, so
    /// the last write of each file saw the latest addresses: containers
    /// starting together cannot leave one another out.
    hosts: Mutex<()>,
    containers: RwLock<Table>,
    backends: Backends,
    execs: Mutex<HashMap<String, Arc<exec::Exec>>>,
    /// What makes a create durable: the journal of created and removed
    /// containers.
    creates: Arc<create_journal::CreateJournal>,
    /// Emptied directories of removed Wasm containers, for new ones.
    spare_dirs: Arc<spare_dirs::SpareDirs>,
    /// Set once ketchd starts shutting down: restart policies are held.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// Open the data root and reconcile: containers recorded as running
    /// that no longer run are marked exited, then restarted per policy.
    /// `wasm_memory` holds the Wasm guests to their caps and budget.
    pub async fn open(
        root: &Path,
        registry: RegistryConfig,
        wasm_memory: crate::runtime::memory::WasmMemory,
    ) -> Result<Arc<Self>, EngineError> {
        let dir = root.to_path_buf();
        let backends = tokio::task::spawn_blocking(move || {
            prepare_root(&dir)?;
            Backends::open(&dir, wasm_memory)
        })
        .await
        .map_err(EngineError::task("opening the data root"))??;
        Self::open_with(root, registry, backends).await
    }

    async fn open_with(
        root: &Path,
        registry: RegistryConfig,
        backends: Backends,
    ) -> Result<Arc<Self>, EngineError> {
        let root = root.to_path_buf();
        // Stores read their directories; networks take the host's lock and
        // make their bridges again after a reboot.
        let engine = tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
            Ok(Arc::new(Engine {
                images: Arc::new(ImageStore::open(&root.join("image"))?),
                registry: Arc::new(Registry::new(registry)?),
                events: events::Events::default(),
                volumes: volumes::Volumes::open(&root.join("volumes"))?,
                networks: networks::Networks::open(
                    &root.join("networks"),
                    backends.host_network(),
                )?,
                ipam: tokio::sync::Mutex::new(()),
                hosts: Mutex::new(()),
                containers: RwLock::new(Table::default()),
                backends,
                execs: Mutex::new(HashMap::new()),
                creates: Arc::new(
                    create_journal::CreateJournal::open(&root.join("containers"))
                        .map_err(EngineError::io(root.join("containers")))?,
                ),
                spare_dirs: Arc::new(spare_dirs::SpareDirs::new(&root.join("containers"))),
                shutting_down: Default::default(),
                root,
            }))
        })
        .await
        .map_err(EngineError::task("opening the stores"))??;
        engine.reconcile().await?;
        Ok(engine)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn events(&self) -> &events::Events {
        &self.events
    }

    pub fn volumes(&self) -> &volumes::Volumes {
        &self.volumes
    }

    pub fn networks(&self) -> &networks::Networks {
        &self.networks
    }

    fn table(&self) -> RwLockReadGuard<'_, Table> {
        self.containers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn table_mut(&self) -> RwLockWriteGuard<'_, Table> {
        self.containers.write().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, rec: Record, dir: PathBuf) -> Arc<Container> {
        let (name, id) = (rec.name.clone(), rec.id.clone());
        let c = Container::new(rec, dir);
        let mut t = self.table_mut();
        t.names.insert(name, id.clone());
        t.by_id.insert(id, c.clone());
        c
    }

    /// Take a removed container out of the table.
    fn forget(&self, c: &Container) {
        let name = c.name();
        let mut t = self.table_mut();
        t.by_id.remove(&c.id);
        if t.names.get(&name) == Some(&c.id) {
            t.names.remove(&name);
        }
    }

    /// Find a container by full id, name, or unique id prefix.
    pub fn lookup(&self, name: &str) -> Result<Arc<Container>, EngineError> {
        let t = self.table();
        let key = name.strip_prefix('/').unwrap_or(name);
        if let Some(c) = ContainerId::parse(key).and_then(|id| t.by_id.get(&id)) {
            return Ok(c.clone());
        }
        if let Some(c) = t.names.get(key).and_then(|id| t.by_id.get(id)) {
            return Ok(c.clone());
        }
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits = t
                .by_id
                .range::<str, _>((std::ops::Bound::Included(key), std::ops::Bound::Unbounded))
                .map(|(_, c)| c)
                .take_while(|c| c.id.as_str().starts_with(key));
            match (hits.next(), hits.next()) {
                (Some(c), None) => return Ok(c.clone()),
                (None, _) => {}
                (Some(_), Some(_)) => {
                    return Err(EngineError::InvalidArgument(format!(
                        "multiple containers match the id prefix {key}"
                    )))
                }
            }
        }
        Err(EngineError::no_such_container(name))
    }

    pub fn list(&self) -> Vec<Arc<Container>> {
        let mut v: Vec<_> = self.table().by_id.values().cloned().collect();
        v.sort_by_cached_key(|c| std::cmp::Reverse(c.created()));
        v
    }

    /// Containers using this image (for `rmi` conflicts).
    pub fn containers_using(&self, image_id: &Digest) -> Vec<Arc<Container>> {
        self.list()
            .into_iter()
            .filter(|c| &c.record().image_id == image_id)
            .collect()
    }

    /// Run blocking engine work (fsyncs, the host network's lock and
    /// netlink) on the blocking pool, off the async runtime.
    async fn off_runtime<T: Send + 'static>(
        self: &Arc<Self>,
        what: &'static str,
        f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(EngineError::task(what))?
    }

    /// The image a container was made from, or why it cannot start.
    async fn image_of(&self, rec: &Record) -> Result<Image, EngineError> {
        let images = self.images.clone();
        let image_id = rec.image_id.to_string();
        tokio::task::spawn_blocking(move || images.resolve(&image_id))
            .await
            .map_err(EngineError::task("image resolution"))?
            .map_err(|e| {
                EngineError::Conflict(format!(
                    "cannot start container {}: its image is gone: {e}",
                    rec.name
                ))
            })
    }

    /// The network namespace of a running container (`SandboxKey`).
    pub(crate) fn sandbox_key(&self, c: &Container) -> Option<PathBuf> {
        let rec = c.record();
        if !rec.state.status().is_alive() {
            return None;
        }
        self.backends.get(rec.kind()?)?.sandbox_key(c)
    }

    /// `GraphDriver` of inspect, from the container's backend.
    pub(crate) fn graph_driver(&self, c: &Container) -> crate::api::types::GraphDriver {
        let rec = c.record();
        match rec.kind().and_then(|k| self.backends.get(k)) {
            Some(b) => b.graph_driver(self, c, &rec),
            None => Default::default(),
        }
    }

    /// `GraphDriver` of an image's inspect: a Linux image's layers as the
    /// Linux backend unpacks them; a Wasm image is not unpacked.
    #[cfg_attr(
        not(all(feature = "linux", target_os = "linux")),
        allow(unused_variables)
    )]
    pub(crate) fn image_graph_driver(
        &self,
        img: &crate::image::Image,
    ) -> crate::api::types::GraphDriver {
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if let (Some(l), false) = (self.backends.linux(), img.is_wasi_platform()) {
            return l.image_graph_driver(img);
        }
        crate::api::types::GraphDriver::default()
    }

    /// A container event, with Docker's attributes: image, name, labels.
    pub(crate) fn event(&self, rec: &Record, action: &str, extra: &[(&str, &str)]) {
        let mut attrs: Vec<(&str, &str)> = vec![("image", &rec.image), ("name", &rec.name)];
        for (k, v) in rec.config.labels.iter().flatten() {
            attrs.push((k, v));
        }
        attrs.extend_from_slice(extra);
        self.events
            .emit("container", action, rec.id.as_str(), &attrs);
    }
}

/// Make the data root's directories, and empty its scratch space. Blocking.
fn prepare_root(root: &Path) -> Result<(), EngineError> {
    for d in ["containers", "image", "tmp", "wasm-cache"] {
        std::fs::create_dir_all(root.join(d)).map_err(EngineError::io(root.join(d)))?;
    }
    if let Ok(rd) = std::fs::read_dir(root.join("tmp")) {
        for e in rd.flatten() {
            let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
