"""Golden runs: what three short trainings gave at a known commit, to hold the library's behaviour fixed
while its code is rearranged (tests/test_golden.py compares a fresh run with these, exactly).

    python tests/data/make_golden.py     # about 30 s; rewrites tests/data/golden.json

The runs: PPO-RLHF for 3 iterations (RLHFConfig(iterations=3, batch_size=16, minibatches=2), the sentence
task, the shipped reward model), the same with RLOO (4 responses a prompt), and the reward model trained for
20 steps on the first 640 of its shipped labels. Each is recorded with its history and a SHA-256 of its
weights; the processor is recorded too, since another one's arithmetic can differ in the last bits. Two
threads, whatever the machine's load (a thread count changes the order of some sums)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("golden.json")
THREADS = 2


def cpu() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    return f"{name} | {' '.join(f for f in flags if f.startswith(('avx', 'amx', 'fma')))}"


def weights_digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def weights_norm(model) -> float:
    """The sum of squared weights: to compare, with a tolerance, where another processor rounds otherwise."""
    return float(sum(p.detach().double().pow(2).sum() for p in model.state_dict().values()))


def run_ppo(method: str) -> dict:
    from rlhf_lib.critic_free import CriticFreeConfig, critic_free_iteration
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.rlhf import RLHFConfig, train_rlhf

    policy, tok = load_model()
    reference, _ = load_model()
    rm, rtok = load_reward_model(ROOT / "assets" / "reward_model")
    if method == "ppo":
        cfg, kw = RLHFConfig(iterations=3, batch_size=16, minibatches=2), {}
    else:
        cfg = RLHFConfig(iterations=3, batch_size=16, minibatches=2, responses_per_prompt=4)
        kw = dict(iteration_fn=critic_free_iteration(CriticFreeConfig("rloo")))
    result = train_rlhf(policy, tok, rm, rtok, reference, cfg, progress=False, **kw)
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]
    return dict(history=history, samples=result.samples, weights=weights_digest(policy),
                norm=weights_norm(policy))


def run_reward_model() -> dict:
    from rlhf_lib.dpo import as_pairs
    from rlhf_lib.feedback import read_records
    from rlhf_lib.reward_model import RewardConfig, make_reward_model, train_reward_model

    pairs = as_pairs(read_records(ROOT / "assets" / "reward_model" / "labels.jsonl"))[:640]
    model, tok = make_reward_model(seed=0)
    result = train_reward_model(model, tok, pairs, RewardConfig(epochs=1, batch_size=32), progress=False)
    return dict(losses=result.losses, accuracies=result.accuracies, weights=weights_digest(model),
                norm=weights_norm(model))


def make() -> dict:
    from rlhf_lib.threads import fixed

    with fixed(THREADS):
        return dict(ppo=run_ppo("ppo"), rloo=run_ppo("rloo"), reward_model=run_reward_model())


if __name__ == "__main__":
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    out = dict(commit=commit.strip(), cpu=cpu(), torch=torch.__version__, threads=THREADS, runs=make())
    GOLDEN.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {GOLDEN} at {out['commit']} on {out['cpu']}", file=sys.stderr)
