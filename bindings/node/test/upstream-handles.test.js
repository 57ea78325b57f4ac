// Node's cluster test scenarios about sockets sent with messages, in our own words: sockets
// going primary -> worker -> primary at the same time, a socket handed to a worker and
// emitted as a 'connection' of its http.Server, and an 800 kB message carrying a socket
// both ways. The processes are test/fixtures/upstream/handles.js; the primary prints one
// {"result": ...} line as it exits; we assert.
'use strict';
const assert = require('node:assert');
const path = require('node:path');
const { scenario, FIXTURES, start } = require('./helpers');

const SCRIPT = path.join(FIXTURES, 'upstream', 'handles.js');

async function run(t, mode) {
  const p = start(t, process.execPath, [SCRIPT, mode], { name: `handles.js ${mode}` });
  const { result } = await p.waitFor("the primary's result", (j) => j.result);
  assert.deepStrictEqual(await p.exited, { code: 0, signal: null });
  const workers = p.lines.map((l) => l.json).filter((j) => j && j.worker);
  return { result, workers };
}

scenario('sockets sent to a worker and sent straight back, two at once: all arrive as sockets, the worker exits 0', { timeout: 30000 }, async (t) => {
  const { result } = await run(t, 'both-ways');
  assert.deepStrictEqual(result, { back: [{ m: 'reply', isSocket: true }, { m: 'reply', isSocket: true }], exitArgs: [0, null] });
});

scenario("a socket sent to a worker and emitted as its http.Server's 'connection': socket.server is that server", { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'into-http');
  assert.deepStrictEqual(workers, [{ worker: 'connection', serverIsOurs: true }]);
  assert.deepStrictEqual(result, { exitArgs: [0, null] });
});

scenario('an 800 kB message with a socket, to the worker and back: intact both ways, a net.Socket both ways', { timeout: 30000 }, async (t) => {
  const { result, workers } = await run(t, 'large');
  assert.deepStrictEqual(workers, [{ worker: 'received', intact: true, isSocket: true }]);
  assert.deepStrictEqual(result, { backIntact: true, backIsSocket: true, exitArgs: [0, null] });
});
