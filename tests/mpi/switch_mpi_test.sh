#!/usr/bin/env bash
# switch_mpi_test.sh SWITCH_BINARY "MPIRUN [FLAGS] -n" — the example's third
# mode: `mpirun -n 3 ./switch mpi` must print what `./switch threads` prints
# (every line but the time).
set -euo pipefail
bin=$1
read -r -a mpirun <<<"$2"
threads=$("$bin" threads) || { echo "switch threads exited $?"; exit 1; }
mpi=$("${mpirun[@]}" 3 "$bin" mpi) || { echo "mpirun -n 3 switch mpi exited $?"; exit 1; }
echo "$mpi"
t=$(grep -v '^time:' <<<"$threads")
m=$(grep -v '^time:' <<<"$mpi")
if [ "$t" != "$m" ]; then
  echo "FAIL: threads and mpi printed different results:"
  diff <(echo "$t") <(echo "$m") || true
  exit 1
fi
[ "$(grep -c 'longest Collatz chain' <<<"$m")" -eq 32 ] || { echo "FAIL: not 32 results"; exit 1; }
echo "switch_mpi_test: OK (threads and mpi agree)"
