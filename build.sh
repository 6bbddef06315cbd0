#!/usr/bin/env bash
# build.sh — the two commands of cfutures (Debian 12; run as root from a clone).
#
#   ./build.sh test          install what is missing, then build and ctest five
#                            trees, each a CMake preset (CMakePresets.json) in
#                            build/<preset>: debug (CF_DEBUG checks,
#                            assertions), release (the library as users link
#                            it: optimised, futures reused through the
#                            per-thread caches and their depot, which CF_DEBUG
#                            quarantines instead; no test hooks, so the fault
#                            tests are the other trees'), asan (ASan+UBSan)
#                            and tsan, with the install tests in each; and mpi
#                            (the MPI executor,
#                            an opt-in build: its tests, label mpi, under
#                            mpirun -n 3 with Open MPI)
#   ./build.sh bench [ARGS]  install what is missing, then bench/tools/run.sh
#                            ARGS: configure (preset bench) and build in
#                            build/bench, run, results in build/bench-results/
#   ./build.sh build         configure and build the debug tree only
#   ./build.sh help          this text
#
# Environment: CF_BUILD_DIR (default ./build), CF_JOBS (build jobs, default
# the number of CPUs), CF_CTEST_JOBS (default 2: process tests fork, keep it
# small), CF_TREES (default "debug release asan tsan mpi"; "normal" is debug's old
# name; "mpi" is a Debug tree with the MPI executor (Open MPI) that runs the
# MPI tests; "mpich" the same against MPICH, opt-in).
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$(pwd)
BUILD_DIR=${CF_BUILD_DIR:-$ROOT/build}
NCPU=$(nproc 2>/dev/null || echo 2)
JOBS=${CF_JOBS:-$NCPU}
CTEST_JOBS=${CF_CTEST_JOBS:-2}
TREES=${CF_TREES:-debug release asan tsan mpi}
TREES=${TREES//normal/debug}

# libjemalloc-dev: the CF_WITH_JEMALLOC opt-in and cf_bench_memory's counters;
# libtcmalloc-minimal4, libmimalloc-dev: the install test's host allocators;
# libuv1-dev: the libuv example (examples/uv_queue.c).
# libopenmpi-dev, openmpi-bin: the MPI executor and its tests (mpirun -n 3);
# python3-mpi4py: the mpi4py.futures peer; mpich: the opt-in CF_TREES=mpich.
TEST_PKGS=(build-essential cmake pkg-config libck-dev libjemalloc-dev libbenchmark-dev
  libtcmalloc-minimal4 libmimalloc-dev libuv1-dev libopenmpi-dev openmpi-bin)
BENCH_PKGS=("${TEST_PKGS[@]}" libtbb-dev libuv1-dev libglib2.0-dev python3 gnuplot-nox python3-mpi4py)
MPICH_PKGS=(mpich libmpich-dev)

log() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() {
  echo "build.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

# ---- dependencies -----------------------------------------------------------

# Install the Debian packages that are missing; apt-get update only when one is.
ensure_packages() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "build.sh: no dpkg-query (not Debian?): assuming $* are present" >&2
    return 0
  fi
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    echo "packages: all present (${*})"
    return 0
  fi
  log "installing: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install ${missing[*]}"
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q
  "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ---- sanitizer runtime checks -------------------------------------------------

# A tiny threaded program, built and run with a sanitizer, tells whether its
# runtime works here. TSan's runtime aborts with "unexpected memory mapping"
# on kernels with high mmap ASLR entropy (vm.mmap_rnd_bits > 28) — then the
# same program is retried with ASLR off (setarch -R), and the TSan ctest runs
# under it. Sets SAN_PREFIX (a command prefix, possibly empty).
SAN_PREFIX=()
check_sanitizer() {
  local kind=$1 dir out
  dir=$(mktemp -d)
  cat >"$dir/t.c" <<'EOF'
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
static _Atomic int n;
static void *run(void *a) { n++; return a; }
int main(void) {
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, run, NULL);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  char *p = malloc(16); p[0] = (char)n; int r = p[0] == 2 ? 0 : 1; free(p);
  puts("sanitizer ok");
  return r;
}
EOF
  SAN_PREFIX=()
  if ! cc -fsanitize="$kind" -g -pthread "$dir/t.c" -o "$dir/t" 2>"$dir/err"; then
    cat "$dir/err" >&2
    rm -rf "$dir"
    echo "sanitizer $kind: cannot link (missing runtime library?)" >&2
    return 1
  fi
  if out=$("$dir/t" 2>&1); then
    echo "sanitizer $kind: links and runs"
  elif command -v setarch >/dev/null 2>&1 && out=$(setarch "$(uname -m)" -R "$dir/t" 2>&1); then
    echo "sanitizer $kind: runs only with ASLR off; its tests run under 'setarch $(uname -m) -R'"
    SAN_PREFIX=(setarch "$(uname -m)" -R)
  else
    echo "$out" >&2
    rm -rf "$dir"
    echo "sanitizer $kind: the runtime does not start here, even with ASLR off" >&2
    echo "  (TSan on a kernel with vm.mmap_rnd_bits=$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo '?'):" \
      "'sysctl vm.mmap_rnd_bits=28' is the usual fix; build.sh does not change kernel settings)" >&2
    return 1
  fi
  rm -rf "$dir"
}

# ---- trees ------------------------------------------------------------------

declare -A RESULT TIME DETAIL
FAILED=0

# configure_build PRESET DIR [cmake-args...]: the preset's cache settings, in DIR.
configure_build() {
  local preset=$1 dir=$2
  shift 2
  cmake -S "$ROOT" --preset "$preset" -B "$dir" "$@" && cmake --build "$dir" -j "$JOBS"
}

# run_tree NAME: configure (preset NAME), build and ctest one tree.
run_tree() {
  local name=$1
  local dir=$BUILD_DIR/$name start end log
  start=$(date +%s)
  log=$dir.ctest.log
  log "tree $name: configure + build ($dir)"
  RESULT[$name]=FAIL
  DETAIL[$name]=""
  local prefix=()
  case $name in
  asan) check_sanitizer address,undefined || {
    DETAIL[$name]="sanitizer runtime unusable"
    FAILED=1
    TIME[$name]=0
    return 0
  } ;;
  tsan)
    check_sanitizer thread || {
      DETAIL[$name]="sanitizer runtime unusable"
      FAILED=1
      TIME[$name]=0
      return 0
    }
    prefix=("${SAN_PREFIX[@]}")
    ;;
  esac
  if ! configure_build "$name" "$dir"; then
    DETAIL[$name]="configure/build failed"
    FAILED=1
  else
    log "tree $name: ctest (-j$CTEST_JOBS)"
    # --timeout is the default for tests without their own TIMEOUT property.
    local only=()
    # the MPI trees run the MPI tests only (the rest is the debug tree's)
    [ "$name" != mpi ] && [ "$name" != mpich ] || only=(-L mpi)
    if "${prefix[@]}" ctest --test-dir "$dir" --output-on-failure -j "$CTEST_JOBS" "${only[@]}" \
      --timeout 300 --no-tests=error 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
      RESULT[$name]=PASS
    else
      FAILED=1
    fi
    DETAIL[$name]=$(grep -E 'tests passed|tests failed' "$log" | tail -n1 || true)
    local failed_list
    failed_list=$(sed -n '/The following tests FAILED/,$p' "$log" | grep -E '^\s+[0-9]+ - ' | sed 's/^\s*//' | tr '\n' ';' || true)
    [ -z "$failed_list" ] || DETAIL[$name]="${DETAIL[$name]} | FAILED: $failed_list"
  fi
  end=$(date +%s)
  TIME[$name]=$((end - start))
}

cmd_test() {
  local t0 t1 tree
  t0=$(date +%s)
  ensure_packages "${TEST_PKGS[@]}"
  mkdir -p "$BUILD_DIR"
  for tree in $TREES; do
    case $tree in
    debug | release | asan | tsan | mpi) run_tree "$tree" ;;
    mpich)
      # the MPI tests against MPICH too (Debian's alternatives keep Open MPI
      # the default mpicc/mpirun; the preset names MPICH's)
      ensure_packages "${MPICH_PKGS[@]}"
      run_tree mpich
      ;;
    *) die "unknown tree '$tree' in CF_TREES (debug, release, asan, tsan, mpi, mpich)" ;;
    esac
  done
  t1=$(date +%s)
  log "summary"
  for tree in $TREES; do
    printf '  %-7s %-4s %5ss  %s\n' "$tree" "${RESULT[$tree]}" "${TIME[$tree]}" "${DETAIL[$tree]}"
  done
  printf '  total %ss\n' "$((t1 - t0))"
  if [ "$FAILED" -ne 0 ]; then
    echo "build.sh test: FAILED"
    return 1
  fi
  echo "build.sh test: all trees passed"
}

cmd_build() {
  ensure_packages "${TEST_PKGS[@]}"
  configure_build debug "$BUILD_DIR/debug"
}

cmd_bench() {
  ensure_packages "${BENCH_PKGS[@]}"
  [ -f "$ROOT/bench/tools/run.sh" ] || die "bench/tools/run.sh does not exist yet: no benchmarks to run"
  log "bench: bench/tools/run.sh $* (preset bench in $BUILD_DIR/bench)"
  CF_BENCH_BUILD_DIR=$BUILD_DIR/bench CF_JOBS=$JOBS exec bash "$ROOT/bench/tools/run.sh" "$@"
}

cmd=${1:-help}
[ $# -eq 0 ] || shift
case $cmd in
test) cmd_test "$@" ;;
bench) cmd_bench "$@" ;;
build) cmd_build "$@" ;;
help | -h | --help) usage ;;
*)
  usage >&2
  exit 2
  ;;
esac
