// The primary's worker objects: Worker (cluster.workers' entries, a cluster.Worker) and
// WorkerProcess, its worker.process (what Node's ChildProcess is to a Node primary's).
'use strict';
const EventEmitter = require('node:events');
const native = require('./native');
const E = require('./errors');
const { sendTo } = require('./common');
const BaseWorker = require('./worker_base');
const { cluster, syncWorkers } = require('./primary_state');

class WorkerProcess extends EventEmitter {
  constructor(worker, pid) {
    super();
    this.pid = pid;
    this.exitCode = null;
    this.signalCode = null;
    this.stdin = null;
    this.stdout = null;
    this.stderr = null;
    Object.defineProperty(this, 'worker', { value: worker });
  }

  get connected() {
    return this.worker.isConnected();
  }

  kill(signal = 'SIGTERM') {
    this.worker.kill(signal);
    return true;
  }

  send(...args) {
    return this.worker.send(...args);
  }

  // Node's ChildProcess.disconnect(): closes the channel itself, without the cluster's
  // disconnect protocol; the worker sees its primary gone and exits with code 0.
  disconnect() {
    const rc = native.closeChannel(this.worker.id);
    if (rc < 0) {
      const err = new Error('IPC channel is already disconnected');
      err.code = 'ERR_IPC_DISCONNECTED';
      process.nextTick(() => this.emit('error', err));
    }
  }
}

class Worker extends BaseWorker {
  constructor(id, pid) {
    super({ id, state: 'none' });
    this.process = new WorkerProcess(this, pid);
    this._disconnected = false;
  }

  // Node's worker.exitedAfterDisconnect: true once a disconnect was asked for (either
  // side), false after an exit that was not asked for, undefined before.
  get exitedAfterDisconnect() {
    const r = native.workerExitedAfterDisconnect(this.id);
    if (r === 1) return true;
    return this._exitedAfterDisconnect;
  }

  set exitedAfterDisconnect(v) {
    this._exitedAfterDisconnect = v;
  }

  send(...args) {
    // (A worker object for an id never forked here, `_workerForId`, knows no channel.)
    return sendTo(this.id, this._forked === true && !this._disconnected && this.state !== 'dead', this._advanced, ...args);
  }

  // v20: the signal at once, without disconnecting first.
  kill(signal = 'SIGTERM') {
    const signo = E.signalNumber(signal);
    const rc = native.kill(this.id, signo);
    if (rc < 0 && rc !== E.ESRCH /* already dead */) throw E.clusterError(rc, 'kill', native.lastError());
  }

  destroy(signal) {
    this.kill(signal);
  }

  disconnect() {
    const rc = native.disconnectWorker(this.id);
    if (rc < 0 && rc !== E.CLUSTER_E.CLUSTER_E_CLOSED && rc !== E.ESRCH) throw E.clusterError(rc, 'disconnect', native.lastError());
    if (rc === 0) this._exitedAfterDisconnect = true;
    syncWorkers();
    return this;
  }

  // Not Node's (libcluster's supervision): out of every server now (what was handed to it
  // and not yet taken goes to the others), told to disconnect, SIGTERM after the
  // supervisor's drainTimeout, SIGKILL killAfter later; a supervised primary replaces it.
  drain() {
    const rc = native.drainWorker(this.id);
    if (rc < 0) throw E.clusterError(rc, 'drain', native.lastError());
    syncWorkers();
    return this;
  }

  // Not Node's: this worker's figures (cluster.stats().per_worker's entry), or null once
  // forgotten.
  stats() {
    return cluster.stats().per_worker.find((s) => s.id === this.id) || null;
  }

  // Both follow the events delivered to JS, as Node's do (libcluster's own flags change
  // earlier, on its thread): dead once 'exit' was emitted, connected until 'disconnect'.
  isDead() {
    return this.state === 'dead';
  }

  isConnected() {
    return !this._disconnected && this.state !== 'dead';
  }
}

module.exports = { Worker, WorkerProcess };
