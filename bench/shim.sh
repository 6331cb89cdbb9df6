#!/usr/bin/env bash
# containerd-shim-ketch-v1 against containerd's runc shim, through one
# private containerd (Debian's 1.6, CRI plugin off) in the same run:
#   1. `ctr run --rm` of the hello Wasm image on io.containerd.ketch.v1,
#      against `ctr run --rm --runtime io.containerd.runc.v2` of busybox
#      `true`: RUNS runs each, interleaved; p50 and the ratio.
#   2. N idle containers under `ctr run -d` on each runtime (ticker every
#      60 s; busybox `sleep`): shim processes, and the resident memory of
#      the shims (and, for runc, of the containers' processes) per container.
# Both images are built by ketch, pushed to a local docker-registry and
# pulled by ctr. A measurement, not a test. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-30}
N=${N:-50}
. bench/lib.sh
build_release
start_ketchd

start_containerd_peer
# Warm both (the first ketch run compiles the module once, into the cache).
ctr_ run --rm --runtime io.containerd.ketch.v1 "$REG/hello:latest" warm-k >/dev/null
ctr_ run --rm --runtime io.containerd.runc.v2 "$REG/busybox:latest" warm-r >/dev/null
# The idle containers' module is compiled once too (a node's first run of
# an image); the figures below are of a warm cache.
ctr_ run -d --null-io --runtime io.containerd.ketch.v1 "$REG/ticker:latest" warm-t /ticker.wasm 60000 >/dev/null
ctr_ task kill -s SIGKILL warm-t >/dev/null
for _ in $(seq 100); do ctr_ task ls | grep -q 'warm-t.*STOPPED' && break; sleep 0.05; done
ctr_ task delete warm-t >/dev/null
ctr_ containers delete warm-t >/dev/null
sleep 4 # the shim that compiled it ends (idle 1 s, then 2 s for a late start)

echo "== ctr run --rm, $RUNS runs each (interleaved)"
python3 - "$T/c.sock" "$REG" "$RUNS" <<'PY'
import statistics, subprocess, sys, time
sock, reg, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctr = ["ctr", "-a", sock, "-n", "bench", "run", "--rm"]
cases = {
    "ketch shim (hello.wasm)": ["--runtime", "io.containerd.ketch.v1", f"{reg}/hello:latest"],
    "runc shim (busybox true)": ["--runtime", "io.containerd.runc.v2", f"{reg}/busybox:latest"],
}
times = {k: [] for k in cases}
for i in range(runs):
    for name, args in cases.items():
        t0 = time.perf_counter()
        subprocess.run(ctr + args + [f"r{i}"], check=True, stdout=subprocess.DEVNULL)
        times[name].append(time.perf_counter() - t0)
p50 = {k: statistics.median(v) * 1000 for k, v in times.items()}
for k, v in times.items():
    v = sorted(v)
    print(f"{k:26} p50 {p50[k]:7.1f} ms   p90 {v[int(len(v) * 0.9) - 1] * 1000:7.1f} ms")
k, r = p50.values()
print(f"ratio ketch/runc (p50): {k / r:.2f}x  (goal <= 0.5x)")
PY

echo "== $N idle containers under ctr run -d"
for i in $(seq 1 "$N"); do
  ctr_ run -d --null-io --runtime io.containerd.ketch.v1 "$REG/ticker:latest" "k$i" /ticker.wasm 60000 >/dev/null
done
sleep 1
kp=$(shim_pids containerd-shim-ketch-v1)
k_rss=$(rss_of $(for p in $kp; do echo "/proc/$p/status"; done))
for i in $(seq 1 "$N"); do
  ctr_ run -d --null-io --runtime io.containerd.runc.v2 "$REG/busybox:latest" "r$i" /bin/sleep 3600 >/dev/null
done
sleep 1
rp=$(shim_pids containerd-shim-runc-v2)
# A runc container's cost is its shim and its own process.
cpids=$(for p in $rp; do pgrep -P "$p" || true; done)
r_rss=$(rss_of $(for p in $rp $cpids; do echo "/proc/$p/status"; done))
python3 - "$N" "$(echo $kp | wc -w)" "$k_rss" "$(echo $rp | wc -w)" "$r_rss" <<'PY'
import sys
n, kn, krss, rn, rrss = map(int, sys.argv[1:])
print(f"ketch shim: {kn} process(es), {krss / 1024:.1f} MiB RSS, {krss / n:.0f} KiB per container (goal <= 2 processes, <= 512 KiB)")
print(f"runc shim:  {rn} shim processes, {rrss / 1024:.1f} MiB RSS with the containers' processes, {rrss / n:.0f} KiB per container")
print(f"ratio ketch/runc memory per container: {krss / rrss:.3f}x")
PY
