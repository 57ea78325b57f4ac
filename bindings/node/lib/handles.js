// Sockets that travel with messages (Node's `sendHandle`): a net.Socket, a net.Server or a
// dgram.Socket on the way out; the same kinds rebuilt from the received fd on the way in.
'use strict';
const net = require('node:net');
const dgram = require('node:dgram');
const native = require('./native');
const { typeError } = require('./errors');

// The fd to pass for `handle` (libcluster sends a duplicate; the caller keeps its own).
function handleFd(handle) {
  let fd;
  if (handle instanceof net.Socket || handle instanceof net.Server) {
    fd = handle._handle ? handle._handle.fd : null;
  } else if (handle instanceof dgram.Socket) {
    const state = Object.getOwnPropertySymbols(handle).map((s) => handle[s]).find((v) => v && v.handle && typeof v.handle.fd === 'number');
    fd = state ? state.handle.fd : null;
  } else {
    throw typeError('handle', 'an instance of net.Socket, net.Server or dgram.Socket', handle);
  }
  // A socket already sent (and so closed here) goes no further: as in Node, the message is
  // sent without it.
  if (fd === undefined || fd === null) return -1;
  if (typeof fd !== 'number' || fd < 0) {
    const err = new TypeError('This handle type cannot be sent (it has no file descriptor of its own)');
    err.code = 'ERR_INVALID_HANDLE_TYPE';
    throw err;
  }
  return fd;
}

// Wraps a received fd (ours to close) in the matching Node object.
function wrapFd(fd) {
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const info = native.fdInfo(fd);
  try {
    if (info.type === 'stream' && info.listening) {
      const server = net.createServer();
      server.listen({ fd });
      return server;
    }
    if (info.type === 'stream') return new net.Socket({ fd, readable: true, writable: true });
    if (info.type === 'dgram') {
      const sock = dgram.createSocket(info.domain === 'inet6' ? 'udp6' : 'udp4');
      sock.bind({ fd });
      return sock;
    }
  } catch (err) {
    native.closeFd(fd);
    throw err;
  }
  native.closeFd(fd);
  return undefined;
}

module.exports = { handleFd, wrapFd };
