"""Tabular reinforcement learning: value iteration, Q-learning and SARSA.

Value iteration needs the model (`env.transitions`); Q-learning and SARSA
learn from sampled steps only. The two learners differ in one line, the
target of the update:

    Q-learning:  r + gamma * max_a' Q(s', a')       (off-policy: the greedy action)
    SARSA:       r + gamma * Q(s', a')  with a' ~ epsilon-greedy   (on-policy)

Each learner is one episode function (`q_learning_episode`, `sarsa_episode`)
called once per episode by `td_control`; `q_learning` and `sarsa` take any
function with that signature, so notebook 01 trains with the learner's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rlhf_lib.runtime import check_count, check_positive, check_probability


def check_gamma(gamma: float) -> float:
    return check_probability("gamma (the discount factor)", gamma)


# ---- planning with the model


@dataclass
class ValueIterationResult:
    V: np.ndarray
    """state values, shape (n_states,)"""
    Q: np.ndarray
    """action values, shape (n_states, n_actions)"""
    deltas: list[float] = field(default_factory=list)
    """largest change of V in each sweep"""

    @property
    def policy(self) -> np.ndarray:
        return self.Q.argmax(axis=1)


def q_from_v(env, V: np.ndarray, gamma: float) -> np.ndarray:
    """Q(s, a) = sum over outcomes p * (r + gamma * V(s') * (1 - terminated))."""
    Q = np.zeros((env.n_states, env.n_actions))
    for s in range(env.n_states):
        if env.is_wall(s) or env.is_terminal(s):
            continue
        for a in range(env.n_actions):
            Q[s, a] = sum(p * (r + gamma * V[s2] * (not done)) for p, s2, r, done in env.transitions(s, a))
    return Q


def value_iteration(env, gamma: float = 0.9, tol: float = 1e-8, max_sweeps: int = 10_000) -> ValueIterationResult:
    """Apply the Bellman optimality backup V(s) <- max_a Q(s, a) until V stops changing."""
    gamma = check_gamma(gamma)
    check_positive("tol", tol)
    V = np.zeros(env.n_states)
    deltas = []
    for _ in range(check_count("max_sweeps", max_sweeps)):
        Q = q_from_v(env, V, gamma)
        V_new = Q.max(axis=1)
        deltas.append(float(np.abs(V_new - V).max()))
        V = V_new
        if deltas[-1] < tol:
            break
    return ValueIterationResult(V=V, Q=q_from_v(env, V, gamma), deltas=deltas)


def optimal_action_mask(Q: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """Boolean (n_states, n_actions): True for every action within atol of the best (ties count)."""
    return Q >= Q.max(axis=1, keepdims=True) - atol


# ---- acting


def epsilon_greedy(q_row: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
    """With probability epsilon a uniformly random action, else a greedy one (ties broken at random)."""
    if rng.random() < epsilon:
        return int(rng.integers(len(q_row)))
    best = np.flatnonzero(q_row == q_row.max())
    return int(rng.choice(best))


def epsilon_greedy_probs(q_row: np.ndarray, epsilon: float) -> np.ndarray:
    """The action distribution that `epsilon_greedy` samples from."""
    best = q_row == q_row.max()
    return epsilon / len(q_row) + (1 - epsilon) * best / best.sum()


def linear_schedule(start: float, end: float, duration: int) -> Callable[[int], float]:
    """epsilon(episode): from `start` down to `end` over `duration` episodes, then flat."""
    check_probability("start", start)
    check_probability("end", end)
    check_count("duration", duration)
    return lambda episode: end + (start - end) * max(0.0, 1.0 - episode / duration)


# ---- learning from samples


@dataclass
class TabularResult:
    Q: np.ndarray
    """learned action values, shape (n_states, n_actions)"""
    returns: list[float]
    """undiscounted return of each training episode"""
    lengths: list[int]
    """number of steps of each training episode"""

    @property
    def policy(self) -> np.ndarray:
        return self.Q.argmax(axis=1)


def q_learning_episode(env, Q: np.ndarray, alpha: float, gamma: float, epsilon: float, rng: np.random.Generator):
    """Run one episode of Q-learning, updating Q in place. Returns (undiscounted return, number of steps).

    Acts epsilon-greedily; after each step moves Q(s, a) toward r + gamma * max_a' Q(s', a'),
    and toward r alone when the step ended the episode (nothing follows a terminal state).
    """
    s, _ = env.reset()
    total, steps, done = 0.0, 0, False
    while not done:
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        if terminated:
            target = r
        else:  # a time limit (truncated) is not an end: the future still counts
            target = r + gamma * Q[s_next].max()  # off-policy: the greedy action
        Q[s, a] += alpha * (target - Q[s, a])
        s = s_next
        total += r
        steps += 1
        done = terminated or truncated
    return total, steps


def sarsa_episode(env, Q: np.ndarray, alpha: float, gamma: float, epsilon: float, rng: np.random.Generator):
    """Run one episode of SARSA, updating Q in place. Returns (undiscounted return, number of steps).

    Like `q_learning_episode`, except the target uses the action a' that the agent will really take
    next (chosen epsilon-greedily before the update): r + gamma * Q(s', a').
    """
    s, _ = env.reset()
    a = epsilon_greedy(Q[s], epsilon, rng)
    total, steps, done = 0.0, 0, False
    while not done:
        s_next, r, terminated, truncated, _ = env.step(a)
        a_next = epsilon_greedy(Q[s_next], epsilon, rng)
        if terminated:
            target = r
        else:
            target = r + gamma * Q[s_next, a_next]  # on-policy: the action we will take
        Q[s, a] += alpha * (target - Q[s, a])
        s, a = s_next, a_next
        total += r
        steps += 1
        done = terminated or truncated
    return total, steps


def td_control(env, episode_fn: Callable, episodes: int, alpha: float, gamma: float, epsilon,
               seed: int) -> TabularResult:
    """Learn Q from zeros by calling `episode_fn(env, Q, alpha, gamma, epsilon, rng)` once per episode.

    `epsilon` is a number or a function of the episode index. The environment is seeded once with `seed`;
    each episode gets its own generator, seeded with (seed, episode), so one episode's random draws do not
    shift the next one's.
    """
    check_count("episodes", episodes)
    check_positive("alpha (the learning rate)", alpha)
    gamma = check_gamma(gamma)
    eps_at = epsilon if callable(epsilon) else (lambda _: check_probability("epsilon", epsilon))
    Q = np.zeros((env.n_states, env.n_actions))
    returns, lengths = [], []
    env.reset(seed=seed)
    for episode in range(episodes):
        rng = np.random.default_rng([seed, episode])
        outcome = episode_fn(env, Q, alpha, gamma, eps_at(episode), rng)
        if not (isinstance(outcome, tuple) and len(outcome) == 2):
            raise TypeError(f"an episode function must return (total_reward, steps), got {outcome!r}")
        returns.append(float(outcome[0]))
        lengths.append(int(outcome[1]))
    return TabularResult(Q=Q, returns=returns, lengths=lengths)


def q_learning(env, episodes: int = 500, alpha: float = 0.5, gamma: float = 0.9, epsilon=0.1, seed: int = 0,
               episode_fn: Callable = q_learning_episode) -> TabularResult:
    """Off-policy TD control. `epsilon` is a number or a function of the episode index.

    `episode_fn` runs one episode (signature of `q_learning_episode`); pass your own to train with it.
    """
    return td_control(env, episode_fn, episodes, alpha, gamma, epsilon, seed)


def sarsa(env, episodes: int = 500, alpha: float = 0.5, gamma: float = 0.9, epsilon=0.1, seed: int = 0,
          episode_fn: Callable = sarsa_episode) -> TabularResult:
    """On-policy TD control. `epsilon` is a number or a function of the episode index.

    `episode_fn` runs one episode (signature of `sarsa_episode`); pass your own to train with it.
    """
    return td_control(env, episode_fn, episodes, alpha, gamma, epsilon, seed)


def greedy_path(env, Q: np.ndarray, max_steps: int | None = None) -> list[int]:
    """States visited from the start when always taking argmax Q (slip ignored)."""
    s, path = env.start, [env.start]
    for _ in range(max_steps or env.max_steps):
        if env.is_terminal(s):
            break
        s = env._move(s, int(Q[s].argmax()))
        if s in path:  # a loop: the greedy policy never reaches a terminal state
            path.append(s)
            break
        path.append(s)
    return path
