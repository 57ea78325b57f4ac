// Issue 12: user messages arrive as they were sent, between Node and the other languages.
// A primary in one language forks one worker in another and sends it messages; the worker
// prints each as it read it ("RECV ...") and sends it back; the primary prints what came
// back ("GOT ..."). Peers: test/fixtures/msg_peer.js (this package, or node:cluster itself),
// tests/c/msg_peer.c (C: prints and sends the text as is), and
// bindings/python/tests/apps/msg_peer.py (Python: json.loads / json.dumps). The C and
// Python pairs are in tests/message_roundtrip.rs.
//
// What Node keeps is what JSON.parse keeps: key order (string keys; integer-like keys come
// first in any JS object) and every string, escapes decoded; a number becomes a Number, so
// an integer beyond 2^53 arrives rounded, exactly as between two node:cluster processes.
// The large integers themselves are checked between C and Python peers.
'use strict';
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { scenario, ROOT, FIXTURES, LAUNCHER, start, requireFile } = require('./helpers');

const NODE_PEER = path.join(FIXTURES, 'msg_peer.js');
const PY_PEER = path.join(ROOT, 'bindings', 'python', 'tests', 'apps', 'msg_peer.py');
const LIB_DIR = path.join(ROOT, 'target', 'debug');

// Key order, escapes (\u00e9, a surrogate pair, \", \\, \/), spaces inside a string, and
// whitespace outside strings (which the sender's library removes).
const ORDER_SPACED = String.raw`{ "z" : 1 , "a" : 2 , "m" : { "b" : 1 , "a" : 2 } , "s" : "\u00e9\ud83d\ude00\"\\\/ é  x" }`;
// As Node (and Python) write it: the same keys in the same order, the string decoded.
const ORDER_DECODED = String.raw`{"z":1,"a":2,"m":{"b":1,"a":2},"s":"é😀\"\\/ é  x"}`;
const ARRAY = String.raw`[{"k":"  two  spaces "},"x y",null,true,[]]`;
// 123456789012345678901234567890, 2^63+1, -(2^63+1), 2^64+1: Numbers in Node, as JSON.parse makes them.
const BIG = String.raw`{"big":123456789012345678901234567890,"u":9223372036854775809,"neg":-9223372036854775809,"l":[18446744073709551617,1]}`;
const BIG_IN_NODE = JSON.stringify(JSON.parse(BIG));

// tests/c/msg_peer.c, built as tests/common's build_c does (same flags, same place).
let cPeer;
function buildCPeer() {
  if (cPeer) return cPeer;
  requireFile(path.join(LIB_DIR, 'libcluster.so'), 'run `cargo build` in the repository root');
  const outDir = path.join(LIB_DIR, 'ctests');
  fs.mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, 'msg_peer');
  execFileSync(process.env.CC || 'cc', ['-std=c11', '-Wall', '-Wextra', '-Werror', '-pedantic', '-g', '-D_GNU_SOURCE',
    `-I${path.join(ROOT, 'include')}`, path.join(ROOT, 'tests', 'c', 'msg_peer.c'), '-o', out,
    `-L${LIB_DIR}`, '-lcluster', `-Wl,-rpath,${LIB_DIR}`], { stdio: 'inherit' });
  cPeer = out;
  return out;
}

// Runs primary argv `cmd` with `worker` (argv) as its worker's command; waits (bounded)
// for it to exit 0 and returns the GOT and RECV texts it and its worker printed.
async function run(t, name, cmd, worker, messages, env = {}) {
  const file = path.join(fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'rt-')), 'messages');
  fs.writeFileSync(file, messages.map((m) => `${m}\n`).join(''));
  t.after(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));
  const p = start(t, cmd[0], [...cmd.slice(1), ...worker], {
    name,
    env: { RT_MESSAGES: file, LIBCLUSTER_LIBRARY: path.join(LIB_DIR, 'libcluster.so'), PYTHONPATH: path.join(ROOT, 'bindings', 'python'), ...env },
  });
  await p.waitFor(`${messages.length} messages back`, (_j, raw) => p.lines.filter((l) => l.raw.startsWith('GOT ')).length === messages.length);
  const exit = await p.exited;
  assert.deepStrictEqual(exit, { code: 0, signal: null }, `${name} exited badly\n${p.transcript()}`);
  const field = (prefix) => p.lines.filter((l) => l.raw.startsWith(prefix)).map((l) => l.raw.slice(prefix.length));
  return { got: field('GOT '), recv: field('RECV ') };
}

const node = (cluster) => ({ cmd: [process.execPath, NODE_PEER], env: { RT_CLUSTER: cluster } });

scenario('C primary, addon worker: order and escapes as JSON.parse reads them, and back unchanged', async (t) => {
  const r = await run(t, 'C primary', [buildCPeer()], [LAUNCHER, NODE_PEER], [ORDER_SPACED, ARRAY, BIG]);
  assert.deepStrictEqual(r.recv, [ORDER_DECODED, ARRAY, BIG_IN_NODE], 'what the Node worker read');
  assert.deepStrictEqual(r.got, [ORDER_DECODED, ARRAY, BIG_IN_NODE], 'what the C primary received, as the worker wrote it');
});

scenario('C primary, node:cluster worker: the same as the addon worker', async (t) => {
  const r = await run(t, 'C primary', [buildCPeer()], [process.execPath, NODE_PEER], [ORDER_SPACED, ARRAY, BIG]);
  assert.deepStrictEqual(r.recv, [ORDER_DECODED, ARRAY, BIG_IN_NODE]);
  assert.deepStrictEqual(r.got, [ORDER_DECODED, ARRAY, BIG_IN_NODE]);
});

for (const cluster of ['addon', 'node']) {
  scenario(`${cluster === 'addon' ? 'addon' : 'node:cluster'} primary, C worker: JSON.stringify's text reaches C byte for byte`, async (t) => {
    const { cmd, env } = node(cluster);
    const r = await run(t, `${cluster} primary`, cmd, [buildCPeer()], [ORDER_SPACED, ARRAY], env);
    assert.deepStrictEqual(r.recv, [ORDER_DECODED, ARRAY], 'the exact text the C worker received');
    assert.deepStrictEqual(r.got, [ORDER_DECODED, ARRAY]);
  });
}

scenario('addon primary, Python worker', async (t) => {
  requireFile(PY_PEER, 'bindings/python is part of the repository');
  const { cmd, env } = node('addon');
  const r = await run(t, 'addon primary', cmd, ['python3', PY_PEER], [ORDER_SPACED, ARRAY], env);
  assert.deepStrictEqual(r.recv, [ORDER_DECODED, ARRAY], 'what the Python worker read (json.dumps of it)');
  assert.deepStrictEqual(r.got, [ORDER_DECODED, ARRAY]);
});

scenario('Python primary, addon worker', async (t) => {
  requireFile(PY_PEER, 'bindings/python is part of the repository');
  const r = await run(t, 'Python primary', ['python3', PY_PEER], [LAUNCHER, NODE_PEER], [ORDER_SPACED, ARRAY]);
  assert.deepStrictEqual(r.recv, [ORDER_DECODED, ARRAY]);
  assert.deepStrictEqual(r.got, [ORDER_DECODED, ARRAY]);
});
