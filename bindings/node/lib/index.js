// require('libcluster-node'): node:cluster's API, implemented over libcluster.
//
//   const cluster = require('libcluster-node');
//   if (cluster.isPrimary) { cluster.fork(); cluster.on('exit', ...); }
//   else http.createServer(handler).listen(8000, '127.0.0.1');
//
// The primary and the workers speak Node v20's IPC protocol through libcluster, so either
// side may be Node, C, Rust or Python. In a worker, server.listen() goes through the
// cluster as in Node (lib/listen.js); cluster.listen(server, options) is an alias.
//
// If Node itself took this worker's channel (a primary ran `node script.js` directly instead
// of through bin/libcluster-node), this module is node:cluster plus the alias `listen`, which
// calls server.listen(): Node's own cluster worker code serves the same protocol.
'use strict';
const path = require('node:path');
const { isMainThread } = require('node:worker_threads');

const launcher = path.join(__dirname, '..', 'bin', 'libcluster-node');

function nodeOwnsChannel() {
  if (process.env.LIBCLUSTER_NODE_UNIQUE_ID !== undefined) return false;
  return require('node:cluster').isWorker;
}

if (!isMainThread) {
  const err = new Error('libcluster can only be used from the main thread (cluster is per process)');
  err.code = 'ERR_LIBCLUSTER_MAIN_THREAD';
  throw err;
}

if (nodeOwnsChannel()) {
  const nodeCluster = require('node:cluster');
  // The worker half of libcluster's supervision, for code that runs under either primary:
  // a Node primary has no readiness to tell, and this worker drains once it was asked to
  // disconnect (or its channel is gone).
  const proto = nodeCluster.Worker.prototype;
  const extra = {
    ready() {
      return false;
    },
    isDraining() {
      return this.exitedAfterDisconnect === true || !this.isConnected();
    },
  };
  for (const [name, value] of Object.entries(extra)) {
    if (!(name in proto)) Object.defineProperty(proto, name, { value, configurable: true, writable: true });
  }
  if (!('draining' in proto)) {
    Object.defineProperty(proto, 'draining', {
      configurable: true,
      get() {
        return this.isDraining();
      },
    });
  }
  const listen = (server, options, callback) => server.listen(options, callback);
  module.exports = new Proxy(nodeCluster, {
    get(target, key, receiver) {
      if (key === 'listen') return listen;
      if (key === 'workerLauncher') return launcher;
      return Reflect.get(target, key, receiver);
    },
  });
} else {
  const native = require('./native');
  const cluster = native.isWorker() ? require('./worker') : require('./primary');
  cluster.workerLauncher = launcher;
  module.exports = cluster;
}
