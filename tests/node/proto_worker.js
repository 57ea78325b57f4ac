// An unmodified-style Node cluster worker for the protocol interop tests: an http server
// (or, with UDP=1, a dgram socket) on 127.0.0.1:$PORT, echoing every message it gets.
// With LISTEN_TWICE=1 it listens twice on port 0 and reports both ports (Node's index rule).
const cluster = require('node:cluster');
const http = require('node:http');
const dgram = require('node:dgram');

if (process.env.UDP) {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send('node pong ' + process.pid, r.port, r.address));
  s.bind(+process.env.PORT, '127.0.0.1');
} else if (process.env.LISTEN_TWICE) {
  const a = http.createServer((q, r) => r.end('a ' + process.pid + '\n'));
  const b = http.createServer((q, r) => r.end('b ' + process.pid + '\n'));
  a.listen(0, '127.0.0.1', () => b.listen(0, '127.0.0.1', () =>
    process.send({ ports: [a.address().port, b.address().port] })));
} else {
  http.createServer((q, r) => r.end('node worker ' + process.pid + '\n'))
    .listen(+process.env.PORT || 0, '127.0.0.1');
}
process.on('message', m => process.send({ echo: m, worker: cluster.worker.id }));
