"""The course's plots. Each function draws on an `ax` (made if not given) and returns it."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

ARROWS = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}  # action -> (dx, dy) in image coordinates


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def smooth(y, window: int = 10) -> np.ndarray:
    """Trailing moving average; the first points average over what exists so far."""
    y = np.asarray(y, dtype=float)
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    idx = np.arange(1, len(y) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_gridworld(env, V=None, policy=None, path=None, ax=None, title: str | None = None, cmap: str = "RdYlGn"):
    """Heatmap of state values V with walls, goal and pits marked, arrows for `policy`,
    and an optional `path` (a list of states) drawn as a line."""
    ax = _axes(ax, figsize=(1.0 * env.n_cols + 1, 1.0 * env.n_rows))
    grid = np.full((env.n_rows, env.n_cols), np.nan)
    if V is not None:
        grid = np.asarray(V, dtype=float).reshape(env.n_rows, env.n_cols).copy()
        for s in range(env.n_states):
            if env.is_wall(s) or env.is_terminal(s):
                grid.flat[s] = np.nan
        im = ax.imshow(grid, cmap=cmap)
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="value")
    else:
        ax.imshow(np.zeros_like(grid), cmap="Greys", vmin=0, vmax=1)
    for s in range(env.n_states):
        r, c = divmod(s, env.n_cols)
        kind = env.cell(s)
        if kind == "#":
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, color="0.25"))
        elif kind in "GX":
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, color="tab:green" if kind == "G" else "tab:red",
                                   alpha=0.8))
            ax.text(c, r, "goal" if kind == "G" else "pit", ha="center", va="center", color="white", fontsize=8)
        elif kind == "S":
            ax.text(c, r + 0.35, "start", ha="center", va="center", fontsize=7)
        if policy is not None and kind in ".S":
            dx, dy = ARROWS[int(policy[s])]
            ax.arrow(c - 0.25 * dx, r - 0.25 * dy, 0.3 * dx, 0.3 * dy, head_width=0.15, color="black")
    if path is not None:
        rc = np.array([divmod(s, env.n_cols) for s in path])
        ax.plot(rc[:, 1], rc[:, 0], color="tab:blue", lw=3, alpha=0.6)
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_learning_curves(curves: dict, ax=None, window: int = 20, xlabel: str = "environment steps",
                         ylabel: str = "episode return", threshold: float | None = None, title: str | None = None):
    """curves: name -> (x, y), or name -> list of (x, y) runs (several seeds: median line, min-max band).
    Raw points are drawn faintly, the smoothed line boldly."""
    ax = _axes(ax)
    for i, (name, data) in enumerate(curves.items()):
        color = f"C{i}"
        runs = data if isinstance(data, list) else [data]
        if len(runs) == 1:
            x, y = map(np.asarray, runs[0])
            ax.plot(x, y, color=color, alpha=0.2, lw=0.8)
            ax.plot(x, smooth(y, window), color=color, lw=2, label=name)
        else:
            grid = np.linspace(0, max(np.max(r[0]) for r in runs), 200)
            ys = np.array([np.interp(grid, np.asarray(x), smooth(y, window)) for x, y in runs])
            ax.fill_between(grid, ys.min(0), ys.max(0), color=color, alpha=0.2)
            ax.plot(grid, np.median(ys, 0), color=color, lw=2, label=f"{name} (median of {len(runs)})")
    if threshold is not None:
        ax.axhline(threshold, color="0.4", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_comparison(values: dict, ax=None, ylabel: str = "", title: str | None = None, fmt: str = "{:.3g}"):
    """A bar per name; a list of values per name draws its mean with the individual values as dots."""
    ax = _axes(ax, figsize=(5, 3.5))
    names = list(values)
    for i, name in enumerate(names):
        v = np.atleast_1d(np.asarray(values[name], dtype=float))
        ax.bar(i, v.mean(), color=f"C{i}", alpha=0.7)
        if len(v) > 1:
            ax.scatter(np.full(len(v), i), v, color="black", s=10, zorder=3)
        ax.text(i, v.mean(), fmt.format(v.mean()), ha="center", va="bottom")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return ax


def plot_rlhf_loop(ax=None):
    """The RLHF loop as a diagram: base model -> samples -> feedback -> reward model -> update -> repeat."""
    ax = _axes(ax, figsize=(9, 4.5))
    boxes = {
        "policy": (0.0, 2.0, "language model\n(the policy)", "tab:blue"),
        "samples": (3.2, 2.0, "samples\n\"The plot was ...\"", "tab:gray"),
        "feedback": (6.4, 2.0, "feedback\npeople prefer A or B", "tab:orange"),
        "reward": (6.4, 0.0, "reward model\nscore(text)", "tab:red"),
        "update": (3.2, 0.0, "PPO update\nreward - beta * KL", "tab:green"),
        "reference": (0.0, 0.0, "reference model\n(frozen copy)", "tab:purple"),
    }
    for x, y, label, color in boxes.values():
        ax.add_patch(FancyBboxPatch((x, y), 2.4, 1.1, boxstyle="round,pad=0.1", fc=color, alpha=0.25, ec=color))
        ax.text(x + 1.2, y + 0.55, label, ha="center", va="center", fontsize=9)

    def arrow(a, b, text, side=(1, 1)):
        (x0, y0, *_), (x1, y1, *_) = boxes[a], boxes[b]
        start = (x0 + 1.2 + 1.25 * np.sign(x1 - x0), y0 + 0.55 + 0.65 * np.sign(y1 - y0))
        end = (x1 + 1.2 - 1.25 * np.sign(x1 - x0), y1 + 0.55 - 0.65 * np.sign(y1 - y0))
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=15, lw=1.5, color="0.2"))
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.15, text, ha="center", fontsize=8, color="0.2")

    arrow("policy", "samples", "1. sample")
    arrow("samples", "feedback", "2. compare")
    arrow("feedback", "reward", "3. fit")
    arrow("reward", "update", "4. score")
    arrow("update", "policy", "5. improve")
    arrow("reference", "update", "keeps text close")
    ax.text(4.4, -0.6, "6. repeat with new samples", ha="center", fontsize=9, style="italic")
    ax.set_xlim(-0.3, 9.1), ax.set_ylim(-0.9, 3.4)
    ax.set_axis_off()
    ax.set_title("The RLHF loop")
    return ax


RLHF_PANELS = (("score", "reward-model score"), ("gold_positive", "gold positive rate"),
               ("grammatical", "grammatical rate"), ("kl_k1", "KL to reference (k1, k3)"),
               ("entropy", "entropy / token"), ("clip_fraction", "clip fraction"),
               ("approx_kl", "approx. KL of the update"),
               ("value_loss", "value loss"), ("explained_variance", "explained variance"))


def plot_rlhf_history(histories: dict, panels=RLHF_PANELS, axes=None, window: int = 3):
    """One panel per figure of a PPO-RLHF run, every run of `histories` ({label: result.history}) in each.
    Returns the axes."""
    if axes is None:
        cols = 3
        rows = -(-len(panels) // cols)
        _, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    flat = np.asarray(axes).ravel()
    for ax, (key, title) in zip(flat, panels):
        for label, history in histories.items():
            x = [h["iteration"] for h in history]
            line, = ax.plot(x, smooth([h[key] for h in history], window), label=label)
            if key == "kl_k1":
                ax.plot(x, smooth([h["kl_k3"] for h in history], window), ls=":", color=line.get_color())
        ax.set_title(title, fontsize=10)
    flat[0].legend(fontsize=8)
    for ax in flat[len(panels):]:
        ax.axis("off")
    for ax in flat[-3:]:
        ax.set_xlabel("iteration")
    plt.tight_layout()
    return axes


class LivePlot:
    """A callback for `train_rlhf(on_iteration=...)`: redraws the panels every `every` iterations."""

    def __init__(self, every: int = 5, panels=RLHF_PANELS[:4]):
        self.every, self.panels = every, panels

    def __call__(self, result) -> None:
        from IPython.display import clear_output, display

        if len(result.history) % self.every:
            return
        clear_output(wait=True)
        axes = plot_rlhf_history({"this run": result.history}, self.panels)
        display(np.asarray(axes).ravel()[0].figure)
        plt.close(np.asarray(axes).ravel()[0].figure)


def plot_frontier(points: dict, histories: dict | None = None, ax=None, target: float | None = None,
                  sources: dict | None = None):
    """Gold positive rate against KL to the reference, one marker per method: points = {label: figures
    with positive_rate, kl_exact and seconds} (from `evaluate_policy`). histories = {label: result.history}
    adds each RL run's path (per-iteration gold_positive against kl_k1, on its own training batches).
    target draws the KL target as a vertical line. sources = {label: what the method learned from}, written in
    its legend entry: methods that learned from different data are not on equal footing. Returns the axes."""
    ax = _axes(ax, (6.5, 4.2))
    colors = {label: f"C{i}" for i, label in enumerate(list(points) + [h for h in histories or {} if h not in points])}
    for label, h in (histories or {}).items():
        ax.plot([x["kl_k1"] for x in h], smooth([x["gold_positive"] for x in h], 3), alpha=0.35, lw=1,
                color=colors[label])
    for label, p in points.items():
        seconds = f", {p['seconds']:.0f} s" if p.get("seconds") else ""
        source = f" (from {sources[label]})" if sources and label in sources else ""
        ax.scatter(p["kl_exact"], p["positive_rate"], s=60, zorder=3, color=colors[label],
                   label=f"{label}{source}: {p['positive_rate']:.0%} positive, "
                         f"{p['grammatical_rate']:.0%} grammatical{seconds}")
    if target is not None:
        ax.axvline(target, color="gray", ls="--", lw=1, label=f"KL target ({target:g} nats)")
    ax.set_xlabel("KL to the reference per response (nats)")
    ax.set_ylabel("gold positive rate")
    ax.legend(fontsize=8, loc="best")
    return ax


def plot_goodhart(curve: dict, ax=None, title: str | None = None):
    """Goodhart's picture of one RL run (`goodhart.checkpoint_curve`): the proxy reward (left axis) and the
    gold score (right axis) against d = sqrt(KL to the base policy), the gold peak marked. Returns the axes."""
    ax = _axes(ax, (6.5, 4))
    peak = int(np.argmax(curve["gold"]))
    ax.plot(curve["d"], curve["proxy"], "o-", color="C0", ms=3, label="proxy (the reward model)")
    ax.set_xlabel("sqrt(KL to the base policy)  (sqrt nats)")
    ax.set_ylabel("proxy reward", color="C0")
    gold_ax = ax.twinx()
    gold_ax.plot(curve["d"], curve["gold"], "s-", color="C3", ms=3, label="gold (VADER if grammatical, else -1)")
    gold_ax.axvline(curve["d"][peak], color="gray", ls="--", lw=1)
    gold_ax.set_ylabel("gold score", color="C3")
    lines = ax.get_lines()[:1] + gold_ax.get_lines()[:1]
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="center right")
    ax.set_title(title or f"gold peaks at KL {curve['kl'][peak]:.1f} nats; the proxy keeps rising", fontsize=10)
    return ax


def plot_gold_vs_kl(curves: dict, fits: dict | None = None, ax=None, x: str = "d"):
    """Gold gain against d = sqrt(KL) for several runs (best-of-n or RL), with their fitted Gao et al. curves
    as dashed lines: curves = {label: dict with d and gold_gain}, fits = {label: `bon.fit_gao` result}."""
    from rlhf_lib.bon import gao_curve

    ax = _axes(ax, (6.5, 4))
    for i, (label, c) in enumerate(curves.items()):
        ax.plot(c[x], c["gold_gain"], "o-", ms=3, color=f"C{i}", label=label)
        fit = (fits or {}).get(label)
        if fit is not None:
            grid = np.linspace(0, max(c[x]), 100)
            ax.plot(grid, gao_curve(grid, fit["alpha"], fit["beta"], fit["form"]), "--", color=f"C{i}", lw=1)
    ax.axhline(0, color="gray", lw=0.8)
    low = min(float(np.min(c["gold_gain"])) for c in curves.values())
    ax.set_ylim(bottom=max(ax.get_ylim()[0], low - 0.15))  # a fitted curve may dive far below every point
    ax.set_xlabel("sqrt(KL to the base policy)  (sqrt nats)")
    ax.set_ylabel("gold gain over the base policy")
    ax.legend(fontsize=8)
    return ax


def plot_rounds(before: dict, rounds: list[dict], extra: dict | None = None, axes=None):
    """The loop round by round (`rlhf_lib.loop`): for each start ("course", "empty"), the gold positive rate and the
    grammatical rate against the exact KL to the reference, from the model the loop started from (`before`, KL 0)
    through each round's policy. `extra` = {label: an `after` of `evaluate_whole`}: more points to mark."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    names = {"course": "from the course prompts", "empty": "from the start of text"}
    for ax, (start, title) in zip(axes, names.items()):
        kl = [0.0] + [r["after"][start]["kl_exact"] for r in rounds]
        for key, marker, label in (("positive_rate", "o-", "positive"), ("grammatical_rate", "s--", "grammatical")):
            values = [before[start][key]] + [r["after"][start][key] for r in rounds]
            ax.plot(kl, values, marker, label=label)
            for i, (x, y) in enumerate(zip(kl, values)):
                ax.annotate(f"round {i}" if i else "start", (x, y), textcoords="offset points", xytext=(4, -10),
                            fontsize=7)
        for i, (label, after) in enumerate((extra or {}).items()):
            ax.plot(after[start]["kl_exact"], after[start]["positive_rate"], "*", ms=12, color=f"C{i + 2}",
                    label=label)
        ax.set(xlabel="exact KL to the reference (nats)", ylabel="rate", title=title)
        ax.legend(fontsize=8)
    return axes


def plot_by_gap(reports: dict, ax=None):
    """Agreement with gold by gold-gap band, a group of bars per band: `reports` = {name: {band: [n, share]}} (the
    `by_gap` of `judge.gold_report` or `whole_reviews.gold_agreement`); an empty band draws no bar."""
    ax = _axes(ax, figsize=(8, 3.5))
    bands = list(next(iter(reports.values())))
    width = 0.8 / len(reports)
    for i, (name, by_gap) in enumerate(reports.items()):
        shares = [np.nan if by_gap[b][1] is None else by_gap[b][1] for b in bands]
        ax.bar(np.arange(len(bands)) + (i - (len(reports) - 1) / 2) * width, shares, width, label=name)
    ns = [next(iter(reports.values()))[b][0] for b in bands]
    ax.set_xticks(range(len(bands)), [f"{b}\n({n} pairs)" for b, n in zip(bands, ns)])
    ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax.set(xlabel="gold gap between the two reviews", ylabel="agreement with gold", ylim=(0, 1))
    ax.legend(fontsize=8)
    return ax


def plot_biases(biases: dict, ax=None):
    """A judge's biases (`judge.measure_biases`, `judge.self_preference`): each share with its bootstrap interval,
    read once and read in both orders, beside the share an unbiased judge would have (a dashed mark)."""
    ax = _axes(ax, figsize=(8, 3.5))
    unbiased = {"position": 0.0, "length": 0.5, "negation": 1.0, "fluency": 1.0, "self": 0.5}
    names = [n for n in unbiased if n in biases]
    for i, name in enumerate(names):
        for shift, (how, color) in zip((-0.15, 0.15), (("once", "C0"), ("both_orders", "C1"))):
            r = biases[name][how]
            err = None if "low" not in r else [[r["rate"] - r["low"]], [r["high"] - r["rate"]]]
            ax.errorbar(i + shift, r["rate"], yerr=err, fmt="o", color=color, capsize=4,
                        label=("read once" if how == "once" else "both orders") if i == 0 else None)
        ax.plot([i - 0.35, i + 0.35], [unbiased[name]] * 2, "k--", lw=1, label="unbiased" if i == 0 else None)
    ax.set_xticks(range(len(names)), [{"position": "position\n(verdict flips)", "length": "length\n(longer wins)",
                                       "negation": "negation\n(right about 'not')",
                                       "fluency": "fluency\n(fluent wins)", "self": "self\n(own model wins)"}[n]
                                      for n in names])
    ax.set(ylabel="share of pairs", ylim=(-0.02, 1.02))
    ax.legend(fontsize=8)
    return ax
