// The package's `install` script: makes sure lib/native.js finds an addon that loads here.
//
// 1. In the repository, LIBCLUSTER_LIBRARY=/path/to/libcluster.so (development): build the
//    addon against that library, with its directory as RUNPATH. An installed package ignores
//    the variable (the Python binding reads it too: a user may have it set for that).
// 2. A prebuilt binary for this machine is in the package (prebuilds/<platform>-<arch>-<libc>/,
//    see scripts/platform.js): nothing to do; no Rust toolchain or compiler is needed.
//    LIBCLUSTER_BUILD_FROM_SOURCE=1 skips it and builds as in 3.
// 3. The crate's sources are vendored into the package (native/, by scripts/prepack.js):
//    `cargo build --release --locked` there (cargo fetches the crates it needs), then the
//    addon; libcluster.so is copied beside it in build/Release/ under its SONAME,
//    libcluster.so.0, the name the addon needs (RUNPATH $ORIGIN), and the cargo target
//    directory removed.
// 4. In the repository (bindings/node of a libcluster checkout): build <repo>/target/release
//    if missing and link it, as 1.
// Otherwise, or when cargo is missing in 3, it stops with a message saying what is needed.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const paths = require('./paths');
const { prebuilt } = require('./platform');
const { PKG, log, die, have, cargoBuild, buildAddon } = require('./build');

const NATIVE = path.join(PKG, 'native');
const RELEASE = path.join(PKG, 'build', 'Release');

// 1 and 4: a development build linked to a libcluster.so where it is.
function developmentBuild() {
  if (paths.overridden) log(`LIBCLUSTER_LIBRARY=${paths.library}`);
  if (!fs.existsSync(paths.library)) {
    if (paths.overridden) die(`LIBCLUSTER_LIBRARY=${paths.library} does not exist`);
    cargoBuild(paths.root, path.join(paths.root, 'target'));
  }
  if (!fs.existsSync(path.join(paths.includeDir, 'cluster.h'))) die(`no cluster.h in ${paths.includeDir}`);
  // The addon will need the library by its SONAME, from the same directory.
  if (!fs.existsSync(path.join(paths.libDir, paths.soname))) {
    die(`${paths.libDir} has no ${paths.soname} (the library's SONAME, which the addon loads): cargo build makes it beside libcluster.so; elsewhere, add the link`);
  }
  const out = buildAddon({ library: paths.library, includeDir: paths.includeDir, rpath: paths.rpath });
  log(`built ${out} (libcluster: ${paths.library})`);
}

// 3: from the vendored sources, self-contained in build/Release.
function sourceBuild(why) {
  if (!have('cargo')) {
    die(
      `${why}, and building from source needs a Rust toolchain (cargo: https://rustup.rs) ` +
        'and a C compiler. Install them and run `npm rebuild`, or install on linux-x64 with glibc, ' +
        'for which the package ships a prebuilt binary.',
    );
  }
  log(`${why}: building from the sources in ${NATIVE}`);
  const target = path.join(NATIVE, 'target');
  const built = cargoBuild(NATIVE, target);
  const out = buildAddon({ library: built, includeDir: path.join(NATIVE, 'include'), rpath: '$ORIGIN' });
  fs.copyFileSync(built, path.join(RELEASE, paths.soname));
  if (!process.env.LIBCLUSTER_KEEP_TARGET) fs.rmSync(target, { recursive: true, force: true });
  log(`built ${out} with ${paths.soname} beside it`);
}

// A checkout: bindings/node of libcluster's crate, not a package installed in node_modules
// (two folders up from an installed package is the user's own folder).
function inCheckout() {
  if (PKG.split(path.sep).includes('node_modules')) return false;
  try {
    return /^name = "libcluster"$/m.test(fs.readFileSync(path.join(paths.root, 'Cargo.toml'), 'utf8')) && fs.existsSync(path.join(paths.root, 'src', 'capi'));
  } catch {
    return false;
  }
}
const inRepo = inCheckout();
const vendored = fs.existsSync(path.join(NATIVE, 'Cargo.toml'));

if (paths.overridden && inRepo) {
  developmentBuild();
} else {
  const p = prebuilt();
  const forced = Boolean(process.env.LIBCLUSTER_BUILD_FROM_SOURCE);
  if (p.ok && !forced) {
    // A build left by an earlier install would shadow the prebuilt in lib/native.js.
    fs.rmSync(path.join(PKG, 'build'), { recursive: true, force: true });
    log(`using the prebuilt binary in prebuilds/${p.tag}/ (glibc >= ${p.manifest.glibc}, N-API >= ${p.manifest.napi})`);
  } else if (vendored) {
    sourceBuild(forced ? 'LIBCLUSTER_BUILD_FROM_SOURCE is set' : p.reason);
  } else if (inRepo) {
    developmentBuild();
  } else {
    die(`${p.reason}, and the package holds no sources to build from (native/ is missing)`);
  }
}
