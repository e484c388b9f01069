"""Pretrain the course's small GPT-2 from scratch on the review language.

    python -m rlhf_lib pretrain --out DIR

1. generate a corpus of reviews (seeded) and hold some out;
2. train a byte-level BPE tokenizer on it (the kind GPT-2 uses), with an explicit
   end-of-text token (also the beginning of every review) and a separate pad token;
3. train a `GPT2LMHeadModel` with a small config on reviews packed into fixed-length blocks;
4. save both with `save_pretrained`, so `AutoModelForCausalLM.from_pretrained(DIR)` loads them.

The model shipped in `assets/model` was made by exactly this code with the defaults below.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from rlhf_lib.files import write_atomic
from rlhf_lib.reviews import generate_reviews
from rlhf_lib.runtime import check_count, check_positive, set_seed
from rlhf_lib.threads import share_cores

EOS = "<|endoftext|>"
PAD = "<|pad|>"


@dataclass
class PretrainConfig:
    n_reviews: int = 60_000
    """reviews in the training corpus"""
    n_heldout: int = 2_000
    """reviews held out to measure the loss"""
    vocab_size: int = 1_500
    """BPE vocabulary size (including the two special tokens)"""
    n_layer: int = 4
    """transformer blocks"""
    n_embd: int = 192
    """width of the residual stream"""
    n_head: int = 4
    """attention heads"""
    block_size: int = 64
    """tokens per training sequence (reviews are packed end to end)"""
    n_positions: int = 128
    """longest sequence the model can read (prompt plus response)"""
    batch_size: int = 32
    """sequences per step"""
    steps: int = 2_400
    """optimizer steps"""
    lr: float = 2e-3
    """peak AdamW learning rate (linear warmup, cosine decay)"""
    warmup: int = 100
    """warmup steps"""
    weight_decay: float = 0.01
    """AdamW weight decay"""
    seed: int = 0
    """seeds the corpus, the initial weights and the batch order"""

    def __post_init__(self):
        for name in ("n_reviews", "n_heldout", "vocab_size", "n_layer", "n_embd", "n_head", "block_size",
                     "batch_size", "steps"):
            check_count(name, getattr(self, name))
        check_positive("lr (the learning rate)", self.lr)
        check_count("warmup", self.warmup, minimum=1)
        check_count("n_positions", self.n_positions, minimum=self.block_size)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_count("seed", self.seed, minimum=0)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer wrapped as a transformers tokenizer (left padding, explicit pad)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=PAD, padding_side="left", model_max_length=None)


def pack(tokenizer, texts: list[str], block_size: int) -> torch.Tensor:
    """Every review as <eos> review, all end to end, cut into blocks: (n_blocks, block_size + 1)."""
    eos = tokenizer.eos_token_id
    stream = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        stream += [eos] + ids
    stream.append(eos)
    n = (len(stream) - 1) // block_size
    data = torch.tensor(stream[: n * block_size + 1])
    # overlapping by one token so that each block has its next-token targets
    return torch.stack([data[i * block_size : (i + 1) * block_size + 1] for i in range(n)])


def make_model(tokenizer, cfg: PretrainConfig):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(config)


@torch.no_grad()
def evaluate_loss(model, blocks: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats per token) over the blocks."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        b = blocks[i : i + batch_size]
        logits = model(b[:, :-1]).logits
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), b[:, 1:].flatten(), reduction="sum").item()
        count += b[:, 1:].numel()
    model.train()
    return total / count


@dataclass
class PretrainResult:
    model: object
    tokenizer: object
    losses: list[float] = field(default_factory=list)
    """training loss per step"""
    heldout_loss: float = float("nan")
    """loss on held-out reviews after training (nats per token)"""
    corpus_tokens: int = 0
    """tokens in the training corpus"""
    seconds: float = 0.0


def pretrain(cfg: PretrainConfig | None = None, progress: bool = True) -> PretrainResult:
    from tqdm.auto import tqdm

    cfg = cfg or PretrainConfig()
    set_seed(cfg.seed)
    start = time.perf_counter()
    texts = generate_reviews(cfg.n_reviews + cfg.n_heldout, seed=cfg.seed)
    train_texts, heldout_texts = texts[: cfg.n_reviews], texts[cfg.n_reviews :]
    tokenizer = train_tokenizer(train_texts, cfg.vocab_size)
    train_blocks = pack(tokenizer, train_texts, cfg.block_size)
    heldout_blocks = pack(tokenizer, heldout_texts, cfg.block_size)
    model = make_model(tokenizer, cfg)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    lr_at = lambda s: cfg.lr * min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * s / cfg.steps))
    gen = torch.Generator().manual_seed(cfg.seed)
    result = PretrainResult(model, tokenizer, corpus_tokens=int(train_blocks[:, :-1].numel()))
    model.train()
    for step in tqdm(range(cfg.steps), desc="pretraining", disable=not progress):
        share_cores()
        idx = torch.randint(len(train_blocks), (cfg.batch_size,), generator=gen)
        batch = train_blocks[idx]  # (B, block_size + 1)
        logits = model(batch[:, :-1]).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        result.losses.append(loss.item())
    result.heldout_loss = evaluate_loss(model, heldout_blocks)
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


def save(result: PretrainResult, out: Path, cfg: PretrainConfig, extra: dict | None = None) -> dict:
    """save_pretrained for model and tokenizer, plus summary.json with the figures."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.model.save_pretrained(out)
    result.tokenizer.save_pretrained(out)
    summary = dict(config=asdict(cfg), parameters=sum(p.numel() for p in result.model.parameters()),
                   tokenizer_size=len(result.tokenizer),
                   corpus_reviews=cfg.n_reviews, corpus_tokens=result.corpus_tokens,
                   heldout_loss=round(result.heldout_loss, 4),
                   final_train_loss=round(float(np.mean(result.losses[-50:])), 4),
                   seconds=round(result.seconds, 1), **(extra or {}))
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def write_model_card(out: Path, summary: dict) -> Path:
    """A short README.md beside the weights: how the model was made, its size, its measured figures."""
    c, s, corpus = summary["config"], summary.get("samples_t1", {}), summary.get("corpus", {})
    size_mb = sum(f.stat().st_size for f in Path(out).iterdir() if f.is_file()) / 1e6
    text = f"""# The course's small GPT-2

A `GPT2LMHeadModel` trained from scratch on the course's review language (`rlhf_lib/reviews.py`) by
`python -m rlhf_lib pretrain --out DIR` (code: `rlhf_lib/pretrain.py`), seed {c['seed']}. Load it with
`AutoModelForCausalLM.from_pretrained(DIR)` and `AutoTokenizer.from_pretrained(DIR)`, or `rlhf_lib.lm.load_model()`.

## Size
- {summary['parameters']:,} parameters: {c['n_layer']} layers, width {c['n_embd']}, {c['n_head']} heads, \
context {c['n_positions']} tokens
- tokenizer: byte-level BPE, {summary['tokenizer_size']} tokens (asked for at most {c['vocab_size']}; the corpus \
ran out of merges); `<|endoftext|>` ends a review and also starts one (bos = eos), `<|pad|>` pads (left)
- {size_mb:.1f} MB on disk (safetensors, float32)

## Training
- corpus: {summary['corpus_reviews']:,} generated reviews, {summary['corpus_tokens']:,} tokens, \
packed in blocks of {c['block_size']}
- {c['steps']:,} AdamW steps of {c['batch_size']} blocks, peak learning rate {c['lr']}, warmup {c['warmup']}, \
cosine decay
- wall time {summary['seconds'] / 60:.1f} minutes on 2 CPU cores

## Measured
- held-out loss: {summary['heldout_loss']:.3f} nats per token ({summary['config']['n_heldout']:,} held-out reviews)
- 500 samples at temperature 1.0 from the course prompts: {s.get('grammatical_rate', float('nan')):.1%} grammatical,
  {s.get('positive_rate', float('nan')):.1%} positive by VADER (> 0.05)
- the corpus itself: {corpus.get('positive_rate', float('nan')):.1%} positive, \
{corpus.get('negative_rate', float('nan')):.1%} negative

It knows nothing but this language: ask it about anything else and it writes a film review.
"""
    return write_atomic(Path(out) / "README.md", text)
