#!/usr/bin/env bash
# Crash consistency, soaked: ITER times (default 100), start an operation
# (pull, build, load, run, rm, volume writes), SIGKILL ketchd at a random
# moment during it, start ketchd again and check:
#   - it starts (the API answers within 15 s);
#   - every blob in the store hashes to its name, and no ingest file is
#     left once it has started;
#   - every container directory has a whole record that `inspect` reads;
#     no tombstone survives a start;
# and, at the end, once every container is removed: no mount, cgroup,
# network namespace, veth or monitor process of this data root is left.
# Prints the figures. Bounded: each iteration waits at most a few seconds,
# the whole run at most SOAK_SECONDS (default 900). Needs root for Linux
# containers (skipped otherwise, as the figures say); docker-registry for
# pulls (.ci/setup installs it).
set -uo pipefail
cd "$(dirname "$0")/../.."
ITER=${ITER:-100}
SOAK_SECONDS=${SOAK_SECONDS:-900}
T=$(mktemp -d /tmp/ketch-soak.XXXXXX)
ROOT=$T/root
SOCK=$T/ketch.sock
[ -x target/debug/ketchd ] && [ -x target/debug/ketch ] || cargo build --quiet --bins
KETCHD=$PWD/target/debug/ketchd
K="$PWD/target/debug/ketch -H unix://$SOCK"
LINUX=0
[ "$(id -u)" = 0 ] && [ -x /bin/busybox ] && LINUX=1
REG_PID=""
KPID=""

cleanup() {
  if [ -n "$KPID" ] && kill -0 "$KPID" 2>/dev/null; then
    for id in $($K ps -aq 2>/dev/null); do $K rm -f "$id" >/dev/null 2>&1; done
    kill "$KPID" 2>/dev/null; wait "$KPID" 2>/dev/null
  fi
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null
  for b in $(python3 tests/owned_bridges.py "$ROOT"); do ip link del "$b" 2>/dev/null || true; done
  rm -rf "$T"
}
trap cleanup EXIT

start_ketchd() {
  "$KETCHD" --data-root "$ROOT" -H "unix://$SOCK" >>"$T/ketchd.log" 2>&1 &
  KPID=$!
  for _ in $(seq 300); do
    $K version >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}

fail() { echo "soak: FAILED at iteration $i: $*" >&2; tail -20 "$T/ketchd.log" >&2; exit 1; }

DATA=""
# Every blob hashes to its name.
fsck_blobs() {
  local bad=0 n=0
  for b in "$ROOT"/image/blobs/sha256/*; do
    [ -e "$b" ] || continue
    n=$((n + 1))
    [ "$(sha256sum "$b" | cut -d' ' -f1)" = "$(basename "$b")" ] || { echo "corrupt blob $b" >&2; bad=1; }
  done
  BLOBS=$n
  return $bad
}

fsck_containers() {
  local d id
  for d in "$ROOT"/containers/*; do
    [ -d "$d" ] || continue
    id=$(basename "$d")
    case "$id" in *.removing) echo "tombstone $id survived a start" >&2; return 1 ;; esac
    if [ ! -s "$d/container.jsonl" ]; then
      # A removal (of an --rm container, at start) deletes the record first
      # and the directory just after.
      sleep 1
      [ -e "$d" ] || continue
      echo "container $id has no record" >&2
      return 1
    fi
    # Its last whole line is the record (a line torn by a kill is passed over).
    python3 - "$d/container.jsonl" <<'PY' || { echo "container $id has no whole record" >&2; return 1; }
import json, sys
def whole(line):
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
sys.exit(0 if any(whole(l) for l in open(sys.argv[1], "rb").read().split(b"\n") if l) else 1)
PY
    $K inspect "$id" >/dev/null 2>&1 || { echo "container $id does not inspect" >&2; return 1; }
  done
}

# Fixtures: a Wasm image and its saved archive, a busybox context, and a
# registry on loopback holding both.
bash wasm-examples/build.sh >/dev/null 2>&1 || true
mkdir -p "$T/bb/bin" "$T/bb/etc"
if [ $LINUX = 1 ]; then
  cp /bin/busybox "$T/bb/bin/"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$T/bb/bin/$a"; done
fi
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$T/bb/etc/passwd"
printf 'root:x:0:\n' >"$T/bb/etc/group"
printf 'FROM scratch\nCOPY bin /bin\nCOPY etc /etc\nCMD ["sh"]\n' >"$T/bb/Dockerfile"
mkdir -p "$T/run-ctx"
printf 'FROM busybox\nRUN echo $RANDOM > /stamp && sleep 0.2\n' >"$T/run-ctx/Dockerfile"

start_ketchd || { echo "ketchd did not start" >&2; exit 1; }
$K build -q -t hello wasm-examples/hello >/dev/null || exit 1
$K save -o "$T/hello.tar" hello || exit 1
[ $LINUX = 1 ] && { $K build -q -t busybox "$T/bb" >/dev/null || exit 1; }
PULL=0
if command -v docker-registry >/dev/null; then
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$T/reg"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$T/reg" "$PORT" >"$T/reg.yml"
  docker-registry serve "$T/reg.yml" >/dev/null 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.05; done
  # What is pulled exists only in the registry: 16 MiB that must travel.
  mkdir -p "$T/data"
  head -c 16M /dev/urandom >"$T/data/blob"
  printf 'FROM scratch\nCOPY blob /blob\n' >"$T/data/Dockerfile"
  DATA="127.0.0.1:$PORT/soak/data:1"
  $K build -q -t "$DATA" "$T/data" >/dev/null && $K push "$DATA" >/dev/null && $K rmi "$DATA" >/dev/null && PULL=1
fi

ops=(build load run rm volume)
[ $PULL = 1 ] && ops+=(pull)
[ $LINUX = 1 ] && ops+=(run-linux build-run rm-linux)
declare -A count
declare -A took
op() {
  case $1 in
    build) $K build -q -t "b$2" wasm-examples/hello ;;
    load) $K load -i "$T/hello.tar" ;;
    pull) $K rmi -f "$DATA" >/dev/null 2>&1; $K pull "$DATA" ;;
    run) $K run -d --name "w$2" hello ;;
    rm) for id in $($K ps -aq); do $K rm -f "$id"; done ;;
    volume) $K volume create "v$2" && $K volume rm "v$2" ;;
    run-linux) $K run -d --name "l$2" busybox sleep 30 ;;
    build-run) $K build -q -t "r$2" "$T/run-ctx" ;;
    rm-linux) for id in $($K ps -q); do $K rm -f "$id"; done ;;
  esac >/dev/null 2>&1
}
# How long each operation takes undisturbed: kills are drawn within it.
for o in "${ops[@]}"; do
  s=$(date +%s%N)
  op "$o" 0
  took[$o]=$(( ($(date +%s%N) - s) / 1000000 + 1 ))
done
t0=$(date +%s)
max_start_ms=0
mid=0
for i in $(seq "$ITER"); do
  [ $(( $(date +%s) - t0 )) -lt "$SOAK_SECONDS" ] || { echo "soak: time bound reached after $((i - 1)) iterations"; break; }
  op=${ops[RANDOM % ${#ops[@]}]}
  before=$($K ps -aq --no-trunc 2>/dev/null)
  count[$op]=$(( ${count[$op]:-0} + 1 ))
  op "$op" "$i" &
  op_pid=$!
  # At a random moment within the operation's undisturbed time.
  ms=$(( RANDOM % ${took[$op]} ))
  sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
  # Was the operation still under way when ketchd died?
  kill -0 "$op_pid" 2>/dev/null && mid=$((mid + 1))
  kill -9 "$KPID" 2>/dev/null
  wait "$KPID" 2>/dev/null
  kill "$op_pid" 2>/dev/null
  wait "$op_pid" 2>/dev/null
  s=$(date +%s%N)
  start_ketchd || fail "ketchd did not start after a kill during $op"
  ms=$(( ($(date +%s%N) - s) / 1000000 ))
  [ $ms -gt $max_start_ms ] && max_start_ms=$ms
  fsck_blobs || fail "after a kill during $op"
  fsck_containers || fail "after a kill during $op"
  # No container is lost: what existed before survives anything but rm.
  case $op in rm | rm-linux) ;; *)
    for id in $before; do
      $K inspect "$id" >/dev/null 2>&1 || fail "container $id was lost by a kill during $op"
    done ;;
  esac
  ls "$ROOT/image/ingest" 2>/dev/null | grep -v '^partial-' | grep -q . && fail "ingest files left after a start"
done
done_iter=$((i))

# The end: remove everything, stop ketchd, and look for leaks.
for id in $($K ps -aq); do $K rm -f "$id" >/dev/null 2>&1; done
kill "$KPID"; wait "$KPID" 2>/dev/null; KPID=""
sleep 0.5
leaks=0
grep -q "$ROOT" /proc/mounts && { echo "leaked mounts:" >&2; grep "$ROOT" /proc/mounts >&2; leaks=1; }
pgrep -f "ketch-monitor.*$ROOT" >/dev/null && { echo "leaked monitor processes" >&2; leaks=1; }
for c in /sys/fs/cgroup/*/ketch /sys/fs/cgroup/ketch; do
  [ -d "$c" ] || continue
  for id in $(ls "$ROOT/containers" 2>/dev/null); do
    [ -d "$c/$id" ] && { echo "leaked cgroup $c/$id" >&2; leaks=1; }
  done
done
for d in "$ROOT"/containers/*/; do
  [ -d "$d" ] || continue
  id=$(basename "$d")
  ip -o link show 2>/dev/null | grep -q "vk${id:0:11}" && { echo "leaked veth of $id" >&2; leaks=1; }
done
ip netns list 2>/dev/null | grep -q ketch && { echo "leaked netns" >&2; leaks=1; }
[ $leaks = 0 ] || { echo "soak: FAILED: leaks" >&2; exit 1; }

printf 'soak: %d iterations in %ds, each killing ketchd with SIGKILL during an operation\n' "$done_iter" $(( $(date +%s) - t0 ))
for op in "${!count[@]}"; do printf '  %-10s %3d kills (undisturbed: %d ms)\n' "$op" "${count[$op]}" "${took[$op]}"; done | sort
printf '  kills while the operation was under way: %d\n' "$mid"
printf '  restarts: %d, all answered; slowest start %d ms\n' "$done_iter" "$max_start_ms"
printf '  blobs verified after the last kill: %d; torn records: 0; lost containers: 0; leaks: 0\n' "${BLOBS:-0}"
echo "soak: $done_iter passed, 0 failed"
