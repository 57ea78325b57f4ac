// A Node primary for the protocol interop tests. argv: <worker binary> <n> [env JSON].
// Runs libcluster workers (process.execPath = the binary), prints every cluster event as a
// JSON line, and obeys stdin commands: send <id> <json> | disconnect <id> | kill <id> | quit.
const cluster = require('node:cluster');
const readline = require('node:readline');
process.execPath = process.argv[2];
cluster.setupPrimary({ exec: __filename, args: [] });
const out = o => console.log(JSON.stringify(o));
cluster.on('fork', w => out({ event: 'fork', id: w.id, pid: w.process.pid }));
cluster.on('online', w => out({ event: 'online', id: w.id }));
cluster.on('listening', (w, a) => out({ event: 'listening', id: w.id, ...a }));
cluster.on('message', (w, m) => out({ event: 'message', id: w.id, data: m }));
cluster.on('disconnect', w => out({ event: 'disconnect', id: w.id, ead: w.exitedAfterDisconnect }));
cluster.on('exit', (w, code, signal) => out({ event: 'exit', id: w.id, code, signal, ead: w.exitedAfterDisconnect }));
const env = JSON.parse(process.argv[4] || '{}');
for (let i = 0; i < +process.argv[3]; i++) cluster.fork(env);
readline.createInterface({ input: process.stdin }).on('line', line => {
  const [cmd, id, ...rest] = line.split(' ');
  const w = cluster.workers[id];
  if (cmd === 'quit') process.exit(0);
  if (!w) return out({ error: 'no worker ' + id });
  if (cmd === 'send') w.send(JSON.parse(rest.join(' ')));
  if (cmd === 'disconnect') w.disconnect();
  if (cmd === 'kill') w.kill(rest[0] || 'SIGTERM');
  out({ done: cmd, id: +id });
});
