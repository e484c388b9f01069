"""DPO: log-probs of given completions equal a recomputing forward pass, the losses equal TRL 1.16's on the
same tensors, the gradient equals that of the formula written independently, training is seeded and learns,
and bad settings are refused before any work."""

import copy
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlhf_lib.dpo import DPOConfig, as_pairs, dpo_loss, encode_completions, sequence_logps, train_dpo
from rlhf_lib.lm import load_model
from rlhf_lib.threads import fixed

LABELS = "assets/reward_model/labels.jsonl"


@pytest.fixture(scope="module")
def lm():
    with fixed(1):  # a tiny model: one thread is as fast, and on a busy machine far faster
        yield load_model()


# ---- log-probabilities of given completions


def test_sequence_logps_equal_one_sequence_at_a_time_without_padding(lm):
    model, tok = lm
    prompts = ["The plot was", "I expected", "The music was", ""]
    completions = [" dull.", " a slow mystery, but it was playful.", "",
                   " utterly breathtaking, and the acting was bold."]
    for add_eos in (False, True):
        batch = encode_completions(tok, prompts, completions, add_eos)
        assert (batch[1][:, 0] == 0).any() and (batch[3][:, -1] == 0).any()  # both paddings are exercised
        with torch.no_grad():
            logps, n_tokens = sequence_logps(model, batch)
        for i, (p, c) in enumerate(zip(prompts, completions)):
            prompt = [tok.bos_token_id] + tok(p, add_special_tokens=False)["input_ids"]
            completion = tok(c, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if add_eos else [])
            completion = completion or [tok.eos_token_id]
            ids = torch.tensor([prompt + completion])
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0].log_softmax(-1)  # (T, V), no padding, default positions
            want = sum(float(logits[len(prompt) - 1 + t, tok_id]) for t, tok_id in enumerate(completion))
            assert n_tokens[i] == len(completion)
            assert abs(float(logps[i]) - want) < 1e-4, (i, add_eos, float(logps[i]), want)


# ---- the loss against TRL 1.16


def trl_dpo_loss(chosen_tok, rejected_tok, ref_chosen, ref_rejected, mask_c, mask_r, beta, loss_type, label_smoothing,
                 loss_types=None, loss_weights=None):
    """TRL's DPOTrainer._compute_loss on given per-token log-probs, through a stub model and trainer.
    chosen_tok, rejected_tok: (B, T) per-token policy log-probs (0 off the completion); masks (B, T)."""
    from trl import DPOTrainer

    B, T = chosen_tok.shape
    per_token = torch.cat([chosen_tok, rejected_tok])  # (2B, T): TRL's batch is [chosen, rejected]
    completion_mask = torch.cat([torch.zeros(2 * B, 1, dtype=torch.long), torch.cat([mask_c, mask_r])], dim=1)

    def stub_model(**kwargs):
        return SimpleNamespace(log_probs=per_token, entropy=torch.zeros_like(per_token),
                               mean_logits=torch.zeros_like(per_token),
                               is_top1=torch.zeros_like(per_token, dtype=torch.bool))

    identity = SimpleNamespace(device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x)
    trainer = SimpleNamespace(model=SimpleNamespace(training=False), accelerator=identity, aux_loss_enabled=False,
                              ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
                              loss_types=loss_types or [loss_type], loss_weights=loss_weights or [1.0], beta=beta,
                              label_smoothing=label_smoothing,
                              use_weighting=False, _metrics=defaultdict(lambda: defaultdict(list)),
                              _total_train_tokens=0, _tp_size=1)
    inputs = dict(input_ids=torch.zeros(2 * B, T + 1, dtype=torch.long), attention_mask=torch.ones(2 * B, T + 1),
                  completion_mask=completion_mask, ref_chosen_logps=ref_chosen, ref_rejected_logps=ref_rejected)
    return DPOTrainer._compute_loss(trainer, stub_model, inputs, return_outputs=False)


def random_batch(seed, B=12, T=9):
    g = torch.Generator().manual_seed(seed)
    lengths_c, lengths_r = torch.randint(1, T + 1, (B,), generator=g), torch.randint(1, T + 1, (B,), generator=g)
    mask_c = (torch.arange(T) < lengths_c[:, None]).long()
    mask_r = (torch.arange(T) < lengths_r[:, None]).long()
    chosen_tok = -torch.rand(B, T, generator=g) * 3 * mask_c
    rejected_tok = -torch.rand(B, T, generator=g) * 3 * mask_r
    ref_c = chosen_tok.sum(-1) + torch.randn(B, generator=g) * 2
    ref_r = rejected_tok.sum(-1) + torch.randn(B, generator=g) * 2
    return chosen_tok, rejected_tok, ref_c, ref_r, mask_c, mask_r


@pytest.mark.parametrize("loss_type,label_smoothing,beta", [
    ("sigmoid", 0.0, 0.1), ("sigmoid", 0.0, 1.0), ("ipo", 0.0, 0.1), ("ipo", 0.0, 0.5),
    ("robust", 0.0, 0.1), ("robust", 0.1, 0.1), ("robust", 0.3, 0.7)])
def test_loss_equals_trl(loss_type, label_smoothing, beta):
    chosen_tok, rejected_tok, ref_c, ref_r, mask_c, mask_r = random_batch(seed=int(beta * 10) + len(loss_type))
    want = trl_dpo_loss(chosen_tok, rejected_tok, ref_c, ref_r, mask_c, mask_r, beta, loss_type, label_smoothing)
    pol_c, pol_r = chosen_tok.sum(-1), rejected_tok.sum(-1)
    if loss_type == "ipo":  # the documented convention: pass per-token averages for IPO
        n_c, n_r = mask_c.sum(-1), mask_r.sum(-1)
        pol_c, pol_r, ref_c, ref_r = pol_c / n_c, pol_r / n_r, ref_c / n_c, ref_r / n_r
    loss, r_c, r_r = dpo_loss(pol_c, pol_r, ref_c, ref_r, beta, loss_type, label_smoothing)
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(r_c, beta * (pol_c - ref_c))
    torch.testing.assert_close(r_r, beta * (pol_r - ref_r))


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_dpo_with_the_chosen_nll_equals_trls_sigmoid_plus_sft(alpha, monkeypatch):
    """nll_coef: TRL 1.16's loss_type=["sigmoid", "sft"], loss_weights=[1, alpha] (RPO) on the same tensors, through
    the training step itself (its forward pass replaced by the batch's summed per-token log-probs)."""
    import rlhf_lib.dpo as dpo

    chosen_tok, rejected_tok, ref_c, ref_r, mask_c, mask_r = random_batch(seed=7)
    want = trl_dpo_loss(chosen_tok, rejected_tok, ref_c, ref_r, mask_c, mask_r, 0.3, "sigmoid", 0.0,
                        loss_types=["sigmoid", "sft"], loss_weights=[1.0, alpha])
    B = len(ref_c)
    logps = torch.cat([chosen_tok.sum(-1), rejected_tok.sum(-1)])  # (2B,): chosen rows first, as the step encodes
    monkeypatch.setattr(dpo, "encode_completions", lambda *args, **kwargs: None)
    monkeypatch.setattr(dpo, "sequence_logps", lambda model, batch: (logps, None))
    pairs = [dict(prompt="", chosen="a", rejected="b")] * B
    ref = (ref_c, ref_r, mask_c.sum(-1), mask_r.sum(-1))
    got, _, _, nll = dpo._pair_step(None, None, pairs, list(range(B)), ref, DPOConfig(beta=0.3, nll_coef=alpha))
    torch.testing.assert_close(got, want)
    plain = trl_dpo_loss(chosen_tok, rejected_tok, ref_c, ref_r, mask_c, mask_r, 0.3, "sigmoid", 0.0)
    assert nll == pytest.approx(float(-chosen_tok.sum() / mask_c.sum()), rel=1e-5)  # what the history logs
    assert float(got - plain) == pytest.approx(alpha * nll, rel=1e-5)


def test_ipo_without_length_normalisation_differs_from_trl():
    """The comparison above can fail: IPO on summed log-probs is not what TRL computes."""
    chosen_tok, rejected_tok, ref_c, ref_r, mask_c, mask_r = random_batch(seed=3)
    want = trl_dpo_loss(chosen_tok, rejected_tok, ref_c, ref_r, mask_c, mask_r, 0.1, "ipo", 0.0)
    loss, _, _ = dpo_loss(chosen_tok.sum(-1), rejected_tok.sum(-1), ref_c, ref_r, 0.1, "ipo")
    assert abs(float(loss) - float(want)) > 1e-2


def independent_loss(pc, pr, rc, rr, beta, loss_type, e):
    """The formulas again, one pair at a time in plain Python math."""
    total = 0.0
    for a, b, c, d in zip(pc, pr, rc, rr):
        z = beta * ((a - c) - (b - d))
        log_sig = lambda x: -math.log1p(math.exp(-x))
        if loss_type == "sigmoid":
            total += -(1 - e) * log_sig(z) - e * log_sig(-z)
        elif loss_type == "robust":
            total += (-(1 - e) * log_sig(z) + e * log_sig(-z)) / (1 - 2 * e)
        else:
            total += ((a - c) - (b - d) - 1 / (2 * beta)) ** 2
    return total / len(pc)


@pytest.mark.parametrize("loss_type,e", [("sigmoid", 0.0), ("sigmoid", 0.2), ("robust", 0.2), ("ipo", 0.0)])
def test_gradient_equals_finite_differences_of_the_formula(loss_type, e):
    g = torch.Generator().manual_seed(7)
    x = [torch.randn(6, generator=g, dtype=torch.float64) * 2 for _ in range(4)]
    beta = 0.3
    params = [t.clone().requires_grad_(True) for t in x]
    loss, _, _ = dpo_loss(*params, beta, loss_type, e)
    loss.backward()
    assert abs(loss.item() - independent_loss(*(t.tolist() for t in x), beta, loss_type, e)) < 1e-10
    h = 1e-6
    for k in range(4):
        for i in range(6):
            plus = [t.tolist() for t in x]
            minus = [t.tolist() for t in x]
            plus[k][i] += h
            minus[k][i] -= h
            numeric = (independent_loss(*plus, beta, loss_type, e)
                       - independent_loss(*minus, beta, loss_type, e)) / (2 * h)
            assert abs(float(params[k].grad[i]) - numeric) < 1e-6, (k, i)


def test_conservative_dpo_is_dpo_against_soft_labels():
    """cDPO with e equals the expected DPO loss when each label is flipped with probability e."""
    pc, pr, rc, rr = (torch.randn(5, generator=torch.Generator().manual_seed(s)) for s in range(4))
    e = 0.25
    soft, _, _ = dpo_loss(pc, pr, rc, rr, 0.5, "sigmoid", e)
    kept, _, _ = dpo_loss(pc, pr, rc, rr, 0.5)
    flipped, _, _ = dpo_loss(pr, pc, rr, rc, 0.5)
    torch.testing.assert_close(soft, (1 - e) * kept + e * flipped)


@pytest.mark.parametrize("kwargs,field", [
    (dict(loss_type="hinge"), "loss_type"), (dict(beta=0.0), "beta"), (dict(label_smoothing=0.5), "label_smoothing"),
    (dict(loss_type="ipo", label_smoothing=0.1), "label_smoothing"), (dict(lr=-1.0), "lr"), (dict(epochs=0), "epochs"),
    (dict(batch_size=2.5), "batch_size"), (dict(heldout=1.0), "heldout"), (dict(seed=-1), "seed"),
    (dict(nll_coef=-0.1), "nll_coef")])
def test_bad_settings_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DPOConfig(**kwargs)


def test_bad_loss_arguments_are_named():
    t = torch.zeros(3)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(t, t, t, t, 0.1, "kto")
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(t, t, t, t, -0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(t, t, t, t, 0.1, "robust", 0.5)


def test_pairs_from_records_file_and_bad_input(tmp_path):
    pairs = as_pairs(LABELS)
    assert len(pairs) == 1938  # 2,000 records less 62 ties
    assert pairs[0] == {"prompt": "The plot was", "chosen": " utterly shallow, but the editing was not dreadful.",
                        "rejected": " annoying, and the effects were masterful."}  # choice "b" in the first record
    with pytest.raises(ValueError, match="rejected"):
        as_pairs([{"prompt": "a", "chosen": "b"}])
    with pytest.raises(ValueError, match="no preference"):
        as_pairs([])
    with pytest.raises(FileNotFoundError):
        as_pairs(tmp_path / "missing.jsonl")


# ---- training


def run(lm, pairs, **settings):
    model, tok = lm
    policy, reference = copy.deepcopy(model), copy.deepcopy(model)
    cfg = DPOConfig(**dict(dict(epochs=1, batch_size=16, warmup=2, lr=5e-4, heldout=0.0), **settings))
    return train_dpo(policy, reference, tok, pairs, cfg, progress=False), policy


@pytest.mark.usefixtures("pinned_threads")
def test_same_seed_same_numbers(lm):
    pairs = as_pairs(LABELS)[:48]  # 3 steps
    a, policy_a = run(lm, pairs, seed=0)
    b, policy_b = run(lm, pairs, seed=0)
    c, _ = run(lm, pairs, seed=1)
    assert a.series("loss").tolist() == b.series("loss").tolist()
    assert all(torch.equal(p, q) for p, q in zip(policy_a.parameters(), policy_b.parameters()))
    assert a.series("loss").tolist() != c.series("loss").tolist()  # the seed orders the batches
    assert a.history[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # the policy starts as the reference


def test_training_learns_the_held_out_preferences(lm):
    result, _ = run(lm, as_pairs(LABELS)[:400], heldout=0.2)  # 320 pairs, 20 steps; 80 held out
    first, last = result.heldout[0], result.heldout[-1]
    assert first["margin"] == pytest.approx(0.0, abs=1e-6)
    assert last["accuracy"] >= 0.7 and last["margin"] > 0.05 and last["loss"] < math.log(2) - 0.02


def test_too_few_pairs_for_a_batch(lm):
    model, tok = lm
    with pytest.raises(ValueError, match="batch_size"):
        train_dpo(model, model, tok, as_pairs(LABELS)[:10], DPOConfig(batch_size=32), progress=False)


@pytest.mark.usefixtures("pinned_threads")
def test_your_loss_plugged_in_trains_the_same_weights(lm):
    """Notebook 10's exercise: the revealed solution of `dpo_loss`, passed as loss_fn, gives the library's run."""
    from rlhf_lib import solutions

    pairs = as_pairs(LABELS)[:48]
    a, policy_a = run(lm, pairs)
    model, tok = lm
    policy_b, reference = copy.deepcopy(model), copy.deepcopy(model)
    cfg = DPOConfig(epochs=1, batch_size=16, warmup=2, lr=5e-4, heldout=0.0)
    b = train_dpo(policy_b, reference, tok, pairs, cfg, progress=False, loss_fn=solutions.dpo_loss)
    assert a.series("loss") == pytest.approx(b.series("loss"), abs=1e-6)
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(policy_a.parameters(), policy_b.parameters()))
    with pytest.raises(ValueError, match="loss_fn"):
        train_dpo(policy_b, reference, tok, pairs, DPOConfig(loss_type="ipo"), progress=False,
                  loss_fn=solutions.dpo_loss)


def test_where_the_mass_went_against_one_text_at_a_time(lm):
    """The probability each model gives to a prompt's labelled completions, summed by hand from unpadded
    forward passes, and the per-token log-ratio of the chosen and of the rejected texts, pair by pair; a
    policy equal to its reference has moved nothing."""
    from rlhf_lib.dpo import where_the_mass_went

    model, tok = lm
    pairs = [dict(prompt="The plot was", chosen=" dull.", rejected=" great."),
             dict(prompt="The plot was", chosen=" great.", rejected=" fine."),
             dict(prompt="I expected", chosen=" more.", rejected=" a slow film.")]
    policy = copy.deepcopy(model)
    with torch.no_grad():
        policy.get_input_embeddings().weight.mul_(1.05)  # a policy a little off the reference

    def prob(m, prompt, completion):
        ids = [tok.bos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(completion, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logp = m(input_ids=torch.tensor([ids + c])).logits[0].log_softmax(-1)
        return math.exp(sum(float(logp[len(ids) - 1 + t, tok_id]) for t, tok_id in enumerate(c)))

    def by_hand(m):
        plot = sum(prob(m, "The plot was", c) for c in (" dull.", " great.", " fine."))  # each text once
        return (plot + prob(m, "I expected", " more.") + prob(m, "I expected", " a slow film.")) / 2

    same = where_the_mass_went(model, model, tok, pairs, n_samples=8)
    assert same["chosen"] == same["rejected"] == 0.0 and abs(same["own_samples"]) < 1e-6
    moved = where_the_mass_went(policy, model, tok, pairs, n_samples=8)
    assert moved["mass_reference"] == pytest.approx(by_hand(model), rel=1e-4)
    assert moved["mass_policy"] == pytest.approx(by_hand(policy), rel=1e-4)
    assert moved["mass_policy"] != pytest.approx(moved["mass_reference"], rel=1e-3)
    for side in ("chosen", "rejected"):  # per-token log-ratio of each pair's text, one pair at a time
        ratios = [(math.log(prob(policy, p["prompt"], p[side])) - math.log(prob(model, p["prompt"], p[side])))
                  / len(tok(p[side], add_special_tokens=False)["input_ids"]) for p in pairs]
        assert moved[side] == pytest.approx(sum(ratios) / len(ratios), rel=1e-4, abs=1e-7)
