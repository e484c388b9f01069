"""RLHF in rounds against one round: `pipeline --rounds 2` per seed and recipe, gathered into one table.

    python benchmarks/loop.py --seeds 0 1 2                       # the default recipe, about 17 min a seed
    python benchmarks/loop.py --seeds 0 --recipe whole-review-plain   # the loop with the plain PPO setting
    python benchmarks/loop.py --collect runs/loop-s0 ...          # add finished `pipeline --rounds` runs

Each run is `rlhf_lib.pipeline.run_pipeline` with the command's defaults (`--rounds 2 --eval-samples 1000`), its
PPO setting taken from the named recipe (rlhf_lib/recipes.py). Per round: labels added and in total, the reward
model's agreement with gold on 1,000 fresh pairs of the policy it is about to train (before and after it learned
the round's labels, by gold gap), and from the course prompts and the start of text the positive rate, the
grammatical rate and the exact KL to the course model. Run it alone. Writes results/loop.json (runs kept by
recipe and seed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "loop.json"


def record(summary: dict, recipe: str, seed: int, seconds: float) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return dict(recipe=recipe, seed=seed, wall_seconds=round(seconds, 1), rounds=summary["rounds"],
                machine=f"{platform.machine()}, {os.cpu_count()} CPU cores", date=str(date.today()), commit=commit)


def save(entry: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[f"{entry['recipe']} seed {entry['seed']}"] = entry
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def table(results: dict) -> str:
    """One line a run and round: labels, agreement before -> after, positive / grammatical / KL from both starts."""
    lines = ["| run | round | labels added | RM agreement before -> after | course: positive, grammatical, KL "
             "| empty: positive, grammatical, KL |", "|---|---|---|---|---|---|"]
    for name, run in results.items():
        for r in run["rounds"]:
            before = r["rm_gold_agreement_before"]
            after = r["rm_gold_agreement_after"]["overall"]
            agree = (f"{before['overall']:.1%} -> " if before else "") + f"{after:.1%}"
            starts = [f"{a['positive_rate']:.1%}, {a['grammatical_rate']:.1%}, {a['kl_exact']:.2f}"
                      for a in (r["after"]["course"], r["after"]["empty"])]
            lines.append(f"| {name} | {r['round']} | {r['labels_added']:,} | {agree} | {starts[0]} | {starts[1]} |")
    return "\n".join(lines)


def main(argv=None):
    from rlhf_lib.pipeline import PipelineSettings, pipeline_configs, run_pipeline
    from rlhf_lib.recipes import recipe_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[])
    parser.add_argument("--recipe", default="whole-review", choices=["whole-review", "whole-review-plain"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "loop")
    parser.add_argument("--collect", type=Path, nargs="*", default=[],
                        help="finished `pipeline --rounds` folders to add (default recipe)")
    args = parser.parse_args(argv)
    for folder in args.collect:
        summary = json.loads((folder / "summary.json").read_text())
        settings = json.loads((folder / "pipeline.json").read_text())
        save(record(summary, "whole-review", settings["seed"], summary["seconds"]))
    for seed in args.seeds:
        settings = PipelineSettings(task="whole", model=None, sft=False, n_pairs=None, n_groups=2000,
                                    annotator_temperature=0.1, heldout=1000, iterations=85, seed=seed,
                                    rounds=args.rounds)
        reward_cfg, _ = pipeline_configs(settings)
        ppo_cfg = recipe_config(args.recipe, iterations=85, seed=seed)
        start = time.perf_counter()
        summary = run_pipeline(args.out / f"{args.recipe}-s{seed}", settings, reward_cfg, ppo_cfg, eval_samples=1000,
                               overwrite=True)
        save(record(summary, args.recipe, seed, time.perf_counter() - start))
    print(table(json.loads(RESULTS.read_text())))


if __name__ == "__main__":
    main()
