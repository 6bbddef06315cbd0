#!/usr/bin/python3
"""compare.py -- compare two sets of google-benchmark JSON results.

  /usr/bin/python3 bench/compare.py DIR_OR_JSON_A DIR_OR_JSON_B [--threshold 0.05]

For every benchmark present in both (matched by run name), prints the
median of A, the median of B and the ratio B/A of: the time, and the
headline counters (percentiles, overhead per task, rates, bytes). A change
is flagged when |ratio - 1| exceeds the noise: max(threshold, 3 x the larger
coefficient of variation of the two runs, 2 x the noise floor), where the
noise floor is the median time drift of the peers (TBB, GLib, ...), whose
code is the same in A and B. For rates (items/s) a ratio
above 1 is an improvement; for everything else a ratio below 1 is.
(google-benchmark's own compare.py is not in the Debian package.)
"""
import argparse
import glob
import json
import os
import re
import sys

SUFFIX = re.compile(r"(/(iterations:\d+|manual_time|real_time|process_time|threads:\d+))+$")


def base_name(n):
    """google-benchmark appends /iterations:N, /manual_time ...: drop them."""
    return SUFFIX.sub("", n)


UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
KEYS = ["time", "p50_ns", "p99_ns", "p999_ns", "overhead_ns_per_task", "items_per_second",
        "cpu_pct_of_core", "heap_bytes_per_task", "rss_bytes_per_task", "allocs_per_task"]


def load(path):
    files = sorted(glob.glob(os.path.join(path, "*.json"))) if os.path.isdir(path) else [path]
    rows = {}
    for fn in files:
        try:
            with open(fn) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        if "benchmarks" in doc:
            for b in doc["benchmarks"]:
                if b.get("error_occurred"):
                    rows.setdefault(base_name(b.get("run_name", b["name"])), {})["error"] = b.get(
                        "error_message", "error")
                    continue
                name = base_name(b.get("run_name", b["name"]))
                kind = b.get("aggregate_name", "median") if b.get("run_type") == "aggregate" else "median"
                rows.setdefault(name, {})[kind] = b
        elif "results" in doc:  # py_peer.py
            for name, r in doc["results"].items():
                e = dict(r)
                if "real_time_ns" in e:
                    e["real_time"], e["time_unit"] = e["real_time_ns"], "ns"
                rows[name] = {"median": e, "cv": {"real_time": r.get("cv", 0.0),
                                                  "items_per_second": r.get("cv", 0.0)}}
    return rows


def metric(slot, key, agg="median"):
    e = slot.get(agg)
    if e is None:
        return None
    if key == "time":
        if "real_time" not in e:
            return None
        return e["real_time"] if agg == "cv" else e["real_time"] * UNIT_NS.get(e.get("time_unit", "ns"), 1)
    v = e.get(key)
    return float(v) if isinstance(v, (int, float)) else None


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
        va, vb = metric(A[n], "time"), metric(B[n], "time")
        if va and vb:
            drift.append(abs(vb / va - 1))
    drift.sort()
    floor = drift[len(drift) // 2] if drift else 0.0
    w = max(len(n) for n in names) + 2
    print(f"{'benchmark':<{w}}{'metric':<22}{'A':>14}{'B':>14}{'B/A':>9}  verdict")
    changes = 0
    for n in names:
        if "error" in A[n] or "error" in B[n]:
            print(f"{n:<{w}}ERROR: A: {A[n].get('error', 'ok')}  B: {B[n].get('error', 'ok')}")
            changes += 1
            continue
        for k in KEYS:
            va, vb = metric(A[n], k), metric(B[n], k)
            if va is None or vb is None or va == 0:
                continue
            r = vb / va
            cvs = [c for c in (metric(A[n], k, "cv"), metric(B[n], k, "cv")) if c is not None]
            noise = max([args.threshold, 2 * floor] + [3 * abs(c) for c in cvs])
            verdict = ""
            if abs(r - 1) > noise:
                better = r > 1 if k == "items_per_second" else r < 1
                verdict = "better" if better else "WORSE"
                changes += "/cfutures" in n
            else:
                verdict = f"~ (noise {100 * noise:.0f}%)"
            label = "time (ns)" if k == "time" else k
            print(f"{n:<{w}}{label:<22}{fmt(va):>14}{fmt(vb):>14}{r:>9.3f}  {verdict}")
    only = sorted(set(A) ^ set(B))
    if only:
        print("\nonly in one run: " + ", ".join(only))
    print(f"\npeers' median time drift between A and B (same code: the noise floor): "
          f"{100 * floor:.1f}%; a change must exceed max({100 * args.threshold:.0f}%, "
          f"2 x floor, 3 x cv)")
    print(f"{changes} cfutures metric(s) changed beyond the noise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
