#!/usr/bin/env bash
# Throughput and tail latency of a wasi-http function, side by side in one run:
#   ketch run -d -p ... http-hello                 (per-request deadline on: 30s default)
#   ketch, same, --http-timeout 0                  (deadline off: what the limit costs)
#   wasmtime serve -O pooling-allocator -S cli     (the peer, same component)
#   wasmtime serve, same, -W timeout=30s           (the peer's own deadline, for scale)
# Load: hey -z ${DURATION} -c ${CONC}, pinned to core 0; every server pinned to
# core 1. Only loopback traffic. Prints requests/s and p99, and the ratios.
# A benchmark, not a test. Needs: hey (Debian), installed here if missing,
# and the wasmtime CLI of ketch's wasmtime major version (need_wasmtime).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONC=${CONC:-50}

if ! command -v hey >/dev/null; then
  apt-get update -qq && apt-get install -y -qq hey >/dev/null
fi
. bench/lib.sh
build_release
need_wasmtime
start_ketchd
# ketchd and every thread it makes later run on core 1.
taskset -a -pc 1 "$DPID" >/dev/null
WASM=wasm-examples/http-hello/http-hello.wasm
$K build -q -t bench-fn wasm-examples/http-hello >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.05; done; echo "nothing answers on port $1" >&2; return 1; }

# One load run against a port: "<requests/s> <p99 ms> <non-2xx>".
load() {
  local port=$1 out
  taskset -c 0 hey -n 2000 -c "$CONC" "http://127.0.0.1:$port/" >/dev/null
  out=$(taskset -c 0 hey -z "$DURATION" -c "$CONC" "http://127.0.0.1:$port/")
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p99 = float(re.search(r"99% in ([\d.]+) secs", out).group(1)) * 1000
codes = dict((int(c), int(n)) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
bad = sum(n for c, n in codes.items() if c != 200)
print(f"{rps:.0f} {p99:.2f} {bad}")
PY
}

# One load run against a ketch function: IMAGE, then extra run flags.
ketch_load() {
  local image=$1 port name=bench-fn-run; shift
  port=$(free_port)
  $K run -d --name "$name" -p "127.0.0.1:$port:80" --http-concurrency 1000 "$@" "$image" >/dev/null
  wait_port "$port"
  load "$port"
  $K rm -f "$name" >/dev/null
}
ON=$(ketch_load bench-fn)
OFF=$(ketch_load bench-fn --http-timeout 0)

serve() {
  local port=$1; shift
  taskset -c 1 wasmtime serve -O pooling-allocator -S cli "$@" --addr "127.0.0.1:$port" "${SERVE_WASM:-$WASM}" >"$T/serve.log" 2>&1 &
  SPID=$!
  wait_port "$port"
}
P_WT=$(free_port)
serve "$P_WT"
WT=$(load "$P_WT")
kill "$SPID"; wait "$SPID" 2>/dev/null || true

P_WTT=$(free_port)
serve "$P_WTT" -W timeout=30s
WTT=$(load "$P_WTT")
kill "$SPID"; wait "$SPID" 2>/dev/null || true

# The same pair for a WASI 0.3 function (wasi:http/handler@0.3), whose body
# a guest task streams after `handle` returns.
$K build -q -t bench-fn3 wasm-examples/p3-http >/dev/null
P3=$(ketch_load bench-fn3)
# Reuse against reuse: an instance serves 128 requests, as wasmtime
# serve's default (which also runs 16 of them at once in it).
P3R=$(ketch_load bench-fn3 --http-reuse 128)
P_WP3=$(free_port)
SERVE_WASM=wasm-examples/p3-http/p3-http.wasm serve "$P_WP3" -W component-model-async=y -S p3=y
WP3=$(load "$P_WP3")
kill "$SPID"; wait "$SPID" 2>/dev/null || true
# Like for like: a fresh instance per request, as ketch always has.
P_WP3F=$(free_port)
SERVE_WASM=wasm-examples/p3-http/p3-http.wasm serve "$P_WP3F" -W component-model-async=y -S p3=y --max-instance-reuse-count 1
WP3F=$(load "$P_WP3F")
kill "$SPID"; wait "$SPID" 2>/dev/null || true

python3 - "$ON" "$OFF" "$WT" "$WTT" "$DURATION" "$CONC" "$P3" "$WP3" "$WP3F" "$P3R" <<'PY'
import sys
on, off, wt, wtt = ([float(x) for x in a.split()] for a in sys.argv[1:5])
p3, wp3, wp3f, p3r = ([float(x) for x in a.split()] for a in sys.argv[7:11])
print(f"load: hey -z {sys.argv[5]} -c {sys.argv[6]} (core 0); servers on core 1; non-2xx in the last column")
rows = [("ketch, deadline 30s (default)", on), ("ketch, no deadline", off),
        ("wasmtime serve -O pooling-allocator", wt), ("wasmtime serve ... -W timeout=30s", wtt)]
for name, (rps, p99, bad) in rows:
    print(f"{name:38s} {rps:9.0f} req/s   p99 {p99:7.2f} ms   {bad:.0f}")
print(f"ratio ketch/wasmtime serve: requests/s {on[0]/wt[0]:.2f}   p99 {on[1]/wt[1]:.2f}")
print(f"cost of ketch's deadline:   {(1 - on[0]/off[0]) * 100:+.1f}% requests/s")
print(f"cost of wasmtime's -W timeout: {(1 - wtt[0]/wt[0]) * 100:+.1f}% requests/s")
for name, (rps, p99, bad) in [("WASI 0.3: ketch (instance per request)", p3),
                              ("WASI 0.3: wasmtime serve, reuse 1", wp3f),
                              ("WASI 0.3: ketch --http-reuse 128", p3r),
                              ("WASI 0.3: wasmtime serve (reuses)", wp3)]:
    print(f"{name:38s} {rps:9.0f} req/s   p99 {p99:7.2f} ms   {bad:.0f}")
print(f"ratio ketch/wasmtime serve, WASI 0.3, an instance per request: requests/s {p3[0]/wp3f[0]:.2f}   p99 {p3[1]/wp3f[1]:.2f}")
print(f"ratio ketch/wasmtime serve, WASI 0.3, reuse (128) against its default reuse: requests/s {p3r[0]/wp3[0]:.2f}   p99 {p3r[1]/wp3[1]:.2f}")
PY
