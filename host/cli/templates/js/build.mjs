// Builds {{file_name}}.wasm with componentize-js
// (npm install @bytecodealliance/componentize-js). COMPONENTIZE_JS may
// point at an installed copy's src/componentize.js.
import { writeFile } from 'node:fs/promises';

const here = new URL('.', import.meta.url).pathname;
const { componentize } = await import(process.env.COMPONENTIZE_JS ?? '@bytecodealliance/componentize-js');
const { component } = await componentize({
  sourcePath: here + 'plugin.js',
  witPath: here + 'wit',
  worldName: 'inspector-plugin',
  // Without these the component would import wasi:http and more.
  disableFeatures: ['http', 'fetch-event', 'random', 'clocks', 'stdio'],
});
await writeFile(here + '{{file_name}}.wasm', component);
