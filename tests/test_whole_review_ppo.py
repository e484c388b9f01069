"""PPO on whole reviews: the config, the prompts, and the two-sided evaluation, recomputed independently."""

import numpy as np
import pytest
import torch

from rlhf_lib.evaluate import POSITIVE_THRESHOLD, gold_sentiment
from rlhf_lib.lm import load_model, sample
from rlhf_lib.reviews import PROMPTS, is_grammatical
from rlhf_lib.rlhf import AdaptiveKLController
from rlhf_lib.whole_reviews import evaluate_whole, whole_review_config, whole_review_prompts


def beta_steps(cfg, kls):
    """beta after each batch KL in `kls`, from the controller `train_rlhf` builds for `cfg`."""
    ctl = AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon, cfg.hold_beta, cfg.kl_warmup, cfg.kl_budget)
    return [ctl.update(kl, cfg.batch_size) for kl in kls]


def test_whole_review_recipes_move_beta_as_their_docs_say():
    """Notebook 08: with the recipe beta can move up to 10% an iteration, and a KL over the 3-nat budget pulls it
    back at once; WHOLE_REVIEW_PLAIN: up to 5% an iteration, under a 2-nat target that it holds."""
    recipe = whole_review_config()
    assert beta_steps(recipe, [1.0, 1.0]) == pytest.approx([0.3 * 1.1, 0.3 * 1.1**2])  # over the rising target
    assert beta_steps(recipe, [3.5]) == pytest.approx([0.3 * 1.1 * 1.5])  # over the budget
    plain = whole_review_config(plain=True)
    assert beta_steps(plain, [2.5, 1.0]) == pytest.approx([0.3 * 1.05, 0.3 * 1.05 * 0.95])
    assert (recipe.stop_at, recipe.max_new_tokens, plain.stop_at, plain.max_new_tokens) == ("text", 64, "text", 64)


def test_changes_override_the_recipe():
    cfg = whole_review_config(ptx_coef=0.0, iterations=3, kl_budget=None)
    assert (cfg.ptx_coef, cfg.iterations, cfg.kl_budget, cfg.target_kl) == (0.0, 3, None, 2.5)
    assert whole_review_config(plain=True, kl_coef=0.1).kl_coef == 0.1


def kinds(prompts):
    course, empty = sum(p in PROMPTS for p in prompts), prompts.count("")
    return course, len(prompts) - course - empty, empty


def test_whole_review_prompts_mix_the_three_kinds_of_start():
    prompts = whole_review_prompts(3000, seed=4)  # the recipe's 1:1:4: 500, 500, 2000 expected
    course, other, empty = kinds(prompts)
    assert all(400 < n < 600 for n in (course, other)) and 1900 < empty < 2100, (course, other, empty)
    assert all(900 < n < 1100 for n in kinds(whole_review_prompts(3000, seed=4, weights=(1, 1, 1))))
    assert prompts == whole_review_prompts(3000, seed=4) and prompts != whole_review_prompts(3000, seed=5)
    heavy = whole_review_prompts(3000, seed=4, weights=(1, 1, 2))  # half of them from nothing
    assert 1350 < heavy.count("") < 1650 and 600 < sum(p in PROMPTS for p in heavy) < 900, heavy.count("")
    assert whole_review_prompts(50, weights=(0, 0, 1)) == [""] * 50


def test_evaluate_whole_samples_from_the_course_prompts_and_from_nothing():
    model, tok = load_model()
    report = evaluate_whole(model, model, tok, n=12, seed=9)
    for where, starts in (("course", PROMPTS), ("empty", [""])):
        generator = torch.Generator().manual_seed(9)  # the same stream, recomputed with the sampler itself
        s = sample(model, tok, [starts[i % len(starts)] for i in range(12)], 64, 1.0, generator=generator,
                   stop_at="text")
        r = report[where]
        assert r["examples"] == s.texts[:8]
        assert r["positive_rate"] == float(np.mean(gold_sentiment(s.texts) > POSITIVE_THRESHOLD))
        assert r["grammatical_rate"] == float(np.mean([is_grammatical(t) for t in s.texts]))
        assert abs(r["kl_k1"]) < 1e-5 and r["finished"] == float(s.finished.float().mean())  # policy = reference
    assert all(any(t.startswith(p) for p in PROMPTS) for t in report["course"]["examples"])
