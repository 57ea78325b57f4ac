// Drop-in for node:cluster, how a worker's channel ends: the primary closes the bare channel
// (worker.process.disconnect(); Node's test-cluster-process-disconnect has the worker do it),
// process.channel.unref()/ref() in a worker, a primary's disconnect while a connection is
// open (test-cluster-worker-wait-server-close), a listen still pending at the disconnect
// (test-cluster-disconnect-race); in our own words. The primary and its workers are
// test/fixtures/dropin/lifecycle.js, one scenario per run; they print facts, we assert.
'use strict';
const assert = require('node:assert');
const net = require('node:net');
const path = require('node:path');
const { scenario, FIXTURES, WAIT_MS, start } = require('./helpers');

const SCRIPT = path.join(FIXTURES, 'dropin', 'lifecycle.js');

function run(t, mode, env = {}) {
  return start(t, process.execPath, [SCRIPT, mode], { env, name: `lifecycle.js ${mode}` });
}

const position = (p, pred) => p.lines.findIndex((l) => l.json && pred(l.json));

// The primary's 'disconnect' and then 'exit' for worker `id`; returns the exit event.
async function disconnectThenExit(p, id) {
  await p.event('disconnect', { id });
  const exit = await p.event('exit', { id });
  const d = position(p, (j) => j.event === 'disconnect' && j.id === id);
  const e = position(p, (j) => j.event === 'exit' && j.id === id);
  assert.ok(d >= 0 && d < e, `'disconnect' (line ${d}) before 'exit' (line ${e})`);
  return exit;
}

// A client connection to 127.0.0.1:port and its first data, bounded; closed when the test ends.
function connectAndRead(t, port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    t.after(() => sock.destroy());
    const timer = setTimeout(() => reject(new Error(`no data from 127.0.0.1:${port} within ${WAIT_MS} ms`)), WAIT_MS);
    sock.once('data', (d) => {
      clearTimeout(timer);
      resolve({ sock, data: d.toString() });
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

scenario("worker.process.disconnect() in the primary: 'disconnect', then 'exit' with code 0", { timeout: 30000 }, async (t) => {
  const p = run(t, 'process-disconnect');
  await p.event('listening', { id: 1 });
  const exit = await disconnectThenExit(p, 1);
  assert.deepStrictEqual([exit.code, exit.signal], [0, null]);
  assert.strictEqual(exit.ead, false, 'closing the bare channel is not a cluster disconnect');
  assert.ok(position(p, (j) => j.event === 'process disconnect') >= 0, "worker.process emitted 'disconnect'");
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

scenario('process.disconnect() in a listening worker: it exits with code 0, no signal', { timeout: 30000 }, async (t) => {
  const p = run(t, 'worker-process-disconnect');
  const exit = await disconnectThenExit(p, 1);
  assert.deepStrictEqual([exit.code, exit.signal], [0, null]);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

scenario('process.disconnect() in a worker is the bare channel close: exitedAfterDisconnect false, as in Node', { timeout: 30000 }, async (t) => {
  const p = run(t, 'worker-process-disconnect');
  const exit = await disconnectThenExit(p, 1);
  assert.strictEqual(exit.ead, false);
});

scenario('process.channel.unref() in a worker with nothing else to do: it exits by itself, code 0', { timeout: 30000 }, async (t) => {
  const p = run(t, 'channel', { CHANNEL: 'unref' });
  const w = await p.waitFor('worker unref\'d its channel', (j) => j.worker === 'channel' && j.how === 'unref');
  await p.event('message', { id: 1, msg: 'idle' });
  await p.waitFor('the worker ran out of work', (j) => j.worker === 'beforeExit' && j.pid === w.pid);
  const exit = await disconnectThenExit(p, 1);
  assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, false]);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

scenario('process.channel.ref() after unref(): the channel alone keeps the worker alive', { timeout: 30000 }, async (t) => {
  const p = run(t, 'channel', { CHANNEL: 'ref' });
  const w = await p.waitFor('worker ref\'d its channel', (j) => j.worker === 'channel' && j.how === 'ref');
  // After 'idle' the worker has only its channel; it still answers the primary's question.
  await p.event('message', { id: 1, msg: 'still here' });
  const answered = position(p, (j) => j.event === 'message' && j.msg === 'still here');
  const ranOut = position(p, (j) => j.worker === 'beforeExit' && j.pid === w.pid);
  assert.ok(ranOut === -1 || ranOut > answered, 'the worker did not run out of work while its channel was ref\'d');
  // Then the primary disconnects it.
  const exit = await disconnectThenExit(p, 1);
  assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, true]);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

scenario("worker.disconnect() with a connection open: the worker's 'disconnect' comes after the connection ended and its server closed", { timeout: 30000 }, async (t) => {
  const p = run(t, 'wait-close');
  const l = await p.waitFor('worker listening', (j) => j.worker === 'listening');
  const { sock, data } = await connectAndRead(t, l.port);
  assert.strictEqual(data, '.');

  await p.command('disconnect');
  const closing = await p.waitFor('the cluster closes the worker\'s server', (j) => j.worker === 'server.close() called');
  assert.strictEqual(closing.openConnections, 1, 'our connection was open when the disconnect began');
  // The connection is still open: neither side may have seen 'disconnect' yet.
  assert.strictEqual(position(p, (j) => j.worker === 'disconnect' || j.event === 'disconnect'), -1);

  sock.end();
  const wd = await p.waitFor('worker-side disconnect', (j) => j.worker === 'disconnect');
  assert.strictEqual(wd.connectionEnded, true);
  assert.strictEqual(wd.serverClosed, true);
  const conn = position(p, (j) => j.worker === 'connection ended');
  const srv = position(p, (j) => j.worker === 'server closed');
  const dis = position(p, (j) => j.worker === 'disconnect');
  assert.ok(conn >= 0 && conn < srv && srv < dis, `connection ended (${conn}) < server closed (${srv}) < disconnect (${dis})`);
  const exit = await disconnectThenExit(p, 1);
  assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, true]);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

scenario('a listen still pending when the primary disconnects the worker: no error, the worker exits 0 (SCHED_NONE)', { timeout: 30000 }, async (t) => {
  const p = run(t, 'race');
  await p.event('message', { id: 1, msg: 'listening' });
  for (const id of [1, 2]) {
    const exit = await disconnectThenExit(p, id);
    assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, true], `worker ${id}`);
  }
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  const errors = p.lines.filter((l) => l.json && l.json.worker === 'server error').map((l) => l.raw);
  assert.deepStrictEqual(errors, [], 'no server error in either worker');
  assert.strictEqual(p.stderr.trim(), '', 'nothing on stderr (no uncaught exception, no warning)');
});
