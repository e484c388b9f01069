"""The PPO math, shared by PPO on CartPole (`rlhf_lib/cartpole.py`, notebook 03) and PPO on a language
model (`rlhf_lib/rlhf.py`, notebook 08).

Every function takes tensors whose LAST axis is time: (T,) for one episode,
(N, T) for N environments or N sampled responses. `dones[..., t]` is True when
an episode ends with step t, so nothing after it is bootstrapped into step t.
Optional `mask`s mark the real steps (1) among padding (0).

    returns      G_t = r_t + gamma * G_{t+1}
    TD error     delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)
    GAE          A_t = delta_t + gamma * lam * A_{t+1}
    ratio        rho_t = pi(a_t | s_t) / pi_old(a_t | s_t) = exp(logp - logp_old)
    surrogate    L = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)]
"""

from __future__ import annotations

import torch

from rlhf_lib.runtime import check_probability

# ---- returns and advantages


def discounted_returns(rewards, dones, gamma: float, last_value=None):
    """G_t = r_t + gamma * G_{t+1}, restarting after every done; bootstraps from `last_value`.

    rewards, dones: (..., T).  last_value: (...,) value of the state after the last step (0 if None).
    """
    check_probability("gamma", gamma)
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    not_done = 1.0 - torch.as_tensor(dones, dtype=torch.float32)
    running = (torch.zeros(rewards.shape[:-1]) if last_value is None
               else torch.as_tensor(last_value, dtype=torch.float32))
    returns = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[-1])):
        running = rewards[..., t] + gamma * not_done[..., t] * running
        returns[..., t] = running
    return returns


def gae(rewards, values, dones, gamma: float = 0.99, lam: float = 0.95, last_value=None):
    """Generalized advantage estimation. Returns (advantages, returns), both (..., T).

    rewards, values, dones: (..., T).  last_value: (...,) V of the state after step T-1 (0 if None).
    returns = advantages + values: the targets of the value loss.
    """
    check_probability("gamma", gamma)
    check_probability("lam", lam)
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    values = torch.as_tensor(values, dtype=torch.float32)
    not_done = 1.0 - torch.as_tensor(dones, dtype=torch.float32)
    next_value = (torch.zeros(rewards.shape[:-1]) if last_value is None
                  else torch.as_tensor(last_value, dtype=torch.float32))
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[:-1])
    for t in reversed(range(rewards.shape[-1])):
        delta = rewards[..., t] + gamma * not_done[..., t] * next_value - values[..., t]  # TD error
        running = delta + gamma * lam * not_done[..., t] * running
        advantages[..., t] = running
        next_value = values[..., t]
    return advantages, advantages + values


# ---- masked statistics


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries, var the population variance (divided by the count,
    not the count - 1 as torch's .std() does); with shift_mean=False the mean is kept."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    return out if shift_mean else out + mean


# ---- the losses


def clipped_surrogate(logp, logp_old, advantages, clip_eps: float = 0.2, mask=None) -> torch.Tensor:
    """PPO's policy loss: -mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))."""
    ratio = torch.exp(logp - logp_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -masked_mean(torch.minimum(unclipped, clipped), mask)


def value_loss(values, returns, values_old=None, clip_eps: float | None = None, mask=None) -> torch.Tensor:
    """0.5 * mean((V - R)^2), R the returns the critic is fitted to; with clip_eps, the larger of that and the loss of
    V clipped near values_old."""
    loss = (values - returns) ** 2
    if clip_eps is not None:
        if values_old is None:
            raise ValueError("value clipping needs values_old, the values at rollout time")
        values_clipped = values_old + torch.clamp(values - values_old, -clip_eps, clip_eps)
        loss = torch.maximum(loss, (values_clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution over the last axis: (..., A) -> (...)."""
    logp = logits.log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


def approx_kl(logp, logp_old, mask=None) -> torch.Tensor:
    """k3 estimate of KL(pi_old || pi) from samples of pi_old: mean((r - 1) - log r), r = pi / pi_old."""
    log_ratio = logp - logp_old
    return masked_mean(torch.expm1(log_ratio) - log_ratio, mask)


def clip_fraction(logp, logp_old, clip_eps: float = 0.2, mask=None) -> torch.Tensor:
    """Share of samples whose ratio lies outside [1 - eps, 1 + eps]."""
    ratio = torch.exp(logp - logp_old)
    return masked_mean(((ratio - 1.0).abs() > clip_eps).float(), mask)


def explained_variance(values, returns, mask=None) -> float:
    """1 - Var(R - V) / Var(R), R the returns the values are fitted to: 1 is a perfect critic, 0 no better than
    a constant."""
    var_g = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    err = returns - values
    var_e = masked_mean((err - masked_mean(err, mask)) ** 2, mask)
    return float(1.0 - var_e / var_g) if var_g > 0 else float("nan")
