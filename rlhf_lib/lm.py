"""Language models as policies: load, sample, score.

A causal language model is a policy over tokens: the state is the text so far, the
action is the next token, pi(a | s) = softmax(logits / temperature). This module
samples from that policy and returns exactly the log-probabilities of the
distribution it sampled from, so that later the PPO ratio starts at exactly 1.

Shapes: B prompts, P prompt tokens (left-padded), R response tokens (right-padded).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf_lib.runtime import check_count, check_positive
from rlhf_lib.threads import share_cores

COURSE_MODEL = Path(__file__).resolve().parents[1] / "assets" / "model"


# ---- loading


def load_model(name_or_path: str | os.PathLike | None = None, dtype=torch.float32):
    """Return (model, tokenizer) in eval mode. None means the course's small GPT-2 from assets/model;
    otherwise a local folder or a model name ("gpt2") that is in the Hugging Face cache or can be
    downloaded. The tokenizer pads on the left, with a pad token (the end-of-text token if it has none)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = COURSE_MODEL if name_or_path is None else name_or_path
    if name_or_path is not None:
        check_model_source(source, "a causal language model")
    if Path(source).expanduser().is_dir():
        source, local_only = str(Path(source).expanduser()), True
    elif name_or_path is None:
        raise FileNotFoundError(f"the course model is missing from {COURSE_MODEL}; rebuild it with "
                                "`python -m rlhf_lib pretrain --out assets/model` or restore assets/ from git")
    else:
        source, local_only = str(source), False
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as err:
        if local_only:
            raise OSError(f"{source} is a folder but not a saved causal language model "
                          f"(save one with model.save_pretrained and tokenizer.save_pretrained): {err}") from None
        tokenizer, model = _download(source, dtype)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.eval()
    return model, tokenizer


def looks_like_path(name) -> bool:
    """True for names a Hub id can never be: absolute, relative with ./ or ~, or more than one slash."""
    text = str(name)
    return isinstance(name, os.PathLike) or text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def check_model_source(source, kind: str = "a causal language model") -> None:
    """Clear errors for what is certainly not `kind`: a missing folder, a file, a folder without config.json,
    a reward model (sequence classifier) where a causal language model is wanted."""
    path = Path(source).expanduser()
    if path.is_file():
        raise NotADirectoryError(f"{source} is a file, not a model folder")
    if not path.is_dir():
        if looks_like_path(source):
            raise FileNotFoundError(f"no such folder: {source}")
        return  # a Hub name: the loader says whether it is cached or can be downloaded
    config = path / "config.json"
    if not config.is_file():
        raise OSError(f"{source} is a folder but not a saved causal language model (it has no config.json; "
                      "save one with model.save_pretrained and tokenizer.save_pretrained)")
    import json

    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return
    is_classifier = any(a.endswith("ForSequenceClassification") for a in architectures)
    if kind == "a causal language model" and is_classifier:
        raise ValueError(f"{source} holds a reward model (a sequence classifier), not a causal language model: "
                         "pass it as the reward model (--reward-model, load_reward_model), not as the policy")


def context_length(model) -> int | None:
    """The longest sequence (in tokens) the model can read, from its config (None if it does not say)."""
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(getattr(model, "config", None), name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_fits(model, tokenizer, texts, what: str = "text", extra: int = 0) -> None:
    """Raise ValueError if a text, plus `extra` tokens (special tokens, tokens still to come), is longer than
    the model's context, naming the text; checked before any work, instead of an IndexError deep in torch."""
    limit = context_length(model)
    if limit is None or not texts:
        return
    lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    for i, n in enumerate(lengths):
        if n + extra > limit:
            t = texts[i]
            shown = t if len(t) <= 60 else t[:57] + "..."
            raise ValueError(f"{what} {i} is {n} tokens long ({len(t)} characters: {shown!r}); with {extra} more "
                             f"it does not fit the model's context of {limit} tokens")


def _download(name: str, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hint = (f"could not load the model {name!r}: it is not a local folder and not in the Hugging Face cache, "
            "and it could not be downloaded (no internet, or no such model). Offline, use the course model "
            "(load_model() with no argument) or a folder saved with save_pretrained; with internet, check the "
            "name on the Hub and run once to fill the cache.")
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or not _hub_reachable():
        raise OSError(hint)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except Exception as err:  # network errors come in many types; all mean the same to a learner
        raise OSError(f"{hint}\n(the underlying error was "
                      f"{type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
    return tokenizer, model


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick connection test, so an offline learner gets the message in seconds, not after retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# ---- sampling


@dataclass
class Samples:
    prompts: list[str]
    prompt_ids: torch.Tensor
    """(B, P) left-padded prompt tokens, each starting with the beginning-of-text token"""
    prompt_mask: torch.Tensor
    """(B, P) 1 for real prompt tokens"""
    response_ids: torch.Tensor
    """(B, R) sampled tokens, pad after the end-of-text token"""
    response_mask: torch.Tensor
    """(B, R) 1 for tokens the policy chose (the end-of-text token included)"""
    logp: torch.Tensor
    """(B, R) log pi(token | text so far) under the sampling distribution (temperature applied); 0 at pads"""
    responses: list[str]
    """decoded responses, without special tokens"""
    temperature: float
    """the sampling temperature that `logp` includes"""
    eos_id: int
    """the end-of-text token"""
    stop_ids: tuple[int, ...] = ()
    """the tokens that end a response (end-of-text, and sentence ends when stop_at="sentence")"""

    @property
    def texts(self) -> list[str]:
        """prompt + response, the whole review"""
        return [p + r for p, r in zip(self.prompts, self.responses)]

    @property
    def finished(self) -> torch.Tensor:
        """(B,) True where the response ended with a stop token (not cut off at max_new_tokens)"""
        stops = torch.tensor(self.stop_ids or (self.eos_id,))
        return torch.isin(self.response_ids, stops).any(-1)


def encode_prompts(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded (B, P) ids and mask; each prompt starts with the beginning-of-text token."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    ids = [[bos] + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    P = max(len(x) for x in ids)
    prompt_ids = torch.full((len(ids), P), tokenizer.pad_token_id, dtype=torch.long)
    prompt_mask = torch.zeros(len(ids), P, dtype=torch.long)
    for i, x in enumerate(ids):
        prompt_ids[i, P - len(x):] = torch.tensor(x)
        prompt_mask[i, P - len(x):] = 1
    return prompt_ids, prompt_mask


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions 0, 1, 2, ... counted over real tokens only, so left padding does not shift them."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


STOPS = ("text", "sentence")


def stop_ids(tokenizer, stop_at: str = "text") -> tuple[int, ...]:
    """Token ids that end a response: end-of-text; with stop_at="sentence" also every token that ends a
    sentence ("." or "!"), so the response is the rest of the prompt's sentence."""
    if stop_at not in STOPS:
        raise ValueError(f"stop_at must be one of {STOPS}, got {stop_at!r}")
    ids = [tokenizer.eos_token_id]
    if stop_at == "sentence":
        ids += sorted(i for t, i in tokenizer.get_vocab().items()
                      if i != tokenizer.eos_token_id and tokenizer.decode([i]).rstrip().endswith((".", "!")))
    return tuple(ids)


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], max_new_tokens: int = 48, temperature: float = 1.0,
           seed: int | None = None, generator: torch.Generator | None = None, stop_at: str = "text",
           forced_min_tokens: int = 0) -> Samples:
    """Sample one response per prompt from softmax(logits / temperature), stopping at end-of-text
    (stop_at="text") or at the end of the first sentence (stop_at="sentence").

    Plain ancestral sampling, nothing else (no top-k, no forced lengths), so `logp` is the exact
    log-probability of each sampled token under the policy at this temperature. Stopping only decides
    where the response ends; it changes no probability.

    forced_min_tokens > 0 reproduces a known mistake, for notebook 08 only: the stop tokens are banned for
    that many steps but `logp` stays the unconstrained policy's, so it no longer describes the samples."""
    check_count("max_new_tokens", max_new_tokens)
    check_positive("temperature", temperature)
    stops = stop_ids(tokenizer, stop_at)
    if generator is None:
        generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**63)
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = (t.to(device) for t in encode_prompts(tokenizer, prompts))
    limit = context_length(model)
    if limit is not None and prompt_ids.shape[1] + max_new_tokens > limit:
        longest = int(prompt_mask.sum(-1).argmax())
        raise ValueError(f"prompt {longest} is {prompt_ids.shape[1]} tokens (with the begin token); with "
                         f"max_new_tokens={max_new_tokens} a text could reach {prompt_ids.shape[1] + max_new_tokens} "
                         f"tokens, beyond the model's context of {limit}. Shorten the prompt or lower max_new_tokens "
                         f"(at most {max(0, limit - prompt_ids.shape[1])} here)")
    B, eos, pad = len(prompts), tokenizer.eos_token_id, tokenizer.pad_token_id
    stop_tensor = torch.tensor(stops, device=device)
    mask = prompt_mask
    positions = position_ids_from_mask(mask)
    inputs, past = prompt_ids, None
    tokens, logps = [], []
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for step in range(max_new_tokens):
        share_cores()  # cheap: it looks at the other processes at most once a second
        out = model(input_ids=inputs, attention_mask=mask, position_ids=positions, past_key_values=past, use_cache=True)
        past = out.past_key_values
        logp_all = (out.logits[:, -1].float() / temperature).log_softmax(-1)  # (B, V)
        probs = logp_all.exp()
        if step < forced_min_tokens:  # the mistake: sample from a changed distribution, keep the old logp
            probs = probs.index_fill(-1, stop_tensor, 0.0)
        token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(device)  # (B,)
        token = torch.where(done, torch.full_like(token, pad), token)
        logps.append(torch.where(done, torch.zeros(B, device=device), logp_all.gather(-1, token[:, None]).squeeze(-1)))
        tokens.append(token)
        done = done | torch.isin(token, stop_tensor)
        inputs = token[:, None]
        positions = positions[:, -1:] + 1
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=device)], dim=1)
        if done.all():
            break
    response_ids = torch.stack(tokens, 1)  # (B, R)
    response_mask = _response_mask(response_ids, stop_tensor)
    responses = tokenizer.batch_decode(response_ids.masked_fill(response_mask == 0, pad), skip_special_tokens=True)
    return Samples(list(prompts), prompt_ids.cpu(), prompt_mask.cpu(), response_ids.cpu(), response_mask.cpu(),
                   torch.stack(logps, 1).cpu(), responses, temperature, eos, stops)


def _response_mask(response_ids: torch.Tensor, stops) -> torch.Tensor:
    """1 up to and including the first stop token, 0 after it."""
    is_stop = torch.isin(response_ids, torch.as_tensor(stops, device=response_ids.device)).long()
    after_stop = is_stop.cumsum(-1) - is_stop  # > 0 strictly after the first stop token
    return (after_stop == 0).long()


# ---- scoring given responses


def response_logits(model, prompt_ids, prompt_mask, response_ids, response_mask, temperature: float = 1.0):
    """Logits (divided by temperature) that predict each response token: (B, R, V). One forward pass."""
    ids = torch.cat([prompt_ids, response_ids], dim=1)  # (B, P + R)
    mask = torch.cat([prompt_mask, response_mask], dim=1)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask))
    P = prompt_ids.shape[1]
    return out.logits[:, P - 1 : -1].float() / temperature  # position t predicts token t + 1


def response_logprobs(logits: torch.Tensor, response_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """log pi(response token | text so far) from one forward pass over a left-padded prompt + response.

    logits: (B, P + R, V) the model's output for every position (already divided by the temperature);
    response_ids, response_mask: (B, R). Returns (B, R), 0 at pads.
    Position t's logits predict token t + 1, so response token j (at position P + j) is read from
    position P + j - 1: the slice [P - 1, P + R - 1). Left padding keeps P the same for every row."""
    R = response_ids.shape[1]
    P = logits.shape[1] - R
    logp = logits[:, P - 1 : -1].float().log_softmax(-1)  # (B, R, V)
    return logp.gather(-1, response_ids[..., None]).squeeze(-1) * response_mask


def logprobs_of(model, samples_or_ids, *, temperature: float | None = None, gather=response_logprobs) -> torch.Tensor:
    """Recompute log pi(response token | text so far) with one forward pass: (B, R), 0 at pads.

    Pass a `Samples` (its temperature is used unless given) or a tuple
    (prompt_ids, prompt_mask, response_ids, response_mask). `gather(logits, response_ids, response_mask)`
    reads the response tokens' log-probs from the (B, P + R, V) logits (`response_logprobs`, or yours)."""
    if isinstance(samples_or_ids, Samples):
        s = samples_or_ids
        ids = (s.prompt_ids, s.prompt_mask, s.response_ids, s.response_mask)
        temperature = s.temperature if temperature is None else temperature
    else:
        ids = samples_or_ids
    device = next(model.parameters()).device
    prompt_ids, prompt_mask, response_ids, response_mask = (t.to(device) for t in ids)
    mask = torch.cat([prompt_mask, response_mask], dim=1)  # (B, P + R)
    out = model(input_ids=torch.cat([prompt_ids, response_ids], dim=1), attention_mask=mask,
                position_ids=position_ids_from_mask(mask))
    return torch.as_tensor(gather(out.logits.float() / (temperature or 1.0), response_ids, response_mask))


def token_kl(logits: torch.Tensor, logits_ref: torch.Tensor) -> torch.Tensor:
    """Exact KL(pi || pi_ref) between the two next-token distributions at each step, summed over the
    vocabulary: (B, R, V), (B, R, V) -> (B, R). Summed along a sampled response it estimates the
    sequence KL with far less noise than the sampled-token estimators below."""
    logp, logp_ref = logits.log_softmax(-1), logits_ref.log_softmax(-1)
    return (logp.exp() * (logp - logp_ref)).sum(-1)


def kl_estimates(logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """Per-token estimates of KL(pi || pi_ref) from tokens sampled from pi (Schulman's k1, k2, k3).

    With log r = logp_ref - logp:
        k1 = -log r               unbiased, can be negative for one token
        k2 = (log r)^2 / 2        biased, low variance
        k3 = (r - 1) - log r      unbiased, never negative
    Returns (B, R) tensors, zero where mask is 0. Sum over tokens for the KL of a whole response."""
    log_r = logp_ref - logp
    k = {"k1": -log_r, "k2": 0.5 * log_r**2, "k3": torch.expm1(log_r) - log_r}
    if mask is not None:
        k = {name: v * mask for name, v in k.items()}
    return k
