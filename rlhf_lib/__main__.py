"""The course's steps from the command line, for those who outgrow notebooks.

    python -m rlhf_lib pretrain --out DIR     train the small GPT-2 from scratch (the model in assets/model)
    python -m rlhf_lib sft --out DIR          fine-tune on positive demonstrations
    python -m rlhf_lib label --out DIR        pairs of completions labelled by the simulated annotator
    python -m rlhf_lib reward --out DIR       train and evaluate a reward model (whole reviews; --task sentence)
    python -m rlhf_lib ppo --out DIR --reward-model DIR     PPO-RLHF against a reward model
    python -m rlhf_lib pipeline --out DIR     (SFT,) labels, reward model, PPO, evaluation: end to end

Each command saves with save_pretrained and writes DIR/summary.json with its figures. A command
refuses an --out folder that is not empty (add --overwrite to replace what is there) and never writes
into assets/ except for the two documented rebuilds (`pretrain --out assets/model`, `reward --task sentence
--out assets/reward_model`, each with --overwrite). `ppo --resume` and `pipeline --resume` continue an
interrupted run from its last checkpoint or finished stage. Every option is checked before any work.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from dataclasses import fields
from pathlib import Path

from rlhf_lib.classroom.cli import add_classroom_commands

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
                             "`reward --task sentence --out assets/reward_model`, with --overwrite); choose another folder")
    if resume:
        if not out.is_dir():
            raise FileNotFoundError(f"--resume: there is no run to continue at {out}")
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        hint = ", or --resume to continue it" if command in ("ppo", "pipeline") else ""
        raise FileExistsError(f"--out {out} already exists and is not empty; choose another folder, add --overwrite "
                              f"to replace what is there{hint}")
    return out


def _remove(*paths: Path) -> None:
    """What --overwrite replaces: this command's own outputs, nothing else in the folder."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def last_epoch_mean(values: list[float], n_pairs: int, batch_size: int) -> float:
    """Mean of the last epoch's per-step values (an epoch has max(1, n_pairs // batch_size) steps)."""
    steps = max(1, n_pairs // batch_size)
    last = values[-steps:]
    return sum(last) / len(last)


def cmd_pretrain(args):
    from rlhf_lib.evaluate import model_report, text_report
    from rlhf_lib.pretrain import PretrainConfig, pretrain, save, write_model_card
    from rlhf_lib.reviews import generate_reviews
    from rlhf_lib.runtime import derive_seed

    cfg = config_from(args, PretrainConfig)
    check_out(args.out, "pretrain", args.overwrite)
    result = pretrain(cfg)
    corpus = text_report(generate_reviews(5000, seed=derive_seed(cfg.seed, "corpus sample")))
    samples = model_report(result.model, result.tokenizer, n=args.eval_samples, temperature=1.0, seed=0)
    summary = save(result, args.out, cfg, extra=dict(corpus=corpus, samples_t1=samples))
    write_model_card(Path(args.out), summary)
    return summary


def cmd_sft(args):
    from rlhf_lib.evaluate import model_report
    from rlhf_lib.lm import load_model
    from rlhf_lib.sft import SFTConfig, load_demonstrations, make_demonstrations, save_jsonl, sft

    cfg = config_from(args, SFTConfig)
    out = check_out(args.out, "sft", args.overwrite)
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
    _write_summary(out, summary)
    return summary


REWARD_POOLING = "last"  # the usual head; "sum" learns VADER a little better but PPO hacks it (benchmarks/README.md)


def _fresh_file(path: Path) -> Path:
    if path.exists():
        raise ValueError(f"{path} already exists; choose another --out (labels are never overwritten)")
    return path


def make_labels(model, tokenizer, out: Path, n_pairs: int, annotator_temperature: float, seed: int,
                max_new_tokens: int, model_name: str, task: str = "sentence") -> dict:
    """Sample pairs from the model, label them with the simulated annotator, write out/labels.jsonl.
    task="sentence": two completions of a course prompt's sentence; task="whole": two whole reviews from one
    start of `rlhf_lib.whole_reviews.review_starts` (sampled to end-of-text)."""
    import time

    from rlhf_lib.feedback import SimulatedAnnotator, gold_preference, label_pairs, sample_pairs, write_records

    start = time.perf_counter()
    path = _fresh_file(out / "labels.jsonl")
    if task == "whole":
        from rlhf_lib.whole_reviews import sample_whole_pairs

        pairs = sample_whole_pairs(model, tokenizer, n_pairs, max_new_tokens=max_new_tokens, seed=seed)
    else:
        pairs = sample_pairs(model, tokenizer, n_pairs, max_new_tokens=max_new_tokens, seed=seed)
    annotator = SimulatedAnnotator(annotator_temperature, seed=seed)
    records = label_pairs(annotator, pairs, model=model_name)
    partial = out / ".labels.jsonl.partial"
    _remove(partial)
    write_records(partial, records)  # fsynced, then renamed: labels.jsonl is whole or absent
    os.replace(partial, path)
    choices = [r.choice for r in records]
    decided = [(r, gold_preference(r.prompt, r.completion_a, r.completion_b)) for r in records if r.choice in "ab"]
    agree = [r.choice == g for r, g in decided if g != "tie"]
    return dict(labels=str(path), task=task, n=len(records), choices={c: choices.count(c) for c in sorted(set(choices))},
                annotator=annotator.name, annotator_temperature=annotator_temperature,
                agreement_with_gold=sum(agree) / max(1, len(agree)), seconds=round(time.perf_counter() - start, 1))


def cmd_label(args):
    from rlhf_lib.lm import load_model

    out = check_out(args.out, "label", args.overwrite)
    if args.overwrite:
        _remove(out / "labels.jsonl", out / "summary.json")
    model, tokenizer = load_model(args.model)
    summary = make_labels(model, tokenizer, out, args.n_pairs, args.annotator_temperature, args.seed,
                          args.max_new_tokens, str(args.model or "course model"), task=args.task)
    _write_summary(args.out, summary)
    return summary


def train_reward(out: Path, labels: Path, policy_model, policy_tokenizer, cfg, base, n_heldout: int, seed: int,
                 max_new_tokens: int, pooling: str) -> dict:
    """Train a reward model on the labels, check it against gold on fresh pairs, normalise, save to out."""
    from rlhf_lib.evaluate import sample_texts
    from rlhf_lib.feedback import load_preferences, sample_pairs, to_pairs
    from rlhf_lib.reward_model import calibration, make_reward_model, normalize_on, pair_accuracy, train_reward_model
    from rlhf_lib.runtime import derive_seed

    train = to_pairs(load_preferences(labels))
    model, tokenizer = make_reward_model(base, pooling=pooling, seed=seed)
    result = train_reward_model(model, tokenizer, train, cfg)
    heldout = [dict(prompt=p, chosen=a, rejected=b) for p, a, b in
               sample_pairs(policy_model, policy_tokenizer, n_heldout, max_new_tokens=max_new_tokens,
                            seed=derive_seed(seed, "sentence heldout"))]
    mean, std = normalize_on(model, tokenizer, sample_texts(policy_model, policy_tokenizer, 512,
                                                            seed=derive_seed(seed, "sentence normalization"),
                                                            stop_at="sentence"))
    report = pair_accuracy(model, tokenizer, heldout)
    decided = [(p, g > 0) for p, g in zip(report["p_chosen"], report["gold_gap"]) if g != 0]
    ece = calibration(*zip(*decided))["ece"]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return dict(labels=str(labels), n_train_pairs=len(train), n_heldout_pairs=report["n_gold_decided"],
                gold_accuracy=report["gold_accuracy"], train_accuracy_last_epoch=last_epoch_mean(result.accuracies, len(train), cfg.batch_size),
                calibration_error=ece, reward_mean=mean, reward_std=std, config=vars(cfg),
                seconds=round(result.seconds, 1))


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
    from rlhf_lib.lm import load_model
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
    if args.overwrite:
        _remove(out / "summary.json", *([out / "labels.jsonl"] if labels is None else []))
    model, tokenizer = load_model(args.model)
    if labels is None:
        made = make_labels(model, tokenizer, out, args.n_pairs, args.annotator_temperature, cfg.seed,
                           args.max_new_tokens, str(args.model or "course model"))
        labels = Path(made["labels"])
    summary = train_reward(out, Path(labels), model, tokenizer, cfg, args.base, args.heldout, cfg.seed,
                           args.max_new_tokens, args.pooling)
    _write_summary(out, summary)
    return summary


def cmd_reward_whole(args):
    """`reward --task whole`: `train_whole_review_reward_model` with the options' config, saved to --out."""
    from rlhf_lib.whole_reviews import WholeRewardConfig, train_whole_review_reward_model

    given = dict(n_heldout=args.heldout, pooling=args.pooling, **{dest: getattr(args, dest) for _, dest, _ in WHOLE_ONLY})
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
    policy = None
    if args.model is not None:
        from rlhf_lib.lm import load_model

        policy = load_model(args.model)
    if args.overwrite:
        _remove(out / "summary.json")
    model, tokenizer, summary = train_whole_review_reward_model(cfg, policy=policy, base=args.base)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary.update(model=str(args.model or "course model"), load_average=[round(x, 2) for x in os.getloadavg()])
    _write_summary(out, summary)  # last: the folder holds a finished model when summary.json is there
    return summary


def run_ppo(out: Path, model_name, reward_path, cfg, eval_samples: int, accelerator=None, resume: bool = False,
            task: str = "whole") -> dict:
    """PPO of the policy against the reward model, evaluated before and after. task="whole": whole reviews from
    `whole_review_prompts`, evaluated from the course prompts and from the start of text (`evaluate_whole`:
    before/after hold "course" and "empty"); task="sentence": the course prompts' first sentence."""
    from rlhf_lib.checkpoint import find_checkpoint
    from rlhf_lib.lm import check_fits, load_model
    from rlhf_lib.reviews import PROMPTS
    from rlhf_lib.reward_model import load_reward_model
    from rlhf_lib.rlhf import evaluate_policy, review_metrics, train_rlhf
    from rlhf_lib.whole_reviews import evaluate_whole, whole_review_prompts

    if resume and find_checkpoint(out / "checkpoint") is None and not (out / "checkpoint" / "trainer.pt").exists():
        raise FileNotFoundError(f"--resume: no complete checkpoint in {out / 'checkpoint'} to continue from")
    reward = load_reward_model(reward_path)
    policy, tokenizer = load_model(model_name)
    try:  # the longest course prompt and the longest response must fit the model's context
        check_fits(policy, tokenizer, PROMPTS, "course prompt", extra=1 + cfg.max_new_tokens)
    except ValueError as err:
        raise ValueError(f"--max-new-tokens {cfg.max_new_tokens} is too long for this model: {err}") from None
    reference, _ = load_model(model_name)
    main_process = accelerator is None or accelerator.is_main_process
    if task == "whole":
        prompts = whole_review_prompts(seed=cfg.seed)
        evaluate = lambda: evaluate_whole(policy, reference, tokenizer, *reward, n=eval_samples,
                                          max_new_tokens=cfg.max_new_tokens)
    else:
        prompts = PROMPTS
        evaluate = lambda: evaluate_policy(policy, reference, tokenizer, *reward, n=eval_samples)
    before = evaluate() if main_process else None
    result = train_rlhf(policy, tokenizer, *reward, reference, cfg, prompts=prompts, checkpoint_dir=out / "checkpoint",
                        resume=resume, accelerator=accelerator, metrics=review_metrics)
    if not main_process:
        return {}
    after = evaluate()
    policy.save_pretrained(out / "policy")
    tokenizer.save_pretrained(out / "policy")
    return dict(model=str(model_name or "course model"), task=task, reward_model=str(reward_path), config=vars(cfg),
                before=before, after=after, train_seconds=round(result.seconds, 1),
                processes=accelerator.num_processes if accelerator else 1, last_iteration=result.history[-1],
                policy=str(out / "policy"))


def cmd_ppo(args):
    from rlhf_lib.rlhf import RLHFConfig
    from rlhf_lib.whole_reviews import WHOLE_REVIEW_PPO, WHOLE_REVIEW_REWARD_MODEL

    cfg = task_config_from(args, RLHFConfig, WHOLE_REVIEW_PPO)
    if args.reward_model is None:
        args.reward_model = WHOLE_REVIEW_REWARD_MODEL if args.task == "whole" else ASSETS / "reward_model"
    out = check_out(args.out, "ppo", args.overwrite, args.resume)
    accelerator = None
    if args.accelerate or int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by `accelerate launch`
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not _cuda())
    if args.overwrite and (accelerator is None or accelerator.is_main_process):
        _remove(out / "summary.json", out / "policy", *(out / f"checkpoint{x}" for x in ("", ".new", ".old")))
    if accelerator:
        accelerator.wait_for_everyone()
    summary = run_ppo(out, args.model, args.reward_model, cfg, args.eval_samples, accelerator, args.resume, args.task)
    if accelerator:  # the helpers wait while the main process evaluates and saves, then all leave the group together:
        accelerator.wait_for_everyone()  # a helper that exits with its process group alive can abort at exit
        accelerator.end_training()
    if summary:
        _write_summary(args.out, summary)
    return summary


PIPELINE_SETTINGS = ("task", "model", "sft", "n_pairs", "n_groups", "annotator_temperature", "heldout", "iterations",
                     "seed")


def _stage(folder: Path, resume: bool):
    """The summary of a finished stage (when resuming), else None: the stage runs (again)."""
    done = folder / "summary.json"
    return json.loads(done.read_text()) if resume and done.is_file() else None


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
    if args.iterations is None:
        from rlhf_lib.rlhf import RLHFConfig

        args.iterations = whole_review_config().iterations if whole else RLHFConfig.iterations


def cmd_pipeline(args):
    """SFT if asked, then labels, reward model, PPO and the evaluation, each in its own subfolder (--task whole:
    the reward model's recipe labels its own groups of whole reviews, so there is no labels stage). A stage is
    finished when its summary.json is written; --resume skips finished stages and continues PPO from its
    checkpoint."""
    import time

    from rlhf_lib.checkpoint import find_checkpoint
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import RewardConfig
    from rlhf_lib.rlhf import RLHFConfig
    from rlhf_lib.whole_reviews import WholeRewardConfig, train_whole_review_reward_model, whole_review_config

    _pipeline_options(args)
    whole = args.task == "whole"
    if whole:
        whole_cfg = WholeRewardConfig(n_groups=args.n_groups, annotator_temperature=args.annotator_temperature,
                                      n_heldout=args.heldout, seed=args.seed,
                                      groups_per_batch=min(WholeRewardConfig.groups_per_batch, args.n_groups))
        cfg = whole_review_config(iterations=args.iterations, seed=args.seed)
    else:
        reward_cfg, cfg = RewardConfig(seed=args.seed), RLHFConfig(iterations=args.iterations, seed=args.seed)
    out = check_out(args.out, "pipeline", args.overwrite, args.resume)
    settings = {k: getattr(args, k) for k in PIPELINE_SETTINGS}
    if args.resume:
        saved = json.loads((out / "pipeline.json").read_text()) if (out / "pipeline.json").is_file() else None
        if saved is None:
            raise FileNotFoundError(f"--resume: {out} holds no pipeline run (no pipeline.json)")
        differ = [f"--{k.replace('_', '-')} {saved.get(k)!r} then, {v!r} now" for k, v in settings.items()
                  if saved.get(k) != v]
        if differ:
            raise ValueError(f"--resume: the run in {out} was started with other settings ({'; '.join(differ)})")
    elif args.overwrite:
        _remove(*(out / name for name in ("sft", "labels", "reward_model", "ppo", "summary.json", "pipeline.json")))
    _write_json(out / "pipeline.json", settings)
    start, stages = time.perf_counter(), {}
    model_name = args.model
    if args.sft:
        from rlhf_lib.sft import SFTConfig, make_demonstrations, save_jsonl, sft

        stages["sft"] = _stage(out / "sft", args.resume)
        if stages["sft"] is None:
            model, tokenizer = load_model(model_name)
            demos = make_demonstrations(2000, seed=args.seed)
            save_jsonl(demos, out / "sft" / "demonstrations.jsonl")
            result = sft(model, tokenizer, demos, SFTConfig(seed=args.seed))
            model.save_pretrained(out / "sft")
            tokenizer.save_pretrained(out / "sft")
            stages["sft"] = dict(seconds=round(result.seconds, 1), final_loss=result.losses[-1])
            _write_summary(out / "sft", stages["sft"])
        model_name = str(out / "sft")
    model, tokenizer = load_model(model_name)
    if not whole:
        stages["labels"] = _stage(out / "labels", args.resume)
        if stages["labels"] is None:
            _remove(out / "labels")  # an unfinished stage starts again from nothing
            stages["labels"] = make_labels(model, tokenizer, out / "labels", args.n_pairs, args.annotator_temperature,
                                           args.seed, 64, str(model_name or "course model"), task="sentence")
            _write_summary(out / "labels", stages["labels"])
    stages["reward_model"] = _stage(out / "reward_model", args.resume)
    if stages["reward_model"] is None and whole:
        _remove(out / "reward_model")
        reward_model, reward_tokenizer, stages["reward_model"] = train_whole_review_reward_model(
            whole_cfg, policy=(model, tokenizer), progress=True)
        reward_model.save_pretrained(out / "reward_model")
        reward_tokenizer.save_pretrained(out / "reward_model")
        _write_summary(out / "reward_model", stages["reward_model"])
    elif stages["reward_model"] is None:
        stages["reward_model"] = train_reward(out / "reward_model", Path(stages["labels"]["labels"]), model,
                                              tokenizer, reward_cfg, None, args.heldout, args.seed, 64, REWARD_POOLING)
        _write_summary(out / "reward_model", stages["reward_model"])
    stages["ppo"] = _stage(out / "ppo", args.resume)
    if stages["ppo"] is None:
        resume_ppo = args.resume and find_checkpoint(out / "ppo" / "checkpoint") is not None
        stages["ppo"] = run_ppo(out / "ppo", model_name, out / "reward_model", cfg, args.eval_samples,
                                resume=resume_ppo, task=args.task)
        _write_summary(out / "ppo", stages["ppo"])
    summary = dict(task=args.task, before=stages["ppo"]["before"], after=stages["ppo"]["after"],
                   reward_model_gold_accuracy=stages["reward_model"]["gold_accuracy"], stages=stages,
                   policy=stages["ppo"]["policy"], seconds=round(time.perf_counter() - start, 1))
    _write_summary(out, summary)
    return summary


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _write_summary(out, summary: dict) -> None:
    _write_json(Path(out) / "summary.json", summary)


def _write_json(path: Path, data: dict) -> None:
    """Written beside, fsynced, renamed: the file is whole or absent (a stage counts as done by its summary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w") as f:
        f.write(json.dumps(data, indent=2, default=str))
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


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
    s.add_argument("--demonstrations", default=None, type=Path, help="JSONL of {prompt, completion} (default: make them)")
    s.add_argument("--n-demos", type=_count(), default=2000, dest="n_demos")
    s.add_argument("--eval-samples", type=_count(), default=500, dest="eval_samples")
    _overwrite(s)
    add_config_options(s, SFTConfig)
    s.set_defaults(run=cmd_sft)
    add_feedback_commands(sub)
    add_classroom_commands(sub)
    args = parser.parse_args(argv)
    try:
        summary = args.run(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not summary:  # a helper process under accelerate: the main process reports
        return 0
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "stages")}, indent=2, default=str))
    print(f"saved to {args.out} (summary in {Path(args.out) / 'summary.json'})")
    return 0


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
    _resume(p)
    p.set_defaults(run=cmd_pipeline)


if __name__ == "__main__":
    sys.exit(main())
