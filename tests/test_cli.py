"""The command line, end to end on a tiny budget: pretrain then SFT, each saving a loadable model and a summary."""

import json
import subprocess
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, "-m", "rlhf_lib", *args], capture_output=True, text=True, timeout=600)


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


def test_label_reward_ppo_commands(tmp_path):
    from rlhf_lib.feedback import read_records
    from rlhf_lib.reward_model import load_reward_model

    labels = tmp_path / "labels"
    p = run("label", "--out", str(labels), "--n-pairs", "40", "--max-new-tokens", "24")
    assert p.returncode == 0, p.stderr[-2000:]
    records = read_records(labels / "labels.jsonl")  # the widget's format, validated line by line
    summary = json.loads((labels / "summary.json").read_text())
    assert len(records) == summary["n"] == 40 and sum(summary["choices"].values()) == 40
    again = run("label", "--out", str(labels), "--n-pairs", "4")
    assert again.returncode == 2 and "already exists" in again.stderr

    reward = tmp_path / "reward"
    r = run("reward", "--out", str(reward), "--labels", str(labels / "labels.jsonl"), "--epochs", "1",
            "--heldout", "16", "--max-new-tokens", "24", "--group-by-length", "true")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((reward / "summary.json").read_text())
    assert summary["n_train_pairs"] <= 40 and 0 <= summary["gold_accuracy"] <= 1 and summary["config"]["epochs"] == 1
    model, _ = load_reward_model(reward)
    assert model.config.reward_pooling == "last" and model.config.reward_std > 0

    ppo = tmp_path / "ppo"
    q = run("ppo", "--out", str(ppo), "--reward-model", str(reward), "--iterations", "2", "--batch-size", "8",
            "--minibatches", "2", "--max-new-tokens", "16", "--eval-samples", "8", "--target-kl", "4")
    assert q.returncode == 0, q.stderr[-2000:]
    summary = json.loads((ppo / "summary.json").read_text())
    assert {"positive_rate", "grammatical_rate", "kl_k1"} <= set(summary["after"]) and summary["config"]["target_kl"] == 4
    AutoModelForCausalLM.from_pretrained(ppo / "policy")
    missing = run("ppo", "--out", str(tmp_path / "x"), "--reward-model", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no reward model at" in missing.stderr


def test_ppo_under_accelerate_with_two_processes(tmp_path):
    """`accelerate launch` with 2 processes (on a machine without a GPU they run on the CPU): each samples half
    the batch, gradients are averaged, so both processes end with the same weights; the main process writes
    the summary and the policy. (accelerate's own `--cpu` flag starts one process unless MPI is set up.)"""
    accelerate = Path(sys.executable).parent / "accelerate"
    out = tmp_path / "ppo2"
    p = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                        "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "rlhf_lib", "ppo", "--out", str(out),
                        "--reward-model", str(ROOT / "assets" / "reward_model"), "--iterations", "3",
                        "--batch-size", "16", "--minibatches", "2", "--eval-samples", "16"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["last_iteration"]["iteration"] == 3
    assert summary["last_iteration"]["weight_checksum_spread"] == 0.0
    AutoModelForCausalLM.from_pretrained(out / "policy")


def test_pipeline_end_to_end_on_a_tiny_budget(tmp_path):
    out = tmp_path / "run"
    p = run("pipeline", "--out", str(out), "--n-pairs", "48", "--heldout", "16", "--iterations", "2",
            "--eval-samples", "16")
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert {"before", "after", "reward_model_gold_accuracy", "seconds"} <= set(summary)
    assert set(summary["stages"]) == {"labels", "reward_model", "ppo"}
    assert f"saved to {out}" in p.stdout and str(out / "ppo" / "policy") in p.stdout
    AutoModelForCausalLM.from_pretrained(summary["policy"])
