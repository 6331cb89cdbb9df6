//! Calls `upper` of wasm-examples/plugin-upper through `ketch::plugin` and
//! through a hand-written wasmtime host (the same wasmtime), in one process.
//!
//! usage: ketch-host PLUGIN.wasm  (env: N, ROUNDS, WARMUP, FRESH_N, MAX_SECS;
//! ROWS, a comma-separated list of labels, runs only those, e.g. for perf)
//! Prints `warm LABEL NS...` (ns per call, one figure a round) and
//! `fresh LABEL P50_NS P99_NS CALLS`, which bench/plugins.sh reads.
//!
//! Every blocking call below is an async wasmtime call driven to completion
//! by `wasmtime_wasi::runtime::in_tokio`, as ketch's blocking calls are;
//! the `async` rows await the calls one after another inside one
//! `in_tokio`, and `wasmtime sync` uses wasmtime's synchronous calls.
use std::time::{Duration, Instant};

use ketch::plugin::{Host, Reuse, Val};
use wasmtime::component::{Component, Linker, ResourceTable, TypedFunc};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

type Error = Box<dyn std::error::Error + Send + Sync>;

const INPUT: &str = "hello, plugin";
const WANT: &str = "HELLO, PLUGIN";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Params {
    rows: Vec<String>,
    n: u64,
    rounds: u64,
    warmup: u64,
    fresh_n: u64,
    budget: Duration,
}

impl Params {
    fn wants(&self, kind: &str, label: &str) -> bool {
        self.rows.is_empty()
            || self
                .rows
                .iter()
                .any(|r| *r == format!("{kind}:{label}") || r == label)
    }
}

/// Runs `call` up to `n` times or until `budget` is spent (the clock is
/// read every 256 calls); returns ns per call.
fn round(n: u64, budget: Duration, mut call: impl FnMut()) -> f64 {
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

/// Warm-up, then `rounds` rounds of `call`; prints one `warm` line.
fn warm(label: &str, p: &Params, mut call: impl FnMut()) {
    if !p.wants("warm", label) {
        return;
    }
    round(p.warmup, p.budget, &mut call);
    let ns: Vec<String> = (0..p.rounds)
        .map(|_| format!("{:.1}", round(p.n, p.budget, &mut call)))
        .collect();
    println!("warm {label} {}", ns.join(" "));
}

/// The same for an async call, awaited in a loop inside one `in_tokio`.
fn warm_async<F, Fut>(label: &str, p: &Params, mut call: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if !p.wants("warm", label) {
        return;
    }
    let ns = in_tokio(async {
        let mut rounds = Vec::new();
        for r in 0..=p.rounds {
            let n = if r == 0 { p.warmup } else { p.n };
            let start = Instant::now();
            let mut done = 0u64;
            while done < n {
                let batch = 256.min(n - done);
                for _ in 0..batch {
                    call().await;
                }
                done += batch;
                if start.elapsed() > p.budget {
                    break;
                }
            }
            if r > 0 {
                rounds.push(format!(
                    "{:.1}",
                    start.elapsed().as_nanos() as f64 / done as f64
                ));
            }
        }
        rounds
    });
    println!("warm {label} {}", ns.join(" "));
}

/// One call at a time, each timed, up to `fresh_n` calls or the budget
/// (after 1/10 as many untimed); prints one `fresh` line with p50 and p99.
fn fresh(label: &str, p: &Params, mut call: impl FnMut()) {
    if !p.wants("fresh", label) {
        return;
    }
    let start = Instant::now();
    for _ in 0..p.fresh_n / 10 {
        call();
    }
    let mut times = Vec::new();
    while (times.len() as u64) < p.fresh_n && start.elapsed() < p.budget {
        let t = Instant::now();
        call();
        times.push(t.elapsed().as_nanos() as u64);
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!("fresh {label} {} {} {}", at(0.50), at(0.99), times.len());
}

fn check(out: &str) {
    assert_eq!(out, WANT, "upper returned {out:?}");
}

fn ketch_rows(path: &str, p: &Params) -> Result<(), Error> {
    let cache = std::env::temp_dir().join(format!("ketch-bench-plugins-{}", std::process::id()));
    let host = Host::builder().cache_dir(&cache).build()?;
    let plugin = host.load_file(path)?;

    let kept = plugin.sandbox().reuse(Reuse::Keep).build()?;
    let upper = kept.typed::<(String,), (String,)>("upper")?;
    check(&upper.call((INPUT.to_string(),))?.0);
    // What a blocking call moves into its runtime (and on, by value).
    println!(
        "info future-bytes ketch-typed {} ketch-dynamic {}",
        std::mem::size_of_val(&upper.call_async((INPUT.to_string(),))),
        std::mem::size_of_val(&kept.call_async("upper", &[])),
    );
    warm("ketch-typed", p, || {
        let (out,) = upper.call((INPUT.to_string(),)).expect("upper");
        debug_assert_eq!(out, WANT);
        std::hint::black_box(out);
    });
    let args = [Val::String(INPUT.into())];
    warm("ketch-dynamic", p, || {
        let out = kept.call("upper", &args).expect("upper");
        debug_assert_eq!(out, [Val::String(WANT.into())]);
        std::hint::black_box(out);
    });
    warm_async("ketch-typed-async", p, || async {
        let (out,) = upper.call_async((INPUT.to_string(),)).await.expect("upper");
        std::hint::black_box(out);
    });

    // Reuse::Fresh, the default: a new instance for every call.
    let fresh_box = plugin.sandbox().build()?;
    let fresh_upper = fresh_box.typed::<(String,), (String,)>("upper")?;
    check(&fresh_upper.call((INPUT.to_string(),))?.0);
    fresh("ketch", p, || {
        let (out,) = fresh_upper.call((INPUT.to_string(),)).expect("upper");
        std::hint::black_box(out);
    });
    drop((upper, kept, fresh_upper, fresh_box, plugin, host));
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}

/// The store data of the hand-written host: WASI with nothing granted.
struct Raw {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl Raw {
    fn new() -> Self {
        Raw {
            ctx: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for Raw {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

fn engine(pooling: bool) -> Result<Engine, Error> {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true);
    if pooling {
        cfg.allocation_strategy(wasmtime::PoolingAllocationConfig::default());
    }
    Ok(Engine::new(&cfg)?)
}

fn wasmtime_rows(path: &str, p: &Params) -> Result<(), Error> {
    // Async: WASI linked with add_to_linker_async, calls with call_async.
    let engine = engine(false)?;
    let component = Component::from_file(&engine, path)?;
    let mut linker = Linker::<Raw>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let pre = linker.instantiate_pre(&component)?;
    let mut store = Store::new(&engine, Raw::new());
    let instance = in_tokio(pre.instantiate_async(&mut store))?;
    let upper: TypedFunc<(String,), (String,)> = instance.get_typed_func(&mut store, "upper")?;
    check(&in_tokio(upper.call_async(&mut store, (INPUT.to_string(),)))?.0);
    println!(
        "info future-bytes wasmtime {}",
        std::mem::size_of_val(&upper.call_async(&mut store, (INPUT.to_string(),)))
    );
    warm("wasmtime", p, || {
        let (out,) = in_tokio(upper.call_async(&mut store, (INPUT.to_string(),))).expect("upper");
        std::hint::black_box(out);
    });
    {
        let store = std::cell::RefCell::new(&mut store);
        warm_async("wasmtime-async", p, || async {
            let mut s = store.borrow_mut();
            let (out,) = upper
                .call_async(&mut **s, (INPUT.to_string(),))
                .await
                .expect("upper");
            std::hint::black_box(out);
        });
    }
    fresh("wasmtime", p, || {
        let mut store = Store::new(&engine, Raw::new());
        let (out,) = in_tokio(async {
            let instance = pre.instantiate_async(&mut store).await?;
            let upper: TypedFunc<(String,), (String,)> =
                instance.get_typed_func(&mut store, "upper")?;
            upper.call_async(&mut store, (INPUT.to_string(),)).await
        })
        .expect("upper");
        std::hint::black_box(out);
    });

    // The same, with the pooling allocator ketch's hosts use.
    let pooled = self::engine(true)?;
    let component = Component::from_file(&pooled, path)?;
    let mut linker = Linker::<Raw>::new(&pooled);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let pre = linker.instantiate_pre(&component)?;
    fresh("wasmtime-pooling", p, || {
        let mut store = Store::new(&pooled, Raw::new());
        let (out,) = in_tokio(async {
            let instance = pre.instantiate_async(&mut store).await?;
            let upper: TypedFunc<(String,), (String,)> =
                instance.get_typed_func(&mut store, "upper")?;
            upper.call_async(&mut store, (INPUT.to_string(),)).await
        })
        .expect("upper");
        std::hint::black_box(out);
    });

    // Sync: WASI linked with add_to_linker_sync, calls with call.
    let mut linker = Linker::<Raw>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let component = Component::from_file(&engine, path)?;
    let mut store = Store::new(&engine, Raw::new());
    let instance = linker.instantiate(&mut store, &component)?;
    let upper: TypedFunc<(String,), (String,)> = instance.get_typed_func(&mut store, "upper")?;
    check(&upper.call(&mut store, (INPUT.to_string(),))?.0);
    warm("wasmtime-sync", p, || {
        let (out,) = upper.call(&mut store, (INPUT.to_string(),)).expect("upper");
        std::hint::black_box(out);
    });

    // Sync again, as a host must run untrusted code: epoch interruption
    // with a 1 ms ticker, and a deadline armed before every call.
    let mut cfg = Config::new();
    cfg.wasm_component_model(true);
    cfg.epoch_interruption(true);
    let engine = Engine::new(&cfg)?;
    let weak = engine.weak();
    std::thread::spawn(move || {
        while let Some(e) = weak.upgrade() {
            e.increment_epoch();
            drop(e);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let mut linker = Linker::<Raw>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let component = Component::from_file(&engine, path)?;
    let mut store = Store::new(&engine, Raw::new());
    store.epoch_deadline_trap();
    store.set_epoch_deadline(10_000);
    let instance = linker.instantiate(&mut store, &component)?;
    let upper: TypedFunc<(String,), (String,)> = instance.get_typed_func(&mut store, "upper")?;
    check(&upper.call(&mut store, (INPUT.to_string(),))?.0);
    warm("wasmtime-sync-deadline", p, || {
        store.set_epoch_deadline(10_000);
        let (out,) = upper.call(&mut store, (INPUT.to_string(),)).expect("upper");
        std::hint::black_box(out);
    });
    Ok(())
}

fn main() -> Result<(), Error> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: ketch-host PLUGIN.wasm")?;
    let p = Params {
        rows: std::env::var("ROWS")
            .unwrap_or_default()
            .split(',')
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
        n: env("N", 100_000),
        rounds: env("ROUNDS", 5),
        warmup: env("WARMUP", 1_000),
        fresh_n: env("FRESH_N", 2_000),
        budget: Duration::from_secs(env("MAX_SECS", 10)),
    };
    ketch_rows(&path, &p)?;
    wasmtime_rows(&path, &p)?;
    Ok(())
}
