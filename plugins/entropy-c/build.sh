#!/usr/bin/env bash
# Builds the entropy plugin into a component:   plugins/entropy-c/build.sh OUT.wasm
# C source -> wasm32-wasi reactor module (clang 19, WASI libc) -> component
# (wasm-tools), with bindings from `wit-bindgen c`. Tools: scripts/setup.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
tools="$root/target/tools"
gen="$root/target/tmp/entropy-c"
rm -rf "$gen" && mkdir -p "$gen"
log=$("$tools/wit-bindgen/bin/wit-bindgen" c --world inspector-plugin "$root/wit" --out-dir "$gen" 2>&1) || { echo "$log" >&2; exit 1; }
clang-19 --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -Wall -Werror \
  -I "$gen" "$here/entropy.c" "$gen/inspector_plugin.c" "$gen/inspector_plugin_component_type.o" \
  -o "$gen/core.wasm"
"$tools/venv/bin/wasm-tools" component new "$gen/core.wasm" -o "$out"
