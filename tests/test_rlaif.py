"""RLAIF at equal cost: the pieces against what they promise, recomputed apart."""

from dataclasses import asdict

import numpy as np
import pytest

from rlhf_lib.judge import MARK_A, MARK_B, VERDICT, judge_completion, judge_demonstrations, review_tokens
from rlhf_lib.lm import load_model
from rlhf_lib.loop import label_round
from rlhf_lib.reward_model import score_texts
from rlhf_lib.rlaif import judge_records, judge_sized_pairs, reward_model_from


def test_a_verdict_only_judge_writes_the_marks_and_nothing_of_gold():
    a, b = "The plot was superb.", "The plot was dull."
    assert judge_completion(a, b, "b", critique=None) == f"{MARK_A}{MARK_B}{VERDICT}{MARK_B}"
    records = [dict(prompt="", completion_a=a, completion_b=b, choice="a"),
               dict(prompt="", completion_a=b, completion_b=a, choice="tie")]
    (demo,) = judge_demonstrations(records, critique=None)  # the tie teaches nothing
    assert demo["completion"] == f"{MARK_A}{MARK_B}{VERDICT}{MARK_A}"
    assert "superb" in demo["prompt"] and "excellent" not in demo["completion"]


@pytest.fixture(scope="module")
def course():
    return load_model()


def test_judge_sized_pairs_fit_the_judge_share_a_start_and_repeat_with_the_seed(course):
    model, tokenizer = course
    pairs = judge_sized_pairs(model, tokenizer, 40, seed=3)
    assert len(pairs) == 40 and pairs == judge_sized_pairs(model, tokenizer, 40, seed=3)
    assert pairs != judge_sized_pairs(model, tokenizer, 40, seed=4)
    for start, a, b in pairs:
        assert a != b
        assert max(review_tokens(tokenizer, start + a), review_tokens(tokenizer, start + b)) <= 40


@pytest.mark.slow
def test_a_reward_model_from_labels_learns_them_and_is_normalised_on_the_reviews_given(course):
    model, tokenizer = course
    pairs = judge_sized_pairs(model, tokenizer, 96, seed=5)
    records = [asdict(r) for r in label_round(pairs, temperature=0.1, seed=0)]
    normalizing = [p + a for p, a, b in pairs[:40]]
    rm, rm_tokenizer = reward_model_from(records, steps=40, normalizing=normalizing)
    scores = score_texts(rm, rm_tokenizer, normalizing)
    assert abs(scores.mean()) < 1e-4 and abs(scores.std() - 1) < 1e-3
    chosen = [r["prompt"] + (r["completion_a"] if r["choice"] == "a" else r["completion_b"]) for r in records
              if r["choice"] != "tie"]
    rejected = [r["prompt"] + (r["completion_b"] if r["choice"] == "a" else r["completion_a"]) for r in records
                if r["choice"] != "tie"]
    agree = np.mean(score_texts(rm, rm_tokenizer, chosen) > score_texts(rm, rm_tokenizer, rejected))
    assert agree > 0.75, agree  # 40 steps over 96 labels: it has learned its training labels


def test_judge_records_are_the_judges_verdicts_one_pair_at_a_time(course):
    from rlhf_lib.judge import Judge, make_judge

    model, tokenizer = make_judge()
    judge = Judge(model, tokenizer, name="judge:blank")
    pairs = judge_sized_pairs(*course, 6, seed=7)
    records = judge_records(judge, pairs)
    assert [(r["prompt"], r["completion_a"], r["completion_b"]) for r in records] == pairs
    assert [r["choice"] for r in records] == [judge.compare(*p) for p in pairs]
    assert {r["annotator"] for r in records} == {"judge:blank"}


def _gold_agreement_by_hand(records):
    from rlhf_lib.evaluate import gold_taste

    hits = decided = 0
    for r in records:
        a, b = gold_taste([r["prompt"] + r["completion_a"], r["prompt"] + r["completion_b"]])
        if a == b:
            continue  # gold has no preference
        decided += 1
        hits += r["choice"] == ("a" if a > b else "b")  # a tie is a disagreement
    return hits / decided


@pytest.mark.slow
def test_equal_cost_counts_and_scores_each_arms_labels_as_a_loop_over_them_would(monkeypatch):
    import rlhf_lib.rlaif as rlaif

    seen = {}
    real = rlaif.judge_records

    def keep(judge, pairs, progress=False):
        seen[judge.name] = real(judge, pairs, progress)
        return seen[judge.name]

    monkeypatch.setattr(rlaif, "judge_records", keep)
    import rlhf_lib.loop as loop

    real_round = loop.label_round

    def keep_people(pairs, temperature, seed):
        seen["person"] = [asdict(r) for r in real_round(pairs, temperature, seed)]
        return real_round(pairs, temperature, seed)

    monkeypatch.setattr(loop, "label_round", keep_people)
    out = rlaif.equal_cost(budget=16, judge_labels=24, eval_pairs=12, judge_epochs=1, reward_models=False,
                           progress=False)
    assert set(out) == {"labels", "label_agreement", "judges", "seconds"}
    cheap, shipped = seen["judge:from the budget"], seen["judge:judge"]
    assert [(r["prompt"], r["completion_a"], r["completion_b"]) for r in cheap] == \
        [(r["prompt"], r["completion_a"], r["completion_b"]) for r in shipped]  # one set of pairs, two labellers
    for arm, records in (("judge from the budget", cheap), ("shipped judge", shipped)):
        assert out["labels"][arm] == sum(r["choice"] in ("a", "b") for r in records) == 24
        assert out["label_agreement"][arm] == pytest.approx(_gold_agreement_by_hand(records))
    person = seen["person"]
    assert len(person) == 16 and out["labels"]["human"] == sum(r["choice"] in ("a", "b") for r in person)
    assert out["label_agreement"]["human"] == pytest.approx(_gold_agreement_by_hand(person))


@pytest.mark.parametrize("name", ["budget", "judge_labels", "eval_pairs", "judge_epochs", "rm_steps"])
def test_equal_cost_refuses_a_count_below_one_before_any_work(name, monkeypatch):
    import rlhf_lib.rlaif as rlaif

    monkeypatch.setattr(rlaif, "judge_sized_pairs", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(ValueError, match=name):
        rlaif.equal_cost(**{name: 0})
