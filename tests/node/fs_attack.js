// An unprivileged Node cluster worker (run as uid 65534 by a root primary, tests/fs_privilege.rs)
// that tries to make the primary touch files it may not touch itself through a Unix socket
// path. DIR: a directory this worker owns; TARGET: a root-only directory.
//   ATTACK=create  listen on DIR/d/x.sock where DIR/d is a symlink to TARGET
//   ATTACK=unlink  listen on DIR/d/victim.txt, then swap DIR/d for a symlink to TARGET and
//                  close the server (the primary removes the path when the last worker leaves)
//   ATTACK=legit   listen on DIR/ok.sock, answer "legit <pid>\n", close on the message 'close'
// Reports {result, code?} with process.send.
'use strict';
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const { ATTACK: mode, DIR: dir, TARGET: target } = process.env;
const report = (r) => process.send(r);

if (mode === 'create') {
  fs.symlinkSync(target, path.join(dir, 'd'));
  const s = net.createServer();
  s.once('error', (e) => report({ result: 'error', code: e.code }));
  s.listen(path.join(dir, 'd', 'x.sock'), () => report({ result: 'listening' }));
} else if (mode === 'unlink') {
  fs.mkdirSync(path.join(dir, 'd'));
  const s = net.createServer();
  s.once('error', (e) => report({ result: 'error', code: e.code }));
  s.listen(path.join(dir, 'd', 'victim.txt'), () => {
    fs.renameSync(path.join(dir, 'd'), path.join(dir, 'd.old'));
    fs.symlinkSync(target, path.join(dir, 'd'));
    s.close(() => report({ result: 'closed' }));
  });
} else {
  const p = path.join(dir, 'ok.sock');
  const s = net.createServer((c) => c.end(`legit ${process.pid}\n`));
  s.once('error', (e) => report({ result: 'error', code: e.code }));
  s.listen(p, () => report({ result: 'listening', path: p }));
  process.on('message', (m) => {
    if (m === 'close') s.close(() => report({ result: 'closed' }));
  });
}
