// Supervision beyond Node (libcluster's, opt-in): the names the JS API uses for the
// header's numbers, and the checks of cluster.supervise()'s options. String values are
// the ones the stats JSON uses ('half_open', 'boot_failure', ...).
'use strict';
const native = require('./native');
const E = require('./errors');

const C = native.constants;

function table(pairs) {
  const byNumber = new Map();
  const byName = new Map();
  for (const [name, value] of pairs) {
    byNumber.set(value, name);
    byName.set(name, value);
  }
  return { name: (v) => byNumber.get(v) ?? String(v), value: (name) => byName.get(name), names: [...byName.keys()] };
}

const STAGE = table([['disconnect', C.DRAIN_DISCONNECT], ['SIGTERM', C.DRAIN_TERM], ['SIGKILL', C.DRAIN_KILL]]);
const REASON = table([
  ['user', C.REASON_USER], ['rollout', C.REASON_ROLLOUT], ['recycle', C.REASON_RECYCLE], ['stuck', C.REASON_STUCK],
  ['scale_down', C.REASON_SCALE_DOWN], ['stop', C.REASON_STOP], ['boot_timeout', C.REASON_BOOT_TIMEOUT], ['aborted', C.REASON_ABORTED],
]);
const RECYCLE = table([['connections', C.RECYCLE_CONNECTIONS], ['rss', C.RECYCLE_RSS], ['age', C.RECYCLE_AGE]]);
const BREAKER = table([['closed', C.BREAKER_CLOSED], ['open', C.BREAKER_OPEN], ['half_open', C.BREAKER_HALF_OPEN]]);
const ROLLOUT = table([['started', C.ROLLOUT_STARTED], ['step', C.ROLLOUT_STEP], ['done', C.ROLLOUT_DONE], ['aborted', C.ROLLOUT_ABORTED]]);
const ACTION = table([
  ['none', C.ACT_NONE], ['reload', C.ACT_RELOAD], ['scale_up', C.ACT_SCALE_UP], ['scale_down', C.ACT_SCALE_DOWN],
  ['stop_graceful', C.ACT_STOP_GRACEFUL], ['stop_fast', C.ACT_STOP_FAST], ['upgrade', C.ACT_UPGRADE],
]);
const UPGRADE = table([['started', C.UPGRADE_STARTED], ['ready', C.UPGRADE_READY], ['done', C.UPGRADE_DONE], ['aborted', C.UPGRADE_ABORTED]]);
const READY_ON = table([['listening', C.READY_LISTENING], ['explicit', C.READY_EXPLICIT], ['online', C.READY_ONLINE]]);

// What installSignalHandlers() listens to by default (the library's default mapping).
const DEFAULT_SIGNALS = ['SIGHUP', 'SIGTTIN', 'SIGTTOU', 'SIGTERM', 'SIGINT', 'SIGUSR2'];

const INT_MAX = 0x7fffffff;
// option -> [the addon's field (cluster_supervisor's, in camelCase), min, max]. Times in ms.
const OPTIONS = {
  workers: ['workers', 0, 4096],
  backoffBase: ['backoffBaseMs', 1, INT_MAX],
  backoffMax: ['backoffMaxMs', 1, INT_MAX],
  stableAfter: ['stableMs', 0, INT_MAX],
  breakerBurst: ['breakerBurst', 1, INT_MAX],
  breakerWindow: ['breakerWindowMs', 1, INT_MAX],
  breakerCooldown: ['breakerCooldownMs', 0, INT_MAX],
  bootTimeout: ['bootTimeoutMs', 1, INT_MAX],
  drainTimeout: ['drainTimeoutMs', 0, INT_MAX],
  killAfter: ['killAfterMs', 1, INT_MAX],
  stuckTimeout: ['stuckTimeoutMs', 0, INT_MAX],
  maxConnections: ['maxConnections', 0, Number.MAX_SAFE_INTEGER],
  maxRss: ['maxRssBytes', 0, Number.MAX_SAFE_INTEGER],
  maxAge: ['maxAgeMs', 0, INT_MAX],
  recycleJitter: ['recycleJitterPct', 0, 100],
  rssInterval: ['rssIntervalMs', 1, INT_MAX],
  maxSurge: ['maxSurge', 1, 4096],
  drainDelay: ['drainDelayMs', 0, INT_MAX],
  seed: ['seed', 0, Number.MAX_SAFE_INTEGER],
};

// cluster.supervise()'s options (merged with the earlier ones) -> the addon's object.
function supervisorFields(options) {
  E.validateObject(options, 'options');
  const out = {};
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) continue;
    if (key === 'readyOn') {
      if (READY_ON.value(value) === undefined) {
        throw E.rangeError('ERR_INVALID_ARG_VALUE', `options.readyOn must be one of ${READY_ON.names.map((n) => `'${n}'`).join(', ')}. Received ${JSON.stringify(value)}`);
      }
      out.readyOn = READY_ON.value(value);
      continue;
    }
    const spec = OPTIONS[key];
    if (!spec) {
      throw E.rangeError('ERR_INVALID_ARG_VALUE', `options.${key} is not a supervision option (${[...Object.keys(OPTIONS), 'readyOn'].join(', ')})`);
    }
    const [field, min, max] = spec;
    if (key === 'seed' && typeof value === 'bigint') {
      if (value < 0n || value >= 1n << 64n) throw E.rangeError('ERR_OUT_OF_RANGE', `The value of "options.seed" is out of range. It must be >= 0 and < 2 ** 64. Received ${value}`);
      out[field] = value;
      continue;
    }
    E.validateInt(value, `options.${key}`, min, max);
    out[field] = value;
  }
  return out;
}

// A rolling restart that stopped before replacing every worker.
function rolloutAborted(generation, replaced) {
  const err = new Error(`rolling restart to generation ${generation} aborted after ${replaced} worker(s) replaced: a new worker did not become ready, or the primary is stopping`);
  err.code = 'ERR_LIBCLUSTER_ROLLOUT_ABORTED';
  err.generation = generation;
  err.replaced = replaced;
  Error.captureStackTrace(err, rolloutAborted);
  return err;
}

// A hot upgrade whose new primary failed (exited, closed its channel, or was not ready in
// time) and was killed; this primary carries on. `error`: why, a negative errno.
function upgradeAborted(pid, error, reason) {
  const why = reason ? reason.replace(/^upgrade aborted: /, '') : E.codeName(error);
  const err = new Error(`hot upgrade aborted: new primary ${pid}: ${why}`);
  err.code = 'ERR_LIBCLUSTER_UPGRADE_ABORTED';
  err.errno = error;
  err.pid = pid;
  Error.captureStackTrace(err, upgradeAborted);
  return err;
}

module.exports = { STAGE, REASON, RECYCLE, BREAKER, ROLLOUT, ACTION, UPGRADE, READY_ON, DEFAULT_SIGNALS, supervisorFields, rolloutAborted, upgradeAborted };
