#!/usr/bin/env bash
# Builds {{file_name}}.wasm (see build.mjs).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v node >/dev/null 2>&1; then
  echo "node is not installed: apt-get install nodejs npm (Node 18 or newer)" >&2
  exit 1
fi
if [ -z "${COMPONENTIZE_JS:-}" ] && ! node -e "require.resolve('@bytecodealliance/componentize-js')" >/dev/null 2>&1; then
  echo "componentize-js is not installed here; install the version bucketscan is tested with:" >&2
  echo "    npm install @bytecodealliance/componentize-js@0.23.0 @bytecodealliance/preview2-shim@0.17.4" >&2
  echo "(or set COMPONENTIZE_JS to an installed copy's src/componentize.js)" >&2
  exit 1
fi
node build.mjs
