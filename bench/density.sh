#!/usr/bin/env bash
# Density: idle Wasm containers (ticker, one line every 60 s) started through
# the Engine API into one ketchd, in steps up to the largest of NS. At each
# step: ketchd's resident memory per container, its memory mappings, and the
# mean create+start time of the step's containers, and the time of `ps -a`
# and of one `inspect` through the API. Then PEER_N idle
# containers of each peer: `wasmtime run` (a process each) and runc through
# containerd (`ctr run -d` of busybox `sleep`: a shim and a process each).
# Writes docs/density.svg (RSS per container and start time against N).
# A measurement, not a test. Needs root for the runc peer.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=${NS:-"1000 2000 5000 10000 20000 30000 40000"}
# The default budget counts every guest's whole initial memory: 1.06 MiB
# for a Rust program (its 1 MiB shadow stack, mostly untouched), so on 24
# GiB it admits ~11,000 of them. Past that is an explicit overcommit.
KETCHD_ARGS=${KETCHD_ARGS:---wasm-memory-budget 64g}
PEER_N=${PEER_N:-50}
OUT=${OUT:-docs/density.svg}
. bench/lib.sh
need_wasmtime
build_release
start_ketchd
$K build -q -t density-ticker wasm-examples/ticker >/dev/null
start_containerd_peer
python3 - "$T/k.sock" "$DPID" "$NS" "$T/steps.json" <<'PY'
import json, sys, time
sys.path.insert(0, "bench")
from api import Api
sock, pid, ns, out = sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3].split()], sys.argv[4]
call = Api(sock).call
def rss():
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1])
def maps():
    return sum(1 for _ in open(f"/proc/{pid}/maps"))
base, steps, have = rss(), [], 0
for n in ns:
    t0 = time.perf_counter(); refused = None
    while have < n:
        s, b = call("POST", "/containers/create", json.dumps({"Image": "density-ticker", "Cmd": ["60000"]}).encode())
        assert s == 201, b
        cid = json.loads(b)["Id"]
        s, b = call("POST", f"/containers/{cid}/start")
        if s != 204:
            refused = f"{s} {json.loads(b)['message']}"
            call("DELETE", f"/containers/{cid}")
            break
        have += 1
        started = cid
    took = time.perf_counter() - t0
    time.sleep(1)
    t = time.perf_counter(); s, b = call("GET", "/containers/json?all=1"); ps = (time.perf_counter() - t) * 1000
    # inspect of the last container started: the median of 21.
    times = []
    for _ in range(21):
        t = time.perf_counter(); s, _b = call("GET", f"/containers/{started}/json"); times.append((time.perf_counter() - t) * 1000)
        assert s == 200, _b
    inspect = sorted(times)[10]
    step = {"n": have, "rss_kib": rss(), "per_container_kib": (rss() - base) / have, "maps": maps(),
            "start_ms": took / max(1, have - (steps[-1]["n"] if steps else 0)) * 1000, "ps_ms": ps,
            "inspect_ms": inspect}
    steps.append(step)
    print(f"{have:6d} running: {step['per_container_kib']:6.1f} KiB each ({step['rss_kib']/1024:.0f} MiB), "
          f"{step['maps']} mappings, create+start {step['start_ms']:.2f} ms, ps -a {ps:.0f} ms, inspect {inspect:.2f} ms", flush=True)
    if refused:
        print(f"       the next start was refused: {refused}")
        break
json.dump({"base_kib": base, "steps": steps}, open(out, "w"))
PY

# Peers: PEER_N idle containers each.
wasmtime compile -o "$T/ticker.cwasm" wasm-examples/ticker/ticker.wasm
wpids=()
for i in $(seq "$PEER_N"); do
  wasmtime run --allow-precompiled "$T/ticker.cwasm" 60000 >/dev/null &
  wpids+=($!)
done
sleep 1
w_rss=$(rss_of $(for p in "${wpids[@]}"; do echo "/proc/$p/status"; done))
kill "${wpids[@]}" 2>/dev/null || true
wait "${wpids[@]}" 2>/dev/null || true
for i in $(seq "$PEER_N"); do
  ctr_ run -d --null-io --runtime io.containerd.runc.v2 "$REG/busybox:latest" "r$i" /bin/sleep 3600 >/dev/null
done
sleep 1
rp=$(shim_pids containerd-shim-runc-v2)
cpids=$(for p in $rp; do pgrep -P "$p" || true; done)
r_rss=$(rss_of $(for p in $rp $cpids; do echo "/proc/$p/status"; done))

python3 - "$T/steps.json" "$PEER_N" "$w_rss" "$r_rss" "$OUT" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); steps = d["steps"]
n, w, r, out = int(sys.argv[2]), int(sys.argv[3]) / int(sys.argv[2]), int(sys.argv[4]) / int(sys.argv[2]), sys.argv[5]
last = steps[-1]
print(f"wasmtime run, {n} idle processes: {w:8.0f} KiB per container   ratio ketch/wasmtime {last['per_container_kib'] / w:.3f}x")
print(f"runc via containerd, {n} idle:   {r:8.0f} KiB per container   ratio ketch/runc {last['per_container_kib'] / r:.3f}x")
# The chart: KiB per container (left axis) and create+start ms (right) against N.
W, H, L, R, T, B = 720, 400, 70, 70, 40, 50
xs = [s["n"] for s in steps]; xmax = max(xs) * 1.05
k = [s["per_container_kib"] for s in steps]; kmax = max(max(k) * 1.3, 1)
ms = [s["start_ms"] for s in steps]; mmax = max(max(ms) * 1.3, 0.1)
X = lambda v: L + (W - L - R) * v / xmax
YK = lambda v: H - B - (H - T - B) * v / kmax
YM = lambda v: H - B - (H - T - B) * v / mmax
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="22" text-anchor="middle" font-size="15">Idle Wasm containers in one ketchd</text>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="#1f77b4"/>',
       f'<line x1="{W-R}" y1="{T}" x2="{W-R}" y2="{H-B}" stroke="#d62728"/>',
       f'<text x="{W/2}" y="{H-12}" text-anchor="middle">containers running (N)</text>',
       f'<text x="18" y="{H/2}" fill="#1f77b4" text-anchor="middle" transform="rotate(-90 18 {H/2})">ketchd RSS per container (KiB)</text>',
       f'<text x="{W-18}" y="{H/2}" fill="#d62728" text-anchor="middle" transform="rotate(90 {W-18} {H/2})">create+start (ms)</text>']
for i in range(6):
    v = xmax / 1.05 * i / 5
    svg.append(f'<text x="{X(v):.0f}" y="{H-B+16}" text-anchor="middle">{v:,.0f}</text>')
    kv, mv = kmax * i / 5, mmax * i / 5
    svg.append(f'<text x="{L-6}" y="{YK(kv)+4:.0f}" text-anchor="end" fill="#1f77b4">{kv:.0f}</text>')
    svg.append(f'<text x="{W-R+6}" y="{YM(mv)+4:.0f}" fill="#d62728">{mv:.2f}</text>')
for ys, Y, c in ((k, YK, "#1f77b4"), (ms, YM, "#d62728")):
    pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(xs, ys))
    svg.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
    svg += [f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3" fill="{c}"/>' for x, y in zip(xs, ys)]
svg.append(f'<text x="{L+10}" y="{T+14}" fill="#555">peers, {n} idle each: wasmtime run {w:,.0f} KiB, runc via containerd {r:,.0f} KiB per container</text>')
svg.append("</svg>")
open(out, "w").write("\n".join(svg) + "\n")
print(f"chart: {out}")
PY
