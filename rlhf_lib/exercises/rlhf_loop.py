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
        # the padding holds log-probs too (as a batch's may), so a reward that ignores the mask shows
        logp = torch.tensor(rng.uniform(-4, 0, size=(len(lengths), R)), dtype=torch.float32)
        logp_ref = torch.tensor(rng.uniform(-4, 0, size=(len(lengths), R)), dtype=torch.float32)
        cases.append((torch.tensor(rng.normal(size=len(lengths)), dtype=torch.float32), logp, logp_ref, mask, beta))
    return cases


def ref_ppo_loss(logp, logp_old, advantages, values, values_old, returns, mask, clip_eps, vf_coef, value_clip_eps):
    from rlhf_lib.rlhf import ppo_loss

    return ppo_loss(logp, logp_old, advantages, values, values_old, returns, mask, clip_eps, vf_coef, value_clip_eps)


def ppo_loss_cases(rng):
    """Right-padded minibatches of (b, R) tensors, with ratios far enough from 1 that the clip binds on both
    sides, values far enough from values_old that the value clip binds, and each setting of the clips."""
    cases = []
    for lengths, clip_eps, vf_coef, value_clip_eps in (([3], 0.2, 0.1, None), ([5, 2, 4], 0.2, 0.1, 0.2),
                                                       ([1, 6, 6, 3], 0.1, 0.5, 0.05), ([2, 7], 0.3, 1.0, None)):
        R = max(lengths)
        mask = torch.tensor([[1.0] * n + [0.0] * (R - n) for n in lengths])  # (b, R)

        def noise(scale, centre=0.0, mask=mask):  # real entries drawn, the padding at a value that would matter
            x = torch.tensor(rng.normal(centre, scale, size=tuple(mask.shape)), dtype=torch.float64)
            return torch.where(mask.bool(), x, torch.full_like(x, 5.0))

        logp_old = noise(1.0, -2.0)
        logp = logp_old + noise(0.3)  # ratios from about 0.5 to 2
        values_old = noise(1.0)
        cases.append((logp, logp_old, noise(1.0), values_old + noise(0.3), values_old, noise(1.0), mask, clip_eps,
                      vf_coef, value_clip_eps))
    return cases


def run_ppo_loss(fn, logp, logp_old, advantages, values, values_old, returns, mask, clip_eps, vf_coef,
                 value_clip_eps):
    """The three losses and the gradient of the total with respect to logp and the values: training needs both
    (a loss computed from detached tensors has the right value and teaches nothing)."""
    logp, values = (t.clone().requires_grad_(True) for t in (logp, values))
    out = fn(logp, logp_old, advantages, values, values_old, returns, mask, clip_eps, vf_coef, value_clip_eps)
    if not (isinstance(out, tuple) and len(out) == 3):
        raise TypeError("return a tuple (loss, policy_loss, value_loss) of three scalar tensors")
    loss, policy_loss, v_loss = out
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise TypeError("return torch tensors computed from the inputs (no .item(), no numpy, no .detach()): "
                        "training needs the gradient of the loss")
    loss.backward()
    grad_logp = torch.zeros_like(logp) if logp.grad is None else logp.grad
    grad_values = torch.zeros_like(values) if values.grad is None else values.grad
    return dict(loss=float(loss.detach()), policy_loss=float(policy_loss.detach()), value_loss=float(v_loss.detach()),
                grad_logp=grad_logp.numpy(), grad_values=grad_values.numpy())


def ref_reference_logprobs(reference, batch, temperature):
    from rlhf_lib.rlhf import reference_logprobs

    return reference_logprobs(reference, batch, temperature)


def reference_logprobs_cases(rng):
    return [dict(seed=0, n=4, temperature=1.0), dict(seed=1, n=6, temperature=0.7)]


def run_reference_logprobs(fn, seed, n, temperature):
    """fn(reference, batch, temperature) on a rollout of the course model (prompts of different lengths, so the
    prompts are left-padded and the responses right-padded): the (B, R) log-probs it reads."""
    from rlhf_lib.lm import load_model
    from rlhf_lib.rlhf import RLHFConfig, rollout

    model, tokenizer = load_model()
    batch = rollout(model, tokenizer, (["The plot was", "", "Overall, the film"] * n)[:n],
                    RLHFConfig(temperature=temperature, seed=seed), torch.Generator().manual_seed(seed))
    return fn(model, batch, temperature)


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


def compare_ppo_iteration(fn, cfg: RLHFConfig | None = None, beta: float = 0.35) -> str | None:
    """None if fn(setup, prompts, beta) -> Iteration does what `ppo_iteration` does from the same setup (the
    course model, a reference slightly off it, the shipped reward model, a small batch of reviews of a few
    sentences; beta 0.35, not the config's kl_coef, so a loop that reads cfg.kl_coef shows): every tensor within
    1e-5, the update's figures within a relative 1e-4, the weights after it within 1e-3 (Adam turns rounding in
    near-zero gradients into steps of up to the learning rate). Otherwise says what differs first, in the loop's
    order."""
    from rlhf_lib.lm import COURSE_MODEL, load_model
    from rlhf_lib.reviews import PROMPTS
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.rlhf import Iteration, RLHFConfig, make_setup, ppo_iteration, reward_model_scorer

    cfg = cfg or RLHFConfig(batch_size=8, minibatches=2, epochs=2, max_new_tokens=24,
                            stop_at="text")  # reviews of a few sentences
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
            return (f"the update's {key} is {got.stats.get(key)}, the library's {value}: look at `ppo_update` "
                    f"and the loss it was given")
    with torch.no_grad():
        gap = max(float((p - q).abs().max()) for p, q in zip(policy_want.parameters(), policy_got.parameters()))
    if gap > 1e-3:
        return f"the policy's weights after the update differ by up to {gap:.2e}: was `ppo_update` applied once?"
    return None
