#!/usr/bin/env bash
# Density: start N long-running Wasm containers (ticker, one line every 60 s)
# through the Engine API and report ketchd's resident memory per container
# and the time to create+start them. A measurement, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
. bench/lib.sh
build_release
start_ketchd
$K build -q -t density-ticker wasm-examples/ticker >/dev/null
rss() { awk '/VmRSS/ {print $2}' "/proc/$DPID/status"; }
base=$(rss)
start=$(date +%s.%N)
python3 - "$T/k.sock" "$N" <<'PY'
import json, socket, sys
sock, n = sys.argv[1], int(sys.argv[2])
def call(method, path, body=b""):
    s = socket.socket(socket.AF_UNIX); s.connect(sock)
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if status >= 300:
        sys.exit(f"{method} {path}: {status} {rest[:200]!r}")
    return rest
for i in range(n):
    rid = json.loads(call("POST", "/containers/create", json.dumps({"Image": "density-ticker", "Cmd": ["60000"]}).encode()))["Id"]
    call("POST", f"/containers/{rid}/start")
PY
end=$(date +%s.%N)
sleep 1
running=$($K ps -q | wc -l)
now=$(rss)
python3 - "$N" "$running" "$base" "$now" "$start" "$end" <<'PY'
import sys
n, running, base, now, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
print(f"containers running: {running} of {n}")
print(f"ketchd RSS: {base/1024:.1f} MiB idle -> {now/1024:.1f} MiB ({(now-base)/n:.0f} KiB per container)")
print(f"create+start: {(t1-t0)/n*1000:.2f} ms per container through the API ({n/(t1-t0):.0f}/s)")
PY
