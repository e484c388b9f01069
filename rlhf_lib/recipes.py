"""Named recipes: the settings the course runs a trainer with on a task, as data, in one place.

A recipe names the fields it changes in a trainer's config and nothing else; every other field keeps the
config's default. Build a config from one with `recipe_config` (or the task's own helpers,
`whole_review_config` and `whole_review_dpo_config` in rlhf_lib/whole_reviews.py). What each recipe achieved,
with the commands that measure it, is in benchmarks/README.md; how it was found, in benchmarks/HISTORY.md.
"""

from __future__ import annotations

RECIPES: dict[str, dict] = {
    # PPO on whole reviews, plain: responses to end-of-text (at most 64 tokens), PPO-ptx on, and a 2-nat KL
    # target that the adaptive coefficient holds (a horizon of 256 responses lets beta move 5% an iteration).
    # RLOO and GRPO use it too: they have no critic to take a reward for each sentence.
    "whole-review-plain": dict(stop_at="text", max_new_tokens=64, ptx_coef=1.0, kl_coef=0.3, target_kl=2.0,
                               kl_horizon=256),
    # PPO on whole reviews, the course's recipe: the plain setting plus a reward paid as each sentence ends, a
    # log-sigmoid reward, a KL target of 2.5 nats rising over 65 of 85 iterations under a 3-nat budget, a value
    # head that learns 30 times faster (no value clipping), and a penalty on the tokens the reference finds
    # implausible. Trained on starts weighted 1:1:4 (whole_reviews.WHOLE_REVIEW_START_WEIGHTS).
    "whole-review": dict(stop_at="text", max_new_tokens=64, ptx_coef=1.0, kl_coef=0.3, target_kl=2.5,
                         kl_horizon=128, iterations=85, kl_budget=3.0, kl_warmup=65, reward_transform="logsigmoid",
                         sentence_rewards=True, value_lr_scale=30.0, value_clip_eps=None, implausible_coef=10.0),
    # DPO on pairs of whole reviews: end-of-text after every completion (a whole review ends there), a larger
    # step, and the chosen reviews' likelihood kept up (RPO's NLL term).
    "whole-review-dpo": dict(add_eos=True, lr=3e-4, nll_coef=1.0),
}
"""recipe name -> the config fields it sets"""

TRAINERS = {"whole-review-plain": "RLHFConfig", "whole-review": "RLHFConfig", "whole-review-dpo": "DPOConfig"}
"""recipe name -> the config class it fills"""


def recipe(name: str) -> dict:
    """A copy of the fields recipe `name` sets (a KeyError lists the recipes there are)."""
    if name not in RECIPES:
        raise KeyError(f"no recipe {name!r}; there are {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[name])


def recipe_config(name: str, **changes):
    """The config of recipe `name` (`RLHFConfig` or `DPOConfig`), with `changes` over any field."""
    fields = recipe(name)
    if TRAINERS[name] == "DPOConfig":
        from rlhf_lib.dpo import DPOConfig as config
    else:
        from rlhf_lib.rlhf import RLHFConfig as config
    return config(**{**fields, **changes})
