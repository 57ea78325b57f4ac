// Loads the compiled addon (build/Release/cluster_addon.node, built by `npm install`).
'use strict';
const path = require('node:path');

const candidates = ['Release', 'Debug'].map((d) => path.join(__dirname, '..', 'build', d, 'cluster_addon.node'));
let native = null;
let firstError = null;
for (const file of candidates) {
  try {
    native = require(file);
    break;
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND') throw err;
    firstError = firstError || err;
  }
}
if (!native) {
  const err = new Error(`libcluster: the native addon is not built; run \`npm install\` in ${path.join(__dirname, '..')} (${firstError && firstError.message})`);
  err.code = 'ERR_LIBCLUSTER_NOT_BUILT';
  throw err;
}
module.exports = native;
