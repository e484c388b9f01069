"""REINFORCE: the policy gradient from the log-derivative trick.

    grad J(theta) = E_{a ~ pi_theta}[ (R - b) * grad log pi_theta(a) ]

holds for any baseline b that does not depend on the action; a good b lowers
the variance of the estimate without moving its mean. On a bandit the exact
gradient has a closed form, so the estimate can be checked against it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rlhf_lib.cartpole import N_ACTIONS, OBS_DIM, TrainingLog, make_envs, mlp, one_thread
from rlhf_lib.runtime import check_count, check_positive, check_probability

# ---- a softmax policy on a bandit


def softmax(theta) -> np.ndarray:
    z = np.exp(np.asarray(theta, dtype=float) - np.max(theta))
    return z / z.sum()


def expected_reward(theta, expected_rewards) -> float:
    """J(theta) = sum_a pi_theta(a) * r(a)."""
    return float(softmax(theta) @ np.asarray(expected_rewards, dtype=float))


def exact_bandit_gradient(theta, expected_rewards) -> np.ndarray:
    """Closed form of grad J for a softmax policy: pi_j * (r_j - J)."""
    pi, r = softmax(theta), np.asarray(expected_rewards, dtype=float)
    return pi * (r - pi @ r)


def reinforce_bandit_samples(theta, bandit, n_samples: int, baseline: float = 0.0, rng=None) -> np.ndarray:
    """One REINFORCE gradient estimate per sampled pull: (R - b) * grad log pi(a).  Shape (n_samples, k).

    The gradient of log pi(a) comes from torch's autograd, as it will for a neural policy.
    """
    check_count("n_samples", n_samples)
    rng = rng if rng is not None else np.random.default_rng()
    theta_t = torch.tensor(np.asarray(theta, dtype=float), requires_grad=True)
    logp = theta_t.log_softmax(-1)  # (k,)
    actions = rng.choice(len(theta_t), size=n_samples, p=softmax(theta))
    rewards = bandit.pull(actions)
    # grad of log pi(a) for each arm a, one row each: (k, k)
    grad_logp = torch.stack([torch.autograd.grad(logp[a], theta_t, retain_graph=True)[0] for a in range(len(theta_t))])
    return (rewards - baseline)[:, None] * grad_logp.numpy()[actions]


@dataclass
class BanditRun:
    thetas: np.ndarray
    """policy parameters after each step, shape (steps + 1, k)"""
    expected: np.ndarray
    """J(theta) after each step, shape (steps + 1,)"""


def train_bandit(bandit, steps: int = 200, lr: float = 0.5, batch: int = 16, baseline: str = "mean",
                 seed: int = 0) -> BanditRun:
    """Gradient ascent on J with REINFORCE estimates.

    baseline: "none", or "mean": for each sample, the mean reward of the other samples in the batch.
    """
    check_count("steps", steps)
    check_count("batch", batch, minimum=2 if baseline == "mean" else 1)
    check_positive("lr (the learning rate)", lr)
    if baseline not in ("none", "mean"):
        raise ValueError(f"baseline must be 'none' or 'mean', got {baseline!r}")
    # [seed, 1], not seed: a bandit made with the same seed must not share our random stream,
    # or the arm drawn and the reward drawn come from the same uniform numbers.
    rng = np.random.default_rng([seed, 1])
    theta = np.zeros(bandit.n_actions)
    thetas, expected = [theta.copy()], [expected_reward(theta, bandit.expected_rewards)]
    for _ in range(steps):
        pi = softmax(theta)
        actions = rng.choice(len(theta), size=batch, p=pi)
        rewards = bandit.pull(actions)
        # leave-one-out: each sample's baseline is the mean reward of the OTHER samples, so it does
        # not depend on the sample's own action and the estimate stays unbiased
        b = (rewards.sum() - rewards) / (batch - 1) if baseline == "mean" else 0.0
        grad_logp = np.eye(len(theta))[actions] - pi  # grad of log softmax: onehot(a) - pi
        theta = theta + lr * ((rewards - b)[:, None] * grad_logp).mean(0)
        thetas.append(theta.copy())
        expected.append(expected_reward(theta, bandit.expected_rewards))
    return BanditRun(np.array(thetas), np.array(expected))


# ---- REINFORCE on CartPole


def reward_to_go(rewards, gamma: float) -> np.ndarray:
    """G_t = sum_{k >= t} gamma^(k - t) r_k for one episode."""
    check_probability("gamma", gamma)
    out, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


@dataclass
class ReinforceConfig:
    total_steps: int = 100_000
    """environment steps to train for"""
    episodes_per_update: int = 8
    """episodes sampled for one gradient estimate"""
    lr: float = 5e-3
    """Adam learning rate of the policy (and of the value baseline)"""
    gamma: float = 0.99
    """discount factor"""
    baseline: str = "value"
    """"none", or "value": a learned V(s) subtracted from the return"""
    normalize: bool = False
    """divide the (baselined) returns by their standard deviation in the batch"""
    hidden: int = 64
    """width of the hidden layers"""
    seed: int = 0
    """seeds the network and the environments"""

    def __post_init__(self):
        check_count("total_steps", self.total_steps)
        check_count("episodes_per_update", self.episodes_per_update)
        check_positive("lr (the learning rate)", self.lr)
        check_probability("gamma", self.gamma)
        if self.baseline not in ("none", "value"):
            raise ValueError(f"baseline must be 'none' or 'value', got {self.baseline!r}")


def reinforce_update(policy, critic, optimizer, obs, actions, returns, use_baseline: bool, normalize: bool):
    """One gradient step of REINFORCE on a batch of whole episodes. Returns (policy_loss, value_loss) as floats.

    obs (B, 4), actions (B,), returns (B,): every step of the batch's episodes, with its reward to go G_t.
    Loss: -mean(log pi(a_t | s_t) * w_t), with w_t = G_t, or G_t - V(s_t) with the learned baseline
    (detached: the baseline must not be trained by the policy loss), divided by std(w) if normalize;
    plus the critic's 0.5 * mean((V(s_t) - G_t)^2) when there is a baseline.
    """
    logp = policy(obs).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)  # (B,)
    weights = returns
    v_loss = torch.tensor(0.0)
    if use_baseline:
        values = critic(obs).squeeze(-1)  # (B,)
        v_loss = 0.5 * ((values - returns) ** 2).mean()
        weights = returns - values.detach()
    if normalize:
        weights = weights / (weights.std() + 1e-8)
    pg_loss = -(logp * weights).mean()
    optimizer.zero_grad()
    (pg_loss + v_loss).backward()
    optimizer.step()
    return float(pg_loss.detach()), float(v_loss.detach())


def train_reinforce_cartpole(config: ReinforceConfig | None = None, progress: bool = True,
                             update_fn: Callable = reinforce_update) -> TrainingLog:
    """REINFORCE on CartPole-v1 (whole episodes, reward-to-go, optional learned baseline).

    `update_fn` does each gradient step (signature of `reinforce_update`); pass your own to train with it.
    """
    from tqdm.auto import tqdm

    cfg = config or ReinforceConfig()
    torch.manual_seed(cfg.seed)
    policy, critic = mlp(OBS_DIM, N_ACTIONS, cfg.hidden, 0.01), mlp(OBS_DIM, 1, cfg.hidden, 1.0)
    optimizer = torch.optim.Adam(list(policy.parameters()) + list(critic.parameters()), lr=cfg.lr)
    (env,), _ = make_envs(1, cfg.seed)
    log = TrainingLog()
    bar = tqdm(total=cfg.total_steps, desc="REINFORCE", disable=not progress)
    with one_thread():  # tiny networks: a second thread only waits
        while log.steps < cfg.total_steps:
            all_obs, all_act, all_ret = [], [], []
            for _ in range(cfg.episodes_per_update):
                obs, _ = env.reset()
                ep_obs, ep_act, ep_rew, done = [], [], [], False
                while not done:
                    o = torch.as_tensor(obs, dtype=torch.float32)
                    with torch.no_grad():
                        a = int(torch.distributions.Categorical(logits=policy(o)).sample())
                    obs, r, terminated, truncated, _ = env.step(a)
                    ep_obs.append(o)
                    ep_act.append(a)
                    ep_rew.append(r)
                    done = terminated or truncated
                log.steps += len(ep_rew)
                bar.update(len(ep_rew))
                log.record_episode(sum(ep_rew), log.steps)
                all_obs += ep_obs
                all_act += ep_act
                all_ret.append(reward_to_go(ep_rew, cfg.gamma))
            obs_t = torch.stack(all_obs)  # (B, 4) with B the steps of all episodes in the batch
            act_t = torch.tensor(all_act)  # (B,)
            ret_t = torch.as_tensor(np.concatenate(all_ret), dtype=torch.float32)  # (B,)
            pg_loss, v_loss = update_fn(policy, critic, optimizer, obs_t, act_t, ret_t, cfg.baseline == "value",
                                        cfg.normalize)
            log.updates.append(dict(step=log.steps, policy_loss=float(pg_loss), value_loss=float(v_loss)))
            bar.set_postfix(ret=f"{log.mean_recent_return():.0f}")
    bar.close()
    log.wall_time = time.perf_counter() - log.start_time
    log.policy = policy
    return log
