// A real Node primary (node:cluster) running Python workers:
//   node primary.js /path/to/python /path/to/worker.py [WORKERS=2]
// Node spawns [execPath, ...execArgv, exec, ...args], so execPath is the interpreter and
// exec the script. Prints one JSON line per event; stdin commands: `kill`, `disconnect`
// (each worker), `quit`. A watchdog SIGKILLs the workers and exits 2 after 60 s.
'use strict';
const cluster = require('node:cluster');

const [python, script, n] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');

process.execPath = python;
cluster.setupPrimary({ exec: script, execArgv: [], args: [] });

const all = new Map();
cluster.on('fork', (w) => say({ event: 'fork', id: w.id, pid: w.process.pid }));
cluster.on('online', (w) => say({ event: 'online', id: w.id, pid: w.process.pid }));
cluster.on('listening', (w, a) =>
  say({ event: 'listening', id: w.id, pid: w.process.pid, address: a.address, port: a.port, addressType: a.addressType }));
cluster.on('message', (w, m) => say({ event: 'message', id: w.id, pid: w.process.pid, message: m }));
cluster.on('disconnect', (w) => say({ event: 'disconnect', id: w.id, pid: w.process.pid, ead: w.exitedAfterDisconnect }));
cluster.on('exit', (w, code, signal) => {
  say({ event: 'exit', id: w.id, pid: w.process.pid, code, signal, ead: w.exitedAfterDisconnect });
  all.delete(w.id);
  if (all.size === 0 && stopping) finish(0);
});

let stopping = false;
function finish(code) {
  say({ event: 'done' });
  process.stdout.write('', () => process.exit(code));
}

for (let i = 0; i < Number(n || 2); i++) {
  const w = cluster.fork({ PORT: '0' });
  all.set(w.id, w);
}

let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buf += chunk;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i).trim();
    buf = buf.slice(i + 1);
    say({ ack: line });
    if (line === 'kill' || line === 'disconnect') {
      stopping = true;
      if (all.size === 0) finish(0);
      for (const w of all.values()) line === 'kill' ? w.kill() : w.disconnect();
    } else if (line === 'send') {
      for (const w of all.values()) w.send({ from: 'node', n: 1 });
    } else if (line === 'quit') finish(0);
  }
});
process.stdin.on('end', () => {
  for (const w of all.values()) w.process.kill('SIGKILL');
  finish(0);
});

setTimeout(() => {
  for (const w of all.values()) { try { process.kill(w.process.pid, 'SIGKILL'); } catch (_) {} }
  say({ event: 'timeout' });
  process.exit(2);
}, 60000).unref();
