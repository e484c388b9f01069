"""The smoothing behind every learning curve, against a plain loop."""

import numpy as np

from rlhf_lib.plotting import smooth


def test_smooth_is_a_trailing_mean_over_what_exists():
    y = np.random.default_rng(0).normal(size=37)
    for window in (1, 5, 10, 50):
        want = [y[max(0, i - window + 1) : i + 1].mean() for i in range(len(y))]
        np.testing.assert_allclose(smooth(y, window), want)
    assert len(smooth([], 5)) == 0


def test_rlhf_dashboard_draws_every_run_in_every_panel():
    import matplotlib

    matplotlib.use("Agg")
    from rlhf_lib.plotting import RLHF_PANELS, plot_rlhf_history

    rng = np.random.default_rng(0)
    keys = [k for k, _ in RLHF_PANELS] + ["kl_k3"]
    runs = {name: [dict(iteration=i + 1, **{k: float(rng.normal()) for k in keys}) for i in range(6)]
            for name in ("a", "b")}
    axes = plot_rlhf_history(runs, window=1).ravel()
    for ax, (key, _) in zip(axes, RLHF_PANELS):
        extra = 2 if key == "kl_k1" else 0  # k3 drawn dotted beside k1
        assert len(ax.lines) == 2 + extra
        np.testing.assert_allclose(ax.lines[0].get_ydata(), [h[key] for h in runs["a"]])
