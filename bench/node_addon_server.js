// bench/node_server.js's HTTP handler, unchanged, behind libcluster through the Node addon
// (bindings/node: build it first with `cd bindings/node && npm install`, which links the
// release library and builds it if missing).
//
//   WORKERS=2 PORT=8000 node bench/node_addon_server.js
//
// Prints "listening" once every worker listens. The scheduling policy comes from
// NODE_CLUSTER_SCHED_POLICY (rr or none), as with node:cluster.
const cluster = require('../bindings/node');
const http = require('node:http');
if (cluster.isPrimary) {
  const n = +(process.env.WORKERS || 2);
  let ready = 0;
  cluster.on('listening', () => { if (++ready === n) console.log('listening'); });
  for (let i = 0; i < n; i++) cluster.fork();
} else {
  const body = `hello from worker ${process.pid}\n`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length, Connection: 'close' });
    res.end(body);
  });
  cluster.listen(server, { port: +process.env.PORT, host: '127.0.0.1' });
}
