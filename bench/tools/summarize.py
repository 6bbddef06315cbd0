#!/usr/bin/python3
"""summarize.py -- turn one bench/tools/run.sh result directory into summary.md.

  /usr/bin/python3 bench/tools/summarize.py RESULT_DIR [--root REPO] [--build BUILD_DIR]
                                      [--command "what was run"]

Reads every google-benchmark JSON in RESULT_DIR (*.json written by
cf_bench / cf_bench_memory with repetitions and aggregates) and python.json
(py_peer.py), and writes:
  RESULT_DIR/summary.md    one table (workload x system, with ratios), the
                           targets (hit or miss), the machine, then every
                           benchmark's median and coefficient of variation
  RESULT_DIR/*.dat         data files for plot.gp
Prints summary.md to stdout. Exits 1 if any benchmark reported an error
(a failed result check): such a run has no valid table.
"""
import argparse
import datetime
import glob
import json
import math
import os
import platform
import subprocess
import re
import sys

sys.dont_write_bytecode = True  # a run leaves the clone clean (no __pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import olsummary  # noqa: E402

SYSTEMS = [  # column key, header
    ("cfutures", "cfutures"),
    ("cfutures_spawn", "cfutures cf_spawn"),
    ("tbb", "oneTBB"),
    ("tbb_invoke", "oneTBB parallel_invoke"),
    ("openmp", "OpenMP (libgomp)"),
    ("openmp_libomp", "OpenMP (LLVM libomp)"),
    ("glib", "GLib"),
    ("glib_spin", "GLib, futex completion"),
    ("mutex_condvar", "mutex+condvar pool"),
    ("mutex_condvar_spin", "mutex+condvar, futex completion"),
    ("libuv", "libuv"),
    ("fork_pipe", "fork+pipe pool"),
    ("fork_pipe_batched", "fork+pipe, batched"),
    ("python", "Python ProcessPool"),
    ("sequential", "sequential"),
]
SUFFIX = re.compile(r"(/(iterations:\d+|manual_time|real_time|process_time|threads:\d+))+$")


def base_name(n):
    """google-benchmark appends /iterations:N, /manual_time ...: drop them."""
    return SUFFIX.sub("", n)


UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
# result files whose benchmarks are the same cases in another setting: their
# names get a prefix (run.sh: contended = with a CPU-bound neighbour on every
# CPU, oversub = 2 x the CPUs as workers)
VARIANTS = {"contended": "contended/", "oversub": "oversub/"}


class Results:
    def __init__(self, rdir):
        self.rows = {}    # run_name -> {"median": entry, "cv": entry, "mean": ...}
        self.errors = []  # (name, message)
        self.contexts = []
        for path in sorted(glob.glob(os.path.join(rdir, "*.json"))):
            base = os.path.basename(path)
            if base == "python.json":
                self._python(path)
                continue
            try:
                with open(path) as f:
                    doc = json.load(f)
            except (OSError, ValueError) as e:
                self.errors.append((base, f"unreadable JSON: {e}"))
                continue
            if "benchmarks" not in doc:
                continue
            self.contexts.append(doc.get("context", {}))
            prefix = VARIANTS.get(base[:-5], "")
            for b in doc["benchmarks"]:
                name = prefix + base_name(b.get("run_name", b["name"]))
                if b.get("error_occurred"):
                    self.errors.append((name, b.get("error_message", "error")))
                    continue
                slot = self.rows.setdefault(name, {})
                if b.get("run_type") == "aggregate":
                    slot[b["aggregate_name"]] = b
                else:  # single repetition: the run is its own median
                    slot.setdefault("runs", []).append(b)
        for name, slot in self.rows.items():
            if "median" not in slot and slot.get("runs"):
                runs = slot["runs"]
                slot["median"] = runs[len(runs) // 2]

    def _python(self, path):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            self.errors.append(("python", f"py_peer.py output unreadable: {e}"))
            return
        self.python_context = doc.get("context", {})
        for name, r in doc.get("results", {}).items():
            e = dict(r)
            if "real_time_ns" in e:
                e["real_time"], e["time_unit"] = e["real_time_ns"], "ns"
            cv = {"real_time": r.get("cv", 0.0), "items_per_second": r.get("cv", 0.0)}
            self.rows[name] = {"median": e, "cv": cv}

    def get(self, name, key):
        e = self.rows.get(name, {}).get("median")
        if e is None:
            return None
        if key == "real_time_ns":
            if "real_time" not in e:
                return None
            return e["real_time"] * UNIT_NS.get(e.get("time_unit", "ns"), 1.0)
        v = e.get(key)
        return float(v) if v is not None else None

    def cv(self, name, key):
        e = self.rows.get(name, {}).get("cv")
        if e is None:
            return None
        k = "real_time" if key == "real_time_ns" else key
        v = e.get(k)
        return float(v) if v is not None else None


# One table row: label, unit, scale (divide the raw value), cost|rate,
# name pattern ({s} = system), key, systems.
THREAD_SYS = ["cfutures", "tbb", "glib", "glib_spin", "mutex_condvar", "mutex_condvar_spin", "libuv"]
PROC_SYS = ["cfutures", "fork_pipe", "python"]
PROC_TPUT_SYS = ["cfutures", "fork_pipe", "fork_pipe_batched", "python"]
FJ_SYS = ["cfutures", "cfutures_spawn", "tbb", "tbb_invoke", "openmp", "openmp_libomp"]
ROWS = [
    ("Fork-join fib(30), overhead per task, 1 worker", "ns", 1, "cost",
     "forkjoin/{s}/workers:1", "overhead_ns_per_task", FJ_SYS),
    ("Fork-join fib(30), time, 1 worker", "ms", 1e6, "cost",
     "forkjoin/{s}/workers:1", "real_time_ns", FJ_SYS + ["sequential"]),
    ("Fork-join fib(30), time, 2 workers", "ms", 1e6, "cost",
     "forkjoin/{s}/workers:2", "real_time_ns", FJ_SYS),
    ("Fork-join fib(30), 2 workers, CPU", "% of a core", 1, "cost",
     "forkjoin/{s}/workers:2", "cpu_pct_core", FJ_SYS),
    ("Nested loop 100 x 1000, time", "us", 1e3, "cost",
     "loop/{s}", "real_time_ns", ["cfutures", "tbb", "openmp", "openmp_libomp", "sequential"]),
    ("Nested loop 100 x 1000, CPU per run", "us", 1e3, "cost",
     "loop/{s}", "cpu_ns_per_op", ["cfutures", "tbb", "openmp", "openmp_libomp", "sequential"]),
    ("Thread round trip, hot, p50", "us", 1e3, "cost", "roundtrip_hot/{s}", "p50_ns", THREAD_SYS),
    ("Thread round trip, hot, p99", "us", 1e3, "cost", "roundtrip_hot/{s}", "p99_ns", THREAD_SYS),
    ("Thread round trip, hot, p99.9", "us", 1e3, "cost", "roundtrip_hot/{s}", "p999_ns", THREAD_SYS),
    ("Thread round trip, hot, CPU per round trip (the caller's included)", "us", 1e3, "cost",
     "roundtrip_hot/{s}", "cpu_ns_per_op", THREAD_SYS),
    ("Thread round trip, hot, context switches per round trip", "switches", 1, "cost",
     "roundtrip_hot/{s}", "csw_per_op", THREAD_SYS),
    ("Thread round trip, hot, dispatch p50 (submit -> task runs)", "us", 1e3, "cost",
     "roundtrip_hot/{s}", "dispatch_p50_ns", THREAD_SYS),
    ("Thread round trip, hot, notify p50 (task runs -> caller has result)", "us", 1e3, "cost",
     "roundtrip_hot/{s}", "notify_p50_ns", THREAD_SYS),
    ("Thread round trip, after 2 ms idle, p50", "us", 1e3, "cost",
     "roundtrip_idle/{s}", "p50_ns", THREAD_SYS),
    ("Thread round trip, after 2 ms idle, p99", "us", 1e3, "cost",
     "roundtrip_idle/{s}", "p99_ns", THREAD_SYS),
    ("Thread round trip, after 2 ms idle, p99.9", "us", 1e3, "cost",
     "roundtrip_idle/{s}", "p999_ns", THREAD_SYS),
    ("Thread round trip, after 2 ms idle, CPU per round trip (the caller's included)", "us", 1e3, "cost",
     "roundtrip_idle/{s}", "cpu_ns_per_op", THREAD_SYS),
    ("Thread round trip, after 2 ms idle, dispatch p50 (submit -> task runs)", "us", 1e3, "cost",
     "roundtrip_idle/{s}", "dispatch_p50_ns", THREAD_SYS),
    ("Thread round trip, after 2 ms idle, notify p50 (task runs -> caller has result)", "us", 1e3, "cost",
     "roundtrip_idle/{s}", "notify_p50_ns", THREAD_SYS),
    ("Throughput, tiny tasks, 1 submitter", "M tasks/s", 1e6, "rate",
     "throughput/{s}/submitters:1", "items_per_second", THREAD_SYS),
    ("Throughput, tiny tasks, 1 submitter, CPU per task (submitter's included)", "ns", 1, "cost",
     "throughput/{s}/submitters:1", "cpu_ns_per_op", THREAD_SYS),
    ("Throughput, tiny tasks, 2 submitters", "M tasks/s", 1e6, "rate",
     "throughput/{s}/submitters:2", "items_per_second", THREAD_SYS),
    ("Throughput, tiny tasks, 2 submitters, CPU per task", "ns", 1, "cost",
     "throughput/{s}/submitters:2", "cpu_ns_per_op", THREAD_SYS),
    ("Idle pool CPU, 1 s right after work", "% of a core", 1, "none",
     "idle/{s}", "cpu_pct_of_core", THREAD_SYS),
    ("Heap per pending task", "bytes", 1, "cost",
     "memory/{s}", "heap_bytes_per_task", ["cfutures", "tbb", "glib", "mutex_condvar"]),
    ("RSS per pending task (fresh process)", "bytes", 1, "cost",
     "memory/{s}", "rss_bytes_per_task", ["cfutures", "tbb", "glib", "mutex_condvar"]),
    ("Heap allocations per task, steady state (bursts of 64)", "allocs", 1, "cost",
     "memory/{s}", "allocs_per_task_steady", ["cfutures", "tbb", "glib", "mutex_condvar"]),
    ("Heap allocations per task, 100k in flight", "allocs", 1, "cost",
     "memory/{s}", "allocs_per_task", ["cfutures", "tbb", "glib", "mutex_condvar"]),
    ("Process round trip, hot, p50", "us", 1e3, "cost", "proc_roundtrip_hot/{s}", "p50_ns", PROC_SYS),
    ("Process round trip, hot, p99", "us", 1e3, "cost", "proc_roundtrip_hot/{s}", "p99_ns", PROC_SYS),
    ("Process round trip, hot, p99.9", "us", 1e3, "cost",
     "proc_roundtrip_hot/{s}", "p999_ns", PROC_SYS),
    ("Process round trip, hot, CPU per round trip (every process)", "us", 1e3, "cost",
     "proc_roundtrip_hot/{s}", "cpu_ns_per_op", PROC_SYS),
    ("Process round trip, hot, dispatch p50 (submit -> task runs)", "us", 1e3, "cost",
     "proc_roundtrip_hot/{s}", "dispatch_p50_ns", PROC_SYS),
    ("Process round trip, hot, notify p50 (task runs -> caller has result)", "us", 1e3, "cost",
     "proc_roundtrip_hot/{s}", "notify_p50_ns", PROC_SYS),
    ("Process round trip, after 2 ms idle, p50", "us", 1e3, "cost",
     "proc_roundtrip_idle/{s}", "p50_ns", PROC_SYS),
    ("Process round trip, after 2 ms idle, p99", "us", 1e3, "cost",
     "proc_roundtrip_idle/{s}", "p99_ns", PROC_SYS),
    ("Process round trip, after 2 ms idle, p99.9", "us", 1e3, "cost",
     "proc_roundtrip_idle/{s}", "p999_ns", PROC_SYS),
    ("Process round trip, after 2 ms idle, dispatch p50 (submit -> task runs)", "us", 1e3, "cost",
     "proc_roundtrip_idle/{s}", "dispatch_p50_ns", PROC_SYS),
    ("Process round trip, after 2 ms idle, notify p50 (task runs -> caller has result)", "us", 1e3, "cost",
     "proc_roundtrip_idle/{s}", "notify_p50_ns", PROC_SYS),
    ("Process round trip, after 2 ms idle, CPU per round trip (every process)", "us", 1e3, "cost",
     "proc_roundtrip_idle/{s}", "cpu_ns_per_op", PROC_SYS),
    ("Process throughput, one task per item", "k tasks/s", 1e3, "rate",
     "proc_throughput/{s}", "items_per_second", PROC_TPUT_SYS),
    ("Process throughput, CPU per task (every process)", "ns", 1, "cost",
     "proc_throughput/{s}", "cpu_ns_per_op", PROC_TPUT_SYS),
    ("Process map, chunks of 256 items (fork+pipe: one message per chunk)", "k items/s", 1e3, "rate",
     "proc_map/{s}/chunk:256", "items_per_second", PROC_SYS),
    ("Process idle pool CPU, 1 s right after work (parent, helpers, workers)", "% of a core", 1, "none",
     "proc_idle/{s}", "cpu_pct_of_core", ["cfutures", "fork_pipe"]),
]


def fmt(v):
    if v is None:
        return "—"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(cf, peer, kind):
    """How many times better cfutures is (> 1: cfutures better)."""
    if cf is None or peer is None or kind == "none" or cf <= 0 or peer <= 0:
        return None
    if kind == "cost":
        return peer / cf if cf > 0 else None
    return cf / peer if peer > 0 else None


def value(res, pattern, key, s, scale):
    name = pattern.format(s=s)
    v = res.get(name, key)
    if v is None:
        return None, name
    if key in ("heap_bytes_per_task", "allocs_per_task", "allocs_per_task_steady") and res.get(name, "jemalloc_sees_all") == 0:
        return "n/a", name  # TBB's tbbmalloc is invisible to jemalloc's counters
    return v / scale, name


def table(res):
    used = [k for k, _ in SYSTEMS if any(k in r[6] for r in ROWS)]
    head = {k: h for k, h in SYSTEMS}
    lines = ["| workload | unit | " + " | ".join(head[k] for k in used) + " |",
             "|" + "---|" * (len(used) + 2)]
    for label, unit, scale, kind, pattern, key, systems in ROWS:
        cf, _ = value(res, pattern, key, "cfutures", scale)
        if isinstance(cf, str):
            cf = None
        cells = []
        for k in used:
            if k not in systems:
                cells.append("")
                continue
            v, _ = value(res, pattern, key, k, scale)
            if isinstance(v, str):
                cells.append(v)
            elif k in ("cfutures", "cfutures_spawn", "sequential") or v is None:  # not peers
                cells.append(fmt(v))
            else:
                r = ratio(cf, v, kind)
                cells.append(fmt(v) + (f" ({r:.1f}x)" if r is not None else ""))
        lines.append(f"| {label} | {unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TARGETS = [
    # text, row pattern, key, peer, kind, wanted ratio (cfutures better by)
    ("fork-join overhead per task >= 10x lower than oneTBB task_group",
     "forkjoin/{s}/workers:1", "overhead_ns_per_task", "tbb", "cost", 10),
    ("(cf_spawn frames) fork-join overhead per task >= 10x lower than oneTBB task_group",
     "forkjoin/{s}/workers:1", "overhead_ns_per_task", "tbb", "cost", 10, "cfutures_spawn"),
    ("thread round trip p50 (hot) >= 5x lower than oneTBB",
     "roundtrip_hot/{s}", "p50_ns", "tbb", "cost", 5),
    ("throughput (1 submitter) >= oneTBB's",
     "throughput/{s}/submitters:1", "items_per_second", "tbb", "rate", 1),
    ("throughput (2 submitters) >= oneTBB's",
     "throughput/{s}/submitters:2", "items_per_second", "tbb", "rate", 1),
    ("process round trip p50 (hot) >= 4x lower than fork+pipe",
     "proc_roundtrip_hot/{s}", "p50_ns", "fork_pipe", "cost", 4),
    ("process round trip p50 (hot) >= 100x lower than Python",
     "proc_roundtrip_hot/{s}", "p50_ns", "python", "cost", 100),
    ("process throughput >= 100x Python's",
     "proc_throughput/{s}", "items_per_second", "python", "rate", 100),
    ("process throughput >= 5x fork+pipe's (textbook, one syscall per message)",
     "proc_throughput/{s}", "items_per_second", "fork_pipe", "rate", 5),
    ("(for reference) process throughput vs hand-batched fork+pipe, >= 5x",
     "proc_throughput/{s}", "items_per_second", "fork_pipe_batched", "rate", 5),
]


def targets(res):
    out = ["| target | measured | result |", "|---|---|---|"]
    for text, pattern, key, peer, kind, want, *me in TARGETS:
        cf = res.get(pattern.format(s=me[0] if me else "cfutures"), key)
        pv = res.get(pattern.format(s=peer), key)
        r = ratio(cf, pv, kind)
        if r is None:
            out.append(f"| {text} | not measured | — |")
        else:
            out.append(f"| {text} | {r:.2f}x | {'hit' if r >= want else 'MISS'} |")
    idle = res.get("idle/cfutures", "cpu_pct_of_core")
    if idle is None:
        out.append("| idle 2-worker pool < 1% of one core | not measured | — |")
    else:
        out.append(f"| idle 2-worker pool < 1% of one core | {idle:.3f}% | "
                   f"{'hit' if idle < 1 else 'MISS'} |")
    return "\n".join(out)


def sh(cmd, cwd=None):
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine(res, root, build, command, params="", load_before=""):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cxx = ""
    jemalloc = None
    cache = os.path.join(build, "CMakeCache.txt") if build else ""
    if cache and os.path.exists(cache):
        with open(cache) as f:
            for line in f:
                if line.startswith("CMAKE_CXX_COMPILER:"):
                    cxx = line.split("=", 1)[1].strip()
                elif line.startswith("CF_WITH_JEMALLOC:"):
                    jemalloc = line.split("=", 1)[1].strip().upper() in ("ON", "TRUE", "1", "YES")
    compiler = sh([cxx or "c++", "--version"]).split("\n")[0]
    pkgs = []
    for p in ["libtbb-dev", "libglib2.0-dev", "libuv1-dev", "libbenchmark-dev", "libjemalloc-dev",
              "libck-dev"]:
        v = sh(["dpkg-query", "-W", "-f=${Version}", p])
        if v:
            pkgs.append(f"{p} {v}")
    ctx = res.contexts[0] if res.contexts else {}
    loads = sorted({tuple(round(x, 2) for x in c.get("load_avg", [])) for c in res.contexts})
    py = getattr(res, "python_context", {})
    rev = sh(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=root) if root else ""
    lines = [
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- git revision: {rev or 'unknown'}",
        f"- CPU: {cpu} — {os.cpu_count()} logical CPUs online"
        + (f", {len(os.sched_getaffinity(0))} usable" if hasattr(os, "sched_getaffinity") else ""),
        f"- kernel: {platform.system()} {platform.release()}",
        f"- compiler: {compiler}; google-benchmark build type: {ctx.get('library_build_type', '?')}",
        "- allocator: " + ("not recorded" if jemalloc is None else
                           "cfutures built with CF_WITH_JEMALLOC=ON (jemalloc's mallocx/sdallocx, "
                           "and jemalloc is the malloc of the whole cf_bench process, peers included)"
                           if jemalloc else
                           "cfutures built with CF_WITH_JEMALLOC=OFF (the default: glibc malloc in cf_bench; "
                           "cf_bench_memory links jemalloc for its counters, so malloc is jemalloc's there)"),
        f"- peers: {', '.join(pkgs)}; Python {py.get('python', '?')} ({py.get('executable', '?')})",
        f"- workers per system: {ctx.get('workers', '?')}; load average just before the run: "
        + (load_before or "not recorded")
        + "; at the start of each group (this run's own earlier groups included): "
        + ", ".join("/".join(str(x) for x in l) for l in loads),
    ]
    if command:
        lines.append(f"- command: `{command}`")
    if params:
        lines.append(f"- parameters: {params}")
    return "\n".join(lines)


def details(res):
    out = ["| benchmark | median | cv | counters (median) |", "|---|---|---|---|"]
    skip = {"name", "run_name", "run_type", "aggregate_name", "family_index",
            "per_family_instance_index", "repetitions", "repetition_index", "threads",
            "iterations", "real_time", "cpu_time", "time_unit", "aggregate_unit",
            "real_time_ns", "reps", "cv"}
    for name in sorted(res.rows):
        e = res.rows[name].get("median", {})
        t = res.get(name, "real_time_ns")
        cv = res.cv(name, "real_time_ns")
        ctr = ", ".join(f"{k}={fmt(float(v))}" for k, v in e.items()
                        if k not in skip and isinstance(v, (int, float)))
        out.append(f"| {name} | {fmt(t / 1e3) + ' us' if t is not None else '—'} | "
                   f"{f'{100 * cv:.1f}%' if cv is not None else '—'} | {ctr} |")
    return "\n".join(out)


def datafiles(res, rdir):
    def v(name, key, scale=1.0):
        x = res.get(name, key)
        return "NaN" if x is None else f"{x / scale:.6g}"

    labels = dict(SYSTEMS)
    labels.update({"cfutures_spawn": "cfutures cf_spawn", "mutex_condvar": "mutex+condvar", "fork_pipe": "fork+pipe",
                   "fork_pipe_batched": "fork+pipe batched", "python": "Python",
                   "tbb_invoke": "oneTBB invoke"})
    with open(os.path.join(rdir, "lat_thread.dat"), "w") as f:
        f.write("# system p50 p99 p99.9 (hot, us) p50 p99 p99.9 (after idle, us)\n")
        for s in THREAD_SYS:
            f.write(f'"{labels[s]}" ' + " ".join(
                v(f"roundtrip_{m}/{s}", k, 1e3) for m in ("hot", "idle")
                for k in ("p50_ns", "p99_ns", "p999_ns")) + "\n")
    with open(os.path.join(rdir, "lat_proc.dat"), "w") as f:
        f.write("# system p50 p99 p99.9 (hot, us) p50 p99 p99.9 (after idle, us)\n")
        for s in PROC_SYS:
            f.write(f'"{labels[s]}" ' + " ".join(
                v(f"proc_roundtrip_{m}/{s}", k, 1e3) for m in ("hot", "idle")
                for k in ("p50_ns", "p99_ns", "p999_ns")) + "\n")
    with open(os.path.join(rdir, "tput_thread.dat"), "w") as f:
        f.write("# system Mtasks/s with 1 and 2 submitters\n")
        for s in THREAD_SYS:
            f.write(f'"{labels[s]}" {v(f"throughput/{s}/submitters:1", "items_per_second", 1e6)} '
                    f'{v(f"throughput/{s}/submitters:2", "items_per_second", 1e6)}\n')
    with open(os.path.join(rdir, "tput_proc.dat"), "w") as f:
        f.write("# system tasks/s (one per item) items/s (map, chunks of 256)\n")
        for s in PROC_TPUT_SYS:
            f.write(f'"{labels[s]}" {v(f"proc_throughput/{s}", "items_per_second")} '
                    f'{v(f"proc_map/{s}/chunk:256", "items_per_second")}\n')
    with open(os.path.join(rdir, "forkjoin.dat"), "w") as f:
        f.write("# system overhead ns/task (1 worker)\n")
        for s in FJ_SYS:
            f.write(f'"{labels[s]}" {v(f"forkjoin/{s}/workers:1", "overhead_ns_per_task")}\n')


def load_table(rdir):
    """load.tsv (run.sh): per group, the load average and CPU pressure
    before and after."""
    path = os.path.join(rdir, "load.tsv")
    if not os.path.exists(path):
        return "", None
    rows, worst = {}, 0.0
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) < 5:
                continue
            g, when, t, la, psi = p[:5]
            rows.setdefault(g, {})[when] = (t, la, psi)
            try:
                worst = max(worst, float(la))
            except ValueError:
                pass
    out = ["| group | start (UTC) | load average before / after | CPU pressure before / after (% of time some task waited for a CPU, last 10 s) |",
           "|---|---|---|---|"]
    for g, w in rows.items():
        b, e = w.get("before", ("", "", "")), w.get("after", ("", "", ""))
        out.append(f"| {g} | {b[0]} | {b[1]} / {e[1]} | {b[2]} / {e[2]} |")
    return "\n".join(out), worst


def busy_note(before, worst):
    ncpu = os.cpu_count() or 1
    vals = [v for v in (before, worst) if v is not None]
    if not vals or max(vals) <= 0.5 * ncpu:
        return ""
    return (f"**Busy machine: this run shared its {ncpu} CPUs with other work** (1-minute load "
            f"average up to {max(vals):.1f} during the run, see the load table): latencies include "
            "time spent waiting for a CPU, and every figure is noisier than on an idle machine.")


README_ROWS = [  # label, unit, scale, kind, pattern, key, systems: the README's table
    ("fork-join fib(30), overhead per task, 1 worker", "ns", 1, "cost",
     "forkjoin/{s}/workers:1", "overhead_ns_per_task", ["cfutures_spawn", "cfutures", "tbb", "tbb_invoke", "openmp", "openmp_libomp"]),
    ("nested loop 100 x 1000", "us", 1e3, "cost", "loop/{s}", "real_time_ns", ["cfutures", "tbb", "openmp", "openmp_libomp"]),
    ("thread round trip, hot, p50", "us", 1e3, "cost", "roundtrip_hot/{s}", "p50_ns", THREAD_SYS),
    ("thread round trip, hot, p99", "us", 1e3, "cost", "roundtrip_hot/{s}", "p99_ns", THREAD_SYS),
    ("thread round trip, hot, CPU per round trip", "us", 1e3, "cost", "roundtrip_hot/{s}", "cpu_ns_per_op", THREAD_SYS),
    ("thread round trip after 2 ms idle, p50", "us", 1e3, "cost", "roundtrip_idle/{s}", "p50_ns", THREAD_SYS),
    ("thread round trip after 2 ms idle, p99", "us", 1e3, "cost", "roundtrip_idle/{s}", "p99_ns", THREAD_SYS),
    ("throughput, tiny tasks, 1 outside submitter", "M/s", 1e6, "rate", "throughput/{s}/submitters:1", "items_per_second", THREAD_SYS),
    ("throughput, tiny tasks, 2 outside submitters", "M/s", 1e6, "rate", "throughput/{s}/submitters:2", "items_per_second", THREAD_SYS),
    ("idle 2-worker pool, CPU over 1 s", "% of a core", 1, "cost", "idle/{s}", "cpu_pct_of_core", ["cfutures", "tbb", "glib", "mutex_condvar", "libuv"]),
    ("heap per pending task", "B", 1, "cost", "memory/{s}", "heap_bytes_per_task", ["cfutures", "tbb", "glib", "mutex_condvar"]),
    ("RSS per pending task", "B", 1, "cost", "memory/{s}", "rss_bytes_per_task", ["cfutures", "tbb", "glib", "mutex_condvar"]),
    ("process round trip, hot, p50", "us", 1e3, "cost", "proc_roundtrip_hot/{s}", "p50_ns", PROC_SYS),
    ("process round trip after 2 ms idle, p50", "us", 1e3, "cost", "proc_roundtrip_idle/{s}", "p50_ns", PROC_SYS),
    ("process throughput, one task per item", "k/s", 1e3, "rate", "proc_throughput/{s}", "items_per_second", PROC_TPUT_SYS),
    ("process map, chunks of 256", "M items/s", 1e6, "rate", "proc_map/{s}/chunk:256", "items_per_second", PROC_SYS),
]


def readme_table(res):
    """Every peer in every row, the best first, with cfutures' ratio to each
    (peer cost / cfutures cost, or cfutures rate / peer rate: > 1 is a win)."""
    head = dict(SYSTEMS)
    out = ["| workload | cfutures | every peer, best first (cfutures' advantage: > 1 a win, < 1 a loss) |",
           "| --- | --- | --- |"]
    for label, unit, scale, kind, pattern, key, systems in README_ROWS:
        me = systems[0] if systems[0].startswith("cfutures") else "cfutures"
        cf, _ = value(res, pattern, key, me, scale)
        if cf is None or isinstance(cf, str):
            continue
        peers = []
        for k in systems:
            if k.startswith("cfutures"):
                continue
            v, _ = value(res, pattern, key, k, scale)
            if v is None:
                continue
            peers.append((k, v))
        num = [p for p in peers if not isinstance(p[1], str)]
        num.sort(key=lambda p: p[1], reverse=(kind == "rate"))
        cells = []
        for k, v in num + [p for p in peers if isinstance(p[1], str)]:
            if isinstance(v, str):
                cells.append(f"{head.get(k, k)} {v}")
                continue
            r = ratio(cf, v, kind)
            cells.append(f"{head.get(k, k)} {fmt(v)}" + (f" ({r:.2f}x)" if r is not None else ""))
        lab = label + (" (cf_spawn frames)" if me == "cfutures_spawn" else "")
        out.append(f"| {lab} | {fmt(cf)} {unit} | " + ", ".join(cells) + " |")
    return "\n".join(out)


def readme_fragment(res, side, a, busy, revision, date):
    ol = []
    for arr in ("fixed", "poisson"):
        rates = side.rates("openloop", arr)
        if not rates:
            continue
        head = dict(SYSTEMS)
        syss = olsummary.THREAD_OL
        ol += [f"Open loop, {arr}-rate arrivals, thread pools (2 workers): p50 / p99 latency from the intended "
               "send time, us; then CPU per task, us (% of one core)", "",
               "| offered | " + " | ".join(head[s] for s in syss) + " |", "|---|" + "---|" * len(syss)]
        for r in rates:
            cells = []
            for s in syss:
                pt = side.point(f"openloop/{arr}/{s}/rate:{r}")
                if not pt:
                    cells.append("—")
                    continue
                flag = " ⚠" if pt.behind else ""
                cells.append(f"{olsummary.us(pt.p(.5))} / {olsummary.us(pt.p(.99))}; "
                             f"{olsummary.us(pt.cpu)} ({pt.pct_core:.1f}%){flag}")
            ol.append(f"| {olsummary.rate_text(r)} | " + " | ".join(cells) + " |")
        ol.append("")
    gaps = olsummary.gap_table(side)
    lines = [
        "<!-- generated by bench/tools/summarize.py from the run in bench/results/latest; "
        "bench/tools/run.sh --publish splices it here: do not edit by hand -->",
        "",
        f"Run: `{a.command or 'bench/tools/run.sh'}`, {date}, revision {revision}, "
        f"{os.cpu_count()} CPUs, 2 workers per system. " + (busy or "The machine was not busy (load average below half the CPUs)."),
        "Full tables, confidence intervals and the load per group: "
        "[bench/results/latest/summary.md](bench/results/latest/summary.md).",
        "",
        readme_table(res),
        "",
    ] + ol + ([gaps] if gaps else []) + [
        "⚠: the load generator fell behind its schedule in at least one repetition (its p99 lag over "
        "1 ms, or under 95% of the rate sent); latency is still counted from the intended send time.",
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--root", default="")
    ap.add_argument("--build", default="")
    ap.add_argument("--command", default="")
    ap.add_argument("--params", default="")
    ap.add_argument("--load-before", default="", help="load average just before the run")
    a = ap.parse_args()
    res = Results(a.dir)
    olsummary.LABELS.update(dict(SYSTEMS))
    side = olsummary.Side(a.dir)
    md = ["# cfutures benchmarks", "",
          "Medians over repetitions of one run (interleaved at random across systems); every "
          "system ran the same task body with the same "
          "number of workers, and every run checked its results. A peer's cell reads "
          "`value (Nx)`: cfutures is N times better there (peer cost / cfutures cost, or "
          "cfutures rate / peer rate); N < 1 means the peer is better. "
          "Lower is better for ns, us, ms, %, bytes and allocations; higher for rates. "
          "The ratios compare with the `cfutures` column (futures: cf_submit); "
          "`cfutures cf_spawn` is cfutures' fork-join frame API, shown without a ratio. "
          "CPU figures are the CPU of every thread and process of the benchmark (the caller's "
          "included unless a row says otherwise).", ""]
    try:
        before = float(a.load_before.split()[0]) if a.load_before else None
    except ValueError:
        before = None
    loads, worst = load_table(a.dir)
    busy = busy_note(before, worst)
    if busy:
        md += [busy, ""]
    if res.errors:
        md += ["**ERRORS — results below are not valid:**", ""]
        md += [f"- `{n}`: {m}" for n, m in res.errors] + [""]
    md += [table(res), "", "## Targets", "", targets(res), ""]
    ol_parts = [olsummary.openloop_tables(side), olsummary.openloop_tables(side, "proc_openloop", olsummary.PROC_OL),
                olsummary.gap_table(side), olsummary.gap_table(side, "proc_gap", olsummary.PROC_GAP),
                olsummary.idle_ticks_table(side, res),
                olsummary.variant_table(side, res, "contended/", "Contended: a CPU-bound neighbour spinning on every CPU"),
                olsummary.variant_table(side, res, "oversub/", "Oversubscribed: 2 x the CPUs as workers per system")]
    if any(ol_parts):
        dw, _ = olsummary.done_when(side, res)
        md += ["## Latency and CPU under load", "",
               "Open loop (bench/cases/openloop.h): tiny tasks arrive on a fixed or Poisson schedule from one "
               "generator thread; latency runs from the intended send time (coordinated omission corrected); "
               "CPU is every thread and process of the pool minus the generator thread, from just before the "
               "first task until 2 ms after the last. Percentiles are pooled over every repetition's "
               "histogram; [a–b] is a 95% bootstrap interval over repetitions. ⚠: the generator fell behind "
               "in at least one repetition.", ""] + [p for p in ol_parts if p] + [
               "### Issue 11: done when", "", dw, ""]
    md += ["## Machine", "",
           machine(res, a.root, a.build, a.command, a.params, a.load_before), ""]
    if loads:
        md += ["Load per group (run.sh load.tsv):", "", loads, ""]
    md += ["## Notes", "",           "- Fork-join overhead per task = (time with 1 worker - sequential time) / spawns "
           "(fib(31) - 1 spawns for fib(30)); the sequential twin is plain recursion.",
           "- A round trip splits into dispatch (submit until the task starts) and notify (task "
           "start until the caller has the result), from the task's own CLOCK_MONOTONIC stamp "
           "(one clock for all threads and processes); their p50s need not add up to the "
           "total's p50.",
           "- Round-trip percentiles are nearest-rank over every iteration of a repetition "
           "(samples column in the details); p99.9 of the after-idle runs rests on the "
           "after-idle sample count given in the parameters above.",
           "- oneTBB allocates its tasks from tbbmalloc, which jemalloc's counters cannot see: its "
           "heap and allocation figures are n/a; RSS covers it.",
           "- fork+pipe pool: one write() per task and one read() per result (the textbook form, "
           "the twin of per-task submit); 'fork+pipe, batched' writes many tasks per write() and "
           "reads whatever results arrived (hand batching, the twin of a chunked map); map rows "
           "send one message per chunk.",
           "- GLib's memory case runs with G_SLICE=always-malloc so that its queue nodes are "
           "counted mallocs.",
           "- Idle CPU = process CPU time minus the sleeping main thread's, over 1 s right "
           "after warm work (spin-down included); tiny negative values are clock-read skew.",
           "- Python figures come from bench/py_peer.py (ProcessPoolExecutor) in the same run.",
           "- Repetitions: every repetition of every case of a group runs in a random order "
           "(google-benchmark's random interleaving); the JSON keeps each repetition; the details "
           "table gives the median and the coefficient of variation of each benchmark.",
           "- libuv is an I/O offload pool (file system calls, DNS and user work beside an event "
           "loop), shown for reference; `GLib, futex completion` and `mutex+condvar, futex "
           "completion` are the same pools with the spin-then-futex completion oneTBB gets.",
           "", "## Every benchmark", "", details(res), ""]
    text = "\n".join(md)
    with open(os.path.join(a.dir, "summary.md"), "w") as f:
        f.write(text)
    datafiles(res, a.dir)
    olsummary.datafiles(side, a.dir)
    rev = sh(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=a.root) if a.root else ""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    with open(os.path.join(a.dir, "readme.md"), "w") as f:
        f.write(readme_fragment(res, side, a, busy, rev or "unknown", date))
    print(text)
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
