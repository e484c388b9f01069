"""The command line, end to end on a tiny budget: pretrain then SFT, each saving a loadable model and a summary."""

import json
import subprocess
import sys

from transformers import AutoModelForCausalLM, AutoTokenizer


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
