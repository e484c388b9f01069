"""rlhf_lib: the small library behind the course notebooks.

One module a topic, readable top to bottom:

    runtime.py          set_seed, the fast setting for tests, input checks
    envs.py             gridworld and bandits (CartPole comes from gymnasium)
    tabular.py          value iteration, Q-learning, SARSA, epsilon-greedy
    policy_gradient.py  REINFORCE on a bandit and on CartPole
    ppo.py              GAE, returns, the clipped losses: the math CartPole and LM PPO share
    cartpole.py         PPO on CartPole: rollout, advantages, update
    plotting.py         the course's plots
    exercises.py        checkers and revealable solutions for the notebooks
"""

from rlhf_lib.runtime import set_seed, is_fast, pick

__all__ = ["set_seed", "is_fast", "pick"]
__version__ = "0.1.0"
