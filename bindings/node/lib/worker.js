// A worker: cluster.worker (id, send, disconnect, 'message', 'disconnect'), process.send()
// and process.on('message') as in a Node worker; server.listen() (any net.Server: net,
// http, https, tls, ...) goes through the cluster as in a Node worker (cluster.listen() is
// the same, kept as an alias).
'use strict';
const native = require('./native');
const E = require('./errors');
const { KIND, createCluster, startEvents, sendTo, decode, SERIALIZATION_ENV } = require('./common');

// The primary's `serialization` setting, as Node's children learn it from their environment.
const advanced = process.env[SERIALIZATION_ENV] === 'advanced';
delete process.env[SERIALIZATION_ENV];
const { servers, interceptListen } = require('./listen');
const { wrapFd } = require('./handles');
const dgram = require('./dgram');
const BaseWorker = require('./worker_base');

const cluster = createCluster(true);
cluster.Worker = BaseWorker;
interceptListen();
dgram.interceptBind();

// Closes this worker's clustered servers and sockets; `done` once all have closed (a
// server's connections ended, as server.close() waits for them).
function closeHandles(done) {
  const list = [...servers];
  let waiting = list.length + 1;
  const one = () => {
    if (--waiting === 0) done();
  };
  for (const server of list) server.close(() => one());
  waiting++;
  dgram.closeAll(one);
  one();
}

class Worker extends BaseWorker {
  constructor(id) {
    super({ id, state: 'online', process });
    this._disconnecting = false;
    this._disconnectRequested = false;
    this._disconnected = false;
  }

  send(...args) {
    return sendTo(0, !this._disconnected, advanced, ...args);
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
    this._disconnect();
    return this;
  }

  // Closes the servers (waiting for their connections to end), then the channel.
  _disconnect() {
    this._disconnecting = true;
    this.exitedAfterDisconnect = true;
    closeHandles(() => {
      this._disconnectRequested = true;
      native.workerDisconnect((rc, message) => {
        if (rc < 0 && rc !== E.CLUSTER_E.CLUSTER_E_CLOSED) {
          const err = E.clusterError(rc, 'disconnect', message);
          if (this.listenerCount('error') > 0) this.emit('error', err);
          else process.emitWarning(err.message, { code: err.code, type: 'LibclusterWarning' });
        }
      });
    });
  }

  // Not Node's (libcluster's supervision): tells a supervising primary whose readyOn is
  // 'explicit' that this worker can serve (pm2's wait_ready); other primaries, Node's
  // included, ignore it. true once sent; false when the channel is closing (dropped, as a
  // send would be). Throws once 'disconnect' was emitted.
  ready() {
    const rc = native.workerReady();
    if (rc === E.CLUSTER_E.CLUSTER_E_CLOSED && !this._disconnected) return false;
    if (rc < 0) throw E.clusterError(rc, 'ready', native.lastError());
    return true;
  }

  // Not Node's: true once this worker drains (its primary asked it to disconnect, it
  // disconnected itself, or the channel is gone): answer with `Connection: close` and
  // finish. libcluster's flag, set on its own thread before any JS event.
  get draining() {
    return native.workerDraining() === 1;
  }

  isDraining() {
    return this.draining;
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

// As Node's worker side, cluster.Worker.prototype itself has disconnect() and destroy().
BaseWorker.prototype.disconnect = Worker.prototype.disconnect;
BaseWorker.prototype.destroy = Worker.prototype.destroy;

const worker = new Worker(native.workerId());
cluster.worker = worker;

// What Node gives a forked child: process.send, process.disconnect, process.connected and
// process 'message'/'disconnect' events (Node did not set them up: the channel is ours).
const ownProcessIpc = typeof process.send !== 'function';
if (ownProcessIpc) {
  process.send = (...args) => worker.send(...args);
  // Node's process.disconnect(): the bare channel closes (no cluster protocol; the primary
  // sees exitedAfterDisconnect false) and, on 'disconnect', the worker exits 0.
  process.disconnect = () => {
    const rc = native.closeChannel(0);
    if (rc < 0) {
      const err = new Error('IPC channel is already disconnected');
      err.code = 'ERR_IPC_DISCONNECTED';
      process.nextTick(() => process.emit('error', err));
    } else {
      // As Node's: 'disconnect' on the next tick, before any further I/O callback.
      worker._disconnectRequested = true;
      native.eventsStop();
      process.nextTick(emitDisconnect);
    }
  };
  Object.defineProperty(process, 'connected', {
    configurable: true,
    enumerable: true,
    get: () => worker.isConnected(),
  });
  // process.channel: ref()/unref() decide whether the open channel keeps the process alive.
  process.channel = {
    ref() {
      native.eventsRef(true);
    },
    unref() {
      native.eventsRef(false);
    },
  };
}

// The channel is closed: 'disconnect', once. Node's order: its own process 'disconnect'
// listener (registered first) emits the worker's 'disconnect' and ends a worker that did
// not ask for it (a bare channel close), before the program's process listeners.
function emitDisconnect() {
  if (worker._disconnected) return;
  worker._disconnected = true;
  worker.state = 'disconnected';
  if (ownProcessIpc) process.channel = undefined;
  worker.emit('disconnect');
  if (!worker.exitedAfterDisconnect) process.exit(0);
  if (ownProcessIpc) process.emit('disconnect');
}

function onEvent(ev) {
  switch (ev.kind) {
    case KIND.MESSAGE: {
      const message = decode(ev.data, advanced);
      const handle = wrapFd(ev.fd);
      // worker 'message' follows process 'message' (cluster.Worker listens to its process).
      if (ownProcessIpc) process.emit('message', message, handle);
      else worker.emit('message', message, handle);
      break;
    }
    case KIND.DISCONNECT_REQUESTED:
      // The primary asked (Node's worker._disconnect(true)): close the servers, wait for
      // their connections to end, then close the channel; 'disconnect' follows.
      if (!worker._disconnecting) worker._disconnect();
      break;
    case KIND.DISCONNECT: {
      // The channel is closed: no more events. libcluster closed the servers (their polls
      // saw it); as in a Node worker, 'disconnect' is emitted once they have closed, that
      // is once their open connections have ended, and then the process exits once
      // nothing else keeps it alive.
      native.eventsStop();
      if (ev.exitedAfterDisconnect) worker.exitedAfterDisconnect = true;
      worker._disconnectRequested = true;
      if (worker.exitedAfterDisconnect) closeHandles(emitDisconnect);
      else emitDisconnect();
      break;
    }
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
native.keepChannel(true);
native.eventsRef(true);

module.exports = cluster;
