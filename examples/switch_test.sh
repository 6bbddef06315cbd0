#!/usr/bin/env bash
# switch_test.sh SWITCH_BINARY — run the example in both modes; the printed
# results (every line but the time) must be identical, complete and correct.
set -euo pipefail
bin=$1
threads=$("$bin" threads) || { echo "switch threads exited $?"; exit 1; }
processes=$("$bin" processes) || { echo "switch processes exited $?"; exit 1; }
echo "$threads"
echo "$processes" | tail -n1
t=$(grep -v '^time:' <<<"$threads")
p=$(grep -v '^time:' <<<"$processes")
if [ "$t" != "$p" ]; then
  echo "FAIL: threads and processes printed different results:"
  diff <(echo "$t") <(echo "$p") || true
  exit 1
fi
[ "$(grep -c 'longest Collatz chain' <<<"$t")" -eq 32 ] || { echo "FAIL: not 32 results"; exit 1; }
# Known values (Project Euler 14 style): below 20000 -> 17647 (278 steps),
# below 82000 -> 77031 (350 steps).
grep -q '^below  20000:  17647 has the longest Collatz chain, 278 steps$' <<<"$t" || { echo "FAIL: wrong first result"; exit 1; }
grep -q "^below  82000:  77031 has the longest Collatz chain, 350 steps$" <<<"$t" || { echo "FAIL: wrong last result"; exit 1; }
echo "switch_test: OK (threads and processes agree)"
