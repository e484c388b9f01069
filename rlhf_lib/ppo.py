"""The PPO core, shared by PPO on CartPole (notebook 03) and PPO on a language model.

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

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from rlhf_lib.runtime import check_count, check_positive, check_probability

# ---- returns and advantages


def discounted_returns(rewards, dones, gamma: float, last_value=None):
    """G_t = r_t + gamma * G_{t+1}, restarting after every done; bootstraps from `last_value`.

    rewards, dones: (..., T).  last_value: (...,) value of the state after the last step (0 if None).
    """
    check_probability("gamma", gamma)
    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    not_done = 1.0 - torch.as_tensor(dones, dtype=torch.float32)
    running = torch.zeros(rewards.shape[:-1]) if last_value is None else torch.as_tensor(last_value, dtype=torch.float32)
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
    next_value = torch.zeros(rewards.shape[:-1]) if last_value is None else torch.as_tensor(last_value, dtype=torch.float32)
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


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries; with shift_mean=False the mean is kept."""
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
    """0.5 * mean((V - G)^2); with clip_eps, the larger of that and the loss of V clipped near values_old."""
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
    """1 - Var(G - V) / Var(G): 1 is a perfect critic, 0 no better than a constant."""
    var_g = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    err = returns - values
    var_e = masked_mean((err - masked_mean(err, mask)) ** 2, mask)
    return float(1.0 - var_e / var_g) if var_g > 0 else float("nan")


# ---- PPO on CartPole


@dataclass
class PPOConfig:
    total_steps: int = 100_000
    """environment steps to train for (all environments together)"""
    n_envs: int = 4
    """CartPole copies stepped side by side"""
    n_steps: int = 256
    """steps per environment in one rollout"""
    epochs: int = 10
    """passes over each rollout"""
    minibatches: int = 4
    """minibatches per pass"""
    lr: float = 2.5e-3
    """Adam learning rate, annealed linearly to 0"""
    gamma: float = 0.99
    """discount factor"""
    lam: float = 0.95
    """GAE lambda"""
    clip_eps: float = 0.2
    """clip range of the policy ratio"""
    value_clip_eps: float | None = None
    """clip range of the value update (None: no value clipping)"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    ent_coef: float = 0.0
    """weight of the entropy bonus"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    hidden: int = 64
    """width of the two hidden layers"""
    seed: int = 0
    """seeds the networks and the environments"""
    stop_at_return: float | None = None
    """stop early once the mean of the last 20 episode returns reaches this"""

    def __post_init__(self):
        check_count("total_steps", self.total_steps)
        check_count("n_envs", self.n_envs)
        check_count("n_steps", self.n_steps)
        check_count("epochs", self.epochs)
        check_count("minibatches", self.minibatches)
        check_positive("lr (the learning rate)", self.lr)
        check_probability("gamma", self.gamma)
        check_probability("lam", self.lam)
        check_positive("clip_eps", self.clip_eps)


@dataclass
class TrainingLog:
    """What a CartPole training run returns: one entry per finished episode, plus per-update stats."""

    episode_returns: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    """environment step count at which each episode ended"""
    episode_end_times: list[float] = field(default_factory=list)
    """seconds since the start of training at which each episode ended"""
    updates: list[dict] = field(default_factory=list)
    wall_time: float = 0.0
    policy: nn.Module | None = None

    def mean_recent_return(self, n: int = 20) -> float:
        return float(np.mean(self.episode_returns[-n:])) if self.episode_returns else 0.0

    def first_episode_reaching(self, threshold: float, window: int = 20) -> int | None:
        """Index of the first episode at which the mean of the last `window` returns reached threshold."""
        r = np.asarray(self.episode_returns)
        for i in range(window - 1, len(r)):
            if r[i - window + 1 : i + 1].mean() >= threshold:
                return i
        return None

    def steps_to_reach(self, threshold: float, window: int = 20) -> int | None:
        """Environment steps until the mean of the last `window` episode returns reached threshold."""
        i = self.first_episode_reaching(threshold, window)
        return None if i is None else self.episode_end_steps[i]

    def seconds_to_reach(self, threshold: float, window: int = 20) -> float | None:
        """Wall-clock seconds of training until the same moment."""
        i = self.first_episode_reaching(threshold, window)
        return None if i is None else self.episode_end_times[i]


def mlp(n_in: int, n_out: int, hidden: int, out_std: float) -> nn.Sequential:
    """Two tanh hidden layers, orthogonal init; a small `out_std` starts a policy near uniform."""
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, n_out))
    for layer, std in zip(net[::2], (np.sqrt(2), np.sqrt(2), out_std)):
        nn.init.orthogonal_(layer.weight, std)
        nn.init.zeros_(layer.bias)
    return net


def make_envs(n: int, seed: int):
    import gymnasium as gym

    envs = [gym.make("CartPole-v1") for _ in range(n)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    return envs, obs


def train_ppo_cartpole(config: PPOConfig | None = None, progress: bool = True) -> TrainingLog:
    """Train an actor and a critic on CartPole-v1 with PPO; returns the TrainingLog."""
    from tqdm.auto import tqdm

    cfg = config or PPOConfig()
    torch.manual_seed(cfg.seed)
    actor, critic = mlp(4, 2, cfg.hidden, 0.01), mlp(4, 1, cfg.hidden, 1.0)
    params = list(actor.parameters()) + list(critic.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)
    envs, obs = make_envs(cfg.n_envs, cfg.seed)
    N, T = cfg.n_envs, cfg.n_steps
    n_updates = max(1, cfg.total_steps // (N * T))
    log, ep_return, step = TrainingLog(), np.zeros(N), 0
    start = time.perf_counter()
    bar = tqdm(range(n_updates), desc="PPO", disable=not progress)
    for update in bar:
        for group in opt.param_groups:  # anneal the learning rate to 0
            group["lr"] = cfg.lr * (1.0 - update / n_updates)
        # -- rollout: T steps in each of N environments, stored as (N, T)
        b_obs, b_act, b_logp = torch.zeros(N, T, 4), torch.zeros(N, T, dtype=torch.long), torch.zeros(N, T)
        b_rew, b_done, b_val = torch.zeros(N, T), torch.zeros(N, T), torch.zeros(N, T)
        for t in range(T):
            o = torch.as_tensor(obs, dtype=torch.float32)
            with torch.no_grad():
                logits, value = actor(o), critic(o).squeeze(-1)
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()
            b_obs[:, t], b_act[:, t], b_logp[:, t], b_val[:, t] = o, action, dist.log_prob(action), value
            for i, env in enumerate(envs):
                obs[i], r, terminated, truncated, _ = env.step(int(action[i]))
                ep_return[i] += r
                if truncated and not terminated:  # a time limit is not a real end: bootstrap from V(s')
                    with torch.no_grad():
                        r += cfg.gamma * float(critic(torch.as_tensor(obs[i], dtype=torch.float32)))
                b_rew[i, t], b_done[i, t] = r, float(terminated or truncated)
                if terminated or truncated:
                    log.episode_returns.append(float(ep_return[i]))
                    log.episode_end_steps.append(step + (t + 1) * N)
                    log.episode_end_times.append(time.perf_counter() - start)
                    ep_return[i] = 0.0
                    obs[i], _ = env.reset()
        step += N * T
        with torch.no_grad():
            last_value = critic(torch.as_tensor(obs, dtype=torch.float32)).squeeze(-1)
        advantages, returns = gae(b_rew, b_val, b_done, cfg.gamma, cfg.lam, last_value)
        # -- update: several epochs of minibatches over the flattened rollout
        flat = lambda x: x.reshape(N * T, *x.shape[2:])
        f_obs, f_act, f_logp, f_adv, f_ret, f_val = map(flat, (b_obs, b_act, b_logp, advantages, returns, b_val))
        stats = []
        for _ in range(cfg.epochs):
            for idx in torch.randperm(N * T).chunk(cfg.minibatches):
                logits = actor(f_obs[idx])
                logp = logits.log_softmax(-1).gather(-1, f_act[idx, None]).squeeze(-1)
                adv = whiten(f_adv[idx])
                pg_loss = clipped_surrogate(logp, f_logp[idx], adv, cfg.clip_eps)
                v_loss = value_loss(critic(f_obs[idx]).squeeze(-1), f_ret[idx], f_val[idx], cfg.value_clip_eps)
                entropy = entropy_from_logits(logits).mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                with torch.no_grad():
                    stats.append([float(pg_loss), float(v_loss), float(entropy),
                                  float(approx_kl(logp, f_logp[idx])), float(clip_fraction(logp, f_logp[idx], cfg.clip_eps))])
        s = np.mean(stats, axis=0)
        log.updates.append(dict(step=step, policy_loss=s[0], value_loss=s[1], entropy=s[2], approx_kl=s[3],
                                clip_fraction=s[4], explained_variance=explained_variance(f_val, f_ret)))
        bar.set_postfix(ret=f"{log.mean_recent_return():.0f}")
        if cfg.stop_at_return is not None and len(log.episode_returns) >= 20 and log.mean_recent_return() >= cfg.stop_at_return:
            break
    log.wall_time = time.perf_counter() - start
    log.policy = actor
    return log
