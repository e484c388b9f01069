"""Rebuild assets/whole_review_reward_model: the course's reward model for whole reviews.

    python scripts/build_whole_review_reward_model.py            # the default recipe, seed 0
                                                                 # (about 10-15 min on 2 shared cores)
    python scripts/build_whole_review_reward_model.py --out DIR  # somewhere else

The same as `python -m rlhf_lib reward --out DIR` with its defaults (`WholeRewardConfig()`): 1,000 groups of 4
whole reviews of the course model, every pair among a batch's 64 reviews labelled by the simulated annotator,
a sum head started at zero, 4 epochs, checked on 1,000 fresh pairs against gold, normalised on 512 fresh
whole reviews. The model is written to a temporary folder next to --out and renamed into place at the end,
so an interrupted build leaves the previous model whole.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    from rlhf_lib.whole_reviews import WholeRewardConfig, train_whole_review_reward_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets/whole_review_reward_model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = WholeRewardConfig(seed=args.seed)
    load_before = os.getloadavg()
    model, tokenizer, summary = train_whole_review_reward_model(cfg, progress=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    summary.update(machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {__import__('torch').__version__}",
                   date=str(date.today()), commit=commit, load_average_before=[round(x, 2) for x in load_before],
                   load_average_after=[round(x, 2) for x in os.getloadavg()])
    partial = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(args.out, ignore_errors=True)
    os.replace(partial, args.out)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
