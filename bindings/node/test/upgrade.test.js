// Hot upgrade of a Node primary (docs/upgrade.md): the old primary starts this Node binary
// on the same script again as a new primary, which takes over the port once its workers are
// ready; the old one drains and ends. examples/node/hello.js under keep-alive and
// close-mode clients through SIGUSR2 (installSignalHandlers()); cluster.upgrade()'s promise
// (rejected when busy or when the new primary is never ready, resolved at the handover)
// with the supervised fixture. Every process is in the test's process group (the new
// primary and its workers too), stopped by pid and group at the end; no timing assertions.
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { scenario, ROOT, FIXTURES, WAIT_MS, start, get, alive, sleep } = require('./helpers');
const { load } = require('./httpload');

const HELLO = path.join(ROOT, 'examples', 'node', 'hello.js');
const FIXTURE = path.join(FIXTURES, 'supervised.js');
const ETIMEDOUT = -os.constants.errno.ETIMEDOUT;

// A port free now (an upgrade needs a fixed one: a worker asking for port 0 gets a new one).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const parentOf = (pid) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
};

const environ = (pid) => fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');

// The first line from index `from` for which `pred(json, raw)` holds, bounded. Unlike
// Proc.waitFor it goes on after the process the test started (the old primary) ended: the
// new primary writes to the same pipe.
async function line(p, what, pred, { from = 0 } = {}) {
  const deadline = Date.now() + WAIT_MS;
  for (let i = from; ; ) {
    for (; i < p.lines.length; i++) {
      const { raw, json } = p.lines[i];
      if (pred(json || {}, raw)) return json || raw;
    }
    assert.ok(Date.now() < deadline, `gave up waiting (${WAIT_MS} ms bound) for: ${what}\n${p.transcript()}`);
    await sleep(20);
  }
}

const eventLine = (p, name, fields = {}, opts = {}) =>
  line(p, `${name} ${JSON.stringify(fields)}`, (j) => j.event === name && Object.entries(fields).every(([k, v]) => j[k] === v), opts);

async function gone(pid, what) {
  for (let i = 0; i < 400 && alive(pid); i++) await sleep(25);
  assert.ok(!alive(pid), `${what} ${pid} still runs`);
}

// Who answers `n` new connections now: {pid} sets, each a 200.
async function servedBy(port, n = 12) {
  const pids = new Set();
  for (let i = 0; i < n; i++) {
    const { status, body } = await get(port);
    assert.strictEqual(status, 200);
    pids.add(Number(/"pid":(\d+)|worker (\d+)/.exec(body).slice(1).find(Boolean)));
  }
  return pids;
}

async function waitOk(clients, n) {
  for (let i = 0; i < 800 && clients.ok < n; i++) await sleep(25);
  assert.ok(clients.ok >= n, `only ${clients.ok} requests answered (${clients.failures.slice(0, 3).join('; ')})`);
}

scenario('hello.js: SIGUSR2 hands over to a new primary under keep-alive and close-mode clients with no failed request', async (t) => {
  const port = await freePort();
  const env = { PORT: String(port), WORKERS: '2', DRAIN_MS: '5000', KILL_MS: '2000', NODE_ENV: 'upgrade-test', NODE_CLUSTER_SCHED_POLICY: 'rr' };
  const p = start(t, process.execPath, [HELLO], { env, name: 'hello.js' });
  const old = p.pid;
  const ready = /^worker (\d+) ready$/;
  const before = new Set();
  await line(p, '2 workers ready', (_, raw) => {
    if (ready.test(raw)) before.add(Number(ready.exec(raw)[1]));
    return before.size === 2;
  });
  const clients = load(port, { keepAlive: 4, plain: 2 });
  let result = null;
  try {
    await waitOk(clients, 100);
    const from = p.lines.length;
    process.kill(old, 'SIGUSR2');
    await line(p, 'the signal', (_, raw) => raw === 'signal SIGUSR2: upgrade', { from });
    const started = await line(p, 'upgrade started', (_, raw) => raw.startsWith(`upgrade started: primary ${old} `), { from });
    const fresh = Number(/other primary (\d+), error 0\)$/.exec(started)[1]);
    p.pids.add(fresh);
    await line(p, 'the new primary', (_, raw) => raw === `Primary ${fresh} is running (started by a hot upgrade)`, { from });
    // The program's own NODE_* variables reach the new primary (the environment it was
    // started with, /proc/<pid>/environ).
    const vars = environ(fresh);
    assert.ok(vars.includes('NODE_ENV=upgrade-test') && vars.includes('NODE_CLUSTER_SCHED_POLICY=rr'), 'NODE_ENV kept');
    assert.ok(vars.includes('LIBCLUSTER_UPGRADE_FD=3') && !vars.some((v) => v.startsWith('NODE_UNIQUE_ID=')));
    await line(p, 'the new primary ready', (_, raw) => raw === `upgrade ready: primary ${fresh} (other primary ${old}, error 0)`, { from });
    await line(p, 'the old one handing over', (_, raw) => raw === `upgrade ready: primary ${old} (other primary ${fresh}, error 0)`, { from });
    const after = new Set();
    for (const { raw } of p.lines.slice(from)) if (ready.test(raw) && !before.has(Number(ready.exec(raw)[1]))) after.add(Number(ready.exec(raw)[1]));
    assert.strictEqual(after.size, 2, 'two new workers');
    for (const w of after) assert.strictEqual(parentOf(w), fresh, `worker ${w} is the new primary's`);
    // The old primary drains its workers (each exits on its own, code 0) and ends by itself.
    assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
    for (const w of before) {
      await line(p, `old worker ${w} exits`, (_, raw) => raw === `worker ${w} died (code 0)`, { from });
      await gone(w, 'old worker');
    }
    await line(p, 'done', (_, raw) => raw === `upgrade done: primary ${fresh} (other primary ${old}, error 0)`, { from });
    const mark = new Map(clients.pids);
    await waitOk(clients, clients.ok + 100);
    result = await clients.stopAndWait();
    t.diagnostic(`${result.ok} requests (${result.retried} retried on a reused connection), ${result.connections} connections, 0 failed`);
    assert.deepStrictEqual(result.failures, [], `${result.failures.length} failed request(s) of ${result.ok}`);
    for (const [pid, n] of result.pids) if (n > (mark.get(pid) || 0)) assert.ok(after.has(pid), `${pid} answered after the handover`);
    for (const pid of await servedBy(port)) assert.ok(after.has(pid), `${pid} serves new connections`);
    assert.ok(alive(fresh) && parentOf(fresh) !== old);

    // The new primary stops gracefully on TERM, its workers with it.
    const end = p.lines.length;
    process.kill(fresh, 'SIGTERM');
    await line(p, 'the new primary stopped', (_, raw) => raw === 'primary stopped', { from: end });
    await gone(fresh, 'new primary');
    for (const w of after) await gone(w, 'new worker');
  } finally {
    if (!result) await clients.stopAndWait();
  }
});

scenario('cluster.upgrade(): rejects when busy and when the new primary is never ready (nothing changes), resolves at the handover; isUpgrade', async (t) => {
  const port = await freePort();
  const hang = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lc-upgrade-')), 'hang');
  t.after(() => fs.rmSync(path.dirname(hang), { recursive: true, force: true }));
  fs.writeFileSync(hang, '');
  const p = start(t, process.execPath, [FIXTURE], { env: { PORT: String(port), NODE_CLUSTER_SCHED_POLICY: 'rr', UPGRADE_HANG_FILE: hang }, name: 'supervised primary' });
  assert.strictEqual((await eventLine(p, 'loaded')).isUpgrade, false);
  for (const [options, code] of [[{ readyTimeout: 0 }, 'ERR_OUT_OF_RANGE'], [{ readyTimeout: '5' }, 'ERR_INVALID_ARG_TYPE'], ['x', 'ERR_INVALID_ARG_TYPE']]) {
    const from = p.lines.length;
    await p.command('upgrade', { options });
    const r = await line(p, `upgrade(${JSON.stringify(options)}) settles`, (j) => j.event === 'upgradeCall', { from });
    assert.deepStrictEqual([r.ok, r.error.code], [false, code]);
  }
  await p.command('supervise', { options: { workers: 2 } });
  await p.command('unrefStdin'); // the old primary may end once it handed over
  const before = new Set();
  await line(p, '2 workers ready', (j) => (j.event === 'ready' && before.add(j.pid), before.size === 2));

  // Never ready: killed at the timeout; a second call meanwhile is refused.
  let from = p.lines.length;
  await p.command('upgrade', { options: { readyTimeout: 5000 } });
  const hung = (await eventLine(p, 'upgrade', { state: 'started' }, { from })).pid;
  await p.command('upgrade', {});
  const busy = await line(p, 'the second call settles', (j) => j.event === 'upgradeCall', { from });
  assert.deepStrictEqual([busy.ok, busy.error.code], [false, 'CLUSTER_E_BUSY']);
  await eventLine(p, 'hanging', { pid: hung }, { from });
  const aborted = await line(p, 'the first call settles', (j) => j.event === 'upgradeCall' && j.error && j.error.pid === hung, { from });
  assert.deepStrictEqual([aborted.error.code, aborted.error.errno], ['ERR_LIBCLUSTER_UPGRADE_ABORTED', ETIMEDOUT]);
  assert.match(aborted.error.message, /not ready in time/);
  assert.deepStrictEqual(await eventLine(p, 'upgrade', { state: 'aborted' }, { from }), { event: 'upgrade', state: 'aborted', pid: hung, error: ETIMEDOUT });
  await gone(hung, 'the new primary that never got ready');
  for (const w of before) assert.ok(alive(w), `old worker ${w} serves on`);
  for (const pid of await servedBy(port)) assert.ok(before.has(pid));

  // A sound new program: resolves with its pid at the handover; the old primary ends.
  fs.rmSync(hang);
  from = p.lines.length;
  await p.command('upgrade', {});
  const done = await line(p, 'the call settles', (j) => j.event === 'upgradeCall', { from });
  assert.strictEqual(done.ok, true, JSON.stringify(done));
  const fresh = done.pid;
  p.pids.add(fresh);
  assert.strictEqual((await eventLine(p, 'loaded', { pid: fresh }, { from })).isUpgrade, true);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  await eventLine(p, 'upgrade', { state: 'done', pid: p.pid }, { from });
  for (const w of before) await gone(w, 'old worker');
  const after = await servedBy(port);
  for (const pid of after) {
    p.pids.add(pid);
    assert.ok(!before.has(pid) && parentOf(pid) === fresh, `${pid} is the new primary's worker`);
  }
  process.kill(fresh, 'SIGTERM');
  await gone(fresh, 'new primary');
  for (const pid of after) await gone(pid, 'new worker');
});
