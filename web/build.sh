#!/usr/bin/env bash
# Build the page into web/dist: the library compiled to wasm32-unknown-unknown (web/ crate), the
# JavaScript bindings made by wasm-bindgen-cli (at the crate's wasm-bindgen version, which it must
# match), index.html and app.js.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
    echo "error: web/build.sh needs wasm-bindgen-cli $want (found: ${have:-none}); install it with" >&2
    echo "  cargo install wasm-bindgen-cli --version $want" >&2
    exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    echo "error: the wasm32-unknown-unknown target is missing: rustup target add wasm32-unknown-unknown" >&2
    exit 1
fi
# No debug info in the bundle (the native release profile keeps line tables for profiling).
CARGO_PROFILE_RELEASE_DEBUG=0 cargo build -p gpu-train-web --lib --release --target wasm32-unknown-unknown
rm -rf web/dist
mkdir -p web/dist
wasm-bindgen --target web --no-typescript --out-dir web/dist/pkg \
    "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/gpu_train_web.wasm"
cp web/index.html web/app.js web/dist/
echo "built web/dist ($(du -sh web/dist | cut -f1))"
