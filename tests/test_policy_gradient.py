"""REINFORCE against the closed-form bandit gradient, and on CartPole."""

import numpy as np
import pytest
import torch

from rlhf_lib import solutions
from rlhf_lib.envs import BernoulliBandit, GaussianBandit
from rlhf_lib.policy_gradient import (
    ReinforceConfig,
    exact_bandit_gradient,
    expected_reward,
    reinforce_bandit_samples,
    reward_to_go,
    softmax,
    train_bandit,
    train_reinforce_cartpole,
)
from rlhf_lib.ppo import discounted_returns


def finite_difference_gradient(theta, r, h=1e-6):
    grad = np.zeros(len(theta))
    for j in range(len(theta)):
        e = np.zeros(len(theta))
        e[j] = h
        grad[j] = (expected_reward(theta + e, r) - expected_reward(theta - e, r)) / (2 * h)
    return grad


def test_closed_form_gradient_matches_finite_differences():
    theta, r = np.array([0.3, -1.0, 0.5]), np.array([0.2, 0.9, 0.5])
    np.testing.assert_allclose(exact_bandit_gradient(theta, r), finite_difference_gradient(theta, r), atol=1e-8)


@pytest.mark.parametrize("bandit", [BernoulliBandit([0.2, 0.5, 0.9], seed=1),
                                    GaussianBandit([1.0, -0.5], std=2.0, seed=2)])
@pytest.mark.parametrize("baseline", [0.0, 0.5])
def test_reinforce_estimate_agrees_with_closed_form_within_monte_carlo_error(bandit, baseline):
    theta = np.linspace(-0.5, 0.5, bandit.n_actions)
    samples = reinforce_bandit_samples(theta, bandit, 20_000, baseline, np.random.default_rng(0))
    estimate = samples.mean(0)
    stderr = samples.std(0, ddof=1) / np.sqrt(len(samples))
    exact = exact_bandit_gradient(theta, bandit.expected_rewards)
    z = np.abs(estimate - exact) / stderr
    assert np.all(z < 4), f"estimate {estimate} vs exact {exact}, z-scores {z}"


def test_a_good_baseline_lowers_variance_without_moving_the_mean():
    bandit = BernoulliBandit([0.7, 0.8, 0.9], seed=0)
    theta = np.zeros(3)
    rng = np.random.default_rng(1)
    plain = reinforce_bandit_samples(theta, bandit, 20_000, 0.0, rng)
    based = reinforce_bandit_samples(theta, bandit, 20_000, expected_reward(theta, bandit.expected_rewards), rng)
    assert based.var(0).sum() < 0.5 * plain.var(0).sum()
    exact = exact_bandit_gradient(theta, bandit.expected_rewards)
    np.testing.assert_allclose(based.mean(0), exact, atol=4 * based.std(0).max() / np.sqrt(20_000))


def test_gradient_ascent_on_a_bandit_finds_the_best_arm():
    bandit = BernoulliBandit([0.2, 0.5, 0.8], seed=0)
    run = train_bandit(bandit, steps=300, lr=1.0, baseline="mean", seed=0)
    assert run.expected[0] == pytest.approx(0.5)
    assert run.expected[-1] > 0.75
    assert softmax(run.thetas[-1]).argmax() == 2


def test_reward_to_go_equals_discounted_returns_of_one_episode():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=30)
    dones = np.zeros(30)
    dones[-1] = 1
    np.testing.assert_allclose(reward_to_go(rewards, 0.97), discounted_returns(rewards, dones, 0.97).numpy(), rtol=1e-5)


def test_reinforce_learns_cartpole_on_a_small_budget():
    log = train_reinforce_cartpole(ReinforceConfig(total_steps=20_000, seed=0), progress=False)
    assert np.mean(log.episode_returns[:20]) < 40
    assert log.mean_recent_return(20) > 100


@pytest.mark.parametrize("baseline,normalize", [("none", False), ("value", False), ("value", True)])
def test_the_exercise_solution_trains_exactly_like_the_library(baseline, normalize):
    """The solution's update (indexing instead of gather) plugged into the trainer gives the library's run."""
    cfg = ReinforceConfig(total_steps=1500, baseline=baseline, normalize=normalize, seed=2)
    ours = train_reinforce_cartpole(cfg, progress=False)
    theirs = train_reinforce_cartpole(cfg, progress=False, update_fn=solutions.reinforce_update)
    assert theirs.episode_returns == ours.episode_returns
    # tight: a baseline left undetached moves the weights by about 1e-5 in this run
    assert ([u["policy_loss"] for u in theirs.updates]
            == pytest.approx([u["policy_loss"] for u in ours.updates], rel=1e-7))
    for mine, library in zip(theirs.policy.parameters(), ours.policy.parameters()):
        torch.testing.assert_close(mine, library, atol=1e-7, rtol=1e-6)


def test_reinforce_same_seed_same_numbers():
    a = train_reinforce_cartpole(ReinforceConfig(total_steps=1000, seed=5), progress=False)
    b = train_reinforce_cartpole(ReinforceConfig(total_steps=1000, seed=5), progress=False)
    assert a.episode_returns == b.episode_returns


@pytest.mark.parametrize("kwargs,match", [(dict(lr=-1.0), "learning rate"), (dict(gamma=2.0), "gamma"),
                                          (dict(baseline="median"), "baseline")])
def test_reinforce_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReinforceConfig(**kwargs)


def test_train_bandit_rejects_negative_learning_rate():
    with pytest.raises(ValueError, match="learning rate"):
        train_bandit(BernoulliBandit([0.1, 0.9]), lr=-0.5)
