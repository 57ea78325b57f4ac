// listen({ path, readableAll, writableAll }) in a worker: the primary binds the socket and
// gives the file read and write permission for everyone, as Node's does; without them the
// file keeps the mode the umask gives it.
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { scenario, FIXTURES, PKG, start } = require('./helpers');

for (const policy of ['rr', 'none']) {
  scenario(`readableAll/writableAll on a worker's Unix socket (policy ${policy})`, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'libcluster-mode-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const modes = {};
    for (const mode of ['all', 'none']) {
      const sock = path.join(dir, `${mode}.sock`);
      const p = start(t, process.execPath, [path.join(FIXTURES, 'pipe_mode.js')], {
        env: { LIBCLUSTER_PACKAGE: PKG, PIPE_MODE: mode, SOCK_PATH: sock, NODE_CLUSTER_SCHED_POLICY: policy },
        name: `pipe_mode ${mode}`,
      });
      modes[mode] = (await p.waitFor('the socket mode', (j) => j.mode)).mode;
      assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
    }
    assert.strictEqual(modes.all, '777');
    const umask = process.umask();
    assert.strictEqual(modes.none, (0o777 & ~umask).toString(8), 'without the options the umask decides');
  });
}
