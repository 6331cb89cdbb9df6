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
REL=$PWD/target/release

# Everything below lives in $T and is stopped by stop_all.
stop_all() {
  if [ -n "${CPID:-}" ]; then
    for id in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
    sleep 0.5
    for id in $(ctr_ task ls -q 2>/dev/null); do ctr_ task delete "$id" >/dev/null 2>&1 || true; done
    for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
    # A ketch shim ends about 3 s after its last task, removing its socket.
    for _ in $(seq 200); do pgrep -f "containerd-shim-ketch-v1 .*-address $T/c.sock" >/dev/null || break; sleep 0.05; done
    kill "$CPID" 2>/dev/null || true
    wait "$CPID" 2>/dev/null || true
    pkill -9 -f "containerd-shim-ketch-v1 .*-address $T/c.sock" 2>/dev/null || true
    rmdir /run/containerd/runc/bench 2>/dev/null || true
  fi
  [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null || true
  stop_ketchd
}
trap stop_all EXIT
ctr_() { ctr -a "$T/c.sock" -n bench "$@"; }

# A registry, and the two images in it.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' "$T/reg" "$REG" >"$T/reg.yml"
docker-registry serve "$T/reg.yml" >/dev/null 2>&1 &
RPID=$!
for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
mkdir -p "$T/bb/bin"
cp /bin/busybox "$T/bb/bin/busybox"
for a in true sleep sh; do ln -sf busybox "$T/bb/bin/$a"; done
printf 'FROM scratch\nCOPY bin /bin\nCMD ["/bin/true"]\n' >"$T/bb/Dockerfile"
$K build -q -t "$REG/busybox:latest" "$T/bb" >/dev/null
$K build -q -t "$REG/hello:latest" wasm-examples/hello >/dev/null
$K build -q -t "$REG/ticker:latest" wasm-examples/ticker >/dev/null
for i in busybox hello ticker; do $K push "$REG/$i:latest" >/dev/null; done

# containerd, finding the release shim first on its PATH.
printf 'version = 2\nroot = "%s/croot"\nstate = "%s/cstate"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s/c.sock"\n[ttrpc]\n  address = "%s/c.sock.ttrpc"\n' \
  "$T" "$T" "$T" "$T" >"$T/containerd.toml"
PATH="$REL:$PATH" KETCH_SHIM_CACHE="$T/cache" containerd --config "$T/containerd.toml" >"$T/containerd.log" 2>&1 &
CPID=$!
for _ in $(seq 200); do ctr_ version >/dev/null 2>&1 && break; sleep 0.05; done
ctr_ images pull --plain-http --platform wasi/wasm "$REG/hello:latest" >/dev/null
ctr_ images pull --plain-http --platform wasi/wasm "$REG/ticker:latest" >/dev/null
ctr_ images pull --plain-http "$REG/busybox:latest" >/dev/null
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
rss_of() { awk '/VmRSS/ {s += $2} END {print s + 0}' "$@" 2>/dev/null || echo 0; }
shim_pids() { pgrep -f "$1.*-address $T/c.sock" || true; }
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
