// cluster.listen() with a plain net.Server, on a Unix socket, and server.unref().
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { scenario, FIXTURES, addonPrimary, start, get } = require('./helpers');

const WORKER = path.join(FIXTURES, 'worker.js');

function exchange(connectOpts, text) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(connectOpts, () => sock.write(text));
    let got = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => {
      got += d;
      if (got.endsWith('\n')) {
        sock.end();
        resolve(got);
      }
    });
    sock.on('error', reject);
  });
}

scenario('a net.Server in two workers: connection events, round-robin', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const a = await p.command('fork', { env: { WORKER_MODE: 'net' } });
  const b = await p.command('fork', { env: { WORKER_MODE: 'net' } });
  const la = await p.event('listening', { id: a.id });
  await p.event('listening', { id: b.id });
  const wa = await p.waitFor('worker listening', (j) => j.worker === 'listening' && j.pid === a.pid);
  assert.deepStrictEqual(wa.address, { address: '127.0.0.1', family: 'IPv4', port: la.port });
  const seen = new Set();
  for (let i = 0; i < 20 && seen.size < 2; i++) {
    const reply = await exchange({ host: '127.0.0.1', port: la.port }, `ping ${i}\n`);
    const m = /^(\d+): ping (\d+)\n$/.exec(reply);
    assert.ok(m, reply);
    assert.strictEqual(Number(m[2]), i);
    seen.add(Number(m[1]));
  }
  assert.deepStrictEqual([...seen].sort(), [a.pid, b.pid].sort());
});

scenario('a Unix socket path', { timeout: 60000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'libcluster-node-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sockPath = path.join(dir, 'srv.sock');
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const a = await p.command('fork', { env: { WORKER_MODE: 'unix', SOCK_PATH: sockPath } });
  const l = await p.event('listening', { id: a.id });
  assert.strictEqual(l.addressType, -1);
  const w = await p.waitFor('worker listening', (j) => j.worker === 'listening' && j.pid === a.pid);
  assert.strictEqual(w.address, sockPath, 'server.address() is the path, as in Node');
  assert.strictEqual(await exchange({ path: sockPath }, 'over unix\n'), `${a.pid}: over unix\n`);
});

scenario('server.unref(): a listening primary with nothing else to do exits', { timeout: 60000 }, async (t) => {
  const script = `
    const cluster = require(${JSON.stringify(path.join(__dirname, '..'))});
    const server = require('node:http').createServer((q, r) => r.end('x'));
    cluster.listen(server, { port: 0, host: '127.0.0.1' }, () => {
      console.log(JSON.stringify({ event: 'listening', port: server.address().port }));
      server.unref();
    });`;
  const p = start(t, process.execPath, ['-e', script], { name: 'unref primary' });
  const l = await p.event('listening');
  assert.ok(l.port > 0);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

scenario('an http server in a worker takes the fast lane (a seqpacket fd), or Node\'s path when it is off', { timeout: 60000 }, async (t) => {
  for (const [env, lanes] of [[{}, 1], [{ LIBCLUSTER_FAST_LANE: '0' }, 0]]) {
    const p = addonPrimary(t, env);
    await p.command('setup', { settings: { exec: WORKER } });
    const a = await p.command('fork', { env: { PORT: '0' } });
    const l = await p.event('listening', { id: a.id });
    const w = await p.waitFor('worker listening', (j) => j.worker === 'listening' && j.pid === a.pid);
    assert.strictEqual(w.seqpackets, lanes, JSON.stringify(env));
    const res = await get(l.port);
    assert.strictEqual(res.body, `hello from worker ${a.pid}\n`);
    await p.command('kill', { id: a.id, signal: 'SIGKILL' });
    await p.event('exit', { id: a.id });
  }
});
