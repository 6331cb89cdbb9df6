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
  for b in $(python3 tests/owned_bridges.py "$T"/root); do ip link del "$b" 2>/dev/null || true; done
  rm -rf "$T"
}
