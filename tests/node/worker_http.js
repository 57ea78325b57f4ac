// An unmodified-style Node cluster worker, run by libcluster's primary (tests/interop.rs):
// `setup node /abs/path/worker_http.js`, then `fork PORT=0`.
//
// - Serves `node worker <pid>\n` over HTTP on 127.0.0.1:$PORT (0: the port shared by all
//   workers, as Node's primary assigns it).
// - After listening, sends the user message {ready: <pid>} to the primary.
// - Echoes every user message back as {echo: <message>}.
// - NODE_WORKER_DISCONNECT=1: after listening, calls cluster.worker.disconnect() (the
//   voluntary path: close{key}, exitedAfterDisconnect, wait for the primary's ack, EOF).
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');

if (cluster.isWorker) {
  const server = http.createServer((req, res) => res.end(`node worker ${process.pid}\n`));
  server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
    process.send({ ready: process.pid });
    if (process.env.NODE_WORKER_DISCONNECT === '1') {
      // Deferred so the `listening` cluster message goes out first (it is sent after the
      // user's listen callback, and only if the server is still open).
      setImmediate(() => cluster.worker.disconnect());
    }
  });
  process.on('message', (m) => process.send({ echo: m }));
} else {
  console.error('worker_http.js is a cluster worker; run it through a cluster primary');
  process.exit(64);
}
