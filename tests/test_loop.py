"""RLHF in rounds (rlhf_lib/loop.py) on a tiny budget: a round's labels are its pairs judged one by one, round 1's
labels are made again exactly, a resumed run equals an unbroken one, labels from outside stop the run and
continue it, and bad input is refused before any work with nothing in the run folder lost."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from rlhf_lib import loop
from rlhf_lib.feedback import SimulatedAnnotator, read_records, save_records
from rlhf_lib.pipeline import PipelineSettings, run_pipeline
from rlhf_lib.runtime import derive_seed
from rlhf_lib.threads import THREADS_ENV_VAR, usable_cores
from rlhf_lib.whole_reviews import WholeRewardConfig, label_groups, whole_review_config

pytestmark = pytest.mark.slow

REWARD = WholeRewardConfig(n_groups=16, groups_per_batch=4, epochs=1, n_heldout=8, n_normalize=16, warmup=1)
PPO = whole_review_config(iterations=2, batch_size=8, minibatches=2, ptx_reviews=50)


def settings(**changes) -> PipelineSettings:
    base = dict(task="whole", model=None, sft=False, n_pairs=None, n_groups=16, annotator_temperature=0.1, heldout=8,
                iterations=2, seed=0, rounds=2, round_pairs=8, min_round_labels=6)
    return PipelineSettings(**{**base, **changes})


def run(out, resume=False, round_labels=None, **changes):
    return run_pipeline(out, settings(**changes), REWARD, PPO, eval_samples=8, resume=resume,
                        round_labels=round_labels)


def checksum(folder) -> str:
    return hashlib.sha256((Path(folder) / "model.safetensors").read_bytes()).hexdigest()


def figures(summary: dict) -> list:
    """A run's results without its timings."""
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in summary["rounds"]] + [summary["after"]]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    """A two-round run from start to end, and the groups round 1's reward model trained on."""
    trained_on = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(THREADS_ENV_VAR, str(usable_cores()))  # bit-for-bit comparisons below
        from rlhf_lib import whole_reviews

        real = whole_reviews.train_on_groups
        mp.setattr(whole_reviews, "train_on_groups", lambda m, t, groups, *a, **k: (trained_on.append(groups),
                                                                                    real(m, t, groups, *a, **k))[1])
        out = tmp_path_factory.mktemp("loop") / "run"
        summary = run(out)
    return out, summary, trained_on[0]


def test_the_run_has_the_layout_and_summary_it_promises(unbroken):
    out, summary, _ = unbroken
    assert summary["policy"] == str(out / "round-2" / "ppo" / "policy")
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))
    for k in (1, 2):
        assert (out / f"round-{k}" / "reward_model" / "model.safetensors").is_file()
        assert (out / f"round-{k}" / "ppo" / "policy" / "model.safetensors").is_file()
    assert {e["round"] for e in summary["rounds"]} == {1, 2}
    one, two = summary["rounds"]
    assert one["labels_added"] == json.loads((out / "round-1" / "reward_model" / "summary.json").read_text())[
        "n_train_pairs"]
    labels = read_records(out / "round-2" / "labels.jsonl")
    assert two["labels_added"] == sum(r["choice"] in "ab" for r in labels) >= 6
    assert two["labels_total"] == one["labels_added"] + two["labels_added"]
    for entry in (one, two):
        assert set(entry["after"]) == {"course", "empty"}
        assert set(entry["after"]["course"]) == {"positive_rate", "grammatical_rate", "kl_exact"}
    assert one["rm_gold_agreement_before"] is None and two["rm_gold_agreement_before"]["n"] > 0
    assert set(two["rm_gold_agreement_after"]["by_gap"]) == {"0-0.1", "0.1-0.2", "0.2-0.5", "0.5-2", "2-inf"}
    pairs = [json.loads(line) for line in (out / "round-2" / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 8 and all(set(p) == {"prompt", "completion_a", "completion_b"} for p in pairs)


def test_a_round_labels_its_pairs_one_by_one(unbroken):
    out, _, _ = unbroken
    pairs = loop.read_pairs(out / "round-2" / "pairs.jsonl")
    person = SimulatedAnnotator(0.1, seed=derive_seed(0, "loop round", 2))
    want = [person.compare(p, a, b) for p, a, b in pairs]  # one at a time, in the file's order
    got = read_records(out / "round-2" / "labels.jsonl")
    assert [(r["prompt"], r["completion_a"], r["completion_b"]) for r in got] == pairs
    assert [r["choice"] for r in got] == want


def test_round_one_labels_are_made_again_exactly(unbroken):
    out, _, trained_on = unbroken
    again = loop.round_one_labels(out / "round-1", REWARD)
    assert again == trained_on and sum(map(len, again)) > 100
    batches = [json.loads(line) for line in (out / "round-1" / "reviews.jsonl").read_text().splitlines()]
    assert again == label_groups(SimulatedAnnotator(0.1, seed=0), [("", texts) for texts in batches])


def test_a_resumed_run_equals_an_unbroken_one(unbroken, tmp_path, monkeypatch):
    monkeypatch.setenv(THREADS_ENV_VAR, str(usable_cores()))
    out = tmp_path / "run"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as if stopped while round 2's reward model trains

    monkeypatch.setattr(loop, "continue_reward_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(out)
    assert (out / "round-1" / "summary.json").is_file() and not (out / "round-2" / "summary.json").exists()
    monkeypatch.undo()
    monkeypatch.setenv(THREADS_ENV_VAR, str(usable_cores()))
    resumed = run(out, resume=True)
    reference, summary, _ = unbroken
    assert figures(resumed) == figures(json.loads(json.dumps(summary)))
    assert checksum(out / "round-2" / "ppo" / "policy") == checksum(reference / "round-2" / "ppo" / "policy")
    assert checksum(out / "round-2" / "reward_model") == checksum(reference / "round-2" / "reward_model")


def test_labels_from_outside_stop_the_run_and_continue_it(unbroken, tmp_path):
    reference = unbroken[0]
    out = tmp_path / "run"
    shutil.copytree(reference / "round-1", out / "round-1")  # round 1 done, as if by this run
    labels = tmp_path / "class.jsonl"
    copied = {p: p.read_bytes() for p in (out / "round-1").rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="made by another run"):
        run(out, outside_labels=True, round_labels=labels)
    assert not (out / "pipeline.json").exists()  # refused before anything was written
    assert {p: p.read_bytes() for p in (out / "round-1").rglob("*") if p.is_file()} == copied
    shutil.rmtree(out)
    with pytest.raises(loop.LabelsNeeded, match="round-2/pairs.jsonl"):
        run(out, outside_labels=True, round_labels=labels)
    pairs = loop.read_pairs(out / "round-2" / "pairs.jsonl")
    kept = {p: p.stat().st_mtime_ns for p in (out / "round-1").rglob("*") if p.is_file()}

    def refused(records, match):
        save_records(labels, records)
        with pytest.raises(ValueError, match=match):
            run(out, resume=True, outside_labels=True, round_labels=labels)
        assert not (out / "round-2" / "labels.jsonl").exists()
        assert {p: p.stat().st_mtime_ns for p in kept} == kept  # nothing of round 1 touched

    person = SimulatedAnnotator(0.1, seed=3, name="student")
    other = [dict(prompt="The plot was", completion_a=" fine.", completion_b=" dull.", choice="a", annotator="x",
                  time="t", model="m")]
    refused(other, "judge pairs that are not this round's")
    mine = [dict(prompt=p, completion_a=a, completion_b=b, choice=person.compare(p, a, b), annotator="student",
                 time="t", model="policy") for p, a, b in pairs]
    refused([dict(r, choice="tie") for r in mine], "fewer than --min-round-labels 6")
    flipped = [dict(r, completion_a=r["completion_b"], completion_b=r["completion_a"],
                    choice={"a": "b", "b": "a"}.get(r["choice"], r["choice"])) if i % 2 else r
               for i, r in enumerate(mine)]  # half of them given the other way round
    save_records(labels, flipped)
    summary = run(out, resume=True, outside_labels=True, round_labels=labels)
    got = read_records(out / "round-2" / "labels.jsonl")
    assert [(r["completion_a"], r["completion_b"], r["choice"]) for r in got] == \
        [(r["completion_a"], r["completion_b"], r["choice"]) for r in mine]
    assert summary["rounds"][1]["labels_added"] == sum(r["choice"] in "ab" for r in mine)


def test_the_command_stops_with_exit_code_3_while_it_waits(tmp_path, capsys, monkeypatch):
    import rlhf_lib.__main__ as cli

    def waits(out, *args, **kwargs):
        raise loop.LabelsNeeded(Path(out) / "round-2" / "pairs.jsonl", 2)

    monkeypatch.setattr(cli, "run_pipeline", waits)
    code = cli.main(["pipeline", "--out", str(tmp_path / "run"), "--rounds", "2", "--round-labels",
                     str(tmp_path / "class.jsonl")])
    err = capsys.readouterr().err
    assert code == 3 and "round-2/pairs.jsonl" in err and "--resume --round-labels FILE" in err
