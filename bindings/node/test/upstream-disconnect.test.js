// Node's cluster test scenarios about disconnecting workers, in our own words: many at once
// (disconnect and destroy mixed), cluster.disconnect() from a worker's 'disconnect', the
// worker-side disconnect waiting for the primary's ack, idle workers, nothing forked, a
// worker disconnected before it listens, servers never shared, two full rounds, a closed
// channel (forced exit), an open client connection (no exit), an odd internal message, and
// servers restarted in a worker. The processes are test/fixtures/upstream/disconnect.js;
// the primary prints one {"result": ...} line as it exits; we assert.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, start } = require('./helpers');

const SCRIPT = path.join(FIXTURES, 'upstream', 'disconnect.js');

async function run(t, mode, env = {}) {
  const p = start(t, process.execPath, [SCRIPT, mode], { env, name: `disconnect.js ${mode}` });
  const { result } = await p.waitFor("the primary's result", (j) => j.result);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null }, 'the primary exits 0, by itself, once its workers are gone');
  assert.strictEqual(p.stderr.trim(), '', 'nothing on stderr (no exception, no warning)');
  const workers = p.lines.map((l) => l.json).filter((j) => j && j.worker);
  return { result, workers };
}

const byId = (exits) => [...exits].sort((a, b) => a.id - b.id);
const clean = (...ids) => ids.map((id) => ({ id, code: 0, signal: null }));

scenario('four workers told at once to disconnect or destroy themselves: every one exits (0, null)', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'concurrent');
  assert.deepStrictEqual(byId(result.exits), clean(1, 2, 3, 4));
  assert.deepStrictEqual([...result.disconnected].sort(), [1, 2, 3, 4], "one 'disconnect' per worker");
  // Sending to a worker that is going away may fail; if so, only as a write error.
  for (const e of result.sendErrors || []) {
    assert.strictEqual(e.syscall, 'write');
    assert.ok(['EPIPE', 'ECONNRESET'].includes(e.code), e.code);
  }
});

scenario("cluster.disconnect() called from a worker's 'disconnect' (the worker is no longer listed): no error", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'before-exit');
  assert.deepStrictEqual(result, { listedAtDisconnect: 0, callback: true, exits: clean(1) });
});

scenario("cluster.worker.disconnect() in a worker: its 'disconnect' waits for the primary's ack; exit 0", { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'ack-race');
  assert.deepStrictEqual(workers, [
    { worker: 'next tick', disconnectFired: false },
    { worker: 'disconnect event' },
  ]);
  assert.deepStrictEqual(result.exits, clean(1));
});

scenario('cluster.disconnect(cb) right after two bare fork() calls: cb sees no workers, both exit 0', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'idle');
  assert.deepStrictEqual(result.workersAtCallback, []);
  assert.deepStrictEqual(byId(result.exits), clean(1, 2));
});

scenario("cluster.disconnect() before the worker's server listens (SCHED_NONE): 'disconnect' and 'exit' still come", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'at-once', { SCHED: 'none' });
  assert.deepStrictEqual([...result.events].sort(), ['cluster exit', 'worker disconnect', 'worker exit']);
});

scenario('NODE_CLUSTER_SCHED_POLICY=none: an idle worker disconnected, then cluster.disconnect() with one holding a server', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'unshared', { NODE_CLUSTER_SCHED_POLICY: 'none' });
  assert.strictEqual(result.callback, true);
  assert.deepStrictEqual(byId(result.exits), clean(1, 2));
});

scenario('cluster.disconnect(cb) with no worker ever forked: cb runs, and not synchronously', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'no-workers');
  assert.deepStrictEqual(result, { synchronous: false, callback: true });
});

scenario('twice: four workers with two servers each answer on both ports, cluster.disconnect(cb); again after that', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'twice');
  const round = { listening: 8, ports: 2, answers: ['echo', 'echo'], workersAtCallback: 0 };
  assert.deepStrictEqual(result.rounds, [round, round]);
  assert.deepStrictEqual(byId(result.exits), clean(1, 2, 3, 4, 5, 6, 7, 8));
});

scenario("a worker's channel closed without a cluster disconnect: it exits 0 at once; disconnected by the cluster, its own handler runs", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'forced');
  assert.deepStrictEqual(byId(result.exits), [
    { id: 1, code: 42, signal: null },
    { id: 2, code: 0, signal: null },
  ]);
});

scenario('a disconnected worker with an open client connection stays alive until the connection is destroyed', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'no-exit');
  assert.deepStrictEqual(result, { answerAfterDisconnect: 'yes', destroyed: true, destroyedBeforeExit: true, exitArgs: [0, null] });
});

scenario("a message shaped like the cluster's own ({cmd: 'NODE_CLUSTER', ack: -1}) is sent and harmless: exit 0", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'invalid-message');
  assert.deepStrictEqual(result, { exits: clean(1) });
});

scenario('SCHED_NONE: a client connected while a second worker is online; both disconnect and exit (0, null)', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'shared-leak', { SCHED: 'none' });
  assert.deepStrictEqual(byId(result.exits), clean(1, 2));
  assert.strictEqual(result.clientErrors, undefined, 'no client error other than ECONNRESET');
});

for (const sched of ['none', 'rr']) {
  scenario(`a worker closes its server, listens again, closes, then process.disconnect(); exit 0 (SCHED_${sched.toUpperCase()})`, { timeout: 30000 }, async (t) => {
    const { result, workers } = await run(t, 'restart', { SCHED: sched });
    assert.deepStrictEqual(workers, [{ worker: 'listening again', id: 2 }]);
    assert.deepStrictEqual(byId(result.exits), clean(1, 2));
  });
}
