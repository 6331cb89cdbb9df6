//! Where a warm `Typed::call` of ketch::plugin spends its time beyond
//! wasmtime's own call: the path src/plugin/sandbox.rs takes for a
//! `Reuse::Keep` sandbox, rebuilt on plain wasmtime one piece at a time,
//! each row adding one piece to the row above. Every call is blocking,
//! driven by `wasmtime_wasi::runtime::in_tokio` as ketch's are.
//!
//! usage: pieces PLUGIN.wasm  (env: N, ROUNDS, WARMUP, MAX_SECS)
//! Prints a markdown table: ns per call (median of the rounds) and the
//! difference to the row above.
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{
    Component, ComponentExportIndex, Instance, InstancePre, Linker, ResourceTable, TypedFunc,
};
use wasmtime::{Config, Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

type Error = Box<dyn std::error::Error + Send + Sync>;
type P = (String,);
type R = (String,);

const INPUT: &str = "hello, plugin";
const TIMEOUT: Duration = Duration::from_secs(30);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The store data: WASI, a deadline and a memory limiter, as ketch's.
struct S {
    ctx: WasiCtx,
    table: ResourceTable,
    deadline: Option<Instant>,
    limiter: Limiter,
}

struct Limiter;

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _: usize, _: usize, _: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
    fn table_growing(&mut self, _: usize, _: usize, _: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl WasiView for S {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn new_store(engine: &Engine, ketch_like: bool) -> Store<S> {
    let mut store = Store::new(
        engine,
        S {
            ctx: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            deadline: None,
            limiter: Limiter,
        },
    );
    if ketch_like {
        // As runtime/wasm/control.rs configure_store.
        store.limiter(|s| &mut s.limiter as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|cx| {
            if cx.data().deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Yield(1))
        });
    }
    store
}

/// The engine as src/plugin/mod.rs makes it (epoch interruption, the
/// pooling allocator sized for 256 instances), or wasmtime's defaults.
fn new_engine(ketch_like: bool) -> Result<Engine, Error> {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true);
    if ketch_like {
        cfg.epoch_interruption(true);
        let mut p = wasmtime::PoolingAllocationConfig::default();
        p.total_component_instances(256)
            .total_core_instances(1024)
            .total_tables(1024)
            .total_memories(512)
            .total_stacks(256);
        cfg.allocation_strategy(p);
    }
    Ok(Engine::new(&cfg)?)
}

fn setup(
    path: &str,
    ketch_like: bool,
) -> Result<(Engine, InstancePre<S>, ComponentExportIndex), Error> {
    let engine = new_engine(ketch_like)?;
    let component = Component::from_file(&engine, path)?;
    let mut linker = Linker::<S>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let (_, index) = component
        .get_export(None, "upper")
        .ok_or("no export upper")?;
    Ok((engine.clone(), linker.instantiate_pre(&component)?, index))
}

/// ketch's `block_on` (src/plugin/mod.rs), as written there.
fn ketch_block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return in_tokio(f);
    }
    std::thread::scope(|s| match s.spawn(|| in_tokio(f)).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// What a `Reuse::Keep` sandbox holds, as sandbox.rs's `Inner`.
struct Sb {
    engine: Engine,
    pre: InstancePre<S>,
    index: ComponentExportIndex,
    idle: Mutex<Vec<(Store<S>, Instance)>>,
    captured: Arc<Mutex<(Vec<u8>, Vec<u8>)>>,
    calls: AtomicU64,
    latencies: Mutex<VecDeque<u64>>,
}

impl Sb {
    fn take(&self) -> (Vec<u8>, Vec<u8>) {
        std::mem::take(&mut *self.captured.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, took: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut l = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() == 4096 {
            l.pop_front();
        }
        l.push_back(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    fn put_back(&self, mut store: Store<S>, instance: Instance) {
        store.data_mut().deadline = None;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < 64 {
            idle.push((store, instance));
        }
    }

    /// As sandbox.rs: an idle instance, else a fresh one instantiated
    /// inline (its future is part of every call's future).
    async fn instance(&self) -> wasmtime::Result<(Store<S>, Instance)> {
        if let Some(k) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(k);
        }
        let mut store = new_store(&self.engine, true);
        store.data_mut().deadline = Some(Instant::now() + TIMEOUT);
        let i = self.pre.instantiate_async(&mut store).await?;
        Ok((store, i))
    }

    /// The same, the cold path's future boxed.
    async fn instance_boxed(&self) -> wasmtime::Result<(Store<S>, Instance)> {
        if let Some(k) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(k);
        }
        let mut store = new_store(&self.engine, true);
        store.data_mut().deadline = Some(Instant::now() + TIMEOUT);
        let i = Box::pin(self.pre.instantiate_async(&mut store)).await?;
        Ok((store, i))
    }
}

macro_rules! with_func {
    ($name:ident, $instance:ident) => {
        impl Sb {
            /// As sandbox.rs `with_func` and `Typed::call_async`.
            async fn $name(&self, params: P) -> wasmtime::Result<R> {
                let t0 = Instant::now();
                let r = async {
                    let (mut store, instance) = self.$instance().await?;
                    let func = instance
                        .get_func(&mut store, &self.index)
                        .ok_or_else(|| wasmtime::format_err!("no export"))?;
                    store.data_mut().deadline = Some(Instant::now() + TIMEOUT);
                    let (store, r) = async move {
                        let r = async {
                            let typed = func.typed::<P, R>(&store)?;
                            typed.call_async(&mut store, params).await
                        }
                        .await;
                        (store, r)
                    }
                    .await;
                    let _ = self.take();
                    match r {
                        Ok(o) => {
                            self.put_back(store, instance);
                            Ok(o)
                        }
                        Err(e) => Err(e),
                    }
                }
                .await;
                self.record(t0.elapsed());
                r
            }
        }
    };
}
with_func!(call_shaped, instance);
with_func!(call_shaped_boxed, instance_boxed);

/// One round of `call`: up to `n` calls or `budget`; ns per call.
fn round(call: &mut dyn FnMut(), n: u64, budget: Duration) -> f64 {
    let start = Instant::now();
    let mut done = 0u64;
    while done < n {
        let batch = 256.min(n - done);
        for _ in 0..batch {
            call();
        }
        done += batch;
        if start.elapsed() > budget {
            break;
        }
    }
    start.elapsed().as_nanos() as f64 / done as f64
}

fn arg() -> String {
    INPUT.to_string()
}

/// A store with an instance of the plugin and its typed `upper`.
fn ready(
    engine: &Engine,
    pre: &InstancePre<S>,
    ketch_like: bool,
) -> Result<(Store<S>, Instance, TypedFunc<P, R>), Error> {
    let mut store = new_store(engine, ketch_like);
    let inst = in_tokio(pre.instantiate_async(&mut store))?;
    let f: TypedFunc<P, R> = inst.get_typed_func(&mut store, "upper")?;
    Ok((store, inst, f))
}

type Row<'a> = (&'static str, Box<dyn FnMut() + 'a>);

fn main() -> Result<(), Error> {
    let path = std::env::args().nth(1).ok_or("usage: pieces PLUGIN.wasm")?;
    let (plain_engine, plain_pre, _) = setup(&path, false)?;
    // Everything after the first row: ketch's engine and store
    // configuration, and its epoch ticker (a thread bumping the epoch
    // every millisecond).
    let (engine, pre, index) = setup(&path, true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (engine, stop) = (engine.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                engine.increment_epoch();
            }
        })
    };
    let sb = Sb {
        engine: engine.clone(),
        pre: pre.clone(),
        index,
        idle: Mutex::new(Vec::new()),
        captured: Arc::new(Mutex::new((Vec::new(), Vec::new()))),
        calls: AtomicU64::new(0),
        latencies: Mutex::new(VecDeque::new()),
    };
    {
        let (store, inst, _) = ready(&engine, &pre, true)?;
        sb.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((store, inst));
    }
    println!(
        "future bytes: as sandbox.rs {}, its cold path boxed {}",
        std::mem::size_of_val(&sb.call_shaped((arg(),))),
        std::mem::size_of_val(&sb.call_shaped_boxed((arg(),))),
    );

    let (mut s1, _, f1) = ready(&plain_engine, &plain_pre, false)?;
    let (mut s2, _, f2) = ready(&engine, &pre, true)?;
    let (mut s3, i3, _) = ready(&engine, &pre, true)?;
    let (mut s4, i4, _) = ready(&engine, &pre, true)?;
    let sb = &sb;
    let mut rows: Vec<Row> = vec![
        ("wasmtime defaults, `TypedFunc` looked up once", Box::new(move || {
            std::hint::black_box(in_tokio(f1.call_async(&mut s1, (arg(),))).expect("upper"));
        })),
        ("+ ketch's engine and store: epoch interruption and its 1 ms ticker, pooling allocator, limiter", Box::new(move || {
            std::hint::black_box(in_tokio(f2.call_async(&mut s2, (arg(),))).expect("upper"));
        })),
        ("+ `get_func(index)` and `func.typed::<P, R>()` (a type check) every call", Box::new(move || {
            let out = in_tokio(async {
                let func = i3.get_func(&mut s3, &index).expect("upper");
                let typed = func.typed::<P, R>(&s3)?;
                typed.call_async(&mut s3, (arg(),)).await
            });
            std::hint::black_box(out.expect("upper"));
        })),
        ("+ three clock reads: t0, the deadline, the latency", Box::new(move || {
            let t0 = Instant::now();
            let out = in_tokio(async {
                let func = i4.get_func(&mut s4, &index).expect("upper");
                s4.data_mut().deadline = Some(Instant::now() + TIMEOUT);
                let typed = func.typed::<P, R>(&s4)?;
                typed.call_async(&mut s4, (arg(),)).await
            });
            std::hint::black_box(t0.elapsed());
            std::hint::black_box(out.expect("upper"));
        })),
        ("+ the idle pool: a mutex, pop and push of (Store, Instance)", Box::new(move || {
            let t0 = Instant::now();
            let out = in_tokio(async {
                let (mut store, inst) = sb.idle.lock().unwrap_or_else(|e| e.into_inner()).pop().expect("idle");
                let func = inst.get_func(&mut store, &sb.index).expect("upper");
                store.data_mut().deadline = Some(Instant::now() + TIMEOUT);
                let typed = func.typed::<P, R>(&store)?;
                let r = typed.call_async(&mut store, (arg(),)).await;
                store.data_mut().deadline = None;
                sb.idle.lock().unwrap_or_else(|e| e.into_inner()).push((store, inst));
                r
            });
            std::hint::black_box(t0.elapsed());
            std::hint::black_box(out.expect("upper"));
        })),
        ("+ captured output take, metrics record (a mutex each)", Box::new(move || {
            let t0 = Instant::now();
            let out = in_tokio(async {
                let (mut store, inst) = sb.idle.lock().unwrap_or_else(|e| e.into_inner()).pop().expect("idle");
                let func = inst.get_func(&mut store, &sb.index).expect("upper");
                store.data_mut().deadline = Some(Instant::now() + TIMEOUT);
                let typed = func.typed::<P, R>(&store)?;
                let r = typed.call_async(&mut store, (arg(),)).await;
                let _ = sb.take();
                sb.put_back(store, inst);
                r
            });
            sb.record(t0.elapsed());
            std::hint::black_box(out.expect("upper"));
        })),
        ("= the same written as sandbox.rs: nested futures (the cold path's `instantiate_async` inline), ketch's `block_on`", Box::new(move || {
            std::hint::black_box(ketch_block_on(sb.call_shaped((arg(),))).expect("upper"));
        })),
        ("  ... with the cold path boxed (`Box::pin(pre.instantiate_async(..))`)", Box::new(move || {
            std::hint::black_box(ketch_block_on(sb.call_shaped_boxed((arg(),))).expect("upper"));
        })),
        ("  ... with the whole call future boxed once before `block_on`", Box::new(move || {
            std::hint::black_box(ketch_block_on(Box::pin(sb.call_shaped((arg(),)))).expect("upper"));
        })),
    ];

    // Rows interleaved: each pass runs one round of every row, so drift in
    // the machine's speed reaches all rows alike.
    let n = env("N", 100_000);
    let budget = Duration::from_secs(env("MAX_SECS", 5));
    let passes = env("ROUNDS", 5) * env("REPEAT", 3);
    for (_, call) in rows.iter_mut() {
        round(call, env("WARMUP", 1_000), budget);
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for _ in 0..passes {
        for (i, (_, call)) in rows.iter_mut().enumerate() {
            ns[i].push(round(call, n, budget));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    let med: Vec<f64> = ns
        .iter_mut()
        .map(|v| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        })
        .collect();

    println!("| piece | ns/call (median of {passes}) | difference |");
    println!("|---|---|---|");
    let mut prev: Option<f64> = None;
    let mut shaped = None;
    for (i, (what, _)) in rows.iter().enumerate() {
        let ns = med[i];
        // The variants under the "=" row compare against it.
        let variant = what.starts_with("  ...");
        let base = if variant { shaped } else { prev };
        let diff = base.map(|b| format!("{:+.0}", ns - b)).unwrap_or_default();
        println!("| {what} | {ns:.0} | {diff} |");
        if what.starts_with('=') {
            shaped = Some(ns);
        }
        if !variant {
            prev = Some(ns);
        }
    }
    Ok(())
}
