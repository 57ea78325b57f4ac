// Plain server.listen() in a worker goes through the primary (every signature), as does the
// alias cluster.listen(); a plain net.Server, a Unix socket, server.unref().
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

for (const form of ['args', 'options', 'cluster']) {
scenario(`a net.Server in two workers (listen form: ${form}): served by the primary, round-robin`, { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const a = await p.command('fork', { env: { WORKER_MODE: 'net', LISTEN_FORM: form } });
  const b = await p.command('fork', { env: { WORKER_MODE: 'net', LISTEN_FORM: form } });
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
  await p.waitFor('worker b listening', (j) => j.worker === 'listening' && j.pid === b.pid);
  assert.ok(!p.lines.some(({ json }) => json && json.worker === 'error'), 'no EADDRINUSE: one bind, in the primary');
});
}

for (const form of ['args', 'options', 'cluster']) {
scenario(`a Unix socket path (listen form: ${form})`, { timeout: 60000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'libcluster-node-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sockPath = path.join(dir, 'srv.sock');
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const a = await p.command('fork', { env: { WORKER_MODE: 'unix', SOCK_PATH: sockPath, LISTEN_FORM: form } });
  const l = await p.event('listening', { id: a.id });
  assert.strictEqual(l.addressType, -1);
  const w = await p.waitFor('worker listening', (j) => j.worker === 'listening' && j.pid === a.pid);
  assert.strictEqual(w.address, sockPath, 'server.address() is the path, as in Node');
  assert.strictEqual(await exchange({ path: sockPath }, 'over unix\n'), `${a.pid}: over unix\n`);
});
}

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

scenario('server.listen() in a worker: every signature and server type goes to the primary; exclusive stays local', { timeout: 60000 }, async (t) => {
  const p = addonPrimary(t);
  await p.command('setup', { settings: { exec: WORKER } });
  const a = await p.command('fork', { env: { WORKER_MODE: 'forms' } });
  const done = await p.waitFor('forms done', (j) => j.worker === 'forms done' && j.pid === a.pid);
  assert.strictEqual(done.badPort, 'RangeError ERR_SOCKET_BAD_PORT');
  assert.strictEqual(done.noPortOrPath, 'TypeError ERR_INVALID_ARG_VALUE');
  const json = p.lines.map((l) => l.json).filter(Boolean);
  assert.deepStrictEqual(json.filter((j) => j.worker === 'form error'), []);
  const forms = Object.fromEntries(json.filter((j) => j.worker === 'form' && j.pid === a.pid).map((j) => [j.form, j]));
  assert.strictEqual(Object.keys(forms).length, 11, JSON.stringify(Object.keys(forms)));
  for (const [form, f] of Object.entries(forms)) {
    assert.strictEqual(f.again, 'Error ERR_SERVER_ALREADY_LISTEN', form);
    assert.strictEqual(f.closedListening, false, form);
    assert.ok(f.address.port > 0, form);
  }
  assert.strictEqual(forms['listen()'].address.address, '::');
  assert.strictEqual(forms['listen(cb)'].address.family, 'IPv6');
  assert.strictEqual(forms['listen(port, host, backlog, cb)'].address.address, '127.0.0.1');
  assert.strictEqual(forms['listen({ port: undefined, host })'].address.address, '127.0.0.1');
  assert.ok(['127.0.0.1', '::1'].includes(forms['listen({ host: localhost })'].address.address));
  assert.ok(json.some((j) => j.worker === 'http body' && j.body === `http from ${a.pid}\n`));
  // The primary saw each listen but the exclusive one, on the port the worker reports.
  const listening = json.filter((j) => j.event === 'listening' && j.id === a.id).map((j) => j.port);
  const shared = Object.entries(forms).filter(([form]) => form !== 'exclusive (local)').map(([, f]) => f.address.port);
  assert.deepStrictEqual(listening.sort(), shared.sort());
  assert.ok(!listening.includes(forms['exclusive (local)'].address.port));
});
