#!/usr/bin/env bash
# Build every example for WASI and drop NAME.wasm beside its Dockerfile.
# Installs the rustup targets it needs.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null
p1=(hello volume ticker)
p2=(component http-hello http-echo http-spin plugin-upper plugin-hostile tcp-echo net-client p3-hello p3-http p3-net)
cargo build --release --target-dir target --target wasm32-wasip1 "${p1[@]/#/-p}"
cargo build --release --target-dir target --target wasm32-wasip2 "${p2[@]/#/-p}"
for p in "${p1[@]}"; do cp "target/wasm32-wasip1/release/$p.wasm" "$p/$p.wasm"; done
# Libraries (components) are named with underscores, binaries as the package.
for p in "${p2[@]}"; do
  out=target/wasm32-wasip2/release
  if [ -f "$p/src/main.rs" ]; then cp "$out/$p.wasm" "$p/$p.wasm"; else cp "$out/${p//-/_}.wasm" "$p/$p.wasm"; fi
done
# The probe, from one source for both: wasi-probe-p1.wasm and -p2.wasm.
cargo build --release --target-dir target --target wasm32-wasip1 -p wasi-probe
cargo build --release --target-dir target --target wasm32-wasip2 -p wasi-probe
for t in 1 2; do cp "target/wasm32-wasip$t/release/wasi-probe.wasm" "wasi-probe/wasi-probe-p$t.wasm"; done
echo "built: $(ls */*.wasm | tr '\n' ' ')"
