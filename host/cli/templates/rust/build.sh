#!/usr/bin/env bash
# Builds {{file_name}}.wasm, a WebAssembly component for wasm32-wasip2.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{file_name}}.wasm" {{file_name}}.wasm
