"""The course's steps from the command line, for those who outgrow notebooks.

    python -m rlhf_lib pretrain --out DIR     train the small GPT-2 from scratch (the model in assets/model)
    python -m rlhf_lib sft --out DIR          fine-tune on positive demonstrations

Each command saves with save_pretrained and writes DIR/summary.json with its figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path



def add_config_options(parser, config_cls):
    """One --option per dataclass field, with the field's default."""
    for f in fields(config_cls):
        default = f.default
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(default), default=default, dest=f.name)


def config_from(args, config_cls):
    return config_cls(**{f.name: getattr(args, f.name) for f in fields(config_cls)})


def cmd_pretrain(args):
    from rlhf_lib.evaluate import model_report, text_report
    from rlhf_lib.pretrain import PretrainConfig, pretrain, save, write_model_card
    from rlhf_lib.reviews import generate_reviews

    cfg = config_from(args, PretrainConfig)
    result = pretrain(cfg)
    corpus = text_report(generate_reviews(5000, seed=cfg.seed + 1))
    samples = model_report(result.model, result.tokenizer, n=args.eval_samples, temperature=1.0, seed=0)
    summary = save(result, args.out, cfg, extra=dict(corpus=corpus, samples_t1=samples))
    write_model_card(Path(args.out), summary)
    return summary


def cmd_sft(args):
    from rlhf_lib.evaluate import model_report
    from rlhf_lib.lm import load_model
    from rlhf_lib.sft import SFTConfig, load_demonstrations, make_demonstrations, save_jsonl, sft

    cfg = config_from(args, SFTConfig)
    out = Path(args.out)
    model, tokenizer = load_model(args.model)
    path = args.demonstrations or save_jsonl(make_demonstrations(args.n_demos, seed=cfg.seed), out / "demonstrations.jsonl")
    demos = load_demonstrations(path)
    before = model_report(model, tokenizer, n=args.eval_samples, seed=1)
    result = sft(model, tokenizer, demos, cfg)
    after = model_report(model, tokenizer, n=args.eval_samples, seed=1)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary = dict(model=str(args.model or "course model"), demonstrations=str(path), n_demonstrations=len(demos),
                   config=vars(cfg), before=before, after=after, final_loss=result.losses[-1],
                   seconds=round(result.seconds, 1))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None):
    from rlhf_lib.pretrain import PretrainConfig
    from rlhf_lib.sft import SFTConfig

    parser = argparse.ArgumentParser(prog="python -m rlhf_lib", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="train the small GPT-2 from scratch on the review language")
    p.add_argument("--out", required=True, type=Path, help="folder for the model, tokenizer and summary.json")
    p.add_argument("--eval-samples", type=int, default=500, dest="eval_samples")
    add_config_options(p, PretrainConfig)
    p.set_defaults(run=cmd_pretrain)
    s = sub.add_parser("sft", help="supervised fine-tuning on positive demonstrations")
    s.add_argument("--out", required=True, type=Path, help="folder for the model and summary.json")
    s.add_argument("--model", default=None, help="model folder or name (default: the course model)")
    s.add_argument("--demonstrations", default=None, type=Path, help="JSONL of {prompt, completion} (default: make them)")
    s.add_argument("--n-demos", type=int, default=2000, dest="n_demos")
    s.add_argument("--eval-samples", type=int, default=500, dest="eval_samples")
    add_config_options(s, SFTConfig)
    s.set_defaults(run=cmd_sft)
    args = parser.parse_args(argv)
    try:
        summary = args.run(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    print(f"saved to {args.out} (summary in {Path(args.out) / 'summary.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
