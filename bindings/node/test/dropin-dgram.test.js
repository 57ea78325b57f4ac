// Drop-in for node:cluster, UDP: dgram sockets bound in workers go through the cluster as in
// Node (the scenarios of Node's test-cluster-dgram-1/-2, -disconnect-unshared-udp and
// -dgram-reuse, in our own words). The primary and its workers are
// test/fixtures/dropin/dgram.js, one scenario per run; they print facts, we assert.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, start } = require('./helpers');

const SCRIPT = path.join(FIXTURES, 'dropin', 'dgram.js');

function run(t, mode, env = {}) {
  return start(t, process.execPath, [SCRIPT, mode], { env, name: `dgram.js ${mode}` });
}

const jsonLines = (p) => p.lines.map((l) => l.json).filter(Boolean);
const position = (p, pred) => p.lines.findIndex((l) => l.json && pred(l.json));

scenario('dgram: two workers bind port 0, share one port bound by the primary, receive datagrams, close on disconnect', { timeout: 30000 }, async (t) => {
  const p = run(t, 'shared');
  const one = await p.event('listening', { id: 1 });
  const two = await p.event('listening', { id: 2 });
  for (const l of [one, two]) {
    assert.strictEqual(l.addressType, 'udp4', 'the primary reports a UDP listen as addressType udp4');
    assert.strictEqual(l.address, '127.0.0.1');
    assert.ok(Number.isInteger(l.port) && l.port > 0, JSON.stringify(l));
  }
  assert.strictEqual(two.port, one.port, 'port 0 is one port for both workers');
  for (const l of [one, two]) {
    const bound = await p.waitFor(`worker ${l.id} bound`, (j) => j.worker === 'bound' && j.pid === l.pid);
    assert.deepStrictEqual(bound.address, { address: '127.0.0.1', family: 'IPv4', port: one.port }, 'socket.address() in the worker');
  }

  // The primary sends to that port until a worker says it got one.
  const got = await p.event('received');
  assert.ok([one.pid, two.pid].includes(got.pid), JSON.stringify(got));
  assert.match(got.text, /^probe \d+$/);
  assert.strictEqual(got.port, one.port);

  // Then the primary disconnects both: each worker's socket closes, then it exits 0.
  for (const l of [one, two]) {
    const wd = await p.waitFor(`worker ${l.id} disconnect`, (j) => j.worker === 'disconnect' && j.pid === l.pid);
    assert.strictEqual(wd.socketClosed, true, 'the socket is closed by the time the worker sees disconnect');
    assert.ok(position(p, (j) => j.worker === 'socket closed' && j.pid === l.pid) >= 0);
    const exit = await p.event('exit', { id: l.id });
    assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, true]);
  }
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null }, 'the primary exits once its workers are gone');
});

scenario('dgram: a worker sends from its clustered socket; the datagram comes from the shared port', { timeout: 30000 }, async (t) => {
  const p = run(t, 'send');
  const l = await p.event('listening', { id: 1 });
  assert.strictEqual(l.addressType, 'udp4');
  const d = await p.event('datagram');
  assert.strictEqual(d.text, `from ${l.pid}`);
  assert.strictEqual(d.fromPort, l.port, 'sent from the socket the primary bound');
  const exit = await p.event('exit', { id: 1 });
  assert.deepStrictEqual([exit.code, exit.signal], [0, null]);
  await p.event('disconnected all');
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

scenario('dgram: a worker with no socket disconnects while another holds one; then cluster.disconnect(): both exit 0', { timeout: 30000 }, async (t) => {
  const p = run(t, 'unshared');
  const bound = await p.event('listening', { id: 2 });
  assert.strictEqual(bound.addressType, 'udp4');
  await p.event('disconnect', { id: 1 });
  await p.event('disconnected all');
  for (const id of [1, 2]) {
    const exit = await p.event('exit', { id });
    assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, true], `worker ${id}`);
  }
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  assert.ok(!jsonLines(p).some((j) => j.event === 'listening' && j.id === 1), 'the idle worker never listened');
});

scenario('dgram: two reuseAddr sockets of one worker on one port, closed, then the worker disconnects and exits 0', { timeout: 30000 }, async (t) => {
  const p = run(t, 'reuse');
  const both = await p.waitFor('both sockets bound', (j) => j.worker === 'both bound');
  assert.strictEqual(both.ports[0], both.ports[1]);
  assert.ok(both.ports[0] > 0);
  const exit = await p.event('exit', { id: 1 });
  assert.deepStrictEqual([exit.code, exit.signal, exit.ead], [0, null, true]);
  const listens = jsonLines(p).filter((j) => j.event === 'listening');
  assert.ok(listens.length >= 1, 'the binds went through the primary');
  for (const l of listens) assert.deepStrictEqual([l.addressType, l.port], ['udp4', both.ports[0]]);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});
