// What both roles share: the cluster object and the event pump.
'use strict';
const EventEmitter = require('node:events');
const native = require('./native');
const { listen } = require('./listen');

// Event kinds as cluster.h numbers them (the addon exports the header's values).
const C = native.constants;
const KIND = Object.freeze({
  DRAINED: C.EVENT_DRAINED,
  FORK: C.EVENT_FORK,
  ONLINE: C.EVENT_ONLINE,
  LISTENING: C.EVENT_LISTENING,
  MESSAGE: C.EVENT_MESSAGE,
  DISCONNECT: C.EVENT_DISCONNECT,
  EXIT: C.EVENT_EXIT,
  ERROR: C.EVENT_ERROR,
  DISCONNECT_REQUESTED: C.EVENT_DISCONNECT_REQUESTED,
  // Supervision (primary, after cluster.supervise() or the calls beside it).
  READY: C.EVENT_READY,
  DRAINING: C.EVENT_DRAINING,
  RESPAWN: C.EVENT_RESPAWN,
  BREAKER: C.EVENT_BREAKER,
  ROLLOUT: C.EVENT_ROLLOUT,
  STUCK: C.EVENT_STUCK,
  RECYCLE: C.EVENT_RECYCLE,
  CONTROL: C.EVENT_CONTROL,
  UPGRADE: C.EVENT_UPGRADE,
});

function createCluster(isWorker) {
  const cluster = new EventEmitter();
  cluster.isWorker = isWorker;
  cluster.isPrimary = !isWorker;
  cluster.isMaster = !isWorker;
  // libcluster's: true in a primary a hot upgrade started (lib/primary.js sets it).
  cluster.isUpgrade = false;
  cluster.SCHED_NONE = C.SCHED_NONE;
  cluster.SCHED_RR = C.SCHED_RR;
  // libcluster's: one SO_REUSEPORT listener per worker, made by the primary.
  cluster.SCHED_REUSEPORT = C.SCHED_REUSEPORT;
  cluster.listen = listen;
  return cluster;
}

// Starts the uv_poll on cluster_event_fd(); `handle(event)` runs for each event on the JS
// thread. If a listener throws, the rest of the batch still runs (on the next tick) and
// the exception goes on as an uncaught one, as with any Node callback.
function startEvents(handle, after) {
  function run(batch) {
    for (let i = 0; i < batch.length; i++) {
      try {
        handle(batch[i]);
      } catch (err) {
        const rest = batch.slice(i + 1);
        if (rest.length) process.nextTick(run, rest);
        else if (after) process.nextTick(after);
        throw err;
      }
    }
    if (after) after();
  }
  const r = native.eventsStart(run);
  if (r < 0) {
    const { clusterError } = require('./errors');
    throw clusterError(r, 'cluster_event_fd', native.lastError());
  }
}

// Node's `send(message[, sendHandle[, options]][, callback])` argument shuffle.
function sendArgs(message, sendHandle, options, callback) {
  if (typeof sendHandle === 'function') {
    callback = sendHandle;
    sendHandle = undefined;
    options = undefined;
  } else if (typeof options === 'function') {
    callback = options;
    options = undefined;
  }
  return { message, sendHandle, options, callback };
}

// Node's `serialization: 'advanced'` between two peers of this package: the message goes
// through v8.serialize (circular references, Maps, Sets, typed arrays, BigInts, ...) and
// travels as one JSON object holding it in base64. The primary tells its workers through
// the environment (as Node does with NODE_CHANNEL_SERIALIZATION_MODE).
const V8_CMD = 'LIBCLUSTER_V8';
const SERIALIZATION_ENV = 'LIBCLUSTER_NODE_SERIALIZATION';

function encode(message, advanced) {
  if (!advanced) return JSON.stringify(message);
  return JSON.stringify({ cmd: V8_CMD, v8: require('node:v8').serialize(message).toString('base64') });
}

// The message in `text` (JSON; text that is not JSON is delivered as it is).
function decode(text, advanced) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    return text;
  }
  if (advanced && message && message.cmd === V8_CMD && typeof message.v8 === 'string') {
    return require('node:v8').deserialize(Buffer.from(message.v8, 'base64'));
  }
  return message;
}

module.exports = { KIND, createCluster, startEvents, sendArgs, encode, decode, SERIALIZATION_ENV };

// worker.send() / process.send(): JSON text (and a socket) to worker `id` (0: the primary).
// `connectedHere`: whether this thread has not yet seen the channel's 'disconnect' event.
// libcluster closes a channel on its own thread, so a send can find it closed before JS
// knows; as in Node (which would still write it into the closing channel), such a message
// is dropped without an error. Once 'disconnect' was emitted, sending is an error.
function sendTo(id, connectedHere, advanced, ...args) {
  const E = require('./errors');
  const { handleFd } = require('./handles');
  const { message, sendHandle, options, callback } = sendArgs(...args);
  if (message === undefined) {
    const err = new TypeError('The "message" argument must be specified');
    err.code = 'ERR_MISSING_ARGS';
    throw err;
  }
  if (options !== undefined && options !== null) E.validateObject(options, 'options');
  if (callback !== undefined) E.validateFunction(callback, 'callback');
  const json = encode(message, advanced);
  if (json === undefined) throw E.typeError('message', 'serializable as JSON', message);
  const fd = sendHandle === undefined || sendHandle === null ? -1 : handleFd(sendHandle);
  const rc = native.send(id, json, fd);
  // The channel closed (or, in the primary, the worker already left the table: ESRCH) on
  // libcluster's thread before this thread saw 'disconnect': dropped, as Node drops a
  // message written into a closing channel.
  if ((rc === E.CLUSTER_E.CLUSTER_E_CLOSED || (rc === E.ESRCH && id > 0)) && connectedHere) {
    if (callback) process.nextTick(callback, null);
    return true;
  }
  if (rc < 0) {
    const err = E.clusterError(rc, 'send', native.lastError());
    if (callback) {
      process.nextTick(callback, err);
      return false;
    }
    throw err;
  }
  // Node closes a sent socket in the sender unless told to keep it open.
  if (fd >= 0 && sendHandle instanceof require('node:net').Socket && !(options && options.keepOpen)) sendHandle.destroy();
  if (callback) process.nextTick(callback, null);
  return true;
}

module.exports.sendTo = sendTo;
