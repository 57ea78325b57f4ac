// Replacing workers through the binding: examples/node/hello.js under concurrent HTTP
// clients while SIGHUP replaces every worker (no request fails, every worker pid is
// replaced, the stats balance), then SIGTTIN/SIGTTOU and a graceful SIGTERM stop;
// cluster.rollingRestart()'s promise (done, busy, aborted) with counted connections; a
// worker recycled after maxConnections; a stuck worker drained while its connections are
// served by the others.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, ROOT, FIXTURES, start, get, alive, sleep } = require('./helpers');
const { load } = require('./httpload');

const HELLO = path.join(ROOT, 'examples', 'node', 'hello.js');
const FIXTURE = path.join(FIXTURES, 'supervised.js');

function conserved(w) {
  assert.strictEqual(w.handed, w.received + w.queued + w.rerouted + w.lost, `worker ${w.id}: handed = received + queued + rerouted + lost (${JSON.stringify(w)})`);
  assert.strictEqual(w.lost, 0, `worker ${w.id} lost a connection`);
}

const statsLines = (p, from = 0) => p.lines.slice(from).filter(({ raw }) => raw.startsWith('stats ')).map(({ raw }) => JSON.parse(raw.slice(6)));

scenario('hello.js: SIGHUP rolls every worker under concurrent clients with no failed request; TTIN/TTOU; SIGTERM stops gracefully', { timeout: 90000 }, async (t) => {
  // (Round-robin pinned: the last check counts the connections the primary handed out.)
  const p = start(t, process.execPath, [HELLO], { env: { PORT: '0', WORKERS: '3', DRAIN_MS: '8000', KILL_MS: '2000', NODE_CLUSTER_SCHED_POLICY: 'rr' }, name: 'hello.js' });
  const ready = /^worker (\d+) ready$/;
  const listening = /^worker (\d+) listening on 127\.0\.0\.1:(\d+)$/;
  const old = new Set();
  let port = null;
  await p.waitFor('3 workers ready', (_, raw) => {
    if (ready.test(raw)) old.add(Number(ready.exec(raw)[1]));
    if (port === null && listening.test(raw)) port = Number(listening.exec(raw)[2]);
    return old.size === 3;
  });
  assert.ok(port > 0);

  const clients = load(port, { keepAlive: 4, plain: 2 });
  // Traffic on every old worker first.
  for (let i = 0; i < 200 && [...old].some((pid) => !clients.pids.has(pid)); i++) await sleep(10);
  assert.deepStrictEqual([...old].filter((pid) => !clients.pids.has(pid)), [], 'every worker answered before the restart');

  const from = p.lines.length;
  process.kill(p.pid, 'SIGHUP');
  await p.waitFor('signal line', (_, raw) => raw === 'signal SIGHUP: reload', { from });
  await p.waitFor('rollout done', (_, raw) => raw === 'rollout done generation 2 (3 replaced)', { from });
  // Every old worker drains and exits; the clients go on meanwhile.
  for (const pid of old) await p.waitFor(`old worker ${pid} exits`, (_, raw) => raw === `worker ${pid} died (code 0)`, { from });
  const fresh = new Set();
  for (const { raw } of p.lines.slice(from)) if (ready.test(raw)) fresh.add(Number(ready.exec(raw)[1]));
  assert.strictEqual(fresh.size, 3, 'three new workers');
  const seenBefore = new Map(clients.pids);
  for (let i = 0; i < 300 && [...fresh].some((pid) => (clients.pids.get(pid) || 0) === (seenBefore.get(pid) || 0)); i++) await sleep(10);
  const result = await clients.stopAndWait();
  t.diagnostic(`${result.ok} requests (${result.retried} retried on a reused connection), ${result.connections} connections`);

  assert.deepStrictEqual(result.failures, [], `${result.failures.length} failed request(s) of ${result.ok}`);
  assert.ok(result.ok > 50, `only ${result.ok} requests`);
  for (const pid of fresh) assert.ok(result.pids.has(pid), `new worker ${pid} answered`);
  for (const pid of old) assert.ok(!alive(pid), `old worker ${pid} is gone`);
  assert.deepStrictEqual([...fresh].filter((pid) => old.has(pid)), [], 'every pid replaced');
  // The stats printed on the way balance at every moment.
  const printed = statsLines(p, from);
  assert.ok(printed.length >= 4);
  for (const s of printed) s.per_worker.forEach(conserved);
  assert.strictEqual(printed[printed.length - 1].generation, 2);

  // One worker more, one fewer.
  let mark = p.lines.length;
  process.kill(p.pid, 'SIGTTIN');
  await p.waitFor('scale up', (_, raw) => raw === 'signal SIGTTIN: scale_up', { from: mark });
  const added = Number(ready.exec(await p.waitFor('a fourth worker ready', (_, raw) => ready.test(raw), { from: mark }))[1]);
  mark = p.lines.length;
  process.kill(p.pid, 'SIGTTOU');
  await p.waitFor('scale down', (_, raw) => raw === 'signal SIGTTOU: scale_down', { from: mark });
  await p.waitFor('the newest drains', (_, raw) => raw === `worker ${added} draining: disconnect (scale_down)`, { from: mark });
  await p.waitFor('and exits', (_, raw) => raw === `worker ${added} died (code 0)`, { from: mark });

  // SIGTERM: every worker drains, the primary ends by itself with code 0.
  mark = p.lines.length;
  process.kill(p.pid, 'SIGTERM');
  const exit = await p.exited;
  assert.deepStrictEqual(exit, { code: 0, signal: null }, p.transcript());
  const tail = p.lines.slice(mark).map((l) => l.raw);
  assert.ok(tail.includes('signal SIGTERM: stop_graceful'));
  for (const pid of fresh) assert.ok(tail.includes(`worker ${pid} died (code 0)`), `worker ${pid} stopped`);
  assert.strictEqual(tail[tail.length - 1], 'primary stopped');
  const last = statsLines(p, mark).pop();
  assert.deepStrictEqual([last.workers, last.stopping], [0, 'graceful']);
  last.per_worker.forEach(conserved);
  // Every connection the clients opened was received by exactly one worker.
  const received = last.per_worker.reduce((n, w) => n + w.received, 0);
  assert.strictEqual(received, result.connections, 'connections received = connections the clients opened');
});

// Round-robin whatever the caller's environment says: the stats, stuck detection and
// recycling by connections count the connections the primary hands out (under
// SCHED_REUSEPORT the kernel deals most of them).
function supervised(t, env = {}) {
  return start(t, process.execPath, [FIXTURE], { env: { PORT: '0', NODE_CLUSTER_SCHED_POLICY: 'rr', ...env }, name: 'supervised primary' });
}

async function command(p, cmd, extra) {
  const reply = await p.command(cmd, extra);
  assert.ok(!reply.error, `${cmd}: ${JSON.stringify(reply.error)}`);
  return reply;
}

scenario('cluster.rollingRestart(): resolves once every worker is replaced, rejects when busy or when a new worker fails to boot; stats count every connection', async (t) => {
  const p = supervised(t);
  await command(p, 'supervise', { options: { workers: 2, maxSurge: 2 } });
  const first = new Map();
  let port = null;
  await p.waitFor('2 workers listening', (j) => {
    if (j.event === 'worker-listening') {
      first.set(j.pid, j);
      port = j.port;
    }
    return first.size === 2;
  });

  // Counted connections: a new one per request.
  const N = 30;
  for (let i = 0; i < N; i++) await get(port);
  const { stats } = await command(p, 'stats');
  stats.per_worker.forEach(conserved);
  const live = stats.per_worker.filter((w) => w.alive);
  assert.strictEqual(live.reduce((n, w) => n + w.received, 0), N, 'every connection received');
  assert.strictEqual(live.reduce((n, w) => n + w.handed, 0), N, 'and handed once');
  assert.ok(live.every((w) => w.received > 0), 'round-robin: both workers got some');

  // Done.
  let from = p.lines.length;
  await command(p, 'rollingRestart', {});
  const busy = await p.command('rollingRestart', {});
  assert.strictEqual(busy.promise, true);
  const rejected = await p.waitFor('the second call settles', (j) => j.event === 'rollingRestart' && !j.ok, { from });
  assert.strictEqual(rejected.error.code, 'CLUSTER_E_BUSY');
  const done = await p.waitFor('the first call settles', (j) => j.event === 'rollingRestart' && j.ok, { from });
  assert.deepStrictEqual(done, { event: 'rollingRestart', ok: true, generation: 2, replaced: 2 });
  const states = p.lines.slice(from).filter(({ json }) => json && json.event === 'rollout').map(({ json }) => json.state);
  assert.deepStrictEqual(states, ['started', 'step', 'step', 'done']);
  for (const pid of first.keys()) await p.waitFor(`old worker ${pid} exits`, (j) => j.event === 'exit' && j.pid === pid, { from });
  const { stats: after } = await command(p, 'stats');
  assert.deepStrictEqual([after.generation, after.workers, after.ready], [2, 2, 2]);
  after.per_worker.forEach(conserved);

  // Aborted: the new workers exit before they are ready; the old ones keep serving.
  const serving = new Set(after.per_worker.filter((w) => w.alive).map((w) => w.pid));
  await command(p, 'setup', { settings: { env: { FAIL_BOOT: '1' } } });
  from = p.lines.length;
  await command(p, 'rollingRestart', { options: { maxSurge: 1 } });
  const aborted = await p.waitFor('the call settles', (j) => j.event === 'rollingRestart', { from });
  assert.strictEqual(aborted.ok, false);
  assert.deepStrictEqual([aborted.error.code, aborted.error.generation, aborted.error.replaced], ['ERR_LIBCLUSTER_ROLLOUT_ABORTED', 3, 0]);
  const { stats: kept } = await command(p, 'stats');
  assert.deepStrictEqual(new Set(kept.per_worker.filter((w) => w.alive && !w.draining).map((w) => w.pid)), serving, 'the old workers keep serving');
  assert.strictEqual(kept.generation, 2);
  for (let i = 0; i < 4; i++) assert.ok(serving.has(JSON.parse((await get(port)).body).pid));
});

scenario("maxConnections: a worker is recycled after 5 connections (a new one first, then it drains); no request fails", async (t) => {
  const p = supervised(t);
  await command(p, 'supervise', { options: { workers: 1, maxConnections: 5, recycleJitter: 0 } });
  const first = await p.waitFor('the worker listening', (j) => j.event === 'worker-listening');
  const pids = [];
  for (let i = 0; i < 5; i++) pids.push(JSON.parse((await get(first.port)).body).pid);
  assert.deepStrictEqual(new Set(pids), new Set([first.pid]));
  const recycle = await p.event('recycle', { pid: first.pid });
  assert.strictEqual(recycle.reason, 'connections');
  // Requests go on while it is replaced: every one answered.
  let next = null;
  const done = p.event('exit', { pid: first.pid });
  let stopped = false;
  done.then(() => (stopped = true), () => (stopped = true));
  for (let i = 0; i < 400 && !stopped; i++) {
    const pid = JSON.parse((await get(first.port)).body).pid;
    if (pid !== first.pid) next = pid;
  }
  const exit = await done;
  assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, true]);
  const draining = p.lines.find(({ json }) => json && json.event === 'draining' && json.pid === first.pid).json;
  assert.deepStrictEqual([draining.stage, draining.reason], ['disconnect', 'recycle']);
  const ready = p.lines.filter(({ json }) => json && json.event === 'ready').map(({ json }) => json.pid);
  assert.strictEqual(ready.length, 2);
  next = next || JSON.parse((await get(first.port)).body).pid;
  assert.strictEqual(next, ready[1], 'the new worker serves');
  const { stats } = await command(p, 'stats');
  stats.per_worker.forEach(conserved);
  assert.strictEqual(stats.generation, 1, 'a recycle is not a rollout');
});

scenario('stuckTimeout: a worker whose event loop stops is flagged stuck, SIGTERMed and replaced; the connections it held go to the other worker', async (t) => {
  const p = supervised(t);
  await command(p, 'supervise', { options: { workers: 2, stuckTimeout: 400, killAfter: 1000, backoffBase: 20 } });
  const up = new Map();
  await p.waitFor('2 workers listening', (j) => {
    if (j.event === 'worker-listening') up.set(j.pid, j);
    return up.size === 2;
  });
  const port = [...up.values()][0].port;
  // One worker blocks; the next connections are dealt to both.
  const block = get(port, '/block?ms=8000', { timeout: 15000 }).catch((err) => err);
  const blocked = (await p.waitFor('a worker blocks', (j) => j.event === 'blocking')).pid;
  const other = [...up.keys()].find((pid) => pid !== blocked);
  const answers = await Promise.all(Array.from({ length: 6 }, () => get(port)));
  for (const a of answers) assert.notStrictEqual(JSON.parse(a.body).pid, blocked, 'no request answered by the blocked worker');
  const stuck = await p.event('stuck', { pid: blocked });
  assert.ok(stuck.idleMs >= 400, `idle ${stuck.idleMs} ms`);
  const term = await p.event('draining', { pid: blocked, stage: 'SIGTERM' });
  assert.strictEqual(term.reason, 'stuck');
  const exit = await p.event('exit', { pid: blocked });
  assert.strictEqual(exit.signal, 'SIGTERM');
  assert.ok(alive(other));
  assert.ok((await block) instanceof Error, "the blocked worker's own request ends with it");
  const { stats } = await command(p, 'stats');
  stats.per_worker.forEach(conserved);
  const gone = stats.per_worker.find((w) => w.pid === blocked);
  assert.ok(gone.rerouted >= 1, `its waiting connections were dealt to another worker (${JSON.stringify(gone)})`);
  await p.waitFor('a replacement', (j) => j.event === 'ready' && j.pid !== other && j.pid !== blocked);
});
