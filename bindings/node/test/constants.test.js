// The binding copies no number from cluster.h: the addon exports the header's values
// (`native.constants`, compiled against it) and lib/*.js reads them. This checks the export
// against the header text, and the public constants against the export.
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const cluster = require('libcluster-node');
const native = require('../lib/native');
const { includeDir } = require('../scripts/paths');

function headerValues() {
  const text = fs.readFileSync(path.join(includeDir, 'cluster.h'), 'utf8');
  const out = {};
  for (const m of text.matchAll(/^#define CLUSTER_([A-Z0-9_]+) (-?\d+)$/gm)) out[m[1]] = Number(m[2]);
  for (const m of text.matchAll(/^\s+CLUSTER_([A-Z0-9_]+) = (-?\d+),?$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

test('native.constants is the header, name for name', () => {
  const header = headerValues();
  const { EVENT_DRAINED, ...exported } = native.constants;
  assert.strictEqual(EVENT_DRAINED, -1);
  for (const [name, value] of Object.entries(exported)) {
    assert.strictEqual(header[name], value, `CLUSTER_${name}`);
  }
  // Every event kind, scheduling policy, stdio value and error code of the header is exported.
  for (const name of Object.keys(header).filter((n) => /^(EVENT|SCHED|STDIO|E)_/.test(n))) {
    assert.ok(Object.hasOwn(exported, name), `CLUSTER_${name} is not in native.constants`);
  }
});

test('the public constants come from it', () => {
  const c = native.constants;
  assert.strictEqual(cluster.SCHED_NONE, c.SCHED_NONE);
  assert.strictEqual(cluster.SCHED_RR, c.SCHED_RR);
  assert.strictEqual(cluster.SCHED_REUSEPORT, c.SCHED_REUSEPORT);
  const { CLUSTER_E } = require('../lib/errors');
  assert.strictEqual(CLUSTER_E.CLUSTER_E_CLOSED, c.E_CLOSED);
  assert.strictEqual(Object.keys(CLUSTER_E).length, Object.keys(c).filter((n) => n.startsWith('E_')).length);
});
