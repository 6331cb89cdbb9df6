#!/usr/bin/env bash
# Pull of a 64 MiB image (4 layers of 16 MiB of random data) from a local
# registry (Debian's docker-registry on 127.0.0.1), side by side in one run:
#   ketch pull REF                 (into ketchd's store: verified, fsynced)
#   skopeo copy docker://REF oci:DIR   (into an OCI directory)
# Each run starts from an empty store / directory. Prints the p50s and the
# ratio. A benchmark, not a test. Needs: hyperfine, skopeo, docker-registry
# (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}

want=()
for pair in hyperfine:hyperfine skopeo:skopeo docker-registry:docker-registry; do
  command -v "${pair%%:*}" >/dev/null || want+=("${pair#*:}")
done
if [ ${#want[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${want[@]}" >/dev/null
fi
. bench/lib.sh
build_release
start_ketchd

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$T/reg"
cat >"$T/reg/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $T/reg/data
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$T/reg/config.yml" >"$T/reg/log" 2>&1 &
RPID=$!
# stop_ketchd also removes the bridge the daemon made for its default network.
trap 'kill "$RPID" 2>/dev/null || true; stop_ketchd' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done

# The image: random (incompressible) data, built and pushed by ketch.
CTX="$T/ctx"
mkdir -p "$CTX"
printf 'FROM scratch\n' >"$CTX/Dockerfile"
for i in 1 2 3 4; do
  head -c $((16 << 20)) /dev/urandom >"$CTX/blob$i"
  printf 'COPY blob%s /data/blob%s\n' "$i" "$i" >>"$CTX/Dockerfile"
done
REF="127.0.0.1:$PORT/bench/big:v1"
$K build -q -t "$REF" "$CTX" >/dev/null
$K push -q "$REF" >/dev/null
rm -rf "$CTX"
$K rmi "$REF" >/dev/null

hyperfine -N --style basic --runs "$RUNS" --export-json "$T/ketch.json" \
  --prepare "$K image prune -f -a" "$K pull -q $REF" >/dev/null
hyperfine --style basic --runs "$RUNS" --export-json "$T/skopeo.json" \
  --prepare "rm -rf $T/oci" "skopeo copy -q --src-tls-verify=false docker://$REF oci:$T/oci:v1" >/dev/null

python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
def p50(name):
    return json.load(open(f"{t}/{name}.json"))["results"][0]["median"] * 1000
k, s = p50("ketch"), p50("skopeo")
print(f"pull of a 64 MiB image (4 x 16 MiB layers) from a registry on 127.0.0.1")
print(f"ketch pull:                  p50 {k:8.1f} ms")
print(f"skopeo copy docker:// oci:   p50 {s:8.1f} ms   ratio ketch/skopeo {k/s:5.2f}")
PY
