// examples/node/hello.js, the Node twin of the C demo: same lines, same HTTP body; every
// worker answers; a worker that dies is reported and replaced.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, ROOT, start, everyWorkerAnswers } = require('./helpers');

const HELLO = path.join(ROOT, 'examples', 'node', 'hello.js');

scenario('hello.js: every worker answers, and a dead worker is replaced', { timeout: 90000 }, async (t) => {
  const p = start(t, process.execPath, [HELLO], { env: { PORT: '0', WORKERS: '2' }, name: 'hello.js' });
  const primary = await p.waitFor('Primary line', (_, raw) => /^Primary \d+ is running$/.test(raw));
  assert.strictEqual(primary, `Primary ${p.pid} is running`);

  const started = /^Worker (\d+) started$/;
  const listening = /^worker (\d+) listening on 127\.0\.0\.1:(\d+)$/;
  const pids = new Set();
  let port = null;
  for (let i = 0; i < 2; i++) {
    const line = await p.waitFor(`listening line #${i + 1}`, (_, raw) => listening.test(raw) && !pids.has(Number(listening.exec(raw)[1])));
    const [, pid, prt] = listening.exec(line);
    pids.add(Number(pid));
    port = port ?? Number(prt);
    assert.strictEqual(Number(prt), port, 'PORT=0: every worker shares one port');
    await p.waitFor(`Worker ${pid} started`, (_, raw) => raw === `Worker ${pid} started`);
  }
  assert.ok(port > 0);
  await everyWorkerAnswers(port, [...pids]);

  // Kill one; the primary says so and forks a replacement that answers too.
  const [victim, survivor] = [...pids];
  process.kill(victim, 'SIGKILL');
  await p.waitFor('died line', (_, raw) => raw === `worker ${victim} died (signal 9)`);
  const repl = await p.waitFor('a replacement worker', (_, raw) => started.test(raw) && !pids.has(Number(started.exec(raw)[1])));
  const newPid = Number(started.exec(repl)[1]);
  await everyWorkerAnswers(port, [survivor, newPid]);
  assert.strictEqual(p.exit, null, 'the primary keeps running');
});
