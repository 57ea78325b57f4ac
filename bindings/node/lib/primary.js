// The primary: node:cluster's primary API over libcluster, assembled here from one file
// per concept:
//   primary_state.js        the cluster object and the state the others share
//   primary_worker.js       Worker and its worker.process (WorkerProcess)
//   primary_settings.js     setupPrimary(), settings checks, what libcluster spawns
//   primary_fork.js         fork(), disconnect(), the table of worker objects
//   primary_supervision.js  supervise(), rollingRestart(), upgrade(), scale(), ... and their events
//   primary_signals.js      handleSignal(), signalMap(), install/restoreSignalHandlers()
//   primary_events.js       libcluster's events as Node's lifecycle events
// Each requires primary_state.js and only files listed above it, so no require cycle can
// hand one a partly filled exports object.
'use strict';
const native = require('./native');
const { startEvents } = require('./common');
const BaseWorker = require('./worker_base');
const { cluster, updateRef } = require('./primary_state');
const { Worker } = require('./primary_worker');
const { setupPrimary } = require('./primary_settings');
const { fork, disconnect } = require('./primary_fork');
const supervision = require('./primary_supervision');
const signals = require('./primary_signals');
const { onEvent } = require('./primary_events');

cluster.setupPrimary = setupPrimary;
cluster.setupMaster = cluster.setupPrimary;
cluster.fork = fork;
cluster.disconnect = disconnect;

cluster.Worker = BaseWorker;
// As Node's primary, cluster.Worker.prototype itself has disconnect() and destroy().
BaseWorker.prototype.disconnect = Worker.prototype.disconnect;
BaseWorker.prototype.destroy = function destroy(signal) {
  this.process.kill(signal || 'SIGTERM');
};
// Not Node's: a worker object for libcluster worker `id` (forked elsewhere, or none: its
// operations then fail with ESRCH). Non-enumerable; the tests use it.
Object.defineProperty(cluster, '_workerForId', { value: (id) => new Worker(id) });

// Supervision: libcluster's, beyond Node (lib/primary_supervision.js, lib/primary_signals.js).
cluster.supervise = supervision.supervise;
cluster.rollingRestart = supervision.rollingRestart;
cluster.upgrade = supervision.upgrade;
// cluster.isUpgrade: true in a primary a hot upgrade started (the new one).
cluster.isUpgrade = native.isUpgrade() === 1;
cluster.scale = supervision.scale;
cluster.drain = supervision.drain;
cluster.resetBreaker = supervision.resetBreaker;
cluster.control = supervision.control;
cluster.stats = supervision.stats;
cluster.handleSignal = signals.handleSignal;
cluster.signalMap = signals.signalMap;
cluster.installSignalHandlers = signals.installSignalHandlers;
cluster.restoreSignalHandlers = signals.restoreSignalHandlers;

startEvents(onEvent, updateRef);

module.exports = cluster;
