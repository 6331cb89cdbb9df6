#!/usr/bin/env bash
# Build every example for WASI and drop NAME.wasm beside its Dockerfile.
# Installs the rustup targets it needs.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null
cargo build --release --target-dir target --target wasm32-wasip1 -p hello -p volume -p ticker
cargo build --release --target-dir target --target wasm32-wasip2 -p component
for p in hello volume ticker; do cp target/wasm32-wasip1/release/$p.wasm $p/$p.wasm; done
cp target/wasm32-wasip2/release/component.wasm component/component.wasm
echo "built: $(ls */*.wasm | tr '\n' ' ')"
