//! `#[repr(C)]` structs and enums of the C API.

use std::ffi::{c_char, c_int, c_void};

use crate::worker::Server;

/// What happened. The values are stable; new kinds are appended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cluster_event_type {
    /// No event (`cluster_poll_event` timed out).
    CLUSTER_EVENT_NONE = 0,
    /// Primary: a worker was forked (`worker_id`, `pid`).
    CLUSTER_EVENT_FORK = 1,
    /// Primary: a worker said `online`.
    CLUSTER_EVENT_ONLINE = 2,
    /// Primary: a worker is listening (`address`, `port`, `address_type`, `fd`).
    CLUSTER_EVENT_LISTENING = 3,
    /// A message arrived (`data`: its JSON text). Primary: from `worker_id`; worker: from
    /// the primary (`worker_id` 0).
    CLUSTER_EVENT_MESSAGE = 4,
    /// A worker's IPC channel closed (`exited_after_disconnect`).
    CLUSTER_EVENT_DISCONNECT = 5,
    /// Primary: a worker exited (`exit_code`, or -1 and `signal`; `exited_after_disconnect`).
    CLUSTER_EVENT_EXIT = 6,
    /// Something failed (`error`: the code, `data`: the message), e.g. a worker broke the
    /// protocol and its channel was closed.
    CLUSTER_EVENT_ERROR = 7,
    /// Worker, only after `cluster_worker_keep_channel(1)`: the primary asked this worker to
    /// disconnect. Its servers are closed (no new connection comes); the channel stays open
    /// (messages still flow) until the program calls `cluster_worker_disconnect()`, which
    /// it does once its open connections are done, as Node's workers do. DISCONNECT follows.
    CLUSTER_EVENT_DISCONNECT_REQUESTED = 8,
    /// Primary, supervision: a worker is ready (its first `listening`, or its
    /// `cluster_worker_ready()`, or its `online`: `cluster_supervisor.ready_on`).
    CLUSTER_EVENT_READY = 9,
    /// Primary, supervision: a worker's drain moved on. `state`: `CLUSTER_DRAIN_DISCONNECT`
    /// (it gets no new connection from now on; what it had not received goes to the
    /// others), `CLUSTER_DRAIN_TERM` (SIGTERM sent), `CLUSTER_DRAIN_KILL` (SIGKILL sent);
    /// `reason`: a `CLUSTER_REASON_*`.
    CLUSTER_EVENT_DRAINING = 10,
    /// Primary, supervision: a dead worker will be replaced in `delay_ms`; `count`: deaths
    /// in a row (the backoff's exponent).
    CLUSTER_EVENT_RESPAWN = 11,
    /// Primary, supervision: the crash-loop breaker changed `state` (`CLUSTER_BREAKER_*`);
    /// `count`: boot failures within the window.
    CLUSTER_EVENT_BREAKER = 12,
    /// Primary, supervision: a rolling restart's `state` (`CLUSTER_ROLLOUT_*`) for
    /// `generation`; `count`: old workers replaced so far.
    CLUSTER_EVENT_ROLLOUT = 13,
    /// Primary, supervision: a worker's queued connections have not moved for `delay_ms`:
    /// it is drained (SIGTERM at once) and replaced; DRAINING follows.
    CLUSTER_EVENT_STUCK = 14,
    /// Primary, supervision: a worker passed a recycling limit (`reason`:
    /// `CLUSTER_RECYCLE_*`); a new worker starts, and the old one drains once it is ready.
    CLUSTER_EVENT_RECYCLE = 15,
    /// Primary: a signal passed to `cluster_handle_signal` is being acted on (`signal`, and
    /// `state`: its `CLUSTER_ACT_*`).
    CLUSTER_EVENT_CONTROL = 16,
    /// Primary: a hot upgrade of the primary (`cluster_upgrade`, `SIGUSR2`) moved on:
    /// `state` is a `CLUSTER_UPGRADE_*` value, `pid` the other primary's, `error` why it was
    /// aborted (a negative code) or 0.
    CLUSTER_EVENT_UPGRADE = 17,
}

/// `address_type` values (Node's `addressType`; `"udp4"`/`"udp6"` get numbers here).
pub const CLUSTER_ADDRESS_IPV4: c_int = 4;
pub const CLUSTER_ADDRESS_IPV6: c_int = 6;
pub const CLUSTER_ADDRESS_PIPE: c_int = -1;
pub const CLUSTER_ADDRESS_UDP4: c_int = 104;
pub const CLUSTER_ADDRESS_UDP6: c_int = 106;

/// Number of event kinds (one past the last value).
pub const CLUSTER_EVENT_COUNT: c_int = 18;

/// One event, with Node's payload. Fields a kind does not use are 0, -1 or NULL as noted.
///
/// `address` and `data` point into library memory that stays valid until the next
/// `cluster_poll_event` or `cluster_dispatch` call on the same thread (and, for callbacks,
/// until the callback returns). Copy them to keep them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cluster_event {
    pub kind: cluster_event_type,
    /// The worker it concerns (1, 2, ...); 0 for none.
    pub worker_id: c_int,
    /// That worker's pid; 0 for none.
    pub pid: c_int,
    /// EXIT: the exit code, or -1 when a signal ended the worker.
    pub exit_code: c_int,
    /// EXIT: the signal number that ended the worker, or 0.
    pub signal: c_int,
    /// DISCONNECT, EXIT: Node's `worker.exitedAfterDisconnect` (1 if the exit was asked for).
    pub exited_after_disconnect: c_int,
    /// LISTENING: the real bound port (-1 for a Unix socket).
    pub port: c_int,
    /// LISTENING: Node's `addressType`: `CLUSTER_ADDRESS_IPV4` (4), `CLUSTER_ADDRESS_IPV6` (6),
    /// `CLUSTER_ADDRESS_PIPE` (-1), `CLUSTER_ADDRESS_UDP4` or `CLUSTER_ADDRESS_UDP6`.
    pub address_type: c_int,
    /// MESSAGE: a socket that came with the message, now owned by the receiver (close it),
    /// or -1. If a MESSAGE event with an fd is dispatched without a MESSAGE callback, the
    /// library closes the fd. -1 for every other kind: this is the only field that ever
    /// holds an fd of this process.
    pub fd: c_int,
    /// ERROR: the negative code.
    pub error: c_int,
    /// LISTENING: the address asked for (NULL for "any").
    pub address: *const c_char,
    /// MESSAGE: the JSON text; ERROR: the message.
    pub data: *const c_char,
    /// LISTENING: the `fd` number the worker named in its `listening` message (Node's
    /// `address.fd`: a number in the worker's own fd table, -1 when absent). Never an fd of
    /// this process: do not close it.
    pub listening_fd: c_int,
    /// DRAINING, BREAKER, ROLLOUT, CONTROL: the new state (see each kind).
    pub state: c_int,
    /// DRAINING, RECYCLE: why (`CLUSTER_REASON_*`, `CLUSTER_RECYCLE_*`).
    pub reason: c_int,
    /// ROLLOUT: the generation rolled out to.
    pub generation: c_int,
    /// RESPAWN: the delay before the fork; STUCK: how long its connections waited.
    pub delay_ms: c_int,
    /// RESPAWN: deaths in a row; BREAKER: boot failures in the window; ROLLOUT: workers
    /// replaced.
    pub count: c_int,
    /// Room for fields added later without changing the struct's size; always 0.
    pub reserved: [c_int; 2],
}

/// Event callback. `event` is borrowed for the call only. Runs on the thread that calls
/// `cluster_dispatch`/`cluster_run`; it may call any cluster function.
pub type cluster_event_cb = Option<unsafe extern "C" fn(event: *const cluster_event, userdata: *mut c_void)>;

/// Options for `cluster_get_server`. Initialise with `cluster_server_options_init`, then
/// set fields; new fields are only ever appended, and `size` tells the library which exist.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cluster_server_options {
    /// `sizeof(cluster_server_options)` as the caller was compiled.
    pub size: usize,
    /// `listen(2)` backlog; 0 means Node's default (511).
    pub backlog: c_int,
    /// Non-zero: IPv6 only (no dual-stack), Node's `ipv6Only`.
    pub ipv6_only: c_int,
    /// Non-zero: bind in this process instead of asking the primary (Node's `exclusive`).
    pub exclusive: c_int,
    /// Non-zero: `cluster_accept` returns `-EAGAIN` instead of waiting, and connection fds
    /// come with `O_NONBLOCK` set. Zero: `cluster_accept` waits, fds are blocking.
    pub nonblocking: c_int,
    /// Non-zero: a UDP socket (Node's `dgram` bind; always a shared handle). Then
    /// `cluster_server_fd` is the bound datagram socket itself and `cluster_accept` fails
    /// with `-EOPNOTSUPP`. The socket is shared with the primary and the other workers, so
    /// it is non-blocking whatever `nonblocking` says (O_NONBLOCK belongs to the shared
    /// open file): poll it before reading.
    pub udp: c_int,
    /// UDP only: `SO_REUSEADDR` (Node's `reuseAddr`).
    pub reuse_addr: c_int,
    /// A Unix socket path: make the socket file readable (`readable_all`) and writable
    /// (`writable_all`) by every user, as Node's `readableAll` / `writableAll` listen
    /// options do (in a worker, the primary applies them where it binds).
    pub readable_all: c_int,
    pub writable_all: c_int,
}

/// A server obtained with `cluster_get_server`. Opaque; freed by `cluster_server_close`.
pub struct cluster_server {
    pub(crate) inner: Server,
}

/// Settings for later forks (Node's `cluster.setupPrimary`). Initialise with
/// `cluster_settings_init`; NULL fields keep the current value (settings accumulate, as in
/// Node). New fields are only ever appended; `size` tells the library which exist.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cluster_settings {
    /// `sizeof(cluster_settings)` as the caller was compiled.
    pub size: usize,
    /// Program to run (a path, or a name looked up on PATH); it becomes `argv[0]`.
    /// Default: this program.
    pub exec: *const c_char,
    /// NULL-terminated argv after `argv[0]`. Default: this process's `argv[1..]`.
    pub args: *const *const c_char,
    /// Working directory of the worker. Default: the primary's.
    pub cwd: *const c_char,
    /// NULL-terminated `"KEY=VALUE"` entries added to every worker's environment (before
    /// `cluster_fork`'s own `env`). Replaces the earlier list.
    pub env: *const *const c_char,
    /// 1: the worker's stdin/stdout/stderr are pipes to the primary (Node's `silent`;
    /// read them with `cluster_worker_stdio`); 0: inherited; -1: unchanged.
    pub silent: c_int,
    /// NULL, or 3 entries for stdin, stdout, stderr, overriding `silent` (Node's `stdio`):
    /// `CLUSTER_STDIO_INHERIT`, `CLUSTER_STDIO_PIPE`, `CLUSTER_STDIO_IGNORE`, or an fd of
    /// the primary to give the worker (it is duplicated at each fork).
    pub stdio: *const c_int,
    /// User and group ids to run workers as (-1: unchanged/unset).
    pub uid: c_int,
    pub gid: c_int,
    /// `"json"` (the default) or `"advanced"` (rejected: `CLUSTER_E_UNSUPPORTED`).
    pub serialization: *const c_char,
    /// `CLUSTER_SCHED_RR` or `CLUSTER_SCHED_NONE` (Node's `cluster.schedulingPolicy`), or
    /// `CLUSTER_SCHED_REUSEPORT`; 0: unchanged. Fixed once the first worker is forked. The
    /// default comes from `NODE_CLUSTER_SCHED_POLICY` (`rr`, `none` or `reuseport`), else
    /// round-robin.
    pub sched_policy: c_int,
    /// Round-robin only, libcluster workers only: how many connections a worker may have
    /// handed to it before it has accepted the first (Node: 1, the default; Node workers
    /// always get 1). 0: unchanged. Default from `LIBCLUSTER_MAX_INFLIGHT`.
    pub max_in_flight: c_int,
    /// 1: hand each connection to the worker with the fewest unanswered ones (least-loaded)
    /// instead of the longest idle; 0: round-robin; -1: unchanged.
    pub least_loaded: c_int,
    /// Most servers one worker may hold (its next `cluster_get_server` / `listen` then fails
    /// with `EMFILE`); 0: unchanged. Default 64, or `LIBCLUSTER_MAX_SERVERS`.
    pub max_servers: c_int,
    /// How many entries `stdio` has (0: 3). Past 3 (Node's `stdio` with an `'ipc'` entry):
    /// entry n becomes the worker's fd n, and exactly one of entries 3, 4, ... must be
    /// `CLUSTER_STDIO_IPC`, the channel's fd (`NODE_CHANNEL_FD`); there
    /// `CLUSTER_STDIO_PIPE` is a socket pair (read and write both ways, as Node's),
    /// `CLUSTER_STDIO_INHERIT` gives the worker this process's fd of that number. At most 64.
    pub stdio_count: c_int,
}

/// `cluster_settings.stdio` entries (an fd >= 0 is also allowed).
pub const CLUSTER_STDIO_INHERIT: c_int = -1;
pub const CLUSTER_STDIO_PIPE: c_int = -2;
pub const CLUSTER_STDIO_IGNORE: c_int = -3;
/// The channel's place in a `stdio` list longer than 3 (Node's `'ipc'`).
pub const CLUSTER_STDIO_IPC: c_int = -4;

/// Node's scheduling policies (`cluster.SCHED_NONE`, `cluster.SCHED_RR`).
pub const CLUSTER_SCHED_NONE: c_int = 1;
pub const CLUSTER_SCHED_RR: c_int = 2;
/// libcluster's policy: the primary makes one `SO_REUSEPORT` listener per worker for each
/// TCP server (the kernel deals connections, no primary on the path), hands it to the
/// worker as a shared handle (Node workers take it too), and serves what reaches a listener
/// whose worker left. Unix paths and UDP keep round-robin and shared handles.
pub const CLUSTER_SCHED_REUSEPORT: c_int = 3;

/// Node's `worker.state`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cluster_worker_state {
    CLUSTER_WORKER_NONE = 0,
    CLUSTER_WORKER_ONLINE = 1,
    CLUSTER_WORKER_LISTENING = 2,
    CLUSTER_WORKER_DISCONNECTED = 3,
    CLUSTER_WORKER_DEAD = 4,
}

/// `cluster_event.state` of DRAINING.
pub const CLUSTER_DRAIN_DISCONNECT: c_int = 0;
pub const CLUSTER_DRAIN_TERM: c_int = 1;
pub const CLUSTER_DRAIN_KILL: c_int = 2;

/// `cluster_event.reason` of DRAINING: why the worker drains.
pub const CLUSTER_REASON_USER: c_int = 1;
pub const CLUSTER_REASON_ROLLOUT: c_int = 2;
pub const CLUSTER_REASON_RECYCLE: c_int = 3;
pub const CLUSTER_REASON_STUCK: c_int = 4;
pub const CLUSTER_REASON_SCALE_DOWN: c_int = 5;
pub const CLUSTER_REASON_STOP: c_int = 6;
pub const CLUSTER_REASON_BOOT_TIMEOUT: c_int = 7;
/// A new worker of an aborted rolling restart.
pub const CLUSTER_REASON_ABORTED: c_int = 8;

/// `cluster_event.reason` of RECYCLE.
pub const CLUSTER_RECYCLE_CONNECTIONS: c_int = 1;
pub const CLUSTER_RECYCLE_RSS: c_int = 2;
pub const CLUSTER_RECYCLE_AGE: c_int = 3;

/// `cluster_event.state` of BREAKER, and `cluster_stats.breaker`.
pub const CLUSTER_BREAKER_CLOSED: c_int = 0;
pub const CLUSTER_BREAKER_OPEN: c_int = 1;
pub const CLUSTER_BREAKER_HALF_OPEN: c_int = 2;

/// `cluster_event.state` of ROLLOUT.
pub const CLUSTER_ROLLOUT_STARTED: c_int = 1;
pub const CLUSTER_ROLLOUT_STEP: c_int = 2;
pub const CLUSTER_ROLLOUT_DONE: c_int = 3;
/// A new worker failed to become ready: the rollout stopped, the old workers not yet
/// replaced keep serving.
pub const CLUSTER_ROLLOUT_ABORTED: c_int = 4;

/// What a signal does (`cluster_signal_map`, `cluster_event.state` of CONTROL).
pub const CLUSTER_ACT_NONE: c_int = 0;
/// A rolling restart (HUP by default).
pub const CLUSTER_ACT_RELOAD: c_int = 1;
/// One worker more (TTIN by default).
pub const CLUSTER_ACT_SCALE_UP: c_int = 2;
/// One worker fewer, never below 1 (TTOU by default).
pub const CLUSTER_ACT_SCALE_DOWN: c_int = 3;
/// Drain every worker and stop (TERM by default; a second one: fast).
pub const CLUSTER_ACT_STOP_GRACEFUL: c_int = 4;
/// SIGTERM every worker now, SIGKILL after `kill_after_ms` (INT by default; a second
/// one: SIGKILL now).
pub const CLUSTER_ACT_STOP_FAST: c_int = 5;
/// A hot upgrade of the primary (`cluster_upgrade` with the defaults; USR2 by default).
pub const CLUSTER_ACT_UPGRADE: c_int = 6;

/// A hot upgrade of the primary (`cluster_upgrade`). Initialise with
/// `cluster_upgrade_options_init`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cluster_upgrade_options {
    /// `sizeof` the struct (set by `cluster_upgrade_options_init`).
    pub size: usize,
    /// How long the new primary has to become ready (every worker of its supervision
    /// target ready; without a target, every worker listening), in ms; else it is killed
    /// and the upgrade aborted. 60000.
    pub ready_timeout_ms: c_int,
}

/// `cluster_event.state` of UPGRADE.
/// Old primary: the new one was started and given the listening sockets.
pub const CLUSTER_UPGRADE_STARTED: c_int = 1;
/// Both primaries: the new one's workers are ready; the old one stops accepting, forwards
/// what it holds and drains its workers.
pub const CLUSTER_UPGRADE_READY: c_int = 2;
/// New primary: the old one is gone.
pub const CLUSTER_UPGRADE_DONE: c_int = 3;
/// Old primary: the new one died or was not ready in time; it was killed and this primary
/// carries on unchanged (`error` says why).
pub const CLUSTER_UPGRADE_ABORTED: c_int = 4;

/// `cluster_supervisor.ready_on`.
pub const CLUSTER_READY_LISTENING: c_int = 0;
pub const CLUSTER_READY_EXPLICIT: c_int = 1;
pub const CLUSTER_READY_ONLINE: c_int = 2;

/// `cluster_worker_stats.exit_kind`.
pub const CLUSTER_EXIT_NONE: c_int = 0;
/// Drained, disconnected or stopped on purpose.
pub const CLUSTER_EXIT_ASKED: c_int = 1;
/// Died after it was ready.
pub const CLUSTER_EXIT_CRASH: c_int = 2;
/// Died, or was stopped at its boot timeout, before it was ready.
pub const CLUSTER_EXIT_BOOT_FAILURE: c_int = 3;

/// Supervision (`cluster_supervise`). Initialise with `cluster_supervisor_init`, which
/// fills in what a production user would pick, then change fields. Times in milliseconds.
/// New fields are only ever appended; `size` tells the library which exist.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cluster_supervisor {
    /// `sizeof(cluster_supervisor)` as the caller was compiled.
    pub size: usize,
    /// Workers to keep: forked at once, and a dead one replaced. 0: no respawn (Node's).
    pub workers: c_int,
    /// Respawn delay after the n-th death in a row: `base * 2^(n-1)`, at most `max`, drawn
    /// uniformly from its upper half (jitter). 100 and 30000.
    pub backoff_base_ms: c_int,
    pub backoff_max_ms: c_int,
    /// A worker ready this long ends the run of deaths (30000).
    pub stable_ms: c_int,
    /// This many boot failures (deaths, or boot timeouts, before ready) within the window
    /// open the crash-loop breaker (5 in 60000): no fork for `breaker_cooldown_ms` (30000;
    /// 0: until `cluster_breaker_reset`), the healthy workers go on serving; then one probe,
    /// whose readiness closes it.
    pub breaker_burst: c_int,
    pub breaker_window_ms: c_int,
    pub breaker_cooldown_ms: c_int,
    /// `CLUSTER_READY_LISTENING` (default), `CLUSTER_READY_EXPLICIT` or `CLUSTER_READY_ONLINE`.
    pub ready_on: c_int,
    /// Not ready this long after its fork: a boot failure, stopped (60000).
    pub boot_timeout_ms: c_int,
    /// A drain: disconnect at once, SIGTERM after `drain_timeout_ms` (20000), SIGKILL
    /// `kill_after_ms` (5000) later; a graceful stop thus ends within 25 s.
    pub drain_timeout_ms: c_int,
    pub kill_after_ms: c_int,
    /// Connections waiting for a worker that takes none of them this long (seen from the
    /// accept path, no application code): stuck, drained and replaced (20000; 0: off).
    /// Round-robin only: with the shared and reuseport policies the kernel hands
    /// connections to workers directly, and the primary cannot see one wait.
    pub stuck_timeout_ms: c_int,
    /// Recycling, one worker at a time and surge-first: after this many connections
    /// received (round-robin only, as `stuck_timeout_ms`), this resident size in bytes, this
    /// age in ms (0: off); each limit gets up to `recycle_jitter_pct` (10) percent more per
    /// worker.
    pub max_connections: u64,
    pub max_rss_bytes: u64,
    pub max_age_ms: c_int,
    pub recycle_jitter_pct: c_int,
    /// How often resident sizes are read when `max_rss_bytes` is set (1000).
    pub rss_interval_ms: c_int,
    /// New workers a rolling restart starts ahead of the old ones it replaces (1).
    pub max_surge: c_int,
    /// Seed of the jitter (0: from the clock).
    pub seed: u64,
    /// A graceful stop (`CLUSTER_ACT_STOP_GRACEFUL`, SIGTERM) first only says "not ready"
    /// (`cluster_agent_listen`'s agent answers `drain`; no respawn, no rolling restart)
    /// while every worker keeps serving, and begins the drains this many ms later: the
    /// time the load balancer needs to stop sending (agent interval, or Kubernetes'
    /// endpoint propagation; it replaces a `preStop` sleep). A second TERM drains at once.
    /// 0 (default): drain at once. Added in 0.2: callers compiled before have a smaller
    /// `size` and get 0.
    pub drain_delay_ms: c_int,
}

/// One worker's figures (`cluster_worker_stats_get`). Of the connections the primary hands
/// out (round-robin, and reuseport rebalancing; with the shared and reuseport policies the
/// kernel hands the others to workers directly, uncounted): `handed = received + queued +
/// rerouted + lost` at every moment.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cluster_worker_stats {
    /// `sizeof(cluster_worker_stats)` as the caller was compiled.
    pub size: usize,
    pub worker_id: c_int,
    pub pid: c_int,
    pub generation: c_int,
    /// 1 while the process lives.
    pub alive: c_int,
    pub ready: c_int,
    pub draining: c_int,
    /// `CLUSTER_EXIT_*` once gone (with `exit_code`, or -1 and `exit_signal`).
    pub exit_kind: c_int,
    pub exit_code: c_int,
    pub exit_signal: c_int,
    /// Milliseconds after supervision's clock started: forked, ready (-1: not yet).
    pub forked_ms: i64,
    pub ready_ms: i64,
    /// Connections given to it.
    pub handed: u64,
    /// Taken by its program.
    pub received: u64,
    /// Handed and not yet received.
    pub queued: u64,
    /// Taken back and dealt to another worker (refused, stalled, drained, dead).
    pub rerouted: u64,
    /// Handed and never received nor rerouted: 0 by design.
    pub lost: u64,
    /// Accept to handoff, in microseconds (p50 and p99 are bucket bounds: powers of 2).
    pub handoff_us_p50: u64,
    pub handoff_us_p99: u64,
    pub handoff_us_max: u64,
    /// Resident set size (alive workers).
    pub rss_bytes: u64,
}

/// The whole cluster (`cluster_stats_get`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct cluster_stats {
    /// `sizeof(cluster_stats)` as the caller was compiled.
    pub size: usize,
    /// Workers to keep (0: no respawn).
    pub target: c_int,
    /// Workers alive, ready (and not draining), draining.
    pub workers: c_int,
    pub ready: c_int,
    pub draining: c_int,
    /// The current generation (1, then +1 per completed rolling restart).
    pub generation: c_int,
    /// `CLUSTER_BREAKER_*`.
    pub breaker: c_int,
    /// The generation a rolling restart is moving to, 0 when none runs.
    pub rollout: c_int,
    /// 0 running, 1 stopping gracefully, 2 stopping fast.
    pub stopping: c_int,
    /// Forks made to replace dead workers.
    pub respawns: u64,
}
