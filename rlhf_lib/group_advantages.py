"""Critic-free advantages: compare each response with the other responses to the same prompt.

PPO (rlhf.py) learns a value head to say how good a state is. RLOO and GRPO drop it: they sample
k responses per prompt and use the group itself as the baseline. Rewards come laid out as groups
of k consecutive responses per prompt: [p0 r0, p0 r1, ..., p0 r(k-1), p1 r0, ...], shape (N,) = (G * k,).

    RLOO   A_i = r_i - mean_{j != i} r_j                 (leave-one-out: unbiased, since r_i is not in it)
    GRPO   A_i = (r_i - mean_j r_j) / (std_j r_j + eps)  (scale="group"; std with Bessel's correction, as TRL)
    Dr. GRPO   A_i = r_i - mean_j r_j                    (scale="none": no division, so no bias toward
                                                          prompts whose rewards barely differ)

A group where every reward is equal teaches nothing: its advantages are exactly 0.

Token-level losses (B, T) become one number in one of three ways:

    "sequence"  mean over each sequence's tokens, then over sequences (GRPO): a long response's
                tokens count less each
    "token"     sum over all tokens / number of tokens in the batch (DAPO, TRL's "bnpo")
    "constant"  sum over all tokens / (B * a constant max length) (Dr. GRPO): no length bias at all

And the KL to the reference goes in one of two places:

    GRPO: into the loss, per token, with the k3 estimator  exp(logp_ref - logp) - (logp_ref - logp) - 1
    RLOO: into the reward, per sequence, with k1:  r - beta * sum_t (logp_t - logp_ref_t)
"""

from __future__ import annotations

import torch

from rlhf_lib.runtime import check_count, check_positive

SCALES = ("group", "none")
AGGREGATIONS = ("sequence", "token", "constant")


def _groups(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) -> (G, k), with clear errors."""
    check_count("k (responses per prompt)", k)
    rewards = torch.as_tensor(rewards)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be one number per response, shape (N,), got {tuple(rewards.shape)}")
    if len(rewards) % k:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of k={k} responses per prompt")
    return rewards.float().view(-1, k)


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) leave-one-out advantages r_i - (sum of the group's other rewards) / (k - 1). Needs k >= 2."""
    if k < 2:
        raise ValueError(f"RLOO needs k >= 2 responses per prompt (one to score, others for the baseline), got {k!r}")
    r = _groups(rewards, k)  # (G, k)
    baseline = (r.sum(-1, keepdim=True) - r) / (k - 1)  # (G, k) mean of the other k - 1
    return (r - baseline).reshape(-1)


def grpo_advantages(rewards: torch.Tensor, k: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """(N,) group-relative advantages: r_i minus the group mean, divided by (group std + eps) when
    scale="group" (GRPO), not divided when scale="none" (Dr. GRPO). With k = 1 every advantage is 0."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    check_positive("eps", eps)
    r = _groups(rewards, k)  # (G, k)
    centred = r - r.mean(-1, keepdim=True)
    if scale == "group" and k > 1:
        centred = centred / (r.std(-1, keepdim=True) + eps)  # unbiased std; 0 for an all-equal group
    return centred.reshape(-1)


def aggregate(per_token_loss: torch.Tensor, mask: torch.Tensor, how: str = "sequence",
              max_length: int | None = None) -> torch.Tensor:
    """One number from a (B, T) loss over the real tokens (mask 1): see the module docstring.
    "constant" divides by B * max_length (the longest response allowed, a constant, not this batch's)."""
    if how not in AGGREGATIONS:
        raise ValueError(f"how must be one of {AGGREGATIONS}, got {how!r}")
    mask = mask.to(per_token_loss.dtype)
    masked = per_token_loss * mask  # (B, T)
    if how == "sequence":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    if how == "token":
        return masked.sum() / mask.sum().clamp(min=1)
    if max_length is None:
        raise ValueError('how="constant" needs max_length (the longest response allowed)')
    check_count("max_length", max_length)
    return masked.sum() / (per_token_loss.shape[0] * max_length)


def k3_kl(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) from tokens sampled from pi, (B, T): never negative. GRPO adds
    beta times it to the per-token loss, where its expected gradient is that of the other KL, KL(pi_ref || pi)
    (notebook 04): it pulls logp toward logp_ref, not along the objective's gradient."""
    log_r = logp_ref - logp
    return torch.expm1(log_r) - log_r


def kl_in_reward(rewards: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor,
                 beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RLOO's placement: (N,) rewards - beta * (sequence k1 KL), and that KL (N,). logp are the sampling
    policy's log-probs (B, T); nothing here carries a gradient."""
    check_positive("beta", beta, allow_zero=True)
    kl = ((logp - logp_ref) * mask).sum(-1).detach()  # (N,) k1 summed over the response
    return rewards - beta * kl, kl


def grpo_token_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, clip_eps: float = 0.2,
                    logp_ref: torch.Tensor | None = None, beta: float = 0.0) -> torch.Tensor:
    """(B, T) per-token GRPO loss: the clipped surrogate -min(ratio A, clip(ratio, 1 - eps, 1 + eps) A) with one
    advantage per sequence (B,), plus beta * k3 KL to the reference where logp_ref is given."""
    check_positive("clip_eps", clip_eps)
    ratio = torch.exp(logp - logp_old)  # (B, T)
    a = advantages[:, None]  # (B, 1): every token of a response shares its advantage
    loss = -torch.min(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    if beta:
        if logp_ref is None:
            raise ValueError("beta > 0 needs logp_ref, the reference model's log-probs")
        loss = loss + beta * k3_kl(logp, logp_ref)
    return loss
