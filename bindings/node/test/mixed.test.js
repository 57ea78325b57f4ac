// Mixed languages: an addon primary running libcluster's C demo as workers, and libcluster's
// Rust fixture (a non-Node primary) running addon workers through bin/libcluster-node.
// Also a real node:cluster primary running an addon worker script, and an addon primary
// running an unmodified node:cluster worker script (setupPrimary({nodeIpc: true})).
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, C_HELLO, RUST_FIXTURE, FIXTURES, LAUNCHER, addonPrimary, start, everyWorkerAnswers, get, requireFile } = require('./helpers');

const WORKER = path.join(FIXTURES, 'worker.js');

scenario('addon primary, C workers (target/examples/hello)', { timeout: 60000 }, async (t) => {
  requireFile(C_HELLO, 'run `make examples` in the repository root');
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: C_HELLO } });
  const a = await p.command('fork', { env: { PORT: '0' } });
  const b = await p.command('fork', { env: { PORT: '0' } });
  const la = await p.event('listening', { id: a.id });
  const lb = await p.event('listening', { id: b.id });
  assert.strictEqual(la.port, lb.port);
  assert.strictEqual(la.address, '127.0.0.1');
  assert.strictEqual(la.addressType, 4);
  assert.strictEqual(la.state, 'listening');
  await everyWorkerAnswers(la.port, [a.pid, b.pid]);

  await p.command('kill', { id: a.id, signal: 'SIGTERM' });
  const ea = await p.event('exit', { id: a.id });
  assert.deepStrictEqual([ea.code, ea.signal, ea.ead], [null, 'SIGTERM', false]);

  // The C demo finishes and exits 0 on a disconnect, as Node's workers do.
  await p.command('disconnect', { id: b.id });
  const eb = await p.event('exit', { id: b.id });
  assert.deepStrictEqual([eb.code, eb.signal, eb.ead], [0, null, true]);
});

scenario('C/Rust primary (libcluster fixture), addon workers', { timeout: 60000 }, async (t) => {
  requireFile(RUST_FIXTURE, 'run `cargo build --example fixture` in the repository root');
  const p = start(t, RUST_FIXTURE, [], { name: 'rust fixture primary' });
  await p.waitFor('fixture ready', (j) => j.ready);
  p.write(`setup ${LAUNCHER} ${WORKER}`);
  p.write('fork PORT=0');
  p.write('fork PORT=0');
  const la = await p.waitFor('listening 1', (j) => j.event === 'listening' && j.id === 1);
  const lb = await p.waitFor('listening 2', (j) => j.event === 'listening' && j.id === 2);
  assert.strictEqual(la.port, lb.port);
  const wa = await p.waitFor('worker 1 listening', (j) => j.worker === 'listening' && j.pid === la.pid);
  assert.deepStrictEqual(wa.address, { address: '127.0.0.1', family: 'IPv4', port: la.port });
  assert.strictEqual(wa.listening, true);
  await everyWorkerAnswers(la.port, [la.pid, lb.pid]);

  // Messages: the worker's first one, then an echo.
  const ready = await p.waitFor('ready message', (j) => j.event === 'message' && j.id === 1);
  assert.deepStrictEqual(JSON.parse(ready.data), { ready: la.pid, id: 1, isWorker: true, isPrimary: false });
  p.write('send 2 {"ping":[1,2,3]}');
  const echo = await p.waitFor('echo from 2', (j) => j.event === 'message' && j.id === 2 && /echo/.test(j.data));
  assert.deepStrictEqual(JSON.parse(echo.data), { echo: { ping: [1, 2, 3] }, pid: lb.pid });

  p.write('kill 1 9');
  const e1 = await p.waitFor('exit 1', (j) => j.event === 'exit' && j.id === 1);
  assert.deepStrictEqual([e1.code, e1.signal], [-1, 9]);

  p.write('disconnect 2');
  const e2 = await p.waitFor('exit 2', (j) => j.event === 'exit' && j.id === 2);
  assert.deepStrictEqual([e2.code, e2.signal, e2.ead], [0, 0, true]);
});

scenario('node:cluster primary, addon worker script (falls back to Node\'s own worker side)', { timeout: 60000 }, async (t) => {
  const p = start(t, process.execPath, [path.join(FIXTURES, 'node_primary.js'), WORKER], { name: 'node:cluster primary' });
  const l = await p.event('listening', { id: 1 });
  await everyWorkerAnswers(l.port, [l.pid]);
  const m = await p.event('message', { id: 1 });
  assert.deepStrictEqual(m.message, { ready: l.pid, id: 1, isWorker: true, isPrimary: false });
});

scenario('addon primary, unmodified node:cluster worker script (nodeIpc: true)', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: path.join(FIXTURES, 'node_worker.js'), nodeIpc: true } });
  const a = await p.command('fork', { env: { PORT: '0' } });
  const l = await p.event('listening', { id: a.id });
  const res = await get(l.port);
  assert.strictEqual(res.body, `hello from worker ${a.pid}\n`);
  await p.command('send', { id: a.id, msg: { hi: 'node' } });
  const m = await p.waitFor('echo', (j) => j.event === 'message' && j.message.echo);
  assert.deepStrictEqual(m.message, { echo: { hi: 'node' } });
  await p.command('disconnect', { id: a.id });
  const e = await p.event('exit', { id: a.id });
  assert.deepStrictEqual([e.code, e.signal, e.ead], [0, null, true]);
});
