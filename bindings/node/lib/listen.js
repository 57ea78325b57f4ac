// cluster.listen(server, options[, callback]): a net.Server (http.Server, https.Server, ...)
// fed with the connections libcluster hands this process. The server gets a stand-in
// `_handle`, so `listening`, `address()`, `close()`, `ref()`/`unref()` and
// `getConnections()` behave as after server.listen(); each connection is a net.Socket
// emitted as 'connection', the way net.Server's own accept path does it.
'use strict';
const net = require('node:net');
const dns = require('node:dns');
const nodePath = require('node:path');
const native = require('./native');
const E = require('./errors');

const EBADF = -9;

// Servers fed by libcluster in this process, until their 'close' event (a disconnect
// closes them and waits for that).
const servers = new Set();

class ClusterHandle {
  constructor(server, nativeHandle, address, port, family) {
    this.server = server;
    this.native = nativeHandle;
    this.address = address;
    this.port = port;
    this.family = family;
    this.closed = false;
    // The last connection budget given to the addon (see updateLimit).
    this.budget = undefined;
  }

  getsockname(out) {
    out.address = this.address;
    out.family = this.family;
    out.port = this.port;
    return 0;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    native.serverClose(this.native);
  }

  ref() {
    if (!this.closed) native.serverRef(this.native, true);
  }

  unref() {
    if (!this.closed) native.serverRef(this.native, false);
  }
}

// A Unix socket server: Node reports its path, not a sockname.
class PipeClusterHandle extends ClusterHandle {}
PipeClusterHandle.prototype.getsockname = undefined;

// Node v20 worker at `server.maxConnections`: connections are not taken (Node answers
// `accepted: false` and its primary gives them to another worker); the addon is told how
// many more this server takes, and gives the rest back or leaves them for the others.
function updateLimit(server, handle) {
  if (handle.closed) return;
  const max = server.maxConnections;
  const budget = typeof max === 'number' && max >= 0 ? Math.max(0, Math.floor(max) - server._connections) : -1;
  // One call into the addon only when the budget changes (never, without maxConnections).
  if (budget === handle.budget) return;
  handle.budget = budget;
  native.serverLimit(handle.native, budget);
}

function onConnections(server, handle, fds, code) {
  for (const fd of fds) {
    if (handle.closed || (typeof server.maxConnections === 'number' && server._connections >= server.maxConnections)) {
      native.closeFd(fd);
      if (!handle.closed) server.emit('drop', { localAddress: handle.address, localPort: handle.port });
      continue;
    }
    let socket;
    try {
      socket = new net.Socket({
        fd,
        readable: true,
        writable: true,
        allowHalfOpen: server.allowHalfOpen,
        pauseOnCreate: server.pauseOnConnect,
        readableHighWaterMark: server.highWaterMark,
        writableHighWaterMark: server.highWaterMark,
      });
    } catch (err) {
      native.closeFd(fd);
      server.emit('error', err);
      continue;
    }
    if (server.noDelay) socket.setNoDelay(true);
    if (server.keepAlive) socket.setKeepAlive(true, (server.keepAliveInitialDelay || 0) * 1000);
    server._connections++;
    socket.server = server;
    socket._server = server;
    socket.once('close', () => updateLimit(server, handle));
    server.emit('connection', socket);
  }
  updateLimit(server, handle);
  if (code === EBADF) {
    // A disconnect closed the server: stop, and let open connections finish (Node's
    // worker does server.close() too).
    server.close();
  } else if (code < 0) {
    server.emit('error', E.clusterError(code, 'accept'));
  }
}

// A failed listen, worded as Node's workers word the primary's answer: a system error is
// `bind <CODE> <address>:<port>` (`bind <CODE> <path>` for a pipe) with syscall 'bind', and
// a pipe's ENOENT is EACCES, as libuv reports it; libcluster's own failures keep their text.
function bindError(rc, message, address, port, isPipe) {
  // In the primary (cluster.listen there listens here): server.listen()'s own wording.
  if (rc <= -4096 || !native.isWorker()) {
    const err = E.clusterError(rc, 'listen', message);
    err.address = address === null ? '::' : address;
    if (!isPipe) err.port = port;
    return err;
  }
  const { ENOENT, EACCES } = require('node:os').constants.errno;
  const errno = isPipe && rc === -ENOENT ? -EACCES : rc;
  const code = E.codeName(errno);
  const err = new Error(`bind ${code} ${port > 0 ? `${address}:${port}` : address}`);
  err.code = code;
  err.errno = errno;
  err.syscall = 'bind';
  err.address = address;
  err.port = port;
  return err;
}

function start(server, address, port, opts, pipePath) {
  // As Node's cluster workers: a close() while the primary is being asked cancels the listen.
  const listeningId = server._listeningId;
  native.getServer(address, port, opts.backlog, opts.ipv6Only, opts.exclusive, (rc, message, h) => {
    if (server._listeningId !== listeningId) {
      if (rc >= 0) native.serverClose(h);
      return;
    }
    // The channel closed (a disconnect) while the primary was being asked: as in Node, the
    // listen never completes, and no error is raised.
    if (rc === E.CLUSTER_E.CLUSTER_E_CLOSED) return;
    if (rc < 0) {
      server.emit('error', bindError(rc, message, pipePath || address, pipePath ? -1 : port, pipePath));
      return;
    }
    if (server._handle) {
      // Listened some other way meanwhile: give this one back.
      native.serverClose(h);
      return;
    }
    const realPort = native.serverPort(h);
    const handle = pipePath
      ? new PipeClusterHandle(server, h, pipePath, -1, null)
      : new ClusterHandle(server, h, address || '::', realPort, address && net.isIPv4(address) ? 'IPv4' : 'IPv6');
    server._handle = handle;
    if (pipePath) server._pipeName = pipePath;
    servers.add(server);
    server.once('close', () => servers.delete(server));
    const r = native.serverStart(h, (fds, code) => onConnections(server, handle, fds, code));
    if (r < 0) {
      handle.close();
      server._handle = null;
      server.emit('error', E.clusterError(r, 'listen', native.lastError()));
      return;
    }
    if (server._unref) handle.unref();
    updateLimit(server, handle);
    process.nextTick(() => server.emit('listening'));
  }, (opts.readableAll ? 4 : 0) | (opts.writableAll ? 8 : 0));
}

function listen(server, options, callback) {
  if (!(server instanceof net.Server)) throw E.typeError('server', 'an instance of net.Server', server);
  if (typeof options === 'function') {
    callback = options;
    options = undefined;
  }
  if (typeof options === 'number' || typeof options === 'string') options = { port: options };
  if (options === undefined || options === null) options = {};
  E.validateObject(options, 'options');
  if (callback !== undefined) E.validateFunction(callback, 'callback');
  const { host, path: pipePath, backlog = 0, ipv6Only = false, exclusive = false, readableAll = false, writableAll = false } = options;
  const port = options.port === undefined || options.port === null ? 0 : E.validatePort(options.port);
  if (host !== undefined && host !== null) E.validateString(host, 'options.host');
  if (pipePath !== undefined && pipePath !== null) E.validateString(pipePath, 'options.path');
  E.validateInt(backlog, 'options.backlog', 0, 0x7fffffff);
  E.validateBoolean(ipv6Only, 'options.ipv6Only');
  E.validateBoolean(exclusive, 'options.exclusive');
  if (server.listening) {
    const err = new Error('Listen method has been called more than once without closing.');
    err.code = 'ERR_SERVER_ALREADY_LISTEN';
    throw err;
  }
  if (callback) server.once('listening', callback);
  const opts = { backlog, ipv6Only, exclusive, readableAll: readableAll === true, writableAll: writableAll === true };
  if (pipePath) {
    // As Node's workers: a relative name is made absolute here; the primary binds the
    // shorter of it and the path relative to its own cwd (the ~108-byte limit).
    start(server, nodePath.resolve(pipePath), -1, opts, pipePath);
  } else if (host && !net.isIP(host)) {
    dns.lookup(host, (err, address) => {
      if (err) server.emit('error', err);
      else start(server, address, port, opts, null);
    });
  } else {
    start(server, host || null, port, opts, null);
  }
  return server;
}

// In a worker, plain server.listen(...) goes through the cluster, as in a Node worker: the
// arguments are normalised as net.Server.prototype.listen does it (port/host/backlog,
// options object, path, handle/fd), then served by listen() above. A handle, an fd or
// `exclusive: true` keeps Node's own local listen (libcluster binds those in this process
// too, as Node's primary does for an exclusive listen).
const nodeListen = net.Server.prototype.listen;

function toNumber(x) {
  return (x = Number(x)) >= 0 ? x : false;
}

function isPipeName(s) {
  return typeof s === 'string' && toNumber(s) === false;
}

function isNativeHandle(o) {
  const name = o && o.constructor && o.constructor.name;
  return name === 'TCP' || name === 'Pipe';
}

function workerListen(...args) {
  // Node's normalizeArgs.
  let options = {};
  const arg0 = args[0];
  if (args.length === 0) {
    // listen(): a random port.
  } else if (typeof arg0 === 'object' && arg0 !== null) {
    options = arg0;
  } else if (isPipeName(arg0)) {
    options = { path: arg0 };
  } else {
    options = { port: arg0 };
    if (args.length > 1 && typeof args[1] === 'string') options.host = args[1];
  }
  const last = args[args.length - 1];
  const cb = typeof last === 'function' ? last : undefined;

  const target = options._handle || options.handle || options;
  if (target !== options || isNativeHandle(target) ||
      (typeof target.fd === 'number' && target.fd >= 0) || options.exclusive === true) {
    return Reflect.apply(nodeListen, this, args);
  }
  if (this._handle || this.listening) {
    const err = new Error('Listen method has been called more than once without closing.');
    err.code = 'ERR_SERVER_ALREADY_LISTEN';
    throw err;
  }
  // (handle|path|port, backlog) or (port, host, backlog)
  const backlogFromArgs = toNumber(args.length > 1 && args[1]) || toNumber(args.length > 2 && args[2]);
  let port = options.port;
  if (args.length === 0 || typeof arg0 === 'function' ||
      (port === undefined && 'port' in options) || port === null) {
    port = 0;
  }
  const backlog = (options.backlog || backlogFromArgs) | 0;
  const common = {
    backlog: backlog > 0 ? backlog : 0,
    ipv6Only: options.ipv6Only === true,
  };
  if (options.signal !== undefined) addAbortSignal(this, options.signal);
  if (typeof port === 'number' || typeof port === 'string') {
    E.validatePort(port, 'options.port');
    return listen(this, { ...common, port, host: options.host || undefined }, cb);
  }
  if (options.path && isPipeName(options.path)) {
    return listen(this, { ...common, path: options.path, readableAll: options.readableAll === true, writableAll: options.writableAll === true }, cb);
  }
  const err = new TypeError(!('port' in options) && !('path' in options)
    ? `The argument 'options' must have the property "port" or "path". Received ${JSON.stringify(options)}`
    : `The argument 'options' is invalid. Received ${JSON.stringify(options)}`);
  err.code = 'ERR_INVALID_ARG_VALUE';
  throw err;
}

// Node's `signal` option: aborting closes the server.
function addAbortSignal(server, signal) {
  if (signal === null || typeof signal !== 'object' || !('aborted' in signal)) {
    throw E.typeError('options.signal', 'an instance of AbortSignal', signal);
  }
  const onAborted = () => server.close();
  if (signal.aborted) {
    process.nextTick(onAborted);
  } else {
    signal.addEventListener('abort', onAborted, { once: true });
    server.once('close', () => signal.removeEventListener('abort', onAborted));
  }
}

// Called once, when this package is loaded in a worker whose channel is libcluster's.
function interceptListen() {
  if (net.Server.prototype.listen === workerListen) return;
  net.Server.prototype.listen = workerListen;
}

module.exports = { listen, servers, interceptListen };
