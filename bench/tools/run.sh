#!/usr/bin/env bash
# bench/tools/run.sh — run the cfutures benchmark suite and summarise it.
#
#   bench/tools/run.sh [--quick|--full|--smoke] [--groups "G ..."] [--out DIR]
#                      [--jemalloc] [--publish]
#   bench/tools/run.sh --publish-from DIR
#   bench/tools/run.sh --compare REV_A REV_B [--quick|--full] [--groups "G ..."] ...
#
# Configures (CMake preset `bench`: Release, benchmarks only) and builds
# cf_bench and cf_bench_memory in $CF_BENCH_BUILD_DIR (else $BUILD_DIR,
# else build/bench), then runs each group in its own process (pools of one
# group never compete with another's):
#   forkjoin loop roundtrip throughput idle memory process python
# with warm-up and repetitions (medians, stddev, cv), and writes into
# build/bench-results/<UTC timestamp>/ (or $CF_BENCH_RESULTS/<stamp>, or
# --out DIR), all of it untracked:
#   <group>.json   google-benchmark JSON of every run (python.json: py_peer.py)
#   <group>.log    the console output
#   summary.md     one table (workload x system, ratios), targets, machine
#   *.dat, *.png   plot data and plots: latency percentiles, throughput,
#                  fork-join overhead (gnuplot)
# and prints summary.md. --publish then copies summary.md and the PNGs (what
# README.md embeds) into bench/results/latest/, the only tracked results, to
# be committed on purpose; --publish-from DIR does that for an earlier run.
# --quick (default) takes a few minutes on 2 cores; --full runs longer with
# more repetitions and samples; --smoke checks in seconds that everything
# runs (its numbers mean nothing). --jemalloc builds cfutures with
# CF_WITH_JEMALLOC=ON (default OFF, as the library's default); the summary
# names the allocator. --compare builds the suite at two git revisions and
# prints the median ratio of every benchmark (bench/tools/compare.sh).
#
# Environment: CF_BENCH_WORKERS (default 2), CF_BENCH_TASKS (default 100000),
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
GROUPS_SEL="forkjoin loop roundtrip throughput idle memory process python"
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
  cp "$from"/*.png "$LATEST/" 2>/dev/null || echo "run.sh: no plots in $from" >&2
  echo "== published $from -> bench/results/latest/ ($(cd "$LATEST" && echo *)); commit it on purpose"
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
  REPS=10 RT_REPS=5 MIN_TIME=0.5 WARMUP=0.2 IDLE_ITERS=2000 PY_TASKS=$CF_BENCH_TASKS PY_REPS=5
elif [ $MODE = smoke ]; then # does it all work? seconds, not a measurement
  REPS=1 RT_REPS=1 MIN_TIME=0.01 WARMUP=0 IDLE_ITERS=50 PY_TASKS=2000 PY_REPS=1
  export CF_BENCH_IDLE_SECONDS=${CF_BENCH_IDLE_SECONDS:-0.2} CF_BENCH_TASKS=20000
else
  REPS=5 RT_REPS=3 MIN_TIME=0.1 WARMUP=0.05 IDLE_ITERS=500 PY_TASKS=20000 PY_REPS=3
fi
export CF_BENCH_IDLE_ITERS=$IDLE_ITERS

# ---- build -------------------------------------------------------------------
if [ "${CF_BENCH_CONFIGURED:-0}" != 1 ]; then
  [ -f "$ROOT/CMakePresets.json" ] || { echo "run.sh: no CMakePresets.json in $ROOT" >&2; exit 1; }
  echo "== configure $BUILD (preset bench, CF_WITH_JEMALLOC=$JEMALLOC${CF_BENCH_CMAKE_ARGS:+ $CF_BENCH_CMAKE_ARGS})"
  mkdir -p "$BUILD"
  # shellcheck disable=SC2086 # CF_BENCH_CMAKE_ARGS: several words
  (cd "$ROOT" && cmake --preset bench -B "$BUILD" -DCF_WITH_JEMALLOC=$JEMALLOC ${CF_BENCH_CMAKE_ARGS:-}) \
    >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log" >&2; exit 1; }
fi
echo "== build cf_bench, cf_bench_memory in $BUILD"
cmake --build "$BUILD" -j "$JOBS" --target cf_bench cf_bench_memory >/dev/null
BIN=$BUILD/bench/cf_bench
MEMBIN=$BUILD/bench/cf_bench_memory

# ---- run ----------------------------------------------------------------------
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true) ($(date -u +%H:%M) UTC)"
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-${CF_BENCH_RESULTS:-$ROOT/build/bench-results}/$STAMP}
mkdir -p "$OUT"
echo "== results: $OUT ($MODE mode, $CF_BENCH_WORKERS workers per system)"

COMMON=(--benchmark_report_aggregates_only=true --benchmark_out_format=json
  "--benchmark_min_time=$MIN_TIME")
# shellcheck disable=SC2206
EXTRA=(${BENCH_ARGS:-})

run_bench() { # group binary filter reps warmup
  local g=$1 bin=$2 filter=$3 reps=$4 warm=$5 t0=$SECONDS
  printf '   %-22s' "$g"
  if "$bin" --benchmark_filter="$filter" --benchmark_repetitions="$reps" \
    --benchmark_min_warmup_time="$warm" "${COMMON[@]}" "${EXTRA[@]}" \
    --benchmark_out="$OUT/$g.json" >"$OUT/$g.log" 2>&1; then
    echo "ok ($((SECONDS - t0)) s)"
  else
    echo "FAILED ($((SECONDS - t0)) s): see $OUT/$g.log"
    tail -5 "$OUT/$g.log" 2>/dev/null | sed 's/^/     /' || true
    FAILED=1
  fi
}

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
  idle) run_bench idle "$BIN" '^idle/' "$RT_REPS" 0 ;;
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
CMDLINE="bench/tools/run.sh --$MODE$JEM_ARG${BENCH_ARGS:+ (BENCH_ARGS=$BENCH_ARGS)}"
PARAMS="repetitions $REPS (round trips, idle, process latency: $RT_REPS), min time $MIN_TIME s, warm-up $WARMUP s, $CF_BENCH_TASKS tasks per burst, $IDLE_ITERS after-idle samples per repetition; Python: $PY_TASKS tasks x $PY_REPS bursts"
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
