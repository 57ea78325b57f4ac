"""The dicts the API hands out, as TypedDicts: a ``'listening'`` event's address, a
supervision event's info, and supervision's figures (:func:`libcluster.stats`)."""

from __future__ import annotations

import signal as _signal
from typing import Dict, List, Optional, TypedDict, Union


class ListeningAddress(TypedDict):
    """The ``'listening'`` event's address (Node's): ``addressType`` (4, 6, -1 for a Unix
    socket, 'udp4', 'udp6'), ``address`` (None: every interface), ``port``, ``fd``."""

    addressType: Union[int, str]
    address: Optional[str]
    port: int
    fd: Optional[int]


class SupervisionInfo(TypedDict):
    """What a supervision event says (``cluster_event``'s fields by name). Names come from
    ``cluster.h`` (``CLUSTER_DRAIN_TERM`` is ``'term'``, ``CLUSTER_BREAKER_HALF_OPEN`` is
    ``'half_open'``); a field an event does not use is None or 0.

    - ``state``: ``'draining'``: the drain's stage, ``'disconnect'``, ``'term'`` (SIGTERM
      sent) or ``'kill'`` (SIGKILL sent); ``'breaker'``: ``'closed'``, ``'open'`` or
      ``'half_open'``; ``'rollout'``: ``'started'``, ``'step'``, ``'done'`` or
      ``'aborted'``; ``'control'``: the action, ``'reload'``, ``'scale_up'``,
      ``'scale_down'``, ``'stop_graceful'``, ``'stop_fast'``, ``'upgrade'`` or ``'none'``;
      ``'upgrade'`` (a hot upgrade of the primary, :func:`libcluster.upgrade`):
      ``'started'`` (old primary: the new one runs and has the listeners), ``'ready'``
      (both: the new primary's workers are ready, the old one hands over), ``'done'`` (new
      primary: the old one is gone) or ``'aborted'`` (old primary: the new one failed and
      was killed; nothing changed).
    - ``reason``: ``'draining'``: ``'user'``, ``'rollout'``, ``'recycle'``, ``'stuck'``,
      ``'scale_down'``, ``'stop'``, ``'boot_timeout'`` or ``'aborted'``; ``'recycle'``:
      ``'connections'``, ``'rss'`` or ``'age'``.
    - ``generation``: ``'rollout'``: the generation rolled out to.
    - ``delay_ms``: ``'respawn'``: the delay before the fork; ``'stuck'``: how long its
      connections waited.
    - ``count``: ``'respawn'``: deaths in a row; ``'breaker'``: boot failures in the
      window; ``'rollout'``: old workers replaced so far.
    - ``signal``: ``'control'``: the signal acted on (None for :func:`libcluster.control`).
    - ``pid``: ``'upgrade'``: the other primary's pid (0 for other events).
    - ``error``: ``'upgrade'`` ``'aborted'``: why, a negative errno (``-ECHILD``: the new
      primary exited; ``-EPIPE``/``-ECONNRESET``: it closed its channel; ``-ETIMEDOUT``: not
      ready in time); 0 otherwise.
    """

    state: Optional[str]
    reason: Optional[str]
    generation: int
    delay_ms: int
    count: int
    signal: Optional[_signal.Signals]
    pid: int
    error: int


class WorkerStats(TypedDict):
    """One worker's figures (:func:`libcluster.worker_stats`, ``Worker.stats()``, and each
    entry of :func:`libcluster.stats`'s ``per_worker``). Of the connections the primary
    hands out, ``handed == received + queued + rerouted + lost`` at every moment.

    ``id``, ``pid``, ``generation``; ``alive`` (the process lives), ``ready``,
    ``draining``; once gone, ``exit`` (``'asked'``: drained, disconnected or stopped on
    purpose; ``'crash'``: died after it was ready; ``'boot_failure'``: died, or was stopped
    at its boot timeout, before it was ready; None while alive) with ``exit_code`` (or -1)
    and ``exit_signal`` (or 0); ``forked_ms`` and ``ready_ms`` (milliseconds on
    supervision's clock, -1: not yet); ``handed`` (connections given to it), ``received``
    (taken by its program), ``queued`` (handed, not yet received), ``rerouted`` (taken back
    and dealt to another worker), ``lost`` (0 by design); ``handoff_us`` (accept to handoff
    in microseconds: ``{'p50', 'p99', 'max'}``), ``rss_bytes`` (its resident size).
    """

    id: int
    pid: int
    generation: int
    alive: bool
    ready: bool
    draining: bool
    exit: Optional[str]
    exit_code: int
    exit_signal: int
    forked_ms: int
    ready_ms: int
    handed: int
    received: int
    queued: int
    rerouted: int
    lost: int
    handoff_us: Dict[str, int]
    rss_bytes: int


class ClusterStats(TypedDict):
    """The cluster's figures (:func:`libcluster.stats`): ``target`` (workers to keep, 0: no
    respawn), ``workers`` (alive), ``ready`` (ready and not draining), ``draining``,
    ``generation`` (1, then +1 per completed rolling restart), ``breaker`` (``'closed'``,
    ``'open'`` or ``'half_open'``), ``respawns`` (forks that replaced dead workers),
    ``rollout`` (the generation a rolling restart is moving to, 0 when none runs),
    ``stopping`` (``'no'``, ``'graceful'`` or ``'fast'``) and ``per_worker`` (every worker
    alive, then the most recently gone ones: :class:`WorkerStats`)."""

    target: int
    workers: int
    ready: int
    draining: int
    generation: int
    breaker: str
    respawns: int
    rollout: int
    stopping: str
    per_worker: List[WorkerStats]
