#!/usr/bin/env bash
# bench/tools/mpi_bench.sh BUILD_DIR [OUT_DIR] — the MPI rows, in one run:
# a raw 8-byte MPI ping-pong (2 ranks: the floor), the MPI executor (3 ranks:
# rank 0 + 2 workers), the process pool (2 workers) and mpi4py.futures (3
# ranks), each as JSON lines into OUT_DIR/mpi.jsonl (default: a temporary
# directory), then a table on stdout (mpi.md beside it). Sizes: see
# bench/cases/bench_mpi.c (CF_BENCH_RT, CF_BENCH_TASKS, CF_BENCH_ITEMS,
# CF_BENCH_REPS). On one machine every rank shares its CPUs: real gains from
# MPI need several machines; these rows give the per-task overhead.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
build=${1:?usage: mpi_bench.sh BUILD_DIR [OUT_DIR]}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
bin=$(find "$build" -name bench_mpi -type f -perm -u+x | head -n1)
[ -n "$bin" ] || { echo "mpi_bench.sh: no bench_mpi in $build (CF_WITH_MPI=ON, CF_BUILD_BENCH=ON)" >&2; exit 1; }
mpirun=(mpirun)
if mpirun --version 2>&1 | grep -q "Open MPI"; then
  # More ranks than CPUs: mpirun then turns every idle MPI poll into a
  # sched_yield (mpi_yield_when_idle), which costs each side here 10x in
  # latency; every system below runs with the same flags.
  mpirun+=(--oversubscribe --mca mpi_yield_when_idle 0)
  [ "$(id -u)" -ne 0 ] || mpirun+=(--allow-run-as-root)
fi
j=$out/mpi.jsonl
: >"$j"
echo "{\"row\": \"machine\", \"system\": \"-\", \"nproc\": $(nproc), \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$j"
"${mpirun[@]}" -n 2 "$bin" pingpong | grep '^{' >>"$j"
"${mpirun[@]}" -n 3 "$bin" mpi | grep '^{' >>"$j"
"$bin" process | grep '^{' >>"$j"
if /usr/bin/python3 -c 'import mpi4py.futures' 2>/dev/null; then
  "${mpirun[@]}" -n 3 /usr/bin/python3 -m mpi4py.futures "$ROOT/bench/peers/mpi4py_peer.py" | grep '^{' >>"$j"
else
  echo "mpi_bench.sh: no mpi4py (Debian: python3-mpi4py): its rows are missing" >&2
fi
/usr/bin/python3 - "$j" <<'PY' | tee "$out/mpi.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def get(row, system, key):
    for r in rows:
        if r["row"] == row and r["system"] == system and key in r:
            return r[key]
    return None
floor = get("pingpong", "mpi-raw", "p50_ns")
py = {k: get(r, "mpi4py.futures", k) for r, k in [("roundtrip", "p50_ns"), ("submit", "tasks_per_s"), ("map", "items_per_s")]}
print("| system | round trip p50 | p99 | submit: tasks/s | map(chunk 256): items/s |")
print("| --- | --- | --- | --- | --- |")
def us(v): return "-" if v is None else f"{v / 1000:.2f} us"
def k(v): return "-" if v is None else (f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k")
for s in ["mpi-raw", "cfutures-mpi", "cfutures-mpi/inflight:16", "cfutures-process", "mpi4py.futures"]:
    row = "pingpong" if s == "mpi-raw" else "roundtrip"
    print(f"| {s} | {us(get(row, s, 'p50_ns'))} | {us(get(row, s, 'p99_ns'))} | {k(get('submit', s, 'tasks_per_s'))} | {k(get('map', s, 'items_per_s'))} |")
rt = get("roundtrip", "cfutures-mpi", "p50_ns")
if floor and rt:
    print(f"\ncfutures-mpi round trip / MPI ping-pong floor: {rt / floor:.1f}x (aim: <= 2x)")
for (row, key), name in [(("submit", "tasks_per_s"), "submit"), (("map", "items_per_s"), "map")]:
    ours = get(row, "cfutures-mpi", key)
    if ours and py[key]:
        print(f"cfutures-mpi / mpi4py.futures, {name}: {ours / py[key]:.0f}x (aim: >= 100x)")
    best = get(row, "cfutures-mpi/inflight:16", key)
    if best and py[key]:
        print(f"cfutures-mpi (max_inflight 16) / mpi4py.futures, {name}: {best / py[key]:.0f}x")
if rt and py["p50_ns"]:
    print(f"round trip: mpi4py.futures / cfutures-mpi: {py['p50_ns'] / rt:.0f}x")
m = [r for r in rows if r["row"] == "machine"]
if m:
    print(f"machine: {m[0]['nproc']} CPUs, load average before the run {m[0]['load']}")
lvl = get("info", "cfutures-mpi", "thread_level")
if lvl is not None:
    print(f"thread level granted: {lvl} (MPI_THREAD_MULTIPLE = {get('info', 'cfutures-mpi', 'thread_multiple')})")
PY
