// A worker: cluster.worker (id, send, disconnect, 'message', 'disconnect'), process.send()
// and process.on('message') as in a Node worker; server.listen() (any net.Server: net,
// http, https, tls, ...) goes through the cluster as in a Node worker (cluster.listen() is
// the same, kept as an alias).
'use strict';
const EventEmitter = require('node:events');
const native = require('./native');
const E = require('./errors');
const { KIND, createCluster, startEvents, sendTo } = require('./common');
const { servers, interceptListen } = require('./listen');
const { wrapFd } = require('./handles');

const cluster = createCluster(true);
interceptListen();

class Worker extends EventEmitter {
  constructor(id) {
    super();
    this.id = id;
    this.process = process;
    this.state = 'online';
    this.exitedAfterDisconnect = undefined;
    this._disconnecting = false;
    this._disconnectRequested = false;
    this._disconnected = false;
  }

  send(...args) {
    return sendTo(0, !this._disconnected, ...args);
  }

  // As process.connected in a Node worker: true until this process disconnects or the
  // 'disconnect' event is delivered (libcluster's own flag changes earlier, on its thread).
  isConnected() {
    return !this._disconnected && !this._disconnectRequested;
  }

  isDead() {
    return false;
  }

  // Node's worker-side disconnect: close every server (waiting for their connections to
  // end), tell the primary this exit is voluntary, then close the channel; a 'disconnect'
  // event follows.
  disconnect() {
    if (this._disconnecting || !this.isConnected()) return this;
    this._disconnecting = true;
    this.exitedAfterDisconnect = true;
    const list = [...servers];
    let waiting = list.length + 1;
    const done = () => {
      if (--waiting > 0) return;
      this._disconnectRequested = true;
      native.workerDisconnect((rc, message) => {
        if (rc < 0 && rc !== E.CLUSTER_E.CLUSTER_E_CLOSED) {
          const err = E.clusterError(rc, 'disconnect', message);
          if (this.listenerCount('error') > 0) this.emit('error', err);
          else process.emitWarning(err.message, { code: err.code, type: 'LibclusterWarning' });
        }
      });
    };
    for (const server of list) server.close(() => done());
    done();
    return this;
  }

  kill() {
    if (!this.isConnected()) process.exit(0);
    this.once('disconnect', () => process.exit(0));
    this.disconnect();
  }

  destroy() {
    this.kill();
  }
}

const worker = new Worker(native.workerId());
cluster.worker = worker;

// What Node gives a forked child: process.send, process.disconnect, process.connected and
// process 'message'/'disconnect' events (Node did not set them up: the channel is ours).
const ownProcessIpc = typeof process.send !== 'function';
if (ownProcessIpc) {
  process.send = (...args) => worker.send(...args);
  process.disconnect = () => {
    worker.disconnect();
  };
  Object.defineProperty(process, 'connected', {
    configurable: true,
    enumerable: true,
    get: () => worker.isConnected(),
  });
}

function onEvent(ev) {
  switch (ev.kind) {
    case KIND.MESSAGE: {
      let message;
      try {
        message = JSON.parse(ev.data);
      } catch {
        message = ev.data;
      }
      const handle = wrapFd(ev.fd);
      worker.emit('message', message, handle);
      if (ownProcessIpc) process.emit('message', message, handle);
      break;
    }
    case KIND.DISCONNECT:
      // The channel is closed: no more events. Servers were closed by libcluster (their
      // polls saw it); the process exits once nothing else keeps it alive, as Node's do.
      native.eventsStop();
      worker._disconnected = true;
      worker.state = 'disconnected';
      worker.exitedAfterDisconnect = ev.exitedAfterDisconnect || worker.exitedAfterDisconnect === true;
      worker.emit('disconnect');
      if (ownProcessIpc) process.emit('disconnect');
      break;
    case KIND.ERROR: {
      const err = E.clusterError(ev.error, 'cluster', ev.data);
      if (worker.listenerCount('error') > 0) worker.emit('error', err);
      else process.emitWarning(err.message, { code: err.code, type: 'LibclusterWarning' });
      break;
    }
    default:
      break;
  }
}

// A Node worker stays alive while its channel is open (the channel is ref'd), so ours does.
startEvents(onEvent);
native.eventsRef(true);

module.exports = cluster;
