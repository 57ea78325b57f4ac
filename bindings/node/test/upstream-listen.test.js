// Node's cluster test scenarios about servers in workers, in our own words: a privileged
// port, a port held by another cluster or by the primary, a Unix socket held by someone
// else, an error rethrown into uncaughtException, HTTP on a Unix socket, listen() with no
// port, port 0 opened and closed in turn (TCP and UDP), UDP with ipv6Only, IPv6 with and
// without ipv6Only, unref()/ref(), and a worker whose channel is unref'd. The processes
// are test/fixtures/upstream/listen.js; the primary prints one {"result": ...} line as it
// exits; we assert.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, start } = require('./helpers');

const SCRIPT = path.join(FIXTURES, 'upstream', 'listen.js');
const NOBODY = 65534;

function launch(t, mode, env = {}, { asNobody = false } = {}) {
  const argv = [SCRIPT, mode];
  if (asNobody) return start(t, 'setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--', process.execPath, ...argv], { env, name: `listen.js ${mode} (as nobody)` });
  return start(t, process.execPath, argv, { env, name: `listen.js ${mode}` });
}

async function run(t, mode, env, opts) {
  const p = launch(t, mode, env, opts);
  const { result } = await p.waitFor("the primary's result", (j) => j.result);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null }, 'the primary exits 0 once its workers are gone');
  const workers = p.lines.map((l) => l.json).filter((j) => j && j.worker);
  return { result, workers, p };
}

const clean = (...ids) => ids.map((id) => ({ id, code: 0, signal: null }));
const byId = (exits) => [...exits].sort((a, b) => a.id - b.id);

for (const sched of ['rr', 'none']) {
  scenario(`listen(42) in a worker of an unprivileged cluster: 'error' EACCES, then process.disconnect(), exit 0 (SCHED_${sched.toUpperCase()})`, { timeout: 30000 }, async (t) => {
    // Port 42 is privileged only for a user without CAP_NET_BIND_SERVICE: as root, run as nobody.
    const { result, workers } = await run(t, 'privileged', { SCHED: sched }, { asNobody: process.getuid() === 0 });
    assert.deepStrictEqual(workers, [{ worker: 'error', code: 'EACCES' }]);
    assert.deepStrictEqual(result.exits, clean(1));
  });
}

scenario("two clusters, one port: the second cluster's worker gets EADDRINUSE", { timeout: 30000 }, async (t) => {
  const one = launch(t, 'bindtwice');
  const { msg } = await one.waitFor('the first worker listens', (j) => j.event === 'message' && j.msg.listening);
  const two = launch(t, 'bindtwice', { PORT: String(msg.listening) });
  const err = await two.waitFor('the second worker fails', (j) => j.event === 'message' && j.msg.error);
  assert.strictEqual(err.msg.error, 'EADDRINUSE');
  for (const p of [one, two]) p.write('quit');
  for (const p of [one, two]) {
    const { result } = await p.waitFor("the primary's result", (j) => j.result);
    assert.deepStrictEqual(result.exits, clean(1));
    assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  }
});

scenario("a Unix socket held by a plain child process of the worker: 'error' EADDRINUSE, sent to the primary", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'eaccess');
  assert.deepStrictEqual(result.events, ['fork', 'online']);
  assert.strictEqual(result.message.code, 'EADDRINUSE');
  assert.deepStrictEqual(result.exits, clean(1));
});

// What the error itself looks like: Node's cluster makes it in net's listen path, as
// ExceptionWithHostPort(err, 'bind', address, port), for either policy.
for (const sched of ['rr', 'none']) {
  scenario(`the worker's EADDRINUSE is a 'bind' error, as Node words it (SCHED_${sched.toUpperCase()})`, {
    timeout: 30000,
  }, async (t) => {
    const { workers } = await run(t, 'taken-by-primary', { SCHED: sched, DETAIL: '1' });
    const e = workers.find((w) => w.worker === 'error');
    assert.strictEqual(e.code, 'EADDRINUSE');
    assert.strictEqual(e.syscall, 'bind');
    assert.strictEqual(e.message, `bind EADDRINUSE ${e.address}:${e.port}`);
  });
}

scenario('RR: an http server on a port the primary holds; the worker disconnects and rethrows into its uncaughtException handler', { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'taken-by-primary', { SCHED: 'rr', HTTP: '1', THROW: '1' });
  assert.deepStrictEqual(workers.map((w) => [w.worker, w.code]), [['error', 'EADDRINUSE'], ['uncaught', 'EADDRINUSE']]);
  assert.deepStrictEqual(result, { exitArgs: [0, null], primaryServerClosed: true });
});

for (const [what, env] of [['http server', { HTTP: '1' }], ['net server', {}]]) {
  scenario(`SCHED_NONE: a ${what} on a port the primary holds: 'error' EADDRINUSE, the worker disconnects and exits 0`, { timeout: 30000 }, async (t) => {
    const { result, workers } = await run(t, 'taken-by-primary', { SCHED: 'none', ...env });
    assert.deepStrictEqual(workers.map((w) => [w.worker, w.code]), [['error', 'EADDRINUSE']]);
    assert.deepStrictEqual(result, { exitArgs: [0, null], primaryServerClosed: true });
  });
}

scenario('HTTP over a Unix socket in a worker: served, no remote or local address; the worker exits after', { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'http-pipe');
  assert.deepStrictEqual(workers, [{ worker: 'http', status: 200, body: 'OK', remoteAddress: 'undefined', localAddress: 'undefined' }]);
  assert.deepStrictEqual(result, { message: 'DONE', exitArgs: [0, null] });
});

scenario('listen() with no port in a worker: it listens; the worker exits 0', { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'simple', { WHAT: 'no-port' });
  assert.deepStrictEqual(workers, [{ worker: 'listening with no port' }]);
  assert.deepStrictEqual(result.exits, clean(1));
});

for (const kind of ['net', 'dgram']) {
  scenario(`port 0 again and again (${kind}): two opened, each closed as a new one opens; all four close, exit 0`, { timeout: 30000 }, async (t) => {
    const { result, workers } = await run(t, 'simple', { WHAT: kind });
    assert.deepStrictEqual(workers, [{ worker: 'closed', closes: 4 }]);
    assert.deepStrictEqual(result.exits, clean(1));
  });
}

scenario('UDP: a udp6 socket with ipv6Only on [::] and a udp4 one on 0.0.0.0 share a port number in a worker', { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'simple', { WHAT: 'dgram-ipv6only' });
  assert.deepStrictEqual(workers, [{ worker: 'closed both' }], 'no socket error');
  assert.deepStrictEqual(result.exits, clean(1));
});

for (const sched of ['none', 'rr']) {
  scenario(`three workers on [::]:PORT with ipv6Only: same address for all, 0.0.0.0:PORT stays free (SCHED_${sched.toUpperCase()})`, { timeout: 30000 }, async (t) => {
    const { result } = await run(t, 'ipv6', { SCHED: sched, IPV6ONLY: '1' });
    assert.strictEqual(result.addresses.length, 3);
    for (const a of result.addresses) assert.deepStrictEqual(a, { addressType: 6, address: '::', port: result.addresses[0].port });
    assert.strictEqual(result.ipv4BindOk, true);
    assert.deepStrictEqual(byId(result.exits), clean(1, 2, 3));
  });
}

scenario('three workers on [::]:0 without ipv6Only: one port for all, reached over IPv4 (dual stack)', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'ipv6', { IPV6ONLY: '0' });
  assert.strictEqual(result.addresses.length, 3);
  for (const a of result.addresses) assert.deepStrictEqual(a, { addressType: 6, address: '::', port: result.addresses[0].port });
  assert.ok(result.addresses[0].port > 0);
  assert.strictEqual(result.ipv4ConnectOk, true);
  assert.deepStrictEqual(byId(result.exits), clean(1, 2, 3));
});

scenario("server.unref(), ref(), close(cb) in a worker: cb runs; the primary's kill() ends it", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'rr-ref');
  assert.deepStrictEqual(result, { message: 'done', exits: [{ id: 1, code: null, signal: 'SIGTERM' }] });
});

scenario("RR: a listening worker that unrefs its channel is kept alive by its server: it answers, then dies of our kill()", { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'keep-alive');
  assert.deepStrictEqual(workers, [], 'the worker never ran out of work (no beforeExit)');
  assert.deepStrictEqual(result, { messages: ['unrefd', 'pong'], exits: [{ id: 1, code: null, signal: 'SIGTERM' }] });
});
