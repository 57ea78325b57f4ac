// cluster.setupPrimary() and cluster.settings: the checks of the settings, and what they
// tell libcluster to spawn (the program and its arguments, env, stdio, uid/gid, the
// scheduling policy, and each fork's inspector port).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const native = require('./native');
const E = require('./errors');
const { SERIALIZATION_ENV } = require('./common');
const { cluster } = require('./primary_state');

const C = native.constants;
const STDIO = { inherit: C.STDIO_INHERIT, pipe: C.STDIO_PIPE, overlapped: C.STDIO_PIPE, ignore: C.STDIO_IGNORE, ipc: C.STDIO_IPC };
const launcher = path.join(__dirname, '..', 'bin', 'libcluster-node');
// Whether setupPrimary() ran (it freezes the scheduling policy).
let initialized = false;

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

// cluster.setupPrimary([settings]): cluster.settings becomes the defaults overlaid with what
// it holds and with `settings`, and libcluster is given it; 'setup' is emitted next tick.
function setupPrimary(settings) {
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

module.exports = { envList, applySettings, setupPrimary, inspectArgv };
