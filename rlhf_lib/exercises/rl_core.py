"""The exercises of notebooks 00-03 (returns, tabular RL, policy gradients, PPO on CartPole): the references a
learner's function is compared with, the test cases, and the tiny training runs of the build-it exercises."""

from __future__ import annotations

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


def ppo_update_cases(rng):
    return [
        dict(seed=0, batch=32, optimizer="sgd", epochs=1, minibatches=1, max_grad_norm=100.0),
        dict(seed=1, batch=64, optimizer="sgd", epochs=2, minibatches=4, ent_coef=0.05, max_grad_norm=0.5),
        dict(seed=2, batch=64, optimizer="sgd", epochs=3, minibatches=2, value_clip_eps=0.1, vf_coef=0.25,
             clip_eps=0.1, max_grad_norm=100.0),
        dict(seed=3, batch=64, optimizer="adam", epochs=2, minibatches=4),
    ]
