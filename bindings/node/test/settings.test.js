// setupPrimary(): exec, args, cwd, env, silent (worker stdout piped to worker.process.stdout),
// schedulingPolicy SCHED_NONE (shared handle: each worker accepts on the socket itself).
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { scenario, FIXTURES, addonPrimary, get } = require('./helpers');

const WORKER = path.join(FIXTURES, 'worker.js');

scenario('args, cwd, env and silent reach the worker', { timeout: 60000 }, async (t) => {
  const cwd = fs.realpathSync(os.tmpdir());
  const p = addonPrimary(t);
  const setup = await p.command('setup', {
    settings: { exec: WORKER, args: ['one', 'two words'], cwd, env: { CLUSTER_TEST_SETTING: 'from settings' }, silent: true },
  });
  assert.strictEqual(setup.error, undefined, JSON.stringify(setup.error));
  const { id } = await p.command('fork', { env: { WORKER_MODE: 'env', CLUSTER_TEST_FORK: 'from fork' } });
  // silent: the worker's stdout comes to the primary as worker.process.stdout data.
  const out = await p.waitFor('piped stdout', (j) => j.event === 'stdout' && j.id === id && j.data.includes('"env"'));
  const report = JSON.parse(out.data.split('\n').find((l) => l.includes('"env"')));
  assert.deepStrictEqual(report.argv, ['one', 'two words']);
  assert.strictEqual(report.cwd, cwd);
  assert.strictEqual(report.id, id);
  assert.deepStrictEqual(report.env, { CLUSTER_TEST_SETTING: 'from settings', CLUSTER_TEST_FORK: 'from fork' }, 'no NODE_UNIQUE_ID/NODE_CHANNEL_* left over');
});

scenario('schedulingPolicy SCHED_NONE: workers accept on the shared socket', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER, schedulingPolicy: 1 } });
  const a = await p.command('fork', { env: { PORT: '0' } });
  const b = await p.command('fork', { env: { PORT: '0' } });
  const la = await p.event('listening', { id: a.id });
  const lb = await p.event('listening', { id: b.id });
  assert.strictEqual(la.port, lb.port);
  for (let i = 0; i < 4; i++) {
    const res = await get(la.port);
    assert.match(res.body, new RegExp(`^hello from worker (${a.pid}|${b.pid})\\n$`));
  }
});

scenario('schedulingPolicy SCHED_REUSEPORT: each worker its own listener; a dead one\'s is served', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER, schedulingPolicy: 3 } });
  const a = await p.command('fork', { env: { PORT: '0' } });
  const b = await p.command('fork', { env: { PORT: '0' } });
  const la = await p.event('listening', { id: a.id });
  const lb = await p.event('listening', { id: b.id });
  assert.strictEqual(la.port, lb.port);
  const seen = new Set();
  for (let i = 0; i < 40 && seen.size < 2; i++) {
    const res = await get(la.port);
    assert.match(res.body, new RegExp(`^hello from worker (${a.pid}|${b.pid})\\n$`));
    seen.add(res.body);
  }
  assert.strictEqual(seen.size, 2, 'the kernel deals to both listeners');
  // Worker a dies: connections the kernel hashes to its listener are served by b.
  await p.command('kill', { id: a.id, signal: 'SIGKILL' });
  await p.event('exit', { id: a.id });
  for (let i = 0; i < 20; i++) {
    const res = await get(la.port);
    assert.strictEqual(res.body, `hello from worker ${b.pid}\n`);
  }
});
