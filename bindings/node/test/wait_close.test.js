// A primary-initiated disconnect, as in Node: the worker closes its server at once but
// keeps its channel until the server's open connection has ended; only then does it
// disconnect ('disconnect' in both processes), and it exits 0.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, PKG, start } = require('./helpers');

for (const [name, env] of [['fast lane', {}], ["Node's newconn path", { LIBCLUSTER_FAST_LANE: '0' }]]) {
  scenario(`worker.disconnect() waits for the worker's open connection (${name})`, async (t) => {
    const p = start(t, process.execPath, [path.join(FIXTURES, 'wait_close.js')], { env: { ...env, LIBCLUSTER_PACKAGE: PKG }, name: 'primary' });
    const w = await p.waitFor("the worker's 'disconnect'", (j) => 'serverClosedFirst' in j);
    assert.strictEqual(w.serverClosedFirst, true, "the worker's server closed before its 'disconnect'");
    const { order } = await p.waitFor("the primary's events", (j) => j.order);
    assert.deepStrictEqual(order, ['asked', 'client-end', 'disconnect', 'exit 0']);
    assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  });
}
