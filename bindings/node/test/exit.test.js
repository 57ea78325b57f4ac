// Exit codes and signals, as Node reports them: (code, null) or (null, 'SIGNAME').
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, addonPrimary, start, requireFile } = require('./helpers');

const WORKER = path.join(FIXTURES, 'worker.js');

scenario('exit codes: a worker exiting with 3, and on request with 7', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const a = await p.command('fork', { env: { WORKER_MODE: 'exit', EXIT_CODE: '3' } });
  const ea = await p.event('exit', { id: a.id });
  assert.strictEqual(ea.code, 3);
  assert.strictEqual(ea.signal, null);
  assert.strictEqual(ea.pid, a.pid);
  assert.strictEqual(ea.state, 'dead');
  assert.strictEqual(ea.isDead, true);
  assert.strictEqual(ea.isConnected, false);
  assert.strictEqual(ea.ead, false);
  assert.strictEqual(ea.listed, false, 'gone from cluster.workers');
  assert.ok(ea.workerSaw.includes('exit'), 'worker.on("exit") fired too');

  const b = await p.command('fork', { env: { WORKER_MODE: 'idle' } });
  await p.event('online', { id: b.id });
  await p.command('send', { id: b.id, msg: { cmd: 'exit', code: 7 } });
  const eb = await p.event('exit', { id: b.id });
  assert.strictEqual(eb.code, 7);
  assert.strictEqual(eb.signal, null);
  assert.deepStrictEqual((await p.command('workers')).workers, []);
});

scenario('signals: kill() sends SIGTERM, kill("SIGKILL"), kill(0) only checks', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const a = await p.command('fork', { env: { WORKER_MODE: 'idle' } });
  const b = await p.command('fork', { env: { WORKER_MODE: 'idle' } });
  await p.event('online', { id: a.id });
  await p.event('online', { id: b.id });

  await p.command('kill', { id: a.id, signal: 0 });
  const st = await p.command('state', { id: a.id });
  assert.strictEqual(st.isDead, false);
  assert.strictEqual(st.state, 'online');

  await p.command('kill', { id: a.id });
  const ea = await p.event('exit', { id: a.id });
  assert.strictEqual(ea.code, null);
  assert.strictEqual(ea.signal, 'SIGTERM');
  assert.strictEqual(ea.ead, false);

  await p.command('kill', { id: b.id, signal: 'SIGKILL' });
  const eb = await p.event('exit', { id: b.id });
  assert.strictEqual(eb.code, null);
  assert.strictEqual(eb.signal, 'SIGKILL');
  assert.strictEqual(eb.state, 'dead');
  const dis = await p.event('disconnect', { id: b.id });
  assert.strictEqual(dis.ead, false);
});

scenario('an idle primary exits by itself once its workers are gone', { timeout: 60000 }, async (t) => {
  const p = start(t, process.execPath, [path.join(FIXTURES, 'idle_primary.js'), WORKER], { env: { WORKER_MODE: 'exit', EXIT_CODE: '5' } });
  const exit = await p.event('exit');
  assert.strictEqual(exit.code, 5);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });

  // And one that never forked at all.
  const q = start(t, process.execPath, [path.join(FIXTURES, 'idle_primary.js')], {});
  await q.event('ready');
  assert.deepStrictEqual(await q.exited, { code: 0, signal: null });
});

scenario('the primary dies: its workers exit 0, also those that handle SIGTERM (no crash)', { timeout: 90000 }, async (t) => {
  // libcluster ends such a worker from its channel thread; the addon makes that a clean exit.
  const reaper = requireFile(path.join(FIXTURES, 'reaper.py'), 'part of the tests');
  for (let round = 0; round < 3; round++) {
    const p = start(t, 'python3', [reaper, '3', process.execPath, path.join(FIXTURES, 'idle_primary.js'), WORKER, '3'], {
      env: { WORKER_MODE: 'http', WORKER_SIGTERM: 'ignore' },
      name: 'reaper',
    });
    const { reaped, workers } = await p.waitFor('the orphans reaped', (j) => j.reaped);
    assert.strictEqual(workers.length, 3);
    assert.deepStrictEqual(
      workers.map((pid) => [pid, reaped[pid]]),
      workers.map((pid) => [pid, ['code', 0]]),
      'every worker exits with code 0, none by a signal (SIGSEGV before the fix)',
    );
  }
});
