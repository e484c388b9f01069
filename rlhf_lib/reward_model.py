"""Reward models: a language model with a scalar head, trained on preferences with Bradley-Terry.

Bradley-Terry says a person prefers completion y_c over y_r with probability

    P(y_c > y_r) = sigmoid(r(x, y_c) - r(x, y_r)),

so the reward model r is fitted by minimising  -log sigmoid(r_c - r_r - margin).

The model is `GPT2ForSequenceClassification` with one output (the "score" head), so it
saves and loads with `save_pretrained` / `AutoModelForSequenceClassification`. The reward
is read at the last real token of `<|endoftext|> prompt completion <|endoftext|>`, found
from the attention mask, so left and right padding give the same number. After training,
rewards are normalised so that samples of the reference model score mean 0, std 1; the two
constants live in the model's config (`reward_mean`, `reward_std`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rlhf_lib.feedback import to_pairs
from rlhf_lib.lm import COURSE_MODEL, check_fits, check_model_source, position_ids_from_mask
from rlhf_lib.runtime import check_count, check_positive
from rlhf_lib.threads import share_cores

POOLINGS = ("last", "sum", "mean")
"""how the head's per-token scores become one reward (`raw_rewards`)"""


def make_reward_model(base: str | Path | None = None, pooling: str = "last", seed: int | None = None):
    """(reward model, tokenizer): the backbone of a causal LM plus a fresh scalar head ~ N(0, 1/sqrt(d + 1)).
    The head is drawn from its own generator seeded with `seed` (None: torch's global generator).

    pooling="last": the head reads the hidden state of the last real token (the usual reward model).
    pooling="sum": the head scores every token and the reward is the sum over the real tokens; this
    suits a taste that adds up word scores, as VADER's does (notebook 07 compares the two).
    pooling="mean": the same per-token scores averaged over the real tokens."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    source = str(COURSE_MODEL if base is None else base)
    check_model_source(source, "a backbone")
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the "newly initialised score head" warning is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except OSError as err:
        raise OSError(f"cannot build a reward model on {source!r}: {err}") from None
    finally:
        logging.set_verbosity(verbosity)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    generator = None if seed is None else torch.Generator().manual_seed(check_count("seed", seed, minimum=0))
    torch.nn.init.normal_(model.score.weight, std=1.0 / math.sqrt(model.config.n_embd + 1), generator=generator)
    model.config.reward_mean, model.config.reward_std = 0.0, 1.0
    model.config.reward_pooling = pooling
    return model, tokenizer


def load_reward_model(path):
    """A reward model saved with `save_pretrained` (by `train_reward_model`'s caller or the CLI)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no reward model at {path} (expected a folder with config.json; "
                                "train one with `python -m rlhf_lib reward --out DIR`)")
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if getattr(model.config, "num_labels", None) != 1:
        raise ValueError(f"{path} is not a reward model (it has {model.config.num_labels} outputs, not 1)")
    model.eval()
    return model, tokenizer


def encode(tokenizer, texts: list[str], padding_side: str = "left"):
    """(B, T) ids and mask of <|endoftext|> text <|endoftext|>, padded on the given side."""
    return encode_ids(tokenizer, [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], padding_side)


def encode_ids(tokenizer, token_rows: list[list[int]], padding_side: str = "left"):
    """(B, T) ids and mask of <|endoftext|> tokens <|endoftext|> for rows of token ids, padded on the given side."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    rows = [[bos] + list(r) + [tokenizer.eos_token_id] for r in token_rows]
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tokenizer.pad_token_id)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(T - len(r), T) if padding_side == "left" else slice(0, len(r))
        ids[i, sl], mask[i, sl] = torch.tensor(r), 1
    return ids, mask


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last 1 in each row of the mask: the last real token, whatever the padding."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    return (positions * mask).argmax(-1)


def raw_rewards(model, ids, mask, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) the head's output under the model's `reward_pooling` (not normalised): at the last real token
    ("last"), or its per-token scores summed ("sum") or averaged ("mean") over the real tokens. `inputs_embeds`
    (B, T, d): token embeddings to read in place of the ids' own (integrated gradients moves along them)."""
    pooling = getattr(model.config, "reward_pooling", "last")
    if pooling not in POOLINGS:
        raise ValueError(f"the reward model's config says reward_pooling={pooling!r}; known: {POOLINGS}")
    tokens = dict(input_ids=ids) if inputs_embeds is None else dict(inputs_embeds=inputs_embeds)
    hidden = model.transformer(**tokens, attention_mask=mask,
                               position_ids=position_ids_from_mask(mask)).last_hidden_state  # (B, T, d)
    if pooling != "last":
        total = (model.score(hidden).squeeze(-1) * mask).sum(-1)  # (B, T) -> (B,)
        return total if pooling == "sum" else total / mask.sum(-1)
    last = hidden[torch.arange(len(ids)), last_token_index(mask)]  # (B, d)
    return model.score(last).squeeze(-1)


def rewards(model, ids, mask) -> torch.Tensor:
    """(B,) normalised rewards: (raw - reward_mean) / reward_std."""
    return (raw_rewards(model, ids, mask) - model.config.reward_mean) / model.config.reward_std


@torch.no_grad()
def score_texts(model, tokenizer, texts: list[str], batch_size: int = 64, normalize: bool = True) -> np.ndarray:
    """Rewards of whole texts (prompt + completion), shape (N,)."""
    model.eval()
    check_fits(model, tokenizer, texts, "text", extra=2)  # the two end-of-text tokens around it
    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = (t.to(model.device) for t in encode(tokenizer, texts[i : i + batch_size]))
        r = rewards(model, ids, mask) if normalize else raw_rewards(model, ids, mask)
        out.append(r.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin=None) -> torch.Tensor:
    """-mean log sigmoid(r_chosen - r_rejected - margin)."""
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff).mean()


def plackett_luce_loss(scores: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """The ranking kind of reward-model loss: -mean log P(order | scores) under the Plackett-Luce model.

    scores (B, k): the reward of each of k responses to one prompt. order (B, k), long: the response indices
    from the most preferred to the least, a permutation of 0..k-1 in each row. The model picks the first
    response with probability softmax(scores) over all k, the second by a softmax over the k - 1 left, and so
    on; log P(order) sums those k - 1 choices. At k = 2 it is the Bradley-Terry loss of the pair."""
    if scores.dim() != 2 or scores.shape != order.shape:
        raise ValueError(f"scores and order must both be (B, k), got {tuple(scores.shape)} and {tuple(order.shape)}")
    k = scores.shape[1]
    if k < 2:
        raise ValueError(f"a ranking needs at least 2 responses, got k = {k}")
    if not torch.equal(order.sort(dim=1).values, torch.arange(k, device=order.device).expand_as(order)):
        raise ValueError("each row of order must be a permutation of 0..k-1 (the response indices, best first)")
    ranked = scores.gather(1, order)  # (B, k): best first
    # log-sum-exp of each suffix ranked[:, t:], for t = 0..k-1, computed from the right
    suffix = ranked.flip(1).logcumsumexp(1).flip(1)
    return -(ranked - suffix)[:, :-1].sum(1).mean()


# ---- training


@dataclass
class RewardConfig:
    epochs: int = 8
    """passes over the training pairs"""
    batch_size: int = 32
    """pairs per step"""
    lr: float = 5e-4
    """AdamW learning rate, linear warmup then linear decay to 0"""
    warmup: int = 20
    """warmup steps"""
    seed: int = 0
    """seeds the batch order and dropout"""
    group_by_length: bool = False
    """batch pairs of similar length together (less padding, so faster; batches still come in random order)"""

    def __post_init__(self):
        check_count("epochs", self.epochs)
        check_count("batch_size", self.batch_size)
        check_positive("lr (the learning rate)", self.lr)
        check_count("warmup", self.warmup, minimum=1)
        check_count("seed", self.seed, minimum=0)


@dataclass
class RewardResult:
    losses: list[float] = field(default_factory=list)
    """Bradley-Terry loss of each step"""
    accuracies: list[float] = field(default_factory=list)
    """share of the step's pairs ranked the annotator's way"""
    seconds: float = 0.0


def pair_rewards(model, tokenizer, pairs: list[dict], distinct: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_chosen (N,), r_rejected (N,)): raw rewards of N {"prompt", "chosen", "rejected"} pairs from one forward
    pass over the 2N texts, chosen first, then rejected. distinct=True: each distinct text once instead, in the
    order first met, pair by pair (the pairs among a group of K completions share their K texts)."""
    chosen = [p["prompt"] + p["chosen"] for p in pairs]
    rejected = [p["prompt"] + p["rejected"] for p in pairs]
    if not distinct:
        r = raw_rewards(model, *(t.to(model.device) for t in encode(tokenizer, chosen + rejected)))  # (2N,)
        return r[: len(pairs)], r[len(pairs) :]
    index: dict[str, int] = {}
    for pair in zip(chosen, rejected):
        for text in pair:
            index.setdefault(text, len(index))
    r = raw_rewards(model, *(t.to(model.device) for t in encode(tokenizer, list(index))))  # (U,) one per text
    return r[[index[t] for t in chosen]], r[[index[t] for t in rejected]]  # (N,), (N,)


def reward_model_step(model, tokenizer, pairs: list[dict], opt, max_grad_norm: float = 1.0, distinct: bool = False):
    """One Bradley-Terry step on a batch of N {"prompt", "chosen", "rejected"} pairs: score the 2N texts in
    one forward pass (chosen first, then rejected; distinct=True: each distinct text once, `pair_rewards`), the
    loss, gradients clipped to `max_grad_norm`, one optimizer step. Returns (loss (), r_chosen (N,),
    r_rejected (N,)), detached."""
    r_chosen, r_rejected = pair_rewards(model, tokenizer, pairs, distinct)  # (N,), (N,)
    loss = bradley_terry_loss(r_chosen, r_rejected)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    return loss.detach(), r_chosen.detach(), r_rejected.detach()


def train_reward_model(model, tokenizer, pairs: list[dict], cfg: RewardConfig | None = None,
                       progress: bool = True, step_fn=reward_model_step) -> RewardResult:
    """Fit the reward model in place on {"prompt", "chosen", "rejected"} pairs (or preference records: `to_pairs`),
    `cfg.batch_size` pairs a step.

    step_fn(model, tokenizer, pairs, opt) -> (loss, r_chosen, r_rejected): one training step on a batch
    (`reward_model_step`, or yours); the epochs and the learning-rate schedule stay in the loop
    (`train_on_groups`, where each pair is a group of one)."""
    cfg = cfg or RewardConfig()
    pairs = to_pairs(pairs)
    if not pairs:
        raise ValueError("no preference pairs to train on (ties and skips carry no direction)")
    check_fits(model, tokenizer, [p["prompt"] + p[k] for p in pairs for k in ("chosen", "rejected")],
               "text of pair half", extra=2)
    return train_on_groups(model, tokenizer, [[p] for p in pairs], cfg, groups_per_batch=cfg.batch_size,
                           progress=progress, step_fn=step_fn)


def train_on_groups(model, tokenizer, groups: list[list[dict]], cfg: RewardConfig | None = None,
                    groups_per_batch: int = 16, progress: bool = True, max_seconds: float | None = None,
                    step_fn=None) -> RewardResult:
    """The reward model's training loop: fit it in place on labelled pairs that come in groups (the pairs among
    one prompt's completions, `rlhf_lib.whole_reviews.label_groups`). Each epoch the groups come in a random order
    (of similar length together with cfg.group_by_length), `groups_per_batch` of them a step; AdamW with a linear
    warmup over cfg.warmup steps, then a linear decay to 0 at the last planned step.

    step_fn(model, tokenizer, pairs, opt) -> (loss, r_chosen, r_rejected): one step on the batch's pairs; by
    default `reward_model_step` with each distinct text scored once, the loss the mean over every labelled pair
    of the batch. `cfg` is a `RewardConfig` (epochs, lr, warmup, seed, group_by_length; batch_size is not read).
    `max_seconds`: stop after the first step that ends past this many seconds of training (the learning-rate
    schedule stays the one planned for all the epochs); `len(result.losses)` says how many steps ran."""
    from tqdm.auto import tqdm

    cfg = cfg or RewardConfig()
    step_fn = step_fn or partial(reward_model_step, distinct=True)
    check_count("groups_per_batch", groups_per_batch)
    if max_seconds is not None:
        check_positive("max_seconds", max_seconds)
    groups = [pairs for pairs in map(to_pairs, groups) if pairs]  # preference records become pairs too
    if not groups:
        raise ValueError("no labelled pairs to train on (every group was empty or all ties)")
    lengths = None
    if cfg.group_by_length:  # a group is as long as its longest text
        lengths = [max(len(tokenizer(p["prompt"] + max(p["chosen"], p["rejected"], key=len))["input_ids"]) for p in g)
                   for g in groups]
    torch.manual_seed(cfg.seed)  # dropout
    gen = torch.Generator().manual_seed(cfg.seed)  # the batch order
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    steps_per_epoch = max(1, len(groups) // groups_per_batch)
    total = cfg.epochs * steps_per_epoch
    result, start = RewardResult(), time.perf_counter()
    model.train()
    bar = tqdm(total=total, desc="reward model", disable=not progress)
    batches = [batch for _ in range(cfg.epochs)  # every epoch's batches of group indices, drawn up front
               for batch in _batches(len(groups), groups_per_batch, steps_per_epoch, gen, lengths)]
    for step, batch in enumerate(batches):
        share_cores()
        for param_group in opt.param_groups:
            param_group["lr"] = cfg.lr * min((step + 1) / cfg.warmup, 1.0 - step / total)
        loss, r_chosen, r_rejected = step_fn(model, tokenizer, [p for g in batch for p in groups[g]], opt)
        result.losses.append(float(loss))
        result.accuracies.append(float((torch.as_tensor(r_chosen) > torch.as_tensor(r_rejected)).float().mean()))
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.3f}")
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    bar.close()
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _batches(n: int, batch_size: int, n_batches: int, gen, lengths: list[int] | None = None) -> list[list[int]]:
    """One epoch of batches of the indices 0..n-1, in a random order. With lengths, grouped by length: shuffle,
    sort within windows of 8 batches, cut into batches, shuffle the batches."""
    order = torch.randperm(n, generator=gen).tolist()
    if lengths is not None:
        window = 8 * batch_size
        order = [i for w in range(0, len(order), window)
                 for i in sorted(order[w : w + window], key=lengths.__getitem__)]
    batches = [order[b * batch_size : (b + 1) * batch_size] for b in range(n_batches)]
    if lengths is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches


def normalize_on(model, tokenizer, texts: list[str]) -> tuple[float, float]:
    """Set reward_mean / reward_std so that `texts` (samples of the reference model) score mean 0, std 1."""
    raw = score_texts(model, tokenizer, texts, normalize=False)
    model.config.reward_mean, model.config.reward_std = float(raw.mean()), float(raw.std() + 1e-8)
    return model.config.reward_mean, model.config.reward_std


# ---- evaluation


def pair_accuracy(model, tokenizer, pairs: list[dict], batch_size: int = 64) -> dict:
    """How often the reward model ranks a pair like the noise-free gold preference (the reading taste,
    `rlhf_lib.evaluate.gold_taste`: grammatical first, then VADER), and like the recorded labels (chosen over
    rejected). Pairs the gold calls a tie are left out of the gold accuracy. Also returns, per pair, the reward
    margin r_chosen - r_rejected, the model's P(chosen > rejected) and the gold score gap t_chosen - t_rejected
    (1 or more where one is grammatical and the other is not). The texts are scored `batch_size` at a time
    (`score_texts`). Preference records are taken too (`to_pairs`: the decided ones)."""
    from rlhf_lib.evaluate import gold_taste

    pairs = to_pairs(pairs)
    if not pairs:
        raise ValueError("no pairs to evaluate")
    chosen = [p["prompt"] + p["chosen"] for p in pairs]
    rejected = [p["prompt"] + p["rejected"] for p in pairs]
    r = score_texts(model, tokenizer, chosen + rejected, batch_size, normalize=False)  # Bradley-Terry's own scale
    margin = r[: len(pairs)] - r[len(pairs) :]  # (N,)
    gap = gold_taste(chosen) - gold_taste(rejected)  # (N,)
    decided = gap != 0
    right = (margin > 0) == (gap > 0)
    return dict(gold_accuracy=float(right[decided].mean()) if decided.any() else float("nan"),
                label_accuracy=float((margin > 0).mean()), n=len(pairs), n_gold_decided=int(decided.sum()),
                margin=margin.tolist(), p_chosen=(1 / (1 + np.exp(-margin))).tolist(), gold_gap=gap.tolist())


def accuracy_by_gap(report: dict, edges=(0.0, 0.1, 0.2, 0.5, 2.0, math.inf)) -> dict:
    """Gold accuracy of a `pair_accuracy` report within bands of |gold score gap|: close calls are hard. Gaps over
    2 (the last band) are always a grammatical review against a broken one (such pairs are 1 to 5 apart)."""
    margin, gap = np.asarray(report["margin"]), np.asarray(report["gold_gap"])
    right, size = (margin > 0) == (gap > 0), np.abs(gap)
    bands = [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:])]
    sel = [(size > lo if lo == 0 else size >= lo) & (size < hi) for lo, hi in bands]
    return dict(bands=[f"{lo:g}-{hi:g}" for lo, hi in bands], n=[int(m.sum()) for m in sel],
                accuracy=[float(right[m].mean()) if m.any() else float("nan") for m in sel])


def calibration(p_predicted, outcomes, bins: int = 10) -> dict:
    """Reliability table: in each probability bin, the mean prediction and the observed frequency."""
    p, y = np.asarray(p_predicted, dtype=float), np.asarray(outcomes, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    rows = [(p[idx == b].mean(), y[idx == b].mean(), int((idx == b).sum())) for b in range(bins) if (idx == b).any()]
    predicted, observed, counts = (list(x) for x in zip(*rows)) if rows else ([], [], [])
    ece = float(sum(c * abs(a - b) for a, b, c in zip(predicted, observed, counts)) / max(1, len(p)))
    return dict(predicted=predicted, observed=observed, counts=counts, ece=ece)
