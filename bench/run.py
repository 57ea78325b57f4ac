#!/usr/bin/env python3
"""libcluster benchmark: new connections per second, latency, fairness and CPU per
connection of libcluster against Node 20's cluster (rr and none) and an SO_REUSEPORT C
server, in interleaved rounds (A B C ..., A B C ...), on 127.0.0.1.

    python3 bench/run.py [--short] [--rounds N] [--seconds S] [--workers 2,4] [--conc 1,32]
    python3 bench/run.py --scenario slow [--short] [--slow-ms 5] ...
    python3 bench/run.py --scenario python [--short] ...    (make bench-python)

Scenarios:
  main  every server of MAIN_ROWS (default: 5 rounds, 2 and 4 workers, 1 and 32 conns, 5 s);
  slow  one of 2 workers takes --slow-ms (5) ms per request (BENCH_SLOW_MS, read by
        bench/reuseport.c's first worker and examples/hello.c's worker 1), the other none;
        compares latency and the slow worker's share across SLOW_ROWS (default: 3 rounds,
        8 and 32 conns, 3 s).
  python  the Python runner (`python -m libcluster`, round-robin through the primary)
        against gunicorn's sync workers, the same WSGI app (bench/bench_wsgi.py) and
        interpreter (target/benchvenv, gunicorn from PyPI); reports how the responses
        spread over the workers (default: 3 rounds, 2 and 4 workers, 1, 8 and 32 conns, 10 s).
--short: 1 round, 2 workers, 2 s. A server that does not start (or dies) is skipped with a
warning; the rest of the run goes on. Prints a Markdown table; --out FILE also writes it
(RESULTS.md keeps the commentary)."""
import argparse, json, os, signal, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "bench")
HELLO = os.path.join(ROOT, "target", "examples-release", "hello")
# The Python rows: one interpreter for both (the venv gunicorn is installed in).
BENCHVENV = os.path.join(ROOT, "target", "benchvenv", "bin")
# bench/cluster_server.c: the libcluster twin of reuseport.c (same worker shape).
CLUSTER = os.path.join(ROOT, "target", "bench", "cluster_server")
TICK = os.sysconf("SC_CLK_TCK")
# Variables that select a row's behaviour: never inherited from the caller's environment.
ROW_ENV = ("NODE_CLUSTER_SCHED_POLICY", "LIBCLUSTER_FAST_LANE", "LIBCLUSTER_MAX_INFLIGHT",
           "BENCH_SLOW_MS", "BENCH_SUPERVISE")


def rows():
    """name -> (command, extra environment). Rows not in MAIN_ROWS/SLOW_ROWS run with --only."""
    node = os.path.join(ROOT, "bench", "node_server.js")
    addon = os.path.join(ROOT, "bench", "node_addon_server.js")
    r = {
        "reuseport": ([os.path.join(BIN, "reuseport")], {}),
        # bench/handoff_model.c: the fast lane's bare shape in plain C (the primary accepts and
        # passes each fd over a SOCK_SEQPACKET pair, no library): the floor of that design.
        "handoff-model": ([os.path.join(BIN, "handoff_model")], {}),
        # The libcluster rows run bench/cluster_server.c, whose workers have reuseport.c's
        # shape (blocking accept, read, write, close), so a ratio compares how connections
        # reach workers, not two server designs.
        # Default round-robin: between libcluster peers this is the fast lane.
        "libcluster-rr": ([CLUSTER], {}),
        # The same, its workers kept by libcluster's supervision (stats, stuck detection).
        "libcluster-rr-supervised": ([CLUSTER], {"BENCH_SUPERVISE": "1"}),
        # Round-robin forced onto Node's protocol (what a Node peer gets).
        "libcluster-rr-nodepath": ([CLUSTER], {"LIBCLUSTER_FAST_LANE": "0"}),
        # One SO_REUSEPORT listener per worker, created by the primary.
        "libcluster-reuseport": ([CLUSTER], {"NODE_CLUSTER_SCHED_POLICY": "reuseport"}),
        "libcluster-shared": ([CLUSTER], {"NODE_CLUSTER_SCHED_POLICY": "none"}),
        "libcluster-rr-inflight4": ([CLUSTER], {"LIBCLUSTER_FAST_LANE": "0", "LIBCLUSTER_MAX_INFLIGHT": "4"}),
        # The demo (examples/hello.c, a poll loop with non-blocking connections), round-robin.
        "demo-rr": ([HELLO], {}),
        "node-rr": (["node", node], {"NODE_CLUSTER_SCHED_POLICY": "rr"}),
        "node-none": (["node", node], {"NODE_CLUSTER_SCHED_POLICY": "none"}),
        "node-addon-libcluster": (["node", addon], {}),
    }
    # The Python rows ({workers} and {port} are filled in per server): the runner on the
    # release library and the repository's package, and gunicorn's default (sync) workers.
    py_common = ["--chdir", os.path.join(ROOT, "bench"), "--log-level", "warning", "bench_wsgi:app"]
    r["py-runner"] = ([os.path.join(BENCHVENV, "python"), "-m", "libcluster", "--workers", "{workers}",
                       "--bind", "127.0.0.1:{port}", *py_common],
                      {"LIBCLUSTER_LIBRARY": os.path.join(ROOT, "target", "release", "libcluster.so"),
                       "PYTHONPATH": os.path.join(ROOT, "bindings", "python")})
    r["gunicorn-sync"] = ([os.path.join(BENCHVENV, "gunicorn"), "--workers", "{workers}",
                           "--bind", "127.0.0.1:{port}", *py_common], {})
    for name, path in COMPARE:
        r[name] = ([path], {})
    return r


COMPARE = []  # extra (name, hello binary) rows from --compare
MAIN_ROWS = ["reuseport", "libcluster-rr", "libcluster-rr-nodepath", "libcluster-reuseport",
             "libcluster-shared", "demo-rr", "node-rr", "node-none", "node-addon-libcluster"]
# Rows whose servers implement BENCH_SLOW_MS (the C ones).
SLOW_ROWS = ["reuseport", "libcluster-reuseport", "libcluster-rr", "libcluster-rr-nodepath"]
PY_ROWS = ["py-runner", "gunicorn-sync"]
SLOW_CAPABLE = {"reuseport", "libcluster-rr", "libcluster-rr-nodepath", "libcluster-reuseport",
                "libcluster-shared", "libcluster-rr-inflight4", "demo-rr"}


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def cpu_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except OSError:
        return 0


def is_slow_worker(pid):
    """The worker BENCH_SLOW_MS slows down: reuseport.c's renamed first worker, or the
    libcluster worker with NODE_UNIQUE_ID=1."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "reuseport-slow":
                return True
        with open(f"/proc/{pid}/environ", "rb") as f:
            return b"NODE_UNIQUE_ID=1" in f.read().split(b"\0")
    except OSError:
        return False


class Server:
    def __init__(self, name, cmd, env, workers):
        self.name, self.port, self.proc = name, free_port(), None
        e = {k: v for k, v in os.environ.items() if k not in ROW_ENV}
        e.update(WORKERS=str(workers), PORT=str(self.port), **env)
        cmd = [c.format(workers=workers, port=self.port) for c in cmd]
        if not os.path.exists(cmd[0]) and os.sep in cmd[0]:
            raise RuntimeError(f"{name}: {cmd[0]} is missing (make bench-bins, or bench-python)")
        self.proc = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{name} exited with status {self.proc.returncode} before answering")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"{name} did not answer within 15 s")
        if name in PY_ROWS:  # Python workers boot for a while: wait until all are there
            while len(self.pids()) < workers + 1 and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
        time.sleep(0.3)  # let every worker come up

    def pids(self):
        return descendants(self.proc.pid)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        for pid in reversed(self.pids()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:  # workers orphaned by a primary that died early: same process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait(timeout=10)


def measure(srv, conc, seconds, slow=False, workers=0):
    pids = srv.pids()
    before = {p: cpu_ticks(p) for p in pids}
    out = subprocess.run([os.path.join(BIN, "loadgen"), str(srv.port), str(conc), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    r = json.loads(out)
    after = {p: cpu_ticks(p) for p in pids}
    used = {p: (after[p] - before[p]) / TICK for p in pids}
    conns = max(r["conns"], 1)
    r["cpu_primary_us"] = used[srv.proc.pid] / conns * 1e6
    r["cpu_total_us"] = sum(used.values()) / conns * 1e6
    shares = list(r["per_worker"].values())
    r["fair_maxmin"] = max(shares) / max(min(shares), 1) if shares else 0
    r["fair_cv"] = statistics.pstdev(shares) / statistics.mean(shares) if shares else 0
    r["workers_seen"] = len(shares)
    # Over every worker, those that served nothing included: the smallest and largest share
    # of the responses (%), and the coefficient of variation.
    padded = shares + [0] * max(0, workers - len(shares))
    total = sum(padded)
    r["share_min"] = min(padded) / total * 100 if total else None
    r["share_max"] = max(padded) / total * 100 if total else None
    r["cv_all"] = statistics.pstdev(padded) / statistics.mean(padded) if total else None
    r["slow_share"] = None
    if slow:  # the slow worker's share of the responses, in %
        slowest = [p for p in srv.pids() if p != srv.proc.pid and is_slow_worker(p)]
        if slowest and sum(shares):
            r["slow_share"] = sum(r["per_worker"].get(str(p), 0) for p in slowest) / sum(shares) * 100
    return r


def fmt(vals, digits=0):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    med = statistics.median(vals)
    if len(vals) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(vals):.{digits}f}–{max(vals):.{digits}f})"


def table(results, scenario):
    """results: (workers, conc, name) -> {round: result}; ratios within each round."""
    if scenario == "python":
        lines = ["| workers | conc | server | conns/s | p50 µs | p99 µs | CPU primary µs/conn | CPU total µs/conn | min share % | max share % | CV | errors |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    elif scenario == "slow":
        lines = ["| workers | conc | server | conns/s | p50 µs | p99 µs | p50 ratio to reuseport | p99 ratio | slow worker's share % | errors |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
    else:
        lines = ["| workers | conc | server | conns/s | ratio to reuseport | p50 µs | p99 µs | p50 ratio | CPU primary µs/conn | CPU total µs/conn | CPU ratio | fairness max/min | CV | errors |",
                 "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (w, conc, name), by_round in sorted(results.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        rs = list(by_round.values())
        ref = results.get((w, conc, "reuseport"), {})

        def ratio(key):
            return [r[key] / max(ref[n][key], 1e-9) for n, r in by_round.items() if n in ref]

        col = lambda key, d=0: fmt([r[key] for r in rs], d)
        errors = sum(r["errors"] for r in rs)
        if scenario == "python":
            lines.append(f"| {w} | {conc} | {name} | {col('conns_per_s')} | {col('p50_us')} | {col('p99_us')} | "
                         f"{col('cpu_primary_us', 1)} | {col('cpu_total_us', 1)} | {col('share_min', 1)} | "
                         f"{col('share_max', 1)} | {col('cv_all', 3)} | {errors} |")
        elif scenario == "slow":
            lines.append(f"| {w} | {conc} | {name} | {col('conns_per_s')} | {col('p50_us')} | {col('p99_us')} | "
                         f"{fmt(ratio('p50_us'), 2)} | {fmt(ratio('p99_us'), 2)} | {col('slow_share', 1)} | {errors} |")
        else:
            lines.append(
                f"| {w} | {conc} | {name} | {col('conns_per_s')} | {fmt(ratio('conns_per_s'), 2)} | "
                f"{col('p50_us')} | {col('p99_us')} | {fmt(ratio('p50_us'), 2)} | "
                f"{col('cpu_primary_us', 1)} | {col('cpu_total_us', 1)} | {fmt(ratio('cpu_total_us'), 2)} | "
                f"{col('fair_maxmin', 3)} | {col('fair_cv', 3)} | {errors} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=("main", "slow", "python"), default="main")
    ap.add_argument("--short", action="store_true", help="1 round, 2 workers, 2 s")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--workers")
    ap.add_argument("--conc")
    ap.add_argument("--slow-ms", type=int, default=5, help="slow scenario: the slow worker's delay")
    ap.add_argument("--only", default="", help="comma-separated server names (any known row)")
    ap.add_argument("--out")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=HELLO",
                    help="also run another build of the demo (before/after comparisons)")
    a = ap.parse_args()
    for c in a.compare:
        name, path = c.split("=", 1)
        COMPARE.append((name, os.path.abspath(path)))
    slow = a.scenario == "slow"
    defaults = (3, 3, "2", "8,32") if slow else (5, 5, "2,4", "1,32")
    if a.scenario == "python":
        defaults = (3, 10, "2,4", "1,8,32")
    if a.short:
        defaults = (1, 2, "2", defaults[3])
    a.rounds = a.rounds or defaults[0]
    a.seconds = a.seconds or defaults[1]
    a.workers = a.workers or defaults[2]
    a.conc = a.conc or defaults[3]
    if not 0 < a.seconds <= 60 or not 0 < a.rounds <= 20:
        ap.error("--seconds must be in (0, 60] and --rounds in 1..20")

    known = rows()
    if a.only:
        names = [n for n in a.only.split(",") if n]
        for n in names:
            if n not in known:
                warn(f"unknown row {n!r} (known: {', '.join(known)})")
            elif slow and n not in SLOW_CAPABLE and n not in dict(COMPARE):
                warn(f"{n} does not implement BENCH_SLOW_MS: its workers are all fast")
        names = [n for n in names if n in known]
    else:
        names = {"slow": SLOW_ROWS, "python": PY_ROWS}.get(a.scenario, MAIN_ROWS) + [n for n, _ in COMPARE]
    if "node-addon-libcluster" in names and not os.path.exists(
            os.path.join(ROOT, "bindings", "node", "build", "Release")):
        warn("node-addon-libcluster skipped: the addon is not built (cd bindings/node && npm install)")
        names = [n for n in names if n != "node-addon-libcluster"]
    extra_env = {"BENCH_SLOW_MS": str(a.slow_ms)} if slow else {}

    results = {}  # (workers, conc, name) -> {round: result}
    for rnd in range(a.rounds):
        for w in map(int, a.workers.split(",")):
            running = []
            try:
                for n in names:
                    cmd, env = known[n]
                    try:
                        running.append(Server(n, cmd, {**env, **extra_env}, w))
                    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                        warn(f"round {rnd + 1} workers {w}: skipping {n}: {e}")
                for conc in map(int, a.conc.split(",")):
                    for srv in running:  # interleaved: A B C ... within each round
                        if not srv.alive():
                            warn(f"{srv.name} exited (status {srv.proc.returncode}); skipping it")
                            continue
                        try:
                            r = measure(srv, conc, a.seconds, slow, w)
                        except (subprocess.SubprocessError, ValueError, KeyError) as e:
                            warn(f"round {rnd + 1} workers {w} conc {conc} {srv.name}: measurement failed: {e}")
                            continue
                        results.setdefault((w, conc, srv.name), {})[rnd] = r
                        share = f" slow {r['slow_share']:.1f}%" if r["slow_share"] is not None else ""
                        print(f"round {rnd + 1} workers {w} conc {conc} {srv.name}: "
                              f"{r['conns_per_s']:.0f}/s p50 {r['p50_us']}us p99 {r['p99_us']}us "
                              f"cpu {r['cpu_total_us']:.1f}us errors {r['errors']}{share}",
                              file=sys.stderr, flush=True)
            finally:
                for srv in running:
                    srv.stop()
    out = table(results, a.scenario)
    if slow:
        out = (f"Slow-worker scenario: {a.workers} workers, worker 1 sleeps {a.slow_ms} ms before "
               f"each response, {a.rounds} round(s) × {a.seconds:g} s.\n\n" + out)
    if a.scenario == "python":
        out = (f"Python scenario: {a.workers} workers, the same WSGI app (bench/bench_wsgi.py) and "
               f"interpreter, {a.rounds} round(s) × {a.seconds:g} s; a fair share is 100/workers %.\n\n" + out)
    print(out)
    if a.out:
        with open(a.out, "w") as f:
            f.write(out + "\n")
    if not results:
        sys.exit("no server could be measured")


if __name__ == "__main__":
    main()
