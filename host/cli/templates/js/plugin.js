// {{name}}: a bucketscan inspector plugin in JavaScript.
//
// Blocks objects whose key ends with one of the suffixes in the
// `deny-suffixes` setting (comma-separated); everything else goes on to
// the next stage (`continue`). Replace `decide` with your own logic.
//
// The contract is wit/plugin.wit (bucketscan:plugin@{{contract}}). Variants
// are `{ tag, val }`, u64 values are BigInt, an `err` result is a throw.

function decide(key, settings) {
  for (const [name] of settings) {
    if (name !== 'deny-suffixes') throw `unknown setting \`${name}\` (known: deny-suffixes)`;
  }
  for (const [, value] of settings) {
    for (const suffix of value.split(',').map((s) => s.trim()).filter((s) => s)) {
      if (key.endsWith(suffix)) {
        return { tag: 'verdict', val: { tag: 'blocked', val: `key ends with \`${suffix}\`` } };
      }
    }
  }
  return { tag: 'continue' };
}

export const inspector = {
  describe() {
    return { name: '{{name}}', version: '0.1.0', description: 'blocks keys with denied suffixes' };
  },
  inspect(object, settings, _soFar) {
    return decide(object.info().key, settings);
  },
};
