// A real Node primary (node:cluster, round-robin) running libcluster workers (the fixture),
// for tests/fast_lane.rs. argv: <worker binary> <n> [env JSON].
// Prints every cluster event as a JSON line, and every internal message a worker sends
// (`queryServer` carries libcluster's `libclusterLane`, which Node ignores):
//   {"event":"internal","id":1,"msg":{...the message as Node parsed it...}}
// stdin: `quit` exits. A watchdog kills the workers and exits 2 after 30 s.
'use strict';
const cluster = require('node:cluster');
const readline = require('node:readline');
process.execPath = process.argv[2];
cluster.setupPrimary({ exec: __filename, args: [] });
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
cluster.on('fork', (w) => out({ event: 'fork', id: w.id, pid: w.process.pid }));
cluster.on('online', (w) => out({ event: 'online', id: w.id }));
cluster.on('listening', (w, a) => out({ event: 'listening', id: w.id, ...a }));
cluster.on('exit', (w, code, signal) => out({ event: 'exit', id: w.id, code, signal }));
const env = JSON.parse(process.argv[4] || '{}');
for (let i = 0; i < +process.argv[3]; i++) {
  const w = cluster.fork(env);
  w.process.on('internalMessage', (msg, handle) => out({ event: 'internal', id: w.id, msg, handle: handle != null }));
}
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'quit') process.exit(0);
});
setTimeout(() => {
  for (const w of Object.values(cluster.workers)) {
    try {
      process.kill(w.process.pid, 'SIGKILL');
    } catch (_) {}
  }
  process.exit(2);
}, 30000).unref();
