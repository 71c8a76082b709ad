#!/usr/bin/env bash
# Builds {{file_name}}.wasm, a WebAssembly component for wasm32-wasip2.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: https://rustup.rs, then rustup target add wasm32-wasip2" >&2
  exit 1
fi
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{file_name}}.wasm" {{file_name}}.wasm
