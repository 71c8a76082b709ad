// {{name}}: a bucketscan inspector plugin in JavaScript.
//
// Blocks objects whose key ends with one of the suffixes in the
// `deny-suffixes` setting (a list); everything else goes on to the next
// stage (`continue`). Replace `decide` with your own logic.
//
// The contract is wit/ (bucketscan:plugin@{{contract}}). Everything the
// stage is given comes through the `stage` resource: stage.object(),
// stage.settings(), ... Variants are `{ tag, val }`, u64 values are BigInt,
// and throwing a plugin-error (`{ tag: 'invalid-settings', val: '...' }`)
// answers `err`.

function invalid(message) {
  return { tag: 'invalid-settings', val: message };
}

function decide(key, settings) {
  const denied = [];
  for (const [name, value] of settings) {
    if (name !== 'deny-suffixes') throw invalid(`unknown setting \`${name}\` (known: deny-suffixes)`);
    if (value.tag === 'items') denied.push(...value.val);
    else if (value.tag === 'text') denied.push(value.val);
    else throw invalid('setting `deny-suffixes`: expected a list of strings');
  }
  for (const suffix of denied.map((s) => s.trim()).filter((s) => s)) {
    if (key.endsWith(suffix)) {
      return { tag: 'verdict', val: { tag: 'blocked', val: `key ends with \`${suffix}\`` } };
    }
  }
  return { tag: 'continue' };
}

export const inspector = {
  info() {
    return { name: '{{name}}', version: '0.1.0', description: 'blocks keys with denied suffixes' };
  },
  inspect(stage) {
    return decide(stage.object().key(), stage.settings());
  },
};
