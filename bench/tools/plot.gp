# plot.gp — the figures of a bench/tools/run.sh result directory, from the .dat
# files summarize.py writes there:
#   gnuplot -e "dir='build/bench-results/<stamp>'" bench/tools/plot.gp
# writes latency_thread.png, latency_process.png, throughput.png,
# forkjoin.png, openloop_thread.png, openloop_process.png and gaps.png into
# the same directory.
if (!exists("dir")) dir = "."

set terminal pngcairo size 1400,560 enhanced font "DejaVu Sans,11"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key below horizontal
set xtics nomirror noenhanced
set datafile missing "NaN"

# ---- round-trip latency percentiles ----------------------------------------
do for [kind in "thread process"] {
  src = dir . "/lat_" . (kind eq "thread" ? "thread" : "proc") . ".dat"
  set output dir . "/latency_" . kind . ".png"
  set multiplot layout 1,2 title "Round trip of one tiny task, " . kind . " pools (log scale; lower is better)"
  set logscale y
  set format y "%g"
  set ylabel "latency (µs)"
  set title "hot workers"
  plot src using 2:xtic(1) title "p50", '' using 3 title "p99", '' using 4 title "p99.9"
  set title "after 2 ms idle (workers parked)"
  plot src using 5:xtic(1) title "p50", '' using 6 title "p99", '' using 7 title "p99.9"
  unset multiplot
  unset logscale y
}

# ---- throughput ---------------------------------------------------------------
set output dir . "/throughput.png"
set multiplot layout 1,2 title "Throughput of tiny tasks (higher is better)"
set title "thread pools: N tasks from outside threads"
set ylabel "million tasks / s"
set yrange [0:*]
plot dir . "/tput_thread.dat" using 2:xtic(1) title "1 submitter", '' using 3 title "2 submitters"
set title "process pools (log scale)"
set ylabel "tasks or items / s"
set logscale y
set format y "10^{%L}"
set yrange [*:*]
plot dir . "/tput_proc.dat" using 2:xtic(1) title "one task per item", '' using 3 title "map, chunks of 256"
unset multiplot
unset logscale y
set format y "% h"

# ---- latency and CPU under load (open loop) -------------------------------------
# ol_<thread|proc>_<fixed|poisson>.dat: rate, then p50 p99 cpu per system
set style data linespoints
set logscale x
set logscale y
set format x "10^{%L}"
set format y "%g"
set key below horizontal
do for [kind in "thread process"] {
  tag = (kind eq "thread" ? "thread" : "proc")
  n = (kind eq "thread" ? 4 : 2)
  set output dir . "/openloop_" . kind . ".png"
  set terminal pngcairo size 1400,900 enhanced font "DejaVu Sans,11"
  set multiplot layout 2,2 title "Open loop, " . kind . " pools: tiny tasks at a fixed or Poisson rate (log-log; lower is better)"
  do for [arr in "fixed poisson"] {
    src = dir . "/ol_" . tag . "_" . arr . ".dat"
    set title arr . " arrivals: p50 latency from the intended send time"
    set xlabel "offered load (tasks/s)"
    set ylabel "µs"
    plot for [i=0:n-1] src using 1:(column(2+3*i)) title columnhead(2+3*i) noenhanced
    set title arr . " arrivals: CPU per task (the pool's threads and processes)"
    set ylabel "µs of CPU per task"
    plot for [i=0:n-1] src using 1:(column(4+3*i)) title columnhead(4+3*i) noenhanced
  }
  unset multiplot
}
# gap_<thread|proc>.dat: gap, then p50 cpu per system
set output dir . "/gaps.png"
set multiplot layout 1,2 title "Gap sweep: one round trip, then a gap (log-log; lower is better)"
set xlabel "gap between requests (µs)"
set title "thread pools: round trip p50"
set ylabel "µs"
plot for [i=0:6] dir . "/gap_thread.dat" using 1:(column(2+2*i)) title columnhead(2+2*i) noenhanced, \
     for [i=0:1] dir . "/gap_proc.dat" using 1:(column(2+2*i)) title "process ".columnhead(2+2*i) noenhanced dt 2
set title "CPU per request (pool + the caller's own in its round trips)"
set ylabel "µs of CPU per request"
plot for [i=0:6] dir . "/gap_thread.dat" using 1:(column(3+2*i)) title columnhead(3+2*i) noenhanced, \
     for [i=0:1] dir . "/gap_proc.dat" using 1:(column(3+2*i)) title "process ".columnhead(3+2*i) noenhanced dt 2
unset multiplot
unset logscale x
unset logscale y
unset xlabel
set format x "% h"
set format y "% h"
set style data histograms

# ---- fork-join overhead ------------------------------------------------------------
set terminal pngcairo size 800,520 enhanced font "DejaVu Sans,11"
set output dir . "/forkjoin.png"
set title "Fork-join fib(30), overhead per spawned task, 1 worker (lower is better)"
set ylabel "ns per task"
set yrange [0:*]
set key off
plot dir . "/forkjoin.dat" using 2:xtic(1) title "overhead"
unset output
