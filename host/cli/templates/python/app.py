"""{{name}}: a bucketscan inspector plugin in Python.

Blocks objects whose key ends with one of the suffixes in the
`deny-suffixes` setting (a list); everything else goes on to the next
stage (`continue`). Replace `decide` with your own logic.

The contract is wit/ (bucketscan:plugin@{{contract}}). Everything the stage
is given comes through the `stage` resource: stage.object(),
stage.settings(), ...
"""

from componentize_py_types import Err
from wit_world.exports import Inspector as InspectorProtocol
from wit_world.imports import types


def invalid(message):
    return Err(types.PluginError_InvalidSettings(message))


def decide(key, settings):
    denied = []
    for name, value in settings:
        if name != "deny-suffixes":
            raise invalid(f"unknown setting `{name}` (known: deny-suffixes)")
        if isinstance(value, types.SettingValue_Items):
            denied.extend(value.value)
        elif isinstance(value, types.SettingValue_Text):
            denied.append(value.value)
        else:
            raise invalid("setting `deny-suffixes`: expected a list of strings")
    for suffix in (s.strip() for s in denied):
        if suffix and key.endswith(suffix):
            return types.Decision_Verdict(types.Verdict_Blocked(f"key ends with `{suffix}`"))
    return types.Decision_Continue()


class Inspector(InspectorProtocol):
    def info(self):
        return types.PluginInfo("{{name}}", "0.1.0", "blocks keys with denied suffixes")

    def inspect(self, stage):
        return decide(stage.object().key(), stage.settings())
