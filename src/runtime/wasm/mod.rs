//! The Wasm backend: WASI preview 1 modules and preview 2 components run as
//! wasmtime instances on the daemon's tokio runtime, one task each. No process
//! per container, which is what lets thousands share one machine.
//!
//! - One `Engine` per daemon; each module is compiled once per digest, kept
//!   hot in memory (as an `InstancePre`) and cached on disk as `.cwasm`.
//! - Deny by default: the guest gets only the argv, env and directories in
//!   its [`RunSpec`]; no host env, no sockets, no other files.
//! - Every store has a resource limiter and an epoch deadline: the ticker
//!   thread bumps the epoch every [`EPOCH_TICK`], and at each tick the guest
//!   yields to the runtime, so `kill` and `pause` take effect even in a loop
//!   that never calls the host. The limiter holds each guest to its cap
//!   (`--memory`, or the daemon's default) and all of them together to the
//!   daemon's [`MemoryBudget`], so a guest out of memory fails alone.
//! - A component that exports `wasi:http/incoming-handler` is a function:
//!   it is compiled for a second engine with the pooling allocator and
//!   served by [`http`], a fresh instance per request.

mod http;
mod io;

use super::memory::{MemoryBudget, WasmMemory};
use super::stats::{HttpCounters, MemoryGauge};
use super::{
    Backend, Control, ExitStatus, Program, RunSpec, RuntimeError, RuntimeStats, Started,
    EXIT_KILLED, EXIT_TRAP,
};
use crate::api::stream::StdStream;
use crate::model::units::format_size;
use crate::model::Digest;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, InstancePre, Linker, Module, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// How often the epoch advances: the longest a guest runs between checks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The same for functions, shorter: a spinning handler holds a runtime
/// worker for up to one tick, delaying other requests' I/O, and tokio
/// polls I/O only every few dozen task polls while its workers are busy.
pub const FN_EPOCH_TICK: Duration = Duration::from_millis(1);
/// Elements of one table: bounds a hostile module's `table.grow` even under
/// a large cap (each element is also counted against the cap).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// What wasmtime stores per table element: a pointer (its
/// `ResourceLimiter::table_growing` docs).
const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;
/// Linear memories of one store. Each reserves 4 GiB of address space plus
/// guards when created, however small: at wasmtime's default of 10,000 per
/// store, a few guests of empty memories would exhaust ketchd's 128 TiB of
/// address space, and then its own allocations fail. Multi-memory guests
/// and composed components use a handful.
const MAX_MEMORIES: usize = 16;

/// Component instances the function pool holds: the most requests all
/// function containers of one ketchd can run at once.
const POOL_INSTANCES: u32 = 1000;
/// A Rust wasip2 component is a few core instances (the program plus
/// adapter shims), each with its own table.
const POOL_CORE_PER_COMPONENT: u32 = 4;

enum Compiled {
    Module(InstancePre<P1State>),
    Component(CommandPre<P2State>),
    Http(ProxyPre<http::HttpState>),
}

/// The engine and linker for function containers, made on first use: the
/// pooling allocator reserves its address space up front.
struct FnRuntime {
    engine: Engine,
    linker: wasmtime::component::Linker<http::HttpState>,
}

pub struct WasmBackend {
    engine: Engine,
    memory: WasmMemory,
    /// Shared by the guests of both engines.
    budget: Arc<MemoryBudget>,
    functions: OnceLock<Result<FnRuntime, String>>,
    cache_dir: PathBuf,
    compiled: Mutex<HashMap<Digest, Arc<Compiled>>>,
    p1_linker: Linker<P1State>,
    p2_linker: wasmtime::component::Linker<P2State>,
}

/// The memory one guest may hold, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cap {
    /// The container's `--memory`.
    Flag(u64),
    /// The daemon's `--wasm-memory-default`.
    Default(u64),
}

impl Cap {
    fn bytes(self) -> u64 {
        match self {
            Cap::Flag(n) | Cap::Default(n) => n,
        }
    }
}

/// Why the limiter refused a grow: said in the exit error (so in the
/// container's log), and for the daemon's budget in ketchd's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// The guest's own cap.
    Cap(Cap),
    /// The daemon's budget, taken by all its guests; holds its size.
    Budget(u64),
    /// One table past [`MAX_TABLE_ELEMENTS`].
    Table,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Cap(Cap::Flag(n)) => write!(
                f,
                "memory refused: over the container's --memory of {}",
                format_size(*n)
            ),
            Refusal::Cap(Cap::Default(n)) => write!(
                f,
                "memory refused: over the {} every Wasm guest may hold without --memory (ketchd --wasm-memory-default)",
                format_size(*n)
            ),
            Refusal::Budget(n) => write!(
                f,
                "memory refused: the {} that all Wasm guests of ketchd may hold together is taken (ketchd --wasm-memory-budget)",
                format_size(*n)
            ),
            Refusal::Table => write!(
                f,
                "table refused: over {MAX_TABLE_ELEMENTS} elements"
            ),
        }
    }
}

/// Memory/table limits of one store: the guest's cap, and the daemon's
/// budget, which it takes from before granting. Remembers why a grow was
/// refused, so a guest that then dies is reported as OOM-killed. Counts
/// what it grants in the container's [`MemoryGauge`]; gives everything back
/// to both when the store is dropped, however the guest ended (exit, trap,
/// kill, a dropped future, a panic).
struct Limits {
    cap: Cap,
    budget: Arc<MemoryBudget>,
    refused: Option<Refusal>,
    /// Bytes of memories and tables granted, all taken from `budget`.
    held: u64,
    gauge: Arc<MemoryGauge>,
    /// The container, for ketchd's log.
    name: Arc<str>,
}

impl Limits {
    fn new(
        cap: Cap,
        budget: &Arc<MemoryBudget>,
        gauge: &Arc<MemoryGauge>,
        name: &Arc<str>,
    ) -> Self {
        store_born();
        Limits {
            cap,
            budget: budget.clone(),
            refused: None,
            held: 0,
            gauge: gauge.clone(),
            name: name.clone(),
        }
    }

    /// Grant `add` more bytes if both the cap and the budget allow.
    fn grant(&mut self, add: u64) -> bool {
        if self.held.saturating_add(add) > self.cap.bytes() {
            self.refuse(Refusal::Cap(self.cap));
            return false;
        }
        if !self.budget.try_take(add) {
            self.refuse(Refusal::Budget(self.budget.limit()));
            return false;
        }
        self.held += add;
        self.gauge.grow(add);
        true
    }

    fn refuse(&mut self, why: Refusal) {
        if self.refused != Some(why) {
            // The container's log says it when the guest dies; the budget
            // is every guest's, so its operator hears of it too.
            if let Refusal::Budget(_) = why {
                tracing::warn!("wasm container {}: {why}", self.name);
            } else {
                tracing::debug!("wasm container {}: {why}", self.name);
            }
        }
        self.refused = Some(why);
    }
}

impl Drop for Limits {
    fn drop(&mut self) {
        self.budget.give_back(self.held);
        self.gauge.shrink(self.held);
        store_gone();
    }
}

/// How many stores exist (each has one [`Limits`]), so the epoch tickers
/// sleep while there is no guest to interrupt: an idle ketchd does not
/// wake a thousand times a second.
static LIVE_STORES: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

fn store_born() {
    let mut n = LIVE_STORES.0.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    if *n == 1 {
        LIVE_STORES.1.notify_all();
    }
}

fn store_gone() {
    let mut n = LIVE_STORES.0.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_sub(1);
}

/// wasmtime asks here for every grow and, with `current` 0, for the initial
/// size of every memory and table an instantiation creates (`limit_new` in
/// its `vm/memory.rs` and `vm/table.rs`, for the on-demand and pooling
/// allocators alike), so `held` is the store's whole footprint. Shared
/// memories would bypass the limiter, but the engines leave them disabled.
impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Past the memory's own declared maximum wasmtime fails the grow
        // whatever we answer: the guest's own limit, not an OOM.
        if maximum.is_some_and(|m| desired > m) {
            return Ok(true);
        }
        Ok(self.grant(desired.saturating_sub(current) as u64))
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(true);
        }
        if desired > MAX_TABLE_ELEMENTS {
            self.refuse(Refusal::Table);
            return Ok(false);
        }
        let add = desired.saturating_sub(current) as u64;
        Ok(self.grant(add.saturating_mul(TABLE_ELEMENT_BYTES)))
    }
    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

struct P1State {
    wasi: WasiP1Ctx,
    limits: Limits,
    ctl: Arc<Ctl>,
}

struct P2State {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: Limits,
    ctl: Arc<Ctl>,
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Shared between a container's instances and its [`Control`] handle.
struct Ctl {
    killed: watch::Sender<bool>,
    paused: watch::Sender<bool>,
    terminating: watch::Sender<bool>,
    memory: Arc<MemoryGauge>,
    /// Nanoseconds spent polling guest code.
    cpu_ns: Arc<AtomicU64>,
    http: Option<Arc<HttpCounters>>,
}

impl Ctl {
    fn new(http: bool) -> Arc<Self> {
        Arc::new(Ctl {
            killed: watch::channel(false).0,
            paused: watch::channel(false).0,
            terminating: watch::channel(false).0,
            memory: Arc::default(),
            cpu_ns: Arc::default(),
            http: http.then(Arc::default),
        })
    }

    fn is_killed(&self) -> bool {
        *self.killed.borrow()
    }

    /// Resolves once the container is killed.
    fn killed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.killed.subscribe();
        async move {
            let _ = rx.wait_for(|k| *k).await;
        }
    }

    /// Wraps `f` so it is polled only while the container is not paused.
    fn pausable<F: Future + Unpin>(&self, f: F) -> Pausable<F> {
        Pausable {
            inner: f,
            paused: self.paused.subscribe(),
            waiting: None,
            cpu_ns: self.cpu_ns.clone(),
        }
    }
}

impl Control for Ctl {
    fn kill(&self) {
        self.killed.send_replace(true);
        // A paused instance must wake up to die.
        self.paused.send_replace(false);
    }
    fn terminate(&self) {
        self.terminating.send_replace(true);
    }
    fn pause(&self) {
        self.paused.send_replace(true);
    }
    fn resume(&self) {
        self.paused.send_replace(false);
    }
    fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            cpu_ns: self.cpu_ns.load(Ordering::Relaxed),
            memory_bytes: self.memory.current(),
            memory_peak: self.memory.peak(),
            http: self.http.as_ref().map(|h| h.snapshot()),
            ..Default::default()
        }
    }
}

impl WasmBackend {
    pub fn new(cache_dir: &Path, memory: WasmMemory) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(cache_dir).map_err(|e| RuntimeError::Io {
            path: cache_dir.display().to_string(),
            source: e,
        })?;
        let mut cfg = wasmtime::Config::new();
        cfg.epoch_interruption(true);
        cfg.wasm_component_model(true);
        let engine = Engine::new(&cfg)
            .map_err(|e| RuntimeError::Unsupported(format!("wasmtime engine: {e}")))?;
        let mut p1_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, |s: &mut P1State| &mut s.wasi)
            .map_err(|e| RuntimeError::Unsupported(format!("wasi p1 linker: {e}")))?;
        let mut p2_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2_linker)
            .map_err(|e| RuntimeError::Unsupported(format!("wasi p2 linker: {e}")))?;
        spawn_epoch_ticker(&engine, EPOCH_TICK);
        tracing::info!(
            "wasm guests may hold {} each without --memory, {} all together",
            format_size(memory.guest_default),
            format_size(memory.budget)
        );
        Ok(WasmBackend {
            engine,
            memory,
            budget: Arc::new(MemoryBudget::new(memory.budget)),
            functions: OnceLock::new(),
            cache_dir: cache_dir.to_path_buf(),
            compiled: Mutex::new(HashMap::new()),
            p1_linker,
            p2_linker,
        })
    }

    /// The function engine, made on first use.
    fn functions(&self) -> Result<&FnRuntime, RuntimeError> {
        self.functions
            .get_or_init(|| {
                let mut cfg = wasmtime::Config::new();
                cfg.epoch_interruption(true);
                cfg.wasm_component_model(true);
                let mut pool = wasmtime::PoolingAllocationConfig::default();
                pool.total_component_instances(POOL_INSTANCES)
                    .total_core_instances(POOL_INSTANCES * POOL_CORE_PER_COMPONENT)
                    .total_tables(POOL_INSTANCES * POOL_CORE_PER_COMPONENT)
                    .total_memories(POOL_INSTANCES);
                cfg.allocation_strategy(pool);
                let engine = Engine::new(&cfg).or_else(|e| {
                    // Hosts with a small address space (39-bit VAs) cannot
                    // reserve the pool; serve with on-demand allocation.
                    tracing::warn!(
                        "pooling allocator unavailable ({e:#}); functions will allocate on demand"
                    );
                    cfg.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
                    Engine::new(&cfg)
                });
                let engine = engine.map_err(|e| format!("wasmtime function engine: {e:#}"))?;
                let mut linker = wasmtime::component::Linker::new(&engine);
                wasmtime_wasi::p2::add_to_linker_async(&mut linker)
                    .and_then(|()| {
                        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                    })
                    .map_err(|e| format!("wasi-http linker: {e:#}"))?;
                spawn_epoch_ticker(&engine, FN_EPOCH_TICK);
                Ok(FnRuntime { engine, linker })
            })
            .as_ref()
            .map_err(|e| RuntimeError::Unsupported(e.clone()))
    }

    /// Is this prepared module a function (a wasi:http component)?
    pub fn is_function(&self, digest: &Digest) -> bool {
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .is_some_and(|c| matches!(**c, Compiled::Http(_)))
    }

    /// Is this module already compiled and hot?
    pub fn is_prepared(&self, digest: &Digest) -> bool {
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(digest)
    }

    /// Compile (or load from the disk cache) and keep the module hot.
    /// `name` is used in errors. CPU-heavy: call from a blocking context.
    pub fn prepare(&self, name: &str, digest: &Digest, bytes: &[u8]) -> Result<(), RuntimeError> {
        if self.is_prepared(digest) {
            return Ok(());
        }
        let invalid = |reason: String| RuntimeError::InvalidModule {
            name: name.to_string(),
            reason,
        };
        let mut kind =
            wasm_kind(bytes).ok_or_else(|| invalid("no WebAssembly magic number".into()))?;
        if kind == Kind::Component && exports_http_handler(bytes) {
            kind = Kind::Function;
        }
        let cached = self
            .cache_dir
            .join(format!("{}.{}.cwasm", digest.hex(), kind.ext()));
        let instantiate_err = |e: wasmtime::Error| RuntimeError::Instantiate {
            name: name.to_string(),
            reason: format!("{e:#}"),
        };
        let compiled = match kind {
            Kind::Module => {
                let module = self
                    .load_or_compile(
                        &self.engine,
                        &cached,
                        // SAFETY: files in the cache dir are written only by
                        // `Module::serialize` of this daemon; wasmtime checks the
                        // engine compatibility header and we recompile on mismatch.
                        |e, p| unsafe { Module::deserialize_file(e, p) },
                        |e| Module::new(e, bytes),
                        Module::serialize,
                    )
                    .map_err(|e| invalid(format!("{e:#}")))?;
                Compiled::Module(
                    self.p1_linker
                        .instantiate_pre(&module)
                        .map_err(instantiate_err)?,
                )
            }
            Kind::Component => {
                let component = self
                    .load_or_compile(
                        &self.engine,
                        &cached,
                        // SAFETY: as above, for components.
                        |e, p| unsafe { Component::deserialize_file(e, p) },
                        |e| Component::new(e, bytes),
                        Component::serialize,
                    )
                    .map_err(|e| invalid(format!("{e:#}")))?;
                let pre = self
                    .p2_linker
                    .instantiate_pre(&component)
                    .map_err(instantiate_err)?;
                let cmd = CommandPre::new(pre).map_err(|e| RuntimeError::Instantiate {
                    name: name.into(),
                    reason: format!("component does not export wasi:cli/run: {e:#}"),
                })?;
                Compiled::Component(cmd)
            }
            Kind::Function => {
                let fr = self.functions()?;
                let component = self
                    .load_or_compile(
                        &fr.engine,
                        &cached,
                        // SAFETY: as above, for components.
                        |e, p| unsafe { Component::deserialize_file(e, p) },
                        |e| Component::new(e, bytes),
                        Component::serialize,
                    )
                    .map_err(|e| invalid(format!("{e:#}")))?;
                let pre = fr
                    .linker
                    .instantiate_pre(&component)
                    .map_err(instantiate_err)?;
                let proxy = ProxyPre::new(pre).map_err(|e| RuntimeError::Instantiate {
                    name: name.into(),
                    reason: format!("component does not export wasi:http/incoming-handler: {e:#}"),
                })?;
                Compiled::Http(proxy)
            }
        };
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.clone(), Arc::new(compiled));
        Ok(())
    }

    /// Load a compiled artifact from the disk cache, or compile it and
    /// write the cache (a cache write failure only costs a recompile later).
    fn load_or_compile<T>(
        &self,
        engine: &Engine,
        cached: &Path,
        load: impl FnOnce(&Engine, &Path) -> wasmtime::Result<T>,
        compile: impl FnOnce(&Engine) -> wasmtime::Result<T>,
        serialize: impl FnOnce(&T) -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<T> {
        if let Ok(t) = load(engine, cached) {
            return Ok(t);
        }
        let t = compile(engine)?;
        if let Ok(data) = serialize(&t) {
            if let Err(e) = crate::fsutil::write_atomic(cached, &data) {
                tracing::warn!("cannot cache compiled module at {}: {e}", cached.display());
            }
        }
        Ok(t)
    }

    /// The memory cap of a guest of this spec.
    fn cap(&self, spec: &RunSpec) -> Cap {
        match spec.memory_limit {
            Some(n) => Cap::Flag(n),
            None => Cap::Default(self.memory.guest_default),
        }
    }

    /// The WASI context a spec grants, stdin aside.
    fn wasi_ctx(spec: &RunSpec) -> Result<WasiCtxBuilder, RuntimeError> {
        let mut b = WasiCtxBuilder::new();
        b.args(&spec.argv);
        for (k, v) in &spec.env {
            b.env(k, v);
        }
        for g in &spec.grants {
            let perms = if g.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&g.host, &g.guest, perms)
                .map_err(|e| RuntimeError::Grant {
                    host: g.host.display().to_string(),
                    reason: format!("{e:#}"),
                })?;
        }
        // Deny by default: no sockets at all.
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        b.stdout(io::SinkStream {
            sink: spec.output.clone(),
            stream: StdStream::Stdout,
        });
        b.stderr(io::SinkStream {
            sink: spec.output.clone(),
            stream: StdStream::Stderr,
        });
        Ok(b)
    }
}

impl Backend for WasmBackend {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn start(&self, mut spec: RunSpec) -> Result<Started, RuntimeError> {
        #[allow(irrefutable_let_patterns)]
        let Program::Wasm { module } = &spec.program
        else {
            return Err(RuntimeError::Unsupported(format!(
                "a Linux program in the Wasm backend ({})",
                spec.name
            )));
        };
        let compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(module)
            .cloned()
            .ok_or_else(|| RuntimeError::Instantiate {
                name: spec.name.clone(),
                reason: format!("module {module} was not prepared"),
            })?;
        if let Compiled::Http(pre) = &*compiled {
            let ctl = Ctl::new(true);
            let engine = self.functions()?.engine.clone();
            let cap = self.cap(&spec);
            return http::serve(engine, pre.clone(), spec, ctl, cap, self.budget.clone());
        }
        if let Some(p) = spec.ports.first() {
            return Err(RuntimeError::Publish {
                name: spec.name.clone(),
                port: format!("{}/{}", p.container_port, p.proto.as_str()),
                reason: "a Wasm command has no sockets to publish; only wasi:http components serve ports".into(),
            });
        }
        let ctl = Ctl::new(false);
        let cap = self.cap(&spec);
        let log_name: Arc<str> = spec.name.as_str().into();
        let mut wasi = Self::wasi_ctx(&spec)?;
        if let Some(stdin) = spec.stdin.take() {
            wasi.stdin(wasmtime_wasi::cli::AsyncStdinStream::new(stdin));
        }
        let (tx, rx) = oneshot::channel();
        let name = spec.name.clone();
        let run: Pin<Box<dyn Future<Output = ExitStatus> + Send>> = match &*compiled {
            Compiled::Module(pre) => {
                let state = P1State {
                    wasi: wasi.build_p1(),
                    limits: Limits::new(cap, &self.budget, &ctl.memory, &log_name),
                    ctl: ctl.clone(),
                };
                let mut store = Store::new(&self.engine, state);
                configure_store(&mut store);
                let pre = pre.clone();
                Box::pin(async move {
                    let result = async {
                        let instance = pre.instantiate_async(&mut store).await?;
                        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                        start.call_async(&mut store, ()).await
                    }
                    .await;
                    exit_status(result.map(|()| 0), store.data().limits.refused)
                })
            }
            Compiled::Component(pre) => {
                let state = P2State {
                    ctx: wasi.build(),
                    table: ResourceTable::new(),
                    limits: Limits::new(cap, &self.budget, &ctl.memory, &log_name),
                    ctl: ctl.clone(),
                };
                let mut store = Store::new(&self.engine, state);
                configure_store(&mut store);
                let pre = pre.clone();
                Box::pin(async move {
                    let result = async {
                        let cmd = pre.instantiate_async(&mut store).await?;
                        cmd.wasi_cli_run().call_run(&mut store).await
                    }
                    .await;
                    exit_status(
                        result.map(|r| if r.is_ok() { 0 } else { 1 }),
                        store.data().limits.refused,
                    )
                })
            }
            Compiled::Http(_) => unreachable!("functions are served above"),
        };
        let task_ctl = ctl.clone();
        tokio::spawn(async move {
            let status = tokio::select! {
                s = task_ctl.pausable(run) => s,
                () = task_ctl.killed() => ExitStatus { code: EXIT_KILLED, error: None, oom_killed: false },
            };
            let status = if task_ctl.is_killed() {
                ExitStatus {
                    code: EXIT_KILLED,
                    error: None,
                    oom_killed: false,
                }
            } else {
                status
            };
            tracing::debug!("wasm container {name} exited with {}", status.code);
            let _ = tx.send(status);
        });
        Ok(Started {
            control: ctl,
            exit: rx,
            ports: Vec::new(),
        })
    }
}

/// What every store's data gives the limiter and the epoch callback.
trait Guest: Send + 'static {
    fn limits(&mut self) -> &mut Limits;
    fn ctl(&self) -> &Ctl;
    /// When this instance must stop, if ever (a function's request deadline).
    fn deadline(&self) -> Option<std::time::Instant> {
        None
    }
}

impl Guest for P1State {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
    fn ctl(&self) -> &Ctl {
        &self.ctl
    }
}

impl Guest for P2State {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
    fn ctl(&self) -> &Ctl {
        &self.ctl
    }
}

fn configure_store<T: Guest>(store: &mut Store<T>) {
    store.limiter(|s| s.limits() as &mut dyn ResourceLimiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|cx| {
        let s = cx.data();
        // Checked here, in the guest, rather than by a timer alone: a
        // runtime busy with spinning guests polls its timers late.
        if s.ctl().is_killed() || s.deadline().is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(UpdateDeadline::Interrupt);
        }
        // Yield at every tick: lets pause/kill act and keeps the runtime fair.
        Ok(UpdateDeadline::Yield(1))
    });
}

/// A guest that dies after the limiter refused it memory is reported
/// OOM-killed, with the limit it hit after the trap message.
fn exit_status(result: wasmtime::Result<i64>, refused: Option<Refusal>) -> ExitStatus {
    match result {
        Ok(code) => ExitStatus {
            code,
            error: None,
            oom_killed: false,
        },
        Err(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                return ExitStatus {
                    code: exit.0 as i64,
                    error: None,
                    oom_killed: false,
                };
            }
            let mut msg = format!("{e:#}");
            if let Some(why) = refused {
                msg.push_str(&format!(" ({why})"));
            }
            ExitStatus {
                code: EXIT_TRAP,
                error: Some(msg),
                oom_killed: refused.is_some(),
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Module,
    Component,
    /// A component exporting `wasi:http/incoming-handler`.
    Function,
}

impl Kind {
    fn ext(self) -> &'static str {
        match self {
            Kind::Module => "module",
            Kind::Component => "component",
            Kind::Function => "function",
        }
    }
}

/// Does this component export `wasi:http/incoming-handler` at its top
/// level (the `wasi:http/proxy` world)? Reads only the export sections.
fn exports_http_handler(bytes: &[u8]) -> bool {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::Version { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentExportSection(reader)) if depth == 1 => {
                for export in reader.into_iter().flatten() {
                    if export.name.name.starts_with("wasi:http/incoming-handler@") {
                        return true;
                    }
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Core module (version 1) or component (layer 1) by header.
fn wasm_kind(b: &[u8]) -> Option<Kind> {
    if b.len() < 8 || &b[..4] != b"\0asm" {
        return None;
    }
    match b[4..8] {
        [1, 0, 0, 0] => Some(Kind::Module),
        [_, _, 1, 0] => Some(Kind::Component),
        _ => None,
    }
}

/// Is this a WebAssembly binary (module or component)?
pub fn is_wasm(b: &[u8]) -> bool {
    b.len() >= 4 && &b[..4] == b"\0asm"
}

fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("ketch-epoch".into())
        .spawn(move || loop {
            {
                let mut n = LIVE_STORES.0.lock().unwrap_or_else(|e| e.into_inner());
                while *n == 0 {
                    // Woken by the first store; the timeout notices a
                    // dropped engine.
                    n = LIVE_STORES
                        .1
                        .wait_timeout(n, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    if weak.upgrade().is_none() {
                        return;
                    }
                }
            }
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        })
        .expect("spawn epoch thread");
}

/// Polls the instance only while it is not paused. The instance yields at
/// every epoch tick, so a pause takes hold within one tick, and a guest
/// blocked in a host call (a sleep, a read) is not resumed until unpaused.
/// Time spent in its polls is the container's CPU time.
struct Pausable<F> {
    inner: F,
    paused: watch::Receiver<bool>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    cpu_ns: Arc<AtomicU64>,
}

impl<F: Future + Unpin> Future for Pausable<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        loop {
            if let Some(w) = self.waiting.as_mut() {
                match w.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => self.waiting = None,
                }
            }
            if *self.paused.borrow() {
                let mut rx = self.paused.clone();
                self.waiting = Some(Box::pin(async move {
                    let _ = rx.wait_for(|p| !*p).await;
                }));
                continue;
            }
            let t0 = std::time::Instant::now();
            let r = Pin::new(&mut self.inner).poll(cx);
            self.cpu_ns
                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            return r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::memory::DEFAULT_GUEST_CAP;

    #[test]
    fn finds_the_http_handler_export_of_a_function() {
        let function = wat::parse_str(
            r#"(component
                (core module $m (func (export "h")))
                (core instance $i (instantiate $m))
                (func $h (canon lift (core func $i "h")))
                (instance $ih (export "handle" (func $h)))
                (export "wasi:http/incoming-handler@0.2.0" (instance $ih)))"#,
        )
        .unwrap();
        assert!(exports_http_handler(&function));
        let command = wat::parse_str(
            r#"(component
                (core module $m (func (export "h")))
                (core instance $i (instantiate $m))
                (func $h (canon lift (core func $i "h")))
                (instance $ih (export "run" (func $h)))
                (export "wasi:cli/run@0.2.0" (instance $ih)))"#,
        )
        .unwrap();
        assert!(!exports_http_handler(&command));
    }

    const MIB: u64 = 1 << 20;

    /// Grows memory 1 MiB at a time until refused, then aborts (as an
    /// allocator failure would).
    const GROW_WAT: &str = r#"(module (memory 1)
      (func (export "_start")
        (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable))"#;
    /// Spins forever with 64 MiB of memory from its instantiation on.
    const HOG_WAT: &str = r#"(module (memory 1024) (func (export "_start") (loop $l (br $l))))"#;
    /// Spins forever with one page.
    const SPIN_WAT: &str = r#"(module (memory 1) (func (export "_start") (loop $l (br $l))))"#;

    struct Discard;

    impl crate::runtime::OutputSink for Discard {
        fn write(&self, _: StdStream, _: &[u8]) {}
    }

    fn backend(guest_default: u64, budget: u64) -> (tempfile::TempDir, WasmBackend) {
        let dir = tempfile::tempdir().unwrap();
        let memory = WasmMemory {
            guest_default,
            budget,
        };
        let b = WasmBackend::new(dir.path(), memory).unwrap();
        (dir, b)
    }

    fn prepared(b: &WasmBackend, wat: &str) -> Digest {
        let wasm = wat::parse_str(wat).unwrap();
        let digest = Digest::of(&wasm);
        b.prepare("test", &digest, &wasm).unwrap();
        digest
    }

    fn spec(name: &str, module: &Digest, memory_limit: Option<u64>) -> RunSpec {
        RunSpec {
            name: name.into(),
            image: "test".into(),
            program: Program::Wasm {
                module: module.clone(),
            },
            argv: vec![name.into()],
            env: Vec::new(),
            workdir: "/".into(),
            grants: Vec::new(),
            memory_limit,
            stdin: None,
            output: Arc::new(Discard),
            ports: Vec::new(),
            exposed: Vec::new(),
            http: Default::default(),
        }
    }

    async fn exit(started: Started) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(30), started.exit)
            .await
            .expect("the guest exits")
            .expect("an exit status")
    }

    /// Waits until the budget has `used` bytes taken.
    async fn budget_reaches(b: &WasmBackend, used: u64) {
        for _ in 0..3000 {
            if b.budget.used() == used {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("budget stuck at {} bytes, not {used}", b.budget.used());
    }

    #[test]
    fn limiter_counts_memories_and_tables_against_cap_and_budget() {
        let budget = Arc::new(MemoryBudget::new(10 * MIB));
        let gauge = Arc::new(MemoryGauge::default());
        let name: Arc<str> = "t".into();
        let mb = MIB as usize;
        let mut a = Limits::new(Cap::Flag(8 * MIB), &budget, &gauge, &name);
        // Two memories of 4 MiB: the cap is for their sum.
        assert!(a.memory_growing(0, 4 * mb, None).unwrap());
        assert!(a.memory_growing(0, 4 * mb, None).unwrap());
        assert!(!a.memory_growing(4 * mb, 5 * mb, None).unwrap());
        assert_eq!(a.refused, Some(Refusal::Cap(Cap::Flag(8 * MIB))));
        // Table elements count too; one table is bounded on its own.
        let mut b = Limits::new(Cap::Default(8 * MIB), &budget, &gauge, &name);
        assert!(b.table_growing(0, 1024, None).unwrap());
        assert_eq!(b.held, 1024 * TABLE_ELEMENT_BYTES);
        assert!(!b.table_growing(1024, MAX_TABLE_ELEMENTS + 1, None).unwrap());
        assert_eq!(b.refused, Some(Refusal::Table));
        // 8 MiB of the 10 are a's: b gets no 2 MiB more.
        assert!(!b.memory_growing(0, 2 * mb, None).unwrap());
        assert_eq!(b.refused, Some(Refusal::Budget(10 * MIB)));
        // Past a memory's own maximum: wasmtime fails it, not an OOM.
        let mut c = Limits::new(Cap::Default(8 * MIB), &budget, &gauge, &name);
        assert!(c.memory_growing(0, 2 * mb, Some(mb)).unwrap());
        assert_eq!((c.held, c.refused), (0, None));
        assert_eq!(gauge.current(), 8 * MIB + 1024 * TABLE_ELEMENT_BYTES);
        drop(a);
        assert!(b.memory_growing(0, 2 * mb, None).unwrap());
        drop((b, c));
        assert_eq!(budget.used(), 0);
        assert_eq!(gauge.current(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guest_without_memory_flag_stops_at_the_default_cap_alone() {
        let (_dir, b) = backend(DEFAULT_GUEST_CAP, 64 << 30);
        let grow = prepared(&b, GROW_WAT);
        let spin = prepared(&b, SPIN_WAT);
        let mut spinner = b.start(spec("spinner", &spin, None)).unwrap();
        let grower = b.start(spec("grower", &grow, None)).unwrap();
        let control = grower.control.clone();
        let status = exit(grower).await;
        assert_eq!(status.code, EXIT_TRAP, "{status:?}");
        assert!(status.oom_killed, "{status:?}");
        let error = status.error.unwrap_or_default();
        assert!(error.contains("--wasm-memory-default"), "{error}");
        // It got within a grow (1 MiB) of the cap, and not past it.
        let peak = control.stats().memory_peak;
        assert!(peak <= DEFAULT_GUEST_CAP, "{peak}");
        assert!(peak > DEFAULT_GUEST_CAP - MIB, "{peak}");
        // The other guest runs on.
        assert!(spinner.exit.try_recv().is_err());
        spinner.control.kill();
        let status = exit(spinner).await;
        assert_eq!((status.code, status.oom_killed), (EXIT_KILLED, false));
        budget_reaches(&b, 0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_guest_is_refused_while_the_first_holds_the_budget() {
        let (_dir, b) = backend(DEFAULT_GUEST_CAP, 100 * MIB);
        let hog = prepared(&b, HOG_WAT);
        let mut first = b.start(spec("first", &hog, None)).unwrap();
        budget_reaches(&b, 64 * MIB).await;
        // Its initial memory does not fit in what is left.
        let status = exit(b.start(spec("second", &hog, None)).unwrap()).await;
        assert_eq!(status.code, EXIT_TRAP, "{status:?}");
        assert!(status.oom_killed, "{status:?}");
        let error = status.error.unwrap_or_default();
        assert!(error.contains("--wasm-memory-budget"), "{error}");
        assert!(first.exit.try_recv().is_err(), "the first runs on");
        assert_eq!(b.budget.used(), 64 * MIB, "the refused one took nothing");
        // A kill gives the first one's share back; now the second fits.
        first.control.kill();
        assert_eq!(exit(first).await.code, EXIT_KILLED);
        assert_eq!(b.budget.used(), 0);
        let mut second = b.start(spec("second", &hog, None)).unwrap();
        budget_reaches(&b, 64 * MIB).await;
        assert!(second.exit.try_recv().is_err());
        second.control.kill();
        assert_eq!(exit(second).await.code, EXIT_KILLED);
        assert_eq!(b.budget.used(), 0);
    }

    #[test]
    fn detects_modules_and_components() {
        assert!(wasm_kind(b"\0asm\x01\0\0\0").is_some_and(|k| k == Kind::Module));
        assert!(wasm_kind(b"\0asm\x0d\0\x01\0").is_some_and(|k| k == Kind::Component));
        assert!(wasm_kind(b"#!/bin/sh\n").is_none());
    }
}
