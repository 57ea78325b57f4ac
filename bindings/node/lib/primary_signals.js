// Signals, for supervision (libcluster's, beyond Node): cluster.handleSignal(), signalMap(),
// installSignalHandlers() and restoreSignalHandlers(). Nothing here runs unless called; no
// listener is added unless installSignalHandlers() is.
'use strict';
const native = require('./native');
const E = require('./errors');
const S = require('./supervision');
const { cluster } = require('./primary_state');
const { check, actionValue } = require('./primary_supervision');

// A signal number for the addon's int arguments (past int32: -1, which libcluster refuses).
const signalArg = (signal) => {
  const signo = E.signalNumber(signal);
  return signo > 0x7fffffff ? -1 : signo;
};

// cluster.handleSignal(signal): acts on a signal as its mapping says (by default SIGHUP
// rolling restart, SIGTTIN/SIGTTOU one worker more/less, SIGTERM graceful stop (a second:
// fast), SIGINT fast stop (a second: SIGKILL), SIGUSR2 hot upgrade of the primary). For the
// program's own handlers.
function handleSignal(signal) {
  const rc = native.handleSignal(signalArg(signal));
  check(rc, 'handleSignal', native.strerror(rc));
}

// cluster.signalMap(signal, action): what handleSignal(signal) does (an action name, or
// null for the default mapping).
function signalMap(signal, action) {
  const v = action === null || action === undefined ? -1 : actionValue(action, 'action');
  check(native.signalMap(signalArg(signal), v), 'signalMap');
}

// cluster.installSignalHandlers([signals]): process.on(signal) listeners that call
// handleSignal, for SIGHUP, SIGTTIN, SIGTTOU, SIGTERM, SIGINT and SIGUSR2 (a hot upgrade of
// the primary) unless told which (as with any process.on(signal) listener, Node's default
// action, such as exiting on SIGTERM, no longer happens). Only this call adds listeners;
// restoreSignalHandlers() removes them.
const signalListeners = new Map();

function installSignalHandlers(signals = S.DEFAULT_SIGNALS) {
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
}

function restoreSignalHandlers() {
  for (const [name, listener] of signalListeners) process.removeListener(name, listener);
  signalListeners.clear();
  return cluster;
}

module.exports = { handleSignal, signalMap, installSignalHandlers, restoreSignalHandlers };
