"""The exercises of notebooks 00-03 (returns, tabular RL, policy gradients, PPO on CartPole): the references a
learner's function is compared with, the test cases, and the tiny training runs of the build-it exercises."""

from __future__ import annotations

import math

import numpy as np
import torch

from rlhf_lib.runtime import derive_seed

# ---- the references of the value exercises


def ref_discounted_return(rewards, gamma):
    from rlhf_lib.policy_gradient import reward_to_go

    return reward_to_go(rewards, gamma)[0]


def ref_softmax_with_temperature(logits, temperature):
    return torch.softmax(torch.tensor(logits) / temperature, -1).numpy()


def ref_bellman_backup(env, V, s, gamma):
    from rlhf_lib.tabular import q_from_v

    return q_from_v(env, V, gamma)[s].max()


def ref_epsilon_greedy_probs(q_row, epsilon):
    from rlhf_lib.tabular import epsilon_greedy_probs

    return epsilon_greedy_probs(np.asarray(q_row), epsilon)


def ref_grad_log_softmax(theta, a):
    theta_t = torch.tensor(theta, requires_grad=True)
    theta_t.log_softmax(-1)[a].backward()
    return theta_t.grad.numpy()


def ref_reward_to_go(rewards, gamma):
    from rlhf_lib.policy_gradient import reward_to_go

    return reward_to_go(rewards, gamma)


def ref_gae_one_episode(rewards, values, gamma, lam):
    from rlhf_lib.ppo import gae

    dones = torch.zeros(len(rewards))
    dones[-1] = 1.0
    return gae(torch.tensor(rewards), torch.tensor(values), dones, gamma, lam)[0].numpy()


def ref_clipped_objective(ratio, advantage, eps):
    from rlhf_lib.ppo import clipped_surrogate

    r, a = torch.tensor(ratio), torch.tensor(advantage)
    return np.array([-float(clipped_surrogate(torch.log(r[i : i + 1]), torch.zeros(1), a[i : i + 1], eps))
                     for i in range(len(r))])


def gridworld_cases(rng):
    from rlhf_lib.envs import GridWorld

    cases = []
    for layout, slip in (("classic", 0.0), ("classic", 0.2), ("maze", 0.1)):
        env = GridWorld(layout, slip=slip)
        V = rng.normal(size=env.n_states)
        for s in range(env.n_states):
            if not env.is_wall(s) and not env.is_terminal(s):
                cases.append((env, V, s, float(rng.uniform(0.5, 1.0))))
    return cases


# ---- build-it: one Q-learning or SARSA episode (notebook 01)


def run_td_control(episode_fn, layout, slip, episodes, alpha, gamma, epsilon, seed):
    from rlhf_lib.envs import GridWorld
    from rlhf_lib.tabular import td_control

    result = td_control(GridWorld(layout, slip=slip), episode_fn, episodes, alpha, gamma, epsilon, seed)
    return dict(Q=result.Q, returns=result.returns, lengths=result.lengths)


def td_control_cases(rng):
    return [
        dict(layout="classic", slip=0.0, episodes=1, alpha=0.5, gamma=0.9, epsilon=0.5, seed=0),
        dict(layout="cliff", slip=0.0, episodes=30, alpha=0.5, gamma=1.0, epsilon=0.1, seed=1),
        dict(layout="classic", slip=0.2, episodes=60, alpha=0.3, gamma=0.9, epsilon=0.3, seed=2),
        dict(layout="maze", slip=0.1, episodes=10, alpha=0.5, gamma=0.95, epsilon=1.0, seed=3),  # time limits
    ]


# ---- build-it: one REINFORCE update (notebook 02) and one PPO update (notebook 03) on tiny networks


def _small_nets(seed: int):
    from rlhf_lib.cartpole import mlp

    torch.manual_seed(seed)
    return mlp(4, 2, 16, 0.5), mlp(4, 1, 16, 1.0)


def _make_optimizer(kind: str, params):
    params = list(params)
    return torch.optim.SGD(params, lr=0.05) if kind == "sgd" else torch.optim.Adam(params, lr=1e-2, eps=1e-5)


def _weights(**nets) -> dict:
    return {f"{name}.{key}": p.detach().numpy().copy()
            for name, net in nets.items() for key, p in net.named_parameters()}


def run_reinforce_update(update_fn, seed, batch, use_baseline, normalize, optimizer):
    policy, critic = _small_nets(seed)
    opt = _make_optimizer(optimizer, list(policy.parameters()) + list(critic.parameters()))
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, 4, generator=g)  # (B, 4)
    actions = torch.randint(0, 2, (batch,), generator=g)  # (B,)
    returns = 30 * torch.rand(batch, generator=g)  # (B,)
    losses = []
    for _ in range(2):  # two steps: a gradient left over from the first shows in the second
        out = update_fn(policy, critic, opt, obs, actions, returns, use_baseline, normalize)
        losses.append([float(x) for x in out])
    return {"losses": np.array(losses), **_weights(policy=policy, critic=critic)}


def reinforce_update_cases(rng):
    return [
        dict(seed=0, batch=6, use_baseline=False, normalize=False, optimizer="sgd"),
        dict(seed=1, batch=20, use_baseline=True, normalize=False, optimizer="sgd"),
        dict(seed=2, batch=20, use_baseline=True, normalize=True, optimizer="sgd"),
        dict(seed=3, batch=50, use_baseline=True, normalize=False, optimizer="adam"),
    ]


def run_ppo_update(update_fn, seed, batch, optimizer, **settings):
    from rlhf_lib.cartpole import Batch, PPOConfig

    cfg = PPOConfig(**settings)
    actor, critic = _small_nets(seed)
    opt = _make_optimizer(optimizer, list(actor.parameters()) + list(critic.parameters()))
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(batch, 4, generator=g)  # (B, 4)
    actions = torch.randint(0, 2, (batch,), generator=g)  # (B,)
    with torch.no_grad():
        logp = actor(obs).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)  # (B,)
        values_old = critic(obs).squeeze(-1) + 0.3 * torch.randn(batch, generator=g)  # (B,)
    logp_old = logp + 0.15 * torch.randn(batch, generator=g)  # ratios away from 1: some start clipped
    advantages = 1.0 + 2.0 * torch.randn(batch, generator=g)
    data = Batch(obs, actions, logp_old, values_old, advantages, advantages + values_old)
    torch.manual_seed(derive_seed(seed, "ppo update check"))  # the update's shuffles
    update_fn(actor, critic, opt, data, cfg)
    return _weights(actor=actor, critic=critic)


NO_CLIP = 1e6
"""a gradient-norm bound no probe's gradient reaches: clipping off"""

PPO_UPDATE_PROBES = (
    ("one epoch of one minibatch with only the policy's loss (vf_coef=0, ent_coef=0, no gradient clipping)", "actor",
     dict(seed=0, batch=32, optimizer="sgd", epochs=1, minibatches=1, vf_coef=0.0, max_grad_norm=NO_CLIP),
     "the policy's loss: the ratio exp(logp - batch.logp_old[idx]) of the actions taken, the clipped surrogate "
     "(the min of the two terms) and the minibatch's advantages whitened with `whiten`"),
    ("one epoch of one minibatch with only the value loss on for the critic (vf_coef=0.5, no value clipping, "
     "no gradient clipping)", "critic",
     dict(seed=0, batch=32, optimizer="sgd", epochs=1, minibatches=1, vf_coef=0.5, max_grad_norm=NO_CLIP),
     "the value loss: cfg.vf_coef * value_loss(values, batch.returns[idx], ...) with values = "
     "critic(batch.obs[idx]).squeeze(-1) (value_loss holds the 1/2 already)"),
    ("one epoch of one minibatch with an entropy bonus (ent_coef=0.1, vf_coef=0, no gradient clipping)", "actor",
     dict(seed=1, batch=32, optimizer="sgd", epochs=1, minibatches=1, vf_coef=0.0, ent_coef=0.1,
          max_grad_norm=NO_CLIP),
     "the entropy term: minus cfg.ent_coef times the mean of entropy_from_logits(logits) (a bonus, so minus)"),
    ("one epoch of one minibatch with the value loss clipped (value_clip_eps=0.1, no gradient clipping)", "critic",
     dict(seed=2, batch=32, optimizer="sgd", epochs=1, minibatches=1, value_clip_eps=0.1, max_grad_norm=NO_CLIP),
     "the clipped value loss: pass batch.values_old[idx] and cfg.value_clip_eps to value_loss"),
    ("one epoch of one minibatch with the gradient norm clipped (max_grad_norm=0.3)", None,
     dict(seed=3, batch=32, optimizer="sgd", epochs=1, minibatches=1, max_grad_norm=0.3),
     "the gradient clipping: after backward, ONE torch.nn.utils.clip_grad_norm_ call over the actor's and the "
     "critic's parameters together, max_norm=cfg.max_grad_norm (one norm for all, not one per network)"),
    ("three epochs of four minibatches (no gradient clipping)", None,
     dict(seed=4, batch=64, optimizer="sgd", epochs=3, minibatches=4, max_grad_norm=NO_CLIP),
     "the loop: cfg.epochs passes, each shuffling with torch.randperm(len(batch.obs)) and splitting with "
     ".chunk(cfg.minibatches); the advantages whitened per minibatch; one optimizer step per minibatch"),
)
"""the probes `compare_ppo_update` runs in order: what is switched on, which network's weights are compared (None:
both), the case, and the part of the update that is wrong when the weights differ there"""


def compare_ppo_update(fn) -> str | None:
    """None if `fn` updates the networks as `ppo_update` does on every probe and every case; otherwise which part of
    the update differs. Each probe switches on one more part of the loss or the loop, so the first probe that
    differs names the part to look at; then the exercise's cases (SGD and Adam) run."""
    from rlhf_lib.cartpole import one_thread, ppo_update
    from rlhf_lib.exercises.checking import _describe, _difference

    with one_thread():
        for what, net, case, part in PPO_UPDATE_PROBES:
            got = run_ppo_update(fn, **case)  # yours first: an unfinished one stops at once
            want = {k: v for k, v in run_ppo_update(ppo_update, **case).items()
                    if net is None or k.startswith(net + ".")}
            difference = _difference(want, got, 1e-5)
            if difference:
                return f"In {what}, the weights differ{_scaled(want, got, case)}\n  {difference}\n  Look at {part}."
        for case in ppo_update_cases(None):
            got = run_ppo_update(fn, **case)
            difference = _difference(run_ppo_update(ppo_update, **case), got, 1e-5)
            if difference:
                return f"For {_describe(case)}\n  {difference}"
    return None


def _scaled(want: dict, got: dict, case: dict) -> str:
    """How the learner's change of the weights compares with the library's where it is a multiple of it ("" where it
    is not)."""
    actor, critic = _small_nets(case["seed"])
    start = _weights(actor=actor, critic=critic)
    dw = np.concatenate([(want[k] - start[k]).ravel() for k in want])
    dg = np.concatenate([(np.asarray(got.get(k, start[k])) - start[k]).ravel() for k in want])
    if not dw.any():
        return " (the library's update leaves them where they were)"
    c = float(dg @ dw / (dw @ dw))
    if not np.allclose(dg, c * dw, rtol=1e-3, atol=1e-7):
        return ""
    n = case["batch"] // case.get("minibatches", 1)
    if abs(c - math.sqrt((n - 1) / n)) < 1e-4:
        return (f" (your step is {c:.4f} times the library's, sqrt((n - 1) / n) for a minibatch of n = {n}: whiten "
                f"with the population std, as `whiten` does, not torch's .std(), the sample std)")
    return f" (your step is {c:.3g} times the library's{': the opposite way' if c < 0 else ''})"


def ppo_update_cases(rng):
    return [
        dict(seed=0, batch=32, optimizer="sgd", epochs=1, minibatches=1, max_grad_norm=100.0),
        dict(seed=1, batch=64, optimizer="sgd", epochs=2, minibatches=4, ent_coef=0.05, max_grad_norm=0.5),
        dict(seed=2, batch=64, optimizer="sgd", epochs=3, minibatches=2, value_clip_eps=0.1, vf_coef=0.25,
             clip_eps=0.1, max_grad_norm=100.0),
        dict(seed=3, batch=64, optimizer="adam", epochs=2, minibatches=4),
    ]
