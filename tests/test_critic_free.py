"""RLOO and GRPO on PPO's pieces: the first update is the policy gradient recomputed row by row without
padding, a group whose rewards are all equal changes nothing, and a short run learns a probe reward."""

import copy

import numpy as np
import pytest
import torch

from rlhf_lib.critic_free import CriticFreeConfig, critic_free_iteration
from rlhf_lib.lm import load_model, sample
from rlhf_lib.reviews import PROMPTS
from rlhf_lib.rlhf import RLHFConfig, make_setup, train_rlhf


def length_score(texts, batch=None):
    """A reward that differs within a group: the text's length in characters, mod 7, over 7."""
    return torch.tensor([(len(t) % 7) / 7 for t in texts])


def by_hand_advantages(r: list[float], k: int, method: str) -> list[float]:
    """One loop per group, straight from the definitions."""
    out = []
    for g in range(0, len(r), k):
        group = r[g : g + k]
        mean = sum(group) / k
        for i, ri in enumerate(group):
            if method == "rloo":
                out.append(ri - sum(group[j] for j in range(k) if j != i) / (k - 1))
            else:
                std = (sum((x - mean) ** 2 for x in group) / (k - 1)) ** 0.5
                out.append((ri - mean) / (std + 1e-4))
    return out


def policy_gradient_by_hand(lm, batch, advantages: list[float], logp_ref=None, beta: float = 0.0) -> torch.Tensor:
    """d/dw of -mean_i (1 / T_i) sum_t [A_i log pi(y_it | x_i, y_i<t) - beta k3_it], one unpadded row at a time:
    the gradient of the clipped surrogate at ratio 1 (+ GRPO's KL term, k3 = e^d - d - 1 with
    d = log pi_ref - log pi), aggregated per sequence. Returns the gradient of the token embeddings."""
    lm.zero_grad()
    total = 0.0
    for i in range(len(batch.texts)):
        prompt = batch.prompt_ids[i][batch.prompt_mask[i].bool()]
        response = batch.response_ids[i][batch.response_mask[i].bool()]
        ids = torch.cat([prompt, response])[None]  # (1, P_i + T_i): no padding at all
        logits = lm(input_ids=ids).logits[0, len(prompt) - 1 : -1] / batch.temperature  # (T_i, V)
        logp = logits.log_softmax(-1).gather(-1, response[:, None]).squeeze(-1)  # (T_i,)
        total = total - advantages[i] * logp.sum() / len(response)
        if beta:
            d = logp_ref[i][: len(response)] - logp
            total = total + beta * (torch.exp(d) - d - 1).sum() / len(response)
    (total / len(batch.texts)).backward()
    return lm.get_input_embeddings().weight.grad.clone()


@pytest.mark.parametrize("method, kl, beta", [("rloo", "reward", 0.0), ("grpo", "reward", 0.0), ("grpo", "loss", 0.5)])
def test_first_update_is_the_policy_gradient_recomputed_by_hand(method, kl, beta):
    policy, tok = load_model()
    reference = load_model()[0]
    with torch.no_grad():  # a reference a little off the policy, so GRPO's KL term has a gradient
        for p in reference.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    cfg = RLHFConfig(batch_size=8, responses_per_prompt=4, minibatches=1, epochs=1, max_new_tokens=12,
                     max_grad_norm=1e9, unfinished_penalty=None, stop_at="sentence", seed=3)
    setup = make_setup(policy, tok, reference, length_score, cfg)
    before = copy.deepcopy(setup.model.lm)
    w0 = policy.get_input_embeddings().weight.detach().clone()
    setup.opt = torch.optim.SGD(setup.model.parameters(), lr=1.0)  # so the step is minus the gradient
    it = critic_free_iteration(CriticFreeConfig(method, kl=kl))(setup, PROMPTS[:2], beta)

    advantages = by_hand_advantages(length_score(it.batch.texts).tolist(), 4, method)
    assert np.allclose(it.advantages.sum(-1) / it.batch.mask.sum(-1), advantages, atol=1e-6)
    assert any(abs(a) > 0.1 for a in advantages), "the probe reward must differ within a group"
    expected = policy_gradient_by_hand(before, it.batch, advantages, it.logp_ref, beta)
    step = w0 - policy.get_input_embeddings().weight.detach()
    assert torch.allclose(step, expected, atol=1e-6, rtol=1e-3), float((step - expected).abs().max())


def test_a_group_of_equal_rewards_changes_nothing():
    """Every response to a prompt scored the same: each advantage is exactly 0, so no weight moves (a method
    without the group baseline, using the reward itself, would move them)."""
    policy, tok = load_model()
    cfg = RLHFConfig(batch_size=8, responses_per_prompt=4, minibatches=2, epochs=2, max_new_tokens=12,
                     stop_at="sentence")
    setup = make_setup(policy, tok, load_model()[0], lambda texts, batch: torch.full((len(texts),), 0.7), cfg)
    w0 = [p.detach().clone() for p in policy.parameters()]
    for method in ("rloo", "grpo"):
        it = critic_free_iteration(CriticFreeConfig(method, kl="reward"))(setup, PROMPTS[:2], 0.0)
        assert torch.equal(it.advantages, torch.zeros_like(it.advantages))
    assert all(torch.equal(a, b.detach()) for a, b in zip(w0, policy.parameters()))


@pytest.mark.parametrize("method", ["ppo", "rloo", "grpo"])
def test_one_update_loop_reads_the_reference_once_a_rollout(method):
    """PPO and the critic-free methods share one minibatch loop (`rlhf.minibatch_updates`). With the losses that
    read the reference's logits on (the exact KL, the implausible-token penalty), the reference runs once a
    rollout in every method: the critic-free copy of the loop once ran it again for every minibatch (5 passes
    here) while PPO's had been changed to keep the rollout's logits."""
    from rlhf_lib.rlhf import ppo_iteration

    policy, tok = load_model()
    reference = load_model()[0]
    passes = []
    reference.register_forward_hook(lambda module, args, out: passes.append(1))
    cfg = RLHFConfig(batch_size=8, responses_per_prompt=4, minibatches=2, epochs=2, max_new_tokens=12,
                     stop_at="sentence", kl_loss_coef=0.1, implausible_coef=1.0)
    setup = make_setup(policy, tok, reference, length_score, cfg)
    step = ppo_iteration if method == "ppo" else critic_free_iteration(CriticFreeConfig(method))
    stats = step(setup, PROMPTS[:2], 0.1).stats
    assert len(passes) == 1, f"{len(passes)} reference forward passes for one rollout"
    assert stats["kl_loss"] >= 0 and 0 <= stats["implausible"] <= 1  # the anchors' figures, in every method


def test_settings_are_checked_before_any_work():
    with pytest.raises(ValueError, match="method"):
        CriticFreeConfig("ppo")
    with pytest.raises(ValueError, match="aggregation"):
        CriticFreeConfig("grpo", aggregation="max")
    with pytest.raises(ValueError, match="kl"):
        CriticFreeConfig("rloo", kl="both")
    assert CriticFreeConfig("rloo").kl == "reward" and CriticFreeConfig("grpo").kl == "loss"
    policy, tok = load_model()
    setup = make_setup(policy, tok, load_model()[0], length_score, RLHFConfig(batch_size=4, minibatches=1))
    with pytest.raises(ValueError, match="responses_per_prompt"):
        critic_free_iteration(CriticFreeConfig("rloo"))(setup, PROMPTS[:4], 0.1)
    setup = make_setup(policy, tok, load_model()[0], length_score,
                       RLHFConfig(batch_size=4, minibatches=1, responses_per_prompt=2, sentence_rewards=True))
    with pytest.raises(ValueError, match="sentence_rewards"):
        critic_free_iteration(CriticFreeConfig("grpo"))(setup, PROMPTS[:2], 0.1)


@pytest.mark.parametrize("method", ["rloo", "grpo"])
def test_critic_free_methods_learn_a_probe_reward(method):
    """Reward 1 when the response says "not" (a fifth of the course model's sentences do), as PPO's test."""
    def says_not(texts, batch):
        return torch.tensor([float(" not" in t[len(p):]) for t, p in zip(texts, batch.prompts)])

    def rate(policy, tok):
        s = sample(policy, tok, [PROMPTS[i % len(PROMPTS)] for i in range(128)], 24, seed=7, stop_at="sentence")
        return np.mean([" not" in r for r in s.responses])

    policy, tok = load_model()
    before = rate(policy, tok)
    cfg = RLHFConfig(iterations=5, batch_size=16, responses_per_prompt=4, minibatches=2, epochs=4,
                     max_new_tokens=24, lr=5e-4, kl_coef=0.02, target_kl=None, stop_at="sentence")
    result = train_rlhf(policy, tok, None, None, load_model()[0], cfg, progress=False, score_fn=says_not,
                        iteration_fn=critic_free_iteration(CriticFreeConfig(method)))
    after = rate(policy, tok)
    assert before < 0.35 and after > before + 0.35, (before, after, result.series("score"))
