"""PPO-RLHF on the course model against TRL's RLOO and GRPO trainers, on the same task, in one run.

    python benchmarks/ppo.py            # about 7 minutes on 2 cores; writes results/ppo.json and
                                        # assets/figures/08_ppo_vs_trl.png (--plot-only: redraw it)
    python benchmarks/ppo.py --task whole   # the same on whole reviews (about 17 minutes); results/ppo_whole.json
                                            # and assets/figures/08_ppo_vs_trl_whole.png

--task whole: the policy writes whole reviews to end-of-text (at most 64 tokens) from `whole_review_prompts()`
(course prompts, other openings, nothing: 1:1:4), the reward is the shipped whole-review reward model, ours is
`whole_review_config()` (the recipe: 85 iterations, about 285 s), each of TRL's trainers gets 285 s, and the
final evaluation is 300 samples from the course prompts and 300 from the start of text. Each batch's KL to the
course model is measured too (for TRL from the ids it sampled, that time taken off its clock), and the time to
the target is also reported counting only batches at no more KL than ours when we reached it. Otherwise as below.

The task for all three: the shipped course model writes the rest of a course prompt's sentence (stop at
"." / "!" / end-of-text, at most 32 tokens); the reward is the shipped reward model's normalised score
(assets/reward_model), minus 1 for a response that never ends. Measured: the gold positive rate (VADER) and
grammatical rate of each batch's own samples against wall-clock seconds of training, and at the end the
same evaluation for each trained model (500 fresh samples, KL to the reference). Each trainer gets the same
budget of wall time. TRL's trainers are set to the same batch (64 completions a step), learning rate (1e-4;
their default 1e-6 barely moves in minutes), response length and stop tokens, dropout off, on the CPU;
everything else is TRL's default (RLOO: beta 0.05, 2 completions a prompt; GRPO: beta 0, 8 a prompt).
"""

import json
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from preference_methods import rollout_kl  # a script beside this one: the KL of TRL's sampled ids

from rlhf_lib.evaluate import POSITIVE_THRESHOLD, gold_sentiment
from rlhf_lib.lm import COURSE_MODEL, load_model, stop_ids
from rlhf_lib.plotting import smooth
from rlhf_lib.reviews import PROMPTS, is_grammatical
from rlhf_lib.reward_model import load_reward_model, score_texts
from rlhf_lib.rlhf import RLHFConfig, evaluate_policy, review_metrics, train_rlhf

ROOT = Path(__file__).resolve().parents[1]
REWARD_MODEL = ROOT / "assets" / "reward_model"
TARGET = 0.9  # time to reach: mean gold positive rate of the last 3 batches
TASKS = {
    "sentence": dict(reward_model=REWARD_MODEL, stop_at="sentence", max_new_tokens=32, budget=150,
                     results="ppo.json", figure="08_ppo_vs_trl.png"),
    "whole": dict(reward_model=ROOT / "assets" / "whole_review_reward_model", stop_at="text", max_new_tokens=64,
                  budget=285, results="ppo_whole.json", figure="08_ppo_vs_trl_whole.png"),
}


def time_to_target(curve, max_kl: float | None = None):
    """(seconds, KL then): the first time the mean of the last 3 batches' gold positive rate reaches TARGET,
    with their mean KL at most max_kl if given (curves with a "kl"); (None, None) if never."""
    for i in range(2, len(curve)):
        last = curve[i - 2 : i + 1]
        kl = float(np.mean([c["kl"] for c in last])) if "kl" in curve[i] else None
        if np.mean([c["gold_positive"] for c in last]) >= TARGET and (max_kl is None or kl <= max_kl):
            return round(curve[i]["seconds"], 1), kl
    return None, None


def task_prompts(task: str, n: int) -> list[str]:
    from rlhf_lib.whole_reviews import whole_review_prompts

    return [PROMPTS[i % len(PROMPTS)] for i in range(n)] if task == "sentence" else whole_review_prompts(n, seed=0)


def run_ours(reward, task: str = "sentence"):
    from rlhf_lib.whole_reviews import whole_review_config

    policy, tok = load_model()
    reference, _ = load_model()
    cfg = RLHFConfig() if task == "sentence" else whole_review_config()
    result = train_rlhf(policy, tok, *reward, reference, cfg, progress=False, metrics=review_metrics,
                        prompts=task_prompts(task, 4096))
    curve = [dict(seconds=h["seconds"], gold_positive=h["gold_positive"], grammatical=h["grammatical"],
                  score=h["score"], kl=h["kl_k1"]) for h in result.history]
    return policy, curve, result.seconds


def run_trl(kind: str, reward, task: str = "sentence"):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    _, tok = load_model()
    model = AutoModelForCausalLM.from_pretrained(COURSE_MODEL)
    settings = TASKS[task]
    stops = list(stop_ids(tok, settings["stop_at"]))
    model.generation_config.eos_token_id = stops  # stop at the sentence's end, or at end-of-text
    model.generation_config.pad_token_id = tok.pad_token_id
    bos = tok.decode([tok.bos_token_id])
    prompts = Dataset.from_dict({"prompt": [bos + p for p in task_prompts(task, 64 * 400)]})
    curve, start, trainer = [], [None], None
    reference = AutoModelForCausalLM.from_pretrained(COURSE_MODEL).eval() if task == "whole" else None

    def reward_fn(prompts, completions, completion_ids=None, **kwargs):
        texts = [p[len(bos):] + c for p, c in zip(prompts, completions)]
        score = score_texts(reward[0], reward[1], texts)
        if task == "sentence":
            finished = np.array([c.rstrip().endswith((".", "!")) for c in completions])
        else:  # the completion's ids end with end-of-text when the review ended
            finished = np.array([bool(ids) and ids[-1] in stops for ids in completion_ids])
        gold = gold_sentiment(texts)
        if start[0] is not None:
            now = time.perf_counter()
            point = dict(seconds=now - start[0], gold_positive=float((gold > POSITIVE_THRESHOLD).mean()),
                         grammatical=float(np.mean([is_grammatical(t) for t in texts])), score=float(score.mean()))
            if reference is not None:  # whole reviews: this batch's KL (k1 per review), its time off TRL's clock
                point["kl"] = rollout_kl(trainer.model, reference, tok, [p[len(bos):] for p in prompts], completion_ids)
                start[0] += time.perf_counter() - now
            curve.append(point)
        return (score - 1.0 * ~finished).tolist()

    class Budget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            start[0] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            control.should_training_stop = time.perf_counter() - start[0] > settings["budget"]

    common = dict(output_dir=tempfile.mkdtemp(), use_cpu=True, learning_rate=1e-4,
                  max_completion_length=settings["max_new_tokens"],
                  per_device_train_batch_size=64, max_steps=10_000, logging_steps=10, report_to="none",
                  disable_dropout=True, save_strategy="no", seed=0)
    if kind == "GRPO":
        trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, train_dataset=prompts, processing_class=tok,
                              args=GRPOConfig(num_generations=8, **common), callbacks=[Budget()])
    else:
        trainer = RLOOTrainer(model=model, reward_funcs=reward_fn, train_dataset=prompts, processing_class=tok,
                              args=RLOOConfig(num_generations=2, **common), callbacks=[Budget()])
    trainer.train()
    return trainer.model.eval(), curve, time.perf_counter() - start[0]  # the measuring already taken off


def final_figures(model, reference, tok, reward, task: str) -> dict:
    from rlhf_lib.whole_reviews import evaluate_whole

    if task == "sentence":
        final = evaluate_policy(model, reference, tok, *reward, n=500)
        return dict(final={k: v for k, v in final.items() if k != "examples"}, examples=final["examples"][:4])
    final = evaluate_whole(model, reference, tok, *reward, n=300)
    return dict(final={where: {k: v for k, v in r.items() if k != "examples"} for where, r in final.items()},
                examples=final["empty"]["examples"][:4])


def main(task: str = "sentence"):
    import subprocess

    torch.manual_seed(0)
    settings = TASKS[task]
    reward = load_reward_model(settings["reward_model"])
    reference, tok = load_model()
    results, curves = {}, {}
    ours_kl = None  # ours' KL when it reached the target: the others must reach it at no more (whole reviews)
    for name, runner in (("ours (PPO)", lambda: run_ours(reward, task)),
                         ("TRL RLOO", lambda: run_trl("RLOO", reward, task)),
                         ("TRL GRPO", lambda: run_trl("GRPO", reward, task))):
        model, curve, seconds = runner()
        reached, kl_then = time_to_target(curve)
        results[name] = dict(training_seconds=round(seconds, 1), seconds_to_90pct_positive=reached,
                             kl_then=None if kl_then is None else round(kl_then, 2),
                             batches=len(curve), **final_figures(model, reference, tok, reward, task))
        if task == "whole":
            ours_kl = kl_then if ours_kl is None else ours_kl
            results[name]["seconds_to_90pct_at_our_kl"] = time_to_target(curve, ours_kl)[0]
        curves[name] = curve
        print(name, json.dumps(results[name]))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    out = dict(date=str(date.today()), machine=f"{platform.machine()}, {torch.get_num_threads()} torch threads",
               torch=torch.__version__, task=task, commit=commit, budget_seconds=settings["budget"],
               target=f"mean gold positive rate of 3 batches >= {TARGET}", results=results, curves=curves)
    (ROOT / "benchmarks/results" / settings["results"]).write_text(json.dumps(out, indent=2))
    plot(curves, ROOT / "assets/figures" / settings["figure"])


def plot(curves: dict, path: Path) -> None:
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    for name, curve in curves.items():
        t = [c["seconds"] for c in curve]
        ax[0].plot(t, smooth([c["gold_positive"] for c in curve], 3), label=name)
        ax[1].plot(t, smooth([c["grammatical"] for c in curve], 3), label=name)
    ax[0].set(xlabel="seconds of training (2 CPU cores)", ylabel="gold positive rate of the batch", ylim=(0, 1.02))
    ax[1].set(xlabel="seconds of training (2 CPU cores)", ylabel="grammatical rate of the batch", ylim=(0, 1.02))
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    task = "whole" if "--task" in sys.argv and sys.argv[sys.argv.index("--task") + 1] == "whole" else "sentence"
    if "--plot-only" in sys.argv:  # redraw the figure from the results file
        settings = TASKS[task]
        plot(json.loads((ROOT / "benchmarks/results" / settings["results"]).read_text())["curves"],
             ROOT / "assets/figures" / settings["figure"])
    else:
        main(task)
