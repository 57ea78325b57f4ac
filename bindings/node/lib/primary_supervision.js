// Supervision: libcluster's, beyond Node (include/cluster.h, "Supervision"): the calls
// (cluster.supervise(), rollingRestart(), upgrade(), scale(), drain(), resetBreaker(),
// control(), stats()) and what JS does on supervision's events. Nothing here runs unless
// called: without it the primary behaves as Node's. The names and the option checks are in
// lib/supervision.js, the signal calls in lib/primary_signals.js.
'use strict';
const native = require('./native');
const E = require('./errors');
const { KIND } = require('./common');
const S = require('./supervision');
const { cluster, all, supervision, updateRef, syncWorkers } = require('./primary_state');
const { Worker } = require('./primary_worker');

const C = native.constants;

// `rc`, or (negative) the error it is, thrown.
function check(rc, syscall, detail) {
  if (rc < 0) throw E.clusterError(rc, syscall, detail === undefined ? native.lastError() : detail);
  return rc;
}

// The workers supervision keeps now (scale() and TTIN/TTOU change it).
function currentTarget() {
  return supervision.used ? cluster.stats().target : 0;
}

// cluster.supervise(options): keep `workers` workers (forked at once, each dead one
// replaced after a jittered backoff), with the crash-loop breaker, readiness, drains,
// stuck detection and recycling as the options say (times in ms; see lib/supervision.js
// and the README). Each call changes what it names and keeps the rest. Returns cluster.
function supervise(options = {}) {
  E.validateObject(options, 'options');
  const merged = { ...supervision.options, ...options };
  if (merged.workers === undefined) merged.workers = currentTarget();
  const fields = S.supervisorFields(merged);
  // Supervision forks with the settings cluster.fork() would use.
  cluster.setupPrimary();
  check(native.supervise(fields), 'supervise');
  supervision.options = merged;
  supervision.target = merged.workers;
  supervision.used = true;
  updateRef();
  return cluster;
}

// cluster.rollingRestart({ maxSurge }): every serving worker replaced by a new one (the
// program as it is on disk now, with cluster.settings as they are now), maxSurge at a
// time; an old worker drains once a new one is ready. A promise of { generation, replaced }
// once every old worker is replaced ('rollout' 'done'), rejected with
// ERR_LIBCLUSTER_ROLLOUT_ABORTED when a new worker fails to become ready (the old ones not
// yet replaced keep serving) or a stop aborts it, or with CLUSTER_E_BUSY /
// CLUSTER_E_BREAKER_OPEN when it cannot start.
function rollingRestart(options) {
  return new Promise((resolve, reject) => {
    let surge = 0;
    if (options !== undefined && options !== null) {
      E.validateObject(options, 'options');
      if (options.maxSurge !== undefined) {
        E.validateInt(options.maxSurge, 'options.maxSurge', 1, 4096);
        surge = options.maxSurge;
      }
    }
    cluster.setupPrimary();
    const generation = check(native.rollingRestart(surge), 'rollingRestart');
    supervision.used = true;
    supervision.rollouts.set(generation, { resolve, reject });
  });
}

// cluster.upgrade({ readyTimeout }): a hot upgrade of this primary (docs/upgrade.md). The
// program is started again as a new primary (this Node binary with the same arguments:
// the script as it is on disk now) and given the listening sockets; once its workers are
// ready it serves, and this primary stops accepting, drains its workers and, once they are
// gone, lets its event loop end. A promise of { pid } (the new primary's) at that handover
// ('upgrade' 'ready'), rejected with ERR_LIBCLUSTER_UPGRADE_ABORTED (errno: why; pid) when
// the new primary exits or is not ready within readyTimeout ms (default 60000), which is
// then killed while this one carries on, or with CLUSTER_E_BUSY (an upgrade, a rolling
// restart or a stop under way) or the spawn's error when it cannot start.
function upgrade(options) {
  return new Promise((resolve, reject) => {
    let timeout = 0; // the library's default
    if (options !== undefined && options !== null) {
      E.validateObject(options, 'options');
      if (options.readyTimeout !== undefined) {
        E.validateInt(options.readyTimeout, 'options.readyTimeout', 1, 0x7fffffff);
        timeout = options.readyTimeout;
      }
    }
    const pid = check(native.upgrade(timeout), 'upgrade');
    supervision.upgrade = { pid, resolve, reject };
  });
}

// cluster.scale(n): keep n workers (1..4096): more are forked at once, the extra ones drain.
function scale(workers) {
  E.validateInt(workers, 'workers', 1, 4096);
  if (!supervision.used) cluster.setupPrimary();
  check(native.scale(workers), 'scale');
  supervision.used = true;
  supervision.target = workers;
  supervision.options.workers = workers;
  updateRef();
  return cluster;
}

// cluster.drain(id): worker.drain() by id.
function drain(id) {
  E.validateInt(id, 'id', 1, 0x7fffffff);
  check(native.drainWorker(id), 'drain');
  syncWorkers();
}

function resetBreaker() {
  check(native.breakerReset(), 'resetBreaker');
}

function actionValue(action, name) {
  const v = S.ACTION.value(action);
  if (v === undefined) {
    throw E.rangeError('ERR_INVALID_ARG_VALUE', `${name} must be one of ${S.ACTION.names.map((n) => `'${n}'`).join(', ')}. Received ${JSON.stringify(action)}`);
  }
  return v;
}

// cluster.control(action): what a signal mapped to `action` does, now ('reload',
// 'scale_up', 'scale_down', 'stop_graceful', 'stop_fast', 'upgrade', 'none'); a 'control'
// event (signal null) follows.
function control(action) {
  const v = actionValue(action, 'action');
  check(native.control(v), 'control');
  // A stop at once (the primary may exit with its last worker); the rest follows the
  // 'control' event, as for a signal.
  if (v === C.ACT_STOP_GRACEFUL || v === C.ACT_STOP_FAST) supervision.stopping = true;
  updateRef();
}

// cluster.stats(): the cluster's and every worker's figures (libcluster's stats JSON,
// parsed: { target, workers, ready, draining, generation, breaker, respawns, rollout,
// stopping, per_worker: [{ id, pid, handed, received, queued, rerouted, lost, ... }] }).
function stats() {
  const text = native.statsJson();
  if (typeof text !== 'string') check(text, 'stats');
  return JSON.parse(text);
}

// ---- supervision's events

const SUPERVISION_KINDS = new Set([
  KIND.READY, KIND.DRAINING, KIND.RESPAWN, KIND.BREAKER, KIND.ROLLOUT, KIND.STUCK, KIND.RECYCLE, KIND.CONTROL, KIND.UPGRADE,
]);

// A supervision event: the worker's own object first (as 'online' and 'listening'), then
// the cluster's. A worker JS has forgotten (never happens in order, but a notice must not
// adopt it) gets an object of its own.
function onSupervision(ev) {
  const w = ev.id > 0 ? all.get(ev.id) || new Worker(ev.id, ev.pid) : null;
  switch (ev.kind) {
    case KIND.READY:
      w.emit('ready');
      cluster.emit('ready', w);
      break;
    case KIND.DRAINING: {
      const info = { stage: S.STAGE.name(ev.state), reason: S.REASON.name(ev.reason) };
      w.emit('draining', info);
      cluster.emit('draining', w, info);
      break;
    }
    case KIND.RESPAWN:
      cluster.emit('respawn', { delayMs: ev.delayMs, count: ev.count });
      break;
    case KIND.BREAKER:
      cluster.emit('breaker', { state: S.BREAKER.name(ev.state), count: ev.count });
      break;
    case KIND.ROLLOUT: {
      const info = { state: S.ROLLOUT.name(ev.state), generation: ev.generation, replaced: ev.count };
      cluster.emit('rollout', info);
      const waiting = supervision.rollouts.get(ev.generation);
      if (waiting && (ev.state === C.ROLLOUT_DONE || ev.state === C.ROLLOUT_ABORTED)) {
        supervision.rollouts.delete(ev.generation);
        if (ev.state === C.ROLLOUT_DONE) waiting.resolve({ generation: ev.generation, replaced: ev.count });
        else waiting.reject(S.rolloutAborted(ev.generation, ev.count));
      }
      break;
    }
    case KIND.STUCK: {
      const info = { idleMs: ev.delayMs };
      w.emit('stuck', info);
      cluster.emit('stuck', w, info);
      break;
    }
    case KIND.RECYCLE: {
      const info = { reason: S.RECYCLE.name(ev.reason) };
      w.emit('recycle', info);
      cluster.emit('recycle', w, info);
      break;
    }
    case KIND.UPGRADE:
      // A hot upgrade of this primary (libcluster's): `pid` is the other primary; an
      // aborted one says why (a negative errno).
      followUpgrade(ev);
      cluster.emit('upgrade', { state: S.UPGRADE.name(ev.state), pid: ev.pid, error: ev.error || 0 });
      break;
    case KIND.CONTROL: {
      const action = S.ACTION.name(ev.state);
      followControl(ev.state);
      cluster.emit('control', { signal: E.signalName(ev.signal), action });
      break;
    }
    default:
      break;
  }
}

// What a hot upgrade this primary started does to it: once the new primary is ready this
// one hands over, drains every worker and replaces none (a stop, as libcluster's run loop
// sees it), so the event loop is let go once they are gone and the process ends.
function followUpgrade(ev) {
  if (ev.state === C.UPGRADE_STARTED) {
    supervision.upgradeTo = ev.pid;
    return;
  }
  if (ev.pid !== supervision.upgradeTo || supervision.upgradeTo === 0) return; // the new primary's own
  const waiting = supervision.upgrade && supervision.upgrade.pid === ev.pid ? supervision.upgrade : null;
  if (ev.state === C.UPGRADE_READY) {
    supervision.stopping = true;
    supervision.upgrade = null;
    updateRef();
    if (waiting) waiting.resolve({ pid: ev.pid });
  } else if (ev.state === C.UPGRADE_ABORTED) {
    supervision.upgradeTo = 0;
    supervision.upgrade = null;
    const reason = supervision.upgradeReason;
    supervision.upgradeReason = null;
    if (waiting) waiting.reject(S.upgradeAborted(ev.pid, ev.error, reason));
  }
}

// What an action does to the target and the stop, as the supervisor applies it.
function followControl(action) {
  if (action === C.ACT_STOP_GRACEFUL || action === C.ACT_STOP_FAST) supervision.stopping = true;
  else if (supervision.stopping) return;
  else if (action === C.ACT_SCALE_UP && supervision.target > 0) supervision.target = Math.min(4096, supervision.target + 1);
  else if (action === C.ACT_SCALE_DOWN && supervision.target > 1) supervision.target--;
  else return;
  if (supervision.options.workers !== undefined) supervision.options.workers = supervision.target;
}

module.exports = {
  check, actionValue, supervise, rollingRestart, upgrade, scale, drain, resetBreaker, control, stats,
  SUPERVISION_KINDS, onSupervision,
};
