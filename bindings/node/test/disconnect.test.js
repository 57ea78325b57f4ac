// Graceful disconnect: the worker finishes what it was doing and exits 0, with
// exitedAfterDisconnect true; from the primary (worker.disconnect(), cluster.disconnect())
// and from the worker (cluster.worker.disconnect()).
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, addonPrimary, get } = require('./helpers');

const WORKER = path.join(FIXTURES, 'worker.js');

async function listeningWorker(p, env = {}) {
  const { id, pid } = await p.command('fork', { env: { WORKER_MODE: 'http', ...env } });
  const ev = await p.event('listening', { id });
  return { id, pid, port: ev.port };
}

scenario('worker.disconnect(): an open request is finished, then the worker exits 0', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const w = await listeningWorker(p);
  const ok = await get(w.port);
  assert.strictEqual(ok.body, `hello from worker ${w.pid}\n`);

  // A request the worker holds until it is disconnected.
  const held = get(w.port, '/hold');
  await p.waitFor('worker holds the request', (j) => j.worker === 'holding' && j.pid === w.pid);

  const r = await p.command('disconnect', { id: w.id });
  assert.strictEqual(r.listed, false, 'a disconnected worker leaves cluster.workers at once');
  // As in Node: the server closes, the held request is answered, and only once its
  // connection has ended does the worker disconnect.
  const res = await held;
  assert.strictEqual(res.body, `held by worker ${w.pid}\n`);
  const wd = await p.waitFor('worker-side disconnect', (j) => j.worker === 'disconnect' && j.pid === w.pid);
  assert.strictEqual(wd.ead, true);
  assert.strictEqual(wd.connected, false);
  assert.strictEqual(wd.processConnected, false);

  const dis = await p.event('disconnect', { id: w.id });
  assert.strictEqual(dis.ead, true);
  const exit = await p.event('exit', { id: w.id });
  assert.strictEqual(exit.code, 0);
  assert.strictEqual(exit.signal, null);
  assert.strictEqual(exit.ead, true);
  assert.strictEqual(exit.state, 'dead');
  assert.ok(exit.workerSaw.includes('disconnect') && exit.workerSaw.includes('exit'));
  await p.waitFor('the worker closed its server', (j) => j.worker === 'server closed' && j.pid === w.pid);
});

scenario('cluster.disconnect(cb): every worker exits 0 and the callback runs', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const a = await listeningWorker(p);
  const b = await listeningWorker(p);
  assert.strictEqual(a.port, b.port, 'PORT=0 is one port for every worker');
  await p.command('disconnectAll');
  const done = await p.event('disconnected_all');
  assert.deepStrictEqual(done.workers, []);
  for (const w of [a, b]) {
    const exit = await p.event('exit', { id: w.id });
    assert.strictEqual(exit.code, 0);
    assert.strictEqual(exit.signal, null);
    assert.strictEqual(exit.ead, true);
  }
});

scenario('cluster.worker.disconnect() in the worker: the primary sees a voluntary exit', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const w = await listeningWorker(p);
  await p.command('send', { id: w.id, msg: { cmd: 'disconnect' } });
  const wd = await p.waitFor('worker-side disconnect', (j) => j.worker === 'disconnect' && j.pid === w.pid);
  assert.strictEqual(wd.ead, true);
  const dis = await p.event('disconnect', { id: w.id });
  assert.strictEqual(dis.ead, true);
  const exit = await p.event('exit', { id: w.id });
  assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, true]);
});
