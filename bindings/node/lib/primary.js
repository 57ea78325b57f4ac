// The primary: cluster.fork(), setupPrimary(), workers, disconnect() and the lifecycle
// events, from libcluster's event queue.
'use strict';
const EventEmitter = require('node:events');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const native = require('./native');
const E = require('./errors');
const { KIND, createCluster, startEvents, sendTo, decode, SERIALIZATION_ENV } = require('./common');
const { wrapFd } = require('./handles');
const BaseWorker = require('./worker_base');
const S = require('./supervision');

const C = native.constants;
const STDIO = { inherit: C.STDIO_INHERIT, pipe: C.STDIO_PIPE, overlapped: C.STDIO_PIPE, ignore: C.STDIO_IGNORE, ipc: C.STDIO_IPC };
const launcher = path.join(__dirname, '..', 'bin', 'libcluster-node');

const cluster = createCluster(false);
cluster.workers = {};
cluster.settings = {};
cluster.schedulingPolicy = { none: cluster.SCHED_NONE, reuseport: cluster.SCHED_REUSEPORT }[process.env.NODE_CLUSTER_SCHED_POLICY] || cluster.SCHED_RR;

// Every worker not yet both exited and disconnected, by id (also after it left
// cluster.workers): events about it still need its object.
const all = new Map();
// Workers whose 'exit' has not been emitted: they keep the process alive.
const running = new Set();
// cluster.disconnect() calls waiting: { cb, waiting: workers whose 'disconnect' is still
// to be emitted, drained: cluster.workers is empty }. As in Node, the callback runs once
// both hold, after the workers' 'disconnect' events.
let pendingDisconnect = [];
let initialized = false;
// libcluster's supervision (opt-in: cluster.supervise(), scale(), ...), as JS knows it.
const supervision = {
  // cluster.supervise()'s options so far (each call changes what it names).
  options: {},
  // Workers to keep (0: no respawn), and whether a stop began: while it keeps workers and
  // is not stopping, the primary stays alive with no worker running (a respawn is due, the
  // breaker is open), as cluster_run does in C.
  target: 0,
  stopping: false,
  // Supervision forks workers itself: give them what cluster.fork() gives its own.
  used: false,
  // cluster.rollingRestart() promises by generation.
  rollouts: new Map(),
  // A hot upgrade this primary started (cluster.upgrade(), SIGUSR2): the new primary's pid
  // (0: none), the cluster.upgrade() promise waiting on it, the reason of an abort.
  upgradeTo: 0,
  upgrade: null,
  upgradeReason: null,
};

function updateRef() {
  native.eventsRef(running.size > 0 || pendingDisconnect.length > 0 || (supervision.target > 0 && !supervision.stopping));
}

// cluster.workers follows libcluster's table (a worker leaves it once disconnected and
// dead, or at once on worker.disconnect()).
function syncWorkers() {
  const ids = native.workers();
  if (!Array.isArray(ids)) return;
  const listed = new Set(ids);
  for (const id of Object.keys(cluster.workers)) {
    if (!listed.has(Number(id))) delete cluster.workers[id];
  }
}

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

function isNodeScript(file) {
  if (/\.[cm]?js$/.test(file)) return true;
  let head;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      head = Buffer.alloc(256);
      head = head.subarray(0, fs.readSync(fd, head, 0, 256, 0));
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false; // not readable here: let libcluster run it (or report why not)
  }
  if (head.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return false; // ELF
  if (head.subarray(0, 2).toString() === '#!') return /node/.test(head.toString().split('\n')[0]);
  return true;
}

function stdioEntry(v, i) {
  if (v === undefined || v === null) return STDIO.pipe;
  if (typeof v === 'string' && Object.hasOwn(STDIO, v)) return STDIO[v];
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  if (v && typeof v === 'object' && typeof v.fd === 'number' && v.fd >= 0) return v.fd;
  throw E.typeError(`settings.stdio[${i}]`, "'pipe', 'inherit', 'ignore', an fd or a stream with an fd", v);
}

// As child_process does it: every own enumerable key whose value is not undefined becomes
// `key=value` (value turned into a string); only a NUL byte is refused.
function envList(env, name) {
  if (Array.isArray(env) && name !== 'env') {
    E.validateStringArray(env, name);
    return env.slice();
  }
  const out = [];
  for (const [k, v] of Object.entries({ ...env })) {
    if (v === undefined) {
      // fork({ KEY: undefined }) leaves KEY out, as Node's spread over process.env does
      // ("KEY" alone tells libcluster so).
      if (name === 'env' && k !== '' && !k.includes('=') && !k.includes('\0')) out.push(k);
      continue;
    }
    const pair = `${k}=${v}`;
    if (pair.includes('\0')) {
      const err = new TypeError(`The argument '${name}' must be a string without null bytes. Received ${JSON.stringify(pair)}`);
      err.code = 'ERR_INVALID_ARG_VALUE';
      throw err;
    }
    out.push(pair);
  }
  return out;
}

function validateSettings(s) {
  E.validateObject(s, 'settings');
  if (s.exec !== undefined) E.validateString(s.exec, 'settings.exec');
  if (s.exec === '') throw E.rangeError('ERR_INVALID_ARG_VALUE', 'settings.exec must not be empty');
  if (s.args !== undefined) E.validateStringArray(s.args, 'settings.args');
  if (s.execArgv !== undefined) E.validateStringArray(s.execArgv, 'settings.execArgv');
  if (s.cwd !== undefined) E.validateString(s.cwd, 'settings.cwd');
  if (s.env !== undefined) envList(s.env, 'settings.env');
  if (s.silent !== undefined) E.validateBoolean(s.silent, 'settings.silent');
  if (s.stdio !== undefined && typeof s.stdio !== 'string' && !Array.isArray(s.stdio)) {
    throw E.typeError('settings.stdio', 'an Array or a string', s.stdio);
  }
  if (typeof s.stdio === 'string' && !Object.hasOwn(STDIO, s.stdio)) {
    throw E.rangeError('ERR_INVALID_ARG_VALUE', `settings.stdio must be 'pipe', 'inherit' or 'ignore'. Received '${s.stdio}'`);
  }
  if (Array.isArray(s.stdio)) {
    s.stdio.forEach(stdioEntry);
    const ipc = s.stdio.indexOf('ipc');
    if (s.stdio.length > 3 && ipc < 0) {
      const err = new Error("Forked processes must have an IPC channel, missing value 'ipc' in settings.stdio");
      err.code = 'ERR_CHILD_PROCESS_IPC_REQUIRED';
      throw err;
    }
    if (s.stdio.length > 64 || (ipc >= 0 && ipc < 3) || s.stdio.lastIndexOf('ipc') !== ipc) {
      throw E.rangeError('ERR_INVALID_ARG_VALUE', "settings.stdio: one 'ipc' entry, past the first three (libcluster keeps stdin, stdout and stderr for stdio), with at most 64 entries");
    }
  }
  if (s.uid !== undefined) E.validateInt(s.uid, 'settings.uid', 0, 0x7fffffff);
  if (s.gid !== undefined) E.validateInt(s.gid, 'settings.gid', 0, 0x7fffffff);
  if (s.serialization !== undefined) {
    E.validateString(s.serialization, 'settings.serialization');
    if (s.serialization !== 'json' && s.serialization !== 'advanced') {
      throw E.rangeError('ERR_INVALID_ARG_VALUE', `settings.serialization must be 'json' or 'advanced'. Received '${s.serialization}'`);
    }
  }
  if (s.schedulingPolicy !== undefined && ![cluster.SCHED_NONE, cluster.SCHED_RR, cluster.SCHED_REUSEPORT].includes(s.schedulingPolicy)) {
    throw E.rangeError('ERR_INVALID_ARG_VALUE', `settings.schedulingPolicy must be cluster.SCHED_NONE, cluster.SCHED_RR or cluster.SCHED_REUSEPORT. Received ${s.schedulingPolicy}`);
  }
  if (s.nodeIpc !== undefined) E.validateBoolean(s.nodeIpc, 'settings.nodeIpc');
}

// Hands the settings to libcluster. A Node script runs as
//   bin/libcluster-node <node> [...execArgv] <exec> [...args]
// (so require('libcluster-node') gets the channel); anything else (an ELF executable, a
// non-node #! script, a name on PATH) runs as <exec> [...args]. `nodeIpc: true` runs
// <node> [...execArgv] <exec> [...args] directly, for unmodified node:cluster workers.
function applySettings(s) {
  const out = {};
  const exec = s.exec;
  if (exec === undefined) throw new Error('cluster.setupPrimary: no `exec` (this process has no script in process.argv[1])');
  const resolved = exec.includes('/') || /\.[cm]?js$/.test(exec) ? path.resolve(exec) : exec;
  const args = s.args || [];
  if (s.nodeIpc) {
    out.exec = process.execPath;
    out.args = [...(s.execArgv || []), resolved, ...args];
  } else if (isNodeScript(resolved)) {
    out.exec = launcher;
    out.args = [process.execPath, ...(s.execArgv || []), resolved, ...args];
  } else {
    out.exec = resolved;
    out.args = args.slice();
  }
  out.cwd = s.cwd;
  out.env = s.env === undefined ? [] : envList(s.env, 'settings.env');
  // 'advanced' is carried out by this package on both sides (lib/common.js); libcluster
  // itself moves JSON.
  out.env.push(`${SERIALIZATION_ENV}=${s.serialization === 'advanced' ? 'advanced' : 'json'}`);
  out.silent = s.silent ? 1 : 0;
  // Always explicit: 'inherit' is passed as our own fd i, not CLUSTER_STDIO_INHERIT,
  // because Node marks fds 0-2 close-on-exec and libcluster's INHERIT leaves them so
  // (the worker would start with stdio closed); an fd entry is dup2'ed, which clears it.
  let list;
  if (s.stdio !== undefined) list = typeof s.stdio === 'string' ? [s.stdio, s.stdio, s.stdio] : s.stdio;
  else list = s.silent ? ['pipe', 'pipe', 'pipe'] : ['inherit', 'inherit', 'inherit'];
  const count = Math.max(3, list.length);
  out.stdio = Array.from({ length: count }, (_, i) => {
    const v = stdioEntry(list[i], i);
    return v === STDIO.inherit && i < 3 ? i : v;
  });
  out.uid = s.uid;
  out.gid = s.gid;
  out.serialization = 'json';
  // As in Node, the policy is frozen by the first setupPrimary (a fork calls it).
  if (!initialized) out.sched = s.schedulingPolicy || cluster.schedulingPolicy;
  const rc = native.setupPrimary(out);
  if (rc < 0) throw E.clusterError(rc, 'setupPrimary', native.lastError());
  return out;
}

cluster.setupPrimary = function setupPrimary(settings) {
  if (settings === undefined) settings = {};
  validateSettings(settings);
  const merged = {
    args: process.argv.slice(2),
    exec: process.argv[1],
    execArgv: process.execArgv,
    silent: false,
    ...cluster.settings,
    ...settings,
  };
  applySettings(merged);
  cluster.settings = merged;
  initialized = true;
  process.nextTick(() => cluster.emit('setup', merged));
};
cluster.setupMaster = cluster.setupPrimary;

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

// Node gives each worker started with an inspector flag (in execArgv or NODE_OPTIONS) its
// own port: settings.inspectPort (a number, or a function called per fork), else
// process.debugPort + 1, + 2, ... (wrapping past 65535 into 1024 and up).
const DEBUG_ARG = /--inspect(?:-brk|-port)?|--debug-port/;
let debugPortOffset = 1;

function inspectArgv(settings) {
  const execArgv = settings.execArgv || [];
  if (!execArgv.some((a) => DEBUG_ARG.test(a)) && !DEBUG_ARG.test(process.env.NODE_OPTIONS || '')) return null;
  let port;
  if ('inspectPort' in settings) {
    port = typeof settings.inspectPort === 'function' ? settings.inspectPort() : settings.inspectPort;
    E.validatePort(port, 'inspectPort');
  } else {
    port = process.debugPort + debugPortOffset;
    if (port > 65535) port = port - 65535 + 1024 - 1;
    debugPortOffset++;
  }
  return [...execArgv, `--inspect-port=${port}`];
}

cluster.fork = function fork(env) {
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
};

cluster.disconnect = function disconnect(callback) {
  if (callback !== undefined) E.validateFunction(callback, 'callback');
  const n = native.disconnectAll();
  if (n < 0) throw E.clusterError(n, 'disconnect', native.lastError());
  const waiting = new Set([...all.values()].filter((w) => !w._disconnected && w.state !== 'dead'));
  pendingDisconnect.push({ cb: callback || null, waiting, drained: false });
  syncWorkers();
  updateRef();
};

cluster.Worker = BaseWorker;
// As Node's primary, cluster.Worker.prototype itself has disconnect() and destroy().
BaseWorker.prototype.disconnect = Worker.prototype.disconnect;
BaseWorker.prototype.destroy = function destroy(signal) {
  this.process.kill(signal || 'SIGTERM');
};
// Not Node's: a worker object for libcluster worker `id` (forked elsewhere, or none: its
// operations then fail with ESRCH). Non-enumerable; the tests use it.
Object.defineProperty(cluster, '_workerForId', { value: (id) => new Worker(id) });

function addressType(t) {
  if (t === C.ADDRESS_UDP4) return 'udp4';
  if (t === C.ADDRESS_UDP6) return 'udp6';
  return t;
}

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

function forget(w) {
  if (w.state === 'dead' && w._disconnected) all.delete(w.id);
}

function settleDisconnects(gone) {
  const ready = [];
  pendingDisconnect = pendingDisconnect.filter((p) => {
    if (gone) p.waiting.delete(gone);
    if (!p.drained || p.waiting.size > 0) return true;
    ready.push(p);
    return false;
  });
  for (const p of ready) if (p.cb) p.cb();
}

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

function onEvent(ev) {
  if (ev.kind === KIND.DRAINED) {
    for (const p of pendingDisconnect) p.drained = true;
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

// ---- supervision: libcluster's, beyond Node (include/cluster.h, "Supervision"). Nothing
// here runs unless called: without it the primary behaves as Node's.

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
cluster.supervise = function supervise(options = {}) {
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
};

// cluster.rollingRestart({ maxSurge }): every serving worker replaced by a new one (the
// program as it is on disk now, with cluster.settings as they are now), maxSurge at a
// time; an old worker drains once a new one is ready. A promise of { generation, replaced }
// once every old worker is replaced ('rollout' 'done'), rejected with
// ERR_LIBCLUSTER_ROLLOUT_ABORTED when a new worker fails to become ready (the old ones not
// yet replaced keep serving) or a stop aborts it, or with CLUSTER_E_BUSY /
// CLUSTER_E_BREAKER_OPEN when it cannot start.
cluster.rollingRestart = function rollingRestart(options) {
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
};

// cluster.upgrade({ readyTimeout }): a hot upgrade of this primary (docs/upgrade.md). The
// program is started again as a new primary (this Node binary with the same arguments:
// the script as it is on disk now) and given the listening sockets; once its workers are
// ready it serves, and this primary stops accepting, drains its workers and, once they are
// gone, lets its event loop end. A promise of { pid } (the new primary's) at that handover
// ('upgrade' 'ready'), rejected with ERR_LIBCLUSTER_UPGRADE_ABORTED (errno: why; pid) when
// the new primary exits or is not ready within readyTimeout ms (default 60000), which is
// then killed while this one carries on, or with CLUSTER_E_BUSY (an upgrade, a rolling
// restart or a stop under way) or the spawn's error when it cannot start.
cluster.upgrade = function upgrade(options) {
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
};

// cluster.isUpgrade: true in a primary a hot upgrade started (the new one).
cluster.isUpgrade = native.isUpgrade() === 1;

// cluster.scale(n): keep n workers (1..4096): more are forked at once, the extra ones drain.
cluster.scale = function scale(workers) {
  E.validateInt(workers, 'workers', 1, 4096);
  if (!supervision.used) cluster.setupPrimary();
  check(native.scale(workers), 'scale');
  supervision.used = true;
  supervision.target = workers;
  supervision.options.workers = workers;
  updateRef();
  return cluster;
};

// cluster.drain(id): worker.drain() by id.
cluster.drain = function drain(id) {
  E.validateInt(id, 'id', 1, 0x7fffffff);
  check(native.drainWorker(id), 'drain');
  syncWorkers();
};

cluster.resetBreaker = function resetBreaker() {
  check(native.breakerReset(), 'resetBreaker');
};

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
cluster.control = function control(action) {
  const v = actionValue(action, 'action');
  check(native.control(v), 'control');
  // A stop at once (the primary may exit with its last worker); the rest follows the
  // 'control' event, as for a signal.
  if (v === C.ACT_STOP_GRACEFUL || v === C.ACT_STOP_FAST) supervision.stopping = true;
  updateRef();
};

// cluster.stats(): the cluster's and every worker's figures (libcluster's stats JSON,
// parsed: { target, workers, ready, draining, generation, breaker, respawns, rollout,
// stopping, per_worker: [{ id, pid, handed, received, queued, rerouted, lost, ... }] }).
cluster.stats = function stats() {
  const text = native.statsJson();
  if (typeof text !== 'string') check(text, 'stats');
  return JSON.parse(text);
};

// cluster.handleSignal(signal): acts on a signal as its mapping says (by default SIGHUP
// rolling restart, SIGTTIN/SIGTTOU one worker more/less, SIGTERM graceful stop (a second:
// fast), SIGINT fast stop (a second: SIGKILL), SIGUSR2 hot upgrade of the primary). For the program's own handlers.
// A signal number for the addon's int arguments (past int32: -1, which libcluster refuses).
const signalArg = (signal) => {
  const signo = E.signalNumber(signal);
  return signo > 0x7fffffff ? -1 : signo;
};

cluster.handleSignal = function handleSignal(signal) {
  const rc = native.handleSignal(signalArg(signal));
  check(rc, 'handleSignal', native.strerror(rc));
};

// cluster.signalMap(signal, action): what handleSignal(signal) does (an action name, or
// null for the default mapping).
cluster.signalMap = function signalMap(signal, action) {
  const v = action === null || action === undefined ? -1 : actionValue(action, 'action');
  check(native.signalMap(signalArg(signal), v), 'signalMap');
};

// cluster.installSignalHandlers([signals]): process.on(signal) listeners that call
// handleSignal, for SIGHUP, SIGTTIN, SIGTTOU, SIGTERM, SIGINT and SIGUSR2 (a hot upgrade of
// the primary) unless told which (as with
// any process.on(signal) listener, Node's default action, such as exiting on SIGTERM, no
// longer happens). Only this call adds listeners; restoreSignalHandlers() removes them.
const signalListeners = new Map();

cluster.installSignalHandlers = function installSignalHandlers(signals = S.DEFAULT_SIGNALS) {
  if (!Array.isArray(signals)) throw E.typeError('signals', 'an instance of Array', signals);
  const numbers = signals.map(signalArg);
  const names = numbers.map((signo, i) => {
    const name = E.signalName(signo);
    if (!Object.hasOwn(require('node:os').constants.signals, name)) {
      const err = new TypeError(`Unknown signal: ${signals[i]}`);
      err.code = 'ERR_UNKNOWN_SIGNAL';
      throw err;
    }
    return name;
  });
  for (const [i, name] of names.entries()) {
    const signo = numbers[i];
    if (signalListeners.has(name)) continue;
    const listener = () => {
      native.handleSignal(signo);
    };
    process.on(name, listener);
    signalListeners.set(name, listener);
  }
  return cluster;
};

cluster.restoreSignalHandlers = function restoreSignalHandlers() {
  for (const [name, listener] of signalListeners) process.removeListener(name, listener);
  signalListeners.clear();
  return cluster;
};

startEvents(onEvent, updateRef);

module.exports = cluster;
