// libcluster's supervision through the binding (cluster.supervise() and the calls beside
// it; not Node's): a supervised respawn after SIGKILL, explicit readiness, a drain and the
// worker's draining flag, and signals that reach supervision only through listeners the
// program installs. Real processes (test/fixtures/supervised.js), every wait bounded.
'use strict';
const assert = require('node:assert');
const http = require('node:http');
const path = require('node:path');
const { scenario, FIXTURES, start, get, alive, sleep } = require('./helpers');

const FIXTURE = path.join(FIXTURES, 'supervised.js');
const SIX = ['SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGTERM', 'SIGINT', 'SIGUSR2'];
const none = Object.fromEntries(SIX.map((s) => [s, 0]));

function supervised(t, env = {}) {
  return start(t, process.execPath, [FIXTURE], { env: { PORT: '0', NODE_CLUSTER_SCHED_POLICY: 'rr', ...env }, name: 'supervised primary' });
}

// Waits for `n` distinct workers' 'ready' events from line `from` on; returns them in order.
async function readyWorkers(p, n, { from = 0, not = new Set() } = {}) {
  const seen = new Map();
  await p.waitFor(`${n} ready workers`, (j) => {
    if (j.event === 'ready' && !not.has(j.pid)) seen.set(j.id, j);
    return seen.size >= n;
  }, { from });
  return [...seen.values()];
}

// The line index after the reply to `cmd` (to wait for what follows it).
async function command(p, cmd, extra) {
  const reply = await p.command(cmd, extra);
  assert.ok(!reply.error, `${cmd}: ${JSON.stringify(reply.error)}`);
  return reply;
}

scenario('supervise: a worker killed with SIGKILL is replaced after a backoff; stats say why', async (t) => {
  const p = supervised(t);
  await command(p, 'supervise', { options: { workers: 2, backoffBase: 20, backoffMax: 200 } });
  const [a, b] = await readyWorkers(p, 2);
  const from = p.lines.length;
  process.kill(a.pid, 'SIGKILL');
  const exit = await p.event('exit', { pid: a.pid }, { from });
  assert.strictEqual(exit.signal, 'SIGKILL');
  assert.strictEqual(exit.ead, false, 'a crash, not asked for');
  const respawn = await p.event('respawn', {}, { from });
  assert.strictEqual(respawn.count, 1, 'the first death in a row');
  assert.ok(Number.isInteger(respawn.delayMs) && respawn.delayMs >= 10 && respawn.delayMs <= 20, `delay ${respawn.delayMs}: base 20, jittered in its upper half`);
  const [c] = await readyWorkers(p, 1, { from, not: new Set([a.pid, b.pid]) });
  assert.ok(c.id > b.id, 'a new worker id');
  assert.ok(alive(b.pid), 'the other worker kept running');

  const { stats } = await command(p, 'stats');
  assert.strictEqual(stats.target, 2);
  assert.strictEqual(stats.workers, 2);
  assert.strictEqual(stats.ready, 2);
  assert.strictEqual(stats.respawns, 1);
  const gone = stats.per_worker.find((w) => w.id === a.id);
  assert.deepStrictEqual([gone.alive, gone.exit, gone.exit_signal], [false, 'crash', 9]);
  const { ids, pids, own } = await command(p, 'workers');
  assert.deepStrictEqual(ids.sort(), [b.id, c.id].sort(), 'cluster.workers holds the adopted replacement');
  assert.deepStrictEqual(pids.sort(), [b.pid, c.pid].sort());
  assert.deepStrictEqual(own, [true, true], "worker.stats() is the worker's own entry");
});

scenario('the crash-loop breaker opens after a burst of boot failures; the primary stays up with no worker; resetBreaker() resumes', async (t) => {
  const p = supervised(t);
  await command(p, 'setup', { settings: { env: { FAIL_BOOT: '1' } } });
  await command(p, 'supervise', { options: { workers: 1, backoffBase: 10, backoffMax: 20, breakerBurst: 2, breakerCooldown: 0 } });
  const open = await p.event('breaker', { state: 'open' });
  assert.strictEqual(open.count, 2);
  const exits = p.lines.filter(({ json }) => json && json.event === 'exit');
  assert.deepStrictEqual(exits.map(({ json }) => json.code), [3, 3]);
  const { stats } = await command(p, 'stats');
  assert.deepStrictEqual([stats.breaker, stats.workers, stats.target], ['open', 0, 1]);
  assert.deepStrictEqual(stats.per_worker.map((w) => w.exit), ['boot_failure', 'boot_failure']);
  // No worker runs, and nothing but supervision keeps the primary alive: it waits.
  await command(p, 'unrefStdin');
  await sleep(300);
  assert.strictEqual(p.exit, null, 'the primary waits for the breaker');
  const rejected = await p.command('rollingRestart', {});
  assert.strictEqual(rejected.promise, true);
  await p.waitFor('rollingRestart refused', (j) => j.event === 'rollingRestart');
  assert.strictEqual(p.lines.find(({ json }) => json && json.event === 'rollingRestart').json.error.code, 'CLUSTER_E_BREAKER_OPEN');

  await command(p, 'setup', { settings: { env: { FAIL_BOOT: '0' } } });
  const from = p.lines.length;
  await command(p, 'resetBreaker');
  await p.event('breaker', { state: 'closed' }, { from });
  await readyWorkers(p, 1, { from });
  // A stop ends supervision: the primary exits once its worker is gone.
  await command(p, 'control', { action: 'stop_graceful' });
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  assert.ok(p.lines.some(({ json }) => json && json.event === 'control' && json.action === 'stop_graceful' && json.signal === null));
});

scenario("readyOn 'explicit': a worker is ready once it calls cluster.worker.ready(), not when it listens", async (t) => {
  const p = supervised(t, { READY_ON_MESSAGE: '1' });
  await command(p, 'supervise', { options: { workers: 1, readyOn: 'explicit' } });
  const listening = await p.event('listening');
  await p.waitFor('the worker listening', (j) => j.event === 'worker-listening' && j.pid === listening.pid);
  // Listening, and not ready: the supervisor waits for the worker's word.
  const { stats: before } = await command(p, 'stats');
  assert.strictEqual(before.ready, 0, 'not ready before cluster.worker.ready()');
  assert.ok(!p.lines.some(({ json }) => json && json.event === 'ready'), 'no ready event yet');
  const from = p.lines.length;
  await command(p, 'send', { id: listening.id, msg: { ready: true } });
  const called = await p.waitFor('worker-ready-called', (j) => j.event === 'worker-ready-called', { from });
  assert.strictEqual(called.sent, true);
  const ready = await p.event('ready', { id: listening.id }, { from });
  assert.strictEqual(ready.pid, listening.pid);
  const { stats: after } = await command(p, 'stats');
  assert.strictEqual(after.ready, 1);
});

scenario('worker.drain(): the worker sees cluster.worker.draining, answers its open request with Connection: close, exits and is replaced', async (t) => {
  // Two workers: the port stays bound while one drains (the last worker out of a server
  // releases it, as in Node).
  const p = supervised(t);
  await command(p, 'supervise', { options: { workers: 2, drainTimeout: 10000 } });
  const [w, other] = await readyWorkers(p, 2);
  const up = await p.waitFor('the worker listening', (j) => j.event === 'worker-listening' && j.pid === w.pid);
  assert.strictEqual(up.draining, false, 'not draining at first');
  const first = JSON.parse((await get(up.port)).body);
  assert.ok([w.pid, other.pid].includes(first.pid));
  assert.strictEqual(first.draining, false);

  // A request the worker holds until it drains (round-robin: the one the next connection
  // goes to; the other worker's holds are answered when the test ends).
  let from = p.lines.length;
  // (A keep-alive agent each: the client asks to keep the connection, so a `Connection:
  // close` answer is the worker's.)
  const hold = () => new Promise((resolve, reject) => {
    const agent = new http.Agent({ keepAlive: true });
    t.after(() => agent.destroy());
    const req = http.get({ host: '127.0.0.1', port: up.port, path: '/hold', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ body, headers: res.headers }));
    });
    req.setTimeout(20000, () => req.destroy(new Error('no answer to /hold within 20 s')));
    req.on('error', reject);
    t.after(() => req.destroy());
  });
  let held = null;
  for (let i = 0; i < 4 && !held; i++) {
    const answer = hold();
    answer.catch(() => {});
    const by = await p.waitFor('a worker holds the request', (j) => j.event === 'holding', { from });
    from = p.lines.findIndex(({ json }, k) => k >= from && json && json.event === 'holding') + 1;
    if (by.pid === w.pid) held = answer;
  }
  assert.ok(held, `worker ${w.pid} got none of 4 connections`);
  from = p.lines.length;
  const reply = await command(p, 'workerDrain', { id: w.id });
  assert.strictEqual(reply.same, true, 'drain() returns the worker');
  const draining = await p.event('draining', { id: w.id }, { from });
  assert.deepStrictEqual([draining.stage, draining.reason], ['disconnect', 'user']);
  const answer = await held;
  assert.deepStrictEqual(JSON.parse(answer.body), { pid: w.pid, draining: true });
  assert.strictEqual(answer.headers.connection, 'close');
  const exit = await p.event('exit', { id: w.id }, { from });
  assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, true], 'it finished and exited on its own, before any SIGTERM');
  assert.ok(!p.lines.slice(from).some(({ json }) => json && json.event === 'draining' && json.stage !== 'disconnect'), 'no SIGTERM or SIGKILL stage');
  const [next] = await readyWorkers(p, 1, { from, not: new Set([w.pid, other.pid]) });
  await p.waitFor('the new worker listening', (j) => j.event === 'worker-listening' && j.pid === next.pid);
  const answered = new Set();
  for (let i = 0; i < 20 && answered.size < 2; i++) answered.add(JSON.parse((await get(up.port)).body).pid);
  assert.deepStrictEqual([...answered].sort(), [other.pid, next.pid].sort(), 'the replacement serves on the same port, the drained worker no more');

  // Draining twice, or a worker that is not there: Node-style errors.
  const again = await p.command('drain', { id: w.id });
  assert.strictEqual(again.error.code, 'ESRCH');
  assert.strictEqual(again.error.errno, -3);
});

scenario('signals: no process listener until installSignalHandlers(); handleSignal() and SIGTTIN/SIGTTOU then act; restore removes them', async (t) => {
  const p = supervised(t);
  const loaded = await p.event('loaded');
  assert.deepStrictEqual(loaded.listeners, none, 'requiring the package adds no signal listener');
  const sup = await command(p, 'supervise', { options: { workers: 1, backoffBase: 20 } });
  assert.deepStrictEqual(sup.listeners, none, 'nor does supervise()');
  await readyWorkers(p, 1);

  // handleSignal() without listeners: the program's own handler would call it.
  let from = p.lines.length;
  await command(p, 'handleSignal', { signal: 'SIGTTIN' });
  const control = await p.event('control', {}, { from });
  assert.deepStrictEqual(control, { event: 'control', signal: 'SIGTTIN', action: 'scale_up' });
  await readyWorkers(p, 2);
  assert.deepStrictEqual((await command(p, 'listeners')).listeners, none);

  const installed = await command(p, 'install');
  assert.deepStrictEqual(installed.listeners, Object.fromEntries(SIX.map((s) => [s, 1])));
  assert.deepStrictEqual((await command(p, 'install')).listeners, installed.listeners, 'installing twice adds none');
  from = p.lines.length;
  process.kill(p.pid, 'SIGTTOU');
  await p.event('control', { signal: 'SIGTTOU', action: 'scale_down' }, { from });
  const down = await p.event('draining', { reason: 'scale_down' }, { from });
  await p.event('exit', { id: down.id }, { from });
  const { stats } = await command(p, 'stats');
  assert.strictEqual(stats.target, 1);
  assert.strictEqual(stats.workers, 1);

  const restored = await command(p, 'restore');
  assert.deepStrictEqual(restored.listeners, none);
  // With no listener, SIGHUP does what it does to any Node process (libcluster installed
  // no handler of its own): the primary ends by it.
  process.kill(p.pid, 'SIGHUP');
  const end = await p.exited;
  assert.deepStrictEqual(end, { code: null, signal: 'SIGHUP' });
});

scenario('bad supervision arguments: Node-style errors, nothing changes', async (t) => {
  const p = supervised(t);
  const cases = [
    ['supervise', { options: { workers: -1 } }, 'ERR_OUT_OF_RANGE', 'RangeError'],
    ['supervise', { options: { workers: 1.5 } }, 'ERR_OUT_OF_RANGE', 'RangeError'],
    ['supervise', { options: { workers: '2' } }, 'ERR_INVALID_ARG_TYPE', 'TypeError'],
    ['supervise', { options: { readyOn: 'whenever' } }, 'ERR_INVALID_ARG_VALUE', 'RangeError'],
    ['supervise', { options: { drainTimout: 5 } }, 'ERR_INVALID_ARG_VALUE', 'RangeError'],
    ['supervise', { options: { backoffBase: 5000, backoffMax: 100 } }, 'EINVAL', 'Error'],
    ['scale', { n: 0 }, 'ERR_OUT_OF_RANGE', 'RangeError'],
    ['control', { action: 'explode' }, 'ERR_INVALID_ARG_VALUE', 'RangeError'],
    ['handleSignal', { signal: 'SIGNOPE' }, 'ERR_UNKNOWN_SIGNAL', 'TypeError'],
    ['drain', { id: 77 }, 'ESRCH', 'Error'],
    ['install', { signals: ['SIGHUP', 99] }, 'ERR_UNKNOWN_SIGNAL', 'TypeError'],
    ['install', { signals: 'SIGHUP' }, 'ERR_INVALID_ARG_TYPE', 'TypeError'],
  ];
  for (const [cmd, extra, code, name] of cases) {
    const r = await p.command(cmd, extra);
    assert.ok(r.error, `${cmd} ${JSON.stringify(extra)} did not throw`);
    assert.deepStrictEqual([r.error.code, r.error.name], [code, name], `${cmd} ${JSON.stringify(extra)}: ${r.error.message}`);
  }
  assert.deepStrictEqual((await command(p, 'listeners')).listeners, none, 'a refused install added no listener');
  // A rolling restart with no worker to replace is done at once.
  const from = p.lines.length;
  assert.strictEqual((await command(p, 'rollingRestart', {})).promise, true);
  const done = await p.waitFor('the rolling restart settled', (j) => j.event === 'rollingRestart', { from });
  assert.deepStrictEqual(done, { event: 'rollingRestart', ok: true, generation: 2, replaced: 0 });
  const { stats } = await command(p, 'stats');
  assert.deepStrictEqual([stats.target, stats.workers], [0, 0], 'nothing was forked');
});
