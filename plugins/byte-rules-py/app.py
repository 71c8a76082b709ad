"""byte-rules: a YARA-like inspector written in Python.

Flags objects that contain any of a set of byte patterns, reading the
object in 1 MiB ranges through the host (it never holds the whole object).

Settings (each rule is one setting whose key starts with `rule.`):
  rule.NAME = "hex:4d5a90 00 03"   bytes in hex (spaces allowed)
  rule.NAME = "text:AutoOpen"       UTF-8 text
  max-scan-bytes = "16MB"           read at most this much (default 16 MB);
                                    a larger object is unscannable (too-large)
                                    unless `oversize = "continue"`

A match answers `infected` with one finding per matching rule (engine
`byte-rules`, signature NAME). No match answers `continue`: absence of a
pattern does not prove an object clean, so another inspector (ClamAV)
must say so.

Build: componentize-py -d wit -w inspector-plugin componentize app -o byte_rules_py.wasm
"""

import wit_world
from wit_world.exports import Inspector as InspectorProtocol
from wit_world.imports import log, types
from componentize_py_types import Err

CHUNK = 1 << 20
UNITS = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def parse_size(key, raw):
    text = raw.strip().upper()
    digits = text.rstrip("KMGB")
    unit = text[len(digits):]
    if not digits.isdigit() or unit not in UNITS:
        raise Err(f"setting `{key}`: `{raw}` is not a size (e.g. 16MB)")
    return int(digits) * UNITS[unit]


def parse_rules(settings):
    rules = []
    for key, value in settings:
        if not key.startswith("rule."):
            continue
        name = key[len("rule."):]
        kind, _, body = value.partition(":")
        if kind == "hex":
            try:
                pattern = bytes.fromhex(body.replace(" ", ""))
            except ValueError as error:
                raise Err(f"setting `{key}`: bad hex: {error}")
        elif kind == "text":
            pattern = body.encode()
        else:
            raise Err(f"setting `{key}`: expected `hex:...` or `text:...`, got `{value}`")
        if not name or not pattern:
            raise Err(f"setting `{key}`: empty rule name or pattern")
        rules.append((name, pattern))
    if not rules:
        raise Err("no rules: add settings like rule.NAME = \"text:...\" or \"hex:...\"")
    return rules


class Inspector(InspectorProtocol):
    def describe(self):
        return types.PluginInfo("byte-rules", "0.1.0", "flags objects containing configured byte patterns (Python)")

    def inspect(self, object, settings, so_far):
        known = {"max-scan-bytes", "oversize"}
        for key, _ in settings:
            if key not in known and not key.startswith("rule."):
                raise Err(f"unknown setting `{key}` (known: rule.NAME, max-scan-bytes, oversize)")
        options = dict(settings)
        rules = parse_rules(settings)
        limit = parse_size("max-scan-bytes", options.get("max-scan-bytes", "16MB"))
        size = object.info().size
        if size > limit:
            if options.get("oversize", "unscannable") == "continue":
                return types.Decision_Continue()
            return types.Decision_Verdict(types.Verdict_Unscannable(types.Unscannable(
                types.UnscannableReason.TOO_LARGE, f"{size} bytes is over max-scan-bytes {limit}")))

        overlap = max(len(pattern) for _, pattern in rules) - 1
        matched = []
        tail = b""
        offset = 0
        while offset < size:
            chunk = object.read(offset, min(CHUNK, size - offset))
            if not chunk:
                break
            window = tail + chunk
            for name, pattern in rules:
                if name not in matched and pattern in window:
                    matched.append(name)
            tail = window[-overlap:] if overlap else b""
            offset += len(chunk)
        if not matched:
            return types.Decision_Continue()
        log.log(types.Level.INFO, "byte rules matched", [("rules", ",".join(matched))])
        return types.Decision_Verdict(types.Verdict_Infected(
            [types.Finding("byte-rules", name) for name in matched]))
