// Loads the native addon: build/Release/cluster_addon.node when `npm install` built one (in
// the repository, or from the sources vendored into the package), else the prebuilt binary
// shipped in the package for this platform (prebuilds/<platform>-<arch>-<libc>/, see
// scripts/platform.js). Either finds libcluster.so.0 (the library's SONAME) through its RUNPATH.
'use strict';
const path = require('node:path');
const { prebuilt } = require('../scripts/platform');

const pkg = path.join(__dirname, '..');
let native = null;
let firstError = null;
function load(file) {
  try {
    native = require(file);
  } catch (err) {
    if (err.code !== 'MODULE_NOT_FOUND') throw err;
    firstError = firstError || err;
  }
}
for (const d of ['Release', 'Debug']) if (!native) load(path.join(pkg, 'build', d, 'cluster_addon.node'));
// Only now: prebuilt() reads the glibc version from process.report, which takes a moment.
const pre = native ? null : prebuilt();
if (!native && pre.ok) load(path.join(pre.dir, 'cluster_addon.node'));
if (!native) {
  const why = pre.ok ? (firstError && firstError.message) : pre.reason;
  const err = new Error(`${require('../package.json').name}: the native addon is not built (${why}); run \`npm rebuild\` in ${pkg} (building from source needs cargo and a C compiler)`);
  err.code = 'ERR_LIBCLUSTER_NOT_BUILT';
  throw err;
}
module.exports = native;
