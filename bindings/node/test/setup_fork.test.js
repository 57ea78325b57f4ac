// setupPrimary() after the first fork changes what later forks run, and each call and each
// fork emits 'setup', as Node's (fork calls setupPrimary); fork(env) takes what
// child_process takes: values become strings, undefined ones are left out, a key with '='
// is passed as it is.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, PKG, start } = require('./helpers');

scenario('setupPrimary after fork, and fork(env) values', async (t) => {
  const p = start(t, process.execPath, [path.join(FIXTURES, 'setup_fork.js')], { env: { LIBCLUSTER_PACKAGE: PKG }, name: 'primary' });
  const r = await p.waitFor('what the workers saw', (j) => j.got);
  assert.strictEqual(r.setups, 5, "'setup' for 3 calls and 2 forks");
  assert.deepStrictEqual(r.got['1'], { argv: ['b'], NUM: '5', A: 'B=x', NUL: 'null' });
  assert.deepStrictEqual(r.got['2'], { argv: ['c'] });
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
});
