// Bad input throws TypeError/RangeError with Node's codes; libcluster's failures are Errors
// with a `code` ('ENOENT', 'EADDRINUSE', ...) and a negative `errno`. In this process (a
// primary) and in a worker.
'use strict';
const assert = require('node:assert');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const cluster = require('libcluster-node');
const { scenario, FIXTURES, addonPrimary, get } = require('./helpers');

const WORKER = path.join(FIXTURES, 'worker.js');

function throwsLike(fn, ctor, code, message) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof ctor, `${err} is not a ${ctor.name}`);
    assert.strictEqual(err.code, code);
    if (message) assert.match(err.message, message);
    return true;
  });
}

scenario('this process is the primary', () => {
  assert.strictEqual(cluster.isPrimary, true);
  assert.strictEqual(cluster.isWorker, false);
  assert.strictEqual(cluster.worker, undefined);
  assert.deepStrictEqual(cluster.workers, {});
  assert.strictEqual(cluster.SCHED_RR, 2);
  assert.strictEqual(cluster.SCHED_NONE, 1);
});

scenario('wrong argument types and values', () => {
  throwsLike(() => cluster.fork({ A: 'x\0y' }), TypeError, 'ERR_INVALID_ARG_VALUE', /null bytes/);
  throwsLike(() => cluster.setupPrimary('x'), TypeError, 'ERR_INVALID_ARG_TYPE', /"settings"/);
  throwsLike(() => cluster.setupPrimary({ exec: 5 }), TypeError, 'ERR_INVALID_ARG_TYPE', /"settings.exec" argument must be of type string/);
  throwsLike(() => cluster.setupPrimary({ args: 'a b' }), TypeError, 'ERR_INVALID_ARG_TYPE', /settings.args/);
  throwsLike(() => cluster.setupPrimary({ args: ['a', 1] }), TypeError, 'ERR_INVALID_ARG_TYPE', /settings.args\[1\]/);
  throwsLike(() => cluster.setupPrimary({ silent: 'yes' }), TypeError, 'ERR_INVALID_ARG_TYPE', /settings.silent/);
  throwsLike(() => cluster.setupPrimary({ stdio: 'sometimes' }), RangeError, 'ERR_INVALID_ARG_VALUE', /settings.stdio/);
  throwsLike(() => cluster.setupPrimary({ stdio: [{}, 'pipe', 'pipe'] }), TypeError, 'ERR_INVALID_ARG_TYPE', /settings.stdio\[0\]/);
  throwsLike(() => cluster.setupPrimary({ uid: -5 }), RangeError, 'ERR_OUT_OF_RANGE', /settings.uid/);
  throwsLike(() => cluster.setupPrimary({ gid: 1.5 }), RangeError, 'ERR_OUT_OF_RANGE', /settings.gid/);
  throwsLike(() => cluster.setupPrimary({ serialization: 'xml' }), RangeError, 'ERR_INVALID_ARG_VALUE', /serialization/);
  throwsLike(() => cluster.setupPrimary({ schedulingPolicy: 4 }), RangeError, 'ERR_INVALID_ARG_VALUE', /schedulingPolicy/);
  throwsLike(() => cluster.disconnect('now'), TypeError, 'ERR_INVALID_ARG_TYPE', /"callback"/);

  const server = http.createServer();
  throwsLike(() => cluster.listen({ port: 80 }), TypeError, 'ERR_INVALID_ARG_TYPE', /"server" argument must be an instance of net.Server/);
  throwsLike(() => cluster.listen(server, { port: 70000 }), RangeError, 'ERR_SOCKET_BAD_PORT', /should be >= 0 and < 65536/);
  throwsLike(() => cluster.listen(server, { port: -1 }), RangeError, 'ERR_SOCKET_BAD_PORT');
  throwsLike(() => cluster.listen(server, { port: 'http' }), RangeError, 'ERR_SOCKET_BAD_PORT');
  throwsLike(() => cluster.listen(server, { port: 0, host: 127 }), TypeError, 'ERR_INVALID_ARG_TYPE', /options.host/);
  throwsLike(() => cluster.listen(server, { port: 0, backlog: -1 }), RangeError, 'ERR_OUT_OF_RANGE', /options.backlog/);
  throwsLike(() => cluster.listen(server, 0, 'not a function'), TypeError, 'ERR_INVALID_ARG_TYPE', /"callback"/);
  assert.strictEqual(server.listening, false);

  const w = cluster._workerForId(9999);
  throwsLike(() => w.kill('SIGNOPE'), TypeError, 'ERR_UNKNOWN_SIGNAL', /Unknown signal: SIGNOPE/);
  throwsLike(() => w.kill({}), TypeError, 'ERR_INVALID_ARG_TYPE');
  throwsLike(() => w.send(), TypeError, 'ERR_MISSING_ARGS');
  throwsLike(() => w.send({ a: 1 }, 'not a handle'), TypeError, 'ERR_INVALID_ARG_TYPE', /"handle"/);
  throwsLike(() => w.send(() => {}), TypeError, 'ERR_INVALID_ARG_TYPE', /"message"/);
});

scenario('libcluster errors carry code and negative errno', async () => {
  // An unknown worker: ESRCH.
  const w = cluster._workerForId(9999);
  throwsLike(() => w.send({ a: 1 }), Error, 'ESRCH');
  try {
    w.send({ a: 1 });
  } catch (err) {
    assert.strictEqual(err.errno, -3);
    assert.strictEqual(err.syscall, 'send');
  }
  // With a callback, the error goes there instead.
  const viaCb = await new Promise((resolve) => w.send({ a: 1 }, resolve));
  assert.strictEqual(viaCb.code, 'ESRCH');
  w.kill(); // a dead or unknown worker: nothing to do, as Node's kill()

  // The channel must stay the worker's fd 3.
  throwsLike(() => cluster.setupPrimary({ stdio: ['ipc', 'pipe', 'pipe', 'pipe'] }), RangeError, 'ERR_INVALID_ARG_VALUE', /'ipc'/);
  assert.throws(() => cluster.setupPrimary({ stdio: ['pipe', 'pipe', 'pipe', 'pipe'] }), { code: 'ERR_CHILD_PROCESS_IPC_REQUIRED' });
  // A program that does not exist: ENOENT from fork().
  cluster.setupPrimary({ exec: '/nonexistent/libcluster-test-program' });
  assert.throws(() => cluster.fork(), (err) => {
    assert.strictEqual(err.code, 'ENOENT');
    assert.strictEqual(err.errno, -2);
    assert.strictEqual(err.syscall, 'fork');
    return true;
  });
  assert.deepStrictEqual(cluster.workers, {});
});

scenario('listen in the primary: serves here; a busy port is EADDRINUSE', async (t) => {
  const server = http.createServer((req, res) => res.end(`hello from primary ${process.pid}\n`));
  t.after(() => server.close());
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    cluster.listen(server, { port: 0, host: '127.0.0.1' }, resolve);
  });
  assert.strictEqual(server.listening, true);
  const addr = server.address();
  assert.strictEqual(addr.address, '127.0.0.1');
  assert.strictEqual(addr.family, 'IPv4');
  assert.ok(addr.port > 0);
  const res = await get(addr.port);
  assert.strictEqual(res.body, `hello from primary ${process.pid}\n`);

  // The same port again: the error event, like server.listen()'s.
  const other = net.createServer();
  const err = await new Promise((resolve) => {
    other.once('error', resolve);
    other.once('listening', () => resolve(null));
    cluster.listen(other, { port: addr.port, host: '127.0.0.1' });
  });
  assert.ok(err, 'listening twice on one port must fail');
  assert.strictEqual(err.code, 'EADDRINUSE');
  assert.strictEqual(err.errno, -98);
  assert.strictEqual(err.syscall, 'listen');
  assert.strictEqual(err.port, addr.port);
  assert.strictEqual(other.listening, false);
  throwsLike(() => cluster.listen(server, { port: 0 }), Error, 'ERR_SERVER_ALREADY_LISTEN');

  // close() stops it and emits 'close'.
  await new Promise((resolve) => server.close(resolve));
  assert.strictEqual(server.listening, false);
});

scenario('in a worker: a port the primary cannot bind is EADDRINUSE on the server', { timeout: 60000 }, async (t) => {
  const busy = net.createServer();
  await new Promise((r) => busy.listen(0, '127.0.0.1', r));
  t.after(() => busy.close());
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const { pid, id } = await p.command('fork', { env: { PORT: String(busy.address().port) } });
  const e = await p.waitFor('worker error', (j) => j.worker === 'error' && j.pid === pid);
  assert.strictEqual(e.code, 'EADDRINUSE');
  assert.strictEqual(e.errno, -98);
  // Worded as Node's workers word it.
  assert.strictEqual(e.syscall, 'bind');
  assert.strictEqual(e.message, `bind EADDRINUSE 127.0.0.1:${busy.address().port}`);
  assert.strictEqual(e.name, 'Error');
  const exit = await p.event('exit', { id });
  assert.strictEqual(exit.code, 1);
});
