// Where the addon finds libcluster: LIBCLUSTER_LIBRARY (a path to the shared library), else
// the repository's release build (<repo>/target/release/libcluster.so). The header comes
// from LIBCLUSTER_INCLUDE, else <repo>/include. Used by binding.gyp and scripts/install.js.
'use strict';
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..', '..');
const library = path.resolve(process.env.LIBCLUSTER_LIBRARY || path.join(root, 'target', 'release', 'libcluster.so'));
const includeDir = path.resolve(process.env.LIBCLUSTER_INCLUDE || path.join(root, 'include'));

module.exports = {
  root,
  library,
  libDir: path.dirname(library),
  libName: path.basename(library),
  includeDir,
  overridden: Boolean(process.env.LIBCLUSTER_LIBRARY),
};

if (require.main === module) {
  const key = process.argv[2];
  process.stdout.write(String(key ? module.exports[key] : JSON.stringify(module.exports)));
}
