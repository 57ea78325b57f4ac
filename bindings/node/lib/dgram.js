// In a worker, dgram socket.bind() goes through the cluster, as in a Node worker: the
// primary binds the address once (Node's shared handle for UDP) and every worker gets the
// same bound socket, which dgram then adopts as its own handle. `exclusive: true`, and a
// bind to an fd, keep Node's own local bind. The worker's clustered sockets are closed when
// it disconnects (cluster.worker.disconnect() or the primary's disconnect), as Node's are.
'use strict';
const dgram = require('node:dgram');
const dns = require('node:dns');
const net = require('node:net');
const native = require('./native');
const E = require('./errors');

const nodeBind = dgram.Socket.prototype.bind;

// Sockets bound through the cluster in this process.
const sockets = new Set();

const UDP = 1;
const REUSE_ADDR = 2;

function kState(socket) {
  return Object.getOwnPropertySymbols(socket).map((s) => socket[s]).find((v) => v && typeof v === 'object' && 'bindState' in v && 'handle' in v);
}

// Node's bind() argument forms: (port[, address][, cb]), (options[, cb]), (cb).
function normalize(args) {
  let cb = args.length && typeof args[args.length - 1] === 'function' ? args[args.length - 1] : undefined;
  const a0 = args[0];
  if (a0 !== null && typeof a0 === 'object') {
    return { port: a0.port, address: a0.address, exclusive: !!a0.exclusive, fd: a0.fd, handle: typeof a0.recvStart === 'function', cb };
  }
  const address = typeof args[1] === 'function' ? undefined : args[1];
  return { port: typeof a0 === 'function' ? 0 : a0, address, exclusive: false, cb };
}

function clusterBind(socket, state, opts) {
  const family = socket.type; // 'udp4' | 'udp6'
  const lookup = (address, done) => {
    if (!address) return done(null, family === 'udp4' ? '0.0.0.0' : '::');
    if (net.isIP(address)) return done(null, address);
    dns.lookup(address, { family: family === 'udp4' ? 4 : 6 }, done);
  };
  lookup(opts.address, (err, address) => {
    if (err) {
      state.bindState = 0; // BIND_STATE_UNBOUND
      socket.emit('error', err);
      return;
    }
    const port = opts.port === undefined || opts.port === null ? 0 : opts.port | 0;
    const flags = UDP | (state.reuseAddr ? REUSE_ADDR : 0);
    native.getServer(address, port, 0, !!state.ipv6Only, false, (rc, message, h) => {
      if (rc < 0) {
        state.bindState = 0;
        const e = E.clusterError(rc, 'bind', message);
        e.address = address;
        e.port = port;
        socket.emit('error', e);
        return;
      }
      const fd = native.serverDupFd(h);
      if (fd < 0) {
        native.serverClose(h);
        state.bindState = 0;
        socket.emit('error', E.clusterError(fd, 'bind', native.lastError()));
        return;
      }
      // Let Node's own bind adopt the shared socket (bindState back to unbound first, as
      // Node's bind checks it; the listening callback was registered above already).
      state.bindState = 0;
      try {
        Reflect.apply(nodeBind, socket, [{ fd, exclusive: true }]);
      } catch (e) {
        native.closeFd(fd);
        native.serverClose(h);
        socket.emit('error', e);
        return;
      }
      const entry = { socket, h };
      sockets.add(entry);
      socket.once('close', () => {
        sockets.delete(entry);
        native.serverClose(h);
      });
    }, flags);
  });
}

function workerBind(...args) {
  const opts = normalize(args);
  if (opts.exclusive || opts.handle || (typeof opts.fd === 'number' && opts.fd > 0)) {
    return Reflect.apply(nodeBind, this, args);
  }
  const state = kState(this);
  if (!state) return Reflect.apply(nodeBind, this, args);
  if (state.bindState !== 0) {
    const err = new Error('Socket is already bound');
    err.code = 'ERR_SOCKET_ALREADY_BOUND';
    throw err;
  }
  if (opts.port !== undefined && opts.port !== null && typeof opts.port !== 'function') E.validatePort(opts.port, 'port');
  state.bindState = 1; // BIND_STATE_BINDING
  if (opts.cb) {
    const socket = this;
    const onListening = () => {
      socket.removeListener('error', onError);
      opts.cb.call(socket);
    };
    const onError = () => socket.removeListener('listening', onListening);
    this.once('listening', onListening);
    this.once('error', onError);
  }
  clusterBind(this, state, opts);
  return this;
}

// Closes every clustered socket (a disconnect); calls `done` once they are closed.
function closeAll(done) {
  const list = [...sockets];
  let waiting = list.length + 1;
  const one = () => {
    if (--waiting === 0 && done) done();
  };
  for (const { socket } of list) {
    try {
      socket.close(one);
    } catch {
      one();
    }
  }
  one();
}

function interceptBind() {
  if (dgram.Socket.prototype.bind === workerBind) return;
  dgram.Socket.prototype.bind = workerBind;
}

module.exports = { interceptBind, closeAll, sockets };
