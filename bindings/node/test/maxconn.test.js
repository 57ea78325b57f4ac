// server.maxConnections in a worker, as Node v20: a full worker does not take a connection
// (Node answers `accepted: false` and its primary gives the connection to another worker);
// nothing is dropped. Each policy: round-robin on the fast lane (libcluster peers), on
// Node's one-by-one path, and shared listeners.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, PKG, start } = require('./helpers');

const FIXTURE = path.join(FIXTURES, 'maxconn.js');

for (const [name, env] of [
  ['round-robin, fast lane', {}],
  ["round-robin, Node's newconn path (accepted: false)", { LIBCLUSTER_FAST_LANE: '0' }],
  ['shared listener (SCHED_NONE)', { NODE_CLUSTER_SCHED_POLICY: 'none' }],
]) {
  scenario(`maxConnections (${name}): a full worker's connections go to the other one, none dropped`, async (t) => {
    const p = start(t, process.execPath, [FIXTURE], { env: { ...env, LIBCLUSTER_PACKAGE: PKG }, name: 'maxconn primary' });
    const r = await p.waitFor('the three connections served', (j) => j.served || j.error);
    assert.ok(!r.error, r.error);
    const [p1, p2, p3] = r.served;
    assert.deepStrictEqual([p1, p2].sort(), [...r.workers].sort(), 'the 2nd connection went to the worker that was not full');
    assert.strictEqual(r.early, false, 'the 3rd connection waited while both workers were full');
    assert.strictEqual(p3, p1, 'the 3rd connection went to the worker whose connection ended');
    const exit = await p.exited;
    assert.deepStrictEqual(exit, { code: 0, signal: null });
    assert.ok(!p.lines.some(({ json }) => json && json.drop), 'no connection dropped');
  });
}
