// The primary's event dispatch: each event from libcluster's queue becomes Node's
// lifecycle events ('fork', 'online', 'listening', 'message', 'disconnect', 'exit',
// 'error') on the worker, its process and the cluster; supervision's go to
// lib/primary_supervision.js.
'use strict';
const native = require('./native');
const E = require('./errors');
const { KIND, decode } = require('./common');
const { wrapFd } = require('./handles');
const { cluster, running, disconnects, supervision, syncWorkers } = require('./primary_state');
const { workerFor, forget, settleDisconnects } = require('./primary_fork');
const { SUPERVISION_KINDS, onSupervision } = require('./primary_supervision');

const C = native.constants;

function addressType(t) {
  if (t === C.ADDRESS_UDP4) return 'udp4';
  if (t === C.ADDRESS_UDP6) return 'udp6';
  return t;
}

function onEvent(ev) {
  if (ev.kind === KIND.DRAINED) {
    for (const p of disconnects.pending) p.drained = true;
    settleDisconnects();
    return;
  }
  if (SUPERVISION_KINDS.has(ev.kind)) {
    syncWorkers();
    onSupervision(ev);
    return;
  }
  syncWorkers();
  const w = workerFor(ev);
  if (!w && ev.kind !== KIND.ERROR) return;
  switch (ev.kind) {
    case KIND.FORK:
      cluster.emit('fork', w);
      break;
    case KIND.ONLINE:
      w.state = 'online';
      w.emit('online');
      cluster.emit('online', w);
      break;
    case KIND.LISTENING: {
      w.state = 'listening';
      const address = { addressType: addressType(ev.addressType), address: ev.address, port: ev.port, fd: ev.fd >= 0 ? ev.fd : undefined };
      w.emit('listening', address);
      cluster.emit('listening', w, address);
      break;
    }
    case KIND.MESSAGE: {
      const message = decode(ev.data, w._advanced);
      const handle = wrapFd(ev.fd);
      // Node's order: the worker's listener on its process comes first and emits the
      // worker's 'message', whose first listener (added by fork) emits the cluster's.
      cluster.emit('message', w, message, handle);
      w.emit('message', message, handle);
      w.process.emit('message', message, handle);
      break;
    }
    case KIND.DISCONNECT:
      w._disconnected = true;
      w._exitedAfterDisconnect = ev.exitedAfterDisconnect;
      if (w.state !== 'dead') w.state = 'disconnected';
      forget(w);
      w.emit('disconnect');
      cluster.emit('disconnect', w);
      settleDisconnects(w);
      w.process.emit('disconnect');
      break;
    case KIND.EXIT: {
      w._exitedAfterDisconnect = ev.exitedAfterDisconnect;
      w.state = 'dead';
      running.delete(w);
      forget(w);
      const code = ev.signal ? null : ev.exitCode;
      const signal = E.signalName(ev.signal);
      w.process.exitCode = code;
      w.process.signalCode = signal;
      settleDisconnects(w);
      w.emit('exit', code, signal);
      cluster.emit('exit', w, code, signal);
      w.process.emit('exit', code, signal);
      break;
    }
    case KIND.ERROR: {
      // An aborted upgrade's reason comes just before its 'upgrade' event.
      if (!w && typeof ev.data === 'string' && ev.data.startsWith('upgrade aborted: ')) supervision.upgradeReason = ev.data;
      const err = E.clusterError(ev.error, 'cluster', ev.data);
      if (w) err.workerId = w.id;
      if (w && w.listenerCount('error') > 0) w.emit('error', err);
      else if (cluster.listenerCount('error') > 0) cluster.emit('error', err);
      else process.emitWarning(err.message, { code: err.code, type: 'LibclusterWarning' });
      break;
    }
    default:
      break;
  }
}

module.exports = { onEvent };
