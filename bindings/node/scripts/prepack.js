// `npm pack` / `npm publish` run this first (the `prepack` script), in a libcluster checkout.
// It puts into the package what a user's `npm install` needs (scripts/postpack.js removes it
// again once the tarball is written, so the working tree stays as it was):
//
//   prebuilds/<platform>-<arch>-<libc>/   (linux-x64-glibc here)
//     cluster_addon.node   the addon, RUNPATH $ORIGIN, needing libcluster.so.0
//     libcluster.so.0      the release library under its SONAME, no debug info, stripped
//     manifest.json        what it needs: glibc floor (newest GLIBC_ symbol version), N-API
//   native/                the crate's sources for a build where no prebuilt fits:
//     Cargo.toml Cargo.lock build.rs cbindgen.toml src/ include/cluster.h
//
// The library is built in <repo>/target/npm (its own directory: the flags below would
// otherwise rebuild target/release on every switch) with --remap-path-prefix, and the addon
// with -ffile-prefix-map, so neither carries a path of this machine; the script checks that.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const paths = require('./paths');
const { tag, libc, versionAtLeast } = require('./platform');
const { PKG, log, die, cargoBuild, buildWithCc } = require('./build');

const root = paths.root;
if (!fs.existsSync(path.join(root, 'Cargo.toml')) || !fs.existsSync(path.join(root, 'src', 'capi'))) {
  die(`prepack builds the package from a libcluster checkout; ${root} is not one`);
}
if (process.platform !== 'linux' || libc().name !== 'glibc') die(`prepack builds a glibc prebuilt binary; this is ${tag()}`);

function output(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0) die(`${cmd} ${args.join(' ')} failed: ${r.error ? r.error.message : r.stderr}`);
  return r.stdout;
}

const prebuilds = path.join(PKG, 'prebuilds');
const dir = path.join(prebuilds, tag());
const native = path.join(PKG, 'native');
fs.rmSync(prebuilds, { recursive: true, force: true });
fs.rmSync(native, { recursive: true, force: true });
fs.mkdirSync(dir, { recursive: true });

// 1. libcluster, with this checkout's and cargo's paths replaced in what rustc embeds
//    (panic locations).
const cargoHome = process.env.CARGO_HOME || path.join(require('node:os').homedir(), '.cargo');
const remap = `--remap-path-prefix=${root}=libcluster --remap-path-prefix=${cargoHome}=cargo`;
const built = cargoBuild(root, path.join(root, 'target', 'npm'), { RUSTFLAGS: `${process.env.RUSTFLAGS || ''} ${remap}`.trim() });
const lib = path.join(dir, paths.soname);
fs.copyFileSync(built, lib);
const soname = /\(SONAME\)\s+Library soname: \[(.*)\]/.exec(output('readelf', ['-d', lib]));
if (!soname || soname[1] !== paths.soname) die(`${built}: SONAME ${soname ? soname[1] : 'missing'}, scripts/paths.js says ${paths.soname}`);

// 2. The addon against it, looking for it beside itself.
const addon = path.join(dir, 'cluster_addon.node');
const err = buildWithCc({ library: lib, includeDir: path.join(root, 'include'), rpath: '$ORIGIN' }, addon, [`-ffile-prefix-map=${PKG}=.`]);
if (err) die(`building the addon failed: ${err}`);
for (const f of [lib, addon]) output('strip', ['--strip-unneeded', f]);

// 3. Checks: the loader finds libcluster through $ORIGIN only; no path of this machine.
const dyn = output('readelf', ['-d', addon]);
const runpath = /\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]/.exec(dyn);
if (!runpath || runpath[1] !== '$ORIGIN') die(`${addon}: RUNPATH is ${runpath ? runpath[1] : 'missing'}, not $ORIGIN`);
const addonNeeds = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1]);
if (!addonNeeds.includes(paths.soname)) die(`${addon} needs ${addonNeeds.join(', ')}, not ${paths.soname}`);
for (const f of [lib, addon]) {
  const needed = [...output('readelf', ['-d', f]).matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1]);
  if (needed.some((n) => n.includes('/'))) die(`${f} needs a library by path: ${needed.join(', ')}`);
  const bytes = fs.readFileSync(f);
  for (const p of [root, PKG, cargoHome]) {
    if (bytes.includes(Buffer.from(p))) die(`${f} contains the build path ${p}`);
  }
}

// 4. What it needs at run time.
let glibc = '0';
for (const f of [lib, addon]) {
  for (const m of output('readelf', ['--dyn-syms', '-W', f]).matchAll(/@GLIBC_([0-9.]+)/g)) {
    if (versionAtLeast(m[1], glibc)) glibc = m[1];
  }
}
const napi = Number(/#define NAPI_VERSION (\d+)/.exec(fs.readFileSync(path.join(PKG, 'src', 'addon.h'), 'utf8'))[1]);
const manifest = { platform: process.platform, arch: process.arch, libc: 'glibc', glibc, napi, builtWith: { node: process.version, glibc: libc().version } };
fs.writeFileSync(path.join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);

// 5. It loads (in a separate node: loading starts libcluster in that process).
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(NODE_UNIQUE_ID|NODE_CHANNEL_|LIBCLUSTER_NODE_)/.test(k)));
const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(addon)})`], { encoding: 'utf8', cwd: '/', env });
if (load.status !== 0) die(`the prebuilt addon does not load: ${load.stderr}`);

// 6. The crate's sources, for a build from source.
for (const f of ['Cargo.toml', 'Cargo.lock', 'build.rs', 'cbindgen.toml', 'src', path.join('include', 'cluster.h')]) {
  fs.cpSync(path.join(root, f), path.join(native, f), { recursive: true });
}
log(`prebuilds/${tag()}/ (glibc >= ${glibc}, N-API >= ${napi}) and native/ are ready`);
