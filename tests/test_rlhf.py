"""PPO-RLHF: each piece against an independent computation, the KL controller, exact first ratios, KL sign,
determinism, resuming, a learner's loop plugged in, and a run that learns a probe reward."""

import copy
import math

import numpy as np
import pytest
import torch

from rlhf_lib.exercises.rlhf_loop import compare_ppo_iteration
from rlhf_lib.lm import load_model, logprobs_of, sample, stop_ids
from rlhf_lib.reviews import PROMPTS
from rlhf_lib.reward_model import make_reward_model
from rlhf_lib.rlhf import (
    AdaptiveKLController,
    PolicyWithValue,
    RLHFConfig,
    advantages_and_returns,
    iteration_figures,
    kl_shaped_rewards,
    last_token_dones,
    make_setup,
    ppo_iteration,
    ppo_update,
    reference_logprobs,
    rollout,
    score_responses,
    sentence_shaping,
    train_rlhf,
    value_estimates,
)

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


def test_last_token_dones_by_hand():
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    want = torch.tensor([[0.0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]])
    torch.testing.assert_close(last_token_dones(mask), want)


def test_adaptive_kl_controller_follows_ziegler():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=10_000)
    assert ctl.update(9.0, 512) == pytest.approx(0.2 * (1 + 0.2 * 512 / 10_000))  # error clipped at +0.2
    beta = ctl.beta
    assert ctl.update(5.4, 512) == pytest.approx(beta * (1 - 0.1 * 512 / 10_000))
    # in a run with a KL far above the target, beta only grows
    ctl = AdaptiveKLController(0.05, target=0.01, horizon=100)
    betas = [0.05] + [ctl.update(1.0, 32) for _ in range(6)]
    assert all(b1 > b0 for b0, b1 in zip(betas, betas[1:]))


def test_held_controller_lowers_beta_only_after_the_kl_first_reaches_the_target():
    """hold=True: under target before the KL ever reached it, beta stays; over target it grows as usual;
    once reached, an under-target KL lowers it by Ziegler's rule. Each step by hand."""
    ctl = AdaptiveKLController(0.3, target=2.0, horizon=128, hold=True)
    assert ctl.update(0.5, 64) == 0.3  # error -0.2, held
    assert ctl.update(1.9, 64) == 0.3  # error -0.05, held
    assert ctl.update(2.2, 64) == pytest.approx(0.3 * (1 + 0.1 * 64 / 128))  # reached: +0.1
    beta = ctl.beta
    assert ctl.update(1.0, 64) == pytest.approx(beta * (1 - 0.2 * 64 / 128))  # now lowered
    free = AdaptiveKLController(0.3, target=2.0, horizon=128)
    assert free.update(0.5, 64) == pytest.approx(0.3 * (1 - 0.2 * 64 / 128))  # without hold: lowered at once
    # a resumed run's controller remembers whether the KL ever reached the target, and behaves as the unbroken one
    kls = [0.5, 2.2, 1.0, 0.8]
    straight = AdaptiveKLController(0.3, target=2.0, horizon=128, hold=True)
    betas = [straight.update(kl, 64) for kl in kls]
    resumed = AdaptiveKLController(0.3, target=2.0, horizon=128, hold=True)
    resumed.restore(betas[1], kls[:2])
    assert [resumed.update(kl, 64) for kl in kls[2:]] == pytest.approx(betas[2:]) and betas[3] < betas[2]
    early = AdaptiveKLController(0.3, target=2.0, horizon=128, hold=True)
    early.restore(0.3, [0.5, 1.0])
    assert early.update(0.8, 64) == 0.3  # not yet reached: still held


def test_warmed_up_controller_aims_at_a_target_rising_in_a_straight_line():
    """warmup=4: the targets of updates 1..6 are 2 x (1/4, 2/4, 3/4, 1, 1, 1); each step is Ziegler's rule
    against that update's target, by hand; a KL on the rising line leaves beta where it was, where the plain
    controller lowers it; a resumed controller carries on the line."""
    ctl = AdaptiveKLController(0.3, target=2.0, horizon=128, warmup=4)
    assert [ctl.target_at(i) for i in range(1, 7)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert ctl.update(0.5, 64) == pytest.approx(0.3)  # on the line: error 0
    assert ctl.update(1.1, 64) == pytest.approx(0.3 * (1 + 0.1 * 64 / 128))  # 1.1 / 1.0 - 1 = +0.1
    beta = ctl.beta
    assert ctl.update(0.3, 64) == pytest.approx(beta * (1 - 0.2 * 64 / 128))  # far under 1.5: clipped at -0.2
    beta = ctl.beta
    assert ctl.update(1.9, 64) == pytest.approx(beta * (1 - 0.05 * 64 / 128))  # the whole budget from now on
    plain = AdaptiveKLController(0.3, target=2.0, horizon=128)
    assert plain.update(0.5, 64) == pytest.approx(0.3 * (1 - 0.2 * 64 / 128))
    kls = [0.5, 1.1, 0.3, 1.9, 2.4]
    straight = AdaptiveKLController(0.3, target=2.0, horizon=128, warmup=4)
    betas = [straight.update(kl, 64) for kl in kls]
    resumed = AdaptiveKLController(0.3, target=2.0, horizon=128, warmup=4)
    resumed.restore(betas[1], kls[:2])
    assert [resumed.update(kl, 64) for kl in kls[2:]] == pytest.approx(betas[2:])
    with pytest.raises(ValueError, match="kl_warmup"):
        RLHFConfig(kl_warmup=-1)


def test_a_kl_over_the_budget_multiplies_beta_by_one_and_a_half_on_top_of_the_rule():
    """target 2.5, budget 3: a KL of 2.9 is Ziegler's rule alone (error +0.16); 3.2 is the rule's clipped +0.2
    step, then x1.5; under the set point the line does nothing. A budget under the target is refused."""
    ctl = AdaptiveKLController(0.1, target=2.5, horizon=128, budget=3.0)
    assert ctl.update(2.9, 64) == pytest.approx(0.1 * (1 + 0.16 * 64 / 128))
    beta = ctl.beta
    assert ctl.update(3.2, 64) == pytest.approx(beta * (1 + 0.2 * 64 / 128) * 1.5)
    beta = ctl.beta
    assert ctl.update(2.0, 64) == pytest.approx(beta * (1 - 0.2 * 64 / 128))
    free = AdaptiveKLController(0.1, target=2.5, horizon=128)
    assert free.update(3.2, 64) == pytest.approx(0.1 * (1 + 0.2 * 64 / 128))
    for bad in (dict(kl_budget=2.0, target_kl=2.5), dict(kl_budget=3.0, target_kl=None)):
        with pytest.raises(ValueError, match="kl_budget"):
            RLHFConfig(**bad)


def test_train_rlhf_pulls_beta_back_when_a_batch_is_over_the_budget(reward):
    """The betas a run logs, recomputed from its own KLs by the rule and the 1.5 factor; the policy moves far
    past a tiny budget after the first update (a KL of 0 there), so both branches are taken."""
    result, _ = run(reward, iterations=4, batch_size=4, minibatches=1, epochs=1, max_new_tokens=6, lr=3e-3,
                    kl_coef=0.1, target_kl=1e-3, kl_budget=2e-3, kl_horizon=64)
    betas, kls = result.series("beta"), result.series("kl_k1")
    over = kls[:-1] > 2e-3
    want = [b * (1 + np.clip(kl / 1e-3 - 1, -0.2, 0.2) * 4 / 64) * (1.5 if o else 1.0)
            for b, kl, o in zip(betas[:-1], kls[:-1], over)]
    assert betas[1:] == pytest.approx(want, rel=1e-9) and over.any() and not over.all(), (betas, kls)


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


@pytest.mark.usefixtures("pinned_threads")
def test_same_seed_same_numbers(reward):
    a, _ = run(reward)
    b, _ = run(reward)
    strip = lambda h: {k: v for k, v in h.items() if k != "seconds"}
    assert [strip(h) for h in a.history] == [strip(h) for h in b.history]
    assert a.samples == b.samples
    c, _ = run(reward, seed=1)
    assert c.samples != a.samples


RECIPE = dict(stop_at="text", sentence_rewards=True, implausible_coef=10.0, reward_transform="logsigmoid",
              value_lr_scale=30.0, value_clip_eps=None, target_kl=0.02, kl_budget=0.03, kl_warmup=2, kl_horizon=64)
"""the whole-review recipe's options, on a small run whose KL crosses its (tiny) budget"""


@pytest.mark.usefixtures("pinned_threads")
@pytest.mark.parametrize("options", [{}, RECIPE], ids=["defaults", "whole-review recipe"])
def test_resumed_run_matches_an_uninterrupted_one(reward, tmp_path, options):
    from transformers import AutoModelForCausalLM

    straight, policy_straight = run(reward, iterations=3, **options)
    policy, tok = load_model()
    reference, _ = load_model()
    cfg = RLHFConfig(iterations=3, **{**SMALL, **options})
    interrupted = RLHFConfig(iterations=3, **{**SMALL, **options})

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
    assert not options or straight.series("kl_k1")[1] > options["kl_budget"]  # the line crossed before the stop
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "policy")
    for p, q in zip(saved.state_dict().values(), policy_straight.state_dict().values()):
        torch.testing.assert_close(p, q)


def test_bad_settings_are_refused(reward, tmp_path):
    with pytest.raises(ValueError, match="minibatches"):
        RLHFConfig(batch_size=4, minibatches=8)
    with pytest.raises(ValueError, match="kl_coef"):
        RLHFConfig(kl_coef=-0.1)
    with pytest.raises(ValueError, match="responses_per_prompt"):
        RLHFConfig(batch_size=16, responses_per_prompt=3)
    for lr in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr must be a finite number"):
            RLHFConfig(lr=lr)
    policy, tok = load_model()
    reference, _ = load_model()
    with pytest.raises(ValueError, match="score_fn"):
        train_rlhf(policy, tok, None, None, reference, RLHFConfig(**SMALL))
    with pytest.raises(ValueError, match="split evenly"):
        train_rlhf(policy, tok, *reward, reference, RLHFConfig(**{**SMALL, "batch_size": 15}))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_rlhf(policy, tok, *reward, reference, RLHFConfig(**SMALL), checkpoint_dir=tmp_path, resume=True)


# ---- the pieces, each against an independent computation


def zero_score(texts, batch):
    return torch.zeros(len(texts))


def row_by_row(model, batch, b):
    """Logits predicting row b's real response tokens and the hidden states there, from a forward pass over
    that row alone: no padding, default positions."""
    p = batch.prompt_ids[b][batch.prompt_mask[b].bool()]
    n = int(batch.response_mask[b].sum())
    out = model(torch.cat([p, batch.response_ids[b, :n]])[None], output_hidden_states=True)
    return out.logits[0, len(p) - 1 : len(p) + n - 1], out.hidden_states[-1][0, len(p) - 1 : len(p) + n - 1], n


def test_rollout_samples_k_responses_per_prompt():
    policy, tok = load_model()
    cfg = RLHFConfig(batch_size=6, responses_per_prompt=3, max_new_tokens=16, temperature=0.8)
    batch = rollout(policy, tok, ["The plot was", "Overall,"], cfg, torch.Generator().manual_seed(0))
    assert batch.prompts == ["The plot was"] * 3 + ["Overall,"] * 3 and batch.group.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(set(batch.texts[:3])) > 1, "three draws for one prompt should not all be the same"
    stops = torch.tensor(list(stop_ids(tok, "sentence")))
    with torch.no_grad():
        for b in range(6):
            logits, _, n = row_by_row(policy, batch, b)
            logp = (logits / 0.8).log_softmax(-1)[torch.arange(n), batch.response_ids[b, :n]]
            torch.testing.assert_close(batch.logp[b, :n], logp, atol=1e-5, rtol=0)
            assert batch.finished[b] == bool(torch.isin(batch.response_ids[b, :n], stops).any())
            assert batch.texts[b] == batch.prompts[b] + tok.decode(batch.response_ids[b, :n], skip_special_tokens=True)
    assert (batch.logp * (1 - batch.mask)).abs().max() == 0


def test_scoring_pieces_by_hand_and_by_a_fresh_forward_pass():
    policy, tok = load_model()
    reference, _ = load_model()
    with torch.no_grad():  # a reference that differs from the policy
        reference.transformer.wte.weight.mul_(1.3)
    cfg = RLHFConfig(batch_size=4, max_new_tokens=3)  # 3 tokens: some responses are cut off
    batch = rollout(policy, tok, list(PROMPTS[:4]), cfg, torch.Generator().manual_seed(1))
    assert not batch.finished.all() and batch.finished.any(), "want both finished and unfinished responses"
    score = score_responses(lambda texts, b: torch.tensor([1.0, 2.0, 3.0, 4.0]), batch, 0.5)
    torch.testing.assert_close(score, torch.tensor([1.0, 2.0, 3.0, 4.0]) - 0.5 * (~batch.finished).float())
    with pytest.raises(ValueError, match="one number per text"):
        score_responses(lambda texts, b: torch.zeros(len(texts) + 1), batch, 0.5)
    model = PolicyWithValue(policy).eval()
    torch.nn.init.normal_(model.value_head.weight, std=0.1)
    logp_ref, values = reference_logprobs(reference, batch, 0.7), value_estimates(model, batch, 0.7)
    with torch.no_grad():
        for b in range(4):
            logits, _, n = row_by_row(reference.eval(), batch, b)
            expected = (logits / 0.7).log_softmax(-1)[torch.arange(n), batch.response_ids[b, :n]]
            torch.testing.assert_close(logp_ref[b, :n], expected, atol=1e-5, rtol=0)
            _, hidden, n = row_by_row(policy, batch, b)
            torch.testing.assert_close(values[b, :n], model.value_head(hidden).squeeze(-1), atol=1e-5, rtol=0)
    assert (logp_ref * (1 - batch.mask)).abs().max() == 0 and (values * (1 - batch.mask)).abs().max() == 0


def test_kl_shaped_rewards_against_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    lengths = [5, 1, 3]
    mask = torch.tensor([[1.0] * n + [0.0] * (5 - n) for n in lengths])
    logp, logp_ref, score = -torch.rand(3, 5, generator=g) * mask, -torch.rand(3, 5, generator=g) * mask, torch.randn(3)
    rewards = kl_shaped_rewards(score, logp, logp_ref, mask, beta=0.3)
    for i, n in enumerate(lengths):
        for t in range(5):
            expected = (-0.3 * (float(logp[i, t]) - float(logp_ref[i, t])) if t < n else 0.0) + \
                (float(score[i]) if t == n - 1 else 0.0)
            assert float(rewards[i, t]) == pytest.approx(expected, abs=1e-6)


def test_sentence_rewards_pay_each_sentence_its_change_of_score_by_the_text():
    """sentence_shaping on whole reviews, against the decoded text: the sentences are cut where the response's
    text has ".", "!" or "?", each prefix is scored (here: its length in characters), and the nonzero rewards of a
    row, in order, are phi_1, phi_2 - phi_1, ..., and -phi_k at the last token; every row sums to 0."""
    import re

    policy, tok = load_model()
    cfg = RLHFConfig(batch_size=6, max_new_tokens=64, stop_at="text")
    batch = rollout(policy, tok, ["", "The plot was", "", "I", "", "Overall,"], cfg, torch.Generator().manual_seed(3))
    shaping = sentence_shaping(lambda texts, b: torch.tensor([float(len(t)) for t in texts]), tok, batch)
    assert shaping.sum(-1).abs().max() < 1e-4 and (shaping * (1 - batch.mask)).abs().max() == 0
    assert sum(len(re.findall(r"[.!?]", r)) for r in batch.responses) > len(batch.responses), "want several sentences"
    for b in range(6):
        ends = [m.end() for m in re.finditer(r"[.!?]", batch.responses[b])]
        phi = [float(len(batch.prompts[b] + batch.responses[b][:e])) for e in ends]
        want = [phi[0]] + [y - x for x, y in zip(phi, phi[1:])] + [-phi[-1]]
        got = shaping[b][shaping[b] != 0].tolist()
        assert got == pytest.approx(want), batch.texts[b]
    # in an iteration the option adds the shaping to the rewards and nothing else changes (two fresh setups)
    length = lambda texts, b: torch.tensor([len(t) / 100 for t in texts])
    its = [ppo_iteration(make_setup(load_model()[0], tok, load_model()[0], length,
                                    replace_cfg(cfg, sentence_rewards=on, epochs=1, minibatches=1)),
                         ["", "I"] * 3, beta=0.1) for on in (False, True)]
    assert its[1].batch.texts == its[0].batch.texts
    torch.testing.assert_close(its[1].rewards, its[0].rewards + sentence_shaping(length, tok, its[0].batch))
    assert (its[1].rewards != its[0].rewards).any()


def test_advantages_are_gae_per_response_then_whitened_over_real_tokens():
    g = torch.Generator().manual_seed(0)
    lengths, gamma, lam = [4, 2, 6], 0.9, 0.8
    mask = torch.tensor([[1.0] * n + [0.0] * (6 - n) for n in lengths])
    rewards, values = torch.randn(3, 6, generator=g) * mask, torch.randn(3, 6, generator=g) * mask
    advantages, returns = advantages_and_returns(rewards, values, mask, gamma, lam)
    raw = []
    for i, n in enumerate(lengths):
        r, v = rewards[i, :n].double().tolist(), values[i, :n].double().tolist() + [0.0]  # the episode ends at n
        deltas = [r[t] + gamma * v[t + 1] - v[t] for t in range(n)]
        a = [sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, n)) for t in range(n)]
        torch.testing.assert_close(returns[i, :n].double(),
                                   torch.tensor(a, dtype=torch.float64) + torch.tensor(v[:n], dtype=torch.float64),
                                   atol=1e-5, rtol=0)
        raw += a
    raw = np.array(raw)
    whitened = (raw - raw.mean()) / raw.std()
    torch.testing.assert_close(advantages[mask.bool()].double(), torch.tensor(whitened), atol=1e-5, rtol=0)
    assert (advantages * (1 - mask)).abs().max() == 0


def test_ppo_update_equals_the_loss_recomputed_row_by_row():
    policy, tok = load_model()
    cfg = RLHFConfig(batch_size=6, responses_per_prompt=2, minibatches=1, epochs=1, max_new_tokens=12)
    setup = make_setup(policy, tok, load_model()[0], zero_score, cfg)
    torch.nn.init.normal_(setup.model.value_head.weight, std=0.1)
    setup.opt = torch.optim.SGD(setup.model.parameters(), lr=1.0)  # so the weights move by minus the clipped gradient
    batch = rollout(policy, tok, list(PROMPTS[:3]), cfg, setup.sampler)
    values = value_estimates(setup.model, batch, cfg.temperature)
    g = torch.Generator().manual_seed(0)
    advantages, returns = (torch.randn(batch.mask.shape, generator=g) * batch.mask,
                           torch.randn(batch.mask.shape, generator=g))
    hand, before = copy.deepcopy(setup.model), [p.detach().clone() for p in setup.model.parameters()]
    pg, vl = [], []
    for b in range(6):
        logits, hidden, n = row_by_row(hand.lm, batch, b)
        ratio = torch.exp(logits.log_softmax(-1)[torch.arange(n), batch.response_ids[b, :n]] - batch.logp[b, :n])
        A, G, v_old = advantages[b, :n], returns[b, :n], values[b, :n]
        pg.append(-torch.minimum(ratio * A, ratio.clamp(0.8, 1.2) * A))
        v = hand.value_head(hidden).squeeze(-1)
        vl.append(0.5 * torch.maximum((v - G) ** 2, (v_old + (v - v_old).clamp(-0.2, 0.2) - G) ** 2))
    pg, vl = torch.cat(pg).mean(), torch.cat(vl).mean()
    (pg + cfg.vf_coef * vl).backward()
    torch.nn.utils.clip_grad_norm_(hand.parameters(), cfg.max_grad_norm)
    stats = ppo_update(setup, batch, advantages, returns, values)
    assert stats["policy_loss"] == pytest.approx(float(pg.detach()), abs=1e-5)
    assert stats["value_loss"] == pytest.approx(float(vl.detach()), abs=1e-5) and stats["first_ratio_gap"] < 1e-5
    for p0, p1, q in zip(before, setup.model.parameters(), hand.parameters()):
        torch.testing.assert_close(p0 - p1.detach(), q.grad, atol=1e-5, rtol=1e-4)


def test_iteration_figures_by_hand():
    policy, tok = load_model()
    cfg = RLHFConfig(batch_size=4, minibatches=1, epochs=1, max_new_tokens=10)
    reference = load_model()[0]
    with torch.no_grad():
        reference.transformer.wte.weight.mul_(1.2)
    it = ppo_iteration(make_setup(policy, tok, reference, zero_score, cfg), list(PROMPTS[:4]), beta=0.1)
    figures, n = iteration_figures(it), it.batch.mask.sum(-1)
    k1 = [float((it.batch.logp[b] - it.logp_ref[b])[: int(n[b])].sum()) for b in range(4)]
    r = [torch.exp(it.logp_ref[b] - it.batch.logp[b])[: int(n[b])] for b in range(4)]
    k3 = [float((x - 1 - torch.log(x)).sum()) for x in r]
    assert (figures["kl_k1"] == pytest.approx(np.mean(k1), abs=1e-5)
            and figures["kl_k3"] == pytest.approx(np.mean(k3), abs=1e-5))
    assert figures["length"] == float(n.mean()) and figures["score"] == float(it.score.mean())
    assert figures["policy_loss"] == it.stats["policy_loss"]


# ---- a learner's loop plugged in; a run that learns


def test_the_solution_loop_plugged_in_gives_the_librarys_numbers(reward):
    from rlhf_lib import solutions

    policy, tok = load_model()
    cfg = RLHFConfig(iterations=2, **SMALL)
    theirs = train_rlhf(policy, tok, *reward, load_model()[0], cfg, progress=False,
                        iteration_fn=solutions.ppo_iteration)
    ours, policy_ours = run(reward, iterations=2)
    strip = lambda h: {k: v for k, v in h.items() if k != "seconds"}
    assert [strip(h) for h in theirs.history] == [strip(h) for h in ours.history]
    for p, q in zip(policy.parameters(), policy_ours.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


def test_the_loop_checker_finds_a_plausible_mistake():
    from rlhf_lib import rlhf, solutions

    assert compare_ppo_iteration(solutions.ppo_iteration) is None

    def without_whitening(setup, prompts, beta):  # GAE, but the advantages left raw
        real = rlhf.advantages_and_returns
        try:
            rlhf.advantages_and_returns = lambda r, v, m, g, lam: (rlhf.gae(r, v, last_token_dones(m), g, lam)[0] * m,
                                                                   rlhf.gae(r, v, last_token_dones(m), g, lam)[1])
            return solutions.ppo_iteration(setup, prompts, beta)
        finally:
            rlhf.advantages_and_returns = real

    def with_the_wrong_kl_sign(setup, prompts, beta):
        return solutions.ppo_iteration(setup, prompts, -beta)

    def with_the_padding_in_the_loss(setup, prompts, beta):  # the loss averaged over every position
        real = solutions.loss
        try:
            solutions.loss = lambda logp, old, adv, v, v_old, ret, mask, *rest: solutions.ppo_loss(
                logp, old, adv, v, v_old, ret, torch.ones_like(mask), *rest)
            return solutions.ppo_iteration(setup, prompts, beta)
        finally:
            solutions.loss = real

    assert "advantages" in compare_ppo_iteration(without_whitening)
    assert "rewards" in compare_ppo_iteration(with_the_wrong_kl_sign)
    def with_the_config_beta(setup, prompts, beta):  # cfg.kl_coef where the adapted beta was given
        return solutions.ppo_iteration(setup, prompts, setup.cfg.kl_coef)

    assert "policy_loss" in compare_ppo_iteration(with_the_padding_in_the_loss)
    assert "rewards" in compare_ppo_iteration(with_the_config_beta)


def test_rlhf_learns_a_probe_reward():
    """Reward 1 when the response says "not": a fifth of the course model's sentences do. A short run should
    make nearly all of them say it (measured on fresh samples, far beyond the noise of 128 of them)."""
    def says_not(texts, batch):
        return torch.tensor([float(" not" in t[len(p):]) for t, p in zip(texts, batch.prompts)])

    def rate(policy, tok):
        s = sample(policy, tok, [PROMPTS[i % len(PROMPTS)] for i in range(128)], 24, seed=7, stop_at="sentence")
        return np.mean([" not" in r for r in s.responses])

    policy, tok = load_model()
    before = rate(policy, tok)
    cfg = RLHFConfig(iterations=5, batch_size=16, minibatches=2, epochs=4, max_new_tokens=24, lr=5e-4, kl_coef=0.02,
                     target_kl=None)
    result = train_rlhf(policy, tok, None, None, load_model()[0], cfg, progress=False, score_fn=says_not)
    after = rate(policy, tok)
    assert before < 0.35 and after > before + 0.35, (before, after, result.series("score"))


def test_learning_rate_each_iteration_follows_its_schedule(reward):
    """The optimizer's rate as each iteration starts: linear, lr x (1 - i / iterations); constant, lr; the value
    head's, value_lr_scale times that."""
    for schedule, want in (("linear", [1e-4 * (1 - i / 4) for i in range(4)]), ("constant", [1e-4] * 4)):
        seen = []

        def recording(setup, prompts, beta, seen=seen):
            trunk, head = setup.opt.param_groups
            assert [id(p) for p in head["params"]] == [id(p) for p in setup.model.value_head.parameters()]
            assert [id(p) for p in trunk["params"]] == [id(p) for p in setup.model.lm.parameters()]
            seen.append((trunk["lr"], head["lr"]))
            return ppo_iteration(setup, prompts, beta)

        policy, tok = load_model()
        cfg = RLHFConfig(iterations=4, lr=1e-4, lr_schedule=schedule, value_lr_scale=30.0,
                         **{**SMALL, "batch_size": 4, "minibatches": 1, "epochs": 1, "max_new_tokens": 6})
        train_rlhf(policy, tok, *reward, load_model()[0], cfg, progress=False, iteration_fn=recording)
        assert [lr for lr, _ in seen] == pytest.approx(want, rel=1e-12, abs=0), schedule
        assert [lr for _, lr in seen] == pytest.approx([30 * lr for lr in want], rel=1e-12, abs=0), schedule
    with pytest.raises(ValueError, match="lr_schedule"):
        RLHFConfig(lr_schedule="cosine")


def test_logsigmoid_transform_is_the_log_probability_of_beating_the_centre():
    """The setup's scores under reward_transform="logsigmoid": -log(1 + exp(-(s - c))) of the raw score,
    by math on each number, and the penalty for no ending still subtracted after it."""
    raw = [-6.0, -0.5, 0.0, 0.7, 9.0]

    def fixed(texts, batch=None):
        return torch.tensor(raw[: len(texts)])

    policy, tok = load_model()
    cfg = RLHFConfig(reward_transform="logsigmoid", reward_centre=0.7, batch_size=5, minibatches=1)
    setup = make_setup(policy, tok, load_model()[0], fixed, cfg)
    got = setup.score_fn(["a"] * 5).tolist()
    assert got == pytest.approx([-math.log1p(math.exp(-(s - 0.7))) for s in raw], abs=1e-6)
    batch = rollout(policy, tok, ["The plot was"] * 5, replace_cfg(cfg, max_new_tokens=2), setup.sampler)
    unfinished = (~batch.finished).float()
    assert unfinished.sum() > 0  # two tokens rarely end a sentence
    torch.testing.assert_close(score_responses(setup.score_fn, batch, 1.0), torch.tensor(got) - unfinished)
    assert make_setup(policy, tok, load_model()[0], fixed, RLHFConfig()).score_fn is fixed  # off by default
    with pytest.raises(ValueError, match="reward_transform"):
        RLHFConfig(reward_transform="tanh")


def replace_cfg(cfg, **changes):
    from dataclasses import replace

    return replace(cfg, **changes)
