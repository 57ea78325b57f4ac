// The Node twin of examples/hello.c: a clustered HTTP server on 127.0.0.1, with Node's
// cluster API from the libcluster addon (bindings/node; build it with `npm install` there).
//
//   PORT=8000 WORKERS=4 node examples/node/hello.js
//
// The primary forks WORKERS workers (default: CPU count) and re-forks any that dies; every
// worker serves "hello from worker <pid>\n" on 127.0.0.1:PORT (default 8000; 0 = random,
// shared by all workers). The workers may as well be C, Rust or Python ones, and this
// worker runs under a C primary too (start it with bindings/node/bin/libcluster-node).
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

if (cluster.isPrimary) {
  const workers = envInt('WORKERS', os.availableParallelism());
  console.log(`Primary ${process.pid} is running`);
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} died (${signal ? `signal ${os.constants.signals[signal]}` : `code ${code}`})`);
    cluster.fork();
  });
  cluster.on('listening', (worker, address) => {
    console.log(`worker ${worker.process.pid} listening on ${address.address || '*'}:${address.port}`);
  });
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
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
