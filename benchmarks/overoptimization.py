"""Over-optimisation on whole reviews: proxy and gold against sqrt(KL) for best-of-n and PPO, Gao et al.'s
forms fitted, and their predicted gold peak checked on a longer run that the fit never saw.

    python benchmarks/overoptimization.py               # about 18 minutes on 2 cores
    python benchmarks/overoptimization.py --refit       # redo the fits and predictions from the saved curves
    python benchmarks/overoptimization.py --plot-only   # redraw the figure from the results

Proxies: whole-review reward models trained on 1,000, 4,000 and 16,000 labelled pairs (the same recipe,
`goodhart.train_proxy_reward_model`). Gold: `goodhart.gold_scores` (VADER if grammatical, else -1).
Best-of-n: one pool of 128 base-model reviews for each of 32 starts, scored by every proxy. PPO: the
whole-review task (`whole_review_config(plain=True)`, starts 1:1:1) without PPO-ptx, 50 iterations of 32 reviews,
lr 5e-5, against each proxy with no KL penalty (seeds 0, 1, 2), and against the 4,000-pair proxy with a fixed KL
coefficient of 0.05 and 0.2; Gao et al.'s RL form is fitted to the 4,000-pair seed-0 run and its predicted peak
compared with the runs it never saw: seeds 1 and 2, and a longer one (seed 3, 80 iterations). The proxies are kept in
runs/overoptimization/ and loaded by a rerun. A curve point is the mean of
2 iterations' batches (64 reviews). Writes results/overoptimization.json and
assets/figures/09_overoptimization.png.
"""

import argparse
import json
import platform
import subprocess
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from rlhf_lib.bon import best_of_n_curve, fit_gao
from rlhf_lib.goodhart import (
    bon_pools,
    checkpoint_curve,
    gold_metrics,
    gold_peak,
    pools_base,
    train_proxy_reward_model,
    up_to_the_turn,
)
from rlhf_lib.lm import load_model
from rlhf_lib.rlhf import train_rlhf
from rlhf_lib.whole_reviews import review_starts, whole_review_config, whole_review_prompts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "overoptimization.json"
FIGURE = ROOT / "assets" / "figures" / "09_overoptimization.png"
PAIRS = (1000, 4000, 16000)
MAIN = 4000
SEEDS = (0, 1, 2)
CACHE = ROOT / "runs" / "overoptimization"
WINDOW = 2
NS = (1, 2, 4, 8, 16, 32, 64, 128)
RL = dict(ptx_coef=0.0, target_kl=None, batch_size=32, lr=5e-5, iterations=50)


def rl_run(reward, base, kl_coef, seed=0, iterations=50):
    policy, tokenizer = load_model()
    reference, _ = load_model()
    cfg = whole_review_config(plain=True, **{**RL, "kl_coef": kl_coef, "seed": seed, "iterations": iterations})
    result = train_rlhf(policy, tokenizer, *reward, reference, cfg, prompts=whole_review_prompts(weights=(1, 1, 1)),
                        progress=False, metrics=gold_metrics)
    curve = checkpoint_curve(result.history, WINDOW, base)
    return dict(kl_coef=kl_coef, seed=seed, iterations=iterations, seconds=round(result.seconds, 1),
                curve={k: [round(float(v), 4) for v in vals] for k, vals in curve.items()},
                last_samples=result.samples[-1],
                peak_samples=result.samples[int(curve["iteration"][gold_peak(curve)]) - 1] if gold_peak(curve) else [])


def as_arrays(curve: dict) -> dict:
    return {k: np.asarray(v, dtype=float) for k, v in curve.items()}


def fit_rl(curve: dict) -> dict:
    part = up_to_the_turn(curve)
    return fit_gao(curve["d"][part], curve["gold_gain"][part], "rl") | dict(points=int(part.stop))


def proxy_models(policy, tokenizer) -> tuple[dict, dict]:
    """The three proxies, trained once and kept in runs/overoptimization/ (a rerun loads them: same seed,
    same model)."""
    from rlhf_lib.reward_model import load_reward_model

    models, summaries = {}, {}
    for n in PAIRS:
        folder = CACHE / f"proxy_{n}"
        if (folder / "summary.json").exists():
            models[n], summaries[n] = load_reward_model(folder), json.loads((folder / "summary.json").read_text())
        else:
            rm, rtok, summaries[n] = train_proxy_reward_model(n, policy=(policy, tokenizer), progress=False)
            rm.save_pretrained(folder)
            rtok.save_pretrained(folder)
            (folder / "summary.json").write_text(json.dumps(summaries[n]))  # last: marks the folder complete
            models[n] = (rm, rtok)
        print(f"proxy from {n} pairs: {summaries[n]}", flush=True)
    return models, summaries


def measure() -> dict:
    start = time.perf_counter()
    policy, tokenizer = load_model()
    proxies, summaries = proxy_models(policy, tokenizer)
    starts = review_starts(32, seed=4242)
    bon, base = {}, {}
    for n, (rm, rtok) in proxies.items():
        pools = bon_pools(policy, tokenizer, rm, rtok, starts, 128, seed=4242)  # same seed: the same reviews
        curve = best_of_n_curve(pools, NS)
        base[n] = pools_base(pools)
        bon[n] = dict(curve={k: [round(float(v), 4) for v in vals] for k, vals in curve.items()})  # fits: analyse
        print(f"best-of-n, {n} pairs: gold {bon[n]['curve']['gold']}", flush=True)
    runs = {}
    for n in PAIRS:
        for seed in SEEDS:
            runs[f"{n} pairs, no KL penalty, seed {seed}"] = rl_run(proxies[n], base[n], 0.0, seed)
    for kl in (0.05, 0.2):
        runs[f"{MAIN} pairs, KL coefficient {kl}"] = rl_run(proxies[MAIN], base[MAIN], kl)
    heldout = rl_run(proxies[MAIN], base[MAIN], 0.0, seed=len(SEEDS), iterations=80)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return dict(date=str(date.today()), commit=commit, torch=torch.__version__,
                machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                        f"{platform.processor() or 'cpu'}",
                settings=dict(pairs=PAIRS, seeds=SEEDS, window=WINDOW, ns=NS, rl=RL, bon_starts=len(starts),
                              bon_pool=128),
                proxies={str(n): s for n, s in summaries.items()}, best_of_n={str(n): b for n, b in bon.items()},
                base={str(n): b for n, b in base.items()}, runs=runs, heldout=heldout,
                seconds=round(time.perf_counter() - start, 1))


def analyse(results: dict) -> dict:
    """Fits, measured peaks and the held-out prediction, from the stored curves (in place; returns results)."""
    from rlhf_lib.bon import gao_curve

    for _n, b in results["best_of_n"].items():
        c = as_arrays(b["curve"])
        b["fit"] = fit_gao(c["d"], c["gold_gain"], "bon")
    for name, run in {**results["runs"], "held-out run": results["heldout"]}.items():
        c = as_arrays(run["curve"])
        run["fit"] = fit_rl(c)
        peak = gold_peak(c)
        run["measured_peak"] = dict(kl=float(c["kl"][peak]), gold_gain=float(c["gold_gain"][peak]))
        print(name, run["seconds"], "s", run["measured_peak"], {k: round(v, 3) for k, v in run["fit"].items()
                                                                if isinstance(v, float)}, flush=True)
    fitted = results["runs"][f"{MAIN} pairs, no KL penalty, seed 0"]["fit"]
    predictions = {}
    for name, other in [(f"seed {s}", results["runs"][f"{MAIN} pairs, no KL penalty, seed {s}"]) for s in SEEDS[1:]] + \
            [(f"seed {len(SEEDS)}, 80 iterations", results["heldout"])]:
        h = as_arrays(other["curve"])
        part, peak = up_to_the_turn(h), gold_peak(h)
        predicted = gao_curve(h["d"][part], fitted["alpha"], fitted["beta"], "rl")
        predictions[name] = dict(predicted_peak=dict(kl=fitted["kl_peak"], gold_gain=fitted["R_peak"]),
                                 measured_peak=dict(kl=float(h["kl"][peak]), gold_gain=float(h["gold_gain"][peak])),
                                 rmse_up_to_the_turn=float(np.sqrt(np.mean((predicted - h["gold_gain"][part]) ** 2))),
                                 points=int(part.stop))
        print("held out:", name, predictions[name], flush=True)
    results["prediction"] = dict(fit_from=f"{MAIN} pairs, no KL penalty, seed 0 (50 iterations)", held_out=predictions)
    return results


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhf_lib.plotting import plot_gold_vs_kl, plot_goodhart

    runs = {k: as_arrays(v["curve"]) for k, v in results["runs"].items()}
    main = f"{MAIN} pairs, no KL penalty, seed 0"
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    plot_goodhart(runs[main], ax=axes[0, 0], title=f"PPO against a proxy from {MAIN:,} pairs, no KL penalty")
    bon = {f"best-of-n, {int(n):,} pairs": as_arrays(b["curve"]) for n, b in results["best_of_n"].items()}
    plot_gold_vs_kl({**bon, f"PPO, {MAIN:,} pairs": runs[main]},
                    {**{f"best-of-n, {int(n):,} pairs": b["fit"] for n, b in results["best_of_n"].items()},
                     f"PPO, {MAIN:,} pairs": results["runs"][main]["fit"]}, ax=axes[0, 1])
    axes[0, 1].set_title("best-of-n and PPO; dashed: Gao et al.'s forms fitted", fontsize=10)
    ax = axes[1, 0]
    for i, n in enumerate(PAIRS):
        for seed in SEEDS:
            c = runs[f"{n} pairs, no KL penalty, seed {seed}"]
            label = f"{n:,} pairs ({results['proxies'][str(n)]['gold_accuracy']:.0%} agreement)" if seed == 0 else None
            ax.plot(c["d"], c["gold_gain"], "o-", ms=3, color=f"C{i}", alpha=0.8, label=label)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("sqrt(KL to the base policy)  (sqrt nats)")
    ax.set_ylabel("gold gain over the base policy")
    ax.legend(fontsize=8)
    ax.set_title(f"PPO without a KL penalty, {len(SEEDS)} seeds per proxy", fontsize=10)
    plot_gold_vs_kl({f"KL coefficient {k}": runs[name] for k, name in
                     ((0.0, main), (0.05, f"{MAIN} pairs, KL coefficient 0.05"),
                      (0.2, f"{MAIN} pairs, KL coefficient 0.2"))},
                    ax=axes[1, 1])
    axes[1, 1].set_title(f"{MAIN:,}-pair proxy: does a KL penalty move the curve or stop earlier?", fontsize=10)
    for ax in axes.flat[1:]:
        ax.set_xlim(0, 4)
        ax.set_ylim(-1.2, 1.0)
    fig.suptitle(f"Over-optimisation on whole reviews ({results['date']}, {results['machine']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from the saved results")
    parser.add_argument("--refit", action="store_true", help="redo the fits and predictions from the saved curves")
    args = parser.parse_args()
    if not args.plot_only:
        results = json.loads(RESULTS.read_text()) if args.refit else measure()
        RESULTS.write_text(json.dumps(analyse(results), indent=1))
    plot(json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main()
