"""The course's judge against gold and against the scalar reward model, and its biases.

    python benchmarks/judge.py                     # the shipped judge (assets/judge), about 5 minutes on 2 cores
    python benchmarks/judge.py --judge DIR         # another judge folder
    python benchmarks/judge.py --other DIR         # and self-preference against another model of the language
                                                   # (say `python -m rlhf_lib pretrain --seed 1 --out DIR`)

On 1,000 fresh pairs of the course model's whole reviews from one start each (a tenth with one broken review,
`rlhf_lib.judge.evaluation_pairs`; pairs with a review over 40 tokens refused and counted):

- agreement with the noise-free gold (the reading person's choice), read once and read in both orders (a tie
  where the orders disagree), by gold-gap band; the shipped whole-review reward model on the same pairs;
- pairs judged per second, read once;
- the biases of `rlhf_lib.judge.measure_biases` (position, length, negation, fluency), each a share with a
  bootstrap interval, read once and in both orders; with `--other`, self-preference (`self_preference`: the
  course model's review against the other model's, equal gold within 0.02).

Writes results/judge.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "judge.json"


def main(argv=None):
    from rlhf_lib.judge import (
        JUDGE,
        check_judge,
        evaluation_pairs,
        load_judge,
        measure_biases,
        self_preference,
        self_preference_pairs,
    )
    from rlhf_lib.lm import load_model
    from rlhf_lib.runtime import derive_seed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge", type=Path, default=JUDGE)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--other", type=Path, default=None, help="another model of the language, for self-preference")
    args = parser.parse_args(argv)
    if args.other is not None:
        from rlhf_lib.lm import check_model_source

        check_model_source(args.other)  # before minutes of judging

    judge = load_judge(args.judge)
    course, tokenizer = load_model()
    pairs, refused = evaluation_pairs(course, tokenizer, args.pairs, seed=derive_seed(args.seed, "judge test"))
    checked = check_judge(judge, pairs, progress=True)
    biases = measure_biases(judge, pairs, seed=args.seed, progress=True)
    if args.other is not None:
        close = self_preference_pairs((course, tokenizer), load_model(args.other), tokenizer, 500, seed=args.seed)
        biases["self"] = self_preference(judge, close, seed=args.seed)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    result = dict(judge=str(args.judge), pairs=len(pairs), refused=refused,
                  **{k: checked[k] for k in ("gold_once", "gold_both_orders", "flip_rate", "reward_model",
                                             "pairs_per_second")},
                  biases=biases, seed=args.seed, machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
                  date=str(date.today()), commit=commit)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def table(r: dict) -> str:
    """The agreement table (once, both orders, the reward model, by band) and the bias table."""
    bands = list(r["gold_once"]["by_gap"])
    lines = ["| | overall | " + " | ".join(bands) + " |", "|---" * (len(bands) + 2) + "|"]
    for name, rep in (("judge, read once", r["gold_once"]), ("judge, both orders", r["gold_both_orders"]),
                      ("reward model", r["reward_model"])):
        cells = [f"{100 * acc:.1f}" if acc is not None else "-" for n, acc in rep["by_gap"].values()]
        lines.append(f"| {name} | {100 * rep['gold_accuracy']:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "| bias | what is measured | ideal | read once | both orders |", "|---|---|---|---|---|"]
    meaning = dict(position=("verdict flips when A and B swap", "0"), length=("prefers the longer, equal gold", "0.5"),
                   negation=("agrees with gold on a 'was not ...'", "1"), fluency=("prefers the fluent review", "1"),
                   self=("prefers its base model's review, equal gold", "0.5"))
    for name, b in r["biases"].items():
        once, both = b["once"], b["both_orders"]
        cell = (lambda x: f"{x['rate']:.3f} [{x['low']:.3f}, {x['high']:.3f}] (n={x['n']})" if "low" in x
                else f"{x['rate']:.3f} (by construction)")
        lines.append(f"| {name} | {meaning[name][0]} | {meaning[name][1]} | {cell(once)} | {cell(both)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
