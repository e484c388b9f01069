"""The PPO core against brute-force sums and hand computations."""

import numpy as np
import pytest
import torch

from rlhf_lib import solutions
from rlhf_lib.cartpole import (
    Batch,
    PPOConfig,
    TrainingLog,
    VecEnv,
    collect_rollout,
    compute_advantages,
    flatten,
    make_envs,
    mlp,
    ppo_update,
    train_ppo_cartpole,
)
from rlhf_lib.ppo import (
    approx_kl,
    clip_fraction,
    clipped_surrogate,
    discounted_returns,
    entropy_from_logits,
    explained_variance,
    gae,
    masked_mean,
    value_loss,
    whiten,
)


def brute_force_gae(rewards, values, dones, last_value, gamma, lam):
    """A_t = sum_k (gamma * lam)^k delta_{t+k}, summed until the episode containing t ends."""
    N, T = rewards.shape
    adv = np.zeros((N, T))
    for n in range(N):
        for t in range(T):
            for k in range(t, T):
                v_next = last_value[n] if k == T - 1 else values[n, k + 1]
                delta = rewards[n, k] + gamma * v_next * (1 - dones[n, k]) - values[n, k]
                adv[n, t] += (gamma * lam) ** (k - t) * delta
                if dones[n, k]:
                    break
    return adv


def brute_force_returns(rewards, dones, last_value, gamma):
    N, T = rewards.shape
    out = np.zeros((N, T))
    for n in range(N):
        for t in range(T):
            g, discount = 0.0, 1.0
            for k in range(t, T):
                g += discount * rewards[n, k]
                discount *= gamma
                if dones[n, k]:
                    break
            else:
                g += discount * last_value[n]
            out[n, t] = g
    return out


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    N, T = 5, 17
    rewards = rng.normal(size=(N, T))
    values = rng.normal(size=(N, T))
    dones = (rng.random((N, T)) < 0.2).astype(float)  # episode ends inside the batch
    dones[0, :] = 0  # one row that never ends: bootstraps from last_value
    dones[1, -1] = 1  # one row that ends exactly at the last step
    last_value = rng.normal(size=N)
    return rewards, values, dones, last_value


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (1.0, 0.95), (0.5, 1.0)])
def test_gae_equals_brute_force_sum(batch, gamma, lam):
    rewards, values, dones, last_value = batch
    adv, ret = gae(rewards, values, dones, gamma, lam, last_value)
    want = brute_force_gae(rewards, values, dones, last_value, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor(want, dtype=torch.float32), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ret, adv + torch.tensor(values, dtype=torch.float32))


@pytest.mark.parametrize("gamma", [0.99, 1.0, 0.7])
def test_gae_with_lambda_one_is_returns_minus_values(batch, gamma):
    rewards, values, dones, last_value = batch
    adv, _ = gae(rewards, values, dones, gamma, 1.0, last_value)
    returns = discounted_returns(rewards, dones, gamma, last_value)
    torch.testing.assert_close(adv, returns - torch.tensor(values, dtype=torch.float32), atol=1e-4, rtol=1e-4)


def test_discounted_returns_equal_brute_force(batch):
    rewards, _, dones, last_value = batch
    got = discounted_returns(rewards, dones, 0.9, last_value)
    torch.testing.assert_close(got, torch.tensor(brute_force_returns(rewards, dones, last_value, 0.9),
                                                 dtype=torch.float32))


def test_gae_one_dimensional_episode():
    # one episode of 3 steps, gamma = lam = 1: A_t = sum of rewards from t minus V(s_t)
    adv, ret = gae([1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [0, 0, 1], 1.0, 1.0)
    torch.testing.assert_close(adv, torch.tensor([5.5, 4.5, 2.5]))
    torch.testing.assert_close(ret, torch.tensor([6.0, 5.0, 3.0]))


def test_clipped_surrogate_by_hand():
    # ratios 1.5, 0.5, 1.1, 0.9, 1.5, 0.5 with eps 0.2
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.9, 1.5, 0.5])
    adv = torch.tensor([2.0, 2.0, -1.0, -1.0, -1.0, -1.0])
    # per sample min(r * A, clip(r) * A):
    #   r=1.5, A=2:  min(3.0, 1.2*2=2.4) = 2.4   (clipped branch: no reward for going further)
    #   r=0.5, A=2:  min(1.0, 0.8*2=1.6) = 1.0   (unclipped branch: pessimistic)
    #   r=1.1, A=-1: min(-1.1, -1.1)    = -1.1  (inside the range)
    #   r=0.9, A=-1: min(-0.9, -0.9)    = -0.9
    #   r=1.5, A=-1: min(-1.5, -1.2)    = -1.5  (unclipped branch)
    #   r=0.5, A=-1: min(-0.5, -0.8)    = -0.8  (clipped branch)
    want = -np.mean([2.4, 1.0, -1.1, -0.9, -1.5, -0.8])
    loss = clipped_surrogate(torch.log(ratio), torch.zeros(6), adv, clip_eps=0.2)
    assert float(loss) == pytest.approx(want, abs=1e-6)
    assert float(clip_fraction(torch.log(ratio), torch.zeros(6), 0.2)) == pytest.approx(4 / 6)


def test_clipped_surrogate_gradient_is_zero_on_the_clipped_branch():
    logp = torch.log(torch.tensor([1.5, 0.5])).requires_grad_()
    clipped_surrogate(logp, torch.zeros(2), torch.tensor([2.0, -1.0]), 0.2).backward()
    torch.testing.assert_close(logp.grad, torch.zeros(2))
    logp = torch.log(torch.tensor([0.5, 1.5])).requires_grad_()
    clipped_surrogate(logp, torch.zeros(2), torch.tensor([2.0, -1.0]), 0.2).backward()
    # d/dlogp of -mean(r * A) = -r * A / 2
    torch.testing.assert_close(logp.grad, torch.tensor([-0.5 * 2.0 / 2, 1.5 * 1.0 / 2]))


def test_clipped_surrogate_respects_mask():
    logp = torch.log(torch.tensor([[1.5, 3.0], [1.0, 7.0]]))
    adv = torch.tensor([[2.0, 100.0], [1.0, 100.0]])
    mask = torch.tensor([[1, 0], [1, 0]])
    loss = clipped_surrogate(logp, torch.zeros(2, 2), adv, 0.2, mask)
    assert float(loss) == pytest.approx(-(2.4 + 1.0) / 2)


def test_value_loss_by_hand():
    v = torch.tensor([1.0, 3.0, 0.0])
    v_old = torch.tensor([0.0, 2.9, 0.0])
    g = torch.tensor([0.0, 3.0, 2.0])
    # unclipped: 0.5 * mean(1, 0, 4)
    assert float(value_loss(v, g)) == pytest.approx(0.5 * 5 / 3)
    # clipped at 0.2: v_clipped = 0.2, 3.0 (2.9 + 0.1), 0.0;
    # losses max((v-g)^2, (vc-g)^2) = max(1, .04)=1, max(0, 0)=0, max(4, 4)=4
    assert float(value_loss(v, g, v_old, 0.2)) == pytest.approx(0.5 * 5 / 3)
    # a case where the clipped branch is larger: v moved past the target
    v, v_old, g = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.5])
    # unclipped (2 - 1.5)^2 = 0.25; clipped v = 0.2: (0.2 - 1.5)^2 = 1.69
    assert float(value_loss(v, g, v_old, 0.2)) == pytest.approx(0.5 * 1.69)
    with pytest.raises(ValueError, match="values_old"):
        value_loss(v, g, clip_eps=0.2)


def test_entropy_matches_torch_distributions():
    logits = torch.randn(3, 7)
    torch.testing.assert_close(entropy_from_logits(logits), torch.distributions.Categorical(logits=logits).entropy())


def test_approx_kl_is_an_unbiased_estimate_of_the_true_kl():
    torch.manual_seed(0)
    p_old, p_new = torch.softmax(torch.randn(5), -1), torch.softmax(torch.randn(5), -1)
    exact = float((p_old * (p_old.log() - p_new.log())).sum())
    x = torch.multinomial(p_old, 200_000, replacement=True)
    assert float(approx_kl(p_new.log()[x], p_old.log()[x])) == pytest.approx(exact, rel=0.05)


def test_whiten_and_masked_mean():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert float(masked_mean(x, mask)) == pytest.approx(2.0)
    w = whiten(x, mask)
    assert float(masked_mean(w, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(masked_mean(w**2, mask)) == pytest.approx(1.0, abs=1e-5)
    kept = whiten(x, mask, shift_mean=False)
    assert float(masked_mean(kept, mask)) == pytest.approx(2.0, abs=1e-5)


def test_explained_variance():
    g = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(g, g) == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), g) == pytest.approx(0.0)


@pytest.mark.slow
def test_ppo_learns_cartpole_on_a_small_budget():
    log = train_ppo_cartpole(PPOConfig(total_steps=30_000, seed=0), progress=False)
    first, last = np.mean(log.episode_returns[:20]), log.mean_recent_return(20)
    assert first < 40  # a random policy keeps the pole up for about 22 steps
    assert last > 200, f"PPO reached only {last:.0f} after 30k steps"
    assert len(log.updates) == 30_000 // (4 * 256)


def test_ppo_same_seed_same_numbers():
    a = train_ppo_cartpole(PPOConfig(total_steps=2048, seed=3), progress=False)
    b = train_ppo_cartpole(PPOConfig(total_steps=2048, seed=3), progress=False)
    assert a.episode_returns == b.episode_returns
    assert [u["value_loss"] for u in a.updates] == [u["value_loss"] for u in b.updates]


def test_the_exercise_solution_trains_exactly_like_the_library():
    """The solution's update (its own ratio, clip, whitening, entropy) plugged into the trainer gives the
    library's run."""
    cfg = PPOConfig(total_steps=512, n_envs=2, n_steps=128, epochs=4, ent_coef=0.01, value_clip_eps=0.2, seed=1)
    ours = train_ppo_cartpole(cfg, progress=False)
    theirs = train_ppo_cartpole(cfg, progress=False, update_fn=solutions.ppo_update)
    assert theirs.episode_returns == ours.episode_returns
    for mine, library in zip(theirs.policy.parameters(), ours.policy.parameters()):
        torch.testing.assert_close(mine, library, atol=1e-7, rtol=1e-6)
    assert theirs.updates[-1]["approx_kl"] == pytest.approx(ours.updates[-1]["approx_kl"], rel=1e-5, abs=1e-9)


def test_rollout_pieces_fit_together():
    """One rollout by hand: shapes, episode ends, bootstrapped time limits, and GAE over it."""
    torch.manual_seed(0)
    actor, critic = mlp(4, 2, 8, 0.01), mlp(4, 1, 8, 1.0)
    envs, obs = make_envs(3, seed=0)
    vec, log = VecEnv(envs, obs, np.zeros(3)), TrainingLog()
    rollout = collect_rollout(actor, critic, vec, 40, 0.99, log)
    assert rollout.obs.shape == (3, 40, 4) and rollout.actions.shape == rollout.rewards.shape == (3, 40)
    assert log.steps == 120 and len(log.episode_returns) == int(rollout.dones.sum())
    assert sum(log.episode_returns) <= float(rollout.rewards.sum())  # rewards of unfinished episodes count too
    advantages, returns = compute_advantages(rollout, 0.99, 0.95)
    want = brute_force_gae(rollout.rewards.numpy(), rollout.values.numpy(), rollout.dones.numpy(),
                           rollout.last_value.numpy(), 0.99, 0.95)
    torch.testing.assert_close(advantages, torch.tensor(want, dtype=torch.float32), atol=1e-4, rtol=1e-4)
    batch = flatten(rollout, advantages, returns)
    assert isinstance(batch, Batch) and batch.obs.shape == (120, 4)
    torch.testing.assert_close(batch.advantages[40:80], advantages[1])  # row-major: environment 1's steps


def test_ppo_update_leaves_a_policy_that_moved_within_the_clip():
    """After one update on a rollout, the new policy differs from the old, and the ratios stay near 1 +- eps."""
    torch.manual_seed(0)
    actor, critic = mlp(4, 2, 16, 0.01), mlp(4, 1, 16, 1.0)
    envs, obs = make_envs(2, seed=0)
    rollout = collect_rollout(actor, critic, VecEnv(envs, obs, np.zeros(2)), 128, 0.99, TrainingLog())
    batch = flatten(rollout, *compute_advantages(rollout, 0.99, 0.95))
    cfg = PPOConfig(epochs=4, minibatches=4)
    optimizer = torch.optim.Adam(list(actor.parameters()) + list(critic.parameters()), lr=cfg.lr, eps=1e-5)
    ppo_update(actor, critic, optimizer, batch, cfg)
    with torch.no_grad():
        logp = actor(batch.obs).log_softmax(-1).gather(-1, batch.actions[:, None]).squeeze(-1)
    ratio = torch.exp(logp - batch.logp_old)
    assert float((ratio - 1).abs().max()) > 1e-3
    assert float((ratio - 1).abs().mean()) < 2 * cfg.clip_eps


@pytest.mark.parametrize("bad", [dict(lr=-1e-3), dict(gamma=1.5), dict(lam=-0.1), dict(n_envs=0)])
def test_ppo_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        PPOConfig(**bad)
