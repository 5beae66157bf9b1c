"""stats.py -- how sure a paired comparison over seeds is: bootstrap CI, verdict, share of wins.

Reading guide
-------------
ablate.py compares rows of the ablation (A, B) trained with the same seeds. Within a seed both
rows share the teachers, the data, the batches, the augmentations and the student's initial
weights, so the per-seed difference d_i = A_i - B_i cancels what the seed does to both: the
claim is about the mean of d over seeds, and its uncertainty comes from the spread of d, not from
the (larger) spread of A and B themselves.

    paired_bootstrap_ci(d)   95% percentile bootstrap interval of mean(d): draw the n seeds with
                             replacement R = 10,000 times, take the mean of each draw, report the
                             2.5th and 97.5th percentiles of those means.
    verdict(lo, hi, n)       "shown" (lo > 0), "reversed" (hi < 0), else "not resolved"; no
                             verdict from fewer than MIN_SEEDS seeds ("too few seeds").
    share_greater(a, b)      the share of seeds where A beats B (ties count as half): with paired
                             runs, rliable's "probability of improvement".
    sampling_error(p, n)     sqrt(p (1 - p) / n): the evaluation split's own noise on an accuracy
                             p measured on n videos, beside the seeds' spread.

Note: the percentile bootstrap, not BCa: with 5-10 seeds BCa's acceleration is estimated from the
same handful of values it corrects, and the two intervals differ less than the seeds move them.
Both undercover at small n (the resampled means of n values are less spread than the true
sampling distribution by a factor sqrt((n - 1) / n)), so a CI from 3 seeds is a sketch, not a test.
"""
import math

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
# Below this many seeds the bootstrap has too few distinct resamples to say anything (one seed: a
# zero-width interval at its own difference, which would read as certainty).
MIN_SEEDS = 3


def paired_bootstrap_ci(d, resamples=RESAMPLES, level=LEVEL, seed=0):
    """Percentile bootstrap CI of the mean of the paired differences `d` -> (lo, hi).

    Seeded (the same differences always give the same interval); nan for an empty `d`."""
    d = np.asarray(d, dtype=np.float64)  # (n,) one difference per seed
    if d.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))  # (R, n): seeds drawn with replacement
    means = d[idx].mean(axis=1)  # (R, n) -> (R,): the mean of each resample
    tail = 100 * (1 - level) / 2  # 2.5 for a 95% interval
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def verdict(lo, hi, n=MIN_SEEDS):
    """The reading of a CI of A - B over n seeds: shown (A > B), reversed (A < B), not resolved,
    or too few seeds to tell."""
    if n < MIN_SEEDS:
        return "too few seeds"
    if lo > 0:
        return "shown"
    if hi < 0:
        return "reversed"
    return "not resolved"


def share_greater(a, b):
    """Share of paired seeds with a_i > b_i, ties counting 1/2 (nan when there is no pair)."""
    pairs = list(zip(a, b, strict=True))
    if not pairs:
        return math.nan
    return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in pairs) / len(pairs)


def sampling_error(p, n):
    """Standard error of an accuracy p (a fraction) measured on n independent videos."""
    return math.sqrt(p * (1 - p) / n)


if __name__ == "__main__":
    # Two made-up rows over 8 seeds: B spreads a lot, but A beats it in every seed by about 2.
    b = np.array([50.2, 44.0, 60.4, 54.9, 42.9, 57.6, 43.1, 52.0])
    a = b + np.array([2.5, 1.0, 3.1, 1.8, 2.2, 0.4, 2.9, 1.6])
    d = a - b
    lo, hi = paired_bootstrap_ci(d)
    print(f"A: {a.mean():.1f} +- {a.std(ddof=1):.1f}   B: {b.mean():.1f} +- {b.std(ddof=1):.1f}")
    print(f"paired A - B: {d.mean():+.2f}, 95% CI [{lo:+.2f}, {hi:+.2f}] -> {verdict(lo, hi)}; "
          f"A > B in {share_greater(a, b):.0%} of seeds")
    print(f"unpaired, the same numbers look hopeless: the rows' spreads (~{b.std(ddof=1):.0f}) dwarf "
          f"the gap (~{d.mean():.0f});")
    print(f"the test split's own noise at p = 0.5, n = 450: {100 * sampling_error(0.5, 450):.1f} points")
