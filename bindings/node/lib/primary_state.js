// The primary's shared state: the cluster object, the worker objects JS knows, pending
// cluster.disconnect() calls and supervision as JS sees it. The other primary_*.js files
// require this one; it requires none of them (so no require cycle can hand out a partly
// filled exports object).
'use strict';
const native = require('./native');
const { createCluster } = require('./common');

const cluster = createCluster(false);
cluster.workers = {};
cluster.settings = {};
cluster.schedulingPolicy = { none: cluster.SCHED_NONE, reuseport: cluster.SCHED_REUSEPORT }[process.env.NODE_CLUSTER_SCHED_POLICY] || cluster.SCHED_RR;

// Every worker not yet both exited and disconnected, by id (also after it left
// cluster.workers): events about it still need its object.
const all = new Map();
// Workers whose 'exit' has not been emitted: they keep the process alive.
const running = new Set();
// cluster.disconnect() calls waiting, in `disconnects.pending`: { cb, waiting: workers
// whose 'disconnect' is still to be emitted, drained: cluster.workers is empty }. As in
// Node, the callback runs once both hold, after the workers' 'disconnect' events.
const disconnects = { pending: [] };
// libcluster's supervision (opt-in: cluster.supervise(), scale(), ...), as JS knows it.
const supervision = {
  // cluster.supervise()'s options so far (each call changes what it names).
  options: {},
  // Workers to keep (0: no respawn), and whether a stop began: while it keeps workers and
  // is not stopping, the primary stays alive with no worker running (a respawn is due, the
  // breaker is open), as cluster_run does in C.
  target: 0,
  stopping: false,
  // Supervision forks workers itself: give them what cluster.fork() gives its own.
  used: false,
  // cluster.rollingRestart() promises by generation.
  rollouts: new Map(),
  // A hot upgrade this primary started (cluster.upgrade(), SIGUSR2): the new primary's pid
  // (0: none), the cluster.upgrade() promise waiting on it, the reason of an abort.
  upgradeTo: 0,
  upgrade: null,
  upgradeReason: null,
};

function updateRef() {
  native.eventsRef(running.size > 0 || disconnects.pending.length > 0 || (supervision.target > 0 && !supervision.stopping));
}

// cluster.workers follows libcluster's table (a worker leaves it once disconnected and
// dead, or at once on worker.disconnect()).
function syncWorkers() {
  const ids = native.workers();
  if (!Array.isArray(ids)) return;
  const listed = new Set(ids);
  for (const id of Object.keys(cluster.workers)) {
    if (!listed.has(Number(id))) delete cluster.workers[id];
  }
}

module.exports = { cluster, all, running, disconnects, supervision, updateRef, syncWorkers };
