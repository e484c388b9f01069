"""Tabular methods against exact policy evaluation and value iteration."""

import numpy as np
import pytest

from rlhf_lib import solutions
from rlhf_lib.envs import GridWorld
from rlhf_lib.tabular import (
    epsilon_greedy,
    epsilon_greedy_probs,
    greedy_path,
    linear_schedule,
    optimal_action_mask,
    q_learning,
    sarsa,
    value_iteration,
)


def evaluate_policy_exactly(env, policy, gamma):
    """V_pi by solving the linear system V = r_pi + gamma * P_pi V (no iteration)."""
    n = env.n_states
    P, r = np.zeros((n, n)), np.zeros(n)
    for s in range(n):
        if env.is_wall(s) or env.is_terminal(s):
            continue
        for p, s2, rew, done in env.transitions(s, int(policy[s])):
            r[s] += p * rew
            if not done:
                P[s, s2] += p
    return np.linalg.solve(np.eye(n) - gamma * P, r)


def live_states(env):
    return [s for s in range(env.n_states) if not env.is_wall(s) and not env.is_terminal(s)]


@pytest.mark.parametrize("layout,slip", [("classic", 0.0), ("classic", 0.2), ("maze", 0.1), ("cliff", 0.0)])
def test_value_iteration_is_optimal(layout, slip):
    env, gamma = GridWorld(layout, slip=slip), 0.95
    vi = value_iteration(env, gamma)
    V_pi = evaluate_policy_exactly(env, vi.policy, gamma)
    np.testing.assert_allclose(vi.V, V_pi, atol=1e-6)  # V is the value of its own greedy policy
    # ... and no single-action change improves it (policy improvement theorem)
    for s in live_states(env):
        for a in range(4):
            q = sum(p * (r + gamma * V_pi[s2] * (not d)) for p, s2, r, d in env.transitions(s, a))
            assert q <= V_pi[s] + 1e-6


@pytest.mark.parametrize("layout", ["classic", "cliff"])
def test_q_learning_greedy_policy_equals_value_iteration(layout):
    env, gamma = GridWorld(layout), 0.9
    optimal = optimal_action_mask(value_iteration(env, gamma).Q, atol=1e-6)
    result = q_learning(env, episodes=3000, alpha=0.5, gamma=gamma, epsilon=0.3, seed=0)
    wrong = [s for s in live_states(env) if not optimal[s, result.policy[s]]]
    assert wrong == [], f"Q-learning's greedy action is not optimal in states {wrong}"


def test_on_the_cliff_sarsa_walks_safe_and_q_learning_walks_optimal():
    env = GridWorld("cliff")
    q = q_learning(env, episodes=500, alpha=0.5, gamma=1.0, epsilon=0.1, seed=0)
    s = sarsa(env, episodes=500, alpha=0.5, gamma=1.0, epsilon=0.1, seed=0)
    q_path, s_path = greedy_path(env, q.Q), greedy_path(env, s.Q)
    vi_path = greedy_path(env, value_iteration(env, 1.0).Q)
    assert env.is_terminal(q_path[-1]) and env.cell(q_path[-1]) == "G"
    assert env.cell(s_path[-1]) == "G"
    assert len(q_path) == len(vi_path) == 14  # up, 11 steps along the edge, down
    edge = [st for st in range(env.n_states)
            if env.cell(st + env.n_cols if st + env.n_cols < env.n_states else st) == "X"]
    assert sum(st in edge for st in q_path) == 10  # Q-learning walks every cell along the cliff
    assert sum(st in edge for st in s_path) <= 2, "SARSA should keep away from the edge"
    assert len(s_path) > len(q_path)
    # online, with exploration, the safe path earns more than the optimal one
    assert np.mean(s.returns[-200:]) > np.mean(q.returns[-200:])


@pytest.mark.parametrize("layout,slip,epsilon",
                         [("cliff", 0.0, 0.1), ("classic", 0.2, linear_schedule(1.0, 0.05, 300))])
@pytest.mark.parametrize("trainer,solution",
                         [(q_learning, solutions.q_learning_episode), (sarsa, solutions.sarsa_episode)])
def test_the_exercise_solution_trains_exactly_like_the_library(layout, slip, epsilon, trainer, solution):
    """The plain-loop solution plugged into the trainer gives the library's Q table and returns."""
    env = GridWorld(layout, slip=slip)
    ours = trainer(env, episodes=500, alpha=0.5, gamma=0.95, epsilon=epsilon, seed=4)
    theirs = trainer(env, episodes=500, alpha=0.5, gamma=0.95, epsilon=epsilon, seed=4, episode_fn=solution)
    np.testing.assert_allclose(theirs.Q, ours.Q, rtol=0, atol=1e-12)
    assert theirs.returns == ours.returns and theirs.lengths == ours.lengths


def test_an_episode_function_must_return_return_and_length():
    with pytest.raises(TypeError, match=r"\(total_reward, steps\)"):
        q_learning(GridWorld("classic"), episodes=2, episode_fn=lambda env, Q, alpha, gamma, epsilon, rng: None)


def test_epsilon_greedy_samples_its_stated_distribution():
    rng = np.random.default_rng(0)
    q_row = np.array([1.0, 3.0, 3.0, 0.0])
    draws = np.bincount([epsilon_greedy(q_row, 0.2, rng) for _ in range(40_000)], minlength=4) / 40_000
    np.testing.assert_allclose(draws, epsilon_greedy_probs(q_row, 0.2), atol=0.01)
    np.testing.assert_allclose(epsilon_greedy_probs(q_row, 0.2), [0.05, 0.45, 0.45, 0.05])


def test_linear_schedule():
    eps = linear_schedule(1.0, 0.1, 100)
    assert eps(0) == 1.0 and eps(50) == pytest.approx(0.55)
    assert eps(100) == pytest.approx(0.1) and eps(500) == pytest.approx(0.1)


def test_q_learning_with_a_schedule_runs_and_is_seeded():
    env = GridWorld("classic")
    a = q_learning(env, episodes=50, epsilon=linear_schedule(1.0, 0.05, 40), seed=1)
    b = q_learning(env, episodes=50, epsilon=linear_schedule(1.0, 0.05, 40), seed=1)
    np.testing.assert_array_equal(a.Q, b.Q)
    assert a.returns == b.returns


@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=-0.1), "learning rate"),
    (dict(gamma=1.2), "gamma"),
    (dict(gamma=-0.5), "gamma"),
    (dict(epsilon=2.0), "epsilon"),
    (dict(episodes=0), "episodes"),
])
def test_bad_arguments_get_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        q_learning(GridWorld("classic"), **kwargs)


def test_value_iteration_rejects_bad_gamma():
    with pytest.raises(ValueError, match=r"gamma .* \[0, 1\]"):
        value_iteration(GridWorld("classic"), gamma=1.01)
