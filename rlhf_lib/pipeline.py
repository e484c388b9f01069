"""The course's steps as functions, end to end: each command of `python -m rlhf_lib` is one call here.

    pretrain_and_save       train the small GPT-2 from scratch, save it with its model card
    sft_and_save            fine-tune on positive demonstrations
    label_and_save          pairs of completions labelled by the simulated annotator (`make_labels`)
    reward_and_save         a one-sentence reward model trained on labels (`train_reward`)
    whole_reward_and_save   the whole-review reward model (`train_whole_review_reward_model`)
    ppo_and_save            PPO-RLHF against a reward model, evaluated before and after (`run_ppo`)
    run_pipeline            (SFT,) labels, reward model, PPO and the evaluation, each in its own subfolder

Each saves into its folder `out`, writes out/summary.json last (atomically, `rlhf_lib.files`) and returns
the summary: a folder with a summary.json holds finished work. The command line (rlhf_lib/__main__.py)
parses and checks the options, then calls these; the classroom's `train` calls them too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from rlhf_lib.files import write_atomic
from rlhf_lib.runtime import derive_seed

REWARD_POOLING = "last"  # the usual head; "sum" learns VADER a little better but PPO hacks it (benchmarks/README.md)


def write_json(path: Path, data: dict) -> Path:
    """`data` as indented JSON, written atomically (the file is whole or absent); makes the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, json.dumps(data, indent=2, default=str))


def write_summary(out, summary: dict) -> Path:
    """out/summary.json: written last, so a stage counts as finished when its summary is there."""
    return write_json(Path(out) / "summary.json", summary)


def print_summary(summary: dict, out) -> None:
    """What a command prints when it is done: its figures (not its config or stages) and where they are."""
    print(json.dumps({k: v for k, v in summary.items() if k not in ("config", "stages")}, indent=2, default=str))
    print(f"saved to {out} (summary in {Path(out) / 'summary.json'})")


def remove(*paths: Path) -> None:
    """What --overwrite replaces, or what an unfinished stage left: these files and folders, nothing else."""
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


# ---- one command, one function


def pretrain_and_save(out: Path, cfg, eval_samples: int = 500) -> dict:
    """Train the small GPT-2 from scratch (`PretrainConfig` cfg); save it, its summary and its model card."""
    from rlhf_lib.evaluate import model_report, text_report
    from rlhf_lib.pretrain import pretrain, save, write_model_card
    from rlhf_lib.reviews import generate_reviews

    out = Path(out)
    result = pretrain(cfg)
    corpus = text_report(generate_reviews(5000, seed=derive_seed(cfg.seed, "corpus sample")))
    samples = model_report(result.model, result.tokenizer, n=eval_samples, temperature=1.0, seed=0)
    summary = save(result, out, cfg, extra=dict(corpus=corpus, samples_t1=samples))
    write_model_card(Path(out), summary)
    return summary


def sft_and_save(out: Path, cfg, model_name=None, demonstrations=None, n_demos: int = 2000,
                 eval_samples: int = 500) -> dict:
    """Supervised fine-tuning (`SFTConfig` cfg) on a JSONL of demonstrations (None: make n_demos of them into
    out/demonstrations.jsonl), with the model's figures before and after."""
    from rlhf_lib.evaluate import model_report
    from rlhf_lib.lm import load_model
    from rlhf_lib.sft import load_demonstrations, make_demonstrations, save_jsonl, sft

    out = Path(out)
    model, tokenizer = load_model(model_name)
    path = demonstrations or save_jsonl(make_demonstrations(n_demos, seed=cfg.seed), out / "demonstrations.jsonl")
    demos = load_demonstrations(path)
    before = model_report(model, tokenizer, n=eval_samples, seed=1)
    result = sft(model, tokenizer, demos, cfg)
    after = model_report(model, tokenizer, n=eval_samples, seed=1)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary = dict(model=str(model_name or "course model"), demonstrations=str(path), n_demonstrations=len(demos),
                   config=vars(cfg), before=before, after=after, final_loss=result.losses[-1],
                   seconds=round(result.seconds, 1))
    write_summary(out, summary)
    return summary


def make_labels(model, tokenizer, out: Path, n_pairs: int, annotator_temperature: float, seed: int,
                max_new_tokens: int, model_name: str, task: str = "sentence") -> dict:
    """Sample pairs from the model, label them with the simulated annotator, write out/labels.jsonl.
    task="sentence": two completions of a course prompt's sentence; task="whole": two whole reviews from one
    start of `rlhf_lib.whole_reviews.review_starts` (sampled to end-of-text)."""
    from rlhf_lib.feedback import SimulatedAnnotator, gold_preference, label_pairs, sample_pairs, save_records

    start = time.perf_counter()
    path = out / "labels.jsonl"
    if path.exists():
        raise ValueError(f"{path} already exists; choose another --out (labels are never overwritten)")
    if task == "whole":
        from rlhf_lib.whole_reviews import sample_whole_pairs

        pairs = sample_whole_pairs(model, tokenizer, n_pairs, max_new_tokens=max_new_tokens, seed=seed)
    else:
        pairs = sample_pairs(model, tokenizer, n_pairs, max_new_tokens=max_new_tokens, seed=seed)
    annotator = SimulatedAnnotator(annotator_temperature, seed=seed)
    records = label_pairs(annotator, pairs, model=model_name)
    save_records(path, records)  # atomically: labels.jsonl is whole or absent
    choices = [r.choice for r in records]
    decided = [(r, gold_preference(r.prompt, r.completion_a, r.completion_b)) for r in records if r.choice in "ab"]
    agree = [r.choice == g for r, g in decided if g != "tie"]
    return dict(labels=str(path), task=task, n=len(records),
                choices={c: choices.count(c) for c in sorted(set(choices))}, annotator=annotator.name,
                annotator_temperature=annotator_temperature,
                agreement_with_gold=sum(agree) / max(1, len(agree)), seconds=round(time.perf_counter() - start, 1))


def label_and_save(out: Path, model_name=None, n_pairs: int = 2000, annotator_temperature: float = 0.1,
                   seed: int = 0, max_new_tokens: int = 64, task: str = "whole", overwrite: bool = False) -> dict:
    """`make_labels` with the model `model_name` (None: the course model), and its summary."""
    from rlhf_lib.lm import load_model

    out = Path(out)
    if overwrite:
        remove(out / "labels.jsonl", out / "summary.json")
    model, tokenizer = load_model(model_name)
    summary = make_labels(model, tokenizer, out, n_pairs, annotator_temperature, seed, max_new_tokens,
                          str(model_name or "course model"), task=task)
    write_summary(out, summary)
    return summary


def train_reward(out: Path, labels: Path, policy_model, policy_tokenizer, cfg, base, n_heldout: int, seed: int,
                 max_new_tokens: int, pooling: str) -> dict:
    """Train a reward model on the labels, check it against gold on fresh pairs, normalise, save to out."""
    from rlhf_lib.evaluate import sample_texts
    from rlhf_lib.feedback import load_preferences, sample_pairs, to_pairs
    from rlhf_lib.reward_model import calibration, make_reward_model, normalize_on, pair_accuracy, train_reward_model

    train = to_pairs(load_preferences(labels))
    model, tokenizer = make_reward_model(base, pooling=pooling, seed=seed)
    result = train_reward_model(model, tokenizer, train, cfg)
    pairs = sample_pairs(policy_model, policy_tokenizer, n_heldout, max_new_tokens=max_new_tokens,
                         seed=derive_seed(seed, "sentence heldout"))
    heldout = [dict(prompt=p, chosen=a, rejected=b) for p, a, b in pairs]
    mean, std = normalize_on(model, tokenizer, sample_texts(policy_model, policy_tokenizer, 512,
                                                            seed=derive_seed(seed, "sentence normalization"),
                                                            stop_at="sentence"))
    report = pair_accuracy(model, tokenizer, heldout)
    decided = [(p, g > 0) for p, g in zip(report["p_chosen"], report["gold_gap"]) if g != 0]
    ece = calibration(*zip(*decided))["ece"]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return dict(labels=str(labels), n_train_pairs=len(train), n_heldout_pairs=report["n_gold_decided"],
                gold_accuracy=report["gold_accuracy"],
                train_accuracy_last_epoch=last_epoch_mean(result.accuracies, len(train), cfg.batch_size),
                calibration_error=ece, reward_mean=mean, reward_std=std, config=vars(cfg),
                seconds=round(result.seconds, 1))


def reward_and_save(out: Path, cfg, labels=None, model_name=None, base=None, n_pairs: int = 2000,
                    annotator_temperature: float = 0.1, heldout: int = 500, max_new_tokens: int = 64,
                    pooling: str = REWARD_POOLING, overwrite: bool = False) -> dict:
    """A one-sentence reward model (`RewardConfig` cfg) on a JSONL of labels (None: `make_labels` makes n_pairs
    of them into out/labels.jsonl with `model_name`), checked against gold on `heldout` fresh pairs."""
    from rlhf_lib.lm import load_model

    out = Path(out)
    if overwrite:
        remove(out / "summary.json", *([out / "labels.jsonl"] if labels is None else []))
    model, tokenizer = load_model(model_name)
    if labels is None:
        made = make_labels(model, tokenizer, out, n_pairs, annotator_temperature, cfg.seed, max_new_tokens,
                           str(model_name or "course model"))
        labels = Path(made["labels"])
    summary = train_reward(out, Path(labels), model, tokenizer, cfg, base, heldout, cfg.seed, max_new_tokens, pooling)
    write_summary(out, summary)
    return summary


def whole_reward_and_save(out: Path, cfg, model_name=None, base=None, overwrite: bool = False) -> dict:
    """`train_whole_review_reward_model` with `WholeRewardConfig` cfg (its pairs sampled from `model_name`,
    None: the course model), saved to out."""
    from rlhf_lib.whole_reviews import train_whole_review_reward_model

    out = Path(out)
    policy = None
    if model_name is not None:
        from rlhf_lib.lm import load_model

        policy = load_model(model_name)
    if overwrite:
        remove(out / "summary.json")
    model, tokenizer, summary = train_whole_review_reward_model(cfg, policy=policy, base=base)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary.update(model=str(model_name or "course model"), load_average=[round(x, 2) for x in os.getloadavg()])
    write_summary(out, summary)  # last: the folder holds a finished model when summary.json is there
    return summary


def run_ppo(out: Path, model_name, reward_path, cfg, eval_samples: int, accelerator=None, resume: bool = False,
            task: str = "whole", reference_name=None) -> dict:
    """PPO of the policy against the reward model, evaluated before and after. task="whole": whole reviews from
    `whole_review_prompts`, evaluated from the course prompts and from the start of text (`evaluate_whole`:
    before/after hold "course" and "empty"); task="sentence": the course prompts' first sentence. The reference
    (of the KL penalty and of the KL reported) is `reference_name`, or else the starting policy."""
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
    reference, _ = load_model(model_name if reference_name is None else reference_name)
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


def ppo_and_save(out: Path, cfg, reward_model, model_name=None, eval_samples: int = 500, task: str = "whole",
                 resume: bool = False, overwrite: bool = False, accelerate: bool = False) -> dict:
    """`run_ppo` (`RLHFConfig` cfg) and its summary; with `accelerate`, or when started by `accelerate launch`,
    several processes split the rollouts and only the main process saves (the others return {})."""
    out = Path(out)
    accelerator = None
    if accelerate or int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by `accelerate launch`
        import torch
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if overwrite and (accelerator is None or accelerator.is_main_process):
        remove(out / "summary.json", out / "policy", *(out / f"checkpoint{x}" for x in ("", ".new", ".old")))
    if accelerator:
        accelerator.wait_for_everyone()
    summary = run_ppo(out, model_name, reward_model, cfg, eval_samples, accelerator, resume, task)
    if accelerator:  # the helpers wait while the main process evaluates and saves, then all leave the group together:
        accelerator.wait_for_everyone()  # a helper that exits with its process group alive can abort at exit
        accelerator.end_training()
    if summary:
        write_summary(out, summary)
    return summary


# ---- the pipeline: the stages above in one run, resumable


@dataclass
class PipelineSettings:
    """What a pipeline run starts with; saved in pipeline.json, and `--resume` continues only the same settings."""

    task: str
    """"whole": whole reviews, the reward model's recipe labels its own groups; "sentence": one sentence"""
    model: str | None
    """the starting policy, a model folder or name (None: the course model)"""
    sft: bool
    """start with supervised fine-tuning on 2000 made demonstrations"""
    n_pairs: int | None
    """task "sentence": pairs to label (None for "whole")"""
    n_groups: int | None
    """task "whole": starts whose groups of whole reviews are labelled pair by pair (None for "sentence")"""
    annotator_temperature: float
    """noise of the simulated annotator"""
    heldout: int
    """fresh pairs to check the reward model against gold"""
    iterations: int
    """PPO iterations"""
    seed: int
    """seeds every stage"""
    rounds: int = 1
    """rounds of the loop (`rlhf_lib.loop`): 1 is the one-round pipeline; more are for whole reviews"""
    round_pairs: int = 2000
    """rounds after the first: pairs of the current policy's whole reviews to label"""
    min_round_labels: int = 1800
    """rounds after the first: the fewest decided labels a round may train on"""
    outside_labels: bool = False
    """rounds after the first: the labels come from a file or a class (--round-labels), not the simulated person"""

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError(f"--rounds must be 1 or more, got {self.rounds}")
        if self.rounds > 1 and self.task != "whole":
            raise ValueError(f"--rounds {self.rounds} is for --task whole: later rounds label pairs of the policy's "
                             "whole reviews")
        if self.round_pairs < 1:
            raise ValueError(f"--round-pairs must be 1 or more, got {self.round_pairs}")
        if not 0 <= self.min_round_labels <= self.round_pairs:
            raise ValueError(f"--min-round-labels must be between 0 and --round-pairs ({self.round_pairs}), "
                             f"got {self.min_round_labels}")


PIPELINE_SETTINGS = tuple(f.name for f in fields(PipelineSettings))
SETTING_DEFAULTS = {f.name: f.default for f in fields(PipelineSettings) if f.default is not MISSING}
"""what a setting was in a pipeline.json written before it existed"""


def pipeline_configs(settings: PipelineSettings) -> tuple:
    """(reward model config, PPO config) of a pipeline run: `WholeRewardConfig` and `whole_review_config()` for
    task "whole", `RewardConfig` and `RLHFConfig` for "sentence". A bad setting is refused here."""
    from rlhf_lib.reward_model import RewardConfig
    from rlhf_lib.rlhf import RLHFConfig
    from rlhf_lib.whole_reviews import WholeRewardConfig, whole_review_config

    s = settings
    if s.task == "whole":
        reward_cfg = WholeRewardConfig(n_groups=s.n_groups, annotator_temperature=s.annotator_temperature,
                                       n_heldout=s.heldout, seed=s.seed,
                                       groups_per_batch=min(WholeRewardConfig.groups_per_batch, s.n_groups))
        return reward_cfg, whole_review_config(iterations=s.iterations, seed=s.seed)
    return RewardConfig(seed=s.seed), RLHFConfig(iterations=s.iterations, seed=s.seed)


def _stage(folder: Path, resume: bool):
    """The summary of a finished stage (when resuming), else None: the stage runs (again)."""
    done = folder / "summary.json"
    return json.loads(done.read_text()) if resume and done.is_file() else None


def _check_resume(out: Path, settings: dict) -> None:
    """Refuse to continue a run that is not a pipeline run, or one started with other settings."""
    saved = json.loads((out / "pipeline.json").read_text()) if (out / "pipeline.json").is_file() else None
    if saved is None:
        raise FileNotFoundError(f"--resume: {out} holds no pipeline run (no pipeline.json)")
    differ = [f"--{k.replace('_', '-')} {saved.get(k, SETTING_DEFAULTS.get(k))!r} then, {v!r} now"
              for k, v in settings.items() if saved.get(k, SETTING_DEFAULTS.get(k)) != v]
    if differ:
        raise ValueError(f"--resume: the run in {out} was started with other settings ({'; '.join(differ)})")


def run_pipeline(out: Path, settings: PipelineSettings, reward_cfg, ppo_cfg, eval_samples: int = 500,
                 resume: bool = False, overwrite: bool = False, round_labels=None) -> dict:
    """SFT if asked, then labels, reward model, PPO and the evaluation, each in its own subfolder of out (task
    "whole": the reward model's recipe labels its own groups of whole reviews, so there is no labels stage).
    With settings.rounds above 1, the stages after SFT run in rounds (`rlhf_lib.loop.run_rounds`, which reads
    `round_labels`). The configs come from `pipeline_configs(settings)`. A stage is finished when its
    summary.json is written; `resume` skips finished stages and continues PPO from its checkpoint."""
    from rlhf_lib.checkpoint import find_checkpoint
    from rlhf_lib.lm import load_model
    from rlhf_lib.loop import check_round_folders, new_run_id, run_rounds
    from rlhf_lib.whole_reviews import train_whole_review_reward_model

    out = Path(out)
    whole = settings.task == "whole"
    if resume:
        _check_resume(out, asdict(settings))
    elif overwrite:
        remove(*(out / name for name in ("sft", "labels", "reward_model", "ppo", "summary.json", "pipeline.json")),
               *out.glob("round-*"))
    saved = json.loads((out / "pipeline.json").read_text()) if resume else {}
    run_id = saved.get("run") or new_run_id()
    if settings.rounds > 1:
        check_round_folders(out, run_id)  # before anything is written: a folder of another run is refused
    write_json(out / "pipeline.json", dict(asdict(settings), run=run_id))
    start, stages = time.perf_counter(), {}
    model_name = settings.model
    if settings.sft:
        from rlhf_lib.sft import SFTConfig, make_demonstrations, save_jsonl, sft

        stages["sft"] = _stage(out / "sft", resume)
        if stages["sft"] is None:
            model, tokenizer = load_model(model_name)
            demos = make_demonstrations(2000, seed=settings.seed)
            save_jsonl(demos, out / "sft" / "demonstrations.jsonl")
            result = sft(model, tokenizer, demos, SFTConfig(seed=settings.seed))
            model.save_pretrained(out / "sft")
            tokenizer.save_pretrained(out / "sft")
            stages["sft"] = dict(seconds=round(result.seconds, 1), final_loss=result.losses[-1])
            write_summary(out / "sft", stages["sft"])
        model_name = str(out / "sft")
    if settings.rounds > 1:
        summary = run_rounds(out, settings, reward_cfg, ppo_cfg, eval_samples, resume, round_labels, model_name)
        if settings.sft:
            summary["stages"] = dict(sft=stages["sft"])
            write_summary(out, summary)
        return summary
    model, tokenizer = load_model(model_name)
    if not whole:
        stages["labels"] = _stage(out / "labels", resume)
        if stages["labels"] is None:
            remove(out / "labels")  # an unfinished stage starts again from nothing
            stages["labels"] = make_labels(model, tokenizer, out / "labels", settings.n_pairs,
                                           settings.annotator_temperature, settings.seed, 64,
                                           str(model_name or "course model"), task="sentence")
            write_summary(out / "labels", stages["labels"])
    stages["reward_model"] = _stage(out / "reward_model", resume)
    if stages["reward_model"] is None and whole:
        remove(out / "reward_model")
        reward_model, reward_tokenizer, stages["reward_model"] = train_whole_review_reward_model(
            reward_cfg, policy=(model, tokenizer), progress=True)
        reward_model.save_pretrained(out / "reward_model")
        reward_tokenizer.save_pretrained(out / "reward_model")
        write_summary(out / "reward_model", stages["reward_model"])
    elif stages["reward_model"] is None:
        stages["reward_model"] = train_reward(out / "reward_model", Path(stages["labels"]["labels"]), model, tokenizer,
                                              reward_cfg, None, settings.heldout, settings.seed, 64, REWARD_POOLING)
        write_summary(out / "reward_model", stages["reward_model"])
    stages["ppo"] = _stage(out / "ppo", resume)
    if stages["ppo"] is None:
        resume_ppo = resume and find_checkpoint(out / "ppo" / "checkpoint") is not None
        stages["ppo"] = run_ppo(out / "ppo", model_name, out / "reward_model", ppo_cfg, eval_samples,
                                resume=resume_ppo, task=settings.task)
        write_summary(out / "ppo", stages["ppo"])
    summary = dict(task=settings.task, before=stages["ppo"]["before"], after=stages["ppo"]["after"],
                   reward_model_gold_accuracy=stages["reward_model"]["gold_accuracy"], stages=stages,
                   policy=stages["ppo"]["policy"], seconds=round(time.perf_counter() - start, 1))
    write_summary(out, summary)
    return summary
