// A real Node primary (node:cluster) running non-Node workers: libcluster's C demo
// (target/examples/hello). Used by tests/interop.rs (node_primary_runs_c_workers).
//
//   node primary_runs_hello.js /abs/path/to/hello [WORKERS=3] [REQUESTS=3*WORKERS] [auto|stdin|disconnect]
//
// Prints one JSON line per event on stdout; the Rust test makes the assertions:
//   {"event":"fork","id":1,"pid":123}
//   {"event":"online","id":1,"pid":123}
//   {"event":"listening","id":1,"pid":123,"address":"127.0.0.1","port":4567,"addressType":4}
//   {"event":"message","id":1,"pid":123,"data":...}
//   {"event":"internal","id":1,"pid":123,"act":"close","key":"127.0.0.1:0:4:undefined:0"}
//   {"event":"response","n":0,"status":200,"body":"hello from worker 123\n"}
//   {"event":"request_error","n":0,"message":"..."}
//   {"event":"disconnect","id":1,"pid":123,"ead":false}
//   {"event":"exit","id":1,"pid":123,"code":null,"signal":"SIGTERM","ead":false}
//   {"event":"done"} and exit 0, or {"event":"timeout"} and exit 2
//
// Modes:
//   auto        once every worker is listening, make REQUESTS sequential HTTP GETs
//               (Connection: close), then worker.kill() each worker (v20: SIGTERM at once),
//               wait until each has both exited and disconnected, and exit 0.
//   disconnect  as auto, but worker.disconnect() instead of worker.kill().
//   stdin       wait for commands on stdin, each acknowledged with {"ack":"<line>"}:
//               `get N` (N requests, once all are listening), `kill` (as auto's end),
//               `quit` (exit now, leaving the workers to notice the closed channel).
// A watchdog SIGKILLs the workers and exits 2 after 30 s.
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const path = require('node:path');

if (!cluster.isPrimary) {
  // Only reachable if process.execPath was not honoured and node itself ran this script.
  console.log(JSON.stringify({ event: 'unexpected_node_worker', pid: process.pid }));
  process.exit(3);
}

const exe = process.argv[2];
const workers = Number(process.argv[3] || 3);
const requests = Number(process.argv[4] || 3 * workers);
const mode = process.argv[5] || 'auto';
if (!exe || !path.isAbsolute(exe)) {
  console.error('usage: node primary_runs_hello.js /abs/path/to/hello [WORKERS] [REQUESTS] [auto|stdin|disconnect]');
  process.exit(64);
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// The documented way to start a non-Node worker: the primary spawns
// process.execPath with [...execArgv, exec, ...args]; hello ignores the extra argv.
process.execPath = exe;
cluster.setupPrimary({ execArgv: [] });

const all = new Map(); // id -> worker
let port = null;
let listening = 0;
const exited = new Set(); // ids with an exit event
const gone = new Set(); // ids with a disconnect event
let killing = false;
let allListening;
const ready = new Promise((resolve) => (allListening = resolve));

// Done when every worker has both exited and disconnected (Node does not order the two).
function allGone() {
  return [...all.keys()].every((id) => exited.has(id) && gone.has(id));
}

function pidOf(w) {
  return w.process.pid;
}

let finished = false;
function finish(code) {
  if (finished) return;
  finished = true;
  say({ event: code === 0 ? 'done' : 'timeout' });
  // Exit after stdout drains (a pipe write may be asynchronous).
  process.stdout.write('', () => process.exit(code));
}

// `auto`/`stdin`: worker.kill() (v20: SIGTERM at once). `disconnect`: worker.disconnect()
// (graceful: the worker closes its servers and the channel, then exits by itself).
function killAll() {
  killing = true;
  if (allGone()) return finish(0);
  for (const w of all.values()) {
    if (w.isDead()) continue;
    if (mode === 'disconnect') w.disconnect();
    else w.kill();
  }
}

cluster.on('fork', (w) => say({ event: 'fork', id: w.id, pid: pidOf(w) }));
cluster.on('online', (w) => say({ event: 'online', id: w.id, pid: pidOf(w) }));
cluster.on('listening', (w, addr) => {
  say({ event: 'listening', id: w.id, pid: pidOf(w), address: addr.address, port: addr.port, addressType: addr.addressType });
  port = addr.port;
  listening += 1;
  if (listening === workers) {
    allListening();
    if (mode !== 'stdin') runRequests(requests).then(killAll);
  }
});
cluster.on('message', (w, data) => say({ event: 'message', id: w.id, pid: pidOf(w), data }));
cluster.on('disconnect', (w) => {
  say({ event: 'disconnect', id: w.id, pid: pidOf(w), ead: w.exitedAfterDisconnect });
  gone.add(w.id);
  if (killing && allGone()) finish(0);
});
cluster.on('exit', (w, code, signal) => {
  say({ event: 'exit', id: w.id, pid: pidOf(w), code, signal, ead: w.exitedAfterDisconnect });
  exited.add(w.id);
  if (killing && allGone()) finish(0);
  // Node does not always report a channel's end once the worker is gone (seen about once in
  // 30 runs: 'exit' and no 'disconnect'); say so instead of waiting for the watchdog.
  if (!gone.has(w.id)) {
    setTimeout(() => {
      if (gone.has(w.id)) return;
      say({ event: 'no_disconnect', id: w.id, pid: pidOf(w) });
      gone.add(w.id);
      if (killing && allGone()) finish(0);
    }, 2000);
  }
});

function get(n) {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: '/', agent: false, headers: { Connection: 'close' }, timeout: 10000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          say({ event: 'response', n, status: res.statusCode, body });
          resolve();
        });
        res.on('error', (e) => {
          say({ event: 'request_error', n, message: String(e && e.message) });
          resolve();
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', (e) => {
      say({ event: 'request_error', n, message: String(e && e.message) });
      resolve();
    });
  });
}

// Sequential, so the primary's round robin hands each connection to the next free worker.
async function runRequests(count) {
  for (let n = 0; n < count; n++) await get(n);
  say({ event: 'requests_done', count });
}

for (let i = 0; i < workers; i++) {
  const w = cluster.fork({ PORT: '0' });
  all.set(w.id, w);
  // The worker's server `close` and `exitedAfterDisconnect` cluster messages, which Node's
  // primary handles internally (the ChildProcess emits them as 'internalMessage').
  w.process.on('internalMessage', (m) => {
    if (m && m.cmd === 'NODE_CLUSTER' && (m.act === 'close' || m.act === 'exitedAfterDisconnect')) {
      say({ event: 'internal', id: w.id, pid: pidOf(w), act: m.act, key: m.key });
    }
  });
}

if (mode === 'stdin') {
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      const [cmd, arg] = line.split(/\s+/);
      say({ ack: line });
      if (cmd === 'get') ready.then(() => runRequests(Number(arg || 1)));
      else if (cmd === 'kill') killAll();
      else if (cmd === 'quit') finish(0);
    }
  });
  process.stdin.on('end', killAll);
}

// Watchdog: never outlive a broken test.
setTimeout(() => {
  for (const w of all.values()) {
    try {
      process.kill(pidOf(w), 'SIGKILL');
    } catch (_) {}
  }
  finish(2);
}, 30000).unref();
