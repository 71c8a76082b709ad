"""{{name}}: a bucketscan inspector plugin in Python.

Blocks objects whose key ends with one of the suffixes in the
`deny-suffixes` setting (comma-separated); everything else goes on to the
next stage (`continue`). Replace `decide` with your own logic.

The contract is wit/plugin.wit (bucketscan:plugin@{{contract}}).
"""

from componentize_py_types import Err
from wit_world.exports import Inspector as InspectorProtocol
from wit_world.imports import types


def decide(key, settings):
    for name, _ in settings:
        if name != "deny-suffixes":
            raise Err(f"unknown setting `{name}` (known: deny-suffixes)")
    for name, value in settings:
        for suffix in (s.strip() for s in value.split(",")):
            if suffix and key.endswith(suffix):
                return types.Decision_Verdict(types.Verdict_Blocked(f"key ends with `{suffix}`"))
    return types.Decision_Continue()


class Inspector(InspectorProtocol):
    def describe(self):
        return types.PluginInfo("{{name}}", "0.1.0", "blocks keys with denied suffixes")

    def inspect(self, object, settings, so_far):
        return decide(object.info().key, settings)
