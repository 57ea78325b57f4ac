// Node's cluster test scenarios about a Worker's events and what it reports (basic events
// and states, exit/kill/disconnect endings, isConnected(), isDead(), messages on both
// emitters, destroy(), a worker leaving on its own, a busy worker, a domain), written here
// in our own words. The primary and workers are test/fixtures/upstream/events.js; the
// primary prints what it saw as one {"result": ...} line when it exits; we assert.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, start } = require('./helpers');

const SCRIPT = path.join(FIXTURES, 'upstream', 'events.js');

// Runs one scenario to its end (the primary exits 0) and returns the primary's facts and
// the workers' lines.
async function run(t, mode, env = {}) {
  const p = start(t, process.execPath, [SCRIPT, mode], { env, name: `events.js ${mode}` });
  const { result } = await p.waitFor('the primary\'s result', (j) => j.result);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null }, 'the primary exits 0 once its workers are gone');
  const workers = p.lines.map((l) => l.json).filter((j) => j && j.worker);
  return { result, workers, p };
}

scenario('fork, online, listening, exit: on cluster and worker, the right arguments, the state of each event', { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'basic');
  assert.strictEqual(result.uniqueIdInEnv, false, 'no NODE_UNIQUE_ID in the primary');
  assert.deepStrictEqual(workers, [{ worker: 'env', uniqueIdInEnv: false }], 'nor in the worker');
  assert.strictEqual(result.id, 1);
  assert.strictEqual(result.isWorkerInstance, true);
  const atEach = { sameWorker: true, stateIsEvents: true };
  assert.deepStrictEqual(result.cluster, { fork: atEach, online: atEach, listening: atEach, exit: atEach });
  assert.deepStrictEqual(result.worker, {
    online: { thisIsWorker: true, argc: 0 },
    listening: { thisIsWorker: true, argc: 1, keys: ['address', 'addressType', 'fd', 'port'], address: '127.0.0.1', addressType: 4, fdUndefined: true, portIsNumber: true },
    exit: { thisIsWorker: true, argc: 2, argsAreProcessCodes: true },
  });
});

// Node's worker-kill (the ChildProcess is killed) and worker-kill-signal (Worker.kill(signal)).
for (const how of ['process', 'worker']) {
  scenario(`a listening worker killed with SIGKILL (${how}.kill): one 'disconnect' then one 'exit', not voluntary`, { timeout: 30000 }, async (t) => {
    const { result } = await run(t, 'end', { KILL: how });
    assert.deepStrictEqual(result, {
      clusterDisconnect: 1,
      clusterExit: 1,
      clusterCodes: [null, 'SIGKILL'],
      clusterExitAfterDisconnect: true,
      workerDisconnect: 1,
      workerExit: 1,
      workerExitAfterDisconnect: true,
      stateAtDisconnect: 'disconnected',
      eadAtDisconnect: false,
      exitArgs: [null, 'SIGKILL'],
      goneAtExit: true,
    });
  });
}

scenario('a listening worker calls process.exit(42): one of each event, code 42, not voluntary', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'end', { KILL: 'exit' });
  // Node allows 'exit' before 'disconnect' here, so the order is not asserted.
  delete result.clusterExitAfterDisconnect;
  delete result.workerExitAfterDisconnect;
  assert.deepStrictEqual(result, {
    clusterDisconnect: 1,
    clusterExit: 1,
    clusterCodes: [42, null],
    workerDisconnect: 1,
    workerExit: 1,
    stateAtDisconnect: 'disconnected',
    eadAtDisconnect: false,
    exitArgs: [42, null],
    goneAtExit: true,
  });
});

scenario("worker.disconnect() of a listening worker: its own 'disconnect' runs (exit 42), voluntary, state 'disconnected'", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'worker-disconnect');
  assert.strictEqual(result.returned, true, 'disconnect() returns the worker');
  assert.strictEqual(result.clusterDisconnect, 1);
  assert.strictEqual(result.clusterExit, 1);
  assert.strictEqual(result.workerDisconnect, 1);
  assert.strictEqual(result.workerExit, 1);
  assert.strictEqual(result.stateAtDisconnect, 'disconnected');
  assert.strictEqual(result.eadAtDisconnect, true);
  assert.deepStrictEqual(result.exitArgs, [42, null], "the worker's 'disconnect' handler ran");
  assert.strictEqual(result.goneAtExit, true);
});

scenario('isConnected(): true from fork on and in the worker; false after the disconnect on both sides', { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'isconnected');
  assert.deepStrictEqual(result, { atFork: true, atDisconnect: false });
  assert.deepStrictEqual(workers, [{ worker: 'isConnected', atStart: true, afterProcessDisconnect: false }]);
});

scenario('isDead(): false after fork and in the worker, true at its exit', { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'isdead');
  assert.deepStrictEqual(result, { atFork: false, atExit: true });
  assert.deepStrictEqual(workers, [{ worker: 'isDead', atStart: false }]);
});

scenario("a message reaches process and cluster.worker alike; process 'error' reaches cluster.worker 'error'", { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'worker-events');
  assert.deepStrictEqual(result, { sendReturned: true, exitArgs: [2, null] });
  assert.strictEqual(workers.length, 1);
  const msg = { text: 'one message', n: [1, 2] };
  assert.deepStrictEqual(workers[0].seen.map((s) => s.where).sort(), ['cluster.worker', 'process']);
  for (const s of workers[0].seen) assert.deepStrictEqual(s.m, msg);
  assert.strictEqual(workers[0].errorValue, 'a plain value as the error');
});

scenario("cluster.worker 'message' in the worker; worker.disconnect() returns the worker", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'init');
  assert.deepStrictEqual(result, { reply: 'polo', disconnectReturnsWorker: true, exitArgs: [0, null] });
});

scenario("cluster.worker.disconnect() in the worker; at the primary's 'disconnect' isConnected() is false and destroy() is harmless", { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'call-and-destroy');
  assert.deepStrictEqual(workers, [{ worker: 'connected', isConnected: true }]);
  assert.strictEqual(result.connectedAtDisconnect, false);
  assert.strictEqual(result.destroyThrew, false);
  assert.ok(Array.isArray(result.exitArgs), 'the worker exited');
});

scenario('a worker stuck in an endless loop: worker.process.kill() ends it, (null, SIGTERM)', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'busy-loop');
  assert.deepStrictEqual(result, { exitArgs: [null, 'SIGTERM'] });
});

scenario("cluster.worker.destroy() in a worker, connected or already disconnected: one 'disconnect' and one 'exit' each", { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'destroy');
  assert.deepStrictEqual(result, { disconnect1: 1, exit1: 1, disconnect2: 1, exit2: 1 });
});

scenario('cluster.worker.disconnect() or .kill() in the worker: exitedAfterDisconnect at both events, exit 0', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'leave');
  const voluntary = { eadAtDisconnect: true, eadAtExit: true, exitArgs: [0, null] };
  assert.deepStrictEqual(result, { disconnect: voluntary, kill: voluntary });
});

scenario('a domain active in the worker before it listens: listening as usual, then killed', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'domain');
  assert.deepStrictEqual(result, { listened: true, exitArgs: [null, 'SIGTERM'] });
});
