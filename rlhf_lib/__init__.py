"""rlhf_lib: the small library behind the course notebooks.

One module a topic, readable top to bottom. The RL core (notebooks 01-03):

    envs.py             gridworld (walls, goal, pit or cliff, slip) and bandits
    tabular.py          value iteration, Q-learning, SARSA, epsilon-greedy and schedules
    policy_gradient.py  REINFORCE on a bandit (with the exact gradient) and on CartPole
    ppo.py              GAE, returns, the clipped losses: the math CartPole and LM PPO share
    cartpole.py         PPO on CartPole: rollout, advantages, update

Language models (notebook 04 on):

    reviews.py          the review language: a seeded generator, an exact grammar check, the course prompts
    pretrain.py         the course's small GPT-2 and its tokenizer, trained from scratch on reviews
    lm.py               load a causal LM, sample, log-probs, the exact per-step KL and the KL estimators
    evaluate.py         gold: VADER, the grammar, the reading taste; grammatical and positive rates
    ratings.py          without gold: win rates, Bradley-Terry ratings with bootstrap intervals, Elo

Feedback and its stores (notebook 06):

    feedback.py         simulated people who read (Bradley-Terry), a scoring function as a judge, pairs
    records.py          preference and rating records, kept in a JSONL file no interruption corrupts
    judge.py            a judge that is a language model: critiques, verdicts, its biases measured
    widgets.py          the labeling widget: every click saved at once, undo, resume
    tastes.py           your own taste: an annotator for any function of the text
    classroom/          a class labels together: a SQLite store, a web app, the teacher's report, a client

Reward models (notebooks 07, 09):

    reward_model.py     a language model with a scalar head, trained on preferences with Bradley-Terry
    bon.py              best-of-n: the estimator from one pool, its KL, Gao et al.'s fits
    goodhart.py         over-optimisation measured: the proxy reward against the gold one
    interpret.py        inside a reward model: word attributions against VADER's lexicon, layer probes
    rlaif.py            RLAIF at equal cost: a label budget spent on a reward model or on a judge (notebook 12)

The trainers (notebooks 05, 08, 10):

    sft.py              demonstrations and supervised fine-tuning on the completion only
    rlhf.py             PPO for language models as named pieces; train_rlhf is the loop of them
    checkpoint.py       checkpoints of a PPO run that a crash cannot corrupt, checked on resume
    group_advantages.py RLOO and GRPO advantages, loss aggregations, the two KL placements
    critic_free.py      RLOO and GRPO as one iteration of the PPO loop, without a value head
    dpo.py              DPO, IPO and robust DPO: preferences without a reward model or sampling
    whole_reviews.py    the whole-review task: starts, pairs, its reward model, evaluation from both starts
    recipes.py          named recipes as data: the settings a trainer runs with on a task
    pipeline.py         each command's work as a function: labels, reward model, PPO, the resumable pipeline
    loop.py             RLHF in rounds: fresh labels on the policy's own reviews, the reward model trained on
    threads.py          a fair share of the cores for torch, re-checked while training
    files.py            whole files written atomically (temporary file, fsync, rename, fsync of the folder)

The course's notebook glue:

    runtime.py          set_seed, the fast setting for tests (is_fast, pick), input checks, the environment report
    plotting.py         the course's plots
    exercises/          checkers by topic, hints, revealable solutions, use_or_library
    solutions.py        the exercises' solutions, written the plain way (reveal("name") prints one)
    answers.py          model answers to the discussion questions: answer("3.1")
    __main__.py         the command line: python -m rlhf_lib

Importing the package stays light (no torch): the names below are the ones every notebook uses.
"""

from rlhf_lib.answers import answer
from rlhf_lib.runtime import is_fast, pick, set_seed

__all__ = ["set_seed", "is_fast", "pick", "answer"]
__version__ = "0.1.0"
