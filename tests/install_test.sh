#!/usr/bin/env bash
# install_test.sh — what a library user gets from an installed cfutures.
#
#   install_test.sh tree BUILD_DIR CONSUMER_SRC WORK_DIR C_COMPILER [FLAGS]
#       installs the build tree BUILD_DIR into WORK_DIR/prefix
#   install_test.sh shared SOURCE_DIR CONSUMER_SRC WORK_DIR C_COMPILER BUILD_TYPE [JEMALLOC]
#       configures, builds and installs a -DBUILD_SHARED_LIBS=ON tree of
#       SOURCE_DIR in WORK_DIR, JEMALLOC = its CF_WITH_JEMALLOC
#
# The kind checked (static: libcfutures.a, shared: libcfutures.so) is what
# the tree installed.
# then, against that prefix:
#   1. the package: header, library, cfutures.pc, the CMake package files;
#   2. no compile definition reaches a consumer: `pkg-config --cflags`
#      (plain and --static) is -I only, the exported targets carry no
#      compile definitions or options, and the find_package consumer's
#      compile lines (compile_commands.json) have no -D;
#   3. tests/consumer built with find_package(cfutures) and with pkg-config
#      (--static for the static library), run, output checked;
#   4. the allocator (alloc_probe.c): a program linking cfutures resolves
#      malloc to the same object as the same program without cfutures
#      (libc.so.6 in a plain tree), has no jemalloc in it, and cfutures'
#      heap blocks come from glibc's malloc; with FLAGS empty (no sanitizer)
#      also with a host allocator linked (mimalloc, tcmalloc: skipped if
#      not installed), whose heap then holds cfutures' blocks;
#   5. no libstdc++ and no jemalloc in what a consumer links (ldd);
#   6. static only, with FLAGS empty: `cc -static app.c $(pkg-config
#      --static --cflags --libs cfutures)` links and runs, and its symbols
#      hold no libstdc++ and no jemalloc.
# A tree built with CF_WITH_JEMALLOC=ON gets the documented opposite for 4:
# jemalloc is then the program's malloc (mallctl present); 5 and 6 still hold
# for libstdc++ in the static link. FLAGS (a sanitizer build's) are used to
# compile and link every consumer, since the installed library has them.
set -euo pipefail
mode=${1:?tree or shared}
case $mode in
tree) build=$2 src=$3 work=$4 cc=$5 flags=${6:-} ;;
shared) srcdir=$2 src=$3 work=$4 cc=$5 btype=$6 jem_opt=${7:-OFF} flags="" ;;
*) echo "install_test: first argument: tree or shared" >&2; exit 2 ;;
esac
kind=$mode
expect="consumer: sum of squares 0..99 = 328350"

fail() { echo "install_test ($kind): FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix

if [ "$mode" = shared ]; then
  build=$work/build
  step "configure + build a shared tree ($btype) in $build"
  cmake -S "$srcdir" -B "$build" -DBUILD_SHARED_LIBS=ON -DCMAKE_BUILD_TYPE="$btype" \
    -DCF_WITH_JEMALLOC="$jem_opt" -DCF_BUILD_TESTS=OFF -DCF_BUILD_EXAMPLES=OFF -DCF_BUILD_BENCH=OFF \
    -DCMAKE_C_COMPILER="$cc" >"$work/lib-configure.log" 2>&1 || { cat "$work/lib-configure.log"; fail "configure"; }
  cmake --build "$build" -j "${CF_JOBS:-2}" >"$work/lib-build.log" 2>&1 || { cat "$work/lib-build.log"; fail "build"; }
fi
jemalloc=$(sed -n 's/^CF_WITH_JEMALLOC:BOOL=//p' "$build/CMakeCache.txt")
case $jemalloc in ON | on | TRUE | true | 1) jemalloc=1 ;; *) jemalloc=0 ;; esac

step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }

# ---- 1. the package -----------------------------------------------------------
if [ -n "$(find "$prefix" -name 'libcfutures.so*')" ]; then kind=shared; else kind=static; fi
[ -f "$prefix/include/cfutures.h" ] || fail "include/cfutures.h not installed"
[ -f "$prefix/include/cfutures.hpp" ] || fail "include/cfutures.hpp not installed"
if [ "$kind" = static ]; then
  lib=$(find "$prefix" -name libcfutures.a | head -n1)
  [ -n "$lib" ] || fail "libcfutures.a not installed"
  [ -z "$(find "$prefix" -name 'libcfutures.so*')" ] || fail "a static build installed libcfutures.so"
else
  lib=$(find "$prefix" -name 'libcfutures.so.*' -type f | head -n1)
  [ -n "$lib" ] || fail "libcfutures.so.* not installed"
  [ -z "$(find "$prefix" -name libcfutures.a)" ] || fail "a shared build installed libcfutures.a"
  soname=$(objdump -p "$lib" | sed -n 's/^ *SONAME *//p')
  [ -e "$(dirname "$lib")/$soname" ] || fail "no $soname link beside $lib"
  [ -e "$(dirname "$lib")/libcfutures.so" ] || fail "no libcfutures.so link beside $lib"
  echo "shared library: $lib (SONAME $soname)"
fi
libdir=$(dirname "$lib")
cfg=$(find "$prefix" -name cfutures.pc | head -n1)
[ -n "$cfg" ] || fail "cfutures.pc not installed"
cmdir=$(dirname "$(find "$prefix" -name cfuturesConfig.cmake | head -n1)")
for f in cfuturesConfig.cmake cfuturesConfigVersion.cmake cfuturesTargets.cmake; do
  [ -f "$cmdir/$f" ] || fail "$f not installed"
done
echo "installed: $(cd "$prefix" && find . \( -type f -o -type l \) | sort | tr '\n' ' ')"

# ---- 2. no compile definitions for consumers -------------------------------------
PKG_CONFIG_PATH="$(dirname "$cfg")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PKG_CONFIG_PATH
for mode in "" --static; do
  cf=$(pkg-config $mode --cflags cfutures) || fail "pkg-config $mode --cflags cfutures"
  echo "pkg-config $mode --cflags cfutures: $cf"
  for w in $cf; do
    case $w in -I*) ;; *) fail "pkg-config $mode --cflags gives '$w' (only -I belongs there)" ;; esac
  done
done
if grep -nE 'INTERFACE_COMPILE_(DEFINITIONS|OPTIONS)' "$cmdir"/cfuturesTargets*.cmake; then
  fail "the exported CMake targets carry compile definitions or options"
fi

# ---- 3. consumers ------------------------------------------------------------------
step "find_package consumer"
cmake -S "$src" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "consumer configure"; }
found=$(sed -n 's/^cfutures_DIR:PATH=//p' "$work/cmake-build/CMakeCache.txt")
[ "$(realpath "$found")" = "$(realpath "$cmdir")" ] || fail "find_package found $found, not $cmdir"
cmake --build "$work/cmake-build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "consumer build (find_package)"; }
if grep -E '"command"' "$work/cmake-build/compile_commands.json" | grep -E ' -D'; then
  fail "a compile definition reached the find_package consumer's compile line"
fi
out=$("$work/cmake-build/consumer") || fail "consumer (find_package) exited $?"
echo "$out"
[ "$out" = "$expect" ] || fail "consumer (find_package) printed '$out'"

if [ "$kind" = static ]; then
  pcflags=(--static --cflags --libs cfutures)
  rpath=()
else
  pcflags=(--cflags --libs cfutures)
  rpath=("-Wl,-rpath,$libdir")
fi
pc=$(pkg-config "${pcflags[@]}") || fail "pkg-config ${pcflags[*]}"
step "pkg-config consumer: pkg-config ${pcflags[*]}: $pc"
# shellcheck disable=SC2086 # word splitting of the flags is intended
"$cc" $flags -o "$work/consumer-pc" "$src/main.c" $pc "${rpath[@]}" || fail "consumer build (pkg-config)"
out=$("$work/consumer-pc") || fail "consumer (pkg-config) exited $?"
echo "$out"
[ "$out" = "$expect" ] || fail "consumer (pkg-config) printed '$out'"
if [ "$kind" = shared ]; then
  for exe in "$work/cmake-build/consumer" "$work/consumer-pc"; do
    got=$(ldd "$exe" | awk '$1 ~ /^libcfutures\.so/ {print $3}')
    [ "$(realpath "$got")" = "$(realpath "$lib")" ] || fail "$exe loads libcfutures from '$got', not $lib"
  done
fi

# ---- 4. the allocator ---------------------------------------------------------------
step "allocator: alloc_probe"
# shellcheck disable=SC2086
"$cc" $flags -DCF_PROBE_REFERENCE -o "$work/probe-ref" "$src/alloc_probe.c" -ldl || fail "alloc_probe reference build"
ref=$("$work/probe-ref") || fail "alloc_probe reference exited $?"
echo "without cfutures:   $ref"
# shellcheck disable=SC2086
"$cc" $flags -o "$work/probe-pc" "$src/alloc_probe.c" $pc "${rpath[@]}" -ldl || fail "alloc_probe build (pkg-config)"
probes=("$work/cmake-build/alloc_probe" "$work/probe-pc")
if [ $jemalloc = 1 ]; then
  for p in "${probes[@]}"; do
    got=$("$p") || true
    echo "with cfutures:      $got"
    case $got in *mallctl=present*) ;; *) fail "CF_WITH_JEMALLOC=ON but jemalloc is not in $(basename "$p")" ;; esac
  done
  echo "(CF_WITH_JEMALLOC=ON: jemalloc is in the program, and its malloc with the static library, as documented; host allocator checks skipped)"
else
  if [ -z "$flags" ]; then
    [ "$ref" = "alloc_probe: malloc=libc.so.6 mallctl=absent" ] || fail "the reference program itself is not on glibc's malloc: '$ref'"
    heap=glibc
  else
    heap=unchecked # the sanitizer's runtime owns malloc
  fi
  for p in "${probes[@]}"; do
    got=$("$p") || fail "$(basename "$p") exited $?: $("$p" 2>&1 || true)"
    echo "with cfutures:      $got"
    [ "$got" = "$ref cfutures-heap=$heap" ] || fail "$p printed '$got', expected '$ref cfutures-heap=$heap'"
  done
  if [ -z "$flags" ]; then
    # A host that links its own allocator keeps it, and cfutures allocates from it.
    mi_ok=0 tc=""
    if echo '#include <mimalloc.h>' | "$cc" -E - >/dev/null 2>&1 && [ -e "$("$cc" -print-file-name=libmimalloc.so)" ]; then
      mi_ok=1
    fi
    tcpath=$("$cc" -print-file-name=libtcmalloc_minimal.so.4)
    [ -e "$tcpath" ] && tc=$tcpath
    if [ $mi_ok = 1 ]; then
      # shellcheck disable=SC2086
      "$cc" -DCF_PROBE_MIMALLOC -o "$work/probe-mimalloc" "$src/alloc_probe.c" -lmimalloc $pc "${rpath[@]}" -ldl ||
        fail "alloc_probe build with mimalloc"
      got=$("$work/probe-mimalloc") || fail "alloc_probe with mimalloc exited $?"
      echo "host mimalloc:      $got"
      case $got in "alloc_probe: malloc=libmimalloc.so"*" mallctl=absent cfutures-heap=mimalloc") ;;
      *) fail "with mimalloc linked the probe printed '$got'" ;; esac
    else
      echo "host mimalloc:      SKIPPED (libmimalloc-dev not installed; build.sh installs it)"
    fi
    if [ -n "$tc" ]; then
      # shellcheck disable=SC2086
      "$cc" -DCF_PROBE_TCMALLOC -o "$work/probe-tcmalloc" "$src/alloc_probe.c" "$tc" $pc "${rpath[@]}" -ldl ||
        fail "alloc_probe build with tcmalloc"
      got=$("$work/probe-tcmalloc") || fail "alloc_probe with tcmalloc exited $?"
      echo "host tcmalloc:      $got"
      case $got in "alloc_probe: malloc=libtcmalloc_minimal.so"*" mallctl=absent cfutures-heap=tcmalloc") ;;
      *) fail "with tcmalloc linked the probe printed '$got'" ;; esac
    else
      echo "host tcmalloc:      SKIPPED (libtcmalloc-minimal4 not installed; build.sh installs it)"
    fi
  fi
fi

# ---- 5. what a consumer links -----------------------------------------------------------
# (against the reference probe, built with the same FLAGS: a sanitizer's
# runtime may bring libstdc++ itself, as UBSan's does)
ref_stdcxx=0
# (no `| grep -q` here: under pipefail its early exit fails the pipeline)
ref_deps=$(ldd "$work/probe-ref")
grep -q 'libstdc++' <<<"$ref_deps" && ref_stdcxx=1
for exe in "$work/cmake-build/consumer" "$work/consumer-pc"; do
  deps=$(ldd "$exe")
  if [ $ref_stdcxx = 0 ] && grep -q 'libstdc++' <<<"$deps"; then
    if [ $jemalloc = 1 ] && grep -q libjemalloc <<<"$deps"; then
      echo "$(basename "$exe"): libstdc++ comes with Debian's libjemalloc.so.2 (CF_WITH_JEMALLOC=ON)"
    else
      fail "$(basename "$exe") links libstdc++: $deps"
    fi
  fi
  if [ $jemalloc = 0 ] && grep -q libjemalloc <<<"$deps"; then
    fail "$(basename "$exe") links libjemalloc without CF_WITH_JEMALLOC"
  fi
done
[ $jemalloc = 1 ] || echo "ldd: no libstdc++$([ $ref_stdcxx = 0 ] || echo ' beyond the sanitizer runtime'\'s), no libjemalloc in the consumers"

# ---- 6. a fully static consumer ------------------------------------------------------------
if [ "$kind" = static ] && [ -z "$flags" ]; then
  step "cc -static main.c \$(pkg-config --static --cflags --libs cfutures)"
  # shellcheck disable=SC2046,SC2086
  "$cc" -static -o "$work/consumer-static" "$src/main.c" $(pkg-config --static --cflags --libs cfutures) \
    2>"$work/static.log" || { cat "$work/static.log"; fail "static link"; }
  file_out=$(ldd "$work/consumer-static" 2>&1 || true)
  case $file_out in *"not a dynamic executable"* | *"statically linked"*) ;; *) fail "consumer-static is dynamic: $file_out" ;; esac
  out=$("$work/consumer-static") || fail "consumer-static exited $?"
  echo "$out"
  [ "$out" = "$expect" ] || fail "consumer-static printed '$out'"
  syms=$(nm "$work/consumer-static")
  cxx=$(grep -E ' (_ZSt|_ZNSt|_Znwm|_ZdlPv|__gxx_personality_v0|__cxa_throw|__cxa_begin_catch)' <<<"$syms" || true)
  [ -z "$cxx" ] || fail "the static consumer contains libstdc++: $(head -3 <<<"$cxx" | tr '\n' ' ')"
  if [ $jemalloc = 0 ]; then
    grep -qE ' (mallctl|mallocx|je_[a-z_]+)$' <<<"$syms" && fail "the static consumer contains jemalloc"
    # shellcheck disable=SC2046 # word splitting of the flags is intended
    "$cc" -static -o "$work/probe-static" "$src/alloc_probe.c" $(pkg-config --static --cflags --libs cfutures) \
      2>>"$work/static.log" || { cat "$work/static.log"; fail "static alloc_probe link"; }
    got=$("$work/probe-static") || fail "static alloc_probe exited $?"
    echo "static, with cfutures: $got"
    [ "$got" = "alloc_probe: malloc=static mallctl=absent cfutures-heap=glibc" ] || fail "static alloc_probe printed '$got'"
  fi
  echo "static consumer: runs; no libstdc++$([ $jemalloc = 1 ] || echo ', no jemalloc') in it"
fi
echo "install_test ($kind): OK"
