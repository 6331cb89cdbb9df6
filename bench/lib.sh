# Shared set-up for the bench scripts: a release build, the Wasm examples,
# and a private ketchd on a temp root and socket, stopped on exit.
# After `start_ketchd`: $T (temp dir), $DPID (daemon pid), $K (ketch command).

build_release() {
  bash wasm-examples/build.sh >/dev/null
  cargo build --release --locked 2>/dev/null || cargo build --release
}

start_ketchd() {
  T=$(mktemp -d)
  target/release/ketchd --data-root "$T/root" --host "unix://$T/k.sock" >"$T/ketchd.log" 2>&1 &
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
  for f in "$T"/root/networks/*.json; do
    [ -e "$f" ] || continue
    b=$(python3 -c 'import json,os,sys
# The rule of engine::networks::host_bridge: a bridge ketch made, still marked as its own.
n=json.load(open(sys.argv[1])); b=n.get("bridge",""); i=n.get("id",""); own="kt-"+i[:12]; s="/sys/class/net/"+b
try: a=open(s+"/ifalias").read().strip()
except OSError: a=None
print(b if b and n.get("bridge_made", b==own) and os.path.isdir(s+"/bridge") and (a=="ketch network "+i or (a=="" and b==own)) else "")' "$f")
    [ -n "$b" ] && { ip link del "$b" 2>/dev/null || true; }
  done
  rm -rf "$T"
}
