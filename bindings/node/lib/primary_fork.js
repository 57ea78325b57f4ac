// cluster.fork() and cluster.disconnect(), and the table of worker objects the events find
// theirs in (a worker forked by other code in this process, such as supervision, is
// adopted on its first event).
'use strict';
const net = require('node:net');
const native = require('./native');
const E = require('./errors');
const { cluster, all, running, disconnects, supervision, updateRef, syncWorkers } = require('./primary_state');
const { envList, applySettings, inspectArgv } = require('./primary_settings');
const { Worker } = require('./primary_worker');

// worker.process.stdin/stdout/stderr and worker.process.stdio (null where not a pipe, and
// at the channel's entry, as in Node).
function pipesOf(worker, count) {
  const names = ['stdin', 'stdout', 'stderr'];
  const stdio = [];
  for (let n = 0; n < count; n++) {
    stdio.push(null);
    const fd = native.workerStdio(worker.id, n);
    if (fd < 0) continue;
    try {
      const stream = n < 3 ? new net.Socket({ fd, readable: n > 0, writable: n === 0 }) : new net.Socket({ fd, readable: true, writable: true });
      if (n < 3) worker.process[names[n]] = stream;
      stdio[n] = stream;
    } catch {
      native.closeFd(fd);
    }
  }
  worker.process.stdio = stdio;
}

// cluster.fork([env]): a worker, with cluster.settings and `env` over the primary's
// environment.
function fork(env) {
  const list = env === undefined || env === null ? null : envList(env, 'env');
  // As Node's fork: setupPrimary() each time (what cluster.settings holds now, which may
  // have been changed in place; 'setup' is emitted).
  cluster.setupPrimary();
  const inspect = inspectArgv(cluster.settings);
  if (inspect) applySettings({ ...cluster.settings, execArgv: inspect });
  const id = native.fork(list);
  if (id < 0) throw E.clusterError(id, 'fork', native.lastError());
  const pid = native.workerPid(id);
  const worker = new Worker(id, pid > 0 ? pid : undefined);
  worker._forked = true;
  worker._advanced = cluster.settings.serialization === 'advanced';
  all.set(id, worker);
  running.add(worker);
  cluster.workers[id] = worker;
  pipesOf(worker, Array.isArray(cluster.settings.stdio) ? Math.max(3, cluster.settings.stdio.length) : 3);
  updateRef();
  return worker;
}

// cluster.disconnect([callback]): every worker told to disconnect; `callback` runs after
// their 'disconnect' events, once cluster.workers is empty.
function disconnect(callback) {
  if (callback !== undefined) E.validateFunction(callback, 'callback');
  const n = native.disconnectAll();
  if (n < 0) throw E.clusterError(n, 'disconnect', native.lastError());
  const waiting = new Set([...all.values()].filter((w) => !w._disconnected && w.state !== 'dead'));
  disconnects.pending.push({ cb: callback || null, waiting, drained: false });
  syncWorkers();
  updateRef();
}

// The worker object an event is about (adopted if need be; none for id 0).
function workerFor(ev) {
  let w = all.get(ev.id);
  if (!w && ev.id > 0) {
    // Forked by some other code in this process (supervision, say): adopt it.
    w = new Worker(ev.id, ev.pid);
    w._forked = true;
    if (supervision.used) {
      // Supervision forked it with the settings cluster.fork() uses: the same channel
      // encoding and stdio pipes.
      w._advanced = cluster.settings.serialization === 'advanced';
      pipesOf(w, Array.isArray(cluster.settings.stdio) ? Math.max(3, cluster.settings.stdio.length) : 3);
    }
    all.set(ev.id, w);
    running.add(w);
    cluster.workers[ev.id] = w;
  }
  return w;
}

// Out of the table once both exited and disconnected.
function forget(w) {
  if (w.state === 'dead' && w._disconnected) all.delete(w.id);
}

// Runs the cluster.disconnect() callbacks now due (`gone`: a worker whose 'disconnect' or
// 'exit' was just emitted).
function settleDisconnects(gone) {
  const ready = [];
  disconnects.pending = disconnects.pending.filter((p) => {
    if (gone) p.waiting.delete(gone);
    if (!p.drained || p.waiting.size > 0) return true;
    ready.push(p);
    return false;
  });
  for (const p of ready) if (p.cb) p.cb();
}

module.exports = { fork, disconnect, workerFor, forget, settleDisconnects };
