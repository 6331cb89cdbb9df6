//! A sandbox: a plugin with its grants, limits and host functions, and
//! the calls into it. Every call gets a deadline (and fuel, if asked);
//! a call that fails drops its instance and leaves the sandbox usable.

use super::error::HostFuncError;
use super::grants::{Grants, Limits, Output, Reuse};
use super::imports::Imports;
use super::load::{Code, Plugin};
use super::metrics::{Ended, Metrics, Recorder};
use super::state::{P1State, Shared, State};
use super::{block_on, PluginError};
use crate::model::units::format_size;
use crate::runtime::wasm::control::{configure_store, Ctl, Guest};
use crate::runtime::wasm::limits::Refusal;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, Func, Instance, InstancePre, Lift, Lower, TypedFunc,
    Val,
};
use wasmtime::Store;

/// Idle instances a [`Reuse::Keep`] sandbox holds at most; more callers at
/// once get instances that are dropped after their call.
const MAX_IDLE: usize = 64;

/// How to make a [`Sandbox`]: everything is denied and every limit has
/// its default until set here.
pub struct SandboxBuilder {
    plugin: Plugin,
    grants: Grants,
    limits: Limits,
    reuse: Reuse,
    imports: Imports,
    trap_unknown: bool,
}

/// What a call returned, with the output it captured.
#[derive(Clone, Debug, PartialEq)]
pub struct Invoked {
    pub results: Vec<Val>,
    /// Empty unless the grants capture the stream.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// How a WASI command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutput {
    /// The exit code: 0, the code given to `exit`, or 1 for a
    /// `wasi:cli/run` that returned an error.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

enum Pre {
    Component(InstancePre<State>),
    Module(wasmtime::InstancePre<P1State>),
}

/// An instance kept between calls, with its store, and the function its
/// last call looked up (a warm caller calls the same one again).
type Kept = (Store<State>, Instance, Option<(ComponentExportIndex, Func)>);

/// The idle instances of a [`Reuse::Keep`] sandbox: one in a slot taken
/// and given back with one atomic swap each (what a warm caller uses), up
/// to [`MAX_IDLE`] more behind a mutex (for concurrent callers).
#[derive(Default)]
struct Idle {
    hot: AtomicPtr<Kept>,
    // Boxed: an instance moves between the slot and the list as one
    // pointer, allocated once.
    #[allow(clippy::vec_box)]
    more: Mutex<Vec<Box<Kept>>>,
}

// Instances move between threads through `Idle`.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Kept>();
};

impl Idle {
    fn take(&self) -> Option<Box<Kept>> {
        let p = self.hot.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !p.is_null() {
            // SAFETY: a non-null `hot` is a `Box::into_raw` of `put`, and
            // the swap left this caller its only owner.
            return Some(unsafe { Box::from_raw(p) });
        }
        self.more.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put(&self, kept: Box<Kept>) {
        let p = Box::into_raw(kept);
        let Err(_) =
            self.hot
                .compare_exchange(std::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
        else {
            return;
        };
        // SAFETY: `p` is the `Box::into_raw` just above, which the failed
        // exchange did not publish.
        let kept = unsafe { Box::from_raw(p) };
        let mut more = self.more.lock().unwrap_or_else(|e| e.into_inner());
        if more.len() < MAX_IDLE {
            more.push(kept);
        }
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        let p = *self.hot.get_mut();
        if !p.is_null() {
            // SAFETY: the slot owns what it holds; nobody else can reach it
            // while it is being dropped.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// A plugin ready to call, under its grants and limits. Cheap to clone;
/// `Send` and `Sync`: share it across threads and tasks.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    plugin: Plugin,
    shared: Shared,
    limits: Limits,
    reuse: Reuse,
    engine: wasmtime::Engine,
    pre: Pre,
    /// A component's pre-instance linked with blocking WASI, for blocking
    /// calls outside any async runtime.
    sync_pre: Option<InstancePre<State>>,
    /// The deadline of a blocking call, in epoch ticks.
    ticks: u64,
    exports: Mutex<HashMap<String, (ComponentExportIndex, ComponentFunc)>>,
    idle: Idle,
    sync_idle: Idle,
    metrics: Recorder,
}

impl SandboxBuilder {
    pub(super) fn new(plugin: Plugin) -> Self {
        SandboxBuilder {
            plugin,
            grants: Grants::default(),
            limits: Limits::default(),
            reuse: Reuse::default(),
            imports: Imports::default(),
            trap_unknown: false,
        }
    }

    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn reuse(mut self, reuse: Reuse) -> Self {
        self.reuse = reuse;
        self
    }

    /// Host functions the plugin may import.
    pub fn imports(mut self, imports: Imports) -> Self {
        self.imports = imports;
        self
    }

    /// Link functions the plugin imports from outside WASI that the host
    /// functions do not provide as functions that fail when called
    /// ([`PluginError::HostFunction`], "not provided by this host"),
    /// rather than refusing the plugin.
    pub fn trap_unknown_imports(mut self) -> Self {
        self.trap_unknown = true;
        self
    }

    /// Check the grants (within what the plugin declares; directories that
    /// exist) and link the plugin's imports. A plugin importing anything
    /// neither WASI nor these host functions provide is refused here.
    pub fn build(self) -> Result<Sandbox, PluginError> {
        let SandboxBuilder {
            plugin,
            grants,
            limits,
            reuse,
            imports,
            trap_unknown,
        } = self;
        let name = plugin.name().to_string();
        grants.check_within(&name, plugin.declared())?;
        let fuel = limits.fuel.is_some();
        let host = plugin.inner.host.clone();
        let engines = host
            .engines(fuel)
            .map_err(|e| PluginError::invalid(&name, e))?;
        let link = |e: wasmtime::Error| {
            let mut reason = format!("cannot link: {e:#}");
            if reason.contains("matching implementation was not found") {
                reason.push_str(
                    " (neither WASI nor the sandbox's Imports provide it: implement it with Imports::func, \
                     or build with trap_unknown_imports() to load the plugin with it failing when called)",
                );
            }
            PluginError::invalid(&name, reason)
        };
        let component_pre = |base: &wasmtime::component::Linker<State>, c| {
            if imports.is_empty() && !trap_unknown {
                return base.instantiate_pre(c).map_err(link);
            }
            let mut linker = base.clone();
            imports.define(&mut linker).map_err(link)?;
            if trap_unknown {
                imports
                    .define_missing_as_traps(&mut linker, c)
                    .map_err(link)?;
            }
            linker.instantiate_pre(c).map_err(link)
        };
        let (pre, sync_pre) = match plugin.code(fuel)? {
            Code::Component(c) => (
                Pre::Component(component_pre(&engines.linker, &c)?),
                Some(component_pre(&engines.sync_linker, &c)?),
            ),
            Code::Module(m) => {
                if !imports.is_empty() {
                    return Err(PluginError::invalid(
                        &name,
                        "is a core module: host functions are offered to components",
                    ));
                }
                (
                    Pre::Module(engines.p1.instantiate_pre(&m).map_err(link)?),
                    None,
                )
            }
        };
        let tick = super::FN_EPOCH_TICK.as_nanos().max(1);
        let ticks = u64::try_from(limits.timeout.as_nanos().div_ceil(tick))
            .unwrap_or(u64::MAX)
            .max(1);
        let shared = Shared {
            allow_http: grants.http.clone().into(),
            grants,
            memory: limits.memory,
            budget: host.inner.budget.clone(),
            ctl: Ctl::new(None),
            name: name.as_str().into(),
        };
        // Open the granted directories once now, so a missing one is an
        // error here rather than in every call.
        shared
            .wasi(&[], &super::state::Captured::new(0))
            .map_err(|reason| PluginError::Grant {
                plugin: name.clone(),
                reason,
            })?;
        Ok(Sandbox {
            inner: Arc::new(Inner {
                plugin,
                shared,
                limits,
                reuse,
                engine: engines.engine.clone(),
                pre,
                sync_pre,
                ticks,
                exports: Mutex::new(HashMap::new()),
                idle: Idle::default(),
                sync_idle: Idle::default(),
                metrics: Recorder::default(),
            }),
        })
    }
}

impl Sandbox {
    pub fn plugin(&self) -> &Plugin {
        &self.inner.plugin
    }

    /// Calls, traps, timeouts and latencies so far.
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics.snapshot()
    }

    /// Call the component export `export` (a root function name, or
    /// `interface#function`) with dynamic values.
    pub async fn call_async(&self, export: &str, args: &[Val]) -> Result<Vec<Val>, PluginError> {
        self.invoke_async(export, args).await.map(|i| i.results)
    }

    /// [`Sandbox::call_async`] for blocking code.
    pub fn call(&self, export: &str, args: &[Val]) -> Result<Vec<Val>, PluginError> {
        self.invoke(export, args).map(|i| i.results)
    }

    /// [`Sandbox::call_async`], with the output the call captured.
    pub async fn invoke_async(&self, export: &str, args: &[Val]) -> Result<Invoked, PluginError> {
        let (index, mut results) = self.prepare_call(export, args)?;
        let (results, stdout, stderr) = self
            .with_func(export, &index, |mut store, func| async move {
                let r = func.call_async(&mut store, args, &mut results).await;
                (store, r.map(|()| results))
            })
            .await?;
        Ok(Invoked {
            results,
            stdout,
            stderr,
        })
    }

    /// [`Sandbox::invoke_async`] for blocking code.
    pub fn invoke(&self, export: &str, args: &[Val]) -> Result<Invoked, PluginError> {
        if !self.blocking_ok() {
            return block_on(self.invoke_async(export, args));
        }
        let (index, mut results) = self.prepare_call(export, args)?;
        let (results, stdout, stderr) = self.with_func_sync(export, &index, |store, func| {
            func.call(store, args, &mut results).map(|()| results)
        })?;
        Ok(Invoked {
            results,
            stdout,
            stderr,
        })
    }

    /// Can this call block the calling thread in wasmtime's blocking
    /// form? Only for components, and only outside an async runtime,
    /// whose workers blocking WASI calls must not block.
    fn blocking_ok(&self) -> bool {
        self.inner.sync_pre.is_some() && tokio::runtime::Handle::try_current().is_err()
    }

    /// A typed handle on an export, for hosts that know its signature
    /// (written out, or generated from the plugin's WIT by
    /// `wasmtime::component::bindgen!`): `P` and `R` are tuples of Rust
    /// types, checked against the export's type here, once.
    pub fn typed<P, R>(&self, export: &str) -> Result<Typed<P, R>, PluginError>
    where
        P: ComponentNamedList + Lower + Send + Sync + 'static,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let (index, _) = self.export(export)?;
        let this = self.clone();
        let name = export.to_string();
        let checked = block_on(async move {
            let (mut store, instance) = this.instance(&name).await?;
            let ok = instance
                .get_func(&mut store, index)
                .map(|f| f.typed::<P, R>(&store));
            this.put_back(store, instance);
            match ok {
                Some(Ok(_)) => Ok(index),
                Some(Err(e)) => Err(PluginError::Arguments {
                    plugin: this.name().to_string(),
                    export: name,
                    reason: format!("{e:#}"),
                }),
                None => Err(this.no_export(&name)),
            }
        });
        Ok(Typed {
            sandbox: self.clone(),
            export: export.to_string(),
            index: checked?,
            types: PhantomData,
        })
    }

    /// Run the plugin as a WASI command (a preview 1 module's `_start`, or
    /// a component's `wasi:cli/run`) with `args` after its name, in a
    /// fresh instance.
    pub async fn run_async(&self, args: &[&str]) -> Result<RunOutput, PluginError> {
        let t0 = self.inner.metrics.start();
        let r = self.run_inner(args).await;
        self.record(t0, r.as_ref().map(drop));
        r
    }

    /// [`Sandbox::run_async`] for blocking code.
    pub fn run(&self, args: &[&str]) -> Result<RunOutput, PluginError> {
        block_on(self.run_async(args))
    }

    fn name(&self) -> &str {
        self.inner.plugin.name()
    }

    async fn run_inner(&self, args: &[&str]) -> Result<RunOutput, PluginError> {
        const RUN: &str = "run";
        let argv: Vec<String> = std::iter::once(self.name().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .collect();
        let output = self.inner.limits.output;
        let (result, refused, (stdout, stderr)) = match &self.inner.pre {
            Pre::Module(pre) => {
                let state = P1State::new(&self.inner.shared, &argv, output)
                    .map_err(|r| self.grant_error(r))?;
                let mut store = self.store(state)?;
                let r = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    start.call_async(&mut store, ()).await
                }
                .await
                .map(|()| 0);
                let data = store.data();
                (r, data.limits.refused, data.captured.take())
            }
            Pre::Component(pre) => {
                let state = State::new(&self.inner.shared, &argv, output)
                    .map_err(|r| self.grant_error(r))?;
                let mut store = self.store(state)?;
                let r = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let Ok(cmd) = wasmtime_wasi::p2::bindings::Command::new(&mut store, &instance)
                    else {
                        return Ok(None);
                    };
                    cmd.wasi_cli_run().call_run(&mut store).await.map(Some)
                }
                .await;
                let r = match r {
                    Ok(None) => {
                        return Err(PluginError::NoExport {
                            plugin: self.name().to_string(),
                            export: "wasi:cli/run".into(),
                            hint: " (it is not a WASI command: call its exports)".into(),
                        })
                    }
                    Ok(Some(r)) => Ok(if r.is_ok() { 0 } else { 1 }),
                    Err(e) => Err(e),
                };
                let data = store.data();
                (r, data.limits.refused, data.captured.take())
            }
        };
        let code = match result {
            Ok(code) => code,
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => exit.0,
                None => return Err(self.classify(RUN, e, refused)),
            },
        };
        Ok(RunOutput {
            code,
            stdout,
            stderr,
        })
    }

    /// The export's index and type, looked up once per name.
    fn export(&self, export: &str) -> Result<(ComponentExportIndex, ComponentFunc), PluginError> {
        let Pre::Component(pre) = &self.inner.pre else {
            return Err(PluginError::NoExport {
                plugin: self.name().to_string(),
                export: export.to_string(),
                hint: " (it is a WASI command module: run it)".into(),
            });
        };
        let mut cache = self.inner.exports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = cache.get(export) {
            return Ok(found.clone());
        }
        let component = pre.component();
        let found = match export.split_once('#') {
            Some((iface, func)) => component
                .get_export_index(None, iface)
                .and_then(|i| component.get_export(Some(&i), func)),
            None => component.get_export(None, export),
        };
        match found {
            Some((wasmtime::component::types::ComponentItem::ComponentFunc(ty), index)) => {
                cache.insert(export.to_string(), (index, ty.clone()));
                Ok((index, ty))
            }
            _ => Err(self.no_export(export)),
        }
    }

    /// The type of a function export: its parameters' names and types,
    /// and its results' types.
    pub fn func_type(&self, export: &str) -> Result<ComponentFunc, PluginError> {
        self.export(export).map(|(_, ty)| ty)
    }

    /// The names the plugin exports (functions and interfaces); none for
    /// a command module.
    pub fn exports(&self) -> Vec<String> {
        match &self.inner.pre {
            Pre::Component(pre) => pre
                .component()
                .component_type()
                .exports(&self.inner.engine)
                .map(|(n, _)| n.to_string())
                .collect(),
            Pre::Module(_) => Vec::new(),
        }
    }

    fn no_export(&self, export: &str) -> PluginError {
        let names = self.exports();
        PluginError::NoExport {
            plugin: self.name().to_string(),
            export: export.to_string(),
            hint: if names.is_empty() {
                String::new()
            } else {
                format!(" (it exports {})", names.join(", "))
            },
        }
    }

    /// The export's index, once its arguments are checked, and room for
    /// its results: what both forms of a dynamic call start with.
    fn prepare_call(
        &self,
        export: &str,
        args: &[Val],
    ) -> Result<(ComponentExportIndex, Vec<Val>), PluginError> {
        let (index, ty) = self.export(export)?;
        self.check_args(export, &ty, args)?;
        let results = vec![Val::Bool(false); ty.results().len()];
        Ok((index, results))
    }

    /// A fresh component instance's store data.
    fn fresh_state(&self) -> Result<State, PluginError> {
        State::new(&self.inner.shared, &[], self.inner.limits.output)
            .map_err(|r| self.grant_error(r))
    }

    /// The arguments' number and kinds against the export's parameters
    /// (wasmtime checks nested values as it lowers them).
    fn check_args(
        &self,
        export: &str,
        ty: &ComponentFunc,
        args: &[Val],
    ) -> Result<(), PluginError> {
        let bad = |reason: String| PluginError::Arguments {
            plugin: self.name().to_string(),
            export: export.to_string(),
            reason,
        };
        let params: Vec<_> = ty.params().collect();
        if params.len() != args.len() {
            return Err(bad(format!(
                "takes {} argument(s), got {}",
                params.len(),
                args.len()
            )));
        }
        for (i, ((pname, pty), arg)) in params.iter().zip(args).enumerate() {
            let want = type_kind(pty);
            let got = val_kind(arg);
            if want != got {
                return Err(bad(format!(
                    "argument {} ({pname}) must be a {want}, got a {got}",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// A store for one instance, with the limiter and the epoch callback.
    fn store<T: Guest>(&self, state: T) -> Result<Store<T>, PluginError> {
        let mut store = Store::new(&self.inner.engine, state);
        configure_store(&mut store);
        self.fuel(&mut store)?;
        Ok(store)
    }

    /// An idle instance (with [`Reuse::Keep`]) or a fresh one.
    async fn instance(&self, export: &str) -> Result<(Store<State>, Instance), PluginError> {
        if self.inner.reuse == Reuse::Keep {
            if let Some(k) = self.inner.idle.take() {
                let (store, instance, _) = *k;
                return Ok((store, instance));
            }
        }
        let Pre::Component(pre) = &self.inner.pre else {
            return Err(self.no_export(export));
        };
        let state = self.fresh_state()?;
        let mut store = self.store(state)?;
        store.data_mut().deadline = Some(Instant::now() + self.inner.limits.timeout);
        match pre.instantiate_async(&mut store).await {
            Ok(i) => Ok((store, i)),
            Err(e) => Err(self.classify(export, e, store.data().limits.refused)),
        }
    }

    /// After a call that succeeded: keep the instance, if kept at all.
    fn put_back(&self, mut store: Store<State>, instance: Instance) {
        if self.inner.reuse != Reuse::Keep {
            return;
        }
        store.data_mut().deadline = None;
        self.inner.idle.put(Box::new((store, instance, None)));
    }

    /// A store for blocking calls: the limiter, and the deadline as epoch
    /// ticks that trap (no callback: nothing to yield to).
    fn sync_store(&self, state: State) -> Result<Store<State>, PluginError> {
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits as &mut dyn wasmtime::ResourceLimiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.inner.ticks);
        self.fuel(&mut store)?;
        Ok(store)
    }

    /// A call's fuel, if it has any: before instantiation (which runs
    /// guest code too) and again before each call.
    fn fuel<T>(&self, store: &mut Store<T>) -> Result<(), PluginError> {
        if let Some(fuel) = self.inner.limits.fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| PluginError::invalid(self.name(), format!("{e:#}")))?;
        }
        Ok(())
    }

    /// [`Sandbox::instance`] for blocking calls.
    fn sync_instance(&self, export: &str) -> Result<Box<Kept>, PluginError> {
        if self.inner.reuse == Reuse::Keep {
            if let Some(k) = self.inner.sync_idle.take() {
                return Ok(k);
            }
        }
        let Some(pre) = &self.inner.sync_pre else {
            return Err(self.no_export(export));
        };
        let state = self.fresh_state()?;
        let mut store = self.sync_store(state)?;
        match pre.instantiate(&mut store) {
            Ok(i) => Ok(Box::new((store, i, None))),
            Err(e) => Err(self.classify(export, e, store.data().limits.refused)),
        }
    }

    /// [`Sandbox::with_func`] for blocking calls: no future, no fiber.
    fn with_func_sync<O>(
        &self,
        export: &str,
        index: &ComponentExportIndex,
        f: impl FnOnce(&mut Store<State>, Func) -> wasmtime::Result<O>,
    ) -> Result<(O, Vec<u8>, Vec<u8>), PluginError> {
        let t0 = self.inner.metrics.start();
        let r = (|| {
            let mut kept = self.sync_instance(export)?;
            let (store, instance, last) = &mut *kept;
            let func = match last {
                Some((i, f)) if i == index => *f,
                _ => {
                    let Some(f) = instance.get_func(&mut *store, index) else {
                        return Err(self.no_export(export));
                    };
                    *last = Some((*index, f));
                    f
                }
            };
            store.set_epoch_deadline(self.inner.ticks);
            self.fuel(store)?;
            let r = f(store, func);
            let (stdout, stderr) = self.take_output(store);
            match r {
                Ok(o) => {
                    if self.inner.reuse == Reuse::Keep {
                        self.inner.sync_idle.put(kept);
                    }
                    Ok((o, stdout, stderr))
                }
                Err(e) => Err(self.classify(export, e, store.data().limits.refused)),
            }
        })();
        self.record(t0, r.as_ref().map(drop));
        r
    }

    /// The output a call captured, if the grants capture any.
    fn take_output(&self, store: &Store<State>) -> (Vec<u8>, Vec<u8>) {
        let g = &self.inner.shared.grants;
        if g.stdout == Output::Capture || g.stderr == Output::Capture {
            store.data().captured.take()
        } else {
            (Vec::new(), Vec::new())
        }
    }

    /// Run `f` on the export in an instance, armed with this call's
    /// deadline and fuel; classify its failure, count it, and keep or
    /// drop the instance.
    async fn with_func<O, F, Fut>(
        &self,
        export: &str,
        index: &ComponentExportIndex,
        f: F,
    ) -> Result<(O, Vec<u8>, Vec<u8>), PluginError>
    where
        F: FnOnce(Store<State>, Func) -> Fut,
        Fut: Future<Output = (Store<State>, wasmtime::Result<O>)>,
    {
        let t0 = self.inner.metrics.start();
        let r = async {
            let (mut store, instance) = Box::pin(self.instance(export)).await?;
            let Some(func) = instance.get_func(&mut store, index) else {
                return Err(self.no_export(export));
            };
            store.data_mut().deadline = Some(Instant::now() + self.inner.limits.timeout);
            self.fuel(&mut store)?;
            let (store, r) = f(store, func).await;
            let (stdout, stderr) = self.take_output(&store);
            match r {
                Ok(o) => {
                    self.put_back(store, instance);
                    Ok((o, stdout, stderr))
                }
                Err(e) => Err(self.classify(export, e, store.data().limits.refused)),
            }
        }
        .await;
        self.record(t0, r.as_ref().map(drop));
        r
    }

    fn record(&self, t0: Option<Instant>, r: Result<(), &PluginError>) {
        let ended = match r {
            Ok(()) => Ended::Ok,
            Err(PluginError::Timeout { .. }) => Ended::Timeout,
            Err(
                PluginError::Trap { .. }
                | PluginError::Fuel { .. }
                | PluginError::Memory { .. }
                | PluginError::HostFunction { .. },
            ) => Ended::Trap,
            Err(_) => Ended::Refused,
        };
        self.inner.metrics.end(t0, ended);
    }

    fn grant_error(&self, reason: String) -> PluginError {
        PluginError::Grant {
            plugin: self.name().to_string(),
            reason,
        }
    }

    /// Why a call failed, in the caller's terms.
    fn classify(&self, export: &str, e: wasmtime::Error, refused: Option<Refusal>) -> PluginError {
        let plugin = self.name().to_string();
        let export = export.to_string();
        if let Some(h) = e.downcast_ref::<HostFuncError>() {
            return PluginError::HostFunction {
                plugin,
                export,
                func: h.func.clone(),
                message: h.message.clone(),
            };
        }
        if let Some(why) = refused {
            let reason = match why {
                Refusal::Budget(n) => format!(
                    "the {} all instances of this host may hold together is taken (HostBuilder::memory_budget)",
                    format_size(n)
                ),
                other => other.to_string(),
            };
            return PluginError::Memory {
                plugin,
                export,
                reason,
            };
        }
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => PluginError::Timeout {
                plugin,
                export,
                limit: self.inner.limits.timeout,
            },
            Some(wasmtime::Trap::OutOfFuel) => PluginError::Fuel {
                plugin,
                export,
                fuel: self.inner.limits.fuel.unwrap_or(0),
            },
            Some(t) => PluginError::Trap {
                plugin,
                export,
                message: t.to_string(),
            },
            None => PluginError::Trap {
                plugin,
                export,
                message: format!("{e:#}"),
            },
        }
    }
}

// What embedders rely on: every handle can be shared across threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Sandbox>();
    shared::<super::Host>();
    shared::<Plugin>();
    shared::<Typed<(String,), (String,)>>();
};

/// A typed export of a sandbox ([`Sandbox::typed`]).
pub struct Typed<P, R> {
    sandbox: Sandbox,
    export: String,
    index: ComponentExportIndex,
    types: PhantomData<fn(P) -> R>,
}

impl<P, R> Clone for Typed<P, R> {
    fn clone(&self) -> Self {
        Typed {
            sandbox: self.sandbox.clone(),
            export: self.export.clone(),
            index: self.index,
            types: PhantomData,
        }
    }
}

impl<P, R> Typed<P, R>
where
    P: ComponentNamedList + Lower + Send + Sync + 'static,
    R: ComponentNamedList + Lift + Send + Sync + 'static,
{
    pub async fn call_async(&self, params: P) -> Result<R, PluginError> {
        self.sandbox
            .with_func(&self.export, &self.index, |mut store, func| async move {
                let r = async {
                    let typed = func.typed::<P, R>(&store)?;
                    typed.call_async(&mut store, params).await
                }
                .await;
                (store, r)
            })
            .await
            .map(|(r, _, _)| r)
    }

    /// [`Typed::call_async`] for blocking code.
    pub fn call(&self, params: P) -> Result<R, PluginError> {
        if !self.sandbox.blocking_ok() {
            return block_on(self.call_async(params));
        }
        self.sandbox
            .with_func_sync(&self.export, &self.index, |store, func| {
                // SAFETY: `Sandbox::typed` checked `func.typed::<P, R>()`
                // on an instance of this sandbox's component, and every
                // instance it makes is of that same component, so this
                // export has that same type.
                let typed = unsafe { TypedFunc::<P, R>::new_unchecked(func) };
                typed.call(store, params)
            })
            .map(|(r, _, _)| r)
    }
}

/// The kind of a component type, as messages name it.
pub(super) fn type_kind(t: &wasmtime::component::Type) -> &'static str {
    use wasmtime::component::Type as T;
    match t {
        T::Bool => "bool",
        T::S8 => "s8",
        T::U8 => "u8",
        T::S16 => "s16",
        T::U16 => "u16",
        T::S32 => "s32",
        T::U32 => "u32",
        T::S64 => "s64",
        T::U64 => "u64",
        T::Float32 => "f32",
        T::Float64 => "f64",
        T::Char => "char",
        T::String => "string",
        T::List(_) => "list",
        T::Record(_) => "record",
        T::Tuple(_) => "tuple",
        T::Variant(_) => "variant",
        T::Enum(_) => "enum",
        T::Option(_) => "option",
        T::Result(_) => "result",
        T::Flags(_) => "flags",
        T::Own(_) | T::Borrow(_) => "resource",
        _ => "async value",
    }
}

/// The kind of a value, in [`type_kind`]'s words.
pub(super) fn val_kind(v: &Val) -> &'static str {
    match v {
        Val::Bool(_) => "bool",
        Val::S8(_) => "s8",
        Val::U8(_) => "u8",
        Val::S16(_) => "s16",
        Val::U16(_) => "u16",
        Val::S32(_) => "s32",
        Val::U32(_) => "u32",
        Val::S64(_) => "s64",
        Val::U64(_) => "u64",
        Val::Float32(_) => "f32",
        Val::Float64(_) => "f64",
        Val::Char(_) => "char",
        Val::String(_) => "string",
        Val::List(_) => "list",
        Val::Record(_) => "record",
        Val::Tuple(_) => "tuple",
        Val::Variant(..) => "variant",
        Val::Enum(_) => "enum",
        Val::Option(_) => "option",
        Val::Result(_) => "result",
        Val::Flags(_) => "flags",
        Val::Resource(_) => "resource",
        _ => "async value",
    }
}
