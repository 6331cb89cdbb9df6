//! The engine's runtime boundary. Each kind of container has one
//! [`Backend`]: it decides whether an image's program is its own, starts
//! and reattaches instances, and owns every verb that differs by kind
//! (resize, copy, exec, network sandboxes, cleanup). The lifecycle in
//! `engine::container` sees only this trait and a [`Caps`] query.
//!
//! [`Backends::open`] builds the backends this ketchd has: it is the only
//! place that names a runtime feature.

use super::container::Container;
use super::networks::{Endpoint, HostNet, NetworkRecord};
use super::{Engine, EngineError, Record};
use crate::api::types::{GraphDriver, HostConfig};
use crate::image::Image;
use crate::model::{Digest, Platform, RuntimeKind};
use crate::runtime::{Reattached, Started};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(all(feature = "linux", target_os = "linux"))]
pub(crate) mod linux;
#[cfg(feature = "wasm")]
mod wasm;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a backend offers beyond start, stop and stats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// Any signal can be delivered (else only those that end it).
    pub signals: bool,
    /// Instances are host processes (`top` lists them).
    pub processes: bool,
    /// `-t` gives a terminal that can be resized.
    pub terminal: bool,
    /// `exec` and `cp` reach into a running instance.
    pub exec: bool,
    /// Containers join networks and get addresses.
    pub networks: bool,
}

/// A runtime as the engine drives it.
pub(crate) trait Backend: Send + Sync {
    fn kind(&self) -> RuntimeKind;
    fn caps(&self) -> Caps;

    /// The platform of an (image, entry) this backend already prepared.
    fn known(&self, image: &Digest, entry: &str) -> Option<Platform>;

    /// Is this image's program (the file at `entry`, `None` when the image
    /// has no such file) this backend's? If so, make it ready to start
    /// and say what platform to record.
    fn prepare<'a>(
        &'a self,
        img: &'a Image,
        image_name: &'a str,
        entry: &'a str,
        bytes: Option<Arc<[u8]>>,
    ) -> BoxFuture<'a, Result<Option<Platform>, EngineError>>;

    /// Refuse a create whose options this backend cannot honour.
    fn validate(&self, _hc: &HostConfig) -> Result<(), EngineError> {
        Ok(())
    }

    /// Record the defaults this backend chooses for what a create left
    /// unset, as Docker's daemon records its own.
    fn complete(&self, _hc: &mut HostConfig) {}

    /// Can the program serve published ports?
    fn serves_ports(&self, _image: &Digest, _entry: &str, _workdir: &str) -> bool {
        true
    }

    /// Start an instance of this container.
    fn start<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Arc<Container>,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<Started, EngineError>>;

    /// The container is recorded as running (its peers may learn of it).
    fn after_start(&self, _engine: &Arc<Engine>, _c: &Arc<Container>) {}

    /// Its instance ended and the exit is recorded.
    fn after_exit(&self, _engine: &Arc<Engine>, _rec: &Record) {}

    /// A container recorded as alive when ketchd last stopped.
    fn reattach(&self, _engine: &Engine, _c: &Container, _rec: &Record) -> Reattached {
        Reattached::Lost
    }

    /// Size the terminal of a running `-t` container.
    fn resize(&self, _c: &Container, _rows: u16, _cols: u16) -> Result<(), EngineError> {
        Ok(())
    }

    /// Rewrite a running container's `/etc/hosts` (its peers changed).
    fn write_hosts(&self, _engine: &Engine, _c: &Container, _rec: &Record) {}

    /// Join network `n` while running; the record lists its endpoint
    /// there already, with no address yet. By default: an interface of
    /// its own in its network namespace.
    fn join_network<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Arc<Container>,
        n: &'a NetworkRecord,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(engine.connect_running(c, n))
    }

    /// Leave network `n` (its endpoint there is `ep`) while running.
    fn leave_network<'a>(
        &'a self,
        engine: &'a Arc<Engine>,
        c: &'a Arc<Container>,
        n: &'a NetworkRecord,
        ep: &'a Endpoint,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(engine.disconnect_running(c, n, ep))
    }

    /// The host's network, if this runtime's containers join networks.
    fn host_network(&self) -> Option<Arc<dyn HostNet>> {
        None
    }

    /// The network namespace of a running container, for `inspect`.
    fn sandbox_key(&self, _c: &Container) -> Option<PathBuf> {
        None
    }

    /// `GraphDriver` of inspect: how the container's root is stored. A
    /// Wasm container has none of its own: only its image.
    fn graph_driver(&self, _engine: &Engine, _c: &Container, _rec: &Record) -> GraphDriver {
        GraphDriver::default()
    }

    /// Start an exec in a running container (backends with `Caps::exec`).
    fn exec<'a>(
        &'a self,
        _engine: &'a Arc<Engine>,
        exec: &'a super::exec::Exec,
        _c: &'a Container,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<super::exec::Spawned, EngineError>> {
        let e = unsupported(rec, "exec", &exec.id);
        Box::pin(async move { Err(e) })
    }

    /// The `cp` helper for a container's files (backends with `Caps::exec`).
    fn copy<'a>(
        &'a self,
        _engine: &'a Arc<Engine>,
        _c: &'a Container,
        rec: &'a Record,
        _mode: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, Result<tokio::process::Command, EngineError>> {
        let e = unsupported(rec, "cp", path);
        Box::pin(async move { Err(e) })
    }

    /// Run `argv` as a health probe of the running container, its output
    /// into `out`; resolves to its exit code. For backends without exec: a
    /// fresh instance of the container's program beside the running one.
    fn probe<'a>(
        &'a self,
        _engine: &'a Arc<Engine>,
        _c: &'a Arc<Container>,
        rec: &'a Record,
        argv: Vec<String>,
        _out: Arc<super::health::Captured>,
    ) -> BoxFuture<'a, Result<i64, EngineError>> {
        let e = unsupported(rec, "a health check", &argv.join(" "));
        Box::pin(async move { Err(e) })
    }

    /// `commit`: the container's changes as a layer tar, in a file read
    /// from its start.
    fn changes_tar<'a>(
        &'a self,
        _c: &'a Container,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<std::fs::File, EngineError>> {
        let e = EngineError::InvalidArgument(format!(
            "container {}: a Wasm container has no root filesystem of its own to commit: its image and its granted directories are all it has",
            rec.name
        ));
        Box::pin(async move { Err(e) })
    }

    /// `diff`: what the container changed in its root filesystem.
    fn changes<'a>(
        &'a self,
        _engine: &'a Arc<Engine>,
        _c: &'a Container,
        rec: &'a Record,
    ) -> BoxFuture<'a, Result<Vec<crate::api::types::ContainerChange>, EngineError>> {
        let e = EngineError::InvalidArgument(format!(
            "container {}: a Wasm container has no root filesystem of its own to diff: it changes only the directories it is granted",
            rec.name
        ));
        Box::pin(async move { Err(e) })
    }

    /// Whatever a removed (or lost) container may have left behind.
    fn cleanup(&self, _rec: &Record) {}
}

fn unsupported(rec: &Record, verb: &str, what: &str) -> EngineError {
    EngineError::InvalidArgument(format!(
        "container {}: {verb} ({what}) is not supported by its runtime",
        rec.name
    ))
}

/// The backends this ketchd has, one per kind.
pub(crate) struct Backends {
    list: Vec<Arc<dyn Backend>>,
    #[cfg(all(feature = "linux", target_os = "linux"))]
    linux: Option<Arc<linux::LinuxAdapter>>,
}

impl Backends {
    /// Build every backend compiled in. Linux containers need a capable
    /// host; without one, Linux images are refused with the reason.
    pub fn open(
        root: &Path,
        #[cfg_attr(not(feature = "wasm"), allow(unused_variables))]
        wasm_memory: crate::runtime::memory::WasmMemory,
    ) -> Result<Self, EngineError> {
        let _ = root;
        #[allow(unused_mut)] // empty when no runtime is compiled in
        let mut list: Vec<Arc<dyn Backend>> = Vec::with_capacity(2);
        #[cfg(feature = "wasm")]
        {
            let wasm = wasm::WasmAdapter::open(&root.join("wasm-cache"), wasm_memory)?;
            list.push(Arc::new(wasm));
        }
        #[cfg(all(feature = "linux", target_os = "linux"))]
        let linux = {
            let l = Arc::new(linux::LinuxAdapter::open(root)?);
            list.push(l.clone());
            Some(l)
        };
        Ok(Backends {
            list,
            #[cfg(all(feature = "linux", target_os = "linux"))]
            linux,
        })
    }

    /// Only the given backends (for tests with a fake runtime).
    #[cfg(test)]
    pub fn of(list: Vec<Arc<dyn Backend>>) -> Self {
        Backends {
            list,
            #[cfg(all(feature = "linux", target_os = "linux"))]
            linux: None,
        }
    }

    pub fn get(&self, kind: RuntimeKind) -> Option<&Arc<dyn Backend>> {
        self.list.iter().find(|b| b.kind() == kind)
    }

    /// The backend that runs containers of this platform.
    pub fn for_platform(
        &self,
        platform: &Platform,
        image: &str,
    ) -> Result<&Arc<dyn Backend>, EngineError> {
        platform.kind().and_then(|k| self.get(k)).ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "image {image} has platform {platform}, and this ketchd has no runtime for it"
            ))
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Backend>> {
        self.list.iter()
    }

    /// The host's network, where networks make their bridges.
    pub fn host_network(&self) -> Option<Arc<dyn HostNet>> {
        self.list.iter().find_map(|b| b.host_network())
    }

    /// What runs a build's RUN steps: Linux containers, where this host
    /// has them. (Builds themselves are Linux's: see `Engine::image_build`.)
    #[cfg(target_os = "linux")]
    pub fn step_runner(
        &self,
        engine: &Arc<Engine>,
    ) -> Option<Box<dyn crate::image::build::StepRunner>> {
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if self.linux.is_some() {
            return engine
                .build_runner()
                .map(|r| Box::new(r) as Box<dyn crate::image::build::StepRunner>);
        }
        let _ = engine;
        None
    }

    /// The Linux adapter, for the verbs only it has (exec, cp, builds).
    #[cfg(all(feature = "linux", target_os = "linux"))]
    pub fn linux(&self) -> Option<&Arc<linux::LinuxAdapter>> {
        self.linux.as_ref()
    }
}

impl Engine {
    /// Decide the backend for an image and make its program ready.
    /// Returns the platform to record.
    pub(super) async fn prepare_program(
        &self,
        img: &Image,
        entry: &str,
        workdir: &str,
    ) -> Result<Platform, EngineError> {
        let path = crate::fsutil::entry_path(entry, workdir);
        if let Some(p) = self.backends.all().find_map(|b| b.known(&img.id, &path)) {
            return Ok(p);
        }
        let images = self.images.clone();
        let manifest = img.manifest.clone();
        let p = path.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            crate::image::layer::read_image_file(&images, &manifest, &p)
        })
        .await
        .map_err(EngineError::task("reading the entrypoint"))??
        .map(Arc::<[u8]>::from);
        let image_name = img
            .refs
            .first()
            .map(|r| r.familiar())
            .unwrap_or_else(|| img.id.to_string());
        if bytes.is_none() && img.is_wasi_platform() {
            return Err(EngineError::InvalidArgument(format!(
                "image {image_name}: entrypoint {path} not found in the image"
            )));
        }
        for b in self.backends.all() {
            if let Some(p) = b.prepare(img, &image_name, &path, bytes.clone()).await? {
                return Ok(p);
            }
        }
        Err(EngineError::InvalidArgument(match bytes {
            None => format!("image {image_name}: entrypoint {path} not found in the image, and this ketchd has no Linux container backend to look it up on a PATH"),
            Some(_) => format!("image {image_name} is not a Wasm image, and this ketchd has no Linux container backend"),
        }))
    }
}

/// The host's network as this build of ketch drives it (none without the
/// Linux runtime, or on a host that cannot run Linux containers): for
/// tools and tests that clean up after a ketchd, with
/// [`networks::release_bridge`](super::networks::release_bridge).
pub fn host_network() -> Option<Arc<dyn HostNet>> {
    #[cfg(all(feature = "linux", target_os = "linux"))]
    if crate::runtime::linux::host_supports().is_ok() {
        return Some(Arc::new(linux::net::LinuxNet));
    }
    None
}
