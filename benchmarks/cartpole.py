"""PPO vs REINFORCE (or vs stable-baselines3's PPO) on CartPole-v1: environment steps and wall time to the solved
threshold.

    python benchmarks/cartpole.py            # 5 seeds each, 150k steps; writes benchmarks/results/cartpole.json
                                             # and the figure assets/figures/03_ppo_vs_reinforce.png
    python benchmarks/cartpole.py --methods ppo sb3 --seeds 3 --out benchmarks/results/cartpole_sb3.json \
        --figure assets/figures/03_ppo_vs_sb3.png   # the optional baseline (pip install stable-baselines3==2.9.2)

"Solved" is the usual CartPole-v1 criterion: the mean return of the last 100
training episodes (of the stochastic policy being trained) reaches 475.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import date
from importlib.metadata import version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from rlhf_lib.cartpole import PPOConfig, train_ppo_cartpole, train_sb3_cartpole
from rlhf_lib.plotting import plot_learning_curves
from rlhf_lib.policy_gradient import ReinforceConfig, train_reinforce_cartpole

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "ppo": ("PPO", lambda steps, s: train_ppo_cartpole(PPOConfig(total_steps=steps, seed=s), progress=False)),
    "reinforce": ("REINFORCE (value baseline)",
                  lambda steps, s: train_reinforce_cartpole(ReinforceConfig(total_steps=steps, seed=s),
                                                            progress=False)),
    "sb3": ("stable-baselines3 PPO", lambda steps, s: train_sb3_cartpole(PPOConfig(total_steps=steps, seed=s))),
}
"""--methods: the name each is plotted under, and its training run (steps, seed) -> TrainingLog"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cartpole.json")
    parser.add_argument("--figure", type=Path, default=ROOT / "assets" / "figures" / "03_ppo_vs_reinforce.png")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=["ppo", "reinforce"])
    args = parser.parse_args()

    runs = {METHODS[m][0]: [] for m in args.methods}
    rows = []
    for seed in range(args.seeds):
        for method in args.methods:
            name, train = METHODS[method]
            log = train(args.steps, seed)
            runs[name].append((log.episode_end_steps, log.episode_returns))
            row = dict(method=name, seed=seed, steps_to_475=log.steps_to_reach(475, 100),
                       seconds_to_475=log.seconds_to_reach(475, 100), final_mean_return_100=log.mean_recent_return(100),
                       total_seconds=round(log.wall_time, 2))
            rows.append(row)
            print(row, flush=True)

    summary = {}
    for name in runs:
        mine = [r for r in rows if r["method"] == name]
        solved = [r for r in mine if r["steps_to_475"] is not None]
        summary[name] = dict(
            solved_runs=f"{len(solved)}/{len(mine)}",
            median_steps_to_475=float(np.median([r["steps_to_475"] for r in solved])) if solved else None,
            median_seconds_to_475=float(np.median([r["seconds_to_475"] for r in solved])) if solved else None,
        )
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result = dict(date=str(date.today()), commit=commit, machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                  f"{platform.processor() or 'cpu'}", python=platform.python_version(), torch=torch.__version__,
                  steps_per_run=args.steps, criterion="mean return of the last 100 training episodes >= 475",
                  **({"stable_baselines3": version("stable-baselines3")} if "sb3" in args.methods else {}),
                  summary=summary, runs=rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))

    ax = plot_learning_curves(runs, window=20, threshold=475, title="CartPole-v1: " + " vs ".join(runs))
    ax.figure.set_size_inches(7, 4)
    ax.figure.tight_layout()
    ax.figure.savefig(args.figure, dpi=100)
    plt.close(ax.figure)


if __name__ == "__main__":
    main()
