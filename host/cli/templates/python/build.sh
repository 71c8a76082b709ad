#!/usr/bin/env bash
# Builds {{file_name}}.wasm with componentize-py.
set -euo pipefail
cd "$(dirname "$0")"
componentize=${COMPONENTIZE_PY:-componentize-py}
if ! command -v "$componentize" >/dev/null 2>&1; then
  echo "componentize-py is not installed; install the version bucketscan is tested with:" >&2
  echo "    pip install componentize-py==0.25.1" >&2
  echo "(or set COMPONENTIZE_PY to its path)" >&2
  exit 1
fi
"$componentize" -d wit -w inspector-plugin componentize app -o {{file_name}}.wasm
