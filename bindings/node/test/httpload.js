// A small, bounded HTTP load for the tests that replace workers or the primary under it
// (supervision-rollout.test.js, upgrade.test.js): clients of examples/node/hello.js, each
// sending GET / one at a time until stopped, counting every failure. Not a test file.
'use strict';
const http = require('node:http');
const { sleep } = require('./helpers');

const BODY = /^hello from worker (\d+)\n$/;

// One GET /. Resolves { pid, close, fresh } or { error, fresh, responded }.
function request(port, agent) {
  return new Promise((resolve) => {
    let responded = false;
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      responded = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        const m = BODY.exec(body);
        if (res.statusCode !== 200 || !m) resolve({ error: new Error(`status ${res.statusCode}, body ${JSON.stringify(body)}`), responded, fresh: !req.reusedSocket });
        else resolve({ pid: Number(m[1]), close: res.headers.connection === 'close', fresh: !req.reusedSocket });
      });
      res.on('error', (error) => resolve({ error, responded, fresh: !req.reusedSocket }));
    });
    req.setTimeout(10000, () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (error) => resolve({ error, responded, fresh: !req.reusedSocket }));
  });
}

// Clients sending GET / one at a time until stop(): keep-alive ones (an agent with one
// socket) and ones with a new connection per request. The retry rule of Node's agent
// documentation (and RFC 9110 §9.2.2): an idempotent request on a reused connection that
// closed before any byte of its response is sent again on a new connection; anything else
// that goes wrong is a failure.
function load(port, { keepAlive, plain }) {
  const state = { stop: false, ok: 0, retried: 0, failures: [], pids: new Map(), connections: 0 };
  const one = async (agent, name) => {
    while (!state.stop) {
      let r = await request(port, agent);
      if (r.fresh) state.connections++;
      if (r.error && !r.fresh && !r.responded && ['ECONNRESET', 'EPIPE'].includes(r.error.code)) {
        state.retried++;
        r = await request(port, agent);
        if (r.fresh) state.connections++;
      }
      if (r.error) {
        state.failures.push(`${name}: ${r.error.code || ''} ${r.error.message} (${r.fresh ? 'new' : 'reused'} connection)`);
        await sleep(10);
        continue;
      }
      state.ok++;
      state.pids.set(r.pid, (state.pids.get(r.pid) || 0) + 1);
    }
  };
  const agents = [];
  const runs = [];
  for (let i = 0; i < keepAlive; i++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    runs.push(one(agent, `keep-alive client ${i}`));
  }
  for (let i = 0; i < plain; i++) runs.push(one(false, `client ${i}`));
  state.stopAndWait = async () => {
    state.stop = true;
    await Promise.all(runs);
    for (const a of agents) a.destroy();
    return state;
  };
  return state;
}

module.exports = { load, request };
