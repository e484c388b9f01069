"""Checkers for the notebooks' exercises, hints, and a way to reveal their solutions.

In a notebook:

    def reward_to_go(rewards, gamma):
        ...                                   # your code
    check("reward_to_go", reward_to_go)       # compares with the library on fixed test cases
    # hint("reward_to_go")                    # one or two nudges about the usual mistakes
    # reveal("reward_to_go")                  # prints a solution (rlhf_lib/solutions.py)

A checker never raises: it prints one verdict (what differs: the case, the entry,
expected and got) and returns a `Verdict`, true when the function is right. An
unfinished exercise does not stop the rest of the notebook.

Build-it exercises are the core of a notebook's training loop (one Q-learning
episode, one REINFORCE update, one PPO update). Their reference IS the library
function with the same signature, so the notebook's real training run can use
the learner's code:

    episode_fn = use_or_library("q_learning_episode", q_learning_episode)
    q_learning(env, episode_fn=episode_fn)    # the learner's code if it passed, else the library's

    checking.py         check, hint, reveal, use_or_library, and the Verdict a check returns
    registry.py         EXERCISES: every exercise's notebook, reference, test cases and hints
    rl_core.py          notebooks 00-03: returns, tabular RL, REINFORCE and PPO updates on tiny networks
    language_models.py  notebooks 04-05: log-probs, KL, labels, the SFT loss and step
    preferences.py      notebooks 06-07: Bradley-Terry, agreement, labelling into a file, the reward-model step
    rlhf_loop.py        notebook 08: KL-shaped rewards, the PPO loss, the adaptive beta, one PPO-RLHF iteration
    beyond_ppo.py       notebooks 09-10: best-of-n, Gao et al.'s fit, the DPO loss, leave-one-out baselines
    rounds.py           notebook 11: the pairs worth a label, old and new labels mixed
    silent_bugs.py      silent-bug exercises (bug_<name>): an update with one planted bug to find and fix

A silent-bug exercise hands the learner a working-looking update that trains badly; its check says only
whether the bug is still there, and `hint` says where to look.
"""

from rlhf_lib.exercises.checking import Verdict, check, hint, reveal, use_or_library
from rlhf_lib.exercises.registry import EXERCISES, Exercise

__all__ = ["EXERCISES", "Exercise", "Verdict", "check", "hint", "reveal", "use_or_library"]
