/*
 * hist.h — a latency histogram in the manner of HdrHistogram: log-linear
 * buckets (values below 128 ns exact, above that 64 sub-buckets per power of
 * two: every recorded value is within 1/128 of its bucket's midpoint), from
 * 0 to ~2^37 ns (137 s; larger values land in the last bucket). Fixed size,
 * no allocation while recording, mergeable: the summary pools the
 * histograms of every repetition (bench/tools/summarize.py reads them back
 * with the same bucket arithmetic, hist_value()).
 */
#ifndef CF_BENCH_HIST_H
#define CF_BENCH_HIST_H

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

struct Hist {
  static constexpr int kSubBits = 7; /* 128 exact values, then 64 per octave */
  static constexpr int kHalf = 1 << (kSubBits - 1);
  static constexpr int kBuckets = (38 - kSubBits + 2) * kHalf;

  std::vector<uint64_t> c = std::vector<uint64_t>(kBuckets, 0);
  uint64_t n = 0;
  int64_t max = 0;

  static int index(int64_t v) {
    if (v < 0) v = 0;
    if (v < (1 << kSubBits)) return (int)v;
    int msb = 63 - __builtin_clzll((uint64_t)v);
    int shift = msb - (kSubBits - 1);
    int idx = (shift + 1) * kHalf + (int)((v >> shift) - kHalf);
    return idx < kBuckets ? idx : kBuckets - 1;
  }
  /* the midpoint of bucket i (exact below 128) */
  static double value(int i) {
    if (i < (1 << kSubBits)) return i;
    int shift = i / kHalf - 1;
    double lo = (double)((int64_t)(i % kHalf + kHalf) << shift);
    return lo + (double)((int64_t)1 << shift) / 2 - 0.5;
  }
  void add(int64_t v) {
    c[(size_t)index(v)]++;
    n++;
    if (v > max) max = v;
  }
  /* nearest rank: the smallest value with at least q of the samples at or
   * below it */
  double pct(double q) const {
    if (!n) return 0;
    uint64_t rank = (uint64_t)std::ceil(q * (double)n);
    if (rank < 1) rank = 1;
    uint64_t acc = 0;
    for (int i = 0; i < kBuckets; i++) {
      acc += c[(size_t)i];
      if (acc >= rank) return i == index(max) ? std::min(value(i), (double)max) : value(i);
    }
    return (double)max;
  }
  /* "index:count ..." of the non-empty buckets */
  std::string encode() const {
    std::string s;
    char b[48];
    for (int i = 0; i < kBuckets; i++)
      if (c[(size_t)i]) {
        snprintf(b, sizeof b, "%s%d:%llu", s.empty() ? "" : " ", i,
                 (unsigned long long)c[(size_t)i]);
        s += b;
      }
    return s;
  }
};

#endif /* CF_BENCH_HIST_H */
