"""Rebuild assets/loop: round 1 of the loop, which notebook 11 starts from, and the figures of a whole two-round run.

    python scripts/build_loop_assets.py                    # runs `pipeline --rounds 2 --eval-samples 1000 --seed 0`
                                                           # (about 17 minutes on 2 cores), then copies
    python scripts/build_loop_assets.py --from runs/loop   # copies from a finished run of that command

A live round 1 does not fit a notebook's five minutes: its reward model learns from about 250,000 judgements of
8,000 whole reviews and its PPO runs 85 iterations. So notebook 11 loads round 1 from here:

    assets/loop/round-1/policy/          the policy after round 1's PPO (plain `save_pretrained`)
    assets/loop/round-1/reward_model/    round 1's reward model
    assets/loop/round-1/reviews.jsonl    the batches of the course model's reviews whose pairs it learned from
                                         (the labels are made again from them: `rlhf_lib.loop.round_one_labels`)
    assets/loop/rounds.json              the run's summary: every round's labels, agreement, figures

The copy goes to a temporary folder beside assets/loop and is renamed into place at the end.
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, default=None,
                        help="a finished `pipeline --rounds 2 --eval-samples 1000 --seed 0` folder (default: run it)")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "loop")
    args = parser.parse_args(argv)
    source = args.source
    if source is None:
        source = ROOT / "runs" / "loop-assets"
        subprocess.run([sys.executable, "-m", "rlhf_lib", "pipeline", "--rounds", "2", "--eval-samples", "1000",
                        "--seed", "0", "--out", str(source), "--overwrite"], check=True, cwd=ROOT)
    summary = json.loads((source / "summary.json").read_text())
    settings = json.loads((source / "pipeline.json").read_text())
    if settings.get("rounds") != 2 or settings.get("seed") != 0 or settings.get("task") != "whole":
        raise SystemExit(f"{source} is not a `pipeline --rounds 2 --seed 0` run (pipeline.json: {settings})")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    partial = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    round_one = source / "round-1"
    shutil.copytree(round_one / "ppo" / "policy", partial / "round-1" / "policy")
    shutil.copytree(round_one / "reward_model", partial / "round-1" / "reward_model")
    shutil.copy(round_one / "reviews.jsonl", partial / "round-1" / "reviews.jsonl")
    record = dict(summary, settings=settings, machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
                  date=str(date.today()), commit=commit,
                  command="python -m rlhf_lib pipeline --rounds 2 --eval-samples 1000 --seed 0")
    for key in ("before", "after"):  # the course model's figures and the last round's, without the sample texts
        record[key] = {k: {f: v for f, v in r.items() if f != "examples"} for k, r in summary[key].items()}
    (partial / "rounds.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    shutil.rmtree(args.out, ignore_errors=True)
    os.replace(partial, args.out)
    print(f"assets written to {args.out}")


if __name__ == "__main__":
    main()
