"""Draw the "what you should see" figures that the notebooks' markdown shows, into assets/figures/.

    python scripts/make_figures.py

The CartPole figure of notebook 03 comes from benchmarks/cartpole.py, which needs several minutes.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from rlhf_lib.envs import GridWorld
from rlhf_lib.plotting import plot_gridworld, plot_rlhf_loop
from rlhf_lib.tabular import greedy_path, q_learning, sarsa

FIGURES = Path(__file__).resolve().parents[1] / "assets" / "figures"


def cliff_figure(path: Path):
    env = GridWorld("cliff")
    q = q_learning(env, episodes=500, alpha=0.5, gamma=1.0, epsilon=0.1, seed=0)
    s = sarsa(env, episodes=500, alpha=0.5, gamma=1.0, epsilon=0.1, seed=0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 2.6))
    for ax, name, result in zip(axes, ("Q-learning", "SARSA"), (q, s)):
        walk = greedy_path(env, result.Q)
        plot_gridworld(env, path=walk, ax=ax, title=f"{name}: {len(walk) - 1} steps")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def loop_figure(path: Path):
    ax = plot_rlhf_loop()
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=90)
    plt.close(ax.figure)


if __name__ == "__main__":
    FIGURES.mkdir(parents=True, exist_ok=True)
    cliff_figure(FIGURES / "01_cliff.png")
    loop_figure(FIGURES / "00_rlhf_loop.png")
    print("wrote", sorted(p.name for p in FIGURES.glob("*.png")))
