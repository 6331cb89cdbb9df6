//! Preparing a module: compiled once per digest, kept hot in memory as an
//! `InstancePre`, and cached on disk as `.cwasm` across restarts.

use super::detect::{component_kind, wasm_kind, Kind};
use super::http::Handler;
use super::{Compiled, WasmBackend};
use crate::model::Digest;
use crate::runtime::RuntimeError;
use std::path::Path;
use std::sync::Arc;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p3::bindings::CommandPre as P3CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

impl WasmBackend {
    /// Can this module serve published ports: is it a component (a
    /// function or a command with sockets), not a preview 1 module?
    pub fn serves_ports(&self, digest: &Digest) -> bool {
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .is_some_and(|c| !matches!(**c, Compiled::Module(_)))
    }

    /// Is this a function (a wasi-http component), served per request?
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
        if kind == Kind::Component {
            kind = component_kind(bytes);
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
                let module = module_cached(&self.engine, &cached, bytes)
                    .map_err(|e| invalid(format!("{e:#}")))?;
                Compiled::Module(
                    self.p1_linker
                        .instantiate_pre(&module)
                        .map_err(instantiate_err)?,
                )
            }
            Kind::Component => {
                let component = component_cached(&self.engine, &cached, bytes)
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
            Kind::Command3 => {
                let component = component_cached(&self.engine, &cached, bytes)
                    .map_err(|e| invalid(format!("{e:#}")))?;
                let pre = self.p2_linker.instantiate_pre(&component).map_err(|e| {
                    let mut reason = format!("{e:#}");
                    if reason.contains("wasi:sockets/") && reason.contains("@0.3") {
                        reason.push_str(
                            " (a WASI 0.3 component cannot have sockets yet: import wasi:sockets@0.2)",
                        );
                    }
                    RuntimeError::Instantiate {
                        name: name.to_string(),
                        reason,
                    }
                })?;
                let cmd = P3CommandPre::new(pre).map_err(|e| RuntimeError::Instantiate {
                    name: name.into(),
                    reason: format!("component does not export wasi:cli/run@0.3: {e:#}"),
                })?;
                Compiled::P3Component(cmd)
            }
            Kind::Function | Kind::Function3 => {
                let fr = self.functions()?;
                let component = component_cached(&fr.engine, &cached, bytes)
                    .map_err(|e| invalid(format!("{e:#}")))?;
                let pre = fr
                    .linker
                    .instantiate_pre(&component)
                    .map_err(instantiate_err)?;
                let handler = if kind == Kind::Function3 {
                    ServicePre::new(pre).map(Handler::P3).map_err(|e| {
                        RuntimeError::Instantiate {
                            name: name.into(),
                            reason: format!(
                                "component does not export wasi:http/handler@0.3: {e:#}"
                            ),
                        }
                    })?
                } else {
                    ProxyPre::new(pre)
                        .map(Handler::P2)
                        .map_err(|e| RuntimeError::Instantiate {
                            name: name.into(),
                            reason: format!(
                                "component does not export wasi:http/incoming-handler: {e:#}"
                            ),
                        })?
                };
                Compiled::Http(handler)
            }
        };
        self.compiled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.clone(), Arc::new(compiled));
        Ok(())
    }
}

/// A module compiled for `engine`, from the `.cwasm` at `cached` or by
/// compiling `bytes` (and then writing `cached`).
pub(crate) fn module_cached(
    engine: &Engine,
    cached: &Path,
    bytes: &[u8],
) -> wasmtime::Result<Module> {
    load_or_compile(
        engine,
        cached,
        // SAFETY: files in the cache dir are written only by `serialize`
        // of ketch's engines; wasmtime checks the engine compatibility
        // header and we recompile on mismatch.
        |e, p| unsafe { Module::deserialize_file(e, p) },
        |e| Module::new(e, bytes),
        Module::serialize,
    )
}

/// [`module_cached`] for components.
pub(crate) fn component_cached(
    engine: &Engine,
    cached: &Path,
    bytes: &[u8],
) -> wasmtime::Result<Component> {
    load_or_compile(
        engine,
        cached,
        // SAFETY: as in `module_cached`.
        |e, p| unsafe { Component::deserialize_file(e, p) },
        |e| Component::new(e, bytes),
        Component::serialize,
    )
}

/// Load a compiled artifact from the disk cache, or compile it and
/// write the cache (a cache write failure only costs a recompile later).
fn load_or_compile<T>(
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
