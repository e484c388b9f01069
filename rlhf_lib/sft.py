"""Supervised fine-tuning: imitate demonstrations, with the loss on the completion only.

A demonstration is a prompt and the completion a person wrote for it. The model
is trained with next-token cross-entropy on the completion's tokens (and the
end-of-text token after it); the prompt's tokens are context, never targets:

    loss = - mean over completion tokens of log pi(token | prompt, completion so far)
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rlhf_lib.evaluate import gold_sentiment
from rlhf_lib.files import write_atomic
from rlhf_lib.reviews import PROMPTS, generate_review
from rlhf_lib.runtime import check_count, check_positive
from rlhf_lib.threads import share_cores

REQUIRED_FIELDS = ("prompt", "completion")


# ---- demonstrations


def make_demonstrations(n: int, min_sentiment: float | None = 0.5, mood: float = 0.9, seed: int = 0,
                        prompts=PROMPTS) -> list[dict]:
    """n demonstrations: reviews that start with one of `prompts`, split after it.
    With `min_sentiment`, only reviews whose VADER score is at least that (a demonstrator who writes
    positive reviews); with None, reviews as they come (the demonstrator's own mix)."""
    check_count("n", n)
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        prompt = rng.choice(prompts)
        review = generate_review(rng, mood=mood)
        if not review.startswith(prompt + " "):
            continue
        if min_sentiment is not None and gold_sentiment(review)[0] < min_sentiment:
            continue
        out.append({"prompt": prompt, "completion": review[len(prompt):]})
    return out


def save_jsonl(records: list[dict], path) -> Path:
    """One JSON record a line, written atomically (`rlhf_lib.files.write_atomic`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def load_demonstrations(path):
    """A JSONL file of {"prompt", "completion"} records as a `datasets.Dataset`, with clear errors."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no demonstrations file at {path}")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty: it needs one JSON record per line with fields {REQUIRED_FIELDS}")
    for i, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {i}: not valid JSON ({err.msg})") from None
        missing = [k for k in REQUIRED_FIELDS if not isinstance(record.get(k), str)]
        if missing:
            raise ValueError(f"{path}, line {i}: missing text field(s) {missing}")
    return datasets.load_dataset("json", data_files=str(path), split="train")


# ---- training


@dataclass
class SFTConfig:
    epochs: int = 2
    """passes over the demonstrations"""
    batch_size: int = 32
    """demonstrations per step"""
    lr: float = 5e-4
    """AdamW learning rate (constant after a short warmup)"""
    warmup: int = 20
    """warmup steps"""
    seed: int = 0
    """seeds the batch order"""

    def __post_init__(self):
        check_count("epochs", self.epochs)
        check_count("batch_size", self.batch_size)
        check_positive("lr (the learning rate)", self.lr)
        check_count("warmup", self.warmup, minimum=1)
        check_count("seed", self.seed, minimum=0)


@dataclass
class SFTResult:
    model: object
    losses: list[float] = field(default_factory=list)
    """completion loss of each step"""
    seconds: float = 0.0


def sft_batch(tokenizer, batch: list[dict]):
    """Right-padded (B, T) input ids, attention mask, and labels with -100 on prompt and padding."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    rows = []
    for d in batch:
        p = [bos] + tokenizer(d["prompt"], add_special_tokens=False)["input_ids"]
        c = tokenizer(d["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((p + c, [-100] * len(p) + c))
    T = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), T), tokenizer.pad_token_id)
    labels = torch.full((len(rows), T), -100)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return ids, mask, labels


def completion_loss(model, ids, mask, labels) -> torch.Tensor:
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # (B, T-1, V): position t predicts t+1
    targets = labels[:, 1:]
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)


def sft_step(model, tokenizer, batch: list[dict], opt, max_grad_norm: float = 1.0) -> float:
    """One step of SFT on `batch` ({"prompt", "completion"} dicts): encode it (`sft_batch`: labels -100 on
    the prompt and the padding), the mean cross-entropy of the completion tokens (position t predicts
    t + 1), gradients cleared, backward, clipped to `max_grad_norm`, the optimizer's step. Returns the loss."""
    ids, mask, labels = sft_batch(tokenizer, batch)  # (B, T) each
    loss = completion_loss(model, ids.to(model.device), mask.to(model.device), labels.to(model.device))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    return loss.item()


def sft(model, tokenizer, demonstrations, cfg: SFTConfig | None = None, progress: bool = True,
        step_fn=sft_step) -> SFTResult:
    """Fine-tune `model` in place on demonstrations (a list of dicts or a datasets.Dataset).
    step_fn(model, tokenizer, batch, opt) -> loss: one step (`sft_step`, or notebook 05's own)."""
    from tqdm.auto import tqdm

    cfg = cfg or SFTConfig()
    demos = [{"prompt": d["prompt"], "completion": d["completion"]} for d in demonstrations]
    if not demos:
        raise ValueError("no demonstrations to train on")
    from rlhf_lib.lm import check_fits

    check_fits(model, tokenizer, [d["prompt"] + d["completion"] for d in demos], "demonstration", extra=2)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # dropout draws from the global generator
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps_per_epoch = max(1, len(demos) // cfg.batch_size)
    result, start, step = SFTResult(model), time.perf_counter(), 0
    model.train()
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc="SFT", disable=not progress)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(demos), generator=gen).tolist()
        for b in range(steps_per_epoch):
            batch = [demos[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
            share_cores()
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup)
            loss = float(step_fn(model, tokenizer, batch, opt))
            result.losses.append(loss)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
    bar.close()
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
