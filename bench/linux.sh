#!/usr/bin/env bash
# Start-up latency of a Linux container, side by side in one run, on the
# same busybox root filesystem (FROM scratch + Debian's busybox-static):
#   ketch run --rm --network none busybox true   (through ketchd: API,
#       overlay root, monitor, libcontainer, cgroup, exit, removal)
#   runc run -b BUNDLE id                         (Debian's runc, one shot)
#   crun run -b BUNDLE id                         (if installed)
# Prints the p50 of each and the ratios. A benchmark, not a test. Root only.
# Needs: hyperfine, runc, busybox-static (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-200}

need=()
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v runc >/dev/null || need+=(runc)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
. bench/lib.sh
build_release
start_ketchd

# One busybox tree: the image's build context and runc's rootfs.
mkdir -p "$T/ctx/bin" "$T/ctx/etc"
cp /bin/busybox "$T/ctx/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$T/ctx/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$T/ctx/etc/passwd"
printf 'FROM scratch\nCOPY bin /bin\nCOPY etc /etc\nCMD ["sh"]\n' >"$T/ctx/Dockerfile"
$K build -q -t bench-busybox "$T/ctx" >/dev/null
$K run --rm --network none bench-busybox true

# runc's bundle: the same tree, its default spec (which has its own
# network namespace, as --network none) running `true`.
mkdir -p "$T/bundle/rootfs"
cp -a "$T/ctx/bin" "$T/ctx/etc" "$T/bundle/rootfs/"
(cd "$T/bundle" && runc spec)
python3 - "$T/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["args"] = ["true"]
c["process"]["terminal"] = False
json.dump(c, open(p, "w"))
PY

hyperfine -N --style basic --warmup 10 --runs "$RUNS" --export-json "$T/ketch.json" \
  "$K run --rm --network none bench-busybox true" >/dev/null
hyperfine -N --style basic --warmup 10 --runs "$RUNS" --export-json "$T/runc.json" \
  "runc run -b $T/bundle ketch-bench-runc" >/dev/null
peers=(runc)
if command -v crun >/dev/null && crun run -b "$T/bundle" ketch-bench-crun >/dev/null 2>"$T/crun.err"; then
  hyperfine -N --style basic --warmup 10 --runs "$RUNS" --export-json "$T/crun.json" \
    "crun run -b $T/bundle ketch-bench-crun" >/dev/null
  peers+=(crun)
elif command -v crun >/dev/null; then
  echo "crun skipped: $(head -c 200 "$T/crun.err")"
fi

python3 - "$T" "${peers[@]}" <<'PY'
import json, sys
t, peers = sys.argv[1], sys.argv[2:]
def p50(name):
    return json.load(open(f"{t}/{name}.json"))["results"][0]["median"] * 1000
k = p50("ketch")
print(f"ketch run --rm --network none busybox true: p50 {k:7.2f} ms")
for p in peers:
    v = p50(p)
    print(f"{p} run (same rootfs):{' ' * (24 - len(p))}p50 {v:7.2f} ms   ratio ketch/{p} {k/v:5.2f}")
PY
