"""stats.py -- the statistics summarize.py and compare.py share.

  Hist            one repetition's latency histogram (bench/cases/hist.h:
                  log-linear buckets, read back with the same arithmetic)
  Pooled          the repetitions of one point: percentiles of all their
                  samples together, and a 95% confidence interval for a
                  percentile by a bootstrap over repetitions (a repetition
                  is the unit that the machine's drift moves, so it is
                  resampled whole)
  ratio_ci        the same for a ratio of sums (CPU per task)
  mann_whitney    the two-sided rank test of two sets of repetitions
  median_ci       a distribution-free interval for a median (order
                  statistics of the repetitions)
Pure Python (the /usr/bin/python3 here has no numpy).
"""
import math
import random

SUB_BITS = 7
HALF = 1 << (SUB_BITS - 1)


def hist_value(i):
    """The midpoint of bucket i, ns (hist.h Hist::value)."""
    if i < (1 << SUB_BITS):
        return float(i)
    shift = i // HALF - 1
    lo = (i % HALF + HALF) << shift
    return lo + (1 << shift) / 2 - 0.5


def parse_hist(text):
    """'index:count ...' -> sorted [(index, count)]."""
    out = []
    for tok in (text or "").split():
        i, c = tok.split(":")
        out.append((int(i), int(c)))
    out.sort()
    return out


class Pooled:
    """The repetitions of one point, each a histogram [(index, count)]."""

    def __init__(self, reps):
        self.reps = [r for r in reps if r]
        grid = sorted({i for r in self.reps for i, _ in r})
        self.grid = grid
        pos = {i: k for k, i in enumerate(grid)}
        self.cum = []   # per repetition: cumulative counts on the grid
        self.n = []
        for r in self.reps:
            dense = [0] * len(grid)
            for i, c in r:
                dense[pos[i]] += c
            acc, cum = 0, []
            for c in dense:
                acc += c
                cum.append(acc)
            self.cum.append(cum)
            self.n.append(acc)

    def samples(self):
        return sum(self.n)

    def _pct(self, weights, q):
        total = sum(w * n for w, n in zip(weights, self.n))
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        lo, hi = 0, len(self.grid) - 1
        while lo < hi:  # the first grid index whose merged count reaches rank
            mid = (lo + hi) // 2
            if sum(w * c[mid] for w, c in zip(weights, self.cum) if w) >= rank:
                hi = mid
            else:
                lo = mid + 1
        return hist_value(self.grid[lo])

    def pct(self, q):
        if not self.reps:
            return None
        return self._pct([1] * len(self.reps), q)

    def ci(self, q, b=300, seed=1):
        """95% bootstrap interval over repetitions (None with < 3)."""
        k = len(self.reps)
        if k < 3:
            return None
        rng = random.Random(seed)
        vals = []
        for _ in range(b):
            w = [0] * k
            for _ in range(k):
                w[rng.randrange(k)] += 1
            v = self._pct(w, q)
            if v is not None:
                vals.append(v)
        vals.sort()
        return vals[int(0.025 * len(vals))], vals[min(len(vals) - 1, int(0.975 * len(vals)))]


def ratio_ci(nums, dens, b=300, seed=2):
    """sum(nums)/sum(dens) and its 95% bootstrap interval over repetitions."""
    k = len(nums)
    if k == 0 or sum(dens) <= 0:
        return None, None
    est = sum(nums) / sum(dens)
    if k < 3:
        return est, None
    rng = random.Random(seed)
    vals = []
    for _ in range(b):
        idx = [rng.randrange(k) for _ in range(k)]
        d = sum(dens[i] for i in idx)
        if d > 0:
            vals.append(sum(nums[i] for i in idx) / d)
    vals.sort()
    return est, (vals[int(0.025 * len(vals))], vals[min(len(vals) - 1, int(0.975 * len(vals)))])


def median_ci(xs):
    """The median of xs and a ~95% distribution-free interval: the order
    statistics j, n+1-j with j from the binomial(n, 1/2) (None below 6)."""
    xs = sorted(x for x in xs if x is not None)
    n = len(xs)
    if n == 0:
        return None, None
    med = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    if n < 6:
        return med, None
    # largest j with P(Bin(n, 1/2) < j) <= 0.025
    acc, j = 0.0, 0
    for i in range(n + 1):
        p = math.comb(n, i) / 2 ** n
        if acc + p > 0.025:
            break
        acc += p
        j = i + 1
    j = max(j, 1)
    return med, (xs[j - 1], xs[n - j])


def mann_whitney(a, b):
    """Two-sided Mann-Whitney U test: (U of a, p-value), normal approximation
    with the tie correction (fine from ~5 repetitions a side); (None, None)
    when a side is empty."""
    a = [x for x in a if x is not None]
    b = [x for x in b if x is not None]
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return None, None
    allv = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    ranks = [0.0] * len(allv)
    i, ties = 0, 0.0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1][0] == allv[i][0]:
            j += 1
        r = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = r
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, allv) if g == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    mu = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0
    if var <= 0:
        return u1, 1.0
    z = (abs(u1 - mu) - 0.5) / math.sqrt(var)
    p = math.erfc(max(z, 0) / math.sqrt(2))
    return u1, min(1.0, p)


def percentile_sorted(xs, q):
    if not xs:
        return None
    k = max(1, math.ceil(q * len(xs)))
    return xs[min(k, len(xs)) - 1]

