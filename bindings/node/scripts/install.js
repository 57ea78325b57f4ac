// `npm install` in bindings/node runs this: it makes sure libcluster is built, then builds
// the addon (build/Release/cluster_addon.node) with node-gyp against the headers of the node
// that runs it (--nodedir: nothing is downloaded). If node-gyp is missing or fails, it
// falls back to one `cc -shared` invocation with the same flags.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const paths = require('./paths');

const pkg = path.resolve(__dirname, '..');

function run(cmd, args, opts = {}) {
  console.log(`libcluster: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', ...opts });
  if (r.error) return r.error.message;
  if (r.status !== 0) return `${cmd} exited with ${r.status ?? r.signal}`;
  return null;
}

function die(msg) {
  console.error(`libcluster: ${msg}`);
  process.exit(1);
}

// 1. The library.
if (!fs.existsSync(paths.library)) {
  if (paths.overridden) die(`LIBCLUSTER_LIBRARY=${paths.library} does not exist`);
  const err = run('cargo', ['build', '--release'], { cwd: paths.root });
  if (err) die(`building libcluster failed: ${err}`);
  if (!fs.existsSync(paths.library)) die(`cargo did not produce ${paths.library}`);
}
if (!fs.existsSync(path.join(paths.includeDir, 'cluster.h'))) die(`no cluster.h in ${paths.includeDir}`);

// 2. Node's headers: those of the node running us (<prefix>/include/node).
function nodeDir() {
  const candidates = [path.resolve(path.dirname(process.execPath), '..'), process.env.npm_config_nodedir].filter(Boolean);
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'include', 'node', 'node_api.h')) && fs.existsSync(path.join(dir, 'include', 'node', 'uv.h'))) return dir;
  }
  return null;
}
const nodedir = nodeDir();
if (!nodedir) die(`no Node headers (include/node/node_api.h, uv.h) next to ${process.execPath}; install them (e.g. Debian's libnode-dev or nodejs)`);

// 3. The addon, with node-gyp (npm's own copy) or cc.
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ].filter(Boolean);
  return candidates.find((p) => fs.existsSync(p)) || null;
}

function buildWithGyp() {
  const gyp = nodeGyp();
  if (!gyp || !fs.existsSync(path.join(nodedir, 'include', 'node', 'common.gypi'))) return 'node-gyp or common.gypi not found';
  return run(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`], { cwd: pkg });
}

function buildWithCc() {
  const out = path.join(pkg, 'build', 'Release');
  fs.mkdirSync(out, { recursive: true });
  const cc = process.env.CC || 'cc';
  return run(cc, [
    '-std=gnu11', '-O2', '-g', '-fPIC', '-shared', '-Wall', '-Wextra', '-Wno-unused-parameter',
    '-DNODE_GYP_MODULE_NAME=cluster_addon', '-DBUILDING_NODE_EXTENSION',
    `-I${path.join(nodedir, 'include', 'node')}`, `-I${paths.includeDir}`,
    path.join(pkg, 'src', 'addon.c'),
    '-o', path.join(out, 'cluster_addon.node'),
    `-L${paths.libDir}`, `-l:${paths.libName}`, `-Wl,-rpath,${paths.libDir}`,
  ], { cwd: pkg });
}

let err = process.env.LIBCLUSTER_NO_GYP ? 'skipped (LIBCLUSTER_NO_GYP)' : buildWithGyp();
if (err) {
  console.log(`libcluster: node-gyp: ${err}; building with cc instead`);
  err = buildWithCc();
  if (err) die(`building the addon failed: ${err}`);
}
console.log(`libcluster: built ${path.join(pkg, 'build', 'Release', 'cluster_addon.node')} (libcluster: ${paths.library})`);
