"""The exercises of notebook 08 (PPO for language models): the references, the test cases, and the checker of the
build-it exercise `ppo_iteration`, which runs the learner's loop and the library's from the same setup."""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from rlhf_lib.rlhf import RLHFConfig


def ref_kl_shaped_rewards(score, logp, logp_ref, mask, beta):
    from rlhf_lib.rlhf import kl_shaped_rewards

    return kl_shaped_rewards(score, logp, logp_ref, mask, beta)


def kl_shaped_rewards_cases(rng):
    cases = []
    for lengths, beta in (([1], 0.0), ([4, 2, 6], 0.2), ([3, 3, 1, 5], 0.05)):
        R = max(lengths)
        mask = torch.tensor([[1.0] * n + [0.0] * (R - n) for n in lengths])  # (B, R)
        logp = torch.tensor(rng.uniform(-4, 0, size=(len(lengths), R)), dtype=torch.float32) * mask
        logp_ref = torch.tensor(rng.uniform(-4, 0, size=(len(lengths), R)), dtype=torch.float32) * mask
        cases.append((torch.tensor(rng.normal(size=len(lengths)), dtype=torch.float32), logp, logp_ref, mask, beta))
    return cases


def ref_adaptive_beta(beta, kl, target, n, horizon):
    from rlhf_lib.rlhf import AdaptiveKLController

    return AdaptiveKLController(beta, target, horizon).update(kl, n)


def ref_ppo_iteration(setup, prompts, beta):
    from rlhf_lib.rlhf import ppo_iteration

    return ppo_iteration(setup, prompts, beta)


PIPELINE = (("batch.response_ids", "rollout"), ("batch.logp", "rollout"), ("score", "score_responses"),
            ("logp_ref", "reference_logprobs"), ("values", "value_estimates"), ("rewards", "kl_shaped_rewards"),
            ("advantages", "advantages_and_returns"), ("returns", "advantages_and_returns"))
"""the tensors of an `Iteration` in the loop's order, each with the piece that computes it"""


def compare_ppo_iteration(fn, cfg: RLHFConfig | None = None, beta: float = 0.2) -> str | None:
    """None if fn(setup, prompts, beta) -> Iteration does what `ppo_iteration` does from the same setup (the
    course model, a reference slightly off it, the shipped reward model, a small batch of reviews of a few
    sentences, with sentence rewards and the implausible-token penalty on): every tensor within 1e-5, the
    update's figures within a relative 1e-4, the weights after it within 1e-3 (Adam turns rounding in near-zero
    gradients into steps of up to the learning rate). Otherwise says what differs first, in the loop's order."""
    from rlhf_lib.lm import COURSE_MODEL, load_model
    from rlhf_lib.reviews import PROMPTS
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.rlhf import Iteration, RLHFConfig, make_setup, ppo_iteration, reward_model_scorer

    cfg = cfg or RLHFConfig(batch_size=8, minibatches=2, epochs=2, max_new_tokens=24, stop_at="text",
                            sentence_rewards=True, implausible_coef=10.0)  # reviews of a few sentences
    score_fn = reward_model_scorer(*load_reward_model(COURSE_MODEL.parent / "reward_model"))
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(cfg.batch_size // cfg.responses_per_prompt)]
    runs = []
    with torch.random.fork_rng(devices=[]):
        for f in (fn, ppo_iteration):  # yours first: an unfinished one stops at once
            policy, tokenizer = load_model()
            reference = load_model()[0]
            with torch.no_grad():  # a reference a little different from the policy, so the KL term is not 0
                reference.transformer.wte.weight.mul_(1.1)
            runs.append((f(make_setup(policy, tokenizer, reference, score_fn, cfg), prompts, beta), policy))
    (got, policy_got), (want, policy_want) = runs
    if not isinstance(got, Iteration):
        return f"return an Iteration(batch, score, logp_ref, values, rewards, advantages, returns, stats), " \
               f"not {type(got).__name__}"
    for name, piece in PIPELINE:
        a, b = (attrgetter(name)(it) for it in (want, got))  # e.g. it.batch.logp
        b = torch.as_tensor(b).float()
        if b.shape != a.shape or not torch.allclose(a.float(), b, atol=1e-5, rtol=0):
            gap = ("shape " + str(tuple(b.shape)) if b.shape != a.shape
                   else f"largest gap {float((a - b).abs().max()):.3g}")
            return f"{name} differs from the library's ({gap}); everything before it agrees: look at `{piece}`"
    for key, value in want.stats.items():
        if key not in got.stats or not np.isclose(got.stats[key], value, rtol=1e-4, atol=1e-7):
            return f"the update's {key} is {got.stats.get(key)}, the library's {value}: look at `ppo_update`"
    with torch.no_grad():
        gap = max(float((p - q).abs().max()) for p, q in zip(policy_want.parameters(), policy_got.parameters()))
    if gap > 1e-3:
        return f"the policy's weights after the update differ by up to {gap:.2e}: was `ppo_update` applied once?"
    return None
