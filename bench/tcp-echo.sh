#!/usr/bin/env bash
# A std::net TCP server in Wasm, side by side in one run:
#   ketch run -d -p PORT:8000 tcp-echo        (published through ketchd)
#   wasmtime run -S inherit-network tcp-echo  (the peer: the guest binds the host's port itself)
# The same component (wasm-examples/tcp-echo). Load: examples/tcp-load.rs,
# CLIENTS threads each connecting, sending BYTES, reading them back and
# closing, for SECS (at most MAX round trips), pinned to core 0; each server
# on core 1. Only loopback traffic. Prints connections/s and latency of
# each, and the ratio, for each size in SIZES, and writes docs/tcp-echo.svg
# (connections/s against the size, best round of each).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-8}
CLIENTS=${CLIENTS:-8}
MAX=${MAX:-400000}
SIZES=${SIZES:-64 1024 16384 65536}
OUT=${OUT:-docs/tcp-echo.svg}
ROUNDS=${ROUNDS:-3}

. bench/lib.sh
build_release
cargo build --release --example tcp-load 2>/dev/null
need_wasmtime
start_ketchd
taskset -a -pc 1 "$DPID" >/dev/null
$K build -q -t bench-tcp-echo wasm-examples/tcp-echo >/dev/null
LOAD=target/release/examples/tcp-load
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_echo() { for _ in $(seq 200); do $LOAD "$1" 1 2 8 1 2>/dev/null | grep -q '"done": 1' && return 0; sleep 0.05; done; echo "nothing echoes on $1" >&2; return 1; }

PK=$(free_port)
$K run -d --name bench-echo -p "127.0.0.1:$PK:8000" bench-tcp-echo >/dev/null
wait_echo "$PK"
PW=$(free_port)
PORT=$PW taskset -c 1 wasmtime run -S inherit-network -S tcp --env "PORT=$PW" wasm-examples/tcp-echo/tcp-echo.wasm >/dev/null 2>&1 &
WPID=$!
trap 'kill $WPID 2>/dev/null || true; stop_ketchd' EXIT
wait_echo "$PW"

run() { taskset -c 0 $LOAD "$1" "$CLIENTS" "$SECS" "$2" "$MAX"; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
echo "tcp-echo, $CLIENTS clients, ${SECS}s per run, $ROUNDS rounds; connections/s (p50 ms, p99 ms, failed)"
: >"$T/points"
for size in $SIZES; do
  for r in $(seq "$ROUNDS"); do
    k=$(run "$PK" "$size"); w=$(run "$PW" "$size")
    echo "$size $(field "$k" per_sec) $(field "$w" per_sec)" >>"$T/points"
    kr=$(field "$k" per_sec); wr=$(field "$w" per_sec)
    printf '%6s B round %s: ketch %6s/s (%s, %s, %s)   wasmtime %6s/s (%s, %s, %s)   ratio %.2fx\n' \
      "$size" "$r" "$kr" "$(field "$k" p50_ms)" "$(field "$k" p99_ms)" "$(field "$k" failed)" \
      "$wr" "$(field "$w" p50_ms)" "$(field "$w" p99_ms)" "$(field "$w" failed)" \
      "$(python3 -c "print($kr / max($wr, 1))")"
  done
done

python3 - "$T/points" "$OUT" "$CLIENTS" <<'PY'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
best = {}
for size, k, w in rows:
    bk, bw = best.get(size, (0, 0))
    best[size] = (max(bk, k), max(bw, w))
sizes = sorted(best)
W, H, L, R, T, B = 640, 360, 70, 20, 30, 50
import math
lx = [math.log2(s) for s in sizes]
X = lambda s: L + (math.log2(s) - lx[0]) / max(lx[-1] - lx[0], 1) * (W - L - R)
top = max(max(v) for v in best.values()) * 1.15
Y = lambda v: H - B - v / top * (H - T - B)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<text x="{W/2}" y="18" text-anchor="middle" font-size="14">tcp-echo: connections/s ({sys.argv[3]} clients, connect, echo, close)</text>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="#000"/>',
       f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="#000"/>',
       f'<text x="{W/2}" y="{H-12}" text-anchor="middle">bytes echoed per connection</text>']
for s in sizes:
    svg.append(f'<text x="{X(s):.0f}" y="{H-B+16}" text-anchor="middle">{int(s):,}</text>')
for i in range(5):
    v = top * i / 4
    svg.append(f'<text x="{L-6}" y="{Y(v)+4:.0f}" text-anchor="end">{v:,.0f}</text>')
for idx, (name, c) in enumerate([("ketch run -p", "#1f77b4"), ("wasmtime run -S inherit-network", "#d62728")]):
    pts = " ".join(f"{X(s):.1f},{Y(best[s][idx]):.1f}" for s in sizes)
    svg.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
    svg += [f'<circle cx="{X(s):.1f}" cy="{Y(best[s][idx]):.1f}" r="3" fill="{c}"/>' for s in sizes]
    svg.append(f'<text x="{L+10}" y="{T+14+16*idx}" fill="{c}">{name}</text>')
svg.append("</svg>")
open(sys.argv[2], "w").write("\n".join(svg) + "\n")
print(f"wrote {sys.argv[2]}")
PY
