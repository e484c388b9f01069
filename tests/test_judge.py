"""The judge (rlhf_lib/judge.py): its critiques against VADER and the grammar computed directly, broken reviews
that are broken, the verdict mechanics of batched, swapped and one-at-a-time judging, the flip rate recomputed
pair by pair, and the `judge` command's records against judging the pairs one at a time."""

import json
import random

import numpy as np
import pytest

from rlhf_lib.evaluate import gold_taste
from rlhf_lib.judge import (
    BROKEN,
    MARK_A,
    MARK_B,
    MAX_REVIEW_TOKENS,
    VERDICT,
    break_review,
    check_pair,
    critique_of,
    flip_rate,
    gold_report,
    judge_completion,
    judge_demonstrations,
    judge_prompt,
    load_judge,
    make_judge,
    readable,
    review_tokens,
    training_pairs,
)
from rlhf_lib.reviews import generate_reviews, is_grammatical, sentences


def test_a_critique_words_the_band_of_the_vader_score_or_says_broken():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from rlhf_lib.judge import RATING_WORDS

    vader = SentimentIntensityAnalyzer()
    floors = [floor for floor, _ in RATING_WORDS]
    assert floors == sorted(floors, reverse=True)
    seen = set()
    for text in generate_reviews(400, seed=3):
        score = vader.polarity_scores(text)["compound"]
        word = [w for floor, w in RATING_WORDS if score >= floor][0]  # the highest band it reaches
        assert critique_of(text) == word + "."
        assert is_grammatical(f"Overall, the film was {word}.")  # a word of the language, in its place
        seen.add(word)
    assert len(seen) >= 10
    assert critique_of("The plot was great. the music was dull.") == BROKEN


def test_the_judge_learns_to_write_both_critiques_then_the_label():
    a, b = "The plot was dull.", "I loved the music. The ending was fine! The plot was rather broken"
    assert judge_prompt(a, b) == f"{a}<|sep|>{b}<|sep|>"
    target = judge_completion(a, b, "b")
    assert target == f"{MARK_A}bad.{MARK_B}{BROKEN}{VERDICT}{MARK_B}"  # VADER: -0.40
    assert readable(target.split(VERDICT)[0]) == "A: bad. B: (broken)"
    with pytest.raises(ValueError, match="verdict"):
        judge_completion(a, b, "tie")
    records = [dict(prompt="The plot", completion_a=" was dull.", completion_b=" was great.", choice="b"),
               dict(prompt="", completion_a=a, completion_b=b, choice="tie")]
    demos = judge_demonstrations(records)  # the tie teaches nothing
    assert demos == [dict(prompt=judge_prompt("The plot was dull.", "The plot was great."),
                          completion=judge_completion("The plot was dull.", "The plot was great.", "b"))]


def test_broken_reviews_are_broken_in_every_way():
    rng = random.Random(0)
    reviews = generate_reviews(300, seed=1)
    kinds = set()
    for text in reviews:
        broken = break_review(text, rng, reviews[:50])
        assert not is_grammatical(broken) and broken != text
        if len(sentences(broken)) > 4:
            kinds.add("too long")
        elif broken[:1].islower():
            kinds.add("lowercase")
        else:
            kinds.add("inside")
    assert kinds == {"too long", "lowercase", "inside"}


def test_training_pairs_hold_a_tenth_broken_and_fit_the_judge():
    _, tokenizer = make_judge()
    pairs = training_pairs(2000, seed=0, tokenizer=tokenizer)
    one_broken = [sum(not is_grammatical(p + x) for x in (a, b)) for p, a, b in pairs]
    assert set(one_broken) <= {0, 1}
    assert 0.07 < np.mean(one_broken) < 0.13
    assert max(review_tokens(tokenizer, p + x) for p, a, b in pairs for x in (a, b)) <= MAX_REVIEW_TOKENS
    assert training_pairs(50, seed=4) == training_pairs(50, seed=4)


def test_a_pair_that_does_not_fit_is_refused():
    _, tokenizer = make_judge()
    long = " ".join(["The plot was very good."] * 9)
    assert review_tokens(tokenizer, long) > MAX_REVIEW_TOKENS
    with pytest.raises(ValueError, match=f"review B is .* at most {MAX_REVIEW_TOKENS}"):
        check_pair(tokenizer, "", "The plot was good.", long, where="line 3")
    with pytest.raises(ValueError, match="identical"):
        check_pair(tokenizer, "", "The plot was good.", "The plot was good.")


def test_gold_report_counts_like_a_loop_over_the_pairs():
    reviews = generate_reviews(60, seed=2)
    pairs = [("", reviews[i], reviews[i + 1]) for i in range(0, 60, 2)] + [("", "The plot was good.", "the plot")]
    rng = random.Random(1)
    verdicts = [rng.choice(["a", "b", "tie"]) for _ in pairs]
    report = gold_report(verdicts, pairs)
    right = decided = 0
    for (p, a, b), v in zip(pairs, verdicts):
        ta, tb = gold_taste([p + a, p + b])
        if ta != tb:
            decided += 1
            right += v == ("a" if ta > tb else "b")
    assert report["n_decided"] == decided and report["gold_accuracy"] == pytest.approx(right / decided)
    assert report["ties"] == verdicts.count("tie")
    assert report["by_gap"]["2-inf"][0] == 1  # the broken one


def test_flip_rate_equals_a_count_pair_by_pair():
    rng = random.Random(0)
    forward = [rng.choice("ab") for _ in range(100)]
    backward = [rng.choice("ab") for _ in range(100)]
    flips = sum((f == "a") != (b == "b") for f, b in zip(forward, backward))
    assert flip_rate(forward, backward) == flips / 100
    assert flip_rate(["a", "b"], ["b", "a"]) == 0.0  # the same review chosen both times
    with pytest.raises(ValueError):
        flip_rate(["a"], [])


@pytest.fixture(scope="module")
def untrained_judge(tmp_path_factory):
    """A judge folder with the judge's tokens but no training: its verdicts are arbitrary, which is all the
    mechanics below need (the shipped judge's agreement is measured by scripts/build_judge.py)."""
    folder = tmp_path_factory.mktemp("judges") / "blank-judge"
    model, tokenizer = make_judge()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _pairs(n=12, seed=5):
    reviews = [r for r in generate_reviews(4 * n, seed=seed) if len(r) < 120]
    return [("", reviews[2 * i], reviews[2 * i + 1]) for i in range(n)]


def test_batched_judging_equals_one_pair_at_a_time_and_swap_keeps_only_agreement(untrained_judge):
    judge = load_judge(untrained_judge)
    assert judge.name == "judge:blank-judge"
    pairs = _pairs()
    batched = judge.judge_many(pairs, batch_size=5)
    single = [judge.judge(*p) for p in pairs]
    assert [(v.choice, v.critique) for v in batched] == single
    swapped = judge.judge_many([(p, b, a) for p, a, b in pairs])
    both = judge.judge_many(pairs, swap=True)
    for v, s, w in zip(batched, swapped, both):
        back = {"a": "b", "b": "a"}[s.choice]
        assert w.choice == (v.choice if v.choice == back else "tie")
    assert judge.compare("", "The plot was good.", "The plot was good.") == "tie"


def test_the_judge_command_writes_what_judging_one_pair_at_a_time_gives(untrained_judge, tmp_path):
    from rlhf_lib.__main__ import main

    pairs = _pairs(8)
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(dict(prompt=p, completion_a=a, completion_b=b, model="m1" if i % 2 else 7,
                                           extra=1)) + "\n" for i, (p, a, b) in enumerate(pairs)))
    out = tmp_path / "judged.jsonl"
    assert main(["judge", "--judge", str(untrained_judge), "--pairs", str(src), "--out", str(out), "--swap"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    judge = load_judge(untrained_judge)
    for i, (r, (p, a, b)) in enumerate(zip(records, pairs)):
        v = judge.judge_many([(p, a, b)], swap=True)[0]
        expected = dict(prompt=p, completion_a=a, completion_b=b, choice=v.choice, annotator="judge:blank-judge+swap",
                        model="m1" if i % 2 else "unknown", critique=v.critique, critique_swapped=v.critique_swapped)
        assert {k: r[k] for k in expected} == expected
        assert set(r) == set(expected) | {"time", "id"}
    # an existing --out is kept without --overwrite
    before = out.read_text()
    assert main(["judge", "--judge", str(untrained_judge), "--pairs", str(src), "--out", str(out)]) == 2
    assert out.read_text() == before


@pytest.mark.parametrize("line, message", [
    ("not json", "line 2: not valid JSON"),
    (json.dumps(dict(prompt="", completion_a="The plot was good.")), "line 2: field 'completion_b' must be text"),
    (json.dumps(dict(prompt="", completion_a="The plot was good.", completion_b=" ".join(["The plot was good."] * 9))),
     f"line 2: review B is .* at most {MAX_REVIEW_TOKENS}"),
])
def test_a_bad_line_is_an_error_naming_it_before_any_judging(untrained_judge, tmp_path, capsys, line, message):
    from rlhf_lib.__main__ import main

    src = tmp_path / "pairs.jsonl"
    good = json.dumps(dict(prompt="", completion_a="The plot was good.", completion_b="The plot was dull."))
    src.write_text(good + "\n" + line + "\n")
    out = tmp_path / "judged.jsonl"
    assert main(["judge", "--judge", str(untrained_judge), "--pairs", str(src), "--out", str(out)]) == 2
    assert not out.exists()
    import re

    assert re.search(message, capsys.readouterr().err)


def test_the_judge_labels_wherever_an_annotator_does(untrained_judge):
    from rlhf_lib.feedback import label_pairs

    judge = load_judge(untrained_judge)
    pairs = _pairs(4)
    records = label_pairs(judge, pairs, model="generator")
    assert [r.choice for r in records] == [judge.compare(*p) for p in pairs]
    assert {r.annotator for r in records} == {"judge:blank-judge"}  # the same name as the judge command's


def test_length_pairs_have_equal_gold_and_one_more_sentence():
    from rlhf_lib.judge import length_pairs

    _, tokenizer = make_judge()
    for _, short, longer in length_pairs(100, seed=0, tokenizer=tokenizer):
        assert longer.startswith(short + " ") and len(sentences(longer)) == len(sentences(short)) + 1
        assert is_grammatical(short) and is_grammatical(longer)
        assert gold_taste(short)[0] == gold_taste(longer)[0]
        assert review_tokens(tokenizer, longer) <= MAX_REVIEW_TOKENS


def test_negation_pairs_differ_by_one_not_and_in_gold():
    from rlhf_lib.judge import negation_pairs

    _, tokenizer = make_judge()
    for _, text, negated in negation_pairs(100, seed=0, tokenizer=tokenizer):
        assert review_tokens(tokenizer, negated) <= MAX_REVIEW_TOKENS
        spots = [i for i in range(len(text)) if text.startswith(" was ", i)]
        assert any(negated == text[:i] + " was not " + text[i + len(" was "):] for i in spots)
        assert is_grammatical(negated) and gold_taste(text)[0] != gold_taste(negated)[0]


def test_biases_are_shares_recomputed_from_the_verdicts(untrained_judge):
    from rlhf_lib.judge import length_pairs, measure_biases
    from rlhf_lib.runtime import derive_seed

    judge = load_judge(untrained_judge)
    pairs = _pairs(10) + [("", "The plot was good.", "the plot was good.")]
    report = measure_biases(judge, pairs, n=12, seed=0, bootstrap=200)
    forward = [judge.compare(*p) for p in pairs]
    backward = [judge.compare(p, b, a) for p, a, b in pairs]
    flips = [f == b for f, b in zip(forward, backward)]
    assert report["position"]["once"]["rate"] == pytest.approx(np.mean(flips))
    assert report["fluency"]["once"]["n"] == 1
    assert report["fluency"]["once"]["rate"] == float(forward[-1] == "a")
    # both readings: the fluent review (A as given, B swapped) chosen in both, in neither, or a tie (half)
    both = {("a", "b"): 1.0, ("b", "a"): 0.0}.get((forward[-1], backward[-1]), 0.5)
    assert report["fluency"]["both_orders"]["rate"] == both
    # the length bias, recomputed: each pair judged with the longer review on the side it was shown
    rng = random.Random(derive_seed(0, "length sides"))
    picks_longer = []
    for p, short, longer in length_pairs(12, 0, judge.tokenizer):
        if rng.random() < 0.5:  # shown as made: the longer is B
            picks_longer.append(judge.compare(p, short, longer) == "b")
        else:
            picks_longer.append(judge.compare(p, longer, short) == "a")
    assert report["length"]["once"]["rate"] == pytest.approx(np.mean(picks_longer))
    for name in ("position", "length", "negation", "fluency"):
        once = report[name]["once"]
        assert once["low"] <= once["rate"] <= once["high"]
    assert report["length"]["once"]["n"] == len(length_pairs(12, 0, judge.tokenizer))


def test_a_missing_judge_or_pairs_file_is_a_clear_error(untrained_judge, tmp_path, capsys):
    from rlhf_lib.__main__ import main

    src = tmp_path / "pairs.jsonl"
    src.write_text(json.dumps(dict(prompt="", completion_a="The plot was good.", completion_b="It was dull.")) + "\n")
    out = tmp_path / "judged.jsonl"
    assert main(["judge", "--judge", str(tmp_path / "no-judge"), "--pairs", str(src), "--out", str(out)]) == 2
    assert "no-judge" in capsys.readouterr().err
    assert main(["judge", "--judge", str(untrained_judge), "--pairs", str(tmp_path / "none.jsonl"),
                 "--out", str(out)]) == 2
    assert "none.jsonl" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_self_preference_pairs_are_fluent_close_in_gold_and_scored_by_their_author(untrained_judge):
    from rlhf_lib.judge import self_preference, self_preference_pairs
    from rlhf_lib.lm import load_model

    course = load_model()
    judge = load_judge(untrained_judge)
    pairs = self_preference_pairs(course, course, judge.tokenizer, 6, seed=0)
    assert len(pairs) == 6
    for p, own, other in pairs:
        assert is_grammatical(p + own) and is_grammatical(p + other)
        assert abs(gold_taste(p + own)[0] - gold_taste(p + other)[0]) <= 0.02
    report = self_preference(judge, pairs, bootstrap=100, seed=3)
    rng = random.Random(3)
    flipped = [rng.random() < 0.5 for _ in pairs]
    picks = [judge.compare(p, b, a) if f else judge.compare(p, a, b) for (p, a, b), f in zip(pairs, flipped)]
    own = ["b" if f else "a" for f in flipped]
    assert report["once"]["rate"] == pytest.approx(np.mean([x == o for x, o in zip(picks, own)]))


def test_the_shipped_judge_rates_each_review_then_decides_the_same_in_a_batch_and_alone():
    from rlhf_lib.judge import JUDGE, RATING_WORDS

    judge = load_judge(JUDGE)
    assert judge.name == "judge:judge"
    reviews = generate_reviews(40, seed=11)
    pairs = [("", reviews[i], reviews[i + 1]) for i in range(0, 40, 2)]
    pairs.append(("", "The plot was great.", "The plot was great. The ending was superb. I loved the music. "
                      "It was never dull. What a lovely film!"))  # a broken review (five sentences) beside it
    # critiques of different lengths ("good." against "absolutely perfect." or <|broken|>) end at different steps
    batched = judge.judge_many(pairs, batch_size=8)
    alone = [judge.judge(*p) for p in pairs]
    assert [(v.choice, v.critique) for v in batched] == alone
    words = {w + "." for _, w in RATING_WORDS} | {"(broken)"}
    for v in batched:
        first, second = v.critique[len("A: "):].split(" B: ")
        assert first in words and second in words, v.critique
    assert len({v.critique for v in batched}) > 3
    # with swap, the second reading's critique is put back in the pair's order: "A:" is still completion A
    swapped = judge.judge_many([(p, b, a) for p, a, b in pairs], batch_size=8)
    for w, s in zip(judge.judge_many(pairs, swap=True, batch_size=8), swapped):
        about_b, about_a = s.critique[len("A: "):].split(" B: ")  # read swapped, "A:" was completion B
        assert w.critique_swapped == f"A: {about_a} B: {about_b}"


def test_bias_measures_refuse_no_bootstrap_before_any_judging(untrained_judge):
    from rlhf_lib.judge import measure_biases, self_preference

    judge = load_judge(untrained_judge)
    with pytest.raises(ValueError, match="bootstrap"):
        measure_biases(judge, _pairs(2), bootstrap=0)
    with pytest.raises(ValueError, match="bootstrap"):
        self_preference(judge, _pairs(2), bootstrap=0)


def test_check_judge_reports_what_its_parts_give(untrained_judge):
    from rlhf_lib.judge import check_judge

    judge = load_judge(untrained_judge)
    pairs = _pairs(6) + [("", "The plot was good.", "the plot was good.")]
    report = check_judge(judge, pairs)
    once = [judge.compare(*p) for p in pairs]
    swapped = [judge.compare(p, b, a) for p, a, b in pairs]
    assert report["gold_once"] == gold_report(once, pairs)
    assert report["flip_rate"] == flip_rate(once, swapped)
    kept = [o if {"a": "b", "b": "a"}[s] == o else "tie" for o, s in zip(once, swapped)]
    assert report["gold_both_orders"] == gold_report(kept, pairs)
    assert 0 < report["reward_model"]["gold_accuracy"] <= 1 and report["pairs_per_second"] > 0
