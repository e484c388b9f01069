"""RLOO and GRPO advantages, loss aggregations and KL placements: hand computations on small tensors, groups
of equal rewards, and TRL 1.16's own GRPO loss and std on the same tensors."""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlhf_lib.group_advantages import aggregate, grpo_advantages, grpo_token_loss, k3_kl, kl_in_reward, rloo_advantages

REWARDS = torch.tensor([1.0, 2.0, 6.0, 3.0, 3.0, 3.0])  # two prompts, k = 3; the second group all equal


def test_rloo_by_hand():
    # group 1: 1 - (2+6)/2 = -3, 2 - (1+6)/2 = -1.5, 6 - (1+2)/2 = 4.5; group 2: 0
    torch.testing.assert_close(rloo_advantages(REWARDS, 3), torch.tensor([-3.0, -1.5, 4.5, 0.0, 0.0, 0.0]))
    # k = 2: each response against the other one
    torch.testing.assert_close(rloo_advantages(torch.tensor([0.0, 1.0, 5.0, 2.0]), 2),
                               torch.tensor([-1.0, 1.0, 3.0, -3.0]))


def test_rloo_is_k_over_k_minus_1_times_the_centred_reward():
    r = torch.randn(40, generator=torch.Generator().manual_seed(0))
    k = 5
    centred = (r.view(-1, k) - r.view(-1, k).mean(-1, keepdim=True)).view(-1)
    torch.testing.assert_close(rloo_advantages(r, k), centred * k / (k - 1))


def test_grpo_by_hand():
    # group 1: mean 3, unbiased std sqrt(((-2)^2 + (-1)^2 + 3^2) / 2) = sqrt(7)
    s = 7 ** 0.5
    want = torch.tensor([-2 / (s + 1e-4), -1 / (s + 1e-4), 3 / (s + 1e-4), 0.0, 0.0, 0.0])
    torch.testing.assert_close(grpo_advantages(REWARDS, 3), want)
    torch.testing.assert_close(grpo_advantages(REWARDS, 3, scale="none"),
                               torch.tensor([-2.0, -1.0, 3.0, 0.0, 0.0, 0.0]))


@pytest.mark.parametrize("fn", [rloo_advantages, grpo_advantages, lambda r, k: grpo_advantages(r, k, "none")])
def test_equal_rewards_give_zero_advantage_and_no_nan(fn):
    a = fn(torch.full((8,), 0.7), 4)
    assert torch.isfinite(a).all() and (a == 0).all()


def test_grpo_std_equals_trl_nanstd():
    """TRL's group statistics: advantages = (r - group mean) / (nanstd(group) + 1e-4), TRL's free-standing nanstd."""
    from trl.trainer.utils import nanstd

    r = torch.randn(24, generator=torch.Generator().manual_seed(1)) * 3
    k = 6
    mean = r.view(-1, k).mean(1).repeat_interleave(k)
    std = nanstd(r.view(-1, k), dim=1).repeat_interleave(k)
    torch.testing.assert_close(grpo_advantages(r, k), (r - mean) / (std + 1e-4))


def test_bad_groups_are_named():
    with pytest.raises(ValueError, match="groups of k=4"):
        grpo_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(torch.zeros(6), 1)
    with pytest.raises(ValueError, match="scale"):
        grpo_advantages(torch.zeros(6), 3, scale="batchwise")
    with pytest.raises(ValueError, match="max_length"):
        aggregate(torch.zeros(2, 3), torch.ones(2, 3), "constant")


# ---- aggregation


LOSS = torch.tensor([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])


def test_aggregations_by_hand():
    assert float(aggregate(LOSS, MASK, "sequence")) == pytest.approx(((1 + 2 + 3) / 3 + 4 / 1) / 2)  # 3.0
    assert float(aggregate(LOSS, MASK, "token")) == pytest.approx((1 + 2 + 3 + 4) / 4)  # 2.5
    assert float(aggregate(LOSS, MASK, "constant", max_length=8)) == pytest.approx((1 + 2 + 3 + 4) / (2 * 8))


def test_kl_placements_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -3.0, -3.0]])
    logp_ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.3, -0.2, -0.2]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # k3 = exp(d) - d - 1 with d = logp_ref - logp
    d = torch.tensor([[-0.5, 1.0, 0.0], [-0.2, 2.8, 2.8]])
    torch.testing.assert_close(k3_kl(logp, logp_ref), d.exp() - d - 1)
    assert (k3_kl(logp, logp_ref) >= 0).all()
    rewards, kl = kl_in_reward(torch.tensor([1.0, 2.0]), logp, logp_ref, mask, beta=0.5)
    torch.testing.assert_close(kl, torch.tensor([0.5 + -1.0, 0.2]))  # sum of (logp - logp_ref) over real tokens
    torch.testing.assert_close(rewards, torch.tensor([1.0 - 0.5 * -0.5, 2.0 - 0.5 * 0.2]))


# ---- the GRPO loss against TRL 1.16


def trl_grpo_loss(logp, logp_old, logp_ref, advantages, mask, beta, loss_type, max_length, clip_eps):
    """TRL's GRPOTrainer._compute_loss on given log-probs, through a stub trainer."""
    from trl import GRPOTrainer

    reduce_sum = lambda t, reduction="sum": t
    trainer = SimpleNamespace(
        top_entropy_quantile=1.0, aux_loss_enabled=False, off_policy_mask_threshold=None, loss_type=loss_type,
        importance_sampling_level="token", beta=beta, args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
        epsilon_low=clip_eps, epsilon_high=clip_eps, use_vllm=False, vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=False), current_gradient_accumulation_steps=1, max_completion_length=max_length,
        _entropy_bonus_enabled=False, accelerator=SimpleNamespace(reduce=reduce_sum, gather=lambda x: x),
        _metrics=defaultdict(lambda: defaultdict(list)),
        _get_per_token_logps_and_entropies=lambda *a, **kw: (logp, torch.zeros_like(logp), None))
    B, T = logp.shape
    inputs = dict(prompt_ids=torch.zeros(B, 2, dtype=torch.long), prompt_mask=torch.ones(B, 2, dtype=torch.long),
                  completion_ids=torch.zeros(B, T, dtype=torch.long), completion_mask=mask, advantages=advantages,
                  old_per_token_logps=logp_old, ref_per_token_logps=logp_ref)
    return GRPOTrainer._compute_loss(trainer, None, inputs)


@pytest.mark.parametrize("how,trl_type", [("sequence", "grpo"), ("token", "bnpo"), ("constant", "dr_grpo")])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_loss_equals_trl(how, trl_type, beta):
    g = torch.Generator().manual_seed(5)
    B, T, k = 8, 7, 4
    mask = (torch.arange(T) < torch.randint(1, T + 1, (B,), generator=g)[:, None]).long()
    logp_old = -torch.rand(B, T, generator=g) * 3
    logp = logp_old + torch.randn(B, T, generator=g) * 0.3  # ratios inside and outside the clip range
    logp_ref = logp_old + torch.randn(B, T, generator=g) * 0.5
    advantages = grpo_advantages(torch.randn(B, generator=g), k, scale="none" if how == "constant" else "group")
    want = trl_grpo_loss(logp, logp_old, logp_ref, advantages, mask, beta, trl_type, T + 3, 0.2)
    mine = aggregate(grpo_token_loss(logp, logp_old, advantages, 0.2, logp_ref, beta), mask, how, max_length=T + 3)
    torch.testing.assert_close(mine, want)
    other = "token" if how != "token" else "sequence"  # a wrong aggregation fails the same comparison
    wrong = aggregate(grpo_token_loss(logp, logp_old, advantages, 0.2, logp_ref, beta), mask, other, max_length=T + 3)
    assert abs(float(wrong) - float(want)) > 1e-4


def test_k3_as_a_loss_follows_the_other_kl_and_k2_the_objectives():
    """Notebooks 04 and 10: differentiated as a loss on tokens sampled from pi (their probabilities held fixed),
    k3 = rho - 1 - log rho has the expected gradient of KL(pi_ref || pi), and k2 = (log rho)^2 / 2 that of
    KL(pi || pi_ref). Checked exactly on a small vocabulary: the expectation is a sum over it."""
    torch.manual_seed(0)
    logits, logp_ref = torch.randn(7, requires_grad=True), torch.randn(7).log_softmax(0)

    def expected_gradient(per_token):
        logp = logits.log_softmax(0)
        return torch.autograd.grad((logp.exp().detach() * per_token(logp)).sum(), logits)[0]

    def gradient(kl):
        return torch.autograd.grad(kl(logits.log_softmax(0)), logits)[0]

    k3_grad = expected_gradient(lambda logp: k3_kl(logp, logp_ref))
    k2_grad = expected_gradient(lambda logp: 0.5 * (logp_ref - logp) ** 2)
    forward = gradient(lambda logp: (logp_ref.exp() * (logp_ref - logp)).sum())  # KL(pi_ref || pi)
    reverse = gradient(lambda logp: (logp.exp() * (logp - logp_ref)).sum())  # KL(pi || pi_ref)
    torch.testing.assert_close(k3_grad, forward)
    torch.testing.assert_close(k2_grad, reverse)
    assert not torch.allclose(k3_grad, reverse, atol=1e-3)
