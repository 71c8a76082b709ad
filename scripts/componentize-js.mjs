// Builds a JavaScript plugin into a component with componentize-js.
//   node scripts/componentize-js.mjs SOURCE.js OUT.wasm [WORLD]
// The `jco componentize` CLI fails on this machine ("failed to get path
// metadata"); the library call works. HTTP and fetch are disabled so the
// component imports only the contract and WASI basics.
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';

// componentize-js is installed by scripts/setup into target/tools/node
// (versions pinned by scripts/js-toolchain/package-lock.json).
const { componentize } = await import(
  new URL('../target/tools/node/node_modules/@bytecodealliance/componentize-js/src/componentize.js', import.meta.url)
);

const [source, out, world = 'inspector-plugin'] = process.argv.slice(2);
if (!source || !out) {
  console.error('usage: node scripts/componentize-js.mjs SOURCE.js OUT.wasm [inspector-plugin|action-plugin]');
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(new URL('../wit', import.meta.url).pathname),
  worldName: world,
  disableFeatures: ['http', 'fetch-event', 'random', 'clocks', 'stdio'],
});
await writeFile(out, component);
