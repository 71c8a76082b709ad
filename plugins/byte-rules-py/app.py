"""byte-rules: a YARA-like inspector written in Python.

Flags objects that contain any of a set of byte patterns, reading the
object in 1 MiB ranges through the host (it never holds the whole object).

Settings (each rule is one setting whose key starts with `rule.`):
  rule.NAME = "hex:4d5a90 00 03"   bytes in hex (spaces allowed)
  rule.NAME = "text:AutoOpen"       UTF-8 text
  max-scan-bytes = "16MB"           read at most this much (default 16 MB,
                                    a size with a unit or a number of bytes);
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
from wit_world.imports import log, object as contract_object, types
from componentize_py_types import Err

CHUNK = 1 << 20
UNITS = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def invalid(message):
    """The plugin's error for a config a person must fix."""
    return Err(types.PluginError_InvalidSettings(message))


def spelled(value):
    """A setting as the config spells it, for messages."""
    return repr(value.value) if hasattr(value, "value") else "?"


def parse_size(key, value):
    if isinstance(value, types.SettingValue_Integer) and value.value >= 0:
        return value.value
    if not isinstance(value, types.SettingValue_Text):
        raise invalid(f"setting `{key}`: expected a size (e.g. \"16MB\"), got {spelled(value)}")
    text = value.value.strip().upper()
    digits = text.rstrip("KMGB")
    unit = text[len(digits):]
    if not digits.isdigit() or unit not in UNITS:
        raise invalid(f"setting `{key}`: `{value.value}` is not a size (e.g. 16MB)")
    return int(digits) * UNITS[unit]


def text_setting(key, value):
    if not isinstance(value, types.SettingValue_Text):
        raise invalid(f"setting `{key}`: expected a string, got {spelled(value)}")
    return value.value


def parse_rules(settings):
    rules = []
    for key, value in settings:
        if not key.startswith("rule."):
            continue
        name = key[len("rule."):]
        raw = text_setting(key, value)
        kind, _, body = raw.partition(":")
        if kind == "hex":
            try:
                pattern = bytes.fromhex(body.replace(" ", ""))
            except ValueError as error:
                raise invalid(f"setting `{key}`: bad hex: {error}")
        elif kind == "text":
            pattern = body.encode()
        else:
            raise invalid(f"setting `{key}`: expected `hex:...` or `text:...`, got `{raw}`")
        if not name or not pattern:
            raise invalid(f"setting `{key}`: empty rule name or pattern")
        rules.append((name, pattern))
    if not rules:
        raise invalid("no rules: add settings like rule.NAME = \"text:...\" or \"hex:...\"")
    return rules


def read(obj, offset, length):
    try:
        return obj.read(offset, length)
    except Err as error:
        if isinstance(error.value, contract_object.ReadError_Other):
            raise Err(types.PluginError_Other(f"reading the object: {error.value.value}"))
        raise Err(types.PluginError_Other("the object's bytes were not downloaded"))


class Inspector(InspectorProtocol):
    def info(self):
        return types.PluginInfo("byte-rules", "0.2.0", "flags objects containing configured byte patterns (Python)")

    def inspect(self, stage):
        settings = stage.settings()
        known = {"max-scan-bytes", "oversize"}
        for key, _ in settings:
            if key not in known and not key.startswith("rule."):
                raise invalid(f"unknown setting `{key}` (known: rule.NAME, max-scan-bytes, oversize)")
        options = dict(settings)
        rules = parse_rules(settings)
        limit = parse_size("max-scan-bytes", options.get("max-scan-bytes", types.SettingValue_Text("16MB")))
        oversize = text_setting("oversize", options.get("oversize", types.SettingValue_Text("unscannable")))
        if oversize not in ("unscannable", "continue"):
            raise invalid(f"setting `oversize`: `{oversize}` is not one of unscannable, continue")
        obj = stage.object()
        size = obj.size()
        if size > limit:
            if oversize == "continue":
                return types.Decision_Continue()
            return types.Decision_Verdict(types.Verdict_Unscannable(types.Unscannable(
                types.UnscannableReason.TOO_LARGE, f"{size} bytes is over max-scan-bytes {limit}")))

        overlap = max(len(pattern) for _, pattern in rules) - 1
        matched = []
        tail = b""
        offset = 0
        while offset < size:
            chunk = read(obj, offset, min(CHUNK, size - offset))
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
