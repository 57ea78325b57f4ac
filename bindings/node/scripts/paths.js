// Where the addon finds libcluster when it is built here (binding.gyp and scripts/build.js):
// LIBCLUSTER_LIBRARY (a path to the shared library), else the repository's release build
// (<repo>/target/release/libcluster.so). The header comes from LIBCLUSTER_INCLUDE, else
// <repo>/include. LIBCLUSTER_RPATH is the addon's RUNPATH: the library's directory by default
// (a development build in the repository), `$ORIGIN` when libcluster.so is copied beside the
// addon (a build from the sources vendored into the package; scripts/install.js sets it).
'use strict';
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..', '..');
const library = path.resolve(process.env.LIBCLUSTER_LIBRARY || path.join(root, 'target', 'release', 'libcluster.so'));
const includeDir = path.resolve(process.env.LIBCLUSTER_INCLUDE || path.join(root, 'include'));
const rpath = process.env.LIBCLUSTER_RPATH || path.dirname(library);

module.exports = {
  root,
  library,
  libDir: path.dirname(library),
  libName: path.basename(library),
  includeDir,
  rpath,
  overridden: Boolean(process.env.LIBCLUSTER_LIBRARY),
};

if (require.main === module) {
  const key = process.argv[2];
  let out = String(key ? module.exports[key] : JSON.stringify(module.exports));
  // For binding.gyp: `$` reaches make, which needs `$$`; the single quotes keep the shell
  // from expanding $ORIGIN.
  if (key === 'rpathFlag') out = `-Wl,-rpath,'${rpath.replace(/\$/g, '$$$$')}'`;
  process.stdout.write(out);
}
