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


def test_agreement_by_gap_draws_each_share_in_its_band_and_leaves_empty_bands_out():
    import matplotlib

    matplotlib.use("Agg")
    from rlhf_lib.plotting import plot_by_gap

    reports = {"judge": {"0-0.1": [10, 0.6], "0.1-0.2": [0, None], "2-inf": [4, 0.25]},
               "reward model": {"0-0.1": [10, 0.7], "0.1-0.2": [0, None], "2-inf": [4, 0.75]}}
    ax = plot_by_gap(reports)
    bars = ax.patches
    assert len(bars) == 6
    heights = [b.get_height() for b in bars]
    np.testing.assert_allclose(heights[:3], [0.6, np.nan, 0.25])  # the judge's, band by band
    np.testing.assert_allclose(heights[3:], [0.7, np.nan, 0.75])
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "0-0.1\n(10 pairs)"


def test_bias_plot_marks_each_share_with_its_interval_and_the_unbiased_share():
    import matplotlib

    matplotlib.use("Agg")
    from rlhf_lib.plotting import plot_biases

    def share(rate, low, high):
        return dict(rate=rate, low=low, high=high, n=100)

    biases = {"position": dict(once=share(0.16, 0.13, 0.19), both_orders=dict(rate=0.0, n=100)),
              "length": dict(once=share(0.55, 0.5, 0.6), both_orders=share(0.52, 0.49, 0.55))}
    ax = plot_biases(biases)
    points = [(c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]) for c in ax.containers]
    assert points == [(-0.15, 0.16), (0.15, 0.0), (0.85, 0.55), (1.15, 0.52)]
    bars = [c.lines[2][0].get_segments() if c.lines[2] else None for c in ax.containers]
    assert bars[1] is None  # the debiased position bias is 0 by construction: no interval to draw
    np.testing.assert_allclose(bars[2][0][:, 1], [0.5, 0.6])  # the interval's ends
    unbiased = [line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--"]
    assert unbiased == [0.0, 0.5]


def test_the_frontier_names_what_each_method_learned_from_and_draws_the_target():
    import matplotlib

    matplotlib.use("Agg")
    from rlhf_lib.plotting import plot_frontier

    points = {"DPO": dict(positive_rate=0.8, grammatical_rate=0.97, kl_exact=0.9, seconds=40.0),
              "PPO": dict(positive_rate=0.6, grammatical_rate=0.95, kl_exact=0.3)}
    ax = plot_frontier(points, target=2.0, sources={"DPO": "1,790 labelled pairs"})
    entries = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "DPO (from 1,790 labelled pairs): 80% positive, 97% grammatical, 40 s" in entries
    assert "PPO: 60% positive, 95% grammatical" in entries  # no source given: none written
    assert "KL target (2 nats)" in entries
    target = next(line for line in ax.lines if line.get_label().startswith("KL target"))
    assert list(target.get_xdata()) == [2.0, 2.0]
    xy = np.concatenate([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(sorted(map(tuple, xy)), [(0.3, 0.6), (0.9, 0.8)])
