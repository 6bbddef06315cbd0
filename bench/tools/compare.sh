#!/usr/bin/env bash
# bench/tools/compare.sh — benchmark two git revisions and compare them.
#
#   bench/tools/compare.sh REV_A REV_B [--quick|--full|--smoke] [--groups "G ..."] [--own-bench]
#                          [--rounds N] [--cmake "ARGS"] [--cmake-a "ARGS"] [--cmake-b "ARGS"]
#   (also: bench/tools/run.sh --compare REV_A REV_B ...)
#
# Checks each revision out with `git worktree add --detach` into a temporary
# directory (REV "." copies the working tree as it is, uncommitted changes
# included), puts the current bench/ sources into both (so only the library
# differs; --own-bench keeps each revision's own bench/ where it has one),
# configures each with the CMake preset `bench` (a revision older than
# CMakePresets.json gets the current one copied in) plus --cmake ARGS (both)
# and --cmake-a / --cmake-b ARGS (one side: e.g. the same revision twice,
# with -DCF_WITH_JEMALLOC=ON against OFF), builds both, runs the selected
# groups of both — A and B alternating group by group, so that drift in the
# machine's load hits both alike, N rounds (--rounds, default 1; the order
# A, B flips every round) — and prints, per benchmark and metric, median A,
# median B over every repetition of every round, B/A, a rank test's p-value
# and whether the change is beyond the noise (bench/tools/compare.py). Results stay untracked, in
# build/bench-results/compare-<stamp>/{A,B} (or under $CF_BENCH_RESULTS).
# Default groups: "forkjoin loop roundtrip throughput process" (no python,
# which does not change with cfutures, and no memory/idle, which are slow).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH=$ROOT/bench
PY=/usr/bin/python3

[ $# -ge 2 ] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
REV_A=$1 REV_B=$2
shift 2
MODE_ARG=--quick
GROUPS_SEL="forkjoin loop roundtrip throughput process"
OWN_BENCH=0
ROUNDS=1
CMAKE_BOTH="" CMAKE_A="" CMAKE_B=""
while [ $# -gt 0 ]; do
  case $1 in
  --own-bench) OWN_BENCH=1 ;;
  --rounds) ROUNDS=$2; shift ;;
  --cmake) CMAKE_BOTH=$2; shift ;;
  --cmake-a) CMAKE_A=$2; shift ;;
  --cmake-b) CMAKE_B=$2; shift ;;
  --quick | --full | --smoke) MODE_ARG=$1 ;;
  --groups) GROUPS_SEL=$2; shift ;;
  *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# "." is the working tree as it is now (uncommitted changes included)
sha_of() { if [ "$1" = . ]; then echo "working-tree"; else git -C "$ROOT" rev-parse --verify "$1^{commit}"; fi; }
SHA_A=$(sha_of "$REV_A")
SHA_B=$(sha_of "$REV_B")
TMP=$(mktemp -d /tmp/cfbench-compare.XXXXXX)
cleanup() {
  for s in A B; do
    [ -d "$TMP/$s/.git" ] || [ -f "$TMP/$s/.git" ] && git -C "$ROOT" worktree remove --force "$TMP/$s" >/dev/null 2>&1 || true
  done
  git -C "$ROOT" worktree prune >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

STAMP=$(date -u +%Y%m%d-%H%M%S)
RES=${CF_BENCH_RESULTS:-$ROOT/build/bench-results}/compare-$STAMP
mkdir -p "$RES/A" "$RES/B"

for s in A B; do
  sha=$([ $s = A ] && echo "$SHA_A" || echo "$SHA_B")
  echo "== $s = $sha: worktree + Release build"
  if [ "$sha" = working-tree ]; then
    mkdir -p "$TMP/$s"
    # a copy of the tracked and untracked (not ignored) files as they are now
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$TMP/$s" 2>/dev/null) || true
  else
    git -C "$ROOT" worktree add --detach "$TMP/$s" "$sha" >/dev/null 2>&1
  fi
  if [ $OWN_BENCH = 0 ] || [ ! -f "$TMP/$s/bench/CMakeLists.txt" ]; then
    # the same benchmark code for both: only the library differs
    rm -rf "$TMP/$s/bench"
    mkdir -p "$TMP/$s/bench"
    (cd "$BENCH" && git ls-files -z --cached --others --exclude-standard . | xargs -0 cp --parents -t "$TMP/$s/bench" 2>/dev/null) || true
  fi
  if [ ! -f "$TMP/$s/CMakePresets.json" ]; then
    # older than the presets: the current ones (the same bench flags for both)
    cp "$ROOT/CMakePresets.json" "$TMP/$s/"
    echo "   ($s has no CMakePresets.json: the current one is copied in)"
  fi
  extra="$CMAKE_BOTH $([ $s = A ] && echo "$CMAKE_A" || echo "$CMAKE_B")"
  echo "   cmake --preset bench$extra"
  # shellcheck disable=SC2086 # the extra arguments are several words
  (cd "$TMP/$s" && cmake --preset bench -B "$TMP/$s/build-bench" $extra) >"$RES/$s/configure.log" 2>&1 ||
    { echo "configure of $s failed: $RES/$s/configure.log" >&2; exit 1; }
  cmake --build "$TMP/$s/build-bench" -j "${CF_JOBS:-$(nproc)}" --target cf_bench cf_bench_memory \
    >"$RES/$s/build.log" 2>&1 || { echo "build of $s failed: $RES/$s/build.log" >&2; exit 1; }
done

for r in $(seq 1 "$ROUNDS"); do
  order="A B"
  [ $((r % 2)) = 0 ] && order="B A"
  for g in $GROUPS_SEL; do
    for s in $order; do
      echo "== round $r/$ROUNDS, $g: $s"
      # the revision's run.sh (ours unless --own-bench) if it takes --no-latest
      runner=$TMP/$s/bench/tools/run.sh
      grep -q -- '--no-latest' "$runner" 2>/dev/null || runner=$HERE/run.sh
      out=$RES/$s/r$r-$g
      CF_BENCH_CONFIGURED=1 CF_BENCH_BUILD_DIR=$TMP/$s/build-bench bash "$runner" "$MODE_ARG" --groups "$g" \
        --out "$out" --no-latest >"$out.stdout" 2>&1 || echo "   ($s $g reported failures: $out.stdout)"
      for j in "$out"/*.json; do
        [ -f "$j" ] && cp "$j" "$RES/$s/r$r-$(basename "$j")"
      done
    done
  done
done

echo
echo "A = $REV_A ($SHA_A)${CMAKE_BOTH:+ $CMAKE_BOTH}${CMAKE_A:+ $CMAKE_A}"
echo "B = $REV_B ($SHA_B)${CMAKE_BOTH:+ $CMAKE_BOTH}${CMAKE_B:+ $CMAKE_B}"
"$PY" "$HERE/compare.py" "$RES/A" "$RES/B" | tee "$RES/compare.txt"
echo "== $RES/compare.txt"
