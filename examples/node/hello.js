// The Node twin of examples/hello.c: a clustered HTTP server on 127.0.0.1, supervised, with
// Node's cluster API from the libcluster addon (bindings/node; build it with `npm install`
// there) and libcluster's supervision on top.
//
//   PORT=8000 WORKERS=4 node examples/node/hello.js
//
// The primary keeps WORKERS workers (default: CPU count) with libcluster's supervision: a
// dead worker is replaced after a jittered exponential delay, a crash loop opens the
// breaker, a stuck worker is drained and replaced. It handles signals (opt-in:
// cluster.installSignalHandlers(), process.on listeners): HUP rolling restart (the program
// file now on disk), TTIN/TTOU one worker more/less, TERM graceful stop (within 25 s), INT
// fast stop, USR2 hot upgrade of the primary (node runs this script, as it is on disk now,
// as a new primary that takes over the port; this one drains and exits). Every worker serves "hello from worker <pid>\n" on 127.0.0.1:PORT (default
// 8000; 0 = random, shared by all workers), answering "Connection: close" once draining.
//
// The supervisor's defaults can be changed for tests: STUCK_MS, DRAIN_MS, KILL_MS,
// BOOT_TIMEOUT_MS, BREAKER_BURST, BREAKER_COOLDOWN_MS, BACKOFF_BASE_MS, MAX_CONNECTIONS.
// The primary prints one "stats {...}" JSON line after each exit, rollout end and at the
// end. The workers may as well be C, Rust or Python ones, and this worker runs under a C
// primary too (start it with bindings/node/bin/libcluster-node) or a Node one.
'use strict';
const http = require('node:http');
const os = require('node:os');

let cluster;
try {
  cluster = require('libcluster-node');
} catch (err) {
  if (err.code !== 'MODULE_NOT_FOUND') throw err;
  cluster = require('../../bindings/node'); // in this repository
}

function envInt(name, fallback) {
  const v = process.env[name];
  return v ? parseInt(v, 10) || 0 : fallback;
}

function printStats() {
  console.log(`stats ${JSON.stringify(cluster.stats())}`);
}

if (cluster.isPrimary) {
  console.log(`Primary ${process.pid} is running${cluster.isUpgrade ? ' (started by a hot upgrade)' : ''}`);
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} died (${signal ? `signal ${os.constants.signals[signal]}` : `code ${code}`})`);
    printStats();
  });
  cluster.on('listening', (worker, address) => {
    console.log(`worker ${worker.process.pid} listening on ${address.address || '*'}:${address.port}`);
  });
  cluster.on('ready', (worker) => console.log(`worker ${worker.process.pid} ready`));
  cluster.on('draining', (worker, { stage, reason }) => console.log(`worker ${worker.process.pid} draining: ${stage} (${reason})`));
  cluster.on('respawn', ({ delayMs, count }) => console.log(`respawn in ${delayMs} ms (${count} deaths in a row)`));
  cluster.on('breaker', ({ state, count }) => console.log(`breaker ${state} (${count} boot failures)`));
  cluster.on('rollout', ({ state, generation, replaced }) => {
    console.log(`rollout ${state} generation ${generation} (${replaced} replaced)`);
    if (state === 'done' || state === 'aborted') printStats();
  });
  cluster.on('stuck', (worker, { idleMs }) => console.log(`worker ${worker.process.pid} stuck (${idleMs} ms)`));
  cluster.on('recycle', (worker, { reason }) => console.log(`worker ${worker.process.pid} recycled (${reason})`));
  cluster.on('upgrade', ({ state, pid, error }) => console.log(`upgrade ${state}: primary ${process.pid} (other primary ${pid}, error ${error})`));
  cluster.on('control', ({ signal, action }) => console.log(`signal ${signal}: ${action}`));
  cluster.on('error', (err) => console.error(`worker ${err.workerId ?? '-'}: ${err.message}`));
  process.on('exit', () => {
    printStats();
    console.log('primary stopped');
  });

  cluster.installSignalHandlers();
  cluster.supervise({
    workers: envInt('WORKERS', os.availableParallelism()),
    stuckTimeout: envInt('STUCK_MS', undefined),
    drainTimeout: envInt('DRAIN_MS', undefined),
    killAfter: envInt('KILL_MS', undefined),
    bootTimeout: envInt('BOOT_TIMEOUT_MS', undefined),
    breakerBurst: envInt('BREAKER_BURST', undefined),
    breakerCooldown: envInt('BREAKER_COOLDOWN_MS', undefined),
    backoffBase: envInt('BACKOFF_BASE_MS', undefined),
    maxConnections: envInt('MAX_CONNECTIONS', undefined),
  });
} else {
  const server = http.createServer((req, res) => {
    const headers = { 'Content-Type': 'text/plain' };
    // Draining: this answer is the connection's last (the primary sends no new ones).
    if (cluster.worker.isDraining()) headers.Connection = 'close';
    res.writeHead(200, headers);
    res.end(`hello from worker ${process.pid}\n`);
  });
  server.on('error', (err) => {
    console.error(`worker ${process.pid}: ${err.message}`);
    process.exit(1);
  });
  // As with node:cluster: the primary binds the port once and hands out the connections.
  server.listen(envInt('PORT', 8000), '127.0.0.1', () => {
    console.log(`Worker ${process.pid} started`);
  });
}
