"""The gridworld's model agrees with its sampled steps; bandits; clear errors."""

import numpy as np
import pytest

from rlhf_lib.envs import DOWN, LEFT, RIGHT, UP, BernoulliBandit, GaussianBandit, GridWorld, Layout


def test_transitions_are_distributions():
    env = GridWorld("maze", slip=0.3)
    for s in range(env.n_states):
        if env.is_wall(s):
            continue
        for a in range(4):
            assert sum(p for p, *_ in env.transitions(s, a)) == pytest.approx(1.0)


def test_sampled_steps_follow_the_model():
    env = GridWorld("classic", slip=0.2, seed=0)
    s0 = env.start  # bottom-left corner: up goes up, left and down bounce off the edge
    counts = {}
    for _ in range(20_000):
        env.reset()
        s, *_ = env.step(UP)
        counts[s] = counts.get(s, 0) + 1
    for p, s2, _, _ in env.transitions(s0, UP):
        assert counts.get(s2, 0) / 20_000 == pytest.approx(p, abs=0.015)


def test_walls_block_and_edges_bounce():
    env = GridWorld("classic")
    env.reset()
    s, r, terminated, truncated, _ = env.step(LEFT)
    assert s == env.start and r == pytest.approx(-0.04) and not terminated
    env.reset()
    env.step(UP)  # to (1, 0)
    s, *_ = env.step(RIGHT)  # (1, 1) is a wall
    assert s == 1 * env.n_cols + 0


def test_goal_and_pit_end_the_episode_with_their_rewards():
    env = GridWorld("classic")
    env.reset()
    for a in (UP, UP, RIGHT, RIGHT):
        env.step(a)
    s, r, terminated, *_ = env.step(RIGHT)
    assert env.cell(s) == "G" and r == 1.0 and terminated
    env.reset()
    for a in (RIGHT, RIGHT, RIGHT):
        env.step(a)
    s, r, terminated, *_ = env.step(UP)
    assert env.cell(s) == "X" and r == -1.0 and terminated


def test_truncation_after_max_steps():
    env = GridWorld("classic")
    env.reset()
    for _ in range(env.max_steps):
        _, _, terminated, truncated, _ = env.step(DOWN)
    assert truncated and not terminated


def test_unknown_layout_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown gridworld layout 'clif'.*classic, cliff, maze"):
        GridWorld("clif")


@pytest.mark.parametrize("slip", [-0.1, 1.5, float("nan")])
def test_bad_slip(slip):
    with pytest.raises(ValueError, match="slip"):
        GridWorld("classic", slip=slip)


def test_bad_layouts():
    with pytest.raises(ValueError, match="exactly one S"):
        GridWorld(Layout(("..G",), -1, 1, -1, 10))
    with pytest.raises(ValueError, match="same length"):
        GridWorld(Layout(("S..", ".G"), -1, 1, -1, 10))
    with pytest.raises(ValueError, match="action"):
        GridWorld("classic").step(4)


def test_bandits():
    b = BernoulliBandit([0.2, 0.8], seed=0)
    rewards = b.pull(np.ones(10_000, dtype=int))
    assert rewards.mean() == pytest.approx(0.8, abs=0.02)
    g = GaussianBandit([0.0, 1.0], std=0.5, seed=0)
    assert g.pull(np.zeros(10_000, dtype=int)).std() == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match=r"probs\[1\]"):
        BernoulliBandit([0.5, 1.5])
    with pytest.raises(ValueError, match="at least two"):
        GaussianBandit([1.0])


def test_the_optional_library_baseline_says_how_to_install_it(monkeypatch):
    """Notebook 03's Stable-Baselines3 cell: without the package, the call raises ImportError naming the pinned
    install command (the cell prints it)."""
    import sys

    from rlhf_lib import cartpole

    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install stable-baselines3==2\.9\.2"):
        cartpole.train_sb3_cartpole(cartpole.PPOConfig(total_steps=1024))
