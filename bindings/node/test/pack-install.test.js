// The npm package installs anywhere: `npm pack` here (the prepack step builds the prebuilt
// binary and vendors the crate's sources), then `npm install <tarball>` into an empty project
// in the system's temporary directory, outside the repository, and a clustered HTTP server
// there (`require('<package name>')`, two workers, plain `server.listen(port)`) answers
// from both workers:
//   - with no Rust toolchain and no C compiler on PATH: the prebuilt binary, nothing built;
//   - with LIBCLUSTER_BUILD_FROM_SOURCE=1 and cargo on PATH: built from the vendored sources;
//   - with LIBCLUSTER_BUILD_FROM_SOURCE=1 and no cargo: the install fails, saying why.
// In each, the installed binaries find libcluster.so.0 (its SONAME) through $ORIGIN only and no installed
// file names the repository's path. And `npm publish --dry-run` passes.
// npm runs offline (a registry nobody listens on): the package has no dependencies.
'use strict';
const assert = require('node:assert');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { after } = require('node:test');
const { scenario, PKG, ROOT, start, everyWorkerAnswers } = require('./helpers');

const NAME = require('../package.json').name;
const NO_REGISTRY = 'http://127.0.0.1:9/';
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'libcluster-npm-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));

// The environment npm gets: ours without development overrides or an outer npm's settings.
function npmEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('LIBCLUSTER_') || k.startsWith('npm_') || k.startsWith('NODE_UNIQUE') || k.startsWith('NODE_CHANNEL') || k === 'NODE_TEST_CONTEXT') continue;
    env[k] = v;
  }
  return { ...env, npm_config_cache: path.join(TMP, 'npm-cache'), npm_config_registry: NO_REGISTRY, npm_config_update_notifier: 'false', npm_config_fetch_retries: '0', ...extra };
}

// Runs a command in its own process group, bounded; the group is killed when the test ends.
function run(t, cmd, args, { cwd, env, timeout }) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const killGroup = () => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    };
    t.after(killGroup);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      out += `\n[killed after the ${timeout} ms bound]`;
      killGroup();
    }, timeout);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: null, out: `${out}\n${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, out });
    });
  });
}

const which = (cmd, PATH) => PATH.split(':').map((d) => path.join(d, cmd)).find((f) => fs.existsSync(f)) || null;

// The tarball, packed once for all scenarios (the first pack builds the release library in
// target/npm; later ones reuse it).
let packing = null;
function pack(t) {
  packing ??= (async () => {
    const dest = path.join(TMP, 'pack');
    fs.mkdirSync(dest);
    const r = await run(t, 'npm', ['pack', '--pack-destination', dest, '--loglevel=error'], { cwd: PKG, env: npmEnv(), timeout: 600000 });
    assert.strictEqual(r.code, 0, `npm pack failed:\n${r.out}`);
    const files = fs.readdirSync(dest).filter((f) => f.endsWith('.tgz'));
    assert.strictEqual(files.length, 1, `npm pack made ${files.join(', ')}`);
    const list = spawnSync('tar', ['tzf', path.join(dest, files[0])], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
    // Every file of lib/ (the primary is split over several, all required at load) and of
    // src/ (the addon's C files and their shared header, for a build from source).
    const lib = fs.readdirSync(path.join(PKG, 'lib')).map((f) => `package/lib/${f}`);
    const src = fs.readdirSync(path.join(PKG, 'src')).map((f) => `package/src/${f}`);
    for (const f of ['package/prebuilds/linux-x64-glibc/cluster_addon.node', 'package/prebuilds/linux-x64-glibc/libcluster.so.0', 'package/native/Cargo.lock', 'package/native/src/lib.rs', ...lib, ...src]) {
      assert.ok(list.includes(f), `the tarball lacks ${f}`);
    }
    for (const f of list) assert.ok(!/\/(test|target|build)\//.test(f), `the tarball holds ${f}, which a user does not need`);
    assert.ok(!fs.existsSync(path.join(PKG, 'prebuilds')) && !fs.existsSync(path.join(PKG, 'native')), 'postpack left prebuilds/ or native/ in the tree');
    return path.join(dest, files[0]);
  })();
  return packing;
}

// An empty project in the temporary directory; `npm install <tarball>` there.
async function install(t, label, env) {
  const tarball = await pack(t);
  const dir = path.join(TMP, label);
  fs.mkdirSync(dir);
  assert.ok(path.relative(ROOT, dir).startsWith('..'), 'the project is outside the repository');
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ name: `try-${label}`, version: '1.0.0', private: true })}\n`);
  const r = await run(t, 'npm', ['install', '--offline', '--foreground-scripts', '--no-audit', '--no-fund', tarball], { cwd: dir, env: npmEnv(env), timeout: 900000 });
  return { dir, pkg: path.join(dir, 'node_modules', NAME), ...r };
}

// readelf -d: the RUNPATH (or null) and the NEEDED entries.
function dynamic(file) {
  const r = spawnSync('readelf', ['-d', file], { encoding: 'utf8' });
  assert.strictEqual(r.status, 0, `readelf -d ${file}: ${r.stderr}`);
  const runpath = /\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]/.exec(r.stdout);
  return { runpath: runpath ? runpath[1] : null, needed: [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[(.*)\]/g)].map((m) => m[1]) };
}

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

// Nothing installed points at the build machine: the addon's RUNPATH is $ORIGIN, libraries
// are needed by name, and no file holds the repository's path. And the addon exports only
// what N-API loads.
function assertRelocatable(pkgDir, binDir) {
  const addon = dynamic(path.join(binDir, 'cluster_addon.node'));
  assert.strictEqual(addon.runpath, '$ORIGIN');
  assert.ok(addon.needed.includes('libcluster.so.0'), `the addon needs ${addon.needed.join(', ')}`);
  const lib = dynamic(path.join(binDir, 'libcluster.so.0'));
  assert.strictEqual(lib.runpath, null);
  for (const n of [...addon.needed, ...lib.needed]) assert.ok(!n.includes('/'), `needed by path: ${n}`);
  const root = Buffer.from(ROOT);
  for (const f of walk(pkgDir)) assert.ok(!fs.readFileSync(f).includes(root), `${path.relative(pkgDir, f)} holds ${ROOT}`);
  // The addon exports only N-API's module entry points: what its C files share (src/addon.h,
  // lc_*) has hidden visibility.
  const nm = spawnSync('nm', ['-D', '--defined-only', path.join(binDir, 'cluster_addon.node')], { encoding: 'utf8' });
  assert.strictEqual(nm.status, 0, `nm -D: ${nm.stderr}`);
  const exported = nm.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/).pop()).sort();
  assert.deepStrictEqual(exported, ['napi_register_module_v1', 'node_api_module_get_api_version_v1']);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

const SERVER = `'use strict';
// A primary and two workers; each worker: http.createServer(...).listen(port).
const cluster = require(${JSON.stringify(NAME)});
const http = require('node:http');
const port = Number(process.env.PORT);
if (cluster.isPrimary) {
  cluster.on('listening', (worker, address) => console.log(JSON.stringify({ event: 'listening', pid: worker.process.pid, port: address.port })));
  cluster.on('exit', (worker, code, signal) => console.log(JSON.stringify({ event: 'exit', pid: worker.process.pid, code, signal })));
  cluster.fork();
  cluster.fork();
} else {
  http.createServer((req, res) => res.end('hello from worker ' + process.pid + '\\n')).listen(port);
}
`;

// Runs the server in the project; both workers answer; each process has the addon and
// libcluster.so.0 of `binDir` mapped.
async function serve(t, dir, binDir) {
  fs.writeFileSync(path.join(dir, 'server.js'), SERVER);
  const port = await freePort();
  const p = start(t, process.execPath, ['server.js'], { cwd: dir, env: { PORT: String(port) }, name: `server.js in ${path.basename(dir)}` });
  const pids = [];
  for (let i = 0; i < 2; i++) {
    const l = await p.waitFor(`listening #${i + 1}`, (j) => j.event === 'listening' && !pids.includes(j.pid));
    assert.strictEqual(l.port, port);
    pids.push(l.pid);
  }
  await everyWorkerAnswers(port, pids);
  for (const pid of [p.pid, ...pids]) {
    const maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
    for (const f of ['cluster_addon.node', 'libcluster.so.0']) {
      const mapped = [...new Set(maps.split('\n').filter((l) => l.endsWith(`/${f}`)).map((l) => l.slice(l.indexOf('/'))))];
      assert.deepStrictEqual(mapped, [path.join(binDir, f)], `process ${pid} maps ${f} from ${mapped.join(', ') || 'nowhere'}`);
    }
  }
  assert.strictEqual(p.exit, null, 'the primary keeps running');
}

scenario('npm install <tarball> without a Rust toolchain or C compiler: the prebuilt binary serves a clustered http server', { timeout: 900000 }, async (t) => {
  // Stand-ins that record any call: nothing may be built.
  const fake = path.join(TMP, 'fake-bin');
  const calls = path.join(TMP, 'fake-calls');
  fs.mkdirSync(fake);
  for (const tool of ['cargo', 'rustc', 'cc', 'gcc', 'c++', 'g++', 'make', 'node-gyp']) {
    fs.writeFileSync(path.join(fake, tool), `#!/bin/sh\necho "${tool} $*" >> '${calls}'\nexit 1\n`, { mode: 0o755 });
  }
  const PATH = [fake, path.dirname(process.execPath), '/usr/bin', '/bin'].join(':');
  assert.strictEqual(which('cargo', PATH), path.join(fake, 'cargo'), 'no real cargo on the restricted PATH');
  // LIBCLUSTER_LIBRARY is for development in the repository; an installed package ignores it.
  const r = await install(t, 'prebuilt', { PATH, LIBCLUSTER_LIBRARY: '/nonexistent/libcluster.so' });
  assert.strictEqual(r.code, 0, `npm install failed:\n${r.out}`);
  assert.match(r.out, /using the prebuilt binary in prebuilds\/linux-x64-glibc\//);
  assert.ok(!fs.existsSync(calls), `the install ran: ${fs.existsSync(calls) && fs.readFileSync(calls, 'utf8')}`);
  assert.ok(!fs.existsSync(path.join(r.pkg, 'build')), 'nothing was built');
  const bin = path.join(r.pkg, 'prebuilds', 'linux-x64-glibc');
  assertRelocatable(r.pkg, bin);
  await serve(t, r.dir, bin);
});

scenario('npm install <tarball> with LIBCLUSTER_BUILD_FROM_SOURCE=1 and cargo: built from the vendored sources, serves a clustered http server', { timeout: 900000 }, async (t) => {
  const cargo = which('cargo', process.env.PATH);
  assert.ok(cargo, 'cargo is on PATH');
  const PATH = [path.dirname(cargo), path.dirname(process.execPath), '/usr/bin', '/bin'].join(':');
  const r = await install(t, 'source', { PATH, LIBCLUSTER_BUILD_FROM_SOURCE: '1' });
  assert.strictEqual(r.code, 0, `npm install failed:\n${r.out}`);
  assert.match(r.out, /LIBCLUSTER_BUILD_FROM_SOURCE is set: building from the sources in/);
  assert.ok(!fs.existsSync(path.join(r.pkg, 'native', 'target')), 'the cargo target directory is removed');
  const bin = path.join(r.pkg, 'build', 'Release');
  assertRelocatable(r.pkg, bin);
  await serve(t, r.dir, bin);
});

scenario('npm install <tarball> with no fitting prebuilt and no cargo fails and says what is needed', { timeout: 900000 }, async (t) => {
  const PATH = [path.dirname(process.execPath), '/usr/bin', '/bin'].join(':');
  if (which('cargo', PATH)) return t.skip(`cargo is in ${which('cargo', PATH)}`);
  const r = await install(t, 'no-cargo', { PATH, LIBCLUSTER_BUILD_FROM_SOURCE: '1' });
  assert.notStrictEqual(r.code, 0, `npm install succeeded:\n${r.out}`);
  assert.match(r.out, /building from source needs a Rust toolchain \(cargo: https:\/\/rustup\.rs\)/);
});

scenario('npm publish --dry-run passes', { timeout: 600000 }, async (t) => {
  const r = await run(t, 'npm', ['publish', '--dry-run', '--offline'], { cwd: PKG, env: npmEnv(), timeout: 600000 });
  assert.strictEqual(r.code, 0, `npm publish --dry-run failed:\n${r.out}`);
  assert.match(r.out, new RegExp(`\\+ ${NAME}@`));
  assert.ok(!fs.existsSync(path.join(PKG, 'prebuilds')) && !fs.existsSync(path.join(PKG, 'native')), 'postpack left prebuilds/ or native/ in the tree');
});
