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

pub mod admission;
mod command;
pub(crate) mod control;
pub(crate) mod detect;
mod engine;
pub(crate) mod http;
pub(crate) mod io;
pub(crate) mod limits;
#[cfg(target_os = "linux")]
mod linear;
pub(crate) mod module;
mod net;
mod served;

use super::memory::{MemoryBudget, WasmMemory};
use super::{Backend, Program, RunSpec, RuntimeError, Started};
use crate::model::Digest;
use command::{P1State, P2State};
pub use control::{EPOCH_TICK, FN_EPOCH_TICK};
pub use detect::is_wasm;
use engine::FnRuntime;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use wasmtime::{Engine, InstancePre, Linker};
use wasmtime_wasi::p2::bindings::CommandPre;

/// A prepared module, ready to instantiate.
enum Compiled {
    Module(InstancePre<P1State>),
    Component(CommandPre<P2State>),
    /// A WASI 0.3 command: its `run` is an async export.
    P3Component(wasmtime_wasi::p3::bindings::CommandPre<P2State>),
    Http(http::Handler),
}

/// Runs Wasm containers as wasmtime instances inside ketchd.
pub struct WasmBackend {
    engine: Engine,
    memory: WasmMemory,
    /// Shared by the guests of both engines.
    budget: Arc<MemoryBudget>,
    functions: OnceLock<Result<FnRuntime, engine::FnEngineError>>,
    cache_dir: PathBuf,
    compiled: Mutex<HashMap<Digest, Arc<Compiled>>>,
    p1_linker: Linker<P1State>,
    p2_linker: wasmtime::component::Linker<P2State>,
}

impl Backend for WasmBackend {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn start(&self, spec: RunSpec) -> Result<Started, RuntimeError> {
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
            let engine = self.functions()?.engine.clone();
            let cap = self.cap(&spec);
            return http::serve(engine, pre.clone(), spec, cap, self.budget.clone());
        }
        self.start_command(spec, &compiled)
    }
}
