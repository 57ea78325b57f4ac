// cluster.disconnect(callback): as in Node, the callback runs after every worker's
// 'disconnect' event (and before their 'exit'), whether the workers listen or not.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, PKG, start } = require('./helpers');

for (const noServer of ['0', '1']) {
  scenario(`cluster.disconnect(cb) runs cb after the workers' 'disconnect' events (${noServer === '1' ? 'idle workers' : 'listening workers'})`, async (t) => {
    const p = start(t, process.execPath, [path.join(FIXTURES, 'disconnect_order.js')], { env: { LIBCLUSTER_PACKAGE: PKG, NO_SERVER: noServer }, name: 'primary' });
    const { order } = await p.waitFor('the event order', (j) => j.order);
    const cb = order.indexOf('callback');
    assert.ok(cb >= 0, `the callback ran: ${order}`);
    // (A worker's 'exit' may come before the other's 'disconnect': only the disconnects count.)
    assert.deepStrictEqual(order.slice(0, cb).filter((e) => e.startsWith('disconnect')).sort(), ['disconnect 1', 'disconnect 2'], `both 'disconnect' events before the callback: ${order}`);
    assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  });
}
