"""The command line, end to end on a tiny budget: pretrain then SFT, each saving a loadable model and a summary."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "-m", "rlhf_lib", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_pretrain_then_sft(tmp_path):
    base, tuned = tmp_path / "base", tmp_path / "sft"
    p = run("pretrain", "--out", str(base), "--n-reviews", "400", "--n-heldout", "50", "--steps", "5",
            "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--vocab-size", "400", "--eval-samples", "16")
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((base / "summary.json").read_text())
    assert summary["config"]["steps"] == 5 and summary["samples_t1"]["n"] == 16 and "heldout_loss" in summary
    assert (base / "README.md").exists() and "saved to" in p.stdout
    AutoModelForCausalLM.from_pretrained(base)
    AutoTokenizer.from_pretrained(base)

    s = run("sft", "--out", str(tuned), "--model", str(base), "--n-demos", "40", "--epochs", "1", "--batch-size", "8",
            "--eval-samples", "8")
    assert s.returncode == 0, s.stderr[-2000:]
    summary = json.loads((tuned / "summary.json").read_text())
    assert summary["n_demonstrations"] == 40 and {"before", "after"} <= set(summary)
    assert (tuned / "demonstrations.jsonl").exists()
    AutoModelForCausalLM.from_pretrained(tuned)


def test_bad_model_path_is_a_clear_error(tmp_path):
    s = run("sft", "--out", str(tmp_path / "x"), "--model", str(tmp_path), "--n-demos", "4")
    assert s.returncode == 2
    assert "not a saved causal language model" in s.stderr and "Traceback" not in s.stderr


@pytest.mark.slow
def test_label_reward_ppo_commands(tmp_path):
    from rlhf_lib.feedback import read_records
    from rlhf_lib.reward_model import load_reward_model

    labels = tmp_path / "labels"
    p = run("label", "--out", str(labels), "--task", "sentence", "--n-pairs", "40", "--max-new-tokens", "24")
    assert p.returncode == 0, p.stderr[-2000:]
    records = read_records(labels / "labels.jsonl")  # the widget's format, validated line by line
    summary = json.loads((labels / "summary.json").read_text())
    assert len(records) == summary["n"] == 40 and sum(summary["choices"].values()) == 40
    again = run("label", "--out", str(labels), "--n-pairs", "4")
    assert again.returncode == 2 and "already exists" in again.stderr

    reward = tmp_path / "reward"
    r = run("reward", "--out", str(reward), "--task", "sentence", "--labels", str(labels / "labels.jsonl"),
            "--epochs", "1",
            "--heldout", "16", "--max-new-tokens", "24", "--group-by-length", "true")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((reward / "summary.json").read_text())
    assert summary["n_train_pairs"] <= 40 and 0 <= summary["gold_accuracy"] <= 1 and summary["config"]["epochs"] == 1
    model, _ = load_reward_model(reward)
    assert model.config.reward_pooling == "last" and model.config.reward_std > 0

    ppo = tmp_path / "ppo"
    q = run("ppo", "--out", str(ppo), "--task", "sentence", "--reward-model", str(reward), "--iterations", "2",
            "--batch-size", "8", "--minibatches", "2", "--max-new-tokens", "16", "--eval-samples", "8",
            "--target-kl", "4")
    assert q.returncode == 0, q.stderr[-2000:]
    summary = json.loads((ppo / "summary.json").read_text())
    assert ({"positive_rate", "grammatical_rate", "kl_k1"} <= set(summary["after"])
            and summary["config"]["target_kl"] == 4)
    assert summary["config"]["stop_at"] == "sentence" and summary["config"]["max_new_tokens"] == 16
    AutoModelForCausalLM.from_pretrained(ppo / "policy")
    missing = run("ppo", "--out", str(tmp_path / "x"), "--reward-model", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no reward model at" in missing.stderr


@pytest.mark.slow
def test_ppo_under_accelerate_with_two_processes(tmp_path):
    """`accelerate launch` with 2 processes (on a machine without a GPU they run on the CPU): each samples half
    the batch, gradients are averaged, so both processes end with the same weights; the main process writes
    the summary and the policy. (accelerate's own `--cpu` flag starts one process unless MPI is set up.)"""
    accelerate = Path(sys.executable).parent / "accelerate"
    out = tmp_path / "ppo2"
    p = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlhf_lib", "ppo",
                        "--task", "sentence", "--out", str(out),
                        "--reward-model", str(ROOT / "assets" / "reward_model"), "--iterations", "3",
                        "--batch-size", "16", "--minibatches", "2", "--eval-samples", "16"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["last_iteration"]["iteration"] == 3
    assert summary["last_iteration"]["weight_checksum_spread"] == 0.0
    AutoModelForCausalLM.from_pretrained(out / "policy")
    manifest = json.loads((out / "checkpoint" / "manifest.json").read_text())  # one sampler file a process
    assert manifest["processes"] == 2 and {"sampler-0.pt", "sampler-1.pt"} <= set(manifest["files"])


@pytest.mark.slow
def test_pipeline_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    """The default task, whole reviews: the reward model's recipe on 16 groups, 2 PPO iterations, evaluated from
    the course prompts and from the start of text."""
    from rlhf_lib.whole_reviews import whole_review_config

    out = tmp_path / "run"
    args = ("--n-groups", "16", "--heldout", "16", "--iterations", "2", "--eval-samples", "16")
    p = run("pipeline", "--out", str(out), *args)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert {"before", "after", "reward_model_gold_accuracy", "seconds"} <= set(summary)
    assert set(summary["stages"]) == {"reward_model", "ppo"} and summary["task"] == "whole"
    assert set(summary["after"]) == {"course", "empty"} and summary["after"]["empty"]["n"] == 16
    config = summary["stages"]["ppo"]["config"]
    assert config == {**vars(whole_review_config(iterations=2)), "seed": 0} and config["stop_at"] == "text"
    assert summary["stages"]["reward_model"]["n_train_groups"] == 16
    assert f"saved to {out}" in p.stdout and str(out / "ppo" / "policy") in p.stdout
    AutoModelForCausalLM.from_pretrained(summary["policy"])

    # as if the run had died during PPO: the finished stages are kept, PPO continues from its checkpoint
    (out / "summary.json").unlink()
    (out / "ppo" / "summary.json").unlink()
    finished = {p: p.stat().st_mtime_ns
                for p in (out / "reward_model" / "summary.json", out / "reward_model" / "model.safetensors")}
    code, err = main_in_process(capsys, "pipeline", "--out", out, *args)
    assert code == 2 and "--resume" in err
    code, err = main_in_process(capsys, "pipeline", "--out", out, *args[:1], "17", *args[2:], "--resume")
    assert code == 2 and "--n-groups 16 then, 17 now" in err
    code, err = main_in_process(capsys, "pipeline", "--out", out, *args, "--resume")
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not made again
    resumed = json.loads((out / "summary.json").read_text())
    strip = lambda h: {k: v for k, v in h.items() if k != "seconds"}
    assert strip(resumed["stages"]["ppo"]["last_iteration"]) == strip(summary["stages"]["ppo"]["last_iteration"])
    assert resumed["after"] == summary["after"]


# ---- nothing lost, nothing silently wrong (in-process where no process needs to die: faster)

REWARD = ROOT / "assets" / "reward_model"


def main_in_process(capsys, *args):
    """(exit code, stderr) of `python -m rlhf_lib ARGS` run in this process."""

    from rlhf_lib.__main__ import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:  # argparse refuses an option this way
        code = stop.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (("reward", "--warmup", "0"), "warmup must be an integer >= 1"),
    (("reward", "--warmup", "-5"), "warmup must be an integer >= 1"),
    (("reward", "--lr", "nan"), "--lr: must be a finite number"),
    (("reward", "--heldout", "0"), "--heldout: must be at least 1"),
    (("reward", "--annotator-temperature", "inf"), "--annotator-temperature: must be a finite number > 0"),
    (("label", "--n-pairs", "0"), "--n-pairs: must be at least 1"),
    (("ppo", "--reward-model", REWARD, "--eval-samples", "0"), "--eval-samples: must be at least 1"),
    (("ppo", "--reward-model", REWARD, "--unfinished-penalty", "nan"), "--unfinished-penalty: must be a finite"),
    (("ppo", "--reward-model", REWARD, "--value-clip-eps", "nan"), "--value-clip-eps: must be a finite"),
    (("ppo", "--reward-model", REWARD, "--value-clip-eps", "-1"), "value_clip_eps (or None to switch it off)"),
    (("ppo", "--reward-model", REWARD, "--max-new-tokens", "300"), "--max-new-tokens 300 is too long"),
    (("pipeline", "--iterations", "0"), "--iterations: must be at least 1"),
    (("pipeline", "--n-pairs", "40"), "--n-pairs does not apply to --task whole"),
    (("pipeline", "--task", "sentence", "--n-groups", "40"), "--n-groups does not apply to --task sentence"),
    (("pipeline", "--rounds", "0"), "--rounds: must be at least 1"),
    (("pipeline", "--rounds", "-1"), "--rounds: must be at least 1"),
    (("pipeline", "--task", "sentence", "--rounds", "2"), "--rounds 2 is for --task whole"),
    (("pipeline", "--rounds", "2", "--round-pairs", "100", "--min-round-labels", "101"),
     "--min-round-labels must be between 0 and --round-pairs (100)"),
    (("ppo", "--ptx-coef", "-1"), "ptx_coef"),
    (("ppo", "--reward-transform", "tanh"), "reward_transform must be None or 'logsigmoid'"),
    (("ppo", "--lr-schedule", "cosine"), "lr_schedule must be 'linear' or 'constant'"),
    (("sft", "--warmup", "0"), "warmup must be an integer >= 1"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code, err = main_in_process(capsys, args[0], "--out", out, *args[1:])
    assert code == 2 and message in err, err
    assert not out.exists()  # nothing half-made that would block the rerun


def test_library_settings_reject_nan_and_nonsense():
    import math

    from rlhf_lib.reward_model import RewardConfig
    from rlhf_lib.rlhf import RLHFConfig

    for kw, name in [(dict(unfinished_penalty=math.nan), "unfinished_penalty"), (dict(value_clip_eps=math.nan),
                     "value_clip_eps"), (dict(kl_coef=math.inf), "kl_coef"), (dict(forced_min_tokens=-1),
                     "forced_min_tokens")]:
        with pytest.raises(ValueError, match=name):
            RLHFConfig(**kw)
    for warmup in (0, -3, math.nan):
        with pytest.raises(ValueError, match="warmup"):
            RewardConfig(warmup=warmup)


def test_text_options_of_a_config_parse_as_text():
    import argparse

    from rlhf_lib.__main__ import add_config_options
    from rlhf_lib.rlhf import RLHFConfig

    parser = argparse.ArgumentParser()
    add_config_options(parser, RLHFConfig)
    args = parser.parse_args(["--reward-transform", "logsigmoid", "--lr-schedule", "constant", "--target-kl", "none"])
    assert (args.reward_transform, args.lr_schedule, args.target_kl) == ("logsigmoid", "constant", None)
    assert parser.parse_args(["--reward-transform", "none"]).reward_transform is None
    assert parser.parse_args([]).reward_transform is None and parser.parse_args([]).lr_schedule == "linear"


def test_outputs_are_never_replaced_silently(tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "summary.json").write_text("{}")
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    cases = [
        (("reward", "--out", used), "already exists and is not empty; choose another folder, add --overwrite"),
        (("ppo", "--out", used, "--reward-model", REWARD), "or --resume to continue it"),
        (("label", "--out", used), "already exists and is not empty"),
        (("sft", "--out", ROOT / "assets" / "model"), "inside assets/"),
        (("label", "--out", ROOT / "assets" / "reward_model"), "inside assets/"),
        (("ppo", "--out", ROOT / "assets" / "ppo", "--reward-model", REWARD), "inside assets/"),
        (("pretrain", "--out", ROOT / "assets" / "model"), "already exists and is not empty"),
        (("label", "--out", a_file), "is a file, not a folder"),
        (("ppo", "--out", tmp_path / "never-ran", "--reward-model", REWARD, "--resume"), "no run to continue"),
    ]
    for args, message in cases:
        code, err = main_in_process(capsys, *args)
        assert code == 2 and message in err, (args, err)
    assert (used / "summary.json").read_text() == "{}" and a_file.read_text() == "mine"
    assert not (ROOT / "assets" / "ppo").exists()


@pytest.mark.parametrize("args,message", [
    (("reward", "--base", "no/such/folder"), "no such folder: no/such/folder"),
    (("reward", "--base", "{empty}"), "is a folder but not a saved causal language model (it has no config.json"),
    (("sft", "--model", REWARD), "holds a reward model (a sequence classifier), not a causal language model"),
])
def test_unclear_inputs_get_clear_messages(tmp_path, capsys, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [str(a).replace("{empty}", str(empty)) for a in args]
    code, err = main_in_process(capsys, args[0], "--out", tmp_path / "out", *args[1:])
    assert code == 2 and message in err and "sentencepiece" not in err and "Repo id" not in err, err


def test_last_epoch_mean_by_hand():
    from rlhf_lib.__main__ import last_epoch_mean

    # 10 pairs in batches of 4: 2 steps an epoch; 3 epochs
    assert last_epoch_mean([0.0, 0.0, 0.5, 0.5, 1.0, 0.5], n_pairs=10, batch_size=4) == 0.75
    assert last_epoch_mean([0.25, 1.0], n_pairs=3, batch_size=8) == 1.0  # fewer pairs than a batch: 1 step


@pytest.mark.usefixtures("pinned_threads")
@pytest.mark.slow
def test_reward_same_seed_same_weights_from_the_command_line(tmp_path, capsys):
    """The head must not depend on whatever ran before in the process: two runs, identical weights."""
    import torch
    from safetensors.torch import load_file

    code, err = main_in_process(capsys, "label", "--out", tmp_path / "labels", "--task", "sentence", "--n-pairs", "40",
                                "--max-new-tokens", "24")
    assert code == 0, err
    summaries, weights = [], []
    for k in range(2):
        torch.rand(17 + k)  # the global generator is somewhere else each time
        out = tmp_path / f"rm{k}"
        code, err = main_in_process(capsys, "reward", "--out", out, "--task", "sentence",
                                    "--labels", tmp_path / "labels" / "labels.jsonl",
                                    "--epochs", "2", "--batch-size", "8", "--heldout", "16", "--max-new-tokens", "24")
        assert code == 0, err
        summaries.append(json.loads((out / "summary.json").read_text()))
        weights.append(load_file(out / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    strip = lambda s: {k: v for k, v in s.items() if k not in ("seconds",)}
    assert strip(summaries[0]) != {} and strip(summaries[0])["gold_accuracy"] == strip(summaries[1])["gold_accuracy"]
    steps = summaries[0]["n_train_pairs"] // 8
    assert summaries[0]["train_accuracy_last_epoch"] * 8 * steps == pytest.approx(
        round(summaries[0]["train_accuracy_last_epoch"] * 8 * steps))  # a mean of steps x 8 pairs, not a sum / 10


@pytest.mark.usefixtures("pinned_threads")
@pytest.mark.slow
def test_ppo_killed_then_resumed_matches_an_uninterrupted_run(tmp_path, capsys):
    import signal
    import time

    common = ["--reward-model", REWARD, "--iterations", "3", "--batch-size", "8", "--minibatches", "2",
              "--task", "sentence", "--max-new-tokens", "16", "--eval-samples", "8"]
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    code, err = main_in_process(capsys, "ppo", "--out", straight, *common)
    assert code == 0, err
    proc = subprocess.Popen([sys.executable, "-m", "rlhf_lib", "ppo", "--out", str(cut), *map(str, common)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = cut / "checkpoint" / "manifest.json"
    deadline = time.time() + 300
    while not (manifest.exists() and json.loads(manifest.read_text())["iteration"] >= 1) and time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "summary.json").exists()
    code, err = main_in_process(capsys, "ppo", "--out", cut, *common)
    assert code == 2 and "--resume" in err  # the same command again does not overwrite the checkpoint
    code, err = main_in_process(capsys, "ppo", "--out", cut, *common[:3], "4", *common[4:], "--resume")
    assert code == 2 and "iterations: 3 in the checkpoint, 4 now" in err
    code, err = main_in_process(capsys, "ppo", "--out", cut, *common, "--resume")
    assert code == 0, err
    a, b = (json.loads((d / "summary.json").read_text())["last_iteration"] for d in (straight, cut))
    strip = lambda h: {k: v for k, v in h.items() if k != "seconds"}
    assert strip(a) == strip(b)
