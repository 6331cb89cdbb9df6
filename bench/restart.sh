#!/usr/bin/env bash
# Restart at size: N (default 10000) idle Wasm containers with
# `--restart always` in one ketchd; ketchd is stopped and started again, and
# the time from its start to all N running again is reported, with when
# its API answered. A measurement, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
. bench/lib.sh
build_release
start_ketchd
$K build -q -t restart-ticker wasm-examples/ticker >/dev/null
python3 - "$T/k.sock" "$N" <<'PY'
import json, sys
sys.path.insert(0, "bench")
from api import Api
sock, n = sys.argv[1], int(sys.argv[2])
call = Api(sock).call
spec = json.dumps({"Image": "restart-ticker", "Cmd": ["60000"], "HostConfig": {"RestartPolicy": {"Name": "always"}}}).encode()
for i in range(n):
    s, b = call("POST", "/containers/create", spec)
    assert s == 201, b
    s, b = call("POST", f"/containers/{json.loads(b)['Id']}/start")
    assert s == 204, b
PY
echo "$($K ps -q | wc -l) of $N running; restarting ketchd"
kill "$DPID"
wait "$DPID" 2>/dev/null || true
t0=$(date +%s.%N)
# shellcheck disable=SC2086 # KETCHD_ARGS: extra flags, split on spaces
target/release/ketchd --data-root "$T/root" --host "unix://$T/k.sock" ${KETCHD_ARGS:-} >>"$T/ketchd.log" 2>&1 &
DPID=$!
python3 - "$T/k.sock" "$N" "$t0" <<'PY'
import sys, time
sys.path.insert(0, "bench")
from api import Api
sock, n, t0 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def running():
    # A new connection each time: the first ones find no ketchd yet.
    return Api(sock).call("GET", "/containers/json")[1].count(b'"State":"running"')
up = None
while time.time() - t0 < 120:
    try:
        r = running()
    except OSError:
        time.sleep(0.05)
        continue
    up = up or time.time() - t0
    if r >= n:
        print(f"ketchd restarted: API answering after {up:.2f} s, {r} of {n} running after {time.time() - t0:.2f} s (goal <= 10 s)")
        sys.exit(0)
    time.sleep(0.1)
sys.exit(f"only {r} of {n} running after 120 s")
PY
