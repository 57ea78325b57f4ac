// Errors as Node makes them: TypeError/RangeError with Node's `code`s for bad arguments,
// and for libcluster failures an Error with `code` ('EADDRINUSE', ...) and a negative
// `errno` (-98), as Node's own system errors have.
'use strict';
const util = require('node:util');
const os = require('node:os');

// include/cluster.h's CLUSTER_E_* codes, as the addon (compiled against it) exports them.
const CLUSTER_CODES = Object.fromEntries(
  Object.entries(require('./native').constants).filter(([name]) => name.startsWith('E_')).map(([name, v]) => [v, `CLUSTER_${name}`]),
);
const CLUSTER_E = Object.fromEntries(Object.entries(CLUSTER_CODES).map(([n, name]) => [name, Number(n)]));
// libcluster's negative errno for "no such worker".
const ESRCH = -os.constants.errno.ESRCH;

function codeName(rc) {
  if (CLUSTER_CODES[rc]) return CLUSTER_CODES[rc];
  try {
    return util.getSystemErrorName(rc);
  } catch {
    return `E${-rc}`;
  }
}

// `detail`: libcluster's one-line message (cluster_last_error()), if known.
function clusterError(rc, syscall, detail) {
  const code = codeName(rc);
  let text = detail;
  if (!text) {
    const sys = rc > -4096 ? util.getSystemErrorMap().get(rc) : null;
    text = sys ? sys[1] : 'libcluster error';
  }
  const err = new Error(`${syscall} ${code}: ${text}`);
  err.code = code;
  err.errno = rc;
  err.syscall = syscall;
  Error.captureStackTrace(err, clusterError);
  return err;
}

function describe(value) {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`;
  if (typeof value === 'object') {
    const ctor = value.constructor && value.constructor.name;
    return ctor ? `an instance of ${ctor}` : util.inspect(value, { depth: -1 });
  }
  let shown = util.inspect(value, { colors: false });
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  return `type ${typeof value} (${shown})`;
}

function typeError(name, expected, value) {
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(value)}`);
  err.code = 'ERR_INVALID_ARG_TYPE';
  Error.captureStackTrace(err, typeError);
  return err;
}

function rangeError(code, message) {
  const err = new RangeError(message);
  err.code = code;
  Error.captureStackTrace(err, rangeError);
  return err;
}

function validateObject(value, name) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw typeError(name, 'of type object', value);
}
function validateString(value, name) {
  if (typeof value !== 'string') throw typeError(name, 'of type string', value);
}
function validateFunction(value, name) {
  if (typeof value !== 'function') throw typeError(name, 'of type function', value);
}
function validateBoolean(value, name) {
  if (typeof value !== 'boolean') throw typeError(name, 'of type boolean', value);
}
function validateInt(value, name, min, max) {
  if (typeof value !== 'number') throw typeError(name, 'of type number', value);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw rangeError('ERR_OUT_OF_RANGE', `The value of "${name}" is out of range. It must be an integer >= ${min} and <= ${max}. Received ${value}`);
  }
}
function validateStringArray(value, name) {
  if (!Array.isArray(value)) throw typeError(name, 'an instance of Array', value);
  value.forEach((v, i) => validateString(v, `${name}[${i}]`));
}

// Node's validatePort: a number or numeric string, an integer in 0..65535.
function validatePort(port, name = 'options.port') {
  const ok = (typeof port === 'number' || (typeof port === 'string' && port.trim() !== '')) &&
    Number.isInteger(Number(port)) && Number(port) >= 0 && Number(port) <= 0xffff;
  if (!ok) {
    throw rangeError('ERR_SOCKET_BAD_PORT', `${name} should be >= 0 and < 65536. Received ${describe(port)}.`);
  }
  return Number(port);
}

// A signal name ('SIGTERM') or number to its number; Node's ERR_UNKNOWN_SIGNAL otherwise.
function signalNumber(signal) {
  if (typeof signal === 'number' && Number.isInteger(signal) && signal >= 0) return signal;
  if (typeof signal === 'string' && Object.hasOwn(os.constants.signals, signal)) return os.constants.signals[signal];
  if (typeof signal !== 'string' && typeof signal !== 'number') throw typeError('signal', 'of type string or number', signal);
  const err = new TypeError(`Unknown signal: ${signal}`);
  err.code = 'ERR_UNKNOWN_SIGNAL';
  throw err;
}

const signalNames = {};
for (const [name, n] of Object.entries(os.constants.signals)) if (!(n in signalNames)) signalNames[n] = name;
function signalName(n) {
  return n ? signalNames[n] || `SIG${n}` : null;
}

module.exports = {
  CLUSTER_E,
  ESRCH,
  codeName,
  clusterError,
  typeError,
  rangeError,
  validateObject,
  validateString,
  validateFunction,
  validateBoolean,
  validateInt,
  validateStringArray,
  validatePort,
  signalNumber,
  signalName,
};
