"""Rebuild assets/judge: the course's judge, a language model that reads two whole reviews, critiques each and
gives a verdict (rlhf_lib/judge.py says how it reads and writes).

    python scripts/build_judge.py                  # 120,000 labelled pairs, one epoch (about 30 minutes on 2 cores)
    python scripts/build_judge.py --pairs 20000    # a quick, much weaker one (60% agreement with gold)

1. `--pairs` pairs of reviews from the language's generator (`training_pairs`): a fifth with one review broken
   the ways policies break them (`--broken-share`), three tenths two strongly positive reviews (close calls),
   the rest two reviews of independent moods; every review at most 40 tokens;
2. labelled by the simulated person (the reading taste with Bradley-Terry noise at temperature 0.1);
3. the course model (`assets/model`) with the judge's five tokens added, fine-tuned to write the critiques
   and the label's verdict after the two reviews (`train_judge`: SFT, the loss on what it writes);
4. checked on 1,000 fresh pairs of the course model's whole reviews from one start each, a tenth of them with
   one broken review, against the noise-free gold: read once, and read in both orders (a tie where the two
   verdicts disagree, as the `judge` command's `--swap`); the shipped
   whole-review reward model on the same pairs beside it; pairs judged per second.

The model goes to a folder beside the target and is renamed into place at the end, with summary.json and a
model card (README.md).
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import asdict
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=120_000, help="labelled training pairs (default 120,000)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--broken-share", type=float, default=0.2, dest="broken_share",
                        help="share of training pairs with one broken review (default 0.2)")
    parser.add_argument("--lr", type=float, default=1e-3, help="the learning rate (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval", type=int, default=1000, help="fresh course-model pairs to check it on")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "judge")
    args = parser.parse_args(argv)

    from rlhf_lib.feedback import SimulatedAnnotator, label_pairs
    from rlhf_lib.judge import check_judge, evaluation_pairs, make_judge, train_judge, training_pairs
    from rlhf_lib.lm import load_model
    from rlhf_lib.runtime import derive_seed, set_seed
    from rlhf_lib.sft import SFTConfig

    set_seed(args.seed)
    clock = time.perf_counter()
    _, tokenizer = make_judge()
    pairs = training_pairs(args.pairs, seed=derive_seed(args.seed, "judge pairs"), broken_share=args.broken_share,
                           tokenizer=tokenizer)
    annotator = SimulatedAnnotator(0.1, seed=derive_seed(args.seed, "judge labels"))
    records = [asdict(r) for r in label_pairs(annotator, pairs, model="review generator")]
    judge, result = train_judge(records, cfg=SFTConfig(epochs=args.epochs, lr=args.lr, seed=args.seed))
    trained_s = time.perf_counter() - clock

    course, course_tok = load_model()
    test, refused = evaluation_pairs(course, course_tok, args.eval, seed=derive_seed(args.seed, "judge test"))
    checked = check_judge(judge, test, progress=True)

    summary = dict(
        kind="judge", base="assets/model", training_pairs=len(pairs),
        training_labels=sum(r["choice"] in ("a", "b") for r in records),
        steps=len(result.losses), final_loss=sum(result.losses[-50:]) / len(result.losses[-50:]),
        training_seconds=round(trained_s, 1), test_pairs=len(test), test_refused=refused,
        gold=checked["gold_once"], gold_swap=checked["gold_both_orders"], flip_rate=checked["flip_rate"],
        reward_model_gold=checked["reward_model"], pairs_per_second=checked["pairs_per_second"],
        examples=checked["examples"],
        seed=args.seed, epochs=args.epochs, lr=args.lr, broken_share=args.broken_share,
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores",
        date=str(date.today()),
        commit=subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip(),
        command=f"python scripts/build_judge.py --pairs {args.pairs} --epochs {args.epochs} --lr {args.lr:g} "
                f"--broken-share {args.broken_share:g} --seed {args.seed}")
    partial = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    judge.model.save_pretrained(partial)
    judge.tokenizer.save_pretrained(partial)
    (partial / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (partial / "README.md").write_text(model_card(summary))
    shutil.rmtree(args.out, ignore_errors=True)
    partial.rename(args.out)
    print(json.dumps({k: summary[k] for k in ("gold", "gold_swap", "flip_rate", "reward_model_gold",
                                              "pairs_per_second", "training_seconds")}, indent=2))


def model_card(s: dict) -> str:
    bands = " | ".join(f"{band}: {100 * acc:.1f}% of {n}" for band, (n, acc) in s["gold"]["by_gap"].items()
                       if acc is not None)
    return f"""# The course judge

A language model that reads two whole reviews of the course's language and writes a critique of each (a word
for how positive it reads, "excellent." or "weak.", or <|broken|>) and a verdict: the *critique* kind of reward
model. Loaded with `rlhf_lib.judge.load_judge("assets/judge")`; `judge.compare(prompt, a, b)` labels like an
annotator, and `python -m rlhf_lib judge --pairs IN.jsonl --out OUT.jsonl` judges a pairs file.

Built with `{s["command"]}` (rlhf_lib/judge.py, scripts/build_judge.py) on {s["date"]}, commit {s["commit"]}:
the course model (`assets/model`) with five special tokens added, fine-tuned for {s["steps"]} steps on
{s["training_labels"]:,} pairs of generated reviews labelled by the simulated person (the reading taste, noise at
temperature 0.1), {s["broken_share"]:.0%} of them with one broken review.

Checked on {s["test_pairs"]} fresh pairs of the course model's whole reviews (a tenth with one broken review;
{s["test_refused"]} sampled pairs refused as longer than 40 tokens) against the noise-free gold:

- read once: **{100 * s["gold"]["gold_accuracy"]:.1f}%** ({bands});
- read in both orders, a tie where they disagree: {100 * s["gold_swap"]["gold_accuracy"]:.1f}%
  ({s["gold_swap"]["ties"]} ties); the verdict flips on {100 * s["flip_rate"]:.1f}% of pairs when A and B trade places;
- the shipped whole-review reward model on the same pairs: {100 * s["reward_model_gold"]["gold_accuracy"]:.1f}%;
- {s["pairs_per_second"]} pairs judged per second on {s["machine"]}.
"""


if __name__ == "__main__":
    main()
