#!/usr/bin/env bash
# Builds the plugin and runs it through the bucketscan host over two sample
# files: one it must block, one it must let through (`continue`).
# Needs `bucketscan` on PATH (or BUCKETSCAN=path/to/bucketscan).
set -euo pipefail
cd "$(dirname "$0")"
bucketscan="${BUCKETSCAN:-bucketscan}"
if ! command -v "$bucketscan" >/dev/null 2>&1; then
  echo "bucketscan is not on PATH; in a bucketscan checkout after scripts/demo it is target/debug/bucketscan:" >&2
  echo "    export PATH=\$PWD/target/debug:\$PATH   (or BUCKETSCAN=path/to/bucketscan $0)" >&2
  exit 1
fi
./build.sh
component="{{file_name}}.wasm"
"$bucketscan" plugin inspect "$component"

verdict() {
  # Exit status 1 means "not clean", which both samples are; 2 is a failure.
  local out status=0
  out=$("$bucketscan" plugin run "$component" --file "$1" --key "$2" --set 'deny-suffixes=[".block", ".exe"]' --output json) || status=$?
  [ "$status" -le 1 ] || { echo "bucketscan failed on $2" >&2; exit 1; }
  python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["stages"][0]["outcome"])' <<<"$out"
}
blocked=$(verdict testdata/sample.txt uploads/report.block)
passed=$(verdict testdata/sample.txt uploads/report.txt)
[ "$blocked" = blocked ] || { echo "expected uploads/report.block to be blocked, got $blocked" >&2; exit 1; }
[ "$passed" = continue ] || { echo "expected uploads/report.txt to pass (continue), got $passed" >&2; exit 1; }
echo "ok: {{name}} blocks report.block and lets report.txt through"
