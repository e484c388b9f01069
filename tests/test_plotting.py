"""The smoothing behind every learning curve, against a plain loop."""

import numpy as np

from rlhf_lib.plotting import smooth


def test_smooth_is_a_trailing_mean_over_what_exists():
    y = np.random.default_rng(0).normal(size=37)
    for window in (1, 5, 10, 50):
        want = [y[max(0, i - window + 1) : i + 1].mean() for i in range(len(y))]
        np.testing.assert_allclose(smooth(y, window), want)
    assert len(smooth([], 5)) == 0
