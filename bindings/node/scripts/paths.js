// Where the addon finds libcluster when it is built here (binding.gyp and scripts/build.js):
// LIBCLUSTER_LIBRARY (a path to the shared library), else the repository's release build
// (<repo>/target/release/libcluster.so). The header comes from LIBCLUSTER_INCLUDE, else
// <repo>/include. LIBCLUSTER_RPATH is the addon's RUNPATH: the library's directory by default
// (a development build in the repository), `$ORIGIN` when libcluster.so is copied beside the
// addon (a build from the sources vendored into the package; scripts/install.js sets it).
//
// The library's SONAME is `libcluster.so.0` (build.rs, ABI_MAJOR), so the addon needs that
// name, whatever file it was linked against: cargo makes the link libcluster.so.0 ->
// libcluster.so beside the library in target/<profile>/, and a copied library is copied
// under that name.
//
// `sources` is the addon's C files (src/*.c, one per concept, sharing src/addon.h), relative
// to the package: binding.gyp and scripts/build.js compile them all, so a file added to src/
// needs no list updated.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { SONAME } = require('./platform');

const root = path.resolve(__dirname, '..', '..', '..');
const library = path.resolve(process.env.LIBCLUSTER_LIBRARY || path.join(root, 'target', 'release', 'libcluster.so'));
const includeDir = path.resolve(process.env.LIBCLUSTER_INCLUDE || path.join(root, 'include'));
const rpath = process.env.LIBCLUSTER_RPATH || path.dirname(library);

function sources() {
  const src = path.join(__dirname, '..', 'src');
  return fs.readdirSync(src).filter((f) => f.endsWith('.c')).sort().map((f) => `src/${f}`);
}

module.exports = {
  root,
  library,
  libDir: path.dirname(library),
  libName: path.basename(library),
  includeDir,
  rpath,
  overridden: Boolean(process.env.LIBCLUSTER_LIBRARY),
  soname: SONAME,
  sources,
};

if (require.main === module) {
  const key = process.argv[2];
  let out = String(key ? module.exports[key] : JSON.stringify(module.exports));
  // For binding.gyp's "sources" (<!@: the words of the output, one source each).
  if (key === 'sources') out = sources().join(' ');
  // For binding.gyp: `$` reaches make, which needs `$$`; the single quotes keep the shell
  // from expanding $ORIGIN.
  if (key === 'rpathFlag') out = `-Wl,-rpath,'${rpath.replace(/\$/g, '$$$$')}'`;
  process.stdout.write(out);
}
