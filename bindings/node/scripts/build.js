// The build steps shared by scripts/install.js (building on the user's machine) and
// scripts/prepack.js (building the prebuilt binary): libcluster with cargo, the addon with
// node-gyp (npm's own copy) or one `cc -shared` command.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const paths = require('./paths');

const PKG = path.resolve(__dirname, '..');
const NAME = require('../package.json').name;

function log(msg) {
  console.log(`${NAME}: ${msg}`);
}

function die(msg) {
  console.error(`${NAME}: ${msg}`);
  process.exit(1);
}

// Runs a command with inherited stdio; returns null on success, else what went wrong.
function run(cmd, args, opts = {}) {
  log(`${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) return r.error.code === 'ENOENT' ? `${cmd}: not found on PATH` : r.error.message;
  if (r.status !== 0) return `${cmd} exited with ${r.status ?? r.signal}`;
  return null;
}

// True when `cmd` can be run (e.g. cargo: a Rust toolchain is installed).
function have(cmd) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

// `cargo build --release --locked` of the crate in `crateDir` into `targetDir`; returns the
// path of libcluster.so. The header in the crate stays as it is (a build never writes it);
// no debug info (the library is shipped, not debugged); `env` adds variables (RUSTFLAGS).
function cargoBuild(crateDir, targetDir, env = {}) {
  const err = run('cargo', ['build', '--release', '--locked', '--lib'], {
    cwd: crateDir,
    env: {
      ...process.env,
      CARGO_TARGET_DIR: targetDir,
      CARGO_PROFILE_RELEASE_DEBUG: '0',
      ...env,
    },
  });
  if (err) die(`building libcluster failed: ${err}`);
  const lib = path.join(targetDir, 'release', 'libcluster.so');
  if (!fs.existsSync(lib)) die(`cargo did not produce ${lib}`);
  return lib;
}

// The prefix holding Node's headers (<prefix>/include/node/node_api.h and uv.h): the running
// node's own, or npm's --nodedir. null: node-gyp will fetch them.
function nodeDir() {
  const candidates = [path.resolve(path.dirname(process.execPath), '..'), process.env.npm_config_nodedir].filter(Boolean);
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h')) && fs.existsSync(path.join(dir, 'include', 'node', 'uv.h'))) return dir;
  }
  return null;
}

function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].filter(Boolean);
  return candidates.find((p) => fs.existsSync(p)) || null;
}

// build/Release/cluster_addon.node in the package with node-gyp (binding.gyp reads `lib` as
// LIBCLUSTER_* through scripts/paths.js).
function buildWithGyp(lib) {
  const gyp = nodeGyp();
  if (!gyp) return 'node-gyp not found';
  const dir = nodeDir();
  const env = { ...process.env, LIBCLUSTER_LIBRARY: lib.library, LIBCLUSTER_INCLUDE: lib.includeDir, LIBCLUSTER_RPATH: lib.rpath };
  return run(process.execPath, [gyp, 'rebuild', ...(dir ? [`--nodedir=${dir}`] : [])], { cwd: PKG, env });
}

// `outFile` with one cc command over every src/*.c (scripts/paths.js); `extra` adds flags
// (the prepack step's -s, prefix maps).
function buildWithCc(lib, outFile, extra = []) {
  const dir = nodeDir();
  if (!dir) return `no Node headers (include/node/node_api.h, uv.h) next to ${process.execPath}`;
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  return run(process.env.CC || 'cc', [
    '-std=gnu11', '-O2', '-fPIC', '-shared', '-pthread', '-Wall', '-Wextra', '-Wno-unused-parameter',
    '-DNODE_GYP_MODULE_NAME=cluster_addon', '-DBUILDING_NODE_EXTENSION',
    `-I${path.join(dir, 'include', 'node')}`, `-I${lib.includeDir}`,
    ...extra,
    ...paths.sources().map((f) => path.join(PKG, f)),
    '-o', outFile,
    `-L${path.dirname(lib.library)}`, `-l:${path.basename(lib.library)}`, `-Wl,-rpath,${lib.rpath}`,
  ], { cwd: PKG });
}

// build/Release/cluster_addon.node: node-gyp, else cc (LIBCLUSTER_NO_GYP=1 skips node-gyp).
// lib: { library, includeDir, rpath }.
function buildAddon(lib) {
  const out = path.join(PKG, 'build', 'Release', 'cluster_addon.node');
  let err = process.env.LIBCLUSTER_NO_GYP ? 'skipped (LIBCLUSTER_NO_GYP)' : buildWithGyp(lib);
  if (err) {
    log(`node-gyp: ${err}; building with cc instead`);
    err = buildWithCc(lib, out);
    if (err) die(`building the addon failed: ${err}`);
  }
  return out;
}

module.exports = { PKG, NAME, log, die, run, have, cargoBuild, nodeDir, buildWithCc, buildAddon };
