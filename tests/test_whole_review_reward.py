"""The whole-review reward model recipe: config checks, labels, normalisation, save/load, the CLI default path."""

import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhf_lib.whole_reviews import (
    WholeRewardConfig,
    batch_groups,
    review_starts,
    sample_whole_reviews,
    train_whole_review_reward_model,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_groups=8, group_size=3, groups_per_batch=4, epochs=2, n_heldout=12, n_normalize=24, max_new_tokens=48)


@pytest.fixture(scope="module")
def trained():
    return train_whole_review_reward_model(WholeRewardConfig(**TINY), progress=False)


@pytest.mark.parametrize("kw,name", [(dict(n_groups=0), "n_groups"), (dict(group_size=1), "group_size"),
                                     (dict(lr=float("nan")), "lr"), (dict(pooling="mean"), "pooling"),
                                     (dict(max_seconds=0.0), "max_seconds"), (dict(warmup=0), "warmup"),
                                     (dict(n_groups=4, groups_per_batch=8), "n_groups"),
                                     (dict(annotator_temperature=-1.0), "annotator_temperature")])
def test_config_refuses_nonsense_naming_the_field(kw, name):
    with pytest.raises(ValueError, match=name):
        WholeRewardConfig(**kw)


def test_batch_groups_merges_consecutive_groups_into_whole_texts():
    groups = [("A", [" x", " y"]), ("B", [" z"]), ("", ["w"]), ("C", [" v"]), ("D", [" u"])]
    assert batch_groups(groups, 2) == [("", ["A x", "A y", "B z"]), ("", ["w", "C v"])]  # "D" alone is dropped


def test_primed_scores_leave_the_annotators_choices_as_they_are():
    from rlhf_lib.feedback import SimulatedAnnotator

    texts = ["A great film.", "A dull, bad film.", "It was fine.", "Terrible and boring.", "I loved it!"]
    pairs = list(combinations(texts, 2)) * 3
    cached, plain = SimulatedAnnotator(0.3, seed=5), SimulatedAnnotator(0.3, seed=5)
    cached.prime(texts)  # every score looked up, none computed, while judging
    assert [cached.compare("", a, b) for a, b in pairs] == [plain.compare("", a, b) for a, b in pairs]


def test_recipe_counts_every_pair_of_a_batch(trained):
    _, _, summary = trained
    # brute force: the same groups, merged, every unordered pair of distinct texts judged once (ties aside)
    assert summary["n_train_groups"] == TINY["n_groups"]
    assert summary["steps"] == summary["planned_steps"] == TINY["epochs"] * TINY["n_groups"] // TINY["groups_per_batch"]
    most = (TINY["n_groups"] // TINY["groups_per_batch"]) * len(list(combinations(range(4 * 3), 2)))
    assert 0 < summary["n_train_pairs"] <= most
    assert summary["n_heldout_pairs"] <= TINY["n_heldout"] and 0 <= summary["gold_accuracy"] <= 1
    assert sum(b["n"] for b in summary["by_gap"].values()) == summary["n_heldout_pairs"]


def test_normalised_on_fresh_base_model_whole_reviews(trained):
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import score_texts

    model, tok, summary = trained
    policy, policy_tok = load_model()
    starts = review_starts(TINY["n_normalize"], 0 + 2000)  # the recipe's normalisation starts for seed 0
    _, responses, finished = sample_whole_reviews(policy, policy_tok, starts, TINY["max_new_tokens"], seed=2000)
    texts = [s + r for s, r, ok in zip(starts, responses, finished) if ok]
    assert len(texts) == summary["n_normalize_texts"] > 10
    r = score_texts(model, tok, texts)
    assert abs(r.mean()) < 1e-4 and abs(r.std() - 1) < 1e-4
    assert model.config.reward_pooling == "sum" and summary["reward_std"] > 0


def test_saved_model_gives_the_training_rewards(trained, tmp_path):
    from rlhf_lib.reward_model import encode, load_reward_model, score_texts
    from rlhf_lib.rlhf import reward_model_scorer

    model, tok, _ = trained
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_reward_model(tmp_path)
    texts = ["The plot was wonderful and the cast was great.", "", "What a dull, bad film. I hated it.",
             "I expected more"]
    # recomputing forward pass, one text at a time, no padding: sum of the head over every token of
    # <|endoftext|> text <|endoftext|>, then the stored normalisation
    by_hand = []
    with torch.no_grad():
        for t in texts:
            ids, _ = encode(tok, [t])
            hidden = model.transformer(input_ids=ids).last_hidden_state[0]  # (T, d)
            by_hand.append(((hidden @ model.score.weight[0]).sum().item() - model.config.reward_mean)
                           / model.config.reward_std)
    scorer = reward_model_scorer(loaded, loaded_tok)
    np.testing.assert_allclose(score_texts(loaded, loaded_tok, texts), by_hand, atol=1e-4)
    np.testing.assert_allclose(scorer(texts).numpy(), by_hand, atol=1e-4)
    assert loaded.config.reward_pooling == "sum"


def test_a_summed_head_differs_from_the_last_token_read(trained):
    """The check above can fail: reading the last token instead of summing gives other numbers."""
    from rlhf_lib.reward_model import score_texts

    model, tok, _ = trained
    texts = ["The plot was wonderful and the cast was great.", "What a dull, bad film. I hated it."]
    summed = score_texts(model, tok, texts)
    model.config.reward_pooling = "last"
    try:
        assert not np.allclose(score_texts(model, tok, texts), summed, atol=1e-3)
    finally:
        model.config.reward_pooling = "sum"


def run(*args):
    return subprocess.run([sys.executable, "-m", "rlhf_lib", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.usefixtures("pinned_threads")
def test_reward_command_defaults_to_whole_reviews_same_seed_same_numbers(tmp_path):
    from safetensors.torch import load_file

    sizes = ["--n-groups", "8", "--group-size", "2", "--groups-per-batch", "4", "--epochs", "1", "--heldout", "8",
             "--n-normalize", "16", "--max-new-tokens", "48"]
    summaries, weights = [], []
    for k in range(2):
        out = tmp_path / f"rm{k}"
        p = run("reward", "--out", out, *sizes)
        assert p.returncode == 0, p.stderr[-2000:]
        summaries.append(json.loads((out / "summary.json").read_text()))
        weights.append(load_file(out / "model.safetensors"))
    s = summaries[0]
    assert s["task"] == "whole" and s["pooling"] == "sum" and s["config"]["n_groups"] == 8
    assert {"gold_accuracy", "n_heldout_pairs", "by_gap", "n_train_pairs", "n_train_reviews", "seconds",
            "training_seconds", "reward_mean", "reward_std"} <= set(s)
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    timing = ("seconds", "cpu_seconds", "training_seconds", "training_cpu_seconds", "sampling_seconds", "load_average")
    strip = lambda d: {k: v for k, v in d.items() if k not in timing}
    assert strip(summaries[0]) == strip(summaries[1])
    again = run("reward", "--out", tmp_path / "rm0", *sizes)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("args,message", [
    (("--labels", "x.jsonl"), "--labels does not apply to --task whole"),
    (("--task", "sentence", "--n-groups", "3"), "--n-groups does not apply to --task sentence"),
    (("--n-groups", "3"), "must be at least groups_per_batch (16)"),
    (("--max-seconds", "-1"), "option --max-seconds"),
    (("--heldout", "0"), "--heldout: must be at least 1"),
])
def test_reward_command_refuses_before_any_work(tmp_path, capsys, args, message):
    from rlhf_lib.__main__ import main

    out = tmp_path / "out"
    try:
        code = main(["reward", "--out", str(out), *args])
    except SystemExit as stop:  # argparse refuses an option this way
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not out.exists()


def test_reward_command_will_not_put_a_whole_review_model_in_the_sentence_asset(capsys):
    from rlhf_lib.__main__ import main

    code = main(["reward", "--out", str(ROOT / "assets" / "reward_model"), "--overwrite"])
    assert code == 2 and "--task sentence" in capsys.readouterr().err


@pytest.mark.slow
def test_label_command_writes_whole_review_pairs(tmp_path):
    from rlhf_lib.feedback import read_records

    p = run("label", "--out", tmp_path / "labels", "--n-pairs", "6", "--max-new-tokens", "48")
    assert p.returncode == 0, p.stderr[-2000:]
    records = read_records(tmp_path / "labels" / "labels.jsonl")
    summary = json.loads((tmp_path / "labels" / "summary.json").read_text())
    assert summary["task"] == "whole" and len(records) == 6
