#!/usr/bin/env bash
# Per-call cost of a trivial string export on a warm plugin, three hosts in
# one run, and the cost of a fresh instance per call:
#   ketch::plugin   plugin-upper (a wasip2 component), a Reuse::Keep sandbox:
#                   Typed::call, Sandbox::call (dynamic Vals), Typed::call_async;
#                   and the default Reuse::Fresh (p50/p99 of one call)
#   wasmtime        the same component through a hand-written host on the
#                   same wasmtime (48), WASI p2 linked async, TypedFunc::call_async
#                   driven like ketch's blocking calls; also awaited in a loop,
#                   and linked sync with TypedFunc::call
#   Extism          extism-upper (the same function with extism-pdk, a
#                   wasip1 module) through Extism's Rust SDK, Plugin::call::<&str, String>
# Each warm figure is the median of ROUNDS rounds of N calls (after WARMUP),
# each round stopped after MAX_SECS; the hosts run one after another, REPEAT
# times over. Prints ns per call, the ratios ketch/Extism and ketch/wasmtime,
# and the fresh-instance p50/p99. Then (PIECES=0 skips it) the cost of each
# piece of a warm ketch call beyond wasmtime's own, from src/bin/pieces.rs,
# which rebuilds sandbox.rs's path on plain wasmtime one piece at a time.
# A benchmark, not a test. Builds three crates of its own (bench/plugins/,
# each its own workspace, so Extism's wasmtime never meets ketch's) in
# TARGET_DIR; no network once built.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-1000}
FRESH_N=${FRESH_N:-2000}
MAX_SECS=${MAX_SECS:-5}
REPEAT=${REPEAT:-3}
PIECES=${PIECES:-1}
TARGET_DIR=${TARGET_DIR:-$PWD/target/bench-plugins}
export N ROUNDS WARMUP FRESH_N MAX_SECS REPEAT
# A backtrace captured with every internal error (anyhow does when these are
# set) tripled Extism's per-call time here: measure the hosts as shipped.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

UPPER=wasm-examples/plugin-upper/plugin-upper.wasm
[ -f "$UPPER" ] || bash wasm-examples/build.sh >/dev/null
rustup target add wasm32-wasip1 >/dev/null 2>&1 || true

build() {
  local dir=$1; shift
  cargo build -q --release --locked --manifest-path "bench/plugins/$dir/Cargo.toml" \
    --target-dir "$TARGET_DIR/$dir" "$@"
}
echo "building bench/plugins (release) in $TARGET_DIR ..." >&2
build extism-upper --target wasm32-wasip1
build extism-host
build ketch-host
EXTISM_WASM=$TARGET_DIR/extism-upper/wasm32-wasip1/release/extism_upper.wasm

OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for i in $(seq "$REPEAT"); do
  echo "run $i of $REPEAT ..." >&2
  "$TARGET_DIR/ketch-host/release/ketch-host" "$UPPER" >>"$OUT"
  "$TARGET_DIR/extism-host/release/extism-host" "$EXTISM_WASM" >>"$OUT"
done

python3 - "$OUT" <<'PY'
import os, statistics, sys
warm, fresh, info = {}, {}, {}
for line in open(sys.argv[1]):
    kind, label, *vals = line.split()
    if kind == "warm":
        warm.setdefault(label, []).extend(float(v) for v in vals)
    elif kind == "fresh":
        fresh.setdefault(label, []).append([float(v) for v in vals])
    elif kind == "info":
        info.setdefault(label, {}).update(zip(vals[::2], vals[1::2]))
med = {k: statistics.median(v) for k, v in warm.items()}
e = os.environ
print(f"N={e['N']} calls a round after {e['WARMUP']}, {e['ROUNDS']} rounds a run, "
      f"{e['REPEAT']} runs; input \"hello, plugin\"")
print()
rows = [
    ("ketch", "ketch-typed", "`Typed::call` (blocking), Reuse::Keep"),
    ("ketch", "ketch-dynamic", "`Sandbox::call` with `Val`s (blocking), Reuse::Keep"),
    ("ketch", "ketch-typed-async", "`Typed::call_async`, awaited in a loop"),
    ("wasmtime 48", "wasmtime", "`TypedFunc::call_async`, each call in `in_tokio` (as ketch's blocking calls)"),
    ("wasmtime 48", "wasmtime-async", "`TypedFunc::call_async`, awaited in a loop"),
    ("wasmtime 48", "wasmtime-sync", "`TypedFunc::call`, WASI linked sync"),
    ("wasmtime 48", "wasmtime-sync-deadline", "`TypedFunc::call`, WASI linked sync, an epoch deadline per call"),
    ("Extism", "extism", "`Plugin::call::<&str, String>`"),
]
print("| host | call | ns/call (median) | min-max of rounds |")
print("|---|---|---|---|")
for host, label, what in rows:
    if label in warm:
        v = warm[label]
        print(f"| {host} | {what} | {med[label]:.0f} | {min(v):.0f}-{max(v):.0f} |")
print()
def ratio(a, b):
    return f"{med[a] / med[b]:.2f}" if a in med and b in med else "n/a"
print("| ratio | value | goal |")
print("|---|---|---|")
print(f"| ketch typed / Extism | {ratio('ketch-typed', 'extism')} | <= 1.0 |")
print(f"| ketch dynamic / Extism | {ratio('ketch-dynamic', 'extism')} | |")
print(f"| ketch typed / wasmtime sync with a deadline (the same guarantee) | {ratio('ketch-typed', 'wasmtime-sync-deadline')} | <= 1.1 |")
print(f"| ketch typed / wasmtime call_async in in_tokio | {ratio('ketch-typed', 'wasmtime')} | |")
print(f"| ketch typed async / wasmtime async | {ratio('ketch-typed-async', 'wasmtime-async')} | |")
print(f"| ketch typed / wasmtime sync | {ratio('ketch-typed', 'wasmtime-sync')} | |")
print()
names = {"ketch": "ketch, Reuse::Fresh (`Typed::call`)",
         "wasmtime": "wasmtime, InstancePre::instantiate_async + call, on-demand allocator",
         "wasmtime-pooling": "wasmtime, the same, pooling allocator",
         "extism": "Extism, `Plugin::new_from_compiled` + call"}
print("| fresh instance per call | p50 | p99 | calls |")
print("|---|---|---|---|")
for label in ["ketch", "wasmtime", "wasmtime-pooling", "extism"]:
    if label in fresh:
        runs = fresh[label]
        p50 = statistics.median(r[0] for r in runs) / 1000
        p99 = statistics.median(r[1] for r in runs) / 1000
        n = sum(int(r[2]) for r in runs)
        print(f"| {names[label]} | {p50:.1f} us | {p99:.1f} us | {n} |")
if "future-bytes" in info:
    print()
    print("size of the future a blocking call moves into its runtime: " +
          ", ".join(f"{k} {v} bytes" for k, v in info["future-bytes"].items()))
if "ketch" in fresh:
    p50 = statistics.median(r[0] for r in fresh["ketch"]) / 1000
    print()
    print(f"goal: ketch fresh p50 <= 50 us: {'met' if p50 <= 50 else 'missed'} ({p50:.1f} us)")
PY
if [ "$PIECES" != 0 ]; then
  echo
  echo "A warm blocking call, piece by piece (sandbox.rs's path rebuilt on wasmtime 48):"
  echo
  "$TARGET_DIR/ketch-host/release/pieces" "$UPPER"
fi
