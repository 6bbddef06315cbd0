#!/usr/bin/python3
"""py_peer.py -- the Python peer of the process-pool benchmarks.

Runs the same tiny task as cf_bench's proc_* cases (x -> x + 1) on
concurrent.futures.ProcessPoolExecutor with the same number of workers,
measured the same way (time.monotonic_ns, CLOCK_MONOTONIC like cf_bench,
around each round trip, and the task's own start time to split it into
dispatch and notify; time.perf_counter_ns around whole bursts), checks every result, and prints one JSON object:

  {"context": {...},
   "results": {"proc_roundtrip_hot/python": {"p50_ns": ..., ...},
               "proc_roundtrip_idle/python": {...},
               "proc_throughput/python": {"items_per_second": ..., ...},
               "proc_map/python/chunk:256": {...}}}

Rates are the median over --reps bursts. Use /usr/bin/python3 (the Debian
interpreter), e.g.  /usr/bin/python3 bench/py_peer.py --workers 2
"""
import argparse
import json
import math
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def inc(x):
    return x + 1


def inc_stamped(x):
    """The round-trip task: also says when it started (CLOCK_MONOTONIC, one
    clock for every process, as in cf_bench)."""
    return x + 1, time.monotonic_ns()


def pct(sorted_ns, q):
    """Nearest-rank percentile, as in bench/common.h."""
    if not sorted_ns:
        return 0
    rank = max(1, min(len(sorted_ns), math.ceil(q * len(sorted_ns))))
    return sorted_ns[rank - 1]


def latency(ex, iters, sleep_s):
    lat, dispatch, notify = [], [], []
    for i in range(iters):
        if sleep_s:
            time.sleep(sleep_s)
        t0 = time.monotonic_ns()
        r, started = ex.submit(inc_stamped, i).result()
        t1 = time.monotonic_ns()
        lat.append(t1 - t0)
        dispatch.append(started - t0)
        notify.append(t1 - started)
        if r != i + 1:
            raise SystemExit(f"py_peer: round trip result {r} != {i + 1}")
    lat.sort()
    dispatch.sort()
    notify.sort()
    return {"p50_ns": pct(lat, 0.50), "p99_ns": pct(lat, 0.99),
            "p999_ns": pct(lat, 0.999), "max_ns": lat[-1],
            "samples": len(lat), "mean_ns": statistics.fmean(lat),
            "dispatch_p50_ns": pct(dispatch, 0.50), "dispatch_p99_ns": pct(dispatch, 0.99),
            "notify_p50_ns": pct(notify, 0.50), "notify_p99_ns": pct(notify, 0.99)}


def rate(times_ns, n):
    med = statistics.median(times_ns)
    return {"items_per_second": n * 1e9 / med, "real_time_ns": med,
            "reps": len(times_ns), "tasks": n,
            "cv": (statistics.pstdev(times_ns) / statistics.fmean(times_ns))
            if len(times_ns) > 1 else 0.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=100000)
    ap.add_argument("--hot-iters", type=int, default=2000)
    ap.add_argument("--idle-iters", type=int, default=500)
    ap.add_argument("--idle-sleep-ms", type=float, default=2.0)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()

    res = {}
    n = a.tasks
    with ProcessPoolExecutor(max_workers=a.workers) as ex:
        for i in range(200):  # warm: start the workers, fill the caches
            ex.submit(inc, i).result()
            ex.submit(inc_stamped, i).result()
        res["proc_roundtrip_hot/python"] = latency(ex, a.hot_iters, 0)
        res["proc_roundtrip_idle/python"] = latency(
            ex, a.idle_iters, a.idle_sleep_ms / 1000.0)

        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter_ns()
            fs = [ex.submit(inc, i) for i in range(n)]
            out = [f.result() for f in fs]
            times.append(time.perf_counter_ns() - t0)
            bad = sum(1 for i, r in enumerate(out) if r != i + 1)
            if bad:
                raise SystemExit(f"py_peer: {bad} wrong throughput results")
        res["proc_throughput/python"] = rate(times, n)

        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter_ns()
            out = list(ex.map(inc, range(n), chunksize=a.chunk))
            times.append(time.perf_counter_ns() - t0)
            bad = sum(1 for i, r in enumerate(out) if r != i + 1)
            if bad or len(out) != n:
                raise SystemExit(f"py_peer: {bad} wrong map results")
        res[f"proc_map/python/chunk:{a.chunk}"] = rate(times, n)

    ctx = {"python": platform.python_version(), "executable": sys.executable,
           "workers": a.workers, "tasks": n, "reps": a.reps,
           "hot_iters": a.hot_iters, "idle_iters": a.idle_iters}
    json.dump({"context": ctx, "results": res}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
