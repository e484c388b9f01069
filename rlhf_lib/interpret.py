"""Looking inside a reward model, in the one world where what it finds can be checked: the taste is VADER's
lexicon, so every attribution can be held against the valence a word really has.

- `leave_one_out`: each token's effect on the reward, the reward of the text minus the reward of the text
  without that token (one forward pass for all the deletions).
- `integrated_gradients` (Sundararajan et al. 2017): each token's share of the reward's change along the
  straight path from a baseline (the text's token embeddings set to zero, the begin and end tokens kept) to the
  text; the shares add up to that change (completeness), up to the error of `steps` points on the path.
- `word_attributions` and `lexicon_agreement`: attributions averaged per word over many reviews, and their rank
  correlation (Spearman) with VADER's lexicon.
- `probe_layers`: how well a linear probe reads a label (positive or not, broken or not) off each layer's mean
  hidden state, on held-out reviews.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhf_lib.reward_model import encode_ids, raw_rewards


def _words(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.decode([i]).strip() for i in ids]


@torch.no_grad()
def leave_one_out(model, tokenizer, text: str) -> list[tuple[str, float]]:
    """(token, effect) for each token of `text`: raw reward of the text minus raw reward without that token."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the text is empty")
    rows = [ids] + [ids[:i] + ids[i + 1 :] for i in range(len(ids))]
    batch_ids, mask = encode_ids(tokenizer, rows)
    r = raw_rewards(model.eval(), batch_ids, mask)
    return list(zip(_words(tokenizer, ids), (r[0] - r[1:]).tolist()))


def integrated_gradients(model, tokenizer, text: str, steps: int = 32) -> tuple[list[tuple[str, float]], dict]:
    """(token, attribution) for each token of `text`, and a check: the attributions' sum, the reward's change
    from the baseline to the text, and their gap. Attribution_i = (x_i - baseline_i) . mean over the path of
    d reward / d x_i, the path's points at the midpoints of `steps` equal pieces."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("the text is empty")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    model.eval()
    one, mask = encode_ids(tokenizer, [ids])  # (1, T): begin, the text, end
    x = model.transformer.wte(one).detach()  # (1, T, d)
    baseline = x.clone()
    baseline[:, 1:-1] = 0.0  # the text's tokens to zero; the begin and end tokens stay
    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    path = (baseline + alphas[:, None, None] * (x - baseline)).requires_grad_(True)  # (steps, T, d)
    reward = raw_rewards(model, one.expand(steps, -1), mask.expand(steps, -1), inputs_embeds=path)
    (grad,) = torch.autograd.grad(reward.sum(), path)
    attribution = ((x - baseline)[0] * grad.mean(0)).sum(-1)[1:-1]  # (len(ids),)
    with torch.no_grad():
        ends = raw_rewards(model, one.expand(2, -1), mask.expand(2, -1), inputs_embeds=torch.cat([baseline, x]))
    change = float(ends[1] - ends[0])
    total = float(attribution.sum())
    return list(zip(_words(tokenizer, ids), attribution.tolist())), dict(sum=total, change=change, gap=total - change)


def word_attributions(model, tokenizer, texts: list[str], method: str = "leave_one_out", steps: int = 16) -> dict:
    """token -> mean attribution over every time it appears in `texts` (`leave_one_out` or
    `integrated_gradients`), lowercased ("Great" and "great" are one entry). In the course's tokenizer a word of
    the language is one token."""
    if method not in ("leave_one_out", "integrated_gradients"):
        raise ValueError(f"method must be 'leave_one_out' or 'integrated_gradients', got {method!r}")
    totals: dict[str, list[float]] = {}
    for text in texts:
        pairs = leave_one_out(model, tokenizer, text) if method == "leave_one_out" else \
            integrated_gradients(model, tokenizer, text, steps)[0]
        for word, value in pairs:
            totals.setdefault(word.lower(), []).append(value)
    return {w: float(np.mean(v)) for w, v in totals.items()}


def ranks(x) -> np.ndarray:
    """Ranks 1..n of the values, ties sharing the mean of their ranks."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for value in np.unique(x):
        same = x == value
        r[same] = r[same].mean()
    return r


def spearman(x, y) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks (ties at their mean rank)."""
    rx, ry = ranks(x), ranks(y)
    if len(rx) != len(ry) or len(rx) < 3:
        raise ValueError("need two equally long lists of at least 3 values")
    return float(np.corrcoef(rx, ry)[0, 1])


def lexicon_agreement(attributions: dict, top: int = 8) -> dict:
    """How the per-word attributions rank against VADER's lexicon: Spearman's correlation over the words in both,
    and the `top` words the model credits most and blames most, each with its lexicon valence (0 for a word the
    lexicon does not know)."""
    from rlhf_lib.evaluate import _vader

    lexicon = _vader().lexicon
    words = [w for w in attributions if w.lower() in lexicon]
    if len(words) < 3:
        raise ValueError("fewer than 3 attributed words are in VADER's lexicon")
    order = sorted(attributions, key=attributions.get)
    show = [dict(word=w, attribution=attributions[w], valence=lexicon.get(w.lower(), 0.0)) for w in order]
    return dict(spearman=spearman([attributions[w] for w in words], [lexicon[w.lower()] for w in words]),
                n_words=len(words), credited=show[::-1][:top], blamed=show[:top])


@torch.no_grad()
def layer_means(model, tokenizer, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """(layers + 1, N, d): each text's hidden state averaged over its tokens, after the embeddings and after each
    block, of a causal LM or a reward model."""
    from rlhf_lib.lm import position_ids_from_mask

    body = getattr(model, "transformer", model)
    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = encode_ids(tokenizer, [tokenizer(t, add_special_tokens=False)["input_ids"]
                                           for t in texts[i : i + batch_size]])
        hidden = body(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                      output_hidden_states=True).hidden_states
        m = mask[None, :, :, None].float()
        out.append(((torch.stack(hidden) * m).sum(2) / m.sum(2)).numpy())
    return np.concatenate(out, axis=1)


def probe_layers(features: np.ndarray, labels, train_share: float = 0.7, ridge: float = 1.0,
                 seed: int = 0) -> list[float]:
    """Held-out accuracy of a linear probe on each layer: `features` (layers, N, d), `labels` (N,) of 0/1. The
    texts are shuffled (`seed`); the first `train_share` of them fit a ridge regression of the label (+1/-1) on
    the standardised features, the rest are classified by its sign."""
    y = np.where(np.asarray(labels) > 0, 1.0, -1.0)
    n = len(y)
    if features.ndim != 3 or features.shape[1] != n:
        raise ValueError(f"features must be (layers, N, d) with N = {n} labels, got shape {features.shape}")
    cut = int(train_share * n)
    if cut < 2 or cut >= n:
        raise ValueError(f"need texts to fit and to test the probe, got {n} with train_share={train_share}")
    order = np.random.default_rng(seed).permutation(n)
    features, y = features[:, order], y[order]
    if len(set(y[:cut])) < 2:
        raise ValueError("the probe's training texts hold one label only; give texts of both labels")
    accuracies = []
    for layer in features:
        mean, std = layer[:cut].mean(0), layer[:cut].std(0) + 1e-6
        z = (layer - mean) / std
        x = np.hstack([z, np.ones((n, 1))])
        w = np.linalg.solve(x[:cut].T @ x[:cut] + ridge * np.eye(x.shape[1]), x[:cut].T @ y[:cut])
        accuracies.append(float((np.sign(x[cut:] @ w) == y[cut:]).mean()))
    return accuracies
