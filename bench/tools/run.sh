#!/usr/bin/env bash
# bench/tools/run.sh — run the cfutures benchmark suite and summarise it.
#
#   bench/tools/run.sh [--quick|--full|--smoke] [--groups "G ..."] [--out DIR]
#                      [--jemalloc] [--publish]
#   bench/tools/run.sh --publish-from DIR
#   bench/tools/run.sh --compare REV_A REV_B [--quick|--full] [--groups "G ..."] ...
#
# Configures (CMake preset `bench`: Release, benchmarks only) and builds
# cf_bench, cf_bench_memory (and cf_bench_libomp where LLVM's libomp is
# installed) in $CF_BENCH_BUILD_DIR (else $BUILD_DIR, else build/bench),
# then runs each group in its own process (pools of one group never compete
# with another's):
#   forkjoin loop libomp roundtrip throughput idle openloop memory process
#   python contended oversub
# (contended: the round trips, throughput and open loop again with a
# CPU-bound neighbour process spinning on every CPU; oversub: the same with
# 2 x the CPUs as workers). Every repetition of every case of a group runs in
# a random order (--benchmark_enable_random_interleaving), so that the
# machine's drift hits every system alike; the JSON keeps each repetition
# beside the aggregates. Writes into build/bench-results/<UTC timestamp>/
# (or $CF_BENCH_RESULTS/<stamp>, or --out DIR), all of it untracked:
#   <group>.json   google-benchmark JSON of every run (python.json: py_peer.py)
#   <group>.log    the console output
#   <group>.side.jsonl  per-repetition latency histograms (open loop, gaps)
#   load.tsv       the load average and CPU pressure before and after each group
#   summary.md     the tables (workload x system, every peer, ratios), the
#                  open loop and the gap sweep, targets, machine, statistics
#   readme.md      the fragment README.md includes (bench/tools/readme.py)
#   *.dat, *.png   plot data and plots: latency percentiles, throughput,
#                  fork-join overhead, latency and CPU under load (gnuplot)
# and prints summary.md. --publish then copies summary.md, readme.md and the
# PNGs (what README.md embeds) into bench/results/latest/, the only tracked
# results, and splices readme.md into README.md between its markers
# (bench/tools/readme.py), to be committed on purpose; --publish-from DIR
# does that for an earlier run.
# --quick (default) takes a few minutes on 2 cores; --full runs longer with
# more repetitions and samples; --smoke checks in seconds that everything
# runs (its numbers mean nothing). --jemalloc builds cfutures with
# CF_WITH_JEMALLOC=ON (default OFF, as the library's default); the summary
# names the allocator. --compare builds the suite at two git revisions and
# prints the median ratio of every benchmark (bench/tools/compare.sh).
#
# Environment: CF_BENCH_WORKERS (default 2), CF_BENCH_TASKS (default 100000),
# CF_BENCH_OL_SECONDS (open-loop point length), CF_BENCH_OL_RATES,
# CF_BENCH_GAPS_US (comma-separated lists replacing the defaults),
# CF_JOBS (build jobs), BENCH_ARGS (extra google-benchmark flags),
# CF_BENCH_CMAKE_ARGS (more -D options for the configure), CF_BENCH_RESULTS.
# CF_BENCH_CONFIGURED=1 (set by compare.sh): the build tree is configured
# already; only build in it.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH=$ROOT/bench
PY=/usr/bin/python3

if [ "${1:-}" = "--compare" ]; then
  shift
  exec bash "$HERE/compare.sh" "$@"
fi

MODE=quick
GROUPS_SEL="forkjoin loop libomp roundtrip throughput idle openloop memory process python contended oversub"
OUT=""
PUBLISH=0
PUBLISH_FROM=""
JEMALLOC=OFF
while [ $# -gt 0 ]; do
  case $1 in
  --quick) MODE=quick ;;
  --full) MODE=full ;;
  --smoke) MODE=smoke ;;
  --groups) GROUPS_SEL=$2; shift ;;
  --out) OUT=$2; shift ;;
  --jemalloc) JEMALLOC=ON ;;
  --publish) PUBLISH=1 ;;
  --publish-from) PUBLISH_FROM=$2; shift ;;
  --no-latest) ;; # the default now (results stay out of the tree); kept for compare.sh
  -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

LATEST=$BENCH/results/latest
# publish DIR: summary.md and the plots of DIR become bench/results/latest/.
publish() {
  local from=$1
  [ -f "$from/summary.md" ] || { echo "run.sh: no summary.md in $from" >&2; return 1; }
  mkdir -p "$LATEST"
  rm -f "$LATEST"/*.md "$LATEST"/*.png
  cp "$from/summary.md" "$LATEST/"
  [ -f "$from/readme.md" ] && cp "$from/readme.md" "$LATEST/"
  cp "$from"/*.png "$LATEST/" 2>/dev/null || echo "run.sh: no plots in $from" >&2
  if [ -f "$LATEST/readme.md" ]; then
    "$PY" "$HERE/readme.py" "$ROOT/README.md" "$LATEST/readme.md" || return 1
  fi
  echo "== published $from -> bench/results/latest/ ($(cd "$LATEST" && echo *)) and README.md; commit it on purpose"
}
if [ $PUBLISH = 1 ] && [ $MODE = smoke ]; then
  echo "run.sh: --publish with --smoke: a smoke run measures nothing" >&2
  exit 2
fi
if [ -n "$PUBLISH_FROM" ]; then
  publish "$PUBLISH_FROM"
  exit
fi

BUILD=${CF_BENCH_BUILD_DIR:-${BUILD_DIR:-$ROOT/build/bench}}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
JOBS=${CF_JOBS:-$(nproc 2>/dev/null || echo 2)}
export CF_BENCH_WORKERS=${CF_BENCH_WORKERS:-2}
export CF_BENCH_TASKS=${CF_BENCH_TASKS:-100000}

if [ $MODE = full ]; then
  REPS=10 RT_REPS=10 OL_REPS=10 MIN_TIME=0.3 WARMUP=0.1 IDLE_ITERS=2000 PY_TASKS=$CF_BENCH_TASKS PY_REPS=5
  OL_SECONDS=0.25
elif [ $MODE = smoke ]; then # does it all work? seconds, not a measurement
  REPS=1 RT_REPS=1 OL_REPS=1 MIN_TIME=0.01 WARMUP=0 IDLE_ITERS=50 PY_TASKS=2000 PY_REPS=1
  OL_SECONDS=0.02
  export CF_BENCH_IDLE_SECONDS=${CF_BENCH_IDLE_SECONDS:-0.2} CF_BENCH_TASKS=20000
  export CF_BENCH_OL_RATES=${CF_BENCH_OL_RATES:-1000,100000} CF_BENCH_GAPS_US=${CF_BENCH_GAPS_US:-0,100}
else
  REPS=5 RT_REPS=3 OL_REPS=3 MIN_TIME=0.1 WARMUP=0.05 IDLE_ITERS=500 PY_TASKS=20000 PY_REPS=3
  OL_SECONDS=0.1
fi
export CF_BENCH_IDLE_ITERS=$IDLE_ITERS
export CF_BENCH_OL_SECONDS=${CF_BENCH_OL_SECONDS:-$OL_SECONDS}

# ---- build -------------------------------------------------------------------
if [ "${CF_BENCH_CONFIGURED:-0}" != 1 ]; then
  [ -f "$ROOT/CMakePresets.json" ] || { echo "run.sh: no CMakePresets.json in $ROOT" >&2; exit 1; }
  echo "== configure $BUILD (preset bench, CF_WITH_JEMALLOC=$JEMALLOC${CF_BENCH_CMAKE_ARGS:+ $CF_BENCH_CMAKE_ARGS})"
  mkdir -p "$BUILD"
  # shellcheck disable=SC2086 # CF_BENCH_CMAKE_ARGS: several words
  (cd "$ROOT" && cmake --preset bench -B "$BUILD" -DCF_WITH_JEMALLOC=$JEMALLOC ${CF_BENCH_CMAKE_ARGS:-}) \
    >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log" >&2; exit 1; }
fi
TARGETS="cf_bench cf_bench_memory"
# (the help output captured first: grep -q would close the pipe early, and
# under pipefail the check would fail)
HELP=$(cmake --build "$BUILD" --target help 2>/dev/null || true)
if [[ $HELP == *cf_bench_libomp* ]]; then
  TARGETS="$TARGETS cf_bench_libomp"
fi
echo "== build $TARGETS in $BUILD"
# shellcheck disable=SC2086 # several targets
cmake --build "$BUILD" -j "$JOBS" --target $TARGETS >/dev/null
BIN=$BUILD/bench/cf_bench
MEMBIN=$BUILD/bench/cf_bench_memory
OMPBIN=$BUILD/bench/cf_bench_libomp

# ---- run ----------------------------------------------------------------------
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true) ($(date -u +%H:%M) UTC)"
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-${CF_BENCH_RESULTS:-$ROOT/build/bench-results}/$STAMP}
mkdir -p "$OUT"
echo "== results: $OUT ($MODE mode, $CF_BENCH_WORKERS workers per system)"

# every repetition stays in the JSON (the console shows the aggregates only)
COMMON=(--benchmark_display_aggregates_only=true --benchmark_out_format=json
  "--benchmark_min_time=$MIN_TIME")
# shellcheck disable=SC2206
EXTRA=(${BENCH_ARGS:-})

# load.tsv: group, when, 1-minute load average, CPU pressure (some avg10 %)
load_mark() { # group before|after
  local psi
  psi=$(sed -n 's/^some avg10=\([0-9.]*\).*/\1/p' /proc/pressure/cpu 2>/dev/null || true)
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(date -u +%H:%M:%S)" \
    "$(cut -d' ' -f1 /proc/loadavg 2>/dev/null)" "${psi:-NA}" >>"$OUT/load.tsv"
}

run_bench() { # group binary filter reps warmup
  local g=$1 bin=$2 filter=$3 reps=$4 warm=$5 t0=$SECONDS
  local inter=()
  [ "$reps" -gt 1 ] && inter=(--benchmark_enable_random_interleaving=true)
  printf '   %-22s' "$g"
  load_mark "$g" before
  if CF_BENCH_SIDE="$OUT/$g.side.jsonl" "$bin" --benchmark_filter="$filter" \
    --benchmark_repetitions="$reps" "${inter[@]}" \
    --benchmark_min_warmup_time="$warm" "${COMMON[@]}" "${EXTRA[@]}" \
    --benchmark_out="$OUT/$g.json" >"$OUT/$g.log" 2>&1; then
    echo "ok ($((SECONDS - t0)) s)"
  else
    echo "FAILED ($((SECONDS - t0)) s): see $OUT/$g.log"
    tail -5 "$OUT/$g.log" 2>/dev/null | sed 's/^/     /' || true
    FAILED=1
  fi
  load_mark "$g" after
}

# The contended groups' subset: round trips, throughput, the open loop at a
# few rates (both arrivals), the gap sweep at three gaps.
CONTENDED_FILTER='^(roundtrip_(hot|idle)/|throughput/.*/submitters:1|openloop/(fixed|poisson)/[^/]*/rate:(1000|10000|40000|100000)/|gap/[^/]*/gap_us:(0|30|1000)/|proc_roundtrip_hot/)'

# A CPU-bound neighbour: one spinning process per CPU, not a descendant of
# the measured process (its CPU is not counted), for the length of a group.
NEIGHBOUR=""
neighbour_start() {
  "$PY" - "$(nproc 2>/dev/null || echo 2)" <<'PYEOF' &
import os, signal, sys
n, parent, kids = int(sys.argv[1]), os.getpid(), []
for _ in range(n - 1):
    pid = os.fork()
    if pid == 0:
        kids = None
        break
    kids.append(pid)
if kids is not None:
    def stop(*_):
        for k in kids:
            os.kill(k, signal.SIGKILL)
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
i = 0
while True:  # spin; a child leaves when its parent is gone
    i += 1
    if kids is None and i % 1000000 == 0 and os.getppid() != parent:
        os._exit(0)
PYEOF
  NEIGHBOUR=$!
}
neighbour_stop() {
  if [ -n "$NEIGHBOUR" ]; then
    kill "$NEIGHBOUR" 2>/dev/null || true
    wait "$NEIGHBOUR" 2>/dev/null || true
    NEIGHBOUR=""
  fi
}
trap neighbour_stop EXIT

FAILED=0
for g in $GROUPS_SEL; do
  case $g in
  forkjoin) run_bench forkjoin "$BIN" '^forkjoin/' "$REPS" "$WARMUP" ;;
  loop) run_bench loop "$BIN" '^loop/' "$REPS" "$WARMUP" ;;
  roundtrip)
    run_bench roundtrip_hot "$BIN" '^roundtrip_hot/' "$RT_REPS" "$WARMUP"
    # fixed iterations with 2 ms sleeps; each case warms itself up
    run_bench roundtrip_idle "$BIN" '^roundtrip_idle/' "$RT_REPS" 0
    ;;
  throughput) run_bench throughput "$BIN" '^throughput/' "$REPS" "$WARMUP" ;;
  libomp)
    if [ -x "$OMPBIN" ]; then
      run_bench libomp "$OMPBIN" '^(forkjoin|loop)/openmp_libomp' "$REPS" "$WARMUP"
    else
      echo "   libomp                 skipped (no cf_bench_libomp: LLVM libomp not installed)"
    fi
    ;;
  idle) run_bench idle "$BIN" '^(idle|proc_idle)/' "$RT_REPS" 0 ;;
  openloop)
    # thread and process pools, open loop and gap sweep: one process, every
    # repetition of every point interleaved at random
    run_bench openloop "$BIN" '^(openloop|proc_openloop|gap|proc_gap)/' "$OL_REPS" 0
    ;;
  contended)
    neighbour_start
    run_bench contended "$BIN" "$CONTENDED_FILTER" "$OL_REPS" 0
    neighbour_stop
    ;;
  oversub)
    CF_BENCH_WORKERS=$((2 * $(nproc 2>/dev/null || echo 2))) \
      run_bench oversub "$BIN" "$CONTENDED_FILTER" "$OL_REPS" 0
    ;;
  memory)
    # one process per system: RSS growth is measured in a fresh heap
    # (GLib with G_SLICE=always-malloc: its queue nodes become counted mallocs)
    for name in $("$MEMBIN" --benchmark_list_tests); do
      name=${name%%/iterations*}
      if [ "$name" = memory/glib ]; then
        G_SLICE=always-malloc run_bench "memory_${name#memory/}" "$MEMBIN" "^${name}/" 1 0
      else
        run_bench "memory_${name#memory/}" "$MEMBIN" "^${name}/" 1 0
      fi
    done
    ;;
  process)
    run_bench proc_roundtrip_hot "$BIN" '^proc_roundtrip_hot/' "$RT_REPS" "$WARMUP"
    run_bench proc_roundtrip_idle "$BIN" '^proc_roundtrip_idle/' "$RT_REPS" 0
    run_bench proc_throughput "$BIN" '^proc_(throughput|map)/' "$REPS" "$WARMUP"
    ;;
  python)
    printf '   %-22s' python
    t0=$SECONDS
    if "$PY" "$BENCH/peers/py_peer.py" --workers "$CF_BENCH_WORKERS" --tasks "$PY_TASKS" \
      --reps "$PY_REPS" --idle-iters "$IDLE_ITERS" >"$OUT/python.json" 2>"$OUT/python.log"; then
      echo "ok ($((SECONDS - t0)) s, $PY_TASKS tasks per burst)"
    else
      echo "FAILED: see $OUT/python.log"
      rm -f "$OUT/python.json"
      FAILED=1
    fi
    ;;
  *) echo "run.sh: unknown group $g" >&2; exit 2 ;;
  esac
done

# ---- summary, plots, publish -----------------------------------------------------
JEM_ARG=""
[ $JEMALLOC = OFF ] || JEM_ARG=" --jemalloc"
GROUPS_ARG=""
[ "$GROUPS_SEL" = "forkjoin loop libomp roundtrip throughput idle openloop memory process python contended oversub" ] ||
  GROUPS_ARG=" --groups \"$GROUPS_SEL\""
CMDLINE="bench/tools/run.sh --$MODE$JEM_ARG$GROUPS_ARG${BENCH_ARGS:+ (BENCH_ARGS=$BENCH_ARGS)}"
PARAMS="repetitions $REPS (round trips, idle, process latency: $RT_REPS; open loop, gap sweep, contended: $OL_REPS), interleaved at random; min time $MIN_TIME s, warm-up $WARMUP s, $CF_BENCH_TASKS tasks per burst, $IDLE_ITERS after-idle samples per repetition; open-loop points of at least $CF_BENCH_OL_SECONDS s (1000 tasks, up to 4 x that); Python: $PY_TASKS tasks x $PY_REPS bursts"
SUMMARY_RC=0
"$PY" "$HERE/summarize.py" "$OUT" --root "$ROOT" --build "$BUILD" --command "$CMDLINE" --params "$PARAMS" \
  --load-before "$LOAD_BEFORE" \
  >"$OUT/summary.stdout" || SUMMARY_RC=$?
if command -v gnuplot >/dev/null 2>&1; then
  gnuplot -e "dir='$OUT'" "$HERE/plot.gp" 2>"$OUT/plot.log" || echo "run.sh: gnuplot failed: see $OUT/plot.log" >&2
else
  echo "run.sh: gnuplot not found: no plots" >&2
fi
echo
cat "$OUT/summary.md"
echo
echo "== $OUT/summary.md"
if [ $FAILED = 1 ] || [ $SUMMARY_RC != 0 ]; then
  echo "run.sh: some benchmarks failed or reported errors (see above)" >&2
  [ $PUBLISH = 0 ] || echo "run.sh: not published" >&2
  exit 1
fi
if [ $PUBLISH = 1 ]; then
  publish "$OUT"
fi
