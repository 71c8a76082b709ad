#!/usr/bin/env bash
# Builds {{file_name}}.wasm with componentize-py (pip install componentize-py).
set -euo pipefail
cd "$(dirname "$0")"
"${COMPONENTIZE_PY:-componentize-py}" -d wit -w inspector-plugin componentize app -o {{file_name}}.wasm
