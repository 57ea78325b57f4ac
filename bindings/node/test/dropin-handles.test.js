// Drop-in for node:cluster, handles and message formats: a socket sent twice from a worker
// (Node's test-cluster-send-handle-twice), a relative Unix socket name whose absolute path
// is too long for a socket address (test-cluster-net-listen-relative-path), and
// serialization 'advanced' (test-cluster-advanced-serialization); in our own words. The
// primary and its workers are test/fixtures/dropin/handles.js, one scenario per run; they
// print facts, we assert.
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { scenario, FIXTURES, start } = require('./helpers');

const SCRIPT = path.join(FIXTURES, 'dropin', 'handles.js');

function run(t, mode, env = {}) {
  return start(t, process.execPath, [SCRIPT, mode], { env, name: `handles.js ${mode}` });
}

const events = (p, name) => p.lines.map((l) => l.json).filter((j) => j && j.event === name);

scenario('a worker sends one socket with two messages: the second arrives without a handle, nothing throws, exit 0', { timeout: 30000 }, async (t) => {
  const p = run(t, 'twice');
  const sent = await p.waitFor('worker sent both', (j) => j.worker === 'sent');
  assert.deepStrictEqual(sent.results, [
    { msg: 'with the socket', returned: true },
    { msg: 'the same socket again', returned: true },
  ]);
  const exit = await p.event('exit', { id: 1 });
  assert.deepStrictEqual([exit.code, exit.signal], [0, null]);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  const msgs = events(p, 'message').map(({ msg, handle }) => ({ msg, handle }));
  assert.deepStrictEqual(msgs, [
    { msg: 'with the socket', handle: 'Socket' },
    { msg: 'the same socket again', handle: null },
  ]);
});

scenario('a relative Unix socket name (absolute path over 108 bytes): served, found in the cwd, removed after the exit', { timeout: 30000 }, async (t) => {
  const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'libcluster-dropin-')));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const dir = 'unix-socket-dir';
  const name = 'A'.repeat(90);
  const absolute = path.join(tmp, dir, name);
  assert.ok(Buffer.byteLength(absolute) > 108, `${absolute} should not fit in sun_path`);

  const p = run(t, 'relative', { DROPIN_TMP: tmp, DROPIN_SOCKET_DIR: dir, DROPIN_SOCKET_NAME: name });
  const file = await p.event('socket file');
  assert.strictEqual(file.path, absolute);
  const l = await p.waitFor('worker listening', (j) => j.worker === 'listening');
  assert.strictEqual(l.cwd, path.join(tmp, dir));
  assert.strictEqual(l.existsHere, true, 'the socket is in the worker\'s cwd, under the name it gave');
  assert.strictEqual(l.address, name, 'server.address() is the name as given');
  assert.strictEqual(l.reply, `served by ${l.pid}\n`, 'a client connecting by that name is served by the worker');
  const after = await p.event('after exit');
  assert.strictEqual(after.socketExists, false, 'the socket file is removed once the worker has exited');
  const exit = await p.event('exit', { id: 1 });
  assert.deepStrictEqual([exit.code, exit.signal], [0, null]);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  assert.ok(!p.lines.some((x) => x.json && /error/.test(x.json.worker || '')), 'no server or client error');
  assert.deepStrictEqual(fs.readdirSync(path.join(tmp, dir)), [], 'nothing left in the socket directory');
});

// What describe() in the fixture reports for the value it sends (see richValue() there).
const RICH = {
  deepEqual: true,
  circular: true,
  isMap: true,
  mapEntries: [['one', '1'], ['two', '{ deep: [ 2n ] }']],
  bigType: 'bigint',
  big: String(2n ** 70n),
  isUint8Array: true,
  bytes: [0, 1, 254, 255],
};

for (const [how, what] of [['setup', "setupPrimary({ serialization: 'advanced' })"], ['in-place', "cluster.settings.serialization = 'advanced' before fork()"]]) {
  scenario(`${what}: a circular object with a Map, a BigInt and a Uint8Array goes primary -> worker -> primary`, { timeout: 30000 }, async (t) => {
    const p = run(t, 'advanced', { HOW: how });
    const inWorker = await p.event('worker report');
    assert.deepStrictEqual(inWorker.report, RICH, 'as the worker received it');
    const back = await p.event('round trip');
    const { event, ...got } = back;
    assert.deepStrictEqual(got, RICH, 'as the primary got it back');
    const exit = await p.event('exit', { id: 1 });
    assert.deepStrictEqual([exit.code, exit.signal], [0, null]);
    assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  });
}
