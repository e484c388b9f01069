"""PPO on CartPole-v1 (notebook 03), as named pieces: rollout, advantages, update.

    for each iteration:
        rollout = collect_rollout(actor, critic, envs, n_steps, gamma, log)   # (N, T) tensors
        advantages, returns = compute_advantages(rollout, gamma, lam)         # GAE
        ppo_update(actor, critic, optimizer, flatten(rollout, advantages, returns), cfg)

`train_ppo_cartpole` runs that loop; its `update_fn` takes any function with the
signature of `ppo_update`, so a learner's own update can train the agent. The
math (GAE, the clipped surrogate, the value loss) lives in `rlhf_lib/ppo.py`,
shared with PPO on a language model. The small networks, the environments and
the training log are shared with REINFORCE (`rlhf_lib/policy_gradient.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from rlhf_lib.ppo import (
    approx_kl,
    clip_fraction,
    clipped_surrogate,
    entropy_from_logits,
    explained_variance,
    gae,
    value_loss,
    whiten,
)
from rlhf_lib.runtime import check_count, check_positive, check_probability, derive_seed
from rlhf_lib.threads import fixed

OBS_DIM, N_ACTIONS = 4, 2  # CartPole: cart position and velocity, pole angle and angular velocity; push left / right


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
    steps: int = 0
    """environment steps taken so far (all environments together)"""
    start_time: float = field(default_factory=time.perf_counter)
    """time.perf_counter() when training began"""

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

    def record_episode(self, episode_return: float, at_step: int) -> None:
        self.episode_returns.append(float(episode_return))
        self.episode_end_steps.append(at_step)
        self.episode_end_times.append(time.perf_counter() - self.start_time)


def mlp(n_in: int, n_out: int, hidden: int, out_std: float) -> nn.Sequential:
    """Two tanh hidden layers, orthogonal init; a small `out_std` starts a policy near uniform."""
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                        nn.Linear(hidden, n_out))
    for layer, std in zip(net[::2], (np.sqrt(2), np.sqrt(2), out_std)):
        nn.init.orthogonal_(layer.weight, std)
        nn.init.zeros_(layer.bias)
    return net


def make_envs(n: int, seed: int):
    """n CartPole-v1 environments, reset with seeds seed, seed + 1, ... (`derive_seed(seed, "environment", i)`);
    returns (envs, observations (n, 4))."""
    import gymnasium as gym

    envs = [gym.make("CartPole-v1") for _ in range(n)]
    obs = np.stack([env.reset(seed=derive_seed(seed, "environment", i))[0] for i, env in enumerate(envs)])
    return envs, obs


def one_thread():
    """Run torch on one thread inside the block, then share the cores again (`rlhf_lib/threads.py`).

    CartPole's networks are tiny: a second thread only adds waiting. On a busy 2-core machine, PPO on
    one thread ran 30 times faster than on two. Results are the same: no op here is big enough to split.
    """
    return fixed(1)


# ---- the pieces of one PPO iteration


@dataclass
class VecEnv:
    """N CartPole copies stepped side by side, with each one's current observation and running return."""

    envs: list
    obs: np.ndarray
    """current observations, (N, 4)"""
    episode_return: np.ndarray
    """return so far of each running episode, (N,)"""


@dataclass
class Rollout:
    """T steps in each of N environments; every tensor is (N, T) or (N, T, 4)."""

    obs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    """log pi_old(a_t | s_t) of the policy that acted"""
    values: torch.Tensor
    """V(s_t) of the critic at rollout time"""
    rewards: torch.Tensor
    dones: torch.Tensor
    """1 where an episode ended with step t (terminated or truncated)"""
    last_value: torch.Tensor
    """V of the state after step T - 1, (N,)"""


@dataclass
class Batch:
    """A rollout flattened to B = N * T samples: what one PPO update trains on."""

    obs: torch.Tensor
    """(B, 4)"""
    actions: torch.Tensor
    """(B,) long"""
    logp_old: torch.Tensor
    """(B,) log-prob of each action under the policy that acted"""
    values_old: torch.Tensor
    """(B,) the critic's values at rollout time"""
    advantages: torch.Tensor
    """(B,) GAE advantages (not yet whitened)"""
    returns: torch.Tensor
    """(B,) targets of the value loss: advantages + values_old"""


def collect_rollout(actor, critic, vec: VecEnv, n_steps: int, gamma: float, log: TrainingLog) -> Rollout:
    """Act with the actor for n_steps in every environment; finished episodes go to `log`.

    A time limit is not a real end: the reward of a truncated step gets gamma * V(s') added, so the
    episode's future is bootstrapped rather than cut to 0.
    """
    N, T = len(vec.envs), n_steps
    obs_t, act_t, logp_t = torch.zeros(N, T, OBS_DIM), torch.zeros(N, T, dtype=torch.long), torch.zeros(N, T)
    rew_t, done_t, val_t = torch.zeros(N, T), torch.zeros(N, T), torch.zeros(N, T)
    for t in range(T):
        o = torch.as_tensor(vec.obs, dtype=torch.float32)  # (N, 4)
        with torch.no_grad():
            logits, value = actor(o), critic(o).squeeze(-1)  # (N, 2), (N,)
        dist = torch.distributions.Categorical(logits=logits)
        action = dist.sample()
        obs_t[:, t], act_t[:, t], logp_t[:, t], val_t[:, t] = o, action, dist.log_prob(action), value
        for i, env in enumerate(vec.envs):
            vec.obs[i], r, terminated, truncated, _ = env.step(int(action[i]))
            vec.episode_return[i] += r
            if truncated and not terminated:  # bootstrap from V(s') at a time limit
                with torch.no_grad():
                    r += gamma * float(critic(torch.as_tensor(vec.obs[i], dtype=torch.float32)))
            rew_t[i, t], done_t[i, t] = r, float(terminated or truncated)
            if terminated or truncated:
                log.record_episode(vec.episode_return[i], log.steps + (t + 1) * N)
                vec.episode_return[i] = 0.0
                vec.obs[i], _ = env.reset()
    log.steps += N * T
    with torch.no_grad():
        last_value = critic(torch.as_tensor(vec.obs, dtype=torch.float32)).squeeze(-1)  # (N,)
    return Rollout(obs_t, act_t, logp_t, val_t, rew_t, done_t, last_value)


def compute_advantages(rollout: Rollout, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the rollout, restarting at episode ends: (advantages, returns), both (N, T)."""
    return gae(rollout.rewards, rollout.values, rollout.dones, gamma, lam, rollout.last_value)


def flatten(rollout: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> Batch:
    """(N, T, ...) -> (N * T, ...): the update shuffles single steps, not episodes."""
    flat = lambda x: x.reshape(-1, *x.shape[2:])
    return Batch(flat(rollout.obs), flat(rollout.actions), flat(rollout.logp), flat(rollout.values),
                 flat(advantages), flat(returns))


def ppo_update(actor, critic, optimizer, batch: Batch, cfg: PPOConfig) -> None:
    """One PPO update: cfg.epochs passes over the batch, each in cfg.minibatches shuffled minibatches.

    Each minibatch: whiten its advantages, then one optimizer step on
    clipped surrogate + vf_coef * value loss - ent_coef * entropy, with the gradient norm clipped.
    """
    params = list(actor.parameters()) + list(critic.parameters())
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(batch.obs)).chunk(cfg.minibatches):
            logits = actor(batch.obs[idx])  # (b, 2)
            logp = logits.log_softmax(-1).gather(-1, batch.actions[idx, None]).squeeze(-1)  # (b,)
            advantages = whiten(batch.advantages[idx])
            pg_loss = clipped_surrogate(logp, batch.logp_old[idx], advantages, cfg.clip_eps)
            values = critic(batch.obs[idx]).squeeze(-1)  # (b,)
            v_loss = value_loss(values, batch.returns[idx], batch.values_old[idx], cfg.value_clip_eps)
            entropy = entropy_from_logits(logits).mean()
            loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()


def ppo_diagnostics(actor, critic, batch: Batch, cfg: PPOConfig) -> dict:
    """How the update went, measured on the whole batch after it: losses, entropy, KL and clip fraction
    between the policy that acted and the updated one, and how well the rollout's values explained the returns."""
    with torch.no_grad():
        logits = actor(batch.obs)  # (B, 2)
        logp = logits.log_softmax(-1).gather(-1, batch.actions[:, None]).squeeze(-1)  # (B,)
        return dict(
            policy_loss=float(clipped_surrogate(logp, batch.logp_old, whiten(batch.advantages), cfg.clip_eps)),
            value_loss=float(value_loss(critic(batch.obs).squeeze(-1), batch.returns)),
            entropy=float(entropy_from_logits(logits).mean()),
            approx_kl=float(approx_kl(logp, batch.logp_old)),
            clip_fraction=float(clip_fraction(logp, batch.logp_old, cfg.clip_eps)),
            explained_variance=explained_variance(batch.values_old, batch.returns),
        )


def train_ppo_cartpole(config: PPOConfig | None = None, progress: bool = True,
                       update_fn: Callable = ppo_update) -> TrainingLog:
    """Train an actor and a critic on CartPole-v1 with PPO; returns the TrainingLog.

    `update_fn(actor, critic, optimizer, batch, cfg)` does the update (signature of `ppo_update`).
    """
    from tqdm.auto import tqdm

    cfg = config or PPOConfig()
    torch.manual_seed(cfg.seed)
    actor, critic = mlp(OBS_DIM, N_ACTIONS, cfg.hidden, 0.01), mlp(OBS_DIM, 1, cfg.hidden, 1.0)
    optimizer = torch.optim.Adam(list(actor.parameters()) + list(critic.parameters()), lr=cfg.lr, eps=1e-5)
    envs, obs = make_envs(cfg.n_envs, cfg.seed)
    vec = VecEnv(envs, obs, np.zeros(cfg.n_envs))
    n_updates = max(1, cfg.total_steps // (cfg.n_envs * cfg.n_steps))
    log = TrainingLog()
    bar = tqdm(range(n_updates), desc="PPO", disable=not progress)
    with one_thread():
        for update in bar:
            for group in optimizer.param_groups:  # anneal the learning rate to 0
                group["lr"] = cfg.lr * (1.0 - update / n_updates)
            rollout = collect_rollout(actor, critic, vec, cfg.n_steps, cfg.gamma, log)
            advantages, returns = compute_advantages(rollout, cfg.gamma, cfg.lam)
            batch = flatten(rollout, advantages, returns)
            update_fn(actor, critic, optimizer, batch, cfg)
            log.updates.append(dict(step=log.steps, **ppo_diagnostics(actor, critic, batch, cfg)))
            bar.set_postfix(ret=f"{log.mean_recent_return():.0f}")
            if (cfg.stop_at_return is not None and len(log.episode_returns) >= 20
                    and log.mean_recent_return() >= cfg.stop_at_return):
                break
    log.wall_time = time.perf_counter() - log.start_time
    log.policy = actor
    return log


SB3_VERSION = "2.9.2"
"""the stable-baselines3 release the optional baseline was measured with (not a course requirement)"""


def train_sb3_cartpole(config: PPOConfig | None = None) -> TrainingLog:
    """The same PPO settings through stable-baselines3's `PPO` on CartPole-v1 (4 copies), as a baseline from a
    library many people use; returns a TrainingLog of its episodes (steps and times as `train_ppo_cartpole` records
    them). stable-baselines3 is optional: without it this raises ImportError, naming the install command, before
    any work. Its PPO differs from the course's in small ways: its value loss has no 1/2 (so its value weight is
    twice ours) and it whitens advantages with the sample standard deviation."""
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError as err:
        raise ImportError(f"stable-baselines3 is not installed (an optional baseline): "
                          f"pip install stable-baselines3=={SB3_VERSION}") from err
    cfg = config or PPOConfig()
    log = TrainingLog()

    class Episodes(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # the Monitor wrapper's record of an episode that just ended
                    log.record_episode(info["episode"]["r"], self.num_timesteps)
            return True

    with one_thread():
        envs = make_vec_env("CartPole-v1", n_envs=cfg.n_envs, seed=cfg.seed)
        model = PPO("MlpPolicy", envs, learning_rate=lambda left: cfg.lr * left, n_steps=cfg.n_steps,
                    batch_size=cfg.n_envs * cfg.n_steps // cfg.minibatches, n_epochs=cfg.epochs, gamma=cfg.gamma,
                    gae_lambda=cfg.lam, clip_range=cfg.clip_eps, clip_range_vf=cfg.value_clip_eps,
                    ent_coef=cfg.ent_coef, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed,
                    policy_kwargs=dict(net_arch=dict(pi=[cfg.hidden] * 2, vf=[cfg.hidden] * 2), activation_fn=nn.Tanh),
                    device="cpu")
        log.start_time = time.perf_counter()
        model.learn(cfg.total_steps, callback=Episodes())
    log.wall_time = time.perf_counter() - log.start_time
    log.steps = model.num_timesteps
    return log

