#!/usr/bin/env bash
# Churn: run-to-exit tasks per second, side by side in one run.
#   ketch: create, start, wait and delete of hello through the Engine API,
#          from 1 and from CLIENTS (8) clients on keep-alive connections
#          (examples/churn.rs), up to TASKS tasks or SECS seconds;
#   wasmtime run of the same module (precompiled), CLIENTS at a time;
#   runc through containerd: `ctr run --rm` of busybox `true`, CLIENTS at a
#          time (RUNC_TASKS of them: each costs a shim and a process).
# Prints tasks/s of each and the ratios. A measurement, not a test. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-8}
TASKS=${TASKS:-4000}
SECS=${SECS:-20}
PEER_TASKS=${PEER_TASKS:-400}
RUNC_TASKS=${RUNC_TASKS:-80}
. bench/lib.sh
need_wasmtime
build_release
cargo build --release --locked --example churn 2>/dev/null || cargo build --release --example churn
start_ketchd
$K build -q -t churn-hello wasm-examples/hello >/dev/null
$K run --rm churn-hello >/dev/null
sync
churn() { target/release/examples/churn "$T/k.sock" churn-hello "$1" "$TASKS" "$SECS"; }
k1=$(churn 1)
k8=$(churn "$CLIENTS")
# The peers are set up after ketch is measured: their images' writes
# would otherwise still be going to the disk under ketch's creates.
start_containerd_peer
ctr_ run --rm --runtime io.containerd.runc.v2 "$REG/busybox:latest" warm-r >/dev/null
wasmtime compile -o "$T/hello.cwasm" wasm-examples/hello/hello.wasm
sync
# Peers: N tasks, CLIENTS at a time; tasks per second of the whole batch.
rate() {
  local n=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  seq "$n" | xargs -P "$CLIENTS" -I{} "$@" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print(f'{$n / ($t1 - $t0):.1f}')"
}
wt=$(rate "$PEER_TASKS" wasmtime run --allow-precompiled "$T/hello.cwasm")
runc=$(rate "$RUNC_TASKS" ctr -a "$T/c.sock" -n bench run --rm --runtime io.containerd.runc.v2 "$REG/busybox:latest" "r{}")
python3 - "$k1" "$k8" "$wt" "$runc" "$CLIENTS" <<'PY'
import json, sys
k1, k8 = json.loads(sys.argv[1]), json.loads(sys.argv[2])
wt, runc, c = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
print(f"ketch API, 1 client:      {k1['per_sec']:8.1f} tasks/s  (p50 {k1['p50_ms']:.2f} ms, p99 {k1['p99_ms']:.2f} ms)")
print(f"ketch API, {c} clients:     {k8['per_sec']:8.1f} tasks/s  (p50 {k8['p50_ms']:.2f} ms, p99 {k8['p99_ms']:.2f} ms; goal >= 2000)")
print(f"wasmtime run, {c} at a time:{wt:8.1f} tasks/s   ratio ketch/wasmtime {k8['per_sec'] / wt:.2f}x")
print(f"ctr run --rm runc, {c} at a time:{runc:6.1f} tasks/s   ratio ketch/runc {k8['per_sec'] / runc:.2f}x")
PY
