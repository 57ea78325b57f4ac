#!/usr/bin/env python3
"""libcluster benchmark: new connections per second, latency, fairness and CPU per
connection of libcluster against Node 20's cluster (rr and none) and an SO_REUSEPORT C
server, in interleaved rounds (A B C ..., A B C ...), on 127.0.0.1.

    python3 bench/run.py [--short] [--rounds N] [--seconds S] [--workers 2,4] [--conc 1,32]

Prints a Markdown table; --out FILE also writes it (RESULTS.md keeps the commentary)."""
import argparse, json, os, signal, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "bench")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMPARE = []  # extra (name, hello binary) rows from --compare


def servers(workers):
    hello = os.path.join(ROOT, "target", "examples-release", "hello")
    node = os.path.join(ROOT, "bench", "node_server.js")
    addon = os.path.join(ROOT, "bench", "node_addon_server.js")
    extra = [(name, [path], {}) for name, path in COMPARE]
    if os.path.exists(os.path.join(ROOT, "bindings", "node", "build", "Release")):
        extra.append(("node-addon-libcluster", ["node", addon], {}))
    return extra + [
        ("reuseport", [os.path.join(BIN, "reuseport")], {}),
        ("libcluster-rr", [hello], {}),
        ("libcluster-shared", [hello], {"NODE_CLUSTER_SCHED_POLICY": "none"}),
        ("libcluster-rr-inflight4", [hello], {"LIBCLUSTER_MAX_INFLIGHT": "4"}),
        ("node-rr", ["node", node], {"NODE_CLUSTER_SCHED_POLICY": "rr"}),
        ("node-none", ["node", node], {"NODE_CLUSTER_SCHED_POLICY": "none"}),
    ]


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


class Server:
    def __init__(self, name, cmd, env, workers):
        self.name, self.port = name, free_port()
        e = dict(os.environ, WORKERS=str(workers), PORT=str(self.port), **env)
        self.proc = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.3)  # let every worker come up

    def pids(self):
        return descendants(self.proc.pid)

    def stop(self):
        for pid in reversed(self.pids()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait(timeout=10)


def measure(srv, conc, seconds):
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
    return r


def fmt(vals, digits=0):
    med = statistics.median(vals)
    if len(vals) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(vals):.{digits}f}–{max(vals):.{digits}f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", action="store_true", help="1 round, 2 workers, 2 s")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--workers", default="2,4")
    ap.add_argument("--conc", default="1,32")
    ap.add_argument("--only", default="", help="comma-separated server names")
    ap.add_argument("--out")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=HELLO",
                    help="also run another build of the demo (before/after comparisons)")
    a = ap.parse_args()
    for c in a.compare:
        name, path = c.split("=", 1)
        COMPARE.append((name, path))
    if a.short:
        a.rounds, a.seconds, a.workers = 1, 2, "2"
    results = {}  # (workers, conc, name) -> [round results]
    for rnd in range(a.rounds):
        for w in map(int, a.workers.split(",")):
            chosen = [s for s in servers(w) if not a.only or s[0] in a.only.split(",")]
            running = [Server(n, c, e, w) for n, c, e in chosen]
            try:
                for conc in map(int, a.conc.split(",")):
                    for srv in running:  # interleaved: A B C ... within each round
                        r = measure(srv, conc, a.seconds)
                        results.setdefault((w, conc, srv.name), []).append(r)
                        print(f"round {rnd + 1} workers {w} conc {conc} {srv.name}: "
                              f"{r['conns_per_s']:.0f}/s p50 {r['p50_us']}us cpu {r['cpu_total_us']:.1f}us",
                              file=sys.stderr, flush=True)
            finally:
                for srv in running:
                    srv.stop()
    lines = ["| workers | conc | server | conns/s | ratio to reuseport | p50 µs | p99 µs | p50 ratio | CPU primary µs/conn | CPU total µs/conn | CPU ratio | fairness max/min | CV | errors |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (w, conc, name), rs in sorted(results.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        ref = results.get((w, conc, "reuseport"))
        ratio = lambda key: [r[key] / max(b[key], 1e-9) for r, b in zip(rs, ref)] if ref else [0]
        lines.append(
            f"| {w} | {conc} | {name} | {fmt([r['conns_per_s'] for r in rs])} | {fmt(ratio('conns_per_s'), 2)} | "
            f"{fmt([r['p50_us'] for r in rs])} | {fmt([r['p99_us'] for r in rs])} | {fmt(ratio('p50_us'), 2)} | "
            f"{fmt([r['cpu_primary_us'] for r in rs], 1)} | {fmt([r['cpu_total_us'] for r in rs], 1)} | {fmt(ratio('cpu_total_us'), 2)} | "
            f"{fmt([r['fair_maxmin'] for r in rs], 3)} | {fmt([r['fair_cv'] for r in rs], 3)} | {sum(r['errors'] for r in rs)} |")
    table = "\n".join(lines)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
