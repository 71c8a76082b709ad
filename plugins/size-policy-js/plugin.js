// size-policy: an inspector written in JavaScript (componentize-js).
//
// Blocks objects by size, content type and file name before anything
// expensive runs. It reads no object bytes: only the metadata the host
// hands over.
//
// Settings:
//   max-size = "100MB"                   larger objects are blocked
//   min-size = "1"                       smaller objects are blocked (e.g. empty uploads)
//   allow-content-types = "image/,application/pdf"
//                                        Content-Type must start with one of these
//   deny-extensions = "exe,js,vbs"       key extensions that are blocked
//
// Answers `blocked` with the rule that matched, else `continue`.
//
// Build: node scripts/componentize-js.mjs plugins/size-policy-js/plugin.js size_policy_js.wasm

import { log } from 'bucketscan:plugin/log@0.1.1';

const UNITS = { '': 1n, B: 1n, KB: 1024n, MB: 1024n ** 2n, GB: 1024n ** 3n };
const KNOWN = ['max-size', 'min-size', 'allow-content-types', 'deny-extensions'];

function size(key, raw) {
  const match = /^\s*(\d+)\s*([KMG]?B)?\s*$/i.exec(raw);
  if (!match) throw `setting \`${key}\`: \`${raw}\` is not a size (e.g. 100MB)`;
  return BigInt(match[1]) * UNITS[(match[2] || '').toUpperCase()];
}

function list(raw) {
  return (raw || '').split(',').map((item) => item.trim().toLowerCase()).filter((item) => item);
}

function blocked(reason) {
  log('info', 'size-policy blocked an object', [['reason', reason]]);
  return { tag: 'verdict', val: { tag: 'blocked', val: reason } };
}

export const inspector = {
  describe() {
    return { name: 'size-policy', version: '0.1.0', description: 'blocks objects by size, content type and extension (JavaScript)' };
  },

  inspect(object, settings, _soFar) {
    const options = new Map(settings);
    for (const key of options.keys()) {
      if (!KNOWN.includes(key)) throw `unknown setting \`${key}\` (known: ${KNOWN.join(', ')})`;
    }
    const info = object.info();
    if (options.has('max-size') && info.size > size('max-size', options.get('max-size'))) {
      return blocked(`${info.size} bytes is over max-size ${options.get('max-size')}`);
    }
    if (options.has('min-size') && info.size < size('min-size', options.get('min-size'))) {
      return blocked(`${info.size} bytes is under min-size ${options.get('min-size')}`);
    }
    const allowed = list(options.get('allow-content-types'));
    const type = (info.contentType || '').toLowerCase();
    if (allowed.length && !allowed.some((prefix) => type.startsWith(prefix))) {
      return blocked(`content type \`${type || 'none'}\` is not allowed`);
    }
    const name = info.key.split('/').pop().toLowerCase();
    const dot = name.lastIndexOf('.');
    const extension = dot >= 0 ? name.slice(dot + 1) : '';
    if (extension && list(options.get('deny-extensions')).includes(extension)) {
      return blocked(`extension \`.${extension}\` is denied`);
    }
    return { tag: 'continue' };
  },
};
