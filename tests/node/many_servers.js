// An unmodified-style Node cluster worker that asks its primary for $COUNT servers
// (net.Server.listen(0, '127.0.0.1') each: a new listen index, so a new server every time),
// one after another, and reports {servers: ok, error: code-of-the-first-failure, port}. Each
// server answers a connection with "many <pid>\n". Used by tests/server_cap.rs.
'use strict';
const net = require('node:net');

const count = Number(process.env.COUNT || 1);
let ok = 0;
let port = 0;
function next() {
  if (ok === count) return process.send({ servers: ok, error: null, port });
  const server = net.createServer((sock) => sock.end(`many ${process.pid}\n`));
  server.once('error', (err) => process.send({ servers: ok, error: err.code, port }));
  server.listen(0, '127.0.0.1', () => {
    if (ok === 0) port = server.address().port;
    ok += 1;
    next();
  });
}
next();
