#!/usr/bin/env bash
# install_test.sh BUILD_DIR CONSUMER_SRC WORK_DIR C_COMPILER [FLAGS]
#
# Installs the build tree into WORK_DIR/prefix with `cmake --install`, then
# builds tests/consumer twice against that prefix — once with
# find_package(cfutures) and once with `pkg-config --static` — runs both and
# checks what they print. FLAGS (the sanitizer flags of a sanitizer build)
# are used to compile and link the consumer, since the installed library was
# built with them.
set -euo pipefail
build=$1 src=$2 work=$3 cc=$4 flags=${5:-}
expect="consumer: sum of squares 0..99 = 328350"

fail() { echo "install_test: FAIL: $*" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix

echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" || { cat "$work/install.log"; fail "cmake --install"; }

# What a package must contain.
[ -f "$prefix/include/cfutures.h" ] || fail "include/cfutures.h not installed"
[ -f "$prefix/include/cfutures.hpp" ] || fail "include/cfutures.hpp not installed"
lib=$(find "$prefix" -name libcfutures.a | head -n1)
[ -n "$lib" ] || fail "libcfutures.a not installed"
cfg=$(find "$prefix" -name cfutures.pc | head -n1)
[ -n "$cfg" ] || fail "cfutures.pc not installed"
cmdir=$(dirname "$(find "$prefix" -name cfuturesConfig.cmake | head -n1)")
for f in cfuturesConfig.cmake cfuturesConfigVersion.cmake cfuturesTargets.cmake; do
  [ -f "$cmdir/$f" ] || fail "$f not installed"
done
echo "installed: $(cd "$prefix" && find . -type f | sort | tr '\n' ' ')"

# 1. find_package(cfutures) through CMAKE_PREFIX_PATH.
echo "== find_package consumer"
cmake -S "$src" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
  >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "consumer configure"; }
found=$(sed -n 's/^cfutures_DIR:PATH=//p' "$work/cmake-build/CMakeCache.txt")
[ "$(realpath "$found")" = "$(realpath "$cmdir")" ] || fail "find_package found $found, not $cmdir"
cmake --build "$work/cmake-build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "consumer build (find_package)"; }
out=$("$work/cmake-build/consumer") || fail "consumer (find_package) exited $?"
echo "$out"
[ "$out" = "$expect" ] || fail "consumer (find_package) printed '$out'"

# 2. pkg-config --static, plain compiler line.
echo "== pkg-config --static consumer"
export PKG_CONFIG_PATH="$(dirname "$cfg")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
pc=$(pkg-config --cflags --static --libs cfutures) || fail "pkg-config --static cfutures"
echo "pkg-config --cflags --static --libs cfutures: $pc"
# shellcheck disable=SC2086 # word splitting of the flags is intended
"$cc" $flags -o "$work/consumer-pc" "$src/main.c" $pc || fail "consumer build (pkg-config)"
out=$("$work/consumer-pc") || fail "consumer (pkg-config) exited $?"
echo "$out"
[ "$out" = "$expect" ] || fail "consumer (pkg-config) printed '$out'"
echo "install_test: OK"
