"""DPO on the course's preference labels: what it buys in gold sentiment and costs in fluency and KL.

    python benchmarks/dpo.py                     # writes results/dpo.json
    python benchmarks/dpo.py --loss-type ipo     # or robust; --beta, --epochs, --lr, --n override

The policy and the reference both start as the course model (assets/model). DPO (`DPOConfig()` defaults
unless overridden) trains on assets/reward_model/labels.jsonl: 2,000 simulated-annotator records, each
a course prompt and two one-sentence completions. Before and after, `rlhf.evaluate_policy` samples n
one-sentence completions of the course prompts (seed 1234) and reports the gold positive rate, the
grammatical rate and the KL to the reference per response.
"""

import argparse
import json
import platform
from dataclasses import asdict
from datetime import date
from pathlib import Path

import torch

from rlhf_lib.dpo import DPOConfig, train_dpo
from rlhf_lib.lm import load_model
from rlhf_lib.rlhf import evaluate_policy

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "assets/reward_model/labels.jsonl"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss-type", default=None, choices=("sigmoid", "ipo", "robust"))
    parser.add_argument("--beta", type=float, default=None)
    parser.add_argument("--label-smoothing", type=float, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--n", type=int, default=500, help="samples for each evaluation")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/dpo.json"))
    args = parser.parse_args()
    overrides = {k: v for k, v in dict(loss_type=args.loss_type, beta=args.beta, label_smoothing=args.label_smoothing,
                                        epochs=args.epochs, lr=args.lr).items() if v is not None}
    cfg = DPOConfig(**overrides)  # bad settings fail here, before any model is loaded

    policy, tokenizer = load_model()
    reference, _ = load_model()
    keys = ("positive_rate", "grammatical_rate", "mean_sentiment", "kl_k1", "kl_exact")
    before = evaluate_policy(policy, reference, tokenizer, n=args.n)
    print("before", {k: round(before[k], 3) for k in keys})
    result = train_dpo(policy, reference, tokenizer, LABELS, cfg)
    after = evaluate_policy(policy, reference, tokenizer, n=args.n)
    print("after ", {k: round(after[k], 3) for k in keys})
    print("held-out preference accuracy", [round(h["accuracy"], 3) for h in result.heldout])
    out = dict(date=str(date.today()), machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
               torch=torch.__version__, labels=str(LABELS.relative_to(ROOT)), config=asdict(cfg), n_eval=args.n,
               training_seconds=round(result.seconds, 1), steps=len(result.history), heldout=result.heldout,
               before={k: before[k] for k in keys}, after={k: after[k] for k in keys},
               examples_after=after["examples"])
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
