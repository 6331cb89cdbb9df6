//! Embedding ketch: run untrusted plugins (Wasm components and WASI
//! commands) from files, bytes or OCI registries inside any program, with
//! the same deny-by-default grants as ketch's containers.
//!
//! ```text
//! Host ──load_file / load_bytes / pull──▶ Plugin ──sandbox()…build()──▶ Sandbox ──call / typed / run──▶ results
//!  (engines, compile cache,                (compiled once,             (grants, limits, host functions;
//!   content store, budget)                  declared grants)            Send + Sync, cheap to clone)
//! ```
//!
//! - A [`Host`] owns the wasmtime engines (a pooling allocator, so a fresh
//!   instance per call costs microseconds), the compile cache (by default
//!   ketchd's own), a content store for pulled plugins, and a memory budget
//!   all its instances share.
//! - A [`Plugin`] is compiled once and is cheap to clone. An image may
//!   declare the grants it wants ([`GRANTS_ANNOTATION`]); a host may grant a
//!   subset, never more, and nothing because it is declared.
//! - A [`Sandbox`] is a plugin with [`Grants`] (directories, env, outgoing
//!   HTTP hosts, stdio), [`Limits`] (memory, an epoch deadline per call,
//!   fuel), host functions ([`Imports`]) and a [`Reuse`] policy. Every call
//!   has an async and a blocking form; failures are [`PluginError`]s that
//!   name the plugin and the cause, and the sandbox carries on.
//!
//! See `docs/embedding.md` for a walk-through.
//!
//! ```no_run
//! use ketch::plugin::{Grants, Host, Limits, Val};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), ketch::plugin::PluginError> {
//! let host = Host::new()?;
//! let plugin = host.load_file("plugin-upper.wasm")?;
//! let sandbox = plugin
//!     .sandbox()
//!     .grants(Grants::new())
//!     .limits(Limits::new().memory(16 << 20).timeout(Duration::from_secs(1)))
//!     .build()?;
//! let out = sandbox.call("upper", &[Val::String("hello".into())])?;
//! assert_eq!(out, [Val::String("HELLO".into())]);
//! # Ok(())
//! # }
//! ```

mod error;
mod grants;
mod imports;
mod load;
mod metrics;
mod sandbox;
mod state;

pub use error::PluginError;
pub use grants::{
    Declared, DeclaredDir, DirGrant, Grants, Limits, Output, Reuse, DEFAULT_MEMORY, DEFAULT_OUTPUT,
    DEFAULT_TIMEOUT, GRANTS_ANNOTATION,
};
pub use imports::{HostFn, Imports};
pub use load::{is_file_name, Plugin};
pub use metrics::Metrics;
pub use sandbox::{Invoked, RunOutput, Sandbox, SandboxBuilder, Typed};
pub use wasmtime::component::types::ComponentFunc;
pub use wasmtime::component::{Type, Val};

use crate::image::registry::{Registry, RegistryConfig};
use crate::image::ImageStore;
use crate::runtime::memory::{default_budget, MemoryBudget};
use crate::runtime::wasm::control::{spawn_epoch_ticker, FN_EPOCH_TICK};
use state::{P1State, State};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Instances a host's pool holds at once, without [`HostBuilder::pool`].
pub const DEFAULT_POOL: u32 = 256;
/// A Rust wasip2 component is a few core instances, each with its table.
const CORE_PER_COMPONENT: u32 = 4;

/// One wasmtime engine with the linkers its plugins use.
struct Engines {
    engine: wasmtime::Engine,
    /// WASI preview 2 and wasi:http, for components: async, for async
    /// calls (host calls never block a runtime worker).
    linker: wasmtime::component::Linker<State>,
    /// The same with blocking host functions, for blocking calls made
    /// outside any async runtime: no future, no fiber switch per call.
    sync_linker: wasmtime::component::Linker<State>,
    /// WASI preview 1, for command modules.
    p1: wasmtime::Linker<P1State>,
}

impl Engines {
    fn new(fuel: bool, pool: u32) -> Result<Self, String> {
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        cfg.wasm_component_model(true);
        cfg.consume_fuel(fuel);
        let mut engine = None;
        if pool > 0 {
            let mut p = wasmtime::PoolingAllocationConfig::default();
            p.total_component_instances(pool)
                .total_core_instances(pool * CORE_PER_COMPONENT)
                .total_tables(pool * CORE_PER_COMPONENT)
                .total_memories(pool * 2)
                .total_stacks(pool);
            cfg.allocation_strategy(p);
            match wasmtime::Engine::new(&cfg) {
                Ok(e) => engine = Some(e),
                // A small address space (39-bit VAs) cannot hold the pool.
                Err(e) => tracing::warn!(
                    "plugin instance pool unavailable ({e:#}); instances will allocate on demand"
                ),
            }
        }
        let engine = match engine {
            Some(e) => e,
            None => {
                cfg.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
                wasmtime::Engine::new(&cfg).map_err(|e| format!("wasmtime engine: {e:#}"))?
            }
        };
        let mut linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .map_err(|e| format!("WASI linker: {e:#}"))?;
        let mut sync_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut sync_linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut sync_linker))
            .map_err(|e| format!("WASI linker: {e:#}"))?;
        let mut p1 = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1, |s: &mut P1State| &mut s.wasi)
            .map_err(|e| format!("WASI preview 1 linker: {e:#}"))?;
        spawn_epoch_ticker(&engine, FN_EPOCH_TICK)
            .map_err(|e| format!("plugin epoch thread: {e}"))?;
        Ok(Engines {
            engine,
            linker,
            sync_linker,
            p1,
        })
    }
}

/// Owns what every plugin of a program shares. Cheap to clone; `Send` and
/// `Sync`.
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

struct HostInner {
    engines: Engines,
    /// Made on the first sandbox with fuel: fuel changes the code.
    fuel: OnceLock<Result<Engines, String>>,
    pool: u32,
    root: PathBuf,
    budget: Arc<MemoryBudget>,
    insecure: Vec<String>,
    registry: OnceLock<Result<(Registry, Arc<ImageStore>), String>>,
}

/// How to make a [`Host`].
#[derive(Clone, Debug, Default)]
pub struct HostBuilder {
    root: Option<PathBuf>,
    budget: Option<u64>,
    pool: Option<u32>,
    insecure: Vec<String>,
}

impl HostBuilder {
    /// Where compiled plugins (`wasm-cache/`) and pulled images
    /// (`plugins/`) are kept. The default is ketchd's data root, so the
    /// compile cache is the daemon's.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.root = Some(dir.into());
        self
    }

    /// Bytes all instances of this host may hold together. The default is
    /// half the machine's memory (or its cgroup's limit).
    pub fn memory_budget(mut self, bytes: u64) -> Self {
        self.budget = Some(bytes);
        self
    }

    /// Instances the pooling allocator holds ready ([`DEFAULT_POOL`]); 0
    /// allocates each instance on demand instead. Calls past the pool's
    /// size at one moment fail with a clear error.
    pub fn pool(mut self, instances: u32) -> Self {
        self.pool = Some(instances);
        self
    }

    /// A registry (`host[:port]`) spoken to over plain HTTP. Loopback
    /// registries always are.
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure.push(host.into());
        self
    }

    pub fn build(self) -> Result<Host, PluginError> {
        let root = self.root.unwrap_or_else(crate::paths::default_data_root);
        let setup = |what: &str, e: std::io::Error| PluginError::Io {
            plugin: "-".into(),
            what: what.to_string(),
            source: e,
        };
        std::fs::create_dir_all(root.join("wasm-cache"))
            .map_err(|e| setup(&format!("cannot create {}", root.display()), e))?;
        let pool = self.pool.unwrap_or(DEFAULT_POOL);
        let engines = Engines::new(false, pool).map_err(|e| PluginError::invalid("-", e))?;
        Ok(Host {
            inner: Arc::new(HostInner {
                engines,
                fuel: OnceLock::new(),
                pool,
                root,
                budget: Arc::new(MemoryBudget::new(
                    self.budget.unwrap_or_else(default_budget),
                )),
                insecure: self.insecure,
                registry: OnceLock::new(),
            }),
        })
    }
}

impl Host {
    /// A host with every default ([`HostBuilder`]).
    pub fn new() -> Result<Self, PluginError> {
        HostBuilder::default().build()
    }

    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// Bytes of memory the host's live instances hold.
    pub fn memory_in_use(&self) -> u64 {
        self.inner.budget.used()
    }

    fn engines(&self, fuel: bool) -> Result<&Engines, String> {
        if !fuel {
            return Ok(&self.inner.engines);
        }
        self.inner
            .fuel
            .get_or_init(|| Engines::new(true, self.inner.pool))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn compile_cache(&self) -> PathBuf {
        self.inner.root.join("wasm-cache")
    }

    /// The registry client and content store, made on first pull.
    fn registry(&self) -> Result<&(Registry, Arc<ImageStore>), String> {
        self.inner
            .registry
            .get_or_init(|| {
                let store = ImageStore::open(&self.inner.root.join("plugins"))
                    .map_err(|e| e.to_string())?;
                let reg = Registry::new(RegistryConfig {
                    insecure: self.inner.insecure.clone(),
                    mirrors: Vec::new(),
                })
                .map_err(|e| e.to_string())?;
                Ok((reg, Arc::new(store)))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Run `f` to completion from blocking code, inside a tokio runtime (WASI
/// needs one): the caller's own thread if it is outside any runtime, a
/// scoped thread if it is inside one (blocking there would panic).
fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return wasmtime_wasi::runtime::in_tokio(f);
    }
    std::thread::scope(
        |s| match s.spawn(|| wasmtime_wasi::runtime::in_tokio(f)).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        },
    )
}

/// docs/embedding.md, whose examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/embedding.md")]
pub struct EmbeddingGuide;
