"""PPO-RLHF: rewards, the KL controller, exact first ratios, KL sign, determinism, resuming."""

import math

import numpy as np
import pytest
import torch

from rlhf_lib.lm import load_model, logprobs_of, sample
from rlhf_lib.reward_model import make_reward_model
from rlhf_lib.rlhf import AdaptiveKLController, PolicyWithValue, RLHFConfig, last_token_dones, token_rewards, \
    train_rlhf

SMALL = dict(batch_size=16, max_new_tokens=24, minibatches=2, epochs=2)


@pytest.fixture(scope="module")
def reward():
    torch.manual_seed(0)
    return make_reward_model()  # an untrained head: a fixed, arbitrary function of the text is enough here


def run(reward, iterations=3, **kw):
    policy, tok = load_model()
    reference, _ = load_model()
    cfg = RLHFConfig(iterations=iterations, **{**SMALL, **kw})
    return train_rlhf(policy, tok, *reward, reference, cfg, progress=False), policy


def test_token_rewards_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5, 0.0], [-0.3, -0.1, 0.0, 0.0]])
    logp_ref = torch.tensor([[-1.5, -1.0, -0.5, 0.0], [-0.2, -0.4, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    rewards, kl = token_rewards(torch.tensor([2.0, -1.0]), logp, logp_ref, mask, beta=0.1)
    expected = torch.tensor([[-0.05, 0.1, 2.0, 0.0], [0.01, -0.03 - 1.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, expected)
    torch.testing.assert_close(kl, (logp - logp_ref) * mask)
    torch.testing.assert_close(last_token_dones(mask), torch.tensor([[0.0, 0, 1, 0], [0, 1, 0, 0]]))


def test_adaptive_kl_controller_follows_ziegler():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10_000)
    assert ctl.update(9.0, 512) == pytest.approx(0.2 * (1 + 0.2 * 512 / 10_000))  # error clipped at +0.2
    beta = ctl.beta
    assert ctl.update(5.4, 512) == pytest.approx(beta * (1 - 0.1 * 512 / 10_000))
    # in a run with a KL far above the target, beta only grows
    ctl = AdaptiveKLController(0.05, target=0.01, horizon=100)
    betas = [0.05] + [ctl.update(1.0, 32) for _ in range(6)]
    assert all(b1 > b0 for b0, b1 in zip(betas, betas[1:]))


def test_ratio_is_exactly_one_before_the_first_update(reward):
    policy, tok = load_model()
    model = PolicyWithValue(policy).eval()
    for temperature in (1.0, 0.7):
        s = sample(policy, tok, ["The plot was", "Overall,", "I expected"] * 3, 20, temperature, seed=3)
        with torch.no_grad():
            logits, values = model(s.prompt_ids, s.prompt_mask, s.response_ids, s.response_mask, temperature)
        logp = logits.log_softmax(-1).gather(-1, s.response_ids[..., None]).squeeze(-1) * s.response_mask
        ratio = torch.exp(logp - s.logp)[s.response_mask.bool()]
        torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-5, rtol=0)
        assert torch.all(values == 0)  # the value head starts at zero
    # and inside the trainer, with dropout in the saved config: the first minibatch's ratio is 1
    result, _ = run(reward, iterations=1)
    assert policy.config.resid_pdrop > 0 and result.history[0]["first_ratio_gap"] < 1e-5


def test_k1_kl_never_meaningfully_negative_while_the_policy_moves(reward):
    result, policy = run(reward, iterations=8, lr=3e-4, kl_coef=0.01)
    k1, k3 = result.series("kl_k1"), result.series("kl_k3")
    assert k3[-1] > 0.2, "the policy should have moved away from the reference"
    # per response, k1 has a standard deviation of about sqrt(2 k3); 16 responses: 4 standard errors
    assert np.all(k1 > -4 * np.sqrt(2 * np.maximum(k3, 0.05) / 16)), k1
    assert np.all(k1[1:] > 0)
    # log-probs the trainer sampled with are what a fresh forward pass of the policy gives
    s = sample(policy, load_model()[1], ["The music was"] * 4, 16, seed=1)
    torch.testing.assert_close(logprobs_of(policy, s), s.logp, atol=1e-5, rtol=0)


def test_same_seed_same_numbers(reward):
    a, _ = run(reward)
    b, _ = run(reward)
    strip = lambda h: {k: v for k, v in h.items() if k != "seconds"}
    assert [strip(h) for h in a.history] == [strip(h) for h in b.history]
    assert a.samples == b.samples
    c, _ = run(reward, seed=1)
    assert c.samples != a.samples


def test_resumed_run_matches_an_uninterrupted_one(reward, tmp_path):
    from transformers import AutoModelForCausalLM

    straight, policy_straight = run(reward, iterations=3)
    policy, tok = load_model()
    reference, _ = load_model()
    cfg = RLHFConfig(iterations=3, **SMALL)
    interrupted = RLHFConfig(iterations=3, **SMALL)

    class Stop(Exception):
        pass

    def stop_after_two(result):
        if len(result.history) == 2:
            raise Stop

    with pytest.raises(Stop):
        train_rlhf(policy, tok, *reward, reference, interrupted, progress=False, checkpoint_dir=tmp_path,
                   on_iteration=stop_after_two)
    fresh, _ = load_model()
    resumed = train_rlhf(fresh, tok, *reward, reference, cfg, progress=False, checkpoint_dir=tmp_path, resume=True)
    strip = lambda h: {k: v for k, v in h.items() if k != "seconds"}
    assert [strip(h) for h in resumed.history] == [strip(h) for h in straight.history]
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "policy")
    for p, q in zip(saved.state_dict().values(), policy_straight.state_dict().values()):
        torch.testing.assert_close(p, q)


def test_bad_settings_are_refused(reward, tmp_path):
    with pytest.raises(ValueError, match="minibatches"):
        RLHFConfig(batch_size=4, minibatches=8)
    with pytest.raises(ValueError, match="kl_coef"):
        RLHFConfig(kl_coef=-0.1)
    with pytest.raises(ValueError, match="split evenly"):
        run(reward, batch_size=15, minibatches=2)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        policy, tok = load_model()
        train_rlhf(policy, tok, *reward, load_model()[0], RLHFConfig(**SMALL), checkpoint_dir=tmp_path, resume=True)
    assert math.isfinite(RLHFConfig().lr)
