"""RLOO and GRPO: PPO's loop (rlhf.py) without the critic.

Both sample k responses per prompt and let the group be the baseline (`group_advantages.py`), so there is
no value head to train and no GAE. One iteration, made of the same named pieces as PPO's:

    rollout (k responses a prompt) -> score -> reference log-probs
      -> [RLOO: KL in the reward, k1]  -> group advantages, one per response
      -> update: epochs x minibatches of the clipped surrogate, every token of a response sharing its
         advantage, aggregated per sequence / per token / by a constant [GRPO: + beta * k3 KL per token]

`critic_free_iteration(CriticFreeConfig(...))` returns a function with `ppo_iteration`'s signature, so the
one training loop `train_rlhf` (checkpoints, resume, the adaptive KL coefficient, the figures) runs all three:

    train_rlhf(policy, tok, rm, rm_tok, reference, RLHFConfig(responses_per_prompt=4, ...),
               iteration_fn=critic_free_iteration(CriticFreeConfig("rloo")))

The value head of `PolicyWithValue` is left untouched (it gets no gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf_lib.group_advantages import (
    AGGREGATIONS,
    SCALES,
    aggregate,
    grpo_advantages,
    grpo_token_loss,
    kl_in_reward,
    rloo_advantages,
)
from rlhf_lib.rlhf import (
    Iteration,
    RLHFSetup,
    Rollout,
    kl_shaped_rewards,
    minibatch_updates,
    reference_logprobs,
    rollout,
    score_responses,
)

METHODS = ("rloo", "grpo")
KL_PLACES = ("reward", "loss")


@dataclass
class CriticFreeConfig:
    method: str = "rloo"
    """"rloo" (leave-one-out baseline) or "grpo" (group mean, divided by the group's std unless scale="none")"""
    scale: str = "group"
    """GRPO only: "group" divides by the group's std, "none" does not (Dr. GRPO)"""
    aggregation: str = "sequence"
    """how token losses become one number: "sequence", "token" or "constant" (`group_advantages.aggregate`)"""
    kl: str | None = None
    """where beta * KL goes: "reward" (k1 summed over the response, RLOO) or "loss" (k3 per token, GRPO);
    None: the method's own ("reward" for RLOO, "loss" for GRPO)"""

    def __post_init__(self):
        for name, value, allowed in (("method", self.method, METHODS), ("scale", self.scale, SCALES),
                                     ("aggregation", self.aggregation, AGGREGATIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.kl is None:
            self.kl = "reward" if self.method == "rloo" else "loss"
        if self.kl not in KL_PLACES:
            raise ValueError(f"kl must be one of {KL_PLACES} or None, got {self.kl!r}")


def sequence_advantages(rewards: torch.Tensor, k: int, ccfg: CriticFreeConfig) -> torch.Tensor:
    """(B,) one advantage per response from its group of k (rows of a group next to each other)."""
    if ccfg.method == "rloo":
        return rloo_advantages(rewards, k)
    return grpo_advantages(rewards, k, scale=ccfg.scale)


def group_update(setup: RLHFSetup, batch: Rollout, advantages: torch.Tensor, logp_ref: torch.Tensor, beta: float,
                 ccfg: CriticFreeConfig, logits_ref: torch.Tensor | None = None) -> dict:
    """The critic-free update, on PPO's minibatch loop (`rlhf.minibatch_updates`): the clipped surrogate with
    one advantage (B,) per response, + beta * k3 KL to the reference (B, R) per token when ccfg.kl == "loss",
    aggregated as ccfg.aggregation (+ the anchors of `anchor_losses`, reading the rollout's reference logits
    when given). Returns the update's mean figures, as `ppo_update` (value_loss 0: no critic)."""
    cfg, device = setup.cfg, setup.device
    adv, ref = advantages.to(device), logp_ref.to(device)
    kl_beta = beta if ccfg.kl == "loss" else 0.0

    def loss(idx, logp, logp_old, values, m):
        per_token = grpo_token_loss(logp, logp_old, adv[idx], cfg.clip_eps, ref[idx], kl_beta)  # (b, R)
        total = aggregate(per_token, m, ccfg.aggregation, max_length=cfg.max_new_tokens)
        return total, {"policy_loss": total}

    return {**minibatch_updates(setup, batch, loss, logits_ref), "value_loss": 0.0}


def critic_free_iteration(ccfg: CriticFreeConfig | None = None, advantage_fn=None):
    """An iteration function for `train_rlhf(iteration_fn=...)`: one rollout of k responses per prompt and
    the critic-free update on it. Needs RLHFConfig.responses_per_prompt >= 2 (RLOO cannot work without).
    advantage_fn(rewards (B,), k) -> (B,) replaces the method's advantages (notebook 10's own RLOO)."""
    ccfg = ccfg or CriticFreeConfig()

    def iteration(setup: RLHFSetup, prompts: list[str], beta: float) -> Iteration:
        cfg = setup.cfg
        k = cfg.responses_per_prompt
        if k < 2:
            raise ValueError(f"{ccfg.method.upper()} compares the responses to one prompt: set "
                             f"RLHFConfig.responses_per_prompt to 2 or more (got {k})")
        if cfg.sentence_rewards:
            raise ValueError(f"{ccfg.method.upper()} credits a whole response with one advantage: "
                             "RLHFConfig.sentence_rewards is for PPO's per-token credit; set it to False")
        batch = rollout(setup.model.lm, setup.tokenizer, prompts, cfg, setup.sampler)
        score = score_responses(setup.score_fn, batch, cfg.unfinished_penalty)  # (B,)
        logp_ref, logits_ref = reference_logprobs(setup.reference, batch, cfg.temperature, keep_logits=True)
        logits_ref = logits_ref if cfg.reads_reference_logits else None  # kept for the anchors: one pass a rollout
        reward = score
        if ccfg.kl == "reward":
            reward, _ = kl_in_reward(score, batch.logp, logp_ref, batch.mask, beta)
        advantages = (advantage_fn or (lambda r, k: sequence_advantages(r, k, ccfg)))(reward, k)  # (B,)
        advantages = torch.as_tensor(advantages, dtype=torch.float32)
        stats = group_update(setup, batch, advantages, logp_ref, beta, ccfg, logits_ref)
        zeros = torch.zeros_like(batch.mask)  # no critic: no values, no value targets
        shaped = kl_shaped_rewards(score, batch.logp, logp_ref, batch.mask, beta if ccfg.kl == "reward" else 0.0)
        return Iteration(batch, score, logp_ref, zeros, shaped, advantages[:, None] * batch.mask, zeros, stats)

    iteration.__name__ = f"{ccfg.method}_iteration"
    return iteration
