#!/usr/bin/python3
"""mpi4py_peer.py -- mpi4py.futures, the Python peer of bench_mpi.c.

Run as  mpirun -n 3 /usr/bin/python3 -m mpi4py.futures bench/peers/mpi4py_peer.py
(rank 0 runs this script, ranks 1-2 are MPIPoolExecutor's workers, as for
`mpirun -n 3 bench_mpi mpi`). The same task (x -> x + 1) and rows:
roundtrip p50/p99, N submits (4096 out at most), map(chunksize=256).
Prints one JSON object per row, like bench_mpi.c. Sizes from the same
environment variables, scaled down (Python is ~100x slower per task):
CF_BENCH_RT/20, CF_BENCH_TASKS/10, CF_BENCH_ITEMS/2.
"""
import collections
import json
import os
import statistics
import time

from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor


def inc(x):
    return x + 1


def env(name, default, div):
    return max(1, int(os.environ.get(name, default)) // div)


def main():
    rt = env("CF_BENCH_RT", 20000, 20)
    tasks = env("CF_BENCH_TASKS", 100000, 10)
    items = env("CF_BENCH_ITEMS", 2000000, 2)
    reps = int(os.environ.get("CF_BENCH_REPS", 3))
    sysname = "mpi4py.futures"
    with MPIPoolExecutor() as ex:
        for i in range(200):  # warm up: workers started, code paths hot
            ex.submit(inc, i).result()
        t = []
        for i in range(rt):
            a = time.monotonic_ns()
            r = ex.submit(inc, i).result()
            t.append(time.monotonic_ns() - a)
            assert r == i + 1
        t.sort()
        print(json.dumps({"row": "roundtrip", "system": sysname, "p50_ns": t[len(t) // 2],
                          "p99_ns": t[min(len(t) - 1, int(0.99 * len(t)))], "n": rt}), flush=True)
        rates = []
        for _ in range(reps):
            a = time.perf_counter_ns()
            window = collections.deque()  # at most 4096 out, as in bench_mpi.c
            for i in range(tasks):
                if len(window) == 4096:
                    j, f = window.popleft()
                    assert f.result() == j + 1
                window.append((i, ex.submit(inc, i)))
            for j, f in window:
                assert f.result() == j + 1
            rates.append(tasks * 1e9 / (time.perf_counter_ns() - a))
        print(json.dumps({"row": "submit", "system": sysname,
                          "tasks_per_s": round(statistics.median(rates)), "n": tasks}), flush=True)
        rates = []
        for _ in range(reps):
            a = time.perf_counter_ns()
            out = list(ex.map(inc, range(items), chunksize=256))
            rates.append(items * 1e9 / (time.perf_counter_ns() - a))
            assert out[-1] == items
        print(json.dumps({"row": "map", "system": sysname, "chunk": 256,
                          "items_per_s": round(statistics.median(rates)), "n": items}), flush=True)
    print(json.dumps({"row": "info", "system": sysname, "mpi4py": __import__("mpi4py").__version__,
                      "library": MPI.Get_library_version().splitlines()[0][:40]}), flush=True)


if __name__ == "__main__":
    main()
