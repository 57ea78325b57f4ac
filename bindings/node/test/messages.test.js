// Messages both ways between an addon primary and addon workers, and a socket passed along.
'use strict';
const assert = require('node:assert');
const net = require('node:net');
const path = require('node:path');
const { scenario, FIXTURES, addonPrimary } = require('./helpers');

const WORKER = path.join(FIXTURES, 'worker.js');

scenario('worker -> primary and primary -> worker messages, on worker and cluster emitters', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.event('ready');
  await p.command('setup', { settings: { exec: WORKER } });
  const { id, pid } = await p.command('fork', { env: { WORKER_MODE: 'idle' } });
  assert.strictEqual(id, 1);

  // The worker speaks first (process.send in the worker).
  const hello = await p.event('message', { id: 1 });
  assert.deepStrictEqual(hello.message, { ready: pid, id: 1, isWorker: true, isPrimary: false });
  assert.strictEqual(hello.pid, pid);
  assert.strictEqual(hello.handle, null);

  // Round trip: every JSON type, unicode, nesting.
  const msg = { n: 42, f: 1.5, s: 'héllo "wörld"\n', a: [1, null, true, { b: [] }], o: { deep: { er: 'x' } } };
  await p.command('send', { id: 1, msg });
  const echo = await p.waitFor('echo', (j) => j.event === 'message' && j.message && j.message.echo);
  assert.deepStrictEqual(echo.message, { echo: msg, pid });
  assert.ok(echo.workerSaw.includes('message'), 'worker.on("message") fired too');

  // Strings and numbers are messages too.
  await p.command('send', { id: 1, msg: 'just a string' });
  await p.waitFor('string echo', (j) => j.event === 'message' && j.message && j.message.echo === 'just a string');

  // process.on('message') in the worker sees them as well.
  await p.command('send', { id: 1, msg: { cmd: 'viaProcess', x: 1 } });
  await p.waitFor('process message', (j) => j.worker === 'process message' && j.message.x === 1);
});

scenario('a socket sent with a message arrives as a net.Socket', { timeout: 60000 }, async (t) => {
  let gotLine;
  const line = new Promise((resolve) => (gotLine = resolve));
  const server = net.createServer((sock) => {
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => {
      data += d;
    });
    sock.on('end', () => gotLine(data));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());

  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const { pid } = await p.command('fork', { env: { WORKER_MODE: 'idle' } });
  await p.event('message', { id: 1 });
  await p.command('sendSocket', { id: 1, port: server.address().port });
  const wrote = await p.waitFor('worker wrote into the socket', (j) => j.event === 'message' && j.message && j.message.wroteTo);
  assert.strictEqual(wrote.message.wroteTo, 'Socket');
  assert.strictEqual(await line, `from worker ${pid}\n`);
});
