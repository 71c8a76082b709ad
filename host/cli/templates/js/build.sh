#!/usr/bin/env bash
# Builds {{file_name}}.wasm (see build.mjs).
set -euo pipefail
cd "$(dirname "$0")"
node build.mjs
