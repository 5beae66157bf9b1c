"""stats.py: the paired bootstrap CI, the verdict, the share of wins, the sampling error."""
import math

import numpy as np
import pytest

import stats


def test_constant_differences_give_a_zero_width_interval_at_that_constant():
    assert stats.paired_bootstrap_ci([2.5] * 7) == (2.5, 2.5)


def test_a_symmetric_sample_gives_an_interval_centred_on_its_mean():
    d = np.array([-3.0, -1.0, 0.0, 1.0, 3.0]) + 4.0  # symmetric about 4
    lo, hi = stats.paired_bootstrap_ci(d, resamples=20_000)
    assert lo < 4.0 < hi
    assert (lo + hi) / 2 == pytest.approx(4.0, abs=0.05)


def test_the_interval_matches_a_naive_loop_over_the_same_resamples():
    d = np.array([1.0, -2.0, 4.0, 0.5])
    lo, hi = stats.paired_bootstrap_ci(d, resamples=500, seed=3)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 4, size=(500, 4))
    means = sorted(sum(d[j] for j in row) / 4 for row in idx)
    # numpy's linear percentile at 2.5% of 500 sorted means: position 0.025 * 499
    pos = 0.025 * 499
    naive_lo = means[int(pos)] + (pos - int(pos)) * (means[int(pos) + 1] - means[int(pos)])
    assert lo == pytest.approx(naive_lo) and lo < hi


def test_the_interval_is_seeded_and_narrows_with_more_seeds():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 2.0, 5), rng.normal(1.0, 2.0, 50)
    assert stats.paired_bootstrap_ci(small) == stats.paired_bootstrap_ci(small)
    width = lambda ci: ci[1] - ci[0]
    assert width(stats.paired_bootstrap_ci(large)) < width(stats.paired_bootstrap_ci(small))
    assert all(math.isnan(x) for x in stats.paired_bootstrap_ci([]))


def test_verdicts_follow_the_sign_of_the_whole_interval():
    assert stats.verdict(0.1, 3.0) == "shown"
    assert stats.verdict(-3.0, -0.1) == "reversed"
    assert stats.verdict(-0.1, 3.0) == stats.verdict(0.0, 0.0) == "not resolved"
    # One or two seeds give no verdict, however clear their interval looks.
    assert stats.verdict(5.0, 5.0, n=1) == stats.verdict(1.0, 2.0, n=2) == "too few seeds"
    assert stats.verdict(1.0, 2.0, n=3) == "shown"


def test_share_counts_wins_and_half_ties():
    assert stats.share_greater([3, 2, 1, 5], [1, 2, 3, 4]) == (1 + 0.5 + 0 + 1) / 4
    assert math.isnan(stats.share_greater([], []))
    with pytest.raises(ValueError):  # unpaired lengths are a bug, not a comparison
        stats.share_greater([1, 2], [1])


def test_sampling_error_is_the_binomial_standard_error():
    assert stats.sampling_error(0.5, 450) == pytest.approx(0.02357, abs=1e-5)
    assert stats.sampling_error(1.0, 10) == 0.0
