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
//!   that never calls the host.

mod io;

use super::{
    Backend, Control, ExitStatus, Program, RunSpec, RuntimeError, Started, EXIT_KILLED, EXIT_TRAP,
};
use crate::api::stream::StdStream;
use crate::model::Digest;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, InstancePre, Linker, Module, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch advances: the longest a guest runs between checks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Table elements allowed when no memory limit is set; bounds a hostile
/// module's `table.grow`.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

enum Compiled {
    Module(InstancePre<P1State>),
    Component(CommandPre<P2State>),
}

pub struct WasmBackend {
    engine: Engine,
    cache_dir: PathBuf,
    compiled: Mutex<HashMap<Digest, Arc<Compiled>>>,
    p1_linker: Linker<P1State>,
    p2_linker: wasmtime::component::Linker<P2State>,
}

/// Memory/table limits, remembering whether a grow was refused so a guest
/// that then dies can be reported as OOM-killed.
struct Limits {
    memory: Option<usize>,
    refused: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.memory.is_none_or(|m| desired <= m);
        self.refused |= !ok;
        Ok(ok)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= MAX_TABLE_ELEMENTS;
        self.refused |= !ok;
        Ok(ok)
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

/// Shared between the instance task and its [`Control`] handle.
struct Ctl {
    killed: AtomicBool,
    kill_notify: Notify,
    paused: watch::Sender<bool>,
}

impl Control for Ctl {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_notify.notify_one();
        // A paused instance must wake up to die.
        self.paused.send_replace(false);
    }
    fn pause(&self) {
        self.paused.send_replace(true);
    }
    fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl WasmBackend {
    pub fn new(cache_dir: &Path) -> Result<Self, RuntimeError> {
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
        spawn_epoch_ticker(&engine);
        Ok(WasmBackend {
            engine,
            cache_dir: cache_dir.to_path_buf(),
            compiled: Mutex::new(HashMap::new()),
            p1_linker,
            p2_linker,
        })
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
        let kind = wasm_kind(bytes).ok_or_else(|| invalid("no WebAssembly magic number".into()))?;
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
        cached: &Path,
        load: impl FnOnce(&Engine, &Path) -> wasmtime::Result<T>,
        compile: impl FnOnce(&Engine) -> wasmtime::Result<T>,
        serialize: impl FnOnce(&T) -> wasmtime::Result<Vec<u8>>,
    ) -> wasmtime::Result<T> {
        if let Ok(t) = load(&self.engine, cached) {
            return Ok(t);
        }
        let t = compile(&self.engine)?;
        if let Ok(data) = serialize(&t) {
            if let Err(e) = crate::fsutil::write_atomic(cached, &data) {
                tracing::warn!("cannot cache compiled module at {}: {e}", cached.display());
            }
        }
        Ok(t)
    }

    fn wasi_ctx(spec: &mut RunSpec) -> Result<WasiCtxBuilder, RuntimeError> {
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
        if let Some(stdin) = spec.stdin.take() {
            b.stdin(wasmtime_wasi::cli::AsyncStdinStream::new(stdin));
        }
        Ok(b)
    }
}

impl Backend for WasmBackend {
    fn name(&self) -> &'static str {
        "wasm"
    }

    fn start(&self, mut spec: RunSpec) -> Result<Started, RuntimeError> {
        let Program::Wasm { module } = &spec.program;
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
        let (paused, _) = watch::channel(false);
        let ctl = Arc::new(Ctl {
            killed: AtomicBool::new(false),
            kill_notify: Notify::new(),
            paused,
        });
        let memory = spec.memory_limit.map(|m| m as usize);
        let limits = || Limits {
            memory,
            refused: false,
        };
        let mut wasi = Self::wasi_ctx(&mut spec)?;
        let (tx, rx) = oneshot::channel();
        let name = spec.name.clone();
        let run: Pin<Box<dyn Future<Output = ExitStatus> + Send>> = match &*compiled {
            Compiled::Module(pre) => {
                let state = P1State {
                    wasi: wasi.build_p1(),
                    limits: limits(),
                    ctl: ctl.clone(),
                };
                let mut store = Store::new(&self.engine, state);
                configure_store(&mut store, |s| &mut s.limits, |s| &s.ctl);
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
                    limits: limits(),
                    ctl: ctl.clone(),
                };
                let mut store = Store::new(&self.engine, state);
                configure_store(&mut store, |s| &mut s.limits, |s| &s.ctl);
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
        };
        let task_ctl = ctl.clone();
        tokio::spawn(async move {
            let paused_rx = task_ctl.paused.subscribe();
            let status = tokio::select! {
                s = Pausable { inner: run, paused: paused_rx, waiting: None } => s,
                _ = task_ctl.kill_notify.notified() => ExitStatus { code: EXIT_KILLED, error: None, oom_killed: false },
            };
            let status = if task_ctl.killed.load(Ordering::SeqCst) {
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
        })
    }
}

fn configure_store<T: 'static>(
    store: &mut Store<T>,
    limits: fn(&mut T) -> &mut Limits,
    ctl: fn(&T) -> &Arc<Ctl>,
) {
    store.limiter(move |s| limits(s) as &mut dyn ResourceLimiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |cx| {
        if ctl(cx.data()).killed.load(Ordering::Relaxed) {
            return Ok(UpdateDeadline::Interrupt);
        }
        // Yield at every tick: lets pause/kill act and keeps the runtime fair.
        Ok(UpdateDeadline::Yield(1))
    });
}

fn exit_status(result: wasmtime::Result<i64>, refused: bool) -> ExitStatus {
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
            let msg = format!("{e:#}");
            ExitStatus {
                code: EXIT_TRAP,
                error: Some(msg),
                oom_killed: refused,
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Module,
    Component,
}

impl Kind {
    fn ext(self) -> &'static str {
        match self {
            Kind::Module => "module",
            Kind::Component => "component",
        }
    }
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

fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("ketch-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
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
struct Pausable<F> {
    inner: F,
    paused: watch::Receiver<bool>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
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
            return Pin::new(&mut self.inner).poll(cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_modules_and_components() {
        assert!(wasm_kind(b"\0asm\x01\0\0\0").is_some_and(|k| k == Kind::Module));
        assert!(wasm_kind(b"\0asm\x0d\0\x01\0").is_some_and(|k| k == Kind::Component));
        assert!(wasm_kind(b"#!/bin/sh\n").is_none());
    }
}
