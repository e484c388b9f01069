"""PPO on whole reviews: the policy writes a whole review from a course prompt, another opening of the
language or nothing, and is measured from the course prompts and from the start of text.

    python benchmarks/whole_review_ppo.py --name NAME          # the recipe, whole_review_config(); ~6 min
    python benchmarks/whole_review_ppo.py --name NAME key=value ...   # the recipe with RLHFConfig fields changed
    python benchmarks/whole_review_ppo.py --plain --name NAME key=value ...   # the plain setting (earlier rounds)
    python benchmarks/whole_review_ppo.py --plot-only          # redraw assets/figures/08_whole_review_tax.png

Each run writes one row of results/whole_review_ppo.json: the configuration, the training seconds, and
the gold positive rate (VADER > 0.05 on the whole text), grammatical rate, share ended and KL to the
reference of 300 samples from the course prompts and 300 from the start of text, before and after.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "whole_review_ppo.json"
FIGURE = ROOT / "assets" / "figures" / "08_whole_review_tax.png"
PLOTTED = ("ptx 0", "ptx 1 (budget 3", "ptx 3", "defaults", "ptx 1, budget 3 nats", "RLOO")
"""the runs the figure shows (name prefixes); the tables in benchmarks/HISTORY.md have them all"""
PLOTTED_AS = {
    "defaults: ptx 1, budget 2 nats, horizon 256, beta 0.3": "the plain setting: ptx 1, budget 2 nats, horizon 256",
    "third round: s0 nearest vlr30 warmup 40, sentence rewards": "third round: sentence rewards (seed 0)",
    "third round: s0 sentence rewards, implausible 10, budget 2.5 (1000 samples)":
        "third round: sentence rewards + implausible-token penalty 10, budget 2.5 (1,000 samples)",
    **{f"fourth round: recipe, seed {s} (1000 samples)": f"the recipe, whole_review_config(), seed {s} (1,000 samples)"
       for s in range(3)},
}
"""later runs the figure shows, under a shorter name"""


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"None": None, "True": True, "False": False}.get(text, text)


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}


def main(argv=None):
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.rlhf import review_metrics, train_rlhf
    from rlhf_lib.whole_reviews import (
        WHOLE_REVIEW_REWARD_MODEL,
        WHOLE_REVIEW_START_WEIGHTS,
        evaluate_whole,
        whole_review_config,
        whole_review_prompts,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="recipe")
    parser.add_argument("--reward-model", type=Path, default=WHOLE_REVIEW_REWARD_MODEL)
    parser.add_argument("--eval-samples", type=int, default=300)
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--method", choices=["ppo", "rloo", "grpo"], default="ppo",
                        help="the iteration: PPO (the library's default) or a critic-free one "
                             "(responses_per_prompt > 1)")
    parser.add_argument("--save", type=Path, default=None, help="save the trained policy here")
    parser.add_argument("--plain", action="store_true",
                        help="start from the plain setting (whole_review_config(plain=True), starts 1:1:1), as the "
                             "first three rounds of runs did, instead of the recipe")
    parser.add_argument("--start-weights", default=None,
                        help="relative weights of the training starts: course prompts, other openings, nothing "
                             "(default: 1,1,4; with --plain 1,1,1)")
    parser.add_argument("settings", nargs="*", help="RLHFConfig fields, key=value")
    args = parser.parse_args(argv)
    if args.plot_only:
        return plot(load_results())
    weights = (tuple(float(w) for w in args.start_weights.split(",")) if args.start_weights
               else (1.0, 1.0, 1.0) if args.plain else WHOLE_REVIEW_START_WEIGHTS)
    cfg = whole_review_config(plain=args.plain,
                              **{k: parse_value(v) for k, v in (s.split("=", 1) for s in args.settings)})
    reward = load_reward_model(args.reward_model)
    policy, tok = load_model()
    reference, _ = load_model()
    results = load_results()
    if "base" not in results:
        results["base"] = evaluate_whole(reference, reference, tok, *reward, n=args.eval_samples)
    extra = {}
    if args.method != "ppo":
        from rlhf_lib.critic_free import CriticFreeConfig, critic_free_iteration

        extra["iteration_fn"] = critic_free_iteration(CriticFreeConfig(args.method))
    result = train_rlhf(policy, tok, *reward, reference, cfg,
                        prompts=whole_review_prompts(seed=cfg.seed, weights=weights), metrics=review_metrics, **extra)
    if args.save:
        policy.save_pretrained(args.save)
        tok.save_pretrained(args.save)
    after = evaluate_whole(policy, reference, tok, *reward, n=args.eval_samples)
    history = [{k: round(v, 4) if isinstance(v, float) else v for k, v in h.items()} for h in result.history]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    results["runs"][args.name] = dict(
        method=args.method, config=vars(cfg), start_weights=weights, train_seconds=round(result.seconds, 1),
        after=after, history=history,
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}", date=str(date.today()),
        commit=commit, load_average=[round(x, 2) for x in os.getloadavg()])
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    for where in ("course", "empty"):
        b, a = results["base"][where], after[where]
        print(f"{where:7s} positive {b['positive_rate']:.3f} -> {a['positive_rate']:.3f}  grammatical "
              f"{b['grammatical_rate']:.3f} -> {a['grammatical_rate']:.3f}  ended {a['finished']:.3f}  "
              f"KL {a['kl_k1']:.2f}")
    plot(results)
    print(f"train {result.seconds:.0f} s; examples from the start of text:", *after["empty"]["examples"][:4],
          sep="\n  ")


def plot(results: dict):
    """Gold positive rate against grammatical rate after each run, from the course prompts and from the start
    of text; the base model, and the target box (>= 95% positive, grammar at most 2 points below the base)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 6), sharey=True)
    for ax, (where, title) in zip(axes, (("course", "from the course prompts"), ("empty", "from the start of text"))):
        base = results["base"][where]
        ax.add_patch(plt.Rectangle((0.95, base["grammatical_rate"] - 0.02), 0.06, 0.05, color="tab:green", alpha=0.15,
                                   label="target"))
        ax.scatter(base["positive_rate"], base["grammatical_rate"], marker="s", color="black", label="course model")
        shown = [n for n in results["runs"] if n.startswith(PLOTTED) or n in PLOTTED_AS]
        for i, name in enumerate(shown):
            run = results["runs"][name]
            a = run["after"][where]
            label = PLOTTED_AS.get(name, name)
            recipe = label.startswith("the recipe")  # the default: stars, on top
            ax.scatter(a["positive_rate"], a["grammatical_rate"], color=plt.cm.tab20(i % 20), zorder=3 if recipe else 2,
                       marker="*" if recipe else "o", s=140 if recipe else 36, label=f"{label} (KL {a['kl_k1']:.1f})")
        ax.set(title=f"whole reviews {title}", xlabel="gold positive (VADER)", xlim=(0.4, 1.01), ylim=(0.7, 1.0))
    axes[0].set_ylabel("grammatical")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2)
    fig.tight_layout(rect=(0, 0.27, 1, 1))
    fig.savefig(FIGURE, dpi=110)
    print(f"wrote {FIGURE}")


if __name__ == "__main__":
    sys.exit(main())
