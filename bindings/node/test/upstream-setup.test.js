// Node's cluster test scenarios about settings and starting workers, in our own words:
// cwd (and cluster.settings.cwd), an extra stdio pipe, windowsHide, settings.args taken from
// process.argv as it is at setupPrimary(), the settings object at 'setup', --inspect-brk in
// execArgv, and a primary's uncaught exception (with and without its own handler). The
// processes are test/fixtures/upstream/setup.js; the primary prints one {"result": ...}
// line as it exits; we assert.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, WAIT_MS, start, alive, sleep } = require('./helpers');

const SCRIPT = path.join(FIXTURES, 'upstream', 'setup.js');

async function run(t, mode, env = {}, exit = { code: 0, signal: null }) {
  const p = start(t, process.execPath, [SCRIPT, mode], { env, name: `setup.js ${mode}` });
  const { result } = await p.waitFor("the primary's result", (j) => j.result);
  assert.deepStrictEqual(await p.exited, exit);
  const workers = p.lines.map((l) => l.json).filter((j) => j && j.worker);
  return { result, workers, p };
}

const clean = (...ids) => ids.map((id) => ({ id, code: 0, signal: null }));
const byId = (list) => [...list].sort((a, b) => a.id - b.id);

scenario('cwd: cluster.settings.cwd starts undefined, a worker starts in our cwd; after setupPrimary({cwd}) in that one', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'cwd');
  assert.strictEqual(result.settingsCwdBefore, 'undefined');
  assert.strictEqual(result.settingsCwdAfter, true);
  assert.deepStrictEqual(byId(result.reported), [{ id: 1, cwd: result.expected[1] }, { id: 2, cwd: result.expected[2] }]);
  assert.deepStrictEqual(byId(result.exits), clean(1, 2));
});

scenario("settings.stdio with a fifth pipe: worker.process.stdio[4] reaches the worker's fd 4 and back", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'stdio');
  assert.deepStrictEqual(result, { echoed: 'through fd 4', exits: clean(1) });
});

scenario('setupPrimary({ silent, windowsHide }): the worker comes online and leaves on request, exit (0, null)', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'windows-hide');
  assert.deepStrictEqual(result, { online: true, exits: clean(1) });
});

scenario("setupPrimary(): settings.args is process.argv as it is at that call (arguments pushed later included)", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'argv');
  assert.notStrictEqual(result.lastBefore, 'late,arg');
  assert.strictEqual(result.argvLast, 'late,arg');
  assert.strictEqual(result.lastArg, 'late,arg');
});

scenario("setupPrimary({ args, silent }): 'setup' shows them and exec is our script; each worker gets the argument", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'settings');
  assert.deepStrictEqual(result.settings, { args: ['custom argument'], silent: true, execIsScript: true });
  assert.deepStrictEqual(result.args, ['custom argument', 'custom argument']);
  assert.deepStrictEqual(byId(result.exits), [1, 2].map((id) => ({ id, code: null, signal: 'SIGTERM' })));
});

scenario("the primary's own uncaughtException handler wins over the cluster's: it exits 42", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'uncaught', {}, { code: 42, signal: null });
  assert.deepStrictEqual(result, { caught: 'thrown in the primary' });
});

scenario('an uncaught exception kills the primary (exit 1); its two listening workers go away too', { timeout: 30000 }, async (t) => {
  const p = start(t, process.execPath, [SCRIPT, 'primary-error'], { name: 'setup.js primary-error' });
  assert.deepStrictEqual(await p.exited, { code: 1, signal: null });
  assert.match(p.stderr, /primary failure on purpose/);
  const pids = p.lines.map((l) => l.json).filter((j) => j && j.event === 'fork').map((j) => j.pid);
  assert.strictEqual(pids.length, 2);
  const deadline = Date.now() + WAIT_MS;
  while (pids.some(alive) && Date.now() < deadline) await sleep(50);
  assert.deepStrictEqual(pids.filter(alive), [], 'no worker outlives its primary');
});

for (const flag of ['--inspect-brk', '--inspect-brk=0']) {
  scenario(`execArgv ${flag}: the worker waits at the inspector before our code; SIGTERM ends it`, { timeout: 30000 }, async (t) => {
    const { result, workers } = await run(t, 'inspect-brk', { INSPECT: flag });
    assert.match(result.stderr, /^Debugger listening on ws:\/\//);
    assert.deepStrictEqual(result.processExit, [null, 'SIGTERM']);
    assert.deepStrictEqual(workers, [], 'the worker never ran our code');
  });
}

scenario("with --inspect-brk in execArgv, worker 1's inspector port is the primary's debugPort + 1, as Node assigns it", {
  timeout: 30000,
}, async (t) => {
  const { result } = await run(t, 'inspect-brk', { INSPECT: '--inspect-brk' });
  assert.match(result.stderr, /^Debugger listening on ws:\/\/127\.0\.0\.1:9230\//);
});
