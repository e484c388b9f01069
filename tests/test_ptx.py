"""PPO-ptx: the pretraining loss against a plain cross-entropy, the term inside `ppo_update`, and a tiny run
showing it keeps the policy's language closer to the review corpus than the same run without it."""

import copy
import math

import pytest
import torch

from rlhf_lib.lm import load_model
from rlhf_lib.pretrain import pack
from rlhf_lib.reviews import generate_reviews
from rlhf_lib.rlhf import (
    RLHFConfig,
    advantages_and_returns,
    kl_shaped_rewards,
    make_setup,
    ppo_update,
    ptx_corpus,
    ptx_loss,
    reference_logprobs,
    rollout,
    score_responses,
    train_rlhf,
    value_estimates,
)


def plain_cross_entropy(lm, blocks):
    """Row by row, token by token: -log softmax of the next token, averaged over every predicted token."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in blocks:
            logits = lm(input_ids=row[None, :-1]).logits[0].double()  # (T, V)
            for t in range(len(row) - 1):
                total -= float(torch.log_softmax(logits[t], -1)[row[t + 1]])
                count += 1
    return total / count


def test_ptx_loss_is_the_plain_next_token_cross_entropy():
    lm, tok = load_model()
    lm.eval()
    blocks = ptx_corpus(tok, RLHFConfig(ptx_reviews=40, ptx_block_size=32, ptx_coef=1.0))[:4]
    assert blocks.shape == (4, 33)
    with torch.no_grad():
        got = float(ptx_loss(lm, blocks))
    assert abs(got - plain_cross_entropy(lm, blocks)) < 1e-4
    unshifted = torch.cat([blocks[:, 1:], blocks[:, -1:]], 1)  # a plausible mistake: predicting the same token
    assert abs(got - plain_cross_entropy(lm, torch.stack([torch.cat([r[:1], r[:-1]]) for r in unshifted]))) > 1e-2


def zero_score(texts, batch):
    return torch.zeros(len(texts))


def test_ppo_update_adds_the_ptx_term_on_seeded_blocks():
    cfg = RLHFConfig(batch_size=8, minibatches=1, epochs=1, max_new_tokens=12, ptx_coef=0.5, ptx_reviews=40,
                     ptx_batch_size=3, ptx_block_size=32)
    policy, tok = load_model()
    reference, _ = load_model()
    setup = make_setup(policy, tok, reference, zero_score, cfg)
    before = copy.deepcopy(policy).eval()
    batch = rollout(policy, tok, ["The plot was", "", "Overall,", "I expected"] * 2, cfg, setup.sampler)
    score = score_responses(zero_score, batch, cfg.unfinished_penalty)
    values = value_estimates(setup.model, batch, cfg.temperature)
    logp_ref = reference_logprobs(reference, batch, cfg.temperature)
    adv, ret = advantages_and_returns(kl_shaped_rewards(score, batch.logp, logp_ref, batch.mask, 0.1), values,
                                      batch.mask, cfg.gamma, cfg.lam)
    shuffler = torch.Generator().set_state(setup.shuffler.get_state())
    stats = ppo_update(setup, batch, adv, ret, values)
    torch.randperm(len(batch.texts), generator=shuffler)  # the minibatch order, then the ptx rows
    rows = torch.randint(len(setup.ptx_blocks), (3,), generator=shuffler)
    assert abs(stats["ptx_loss"] - plain_cross_entropy(before, setup.ptx_blocks[rows])) < 1e-4
    assert stats["first_ratio_gap"] < 1e-5  # the ratio still starts at exactly 1
    assert "ptx_loss" not in ppo_update(make_setup(before, tok, reference, zero_score, RLHFConfig(
        batch_size=8, minibatches=1, epochs=1, max_new_tokens=12)), batch, adv, ret, values)


def short_and_exclaiming(texts, batch):
    """A reward that pulls the language away from the corpus: exclamation marks, few words."""
    return torch.tensor([t.count("!") - 0.1 * len(t.split()) for t in texts], dtype=torch.float32)


def run_with(ptx_coef):
    """(held-out LM loss, grammatical rate of 200 whole reviews from the start of text) after a short run toward
    `short_and_exclaiming`, and the same for the reference."""
    from rlhf_lib.evaluate import grammatical_rate
    from rlhf_lib.whole_reviews import sample_whole_reviews

    policy, tok = load_model()
    reference, _ = load_model()
    cfg = RLHFConfig(iterations=4, batch_size=16, minibatches=2, epochs=2, max_new_tokens=24, lr=1e-3,
                     kl_coef=0.0, target_kl=None, stop_at="text", ptx_coef=ptx_coef, ptx_reviews=300)
    train_rlhf(policy, tok, None, None, reference, cfg, prompts=[""], progress=False, score_fn=short_and_exclaiming)
    heldout = pack(tok, generate_reviews(40, seed=12345), 32)[:16]
    figures = []
    for model in (policy.eval(), reference.eval()):
        with torch.no_grad():
            loss = float(ptx_loss(model, heldout))
        starts, responses, _ = sample_whole_reviews(model, tok, [""] * 200, 64, seed=7)
        figures.append((loss, grammatical_rate(responses)))
    return figures


@pytest.mark.slow
def test_ptx_keeps_the_language_of_review_text():
    """PPO-ptx against a reward that pulls away from the corpus: without ptx the held-out LM loss rises and
    whole reviews sampled from the start of text lose grammar; with ptx both drops are at least halved."""
    (with_loss, with_grammar), (base_loss, base_grammar) = run_with(1.0)
    (without_loss, without_grammar), _ = run_with(0.0)
    assert without_loss - base_loss > 0.05
    assert with_loss - base_loss < 0.5 * (without_loss - base_loss)
    assert base_grammar - without_grammar > 0.05, (base_grammar, without_grammar)
    assert base_grammar - with_grammar < 0.5 * (base_grammar - without_grammar), (base_grammar, with_grammar,
                                                                                  without_grammar)


def update_of_a_moved_policy(cfg):
    """One ppo_update of a policy moved a little away from the reference, on six responses; returns the update's
    figures and, per predicted response token, the moved policy's and the reference's log-probabilities over the
    vocabulary from plain forward passes of each response alone, in double precision; and the pieces to rerun
    the update."""
    policy, tok = load_model()
    reference, _ = load_model()
    with torch.no_grad():  # move the policy away from the reference so the KL is not 0
        for p in policy.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    moved = copy.deepcopy(policy).eval()
    setup = make_setup(policy, tok, reference, zero_score, cfg)
    batch = rollout(policy, tok, ["The plot was", "", "I expected"] * 2, cfg, setup.sampler)
    values = value_estimates(setup.model, batch, cfg.temperature)
    logp_ref = reference_logprobs(reference, batch, cfg.temperature)
    adv, ret = advantages_and_returns(kl_shaped_rewards(zero_score(batch.texts, batch), batch.logp, logp_ref,
                                                        batch.mask, 0.1), values, batch.mask, cfg.gamma, cfg.lam)
    stats = ppo_update(setup, batch, adv, ret, values)
    steps = []
    reference.eval()
    with torch.no_grad():
        for i in range(len(batch.texts)):
            prompt = batch.prompt_ids[i][batch.prompt_mask[i].bool()]
            response = batch.response_ids[i][batch.response_mask[i].bool()]
            ids = torch.cat([prompt, response])[None]
            lp = torch.log_softmax(moved(input_ids=ids).logits[0].double(), -1)
            lq = torch.log_softmax(reference(input_ids=ids).logits[0].double(), -1)
            steps += [(lp[t], lq[t]) for t in range(len(prompt) - 1, len(prompt) + len(response) - 1)]
    plain = make_setup(copy.deepcopy(moved), tok, reference, zero_score, RLHFConfig(batch_size=6, minibatches=1,
                                                                                   epochs=1, max_new_tokens=10))
    return stats, steps, lambda: ppo_update(plain, batch, adv, ret, values)


def test_exact_kl_in_the_loss_is_the_per_step_kl_over_the_vocabulary():
    """kl_loss_coef > 0: the update's kl_loss is the mean over response tokens of sum_v p (log p - log p_ref),
    recomputed here response by response without padding, in double precision, from two plain forward passes."""
    cfg = RLHFConfig(batch_size=6, minibatches=1, epochs=1, max_new_tokens=10, kl_loss_coef=0.7, stop_at="text")
    stats, steps, without = update_of_a_moved_policy(cfg)
    kl = sum(float((lp.exp() * (lp - lq)).sum()) for lp, lq in steps) / len(steps)
    assert kl > 1e-3
    assert abs(stats["kl_loss"] - kl) < 1e-4 * max(1.0, kl), (stats["kl_loss"], kl)
    assert "kl_loss" not in without()


def test_implausible_mass_is_the_policys_probability_of_what_the_reference_almost_never_writes():
    """implausible_coef > 0: the update's figure is the mean over response tokens of the policy's probability
    summed over the tokens the reference gives less than implausible_below, recomputed response by response,
    token by token of the vocabulary, without padding, from two plain forward passes."""
    cfg = RLHFConfig(batch_size=6, minibatches=1, epochs=1, max_new_tokens=10, implausible_coef=3.0,
                     implausible_below=0.01, stop_at="text")
    stats, steps, without = update_of_a_moved_policy(cfg)
    mass = sum(sum(float(p) for p, q in zip(lp.exp(), lq.exp()) if float(q) < 0.01) for lp, lq in steps) / len(steps)
    assert 1e-3 < mass < 0.5
    assert math.isclose(stats["implausible"], mass, rel_tol=1e-4, abs_tol=1e-6), (stats["implausible"], mass)
    assert "implausible" not in without()
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="implausible_below"):
            RLHFConfig(implausible_below=bad)
    with pytest.raises(ValueError, match="implausible_coef"):
        RLHFConfig(implausible_coef=-1.0)


@pytest.mark.usefixtures("pinned_threads")
def test_the_references_logits_kept_from_the_rollout_give_the_same_update():
    """ppo_iteration keeps the reference's logits of the whole rollout for the exact KL and the implausible
    penalty; the same update with each minibatch computing its own from the reference gives the same figures
    and the same weights."""
    cfg = RLHFConfig(batch_size=6, minibatches=2, epochs=2, max_new_tokens=10, kl_loss_coef=0.5,
                     implausible_coef=3.0, implausible_below=0.01, stop_at="text")
    policy, tok = load_model()
    reference, _ = load_model()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    setups = [make_setup(copy.deepcopy(policy), tok, reference, zero_score, cfg) for _ in range(2)]
    batch = rollout(policy, tok, ["The plot was", "", "I expected"] * 2, cfg, torch.Generator().manual_seed(2))
    values = value_estimates(setups[0].model, batch, cfg.temperature)
    logp_ref, logits_ref = reference_logprobs(reference, batch, cfg.temperature, keep_logits=True)
    torch.testing.assert_close(logp_ref, reference_logprobs(reference, batch, cfg.temperature))
    adv, ret = advantages_and_returns(kl_shaped_rewards(zero_score(batch.texts, batch), batch.logp, logp_ref,
                                                        batch.mask, 0.1), values, batch.mask, cfg.gamma, cfg.lam)
    kept = ppo_update(setups[0], batch, adv, ret, values, logits_ref)
    own = ppo_update(setups[1], batch, adv, ret, values)
    assert kept["implausible"] > 0 and kept["kl_loss"] > 0
    for key in own:
        assert math.isclose(kept[key], own[key], rel_tol=1e-4, abs_tol=1e-6), key
    for p, q in zip(setups[0].model.parameters(), setups[1].model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
