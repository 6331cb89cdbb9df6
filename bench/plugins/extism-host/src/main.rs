//! Calls `upper` of an Extism PDK plugin (bench/plugins/extism-upper) through
//! Extism's Rust SDK: one warm plugin, `Plugin::call::<&str, String>`, timed
//! in rounds; and a fresh plugin per call (`Plugin::new_from_compiled`).
//!
//! usage: extism-host PLUGIN.wasm  (env: N, ROUNDS, WARMUP, FRESH_N, MAX_SECS)
//! Prints `warm LABEL NS...` (ns per call, one figure a round) and
//! `fresh LABEL P50_NS P99_NS CALLS`, which bench/plugins.sh reads.
use std::time::{Duration, Instant};

use extism::{CompiledPlugin, Plugin, PluginBuilder};

const INPUT: &str = "hello, plugin";
const WANT: &str = "HELLO, PLUGIN";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `call` up to `n` times or until `budget` is spent (the clock is read
/// every 256 calls); returns ns per call.
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

fn percentiles(mut ns: Vec<u64>) -> (u64, u64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)];
    (at(0.50), at(0.99))
}

fn main() -> Result<(), extism::Error> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| extism::Error::msg("usage: extism-host PLUGIN.wasm"))?;
    let n = env("N", 100_000);
    let rounds = env("ROUNDS", 5);
    let warmup = env("WARMUP", 1_000);
    let fresh_n = env("FRESH_N", 2_000);
    let budget = Duration::from_secs(env("MAX_SECS", 10));
    let wasm = std::fs::read(&path).map_err(|e| extism::Error::msg(format!("{path}: {e}")))?;

    // The plugin is a wasm32-wasip1 module: WASI on, as its PDK expects.
    let compiled = CompiledPlugin::new(PluginBuilder::new(wasm.as_slice()).with_wasi(true))?;
    let mut plugin = Plugin::new_from_compiled(&compiled)?;
    let out = plugin.call::<&str, String>("upper", INPUT)?;
    if out != WANT {
        return Err(extism::Error::msg(format!("upper returned {out:?}")));
    }

    let mut call = || {
        let out = plugin.call::<&str, String>("upper", INPUT).expect("upper");
        debug_assert_eq!(out, WANT);
        std::hint::black_box(out);
    };
    round(warmup, budget, &mut call);
    let ns: Vec<String> = (0..rounds)
        .map(|_| format!("{:.1}", round(n, budget, &mut call)))
        .collect();
    println!("warm extism {}", ns.join(" "));

    // A new plugin (instance, WASI context, Extism kernel) for every call.
    let start = Instant::now();
    let mut times = Vec::new();
    while (times.len() as u64) < fresh_n && start.elapsed() < budget {
        let t = Instant::now();
        let mut p = Plugin::new_from_compiled(&compiled)?;
        let out = p.call::<&str, String>("upper", INPUT)?;
        times.push(t.elapsed().as_nanos() as u64);
        drop(p);
        std::hint::black_box(out);
    }
    let (p50, p99) = percentiles(times.clone());
    println!("fresh extism {p50} {p99} {}", times.len());
    Ok(())
}
