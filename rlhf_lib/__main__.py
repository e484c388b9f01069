"""The course's steps from the command line, for those who outgrow notebooks.

    python -m rlhf_lib pretrain --out DIR     train the small GPT-2 from scratch (the model in assets/model)
    python -m rlhf_lib sft --out DIR          fine-tune on positive demonstrations
    python -m rlhf_lib label --out DIR        pairs of completions labelled by the simulated annotator
    python -m rlhf_lib reward --out DIR       train and evaluate a reward model (whole reviews; --task sentence)
    python -m rlhf_lib ppo --out DIR --reward-model DIR     PPO-RLHF against a reward model
    python -m rlhf_lib pipeline --out DIR     (SFT,) labels, reward model, PPO, evaluation: end to end
    python -m rlhf_lib judge --pairs IN.jsonl --out OUT.jsonl     a pairs file judged by the course's judge

Each command saves with save_pretrained and writes DIR/summary.json with its figures. A command
refuses an --out folder that is not empty (add --overwrite to replace what is there) and never writes
into assets/ except for the two documented rebuilds (`pretrain --out assets/model`, `reward --task sentence
--out assets/reward_model`, each with --overwrite). `ppo --resume` and `pipeline --resume` continue an
interrupted run from its last checkpoint or finished stage. Every option is checked before any work.

This module parses and checks the options; the work of each command is a function of rlhf_lib/pipeline.py.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields
from pathlib import Path

from rlhf_lib.classroom.cli import add_classroom_commands
from rlhf_lib.pipeline import (  # noqa: F401 (their former home)
    PIPELINE_SETTINGS,
    REWARD_POOLING,
    PipelineSettings,
    label_and_save,
    last_epoch_mean,
    make_labels,
    pipeline_configs,
    ppo_and_save,
    pretrain_and_save,
    print_summary,
    reward_and_save,
    run_pipeline,
    run_ppo,
    sft_and_save,
    train_reward,
    whole_reward_and_save,
)

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
REBUILDS = {"pretrain": ASSETS / "model", "reward": ASSETS / "reward_model"}
"""the only folders under assets/ a command may write: the documented rebuilds (README)"""


def _count(minimum: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "count"
    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _optional_float(text: str):
    return None if text.lower() in ("none", "off", "") else _float(text)


def _optional_str(text: str):
    return None if text.lower() in ("none", "off", "") else text


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


TASK_DEFAULT = object()
"""an option's default that depends on --task (resolved by `task_config_from`)"""


def add_config_options(parser, config_cls, skip=(), whole: dict | None = None):
    """One --option per dataclass field, with the field's default; a field in `whole` has another default
    for --task whole (the option's default is then TASK_DEFAULT, resolved by `task_config_from`)."""
    whole = whole or {}
    for f in fields(config_cls):
        if f.name in skip:
            continue
        default = f.default
        optional = default is None or "None" in str(f.type)
        kind = (_optional_str if optional and "str" in str(f.type) else _optional_float if optional
                else _bool if isinstance(default, bool) else _float if isinstance(default, float) else type(default))
        if f.name in whole:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=TASK_DEFAULT, dest=f.name,
                                help=f"(default: {whole[f.name]} for --task whole, {default} for --task sentence)")
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=default, dest=f.name,
                                help=f"(default: {default})")


def task_config_from(args, config_cls, whole: dict):
    """`config_from`, with the --task whole defaults for the options left at TASK_DEFAULT."""
    for name, value in whole.items():
        if getattr(args, name, None) is TASK_DEFAULT:
            setattr(args, name, value if args.task == "whole" else
                    next(f.default for f in fields(config_cls) if f.name == name))
    return config_from(args, config_cls)


def config_from(args, config_cls):
    """The config of the command's options; a bad value is refused here, before any work, naming the option."""
    try:
        return config_cls(**{f.name: getattr(args, f.name) for f in fields(config_cls)})
    except ValueError as err:
        raise ValueError(f"{err} (option --{str(err).split()[0].replace('_', '-')})") from None


def check_out(out: Path, command: str, overwrite: bool = False, resume: bool = False) -> Path:
    """Refuse, before any work: an --out that is a file; a folder inside assets/ other than the documented
    rebuilds; a folder that is not empty, unless --overwrite (replace) or --resume (continue)."""
    out = Path(out).expanduser()
    if overwrite and resume:
        raise ValueError("--overwrite and --resume cannot go together: replace the run, or continue it")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    resolved = out.resolve()
    if resolved == ASSETS or ASSETS in resolved.parents:
        if REBUILDS.get(command) != resolved:
            raise ValueError(f"--out {out} is inside assets/, the files the course ships, and commands do not write "
                             "there (the documented rebuilds are `pretrain --out assets/model` and "
                             "`reward --task sentence --out assets/reward_model`, with --overwrite); "
                             "choose another folder")
    if resume:
        if not out.is_dir():
            raise FileNotFoundError(f"--resume: there is no run to continue at {out}")
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        hint = ", or --resume to continue it" if command in ("ppo", "pipeline") else ""
        raise FileExistsError(f"--out {out} already exists and is not empty; choose another folder, add --overwrite "
                              f"to replace what is there{hint}")
    return out


def cmd_pretrain(args):
    from rlhf_lib.pretrain import PretrainConfig

    cfg = config_from(args, PretrainConfig)
    out = check_out(args.out, "pretrain", args.overwrite)
    return pretrain_and_save(out, cfg, args.eval_samples)


def cmd_sft(args):
    from rlhf_lib.sft import SFTConfig

    cfg = config_from(args, SFTConfig)
    out = check_out(args.out, "sft", args.overwrite)
    return sft_and_save(out, cfg, args.model, args.demonstrations, args.n_demos, args.eval_samples)


def cmd_label(args):
    out = check_out(args.out, "label", args.overwrite)
    return label_and_save(out, args.model, args.n_pairs, args.annotator_temperature, args.seed, args.max_new_tokens,
                          args.task, overwrite=args.overwrite)


# options of `reward` that only one task reads: (option, dest, default)
SENTENCE_ONLY = (("--labels", "labels", None), ("--n-pairs", "n_pairs", 2000), ("--batch-size", "batch_size", 32),
                 ("--group-by-length", "group_by_length", False))
WHOLE_ONLY = (("--n-groups", "n_groups", None), ("--group-size", "group_size", None),
              ("--groups-per-batch", "groups_per_batch", None), ("--zero-head", "zero_head", None),
              ("--n-normalize", "n_normalize", None), ("--max-seconds", "max_seconds", None))


def _task_options(args) -> None:
    """Refuse, before any work, an option the chosen --task does not read."""
    other = SENTENCE_ONLY if args.task == "whole" else WHOLE_ONLY
    for option, dest, default in other:
        if getattr(args, dest) != default:
            raise ValueError(f"{option} does not apply to --task {args.task} (it belongs to --task "
                             f"{'sentence' if args.task == 'whole' else 'whole'})")
    if args.task == "whole" and (Path(args.out).expanduser().resolve() == REBUILDS["reward"]):
        raise ValueError(f"--out {args.out} is the one-sentence reward model: rebuild it with --task sentence "
                         "(whole-review models are rebuilt by scripts/build_whole_review_reward_model.py)")


def cmd_reward(args):
    _task_options(args)
    if args.task == "whole":
        return cmd_reward_whole(args)
    from rlhf_lib.reward_model import RewardConfig

    args.heldout = 500 if args.heldout is None else args.heldout
    args.pooling = REWARD_POOLING if args.pooling is None else args.pooling
    cfg = config_from(args, RewardConfig)
    out = check_out(args.out, "reward", args.overwrite)
    if args.base is not None:
        from rlhf_lib.lm import check_model_source

        check_model_source(args.base, "a backbone")
    labels = args.labels
    if labels is not None:
        from rlhf_lib.feedback import read_records

        read_records(labels)  # a bad file is refused before any work
    return reward_and_save(out, cfg, labels, args.model, args.base, args.n_pairs, args.annotator_temperature,
                           args.heldout, args.max_new_tokens, args.pooling, overwrite=args.overwrite)


def cmd_reward_whole(args):
    """`reward --task whole`: `train_whole_review_reward_model` with the options' config, saved to --out."""
    from rlhf_lib.whole_reviews import WholeRewardConfig

    given = dict(n_heldout=args.heldout, pooling=args.pooling,
                 **{dest: getattr(args, dest) for _, dest, _ in WHOLE_ONLY})
    try:
        cfg = WholeRewardConfig(epochs=args.epochs, lr=args.lr, warmup=args.warmup, seed=args.seed,
                                annotator_temperature=args.annotator_temperature, max_new_tokens=args.max_new_tokens,
                                **{k: v for k, v in given.items() if v is not None})
    except ValueError as err:
        name = str(err).split()[0]
        option = {"n_heldout": "heldout"}.get(name, name).replace("_", "-")
        raise ValueError(f"{err} (option --{option})") from None
    out = check_out(args.out, "reward", args.overwrite)
    if args.base is not None:
        from rlhf_lib.lm import check_model_source

        check_model_source(args.base, "a backbone")
    return whole_reward_and_save(out, cfg, args.model, args.base, overwrite=args.overwrite)


def cmd_ppo(args):
    from rlhf_lib.rlhf import RLHFConfig
    from rlhf_lib.whole_reviews import WHOLE_REVIEW_PPO, WHOLE_REVIEW_REWARD_MODEL

    cfg = task_config_from(args, RLHFConfig, WHOLE_REVIEW_PPO)
    if args.reward_model is None:
        args.reward_model = WHOLE_REVIEW_REWARD_MODEL if args.task == "whole" else ASSETS / "reward_model"
    out = check_out(args.out, "ppo", args.overwrite, args.resume)
    return ppo_and_save(out, cfg, args.reward_model, args.model, args.eval_samples, args.task, resume=args.resume,
                        overwrite=args.overwrite, accelerate=args.accelerate)


def _pipeline_options(args):
    """Fill the --task dependent defaults; refuse, before any work, an option the task does not read."""
    from rlhf_lib.whole_reviews import WholeRewardConfig, whole_review_config

    whole = args.task == "whole"
    for option, dest in (("--n-pairs", "n_pairs"), ("--n-groups", "n_groups")):
        if getattr(args, dest) is not None and (dest == "n_pairs") == whole:
            raise ValueError(f"{option} does not apply to --task {args.task} "
                             f"(whole reviews are labelled in groups: --n-groups; one sentence: --n-pairs)")
    if whole:
        args.n_groups = WholeRewardConfig.n_groups if args.n_groups is None else args.n_groups
    else:
        args.n_pairs = 2000 if args.n_pairs is None else args.n_pairs
    args.heldout = (1000 if whole else 500) if args.heldout is None else args.heldout
    if args.min_round_labels is None:
        args.min_round_labels = math.ceil(0.9 * args.round_pairs)
    args.outside_labels = args.round_labels is not None
    if args.iterations is None:
        from rlhf_lib.rlhf import RLHFConfig

        args.iterations = whole_review_config().iterations if whole else RLHFConfig.iterations


def cmd_pipeline(args):
    """`run_pipeline` with the options' settings (see its doc for the stages and --resume)."""
    _pipeline_options(args)
    settings = PipelineSettings(**{k: getattr(args, k) for k in PIPELINE_SETTINGS})
    reward_cfg, ppo_cfg = pipeline_configs(settings)
    out = check_out(args.out, "pipeline", args.overwrite, args.resume)
    if args.round_labels is not None and not args.round_labels.parent.is_dir():
        raise FileNotFoundError(f"--round-labels {args.round_labels}: there is no folder {args.round_labels.parent}")
    return run_pipeline(out, settings, reward_cfg, ppo_cfg, args.eval_samples, resume=args.resume,
                        overwrite=args.overwrite, round_labels=args.round_labels)


def main(argv=None):
    from rlhf_lib.pretrain import PretrainConfig
    from rlhf_lib.sft import SFTConfig

    parser = argparse.ArgumentParser(prog="python -m rlhf_lib", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="train the small GPT-2 from scratch on the review language")
    p.add_argument("--out", required=True, type=Path, help="folder for the model, tokenizer and summary.json")
    p.add_argument("--eval-samples", type=_count(), default=500, dest="eval_samples")
    _overwrite(p)
    add_config_options(p, PretrainConfig)
    p.set_defaults(run=cmd_pretrain)
    s = sub.add_parser("sft", help="supervised fine-tuning on positive demonstrations")
    s.add_argument("--out", required=True, type=Path, help="folder for the model and summary.json")
    s.add_argument("--model", default=None, help="model folder or name (default: the course model)")
    s.add_argument("--demonstrations", default=None, type=Path,
                   help="JSONL of {prompt, completion} (default: make them)")
    s.add_argument("--n-demos", type=_count(), default=2000, dest="n_demos")
    s.add_argument("--eval-samples", type=_count(), default=500, dest="eval_samples")
    _overwrite(s)
    add_config_options(s, SFTConfig)
    s.set_defaults(run=cmd_sft)
    add_feedback_commands(sub)
    add_judge_command(sub)
    add_classroom_commands(sub)
    args = parser.parse_args(argv)
    from rlhf_lib.loop import LabelsNeeded

    try:
        summary = args.run(args)
    except LabelsNeeded as waiting:
        print(f"waiting for labels: {waiting}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not summary:  # a helper process under accelerate: the main process reports
        return 0
    print_summary(summary, args.out)
    return 0


def cmd_judge(args):
    import json

    from rlhf_lib.judge import judge_file

    summary = judge_file(args.judge, args.pairs, args.out, swap=args.swap, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    print(f"saved to {summary['out']}")


def add_judge_command(sub):
    from rlhf_lib.judge import JUDGE

    p = sub.add_parser("judge", help="a pairs file judged by a judge that is a language model: a preference record "
                       "with the judge's critique for each pair (JSONL)")
    p.add_argument("--judge", default=JUDGE, type=Path, help="the judge's folder (default: assets/judge)")
    p.add_argument("--pairs", required=True, type=Path,
                   help="JSONL, one {prompt, completion_a, completion_b} object a line (preference records qualify)")
    p.add_argument("--out", required=True, type=Path, help="the JSONL file of judged records to write")
    p.add_argument("--swap", action="store_true",
                   help="read each pair in both orders too, and answer tie where the two verdicts disagree")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.set_defaults(run=cmd_judge)


def _overwrite(p):
    p.add_argument("--overwrite", action="store_true", help="replace this command's outputs in a non-empty --out")


def _resume(p):
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out with the same settings (from its last checkpoint)")


def add_feedback_commands(sub):
    from rlhf_lib.reward_model import RewardConfig
    from rlhf_lib.rlhf import RLHFConfig

    def common(p, what):
        p.add_argument("--out", required=True, type=Path, help=f"folder for {what} and summary.json")
        p.add_argument("--model", default=None, help="model folder or name that writes the completions "
                       "(default: the course model)")
        _overwrite(p)

    def labelling(p):
        p.add_argument("--n-pairs", type=_count(), default=2000, dest="n_pairs", help="pairs to label (default: 2000)")
        p.add_argument("--annotator-temperature", type=_positive, default=0.1, dest="annotator_temperature",
                       help="noise of the simulated annotator (default: 0.1)")
        p.add_argument("--max-new-tokens", type=_count(), default=64, dest="max_new_tokens")

    def task(p, what):
        p.add_argument("--task", choices=["whole", "sentence"], default="whole",
                       help=f"whole: {what} whole reviews (to end-of-text) from course prompts, other openings and "
                            "the start of text; sentence: the one-sentence completions of a course prompt "
                            "(default: whole)")

    p = sub.add_parser("label", help="pairs of completions labelled by the simulated annotator (JSONL)")
    common(p, "labels.jsonl")
    labelling(p)
    task(p, "pairs of")
    p.add_argument("--seed", type=_count(0), default=0)
    p.set_defaults(run=cmd_label)

    from rlhf_lib.whole_reviews import WholeRewardConfig

    p = sub.add_parser("reward", help="train and evaluate a reward model (default: on whole reviews, "
                       "WholeRewardConfig's recipe)")
    common(p, "the reward model")
    labelling(p)
    task(p, "a reward model for")
    p.add_argument("--labels", type=Path, default=None, help="--task sentence: JSONL of preference records "
                   "(default: make them)")
    p.add_argument("--base", default=None, help="backbone (default: the course model)")
    p.add_argument("--heldout", type=_count(), default=None,
                   help="fresh pairs to check against gold (default: 1000 whole, 500 sentence)")
    p.add_argument("--pooling", choices=["last", "sum"], default=None,
                   help=f"where the head reads (default: sum for whole, {REWARD_POOLING} for sentence)")
    add_config_options(p, RewardConfig)
    whole = {f.name: f for f in fields(WholeRewardConfig)}
    for option, dest, _ in WHOLE_ONLY:
        kind = (_bool if dest == "zero_head" else _optional_float if dest == "max_seconds" else _count())
        p.add_argument(option, type=kind, default=None, dest=dest,
                       help=f"--task whole (default: {whole[dest].default})")
    p.set_defaults(run=cmd_reward)

    from rlhf_lib.whole_reviews import WHOLE_REVIEW_PPO

    p = sub.add_parser("ppo", help="PPO-RLHF of a policy against a reward model (default: on whole reviews)")
    common(p, "the policy, checkpoints")
    task(p, "PPO on")
    p.add_argument("--reward-model", default=None, type=Path, dest="reward_model",
                   help="a folder from `reward` (default: the shipped reward model of the task, "
                        "assets/whole_review_reward_model or assets/reward_model)")
    p.add_argument("--eval-samples", type=_count(), default=500, dest="eval_samples",
                   help="samples in each evaluation (--task whole: from the course prompts, and as many from the "
                        "start of text) (default: 500)")
    _resume(p)
    p.add_argument("--accelerate", action="store_true",
                   help="run under `accelerate launch` (several processes split the rollouts)")
    add_config_options(p, RLHFConfig, whole=WHOLE_REVIEW_PPO)
    p.set_defaults(run=cmd_ppo)

    p = sub.add_parser("pipeline", help="(SFT,) labels, reward model, PPO and evaluation, end to end "
                       "(default: on whole reviews)")
    common(p, "every stage")
    task(p, "the pipeline on")
    p.add_argument("--sft", action="store_true", help="start with supervised fine-tuning")
    p.add_argument("--n-pairs", type=_count(), default=None, dest="n_pairs",
                   help="--task sentence: pairs to label (default: 2000)")
    p.add_argument("--n-groups", type=_count(), default=None, dest="n_groups",
                   help=f"--task whole: starts whose groups of 4 whole reviews are labelled pair by pair "
                        f"(default: {WholeRewardConfig.n_groups})")
    p.add_argument("--annotator-temperature", type=_positive, default=0.1, dest="annotator_temperature")
    p.add_argument("--heldout", type=_count(), default=None,
                   help="fresh pairs to check the reward model against gold (default: 1000 whole, 500 sentence)")
    p.add_argument("--iterations", type=_count(), default=None,
                   help="PPO iterations (default: the task's PPO config)")
    p.add_argument("--eval-samples", type=_count(), default=500, dest="eval_samples")
    p.add_argument("--seed", type=_count(0), default=0)
    p.add_argument("--rounds", type=_count(), default=1,
                   help="rounds of the loop: after each PPO, label pairs of the policy's own whole reviews, train the "
                        "reward model on and run PPO again; each round in DIR/round-K (default: 1, one round, "
                        "--task whole for more)")
    p.add_argument("--round-pairs", type=_count(), default=2000, dest="round_pairs",
                   help="pairs of the current policy's whole reviews labelled in each later round (default: 2000)")
    p.add_argument("--min-round-labels", type=_count(0), default=None, dest="min_round_labels",
                   help="the fewest decided (a/b) labels a later round trains on (default: 90%% of --round-pairs)")
    p.add_argument("--round-labels", type=Path, default=None, dest="round_labels",
                   help="later rounds' labels come from outside: the run writes DIR/round-K/pairs.jsonl and stops "
                        "(exit code 3) until resumed with --round-labels FILE holding their labels (a labels "
                        "file, or a class's export)")
    _resume(p)
    p.set_defaults(run=cmd_pipeline)


if __name__ == "__main__":
    sys.exit(main())
