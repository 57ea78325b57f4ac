// Node 20's cluster with the same HTTP response as the libcluster demo. The scheduling
// policy comes from NODE_CLUSTER_SCHED_POLICY (rr or none), as Node reads it.
const cluster = require('node:cluster');
const http = require('node:http');
if (cluster.isPrimary) {
  const n = +(process.env.WORKERS || 2);
  let ready = 0;
  cluster.on('listening', () => { if (++ready === n) console.log('listening'); });
  for (let i = 0; i < n; i++) cluster.fork();
} else {
  const body = `hello from worker ${process.pid}\n`;
  http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length, Connection: 'close' });
    res.end(body);
  }).listen(+process.env.PORT, '127.0.0.1');
}
