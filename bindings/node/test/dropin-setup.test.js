// Drop-in for node:cluster, settings and workers: setupPrimary() after a fork, cumulative
// settings and the 'setup' event (Node's test-cluster-setup-primary-multiple/-cumulative),
// fork(env) as child_process takes it (test-cluster-fork-env), cluster.Worker shaped as
// Node's (test-cluster-worker-constructor); in our own words. The primaries are
// test/fixtures/dropin/setup.js, one scenario per run; they print facts, we assert.
'use strict';
const assert = require('node:assert');
const EventEmitter = require('node:events');
const path = require('node:path');
const { scenario, FIXTURES, start } = require('./helpers');

const SCRIPT = path.join(FIXTURES, 'dropin', 'setup.js');

function run(t, mode, env = {}) {
  return start(t, process.execPath, [SCRIPT, mode], { env, name: `setup.js ${mode}` });
}

const events = (p, name) => p.lines.map((l) => l.json).filter((j) => j && j.event === name);

scenario("setupPrimary() three times: one 'setup' per call, each with that call's settings", { timeout: 30000 }, async (t) => {
  const p = run(t, 'multiple');
  const final = await p.event('settings');
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  const setups = events(p, 'setup');
  assert.deepStrictEqual(setups.map((s) => s.settings.exec), ['node-next', 'node-next-2', 'node-next-3']);
  assert.strictEqual(final.settings.exec, 'node-next-3');
});

scenario('setupPrimary() is cumulative: later calls keep what earlier ones set', { timeout: 30000 }, async (t) => {
  const p = run(t, 'cumulative');
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  const snap = Object.fromEntries(events(p, 'settings').map((e) => [e.label, e.settings]));
  assert.deepStrictEqual(snap.before, {}, 'cluster.settings is {} before setupPrimary()');
  assert.deepStrictEqual(snap.defaults, { args: ['cumulative'], exec: SCRIPT, execArgv: [], silent: false });
  assert.deepStrictEqual(snap.exec, { args: ['cumulative'], exec: 'overridden', execArgv: [], silent: false });
  assert.deepStrictEqual(snap.args, { args: ['foo', 'bar'], exec: 'overridden', execArgv: [], silent: false });
  const all = { args: ['foo', 'bar'], exec: 'overridden', execArgv: ['baz', 'bang'], silent: false };
  assert.deepStrictEqual(snap.execArgv, all);
  assert.deepStrictEqual(snap.again, all, 'setupPrimary() with nothing keeps the current settings');
});

scenario('setupPrimary() after the first fork: the next fork runs with the new args and execArgv', { timeout: 30000 }, async (t) => {
  const p = run(t, 'after-fork');
  const first = await p.waitFor('first worker started', (j) => j.worker === 'started' && j.id === 1);
  const second = await p.waitFor('second worker started', (j) => j.worker === 'started' && j.id === 2);
  assert.deepStrictEqual(first.argv, ['first', 'run']);
  assert.deepStrictEqual(first.execArgv, []);
  assert.deepStrictEqual(second.argv, ['second']);
  assert.deepStrictEqual(second.execArgv, ['--no-warnings']);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  for (const id of [1, 2]) {
    const exit = events(p, 'exit').find((e) => e.id === id);
    assert.deepStrictEqual([exit.code, exit.signal], [0, null]);
  }
  // A 'setup' for each call, the later one with the later settings.
  const argsSeen = events(p, 'setup').map((s) => JSON.stringify(s.settings.args));
  assert.ok(argsSeen.includes('["first","run"]') && argsSeen.includes('["second"]'), argsSeen.join(' '));
  assert.strictEqual(argsSeen.lastIndexOf('["first","run"]') < argsSeen.indexOf('["second"]'), true);
  // Both sides' worker objects are cluster.Worker instances, as in Node.
  assert.deepStrictEqual(events(p, 'fork').map((e) => e.instance), [true, true]);
  assert.strictEqual(first.instance, true);
});

scenario("fork() emits 'setup' too, as Node's fork() calls setupPrimary()", { timeout: 30000 }, async (t) => {
  const p = run(t, 'after-fork');
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  // Node v20: setupPrimary({first}), fork, setupPrimary({second}), fork: 4 'setup' events.
  assert.deepStrictEqual(events(p, 'setup').map((s) => s.settings.args[0]), ['first', 'first', 'second', 'second']);
});

scenario('fork(env): added and overridden variables; a number arrives as a string; undefined is left out; a NUL byte throws', { timeout: 30000 }, async (t) => {
  const p = run(t, 'fork-env');
  const nul = await p.event('nul');
  assert.deepStrictEqual(nul, { event: 'nul', threw: true, name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', workers: 0 });
  const { msg } = await p.event('message');
  assert.strictEqual(msg.prop, 'custom');
  assert.strictEqual(msg.overwrite, 'new', "fork(env) overrides the primary's process.env");
  assert.strictEqual(msg.number, '42');
  assert.strictEqual(msg.bool, 'false');
  assert.strictEqual(msg.hasUndefined, false, 'a variable given as undefined is not set');
  const sent = await p.waitFor('worker send() result', (j) => j.worker === 'sent');
  assert.strictEqual(sent.result, true, 'cluster.worker.send() returns true');
  const exit = await p.event('exit');
  assert.deepStrictEqual([exit.code, exit.signal], [0, null]);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});

scenario("fork({ NAME: undefined }) leaves NAME out even when the primary's environment has it", { timeout: 30000 }, async (t) => {
  const p = run(t, 'fork-env');
  const { msg } = await p.event('message');
  // Node: the env is { ...process.env, ...env } and child_process drops undefined values.
  assert.strictEqual(msg.hasDropped, false, `got ${JSON.stringify(msg.dropped)}`);
});

scenario('cluster.Worker: constructed bare, with options, or called without new, as in Node', () => {
  const cluster = require('libcluster-node');
  const bare = new cluster.Worker();
  assert.strictEqual(bare.state, 'none');
  assert.strictEqual(bare.id, 0);
  assert.strictEqual(bare.process, undefined);
  assert.strictEqual(bare.exitedAfterDisconnect, undefined);
  assert.ok(bare instanceof EventEmitter);

  const given = new cluster.Worker({ id: 3, state: 'online', process });
  assert.strictEqual(given.state, 'online');
  assert.strictEqual(given.id, 3);
  assert.strictEqual(given.process, process);
  assert.strictEqual(given.exitedAfterDisconnect, undefined);

  const called = cluster.Worker.call({}, { id: 5 });
  assert.ok(called instanceof cluster.Worker);
  assert.strictEqual(called.id, 5);
  assert.strictEqual(called.state, 'none');
  for (const m of ['send', 'kill', 'isDead', 'isConnected']) {
    assert.strictEqual(typeof called[m], 'function', m);
  }
});

scenario("cluster.Worker.prototype has the primary's disconnect() and destroy(), as Node's", () => {
  const cluster = require('libcluster-node');
  assert.strictEqual(typeof cluster.Worker.prototype.disconnect, 'function');
  assert.strictEqual(typeof cluster.Worker.prototype.destroy, 'function');
});
