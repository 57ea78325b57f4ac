// Which prebuilt binary fits the running node: shared by scripts/install.js (decides whether
// to build) and lib/native.js (decides what to load).
//
// A prebuilt lives in prebuilds/<platform>-<arch>-<libc>/ (e.g. prebuilds/linux-x64-glibc/):
// cluster_addon.node, libcluster.so.0 beside it (the library under its SONAME, the name the
// addon needs; the addon's RUNPATH is $ORIGIN) and
// manifest.json, written by scripts/prepack.js:
//   { "platform": "linux", "arch": "x64", "libc": "glibc", "glibc": "2.34", "napi": 8, ... }
// where "glibc" is the newest GLIBC_x.y symbol version the two files need and "napi" the
// N-API version the addon was compiled for.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

// The library's SONAME (build.rs, ABI_MAJOR): the file name the addon needs.
const SONAME = 'libcluster.so.0';

const PKG = path.resolve(__dirname, '..');
const PREBUILDS = path.join(PKG, 'prebuilds');

// The running libc: 'glibc' with its version, or 'musl' (no glibc version in the report).
function libc() {
  if (process.platform !== 'linux') return { name: 'none', version: null };
  let version = null;
  try {
    version = process.report.getReport().header.glibcVersionRuntime || null;
  } catch {}
  return version ? { name: 'glibc', version } : { name: 'musl', version: null };
}

function tag() {
  return `${process.platform}-${process.arch}-${libc().name}`;
}

// "2.34" < "2.36": compares dotted versions numerically.
function versionAtLeast(have, need) {
  const a = String(have).split('.').map(Number);
  const b = String(need).split('.').map(Number);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] || 0;
    const y = b[i] || 0;
    if (x !== y) return x > y;
  }
  return true;
}

// { dir, ok: true } when prebuilds/<tag>/ holds a binary this node can load, else
// { dir, ok: false, reason } saying why not.
function prebuilt() {
  const t = tag();
  const dir = path.join(PREBUILDS, t);
  const no = (reason) => ({ dir, tag: t, ok: false, reason });
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  } catch {
    const have = fs.existsSync(PREBUILDS) ? fs.readdirSync(PREBUILDS).join(', ') || 'none' : 'none';
    return no(`the package has no prebuilt binary for ${t} (it has: ${have})`);
  }
  for (const f of ['cluster_addon.node', SONAME]) {
    if (!fs.existsSync(path.join(dir, f))) return no(`prebuilds/${t}/${f} is missing`);
  }
  const c = libc();
  if (manifest.glibc && !versionAtLeast(c.version, manifest.glibc)) {
    return no(`the prebuilt binary needs glibc ${manifest.glibc}; this system has ${c.version}`);
  }
  const napi = Number(process.versions.napi);
  if (manifest.napi && !(napi >= manifest.napi)) {
    return no(`the prebuilt binary needs N-API ${manifest.napi}; this node (${process.version}) has ${process.versions.napi}`);
  }
  return { dir, tag: t, ok: true, manifest };
}

module.exports = { PKG, PREBUILDS, SONAME, libc, tag, versionAtLeast, prebuilt };

if (require.main === module) process.stdout.write(`${JSON.stringify(prebuilt(), null, 2)}\n`);
