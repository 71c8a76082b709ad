// size-policy: an inspector written in JavaScript (componentize-js).
//
// Blocks objects by size, content type and file name before anything
// expensive runs. It reads no object bytes: only the metadata the host
// hands over.
//
// Settings:
//   max-size = "100MB"                   larger objects are blocked (a size
//                                        with a unit, or a number of bytes)
//   min-size = 1                         smaller objects are blocked (e.g. empty uploads)
//   allow-content-types = ["image/", "application/pdf"]
//                                        Content-Type must start with one of these
//   deny-extensions = ["exe", "js", "vbs"]
//                                        key extensions that are blocked
//
// Answers `blocked` with the rule that matched, else `continue`.
//
// Build: node scripts/componentize-js.mjs plugins/size-policy-js/plugin.js size_policy_js.wasm

import { log } from 'bucketscan:plugin/log@0.2.2';

const UNITS = { '': 1n, B: 1n, KB: 1024n, MB: 1024n ** 2n, GB: 1024n ** 3n };
const KNOWN = ['max-size', 'min-size', 'allow-content-types', 'deny-extensions'];

// The contract's plugin-error: thrown, it becomes the `err` of `inspect`.
function invalid(message) {
  return { tag: 'invalid-settings', val: message };
}

function size(key, setting) {
  if (setting.tag === 'integer' && setting.val >= 0n) return BigInt(setting.val);
  const match = setting.tag === 'text' && /^\s*(\d+)\s*([KMG]?B)?\s*$/i.exec(setting.val);
  if (!match) throw invalid(`setting \`${key}\`: expected a size (e.g. "100MB"), got ${JSON.stringify(setting.val)}`);
  return BigInt(match[1]) * UNITS[(match[2] || '').toUpperCase()];
}

function list(key, setting) {
  if (!setting) return [];
  if (setting.tag === 'items') return setting.val.map((item) => item.trim().toLowerCase()).filter((item) => item);
  if (setting.tag === 'text') return [setting.val.trim().toLowerCase()];
  throw invalid(`setting \`${key}\`: expected a list of strings`);
}

function blocked(reason) {
  log('info', 'size-policy blocked an object', [['reason', reason]]);
  return { tag: 'verdict', val: { tag: 'blocked', val: reason } };
}

export const inspector = {
  info() {
    return { name: 'size-policy', version: '0.2.0', description: 'blocks objects by size, content type and extension (JavaScript)' };
  },

  inspect(stage) {
    const options = new Map(stage.settings());
    for (const key of options.keys()) {
      if (!KNOWN.includes(key)) throw invalid(`unknown setting \`${key}\` (known: ${KNOWN.join(', ')})`);
    }
    const object = stage.object();
    const objectSize = object.size();
    if (options.has('max-size') && objectSize > size('max-size', options.get('max-size'))) {
      return blocked(`${objectSize} bytes is over max-size ${options.get('max-size').val}`);
    }
    if (options.has('min-size') && objectSize < size('min-size', options.get('min-size'))) {
      return blocked(`${objectSize} bytes is under min-size ${options.get('min-size').val}`);
    }
    const allowed = list('allow-content-types', options.get('allow-content-types'));
    const type = (object.contentType() || '').toLowerCase();
    if (allowed.length && !allowed.some((prefix) => type.startsWith(prefix))) {
      return blocked(`content type \`${type || 'none'}\` is not allowed`);
    }
    const name = object.key().split('/').pop().toLowerCase();
    const dot = name.lastIndexOf('.');
    const extension = dot >= 0 ? name.slice(dot + 1) : '';
    if (extension && list('deny-extensions', options.get('deny-extensions')).includes(extension)) {
      return blocked(`extension \`.${extension}\` is denied`);
    }
    return { tag: 'continue' };
  },
};
