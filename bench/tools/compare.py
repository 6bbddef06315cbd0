#!/usr/bin/python3
"""compare.py -- compare two sets of google-benchmark JSON results.

  /usr/bin/python3 bench/tools/compare.py DIR_OR_JSON_A DIR_OR_JSON_B [--threshold 0.05] [--alpha 0.05]

Every repetition in every JSON file of A and of B (run.sh keeps each one;
compare.sh's rounds add more) is one sample. For every benchmark present in
both (matched by run name), and for the time and the headline counters
(percentiles, overhead per task, rates, CPU, bytes), prints the median of A,
the median of B, B/A, and the p-value of a two-sided Mann-Whitney rank test
of A's repetitions against B's. A change is called when both hold:
  - the rank test rejects "same distribution" at --alpha, and
  - |B/A - 1| exceeds the noise: max(threshold, 2 x the noise floor, 3 x the
    larger coefficient of variation of *that metric* in A and B), where the
    noise floor is the median time drift of the peers (TBB, GLib, ...),
    whose code is the same in A and B.
Tails (p99, p99.9, max) are so judged on their own spread, which is wider
than the time's. For rates (items/s) a ratio above 1 is an improvement; for
everything else a ratio below 1 is. With fewer than 3 repetitions a side the
rank test cannot reject and only the threshold rule is shown, marked "(few
reps)". (google-benchmark's own compare.py is not in the Debian package.)
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

sys.dont_write_bytecode = True  # a run leaves the clone clean (no __pycache__)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stats import mann_whitney  # noqa: E402

SUFFIX = re.compile(r"(/(iterations:\d+|manual_time|real_time|process_time|threads:\d+))+$")


def base_name(n):
    """google-benchmark appends /iterations:N, /manual_time ...: drop them."""
    return SUFFIX.sub("", n)


UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
KEYS = ["time", "p50_ns", "p99_ns", "p999_ns", "svc_p50_ns", "overhead_ns_per_task",
        "items_per_second", "cpu_ns_per_op", "cpu_ns_per_task", "cpu_ns_per_req", "csw_per_op",
        "cpu_pct_of_core", "heap_bytes_per_task", "rss_bytes_per_task", "allocs_per_task"]


def value(b, key):
    if key == "time":
        if "real_time" not in b:
            return None
        return b["real_time"] * UNIT_NS.get(b.get("time_unit", "ns"), 1)
    v = b.get(key)
    return float(v) if isinstance(v, (int, float)) else None


def load(path):
    """name -> {"reps": [entry], "error": msg}: every repetition of every file
    (a file of aggregates only contributes its medians)."""
    files = sorted(glob.glob(os.path.join(path, "*.json"))) if os.path.isdir(path) else [path]
    rows = {}
    for fn in files:
        try:
            with open(fn) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if "benchmarks" in doc:
            have_reps = any(b.get("run_type") == "iteration" for b in doc["benchmarks"])
            for b in doc["benchmarks"]:
                name = base_name(b.get("run_name", b["name"]))
                slot = rows.setdefault(name, {"reps": []})
                if b.get("error_occurred"):
                    slot["error"] = b.get("error_message", "error")
                    continue
                if b.get("run_type") == "iteration" or (not have_reps and b.get("aggregate_name") == "median"):
                    slot["reps"].append(b)
        elif "results" in doc:  # py_peer.py: one summary entry
            for name, r in doc["results"].items():
                e = dict(r)
                if "real_time_ns" in e:
                    e["real_time"], e["time_unit"] = e["real_time_ns"], "ns"
                rows.setdefault(name, {"reps": []})["reps"].append(e)
    return rows


def series(slot, key):
    return [v for v in (value(b, key) for b in slot["reps"]) if v is not None]


def cv(xs):
    if len(xs) < 2:
        return None
    m = statistics.mean(xs)
    return statistics.stdev(xs) / m if m else None


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    return f"{v:,.0f}" if a >= 1000 else f"{v:.1f}" if a >= 10 else f"{v:.3g}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args()
    A, B = load(args.a), load(args.b)
    names = sorted(set(A) & set(B))
    if not names:
        print("compare.py: no benchmark in common", file=sys.stderr)
        return 2
    # The peers' code is the same in A and B: how much they moved is the
    # noise floor of this comparison (machine load, frequency, placement).
    drift = []
    for n in names:
        if "/cfutures" in n or "error" in A[n] or "error" in B[n]:
            continue
        xa, xb = series(A[n], "time"), series(B[n], "time")
        if xa and xb and statistics.median(xa):
            drift.append(abs(statistics.median(xb) / statistics.median(xa) - 1))
    drift.sort()
    floor = drift[len(drift) // 2] if drift else 0.0
    w = max(len(n) for n in names) + 2
    print(f"{'benchmark':<{w}}{'metric':<22}{'A':>12}{'B':>12}{'B/A':>8}{'p':>8}  n  verdict")
    changes = 0
    for n in names:
        if "error" in A[n] or "error" in B[n]:
            print(f"{n:<{w}}ERROR: A: {A[n].get('error', 'ok')}  B: {B[n].get('error', 'ok')}")
            changes += 1
            continue
        for k in KEYS:
            xa, xb = series(A[n], k), series(B[n], k)
            if not xa or not xb:
                continue
            ma, mb = statistics.median(xa), statistics.median(xb)
            if ma == 0:
                continue
            r = mb / ma
            cvs = [c for c in (cv(xa), cv(xb)) if c is not None]
            noise = max([args.threshold, 2 * floor] + [3 * abs(c) for c in cvs])
            _, p = mann_whitney(xa, xb)
            few = min(len(xa), len(xb)) < 3
            beyond = abs(r - 1) > noise and (few or (p is not None and p < args.alpha))
            if beyond:
                better = r > 1 if k == "items_per_second" else r < 1
                verdict = ("better" if better else "WORSE") + (" (few reps)" if few else "")
                changes += "/cfutures" in n
            else:
                verdict = f"~ (noise {100 * noise:.0f}%)"
            label = "time (ns)" if k == "time" else k
            ptxt = "-" if p is None or few else f"{p:.3f}"
            print(f"{n:<{w}}{label:<22}{fmt(ma):>12}{fmt(mb):>12}{r:>8.3f}{ptxt:>8} "
                  f"{min(len(xa), len(xb)):>2}  {verdict}")
    only = sorted(set(A) ^ set(B))
    if only:
        print("\nonly in one run: " + ", ".join(only))
    print(f"\npeers' median time drift between A and B (same code: the noise floor): "
          f"{100 * floor:.1f}%; a change must pass the rank test (p < {args.alpha}) and exceed "
          f"max({100 * args.threshold:.0f}%, 2 x floor, 3 x that metric's cv)")
    print(f"{changes} cfutures metric(s) changed beyond the noise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
