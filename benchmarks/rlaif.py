"""RLAIF at equal cost: 200 human labels spent on a reward model, or on a judge that labels thousands of pairs.

    python benchmarks/rlaif.py                          # 3 seeds, 200 labels, 4,000 judge labels, PPO on each
    python benchmarks/rlaif.py --seeds 0 --ppo-iterations 0    # the reward models only (a seed rerun replaces it)

For each seed, `rlhf_lib.rlaif.equal_cost`: three reward models of one recipe and one number of steps, from the
budget's labels (the simulated reading person), from a judge fine-tuned on those labels only (verdicts alone),
and from the shipped judge (`assets/judge`); each one's agreement with the noise-free gold on 1,000 fresh pairs,
and each judge's own. Then, unless --ppo-iterations is 0, the course's plain whole-review PPO (the same settings
for every arm) against each reward model, and the policy's gold positive rate, grammatical rate and exact KL
from the course prompts and from the start of text (300 reviews each). Writes results/rlaif.json.
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
RESULTS = ROOT / "benchmarks" / "results" / "rlaif.json"


def main(argv=None):
    from rlhf_lib.lm import load_model
    from rlhf_lib.rlaif import ARMS, equal_cost
    from rlhf_lib.rlhf import train_rlhf
    from rlhf_lib.whole_reviews import evaluate_whole, whole_review_config, whole_review_prompts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--judge-labels", type=int, default=4000)
    parser.add_argument("--eval-pairs", type=int, default=1000)
    parser.add_argument("--ppo-iterations", type=int, default=40, help="0: the reward models only")
    args = parser.parse_args(argv)

    earlier = json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else []
    runs = [r for r in earlier if r["seed"] not in args.seeds]  # a rerun of a seed replaces it
    for seed in args.seeds:
        r = equal_cost(args.budget, args.judge_labels, seed=seed, eval_pairs=args.eval_pairs, progress=True)
        run = {k: r[k] for k in ("agreement", "label_agreement", "judges", "labels", "seconds")}
        run.update(seed=seed, budget=args.budget, judge_labels=args.judge_labels, ppo_iterations=args.ppo_iterations)
        if args.ppo_iterations:
            reference, tokenizer = load_model()
            run["ppo"] = {}
            for arm in ARMS:
                policy, _ = load_model()
                cfg = whole_review_config(plain=True, iterations=args.ppo_iterations, seed=seed)
                train_rlhf(policy, tokenizer, *r["models"][arm], reference, cfg,
                           prompts=whole_review_prompts(seed=seed))
                after = evaluate_whole(policy, reference, tokenizer, n=300)
                run["ppo"][arm] = {start: {k: figures[k] for k in ("positive_rate", "grammatical_rate", "kl_exact")}
                                   for start, figures in after.items()}
        runs.append(run)
        print(json.dumps(run, indent=1))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    runs.sort(key=lambda r: r["seed"])
    RESULTS.write_text(json.dumps(dict(settings=vars(args), runs=runs,
                                       machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
                                       date=str(date.today()), commit=commit), indent=2) + "\n")


if __name__ == "__main__":
    main()
