// Test helpers: real processes, every one of them stopped by pid (and its process group)
// when the test ends, pass or fail; waits are bounded and carry a description, and no
// test asserts on timings.
'use strict';
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const readline = require('node:readline');

const PKG = path.resolve(__dirname, '..');
const ROOT = path.resolve(PKG, '..', '..');
const FIXTURES = path.join(__dirname, 'fixtures');
const LAUNCHER = path.join(PKG, 'bin', 'libcluster-node');
const C_HELLO = path.join(ROOT, 'target', 'examples', 'hello');
const RUST_FIXTURE = path.join(ROOT, 'target', 'debug', 'examples', 'fixture');
const WAIT_MS = Number(process.env.LIBCLUSTER_TEST_WAIT_MS || 20000);

function requireFile(file, how) {
  assert.ok(fs.existsSync(file), `${file} is missing: ${how}`);
  return file;
}

// The environment for a process under test: ours, minus anything that would make it a
// worker or a test-runner child, plus `extra`.
function cleanEnv(extra = {}) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) {
    if (k.startsWith('NODE_UNIQUE') || k.startsWith('NODE_CHANNEL') || k.startsWith('LIBCLUSTER_NODE_') || k === 'NODE_TEST_CONTEXT') delete env[k];
  }
  return { ...env, ...extra };
}

function procState(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0], pgid: Number(fields[2]) };
  } catch {
    return null;
  }
}

const alive = (pid) => {
  const s = procState(pid);
  return s !== null && s.state !== 'Z' && s.state !== 'X';
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A process under test, in its own process group (its workers join it). stdout is read as
// lines (JSON when it parses); every pid a line mentions is remembered, to be stopped too.
class Proc {
  constructor(cmd, args, { env = {}, cwd = ROOT, name = path.basename(args[0] || cmd) } = {}) {
    this.name = name;
    this.lines = [];
    this.stderr = '';
    this.pids = new Set();
    this.waiters = [];
    this.child = spawn(cmd, args, { cwd, env: cleanEnv(env), stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    this.pid = this.child.pid;
    this.pgid = this.child.pid;
    this.pids.add(this.pid);
    this.exit = null;
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
        this.check();
      });
      this.child.on('error', (err) => {
        this.exit = { code: null, signal: null, error: err };
        resolve(this.exit);
        this.check();
      });
    });
    this.child.stdin.on('error', () => {});
    readline.createInterface({ input: this.child.stdout }).on('line', (raw) => this.onLine(raw));
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d) => {
      this.stderr += d;
    });
  }

  onLine(raw) {
    let json = null;
    try {
      json = JSON.parse(raw);
    } catch {}
    if (json && typeof json === 'object') {
      for (const k of ['pid', 'ready']) if (Number.isInteger(json[k]) && json[k] > 0) this.pids.add(json[k]);
    }
    for (const m of raw.matchAll(/[Ww]orker (\d+)/g)) this.pids.add(Number(m[1]));
    this.lines.push({ raw, json });
    this.check();
  }

  check() {
    this.waiters = this.waiters.filter((w) => !w.poll());
  }

  // The first line (from index `from`) for which `pred(json, raw)` is truthy.
  waitFor(what, pred, { from = 0, timeout = WAIT_MS } = {}) {
    return new Promise((resolve, reject) => {
      const waiter = {
        poll: () => {
          for (let i = from; i < this.lines.length; i++) {
            const { raw, json } = this.lines[i];
            let ok = false;
            try {
              ok = pred(json || {}, raw);
            } catch {}
            if (ok) {
              clearTimeout(timer);
              resolve(json || raw);
              return true;
            }
          }
          if (this.exit) {
            clearTimeout(timer);
            reject(new Error(`${this.name} exited (${JSON.stringify(this.exit)}) before: ${what}\n${this.transcript()}`));
            return true;
          }
          return false;
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.name}: gave up waiting (${timeout} ms bound) for: ${what}\n${this.transcript()}`));
      }, timeout);
      if (!waiter.poll()) this.waiters.push(waiter);
    });
  }

  // Waits for an event line {"event": name, ...} matching `fields`.
  event(name, fields = {}, opts) {
    return this.waitFor(`${name} ${JSON.stringify(fields)}`, (j) => j.event === name && Object.entries(fields).every(([k, v]) => j[k] === v), opts);
  }

  // Sends a command line and waits for the reply line {"reply": cmd, ...}.
  async command(cmd, extra = {}) {
    const from = this.lines.length;
    this.child.stdin.write(`${JSON.stringify({ cmd, ...extra })}\n`);
    const reply = await this.waitFor(`reply to ${cmd}`, (j) => j.reply === cmd, { from });
    return reply;
  }

  write(line) {
    this.child.stdin.write(`${line}\n`);
  }

  transcript() {
    const out = this.lines.slice(-60).map((l) => `  | ${l.raw}`).join('\n');
    const err = this.stderr.trim() ? `\n  stderr:\n${this.stderr.trim().split('\n').slice(-30).map((l) => `  ! ${l}`).join('\n')}` : '';
    return `  ${this.name} output:\n${out}${err}`;
  }

  // SIGKILLs the process, its group and every pid it mentioned that is still in its group,
  // then waits (bounded) until they are gone.
  async stop() {
    const targets = [...this.pids].filter((pid) => {
      const s = procState(pid);
      return s && s.pgid === this.pgid;
    });
    for (const pid of targets) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    try {
      process.kill(-this.pgid, 'SIGKILL');
    } catch {}
    try {
      this.child.stdin.destroy();
    } catch {}
    const deadline = Date.now() + 10000;
    let timer;
    await Promise.race([this.exited, new Promise((r) => (timer = setTimeout(r, 10000)))]);
    clearTimeout(timer);
    while (Date.now() < deadline && targets.some(alive)) await sleep(20);
    const left = targets.filter(alive);
    assert.deepStrictEqual(left, [], `${this.name}: processes left running after SIGKILL: ${left.join(', ')}`);
  }
}

// Starts a process and registers its stop() with the test (runs even on failure).
function start(t, cmd, args, opts) {
  const p = new Proc(cmd, args, opts);
  (t.procs || (t.procs = [])).push(p);
  t.after(() => p.stop());
  return p;
}

// node:test's test() (bounded: 60 s unless told), plus: a failure's message ends with the
// output of every process the test started.
function scenario(name, options, fn) {
  if (typeof options === 'function') {
    fn = options;
    options = {};
  }
  options = { timeout: 60000, ...options };
  return require('node:test').test(name, options, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      if (err && typeof err === 'object' && t.procs) {
        const more = t.procs.map((p) => p.transcript()).join('\n');
        try {
          err.message = `${err.message}\n${more}`;
        } catch {}
      }
      throw err;
    }
  });
}

// An addon primary driven by JSON commands on stdin (test/fixtures/primary.js).
function addonPrimary(t, env = {}, args = []) {
  return start(t, process.execPath, [path.join(FIXTURES, 'primary.js'), ...args], { env, name: 'addon primary' });
}

// One HTTP GET to 127.0.0.1:port (a new connection each time), bounded.
function get(port, pathName = '/', { timeout = WAIT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathName, agent: false, headers: { Connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.setTimeout(timeout, () => req.destroy(new Error(`GET http://127.0.0.1:${port}${pathName}: no answer within the ${timeout} ms bound`)));
    req.on('error', reject);
  });
}

// GETs until every pid in `pids` has answered "hello from worker <pid>"; bounded in count.
async function everyWorkerAnswers(port, pids, { max = 60 } = {}) {
  const want = new Set(pids);
  const seen = new Set();
  for (let i = 0; i < max && [...want].some((p) => !seen.has(p)); i++) {
    const { status, body } = await get(port);
    assert.strictEqual(status, 200);
    const m = /^hello from worker (\d+)\n$/.exec(body);
    assert.ok(m, `unexpected body ${JSON.stringify(body)}`);
    assert.ok(want.has(Number(m[1])), `answered by ${m[1]}, not one of ${[...want].join(', ')}`);
    seen.add(Number(m[1]));
  }
  assert.deepStrictEqual([...seen].sort(), [...want].sort(), `not every worker answered in ${max} requests`);
}

module.exports = {
  scenario,
  PKG,
  ROOT,
  FIXTURES,
  LAUNCHER,
  C_HELLO,
  RUST_FIXTURE,
  WAIT_MS,
  Proc,
  start,
  addonPrimary,
  get,
  everyWorkerAnswers,
  requireFile,
  alive,
  sleep,
};
