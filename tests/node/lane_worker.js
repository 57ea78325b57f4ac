// An unmodified-style Node cluster worker for tests/fast_lane.rs, run by libcluster's
// primary (`setup node lane_worker.js`, `fork PORT=0`): an http server on 127.0.0.1:$PORT
// answering `node worker <pid>\n`, that also prints every internal (cluster) message it
// receives from the primary, as Node parsed it, one JSON line each on stdout:
//   {"node_internal":{...},"handle":false,"node_pid":123}
// (for a NODE_HANDLE envelope Node reports the inner message with its handle).
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');

if (!cluster.isWorker) {
  console.error('lane_worker.js is a cluster worker; run it through a cluster primary');
  process.exit(64);
}
process.on('internalMessage', (m, handle) => {
  process.stdout.write(JSON.stringify({ node_internal: m, handle: handle != null, node_pid: process.pid }) + '\n');
});
http.createServer((req, res) => res.end(`node worker ${process.pid}\n`)).listen(Number(process.env.PORT || 0), '127.0.0.1');
