//! The wasmtime engines and WASI linkers: one engine for commands, made
//! with the backend, and a pooling engine for functions, made on first use.

use super::command::P1State;
use super::control::{spawn_epoch_ticker, EPOCH_TICK, FN_EPOCH_TICK};
#[cfg(target_os = "linux")]
use super::linear;
use super::{http, net, WasmBackend};
use crate::model::units::format_size;
use crate::runtime::memory::{MemoryBudget, WasmMemory};
use crate::runtime::RuntimeError;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use wasmtime::{Engine, Linker};

/// Component instances the function pool holds: the most requests all
/// function containers of one ketchd can run at once.
const POOL_INSTANCES: u32 = 1000;
/// A Rust wasip2 component is a few core instances (the program plus
/// adapter shims), each with its own table.
const POOL_CORE_PER_COMPONENT: u32 = 4;

/// The engine and linker for function containers, made on first use: the
/// pooling allocator reserves its address space up front.
pub(super) struct FnRuntime {
    pub(super) engine: Engine,
    pub(super) linker: wasmtime::component::Linker<http::HttpState>,
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
        cfg.wasm_component_model_async(true);
        // Elsewhere, wasmtime's own memories and stacks (more mappings
        // per guest; density is measured on Linux).
        #[cfg(target_os = "linux")]
        linear::configure(&mut cfg);
        let engine = Engine::new(&cfg)
            .map_err(|e| RuntimeError::Unsupported(format!("wasmtime engine: {e}")))?;
        let mut p1_linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, |s: &mut P1State| &mut s.wasi)
            .map_err(|e| RuntimeError::Unsupported(format!("wasi p1 linker: {e}")))?;
        let mut p2_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2_linker)
            .and_then(|()| net::shadow_p2(&mut p2_linker))
            .and_then(|()| add_p3_to_linker(&mut p2_linker))
            .and_then(|()| net::shadow_p3(&mut p2_linker))
            .map_err(|e| RuntimeError::Unsupported(format!("wasi p2 linker: {e:#}")))?;
        spawn_epoch_ticker(&engine, EPOCH_TICK)
            .map_err(|e| RuntimeError::Unsupported(format!("wasm epoch thread: {e}")))?;
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
    pub(super) fn functions(&self) -> Result<&FnRuntime, RuntimeError> {
        self.functions
            .get_or_init(|| {
                let mut cfg = wasmtime::Config::new();
                cfg.epoch_interruption(true);
                cfg.wasm_component_model(true);
                cfg.wasm_component_model_async(true);
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
                let engine =
                    engine.map_err(|e| FnEngineError::new("wasmtime function engine", e))?;
                let mut linker = wasmtime::component::Linker::new(&engine);
                wasmtime_wasi::p2::add_to_linker_async(&mut linker)
                    .and_then(|()| {
                        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                    })
                    .and_then(|()| add_p3_to_linker(&mut linker))
                    .and_then(|()| wasmtime_wasi_http::p3::add_to_linker(&mut linker))
                    .map_err(|e| FnEngineError::new("wasi-http linker", e))?;
                spawn_epoch_ticker(&engine, FN_EPOCH_TICK).map_err(|e| FnEngineError {
                    what: "wasm function epoch thread",
                    source: Box::new(e),
                })?;
                Ok(FnRuntime { engine, linker })
            })
            .as_ref()
            .map_err(|e| RuntimeError::Unsupported(e.to_string()))
    }
}

/// WASI 0.3 beside 0.2 in a linker (the packages differ, so a component
/// may import both). Sockets deny everything unless the store's context
/// grants it, as a function's never does; a command's linker shadows them
/// with its grants and port space (`net::shadow_p3`).
fn add_p3_to_linker<T: wasmtime_wasi::WasiView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    use wasmtime_wasi::p3;
    p3::cli::add_to_linker(linker)?;
    p3::clocks::add_to_linker(linker)?;
    p3::filesystem::add_to_linker(linker)?;
    p3::random::add_to_linker(linker)?;
    p3::sockets::add_to_linker(linker)?;
    Ok(())
}

/// Why the function engine could not be made; kept, as it is made once.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub(super) struct FnEngineError {
    what: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl FnEngineError {
    fn new(what: &'static str, e: wasmtime::Error) -> Self {
        FnEngineError {
            what,
            source: format!("{e:#}").into(),
        }
    }
}
