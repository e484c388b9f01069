"""The exercises of notebooks 06-07 (human feedback, reward models): the references, and the checkers of the two
build-it exercises, `label_into` (labels into a file, resuming) and `reward_model_step` (one Bradley-Terry step)."""

from __future__ import annotations

import numpy as np
import torch

# ---- notebook 06


def ref_bradley_terry_prob(score_a, score_b, temperature):
    from rlhf_lib.feedback import sigmoid

    return sigmoid((score_a - score_b) / temperature)


def ref_agreement_rate(choices_x, choices_y):
    both = np.isin(choices_x, ["a", "b"]) & np.isin(choices_y, ["a", "b"])
    return float((np.asarray(choices_x)[both] == np.asarray(choices_y)[both]).mean())


def ref_label_into(path, annotator, pairs):
    from rlhf_lib.feedback import label_into

    return label_into(path, annotator, pairs)


LABEL_CHECK_PAIRS = (("The plot was", " wonderful.", " dull."), ("I expected", " more.", " a delightful film."),
                     ("The music was", " fine.", " loud and awful."), ("Overall,", " a charming film.", " a film."),
                     ("The acting was", " bold.", " stiff and boring."), ("The ending was", " sad.", " moving."))
"""the (prompt, a, b) triples `compare_label_into` labels"""


def compare_label_into(fn) -> str | None:
    """None if fn(path, annotator, pairs) -> count labels like `label_into`: into an empty file, and again
    over a file that already holds the first pairs (it must resume, not label them twice). Otherwise what
    differs. The annotator is seeded the same way for both, so the same calls give the same choices."""
    import tempfile
    from pathlib import Path

    from rlhf_lib.feedback import SimulatedAnnotator, label_into, read_records

    keys = ("prompt", "completion_a", "completion_b", "choice", "annotator")
    for case, done in (("an empty file", 0), ("a file that already holds the first 3 pairs", 3)):
        runs = []
        for f in (fn, label_into):  # yours first: an unfinished one stops at once
            path = Path(tempfile.mkdtemp(prefix="labels_")) / "labels.jsonl"
            if done:
                label_into(path, SimulatedAnnotator(0.1, seed=5, name="checker"), LABEL_CHECK_PAIRS[:done])
            added = f(path, SimulatedAnnotator(0.1, seed=6, name="checker"), list(LABEL_CHECK_PAIRS))
            runs.append((added, [tuple(r.get(k) for k in keys) for r in read_records(path, allow_empty=True)]))
        (added_got, got), (added_want, want) = runs
        if len(got) != len(want):
            return (f"with {case}: the file ends with {len(got)} records, expected {len(want)}"
                    + (" (skip the pairs already in the file)" if len(got) > len(want) else ""))
        for i, (w, g) in enumerate(zip(want, got)):
            if w != g:
                field_name = next(k for k, x, y in zip(keys, w, g) if x != y)
                return (f"with {case}: record {i + 1}'s {field_name} is {g[keys.index(field_name)]!r}, "
                        f"expected {w[keys.index(field_name)]!r}")
        if added_got != added_want:
            return f"with {case}: return how many records you added ({added_want}), got {added_got!r}"
    return None


# ---- notebook 07


def ref_bt_loss(r_chosen, r_rejected):
    from rlhf_lib.reward_model import bradley_terry_loss

    return float(bradley_terry_loss(torch.tensor(r_chosen), torch.tensor(r_rejected)))


def ref_last_real_index(mask):
    from rlhf_lib.reward_model import last_token_index

    return int(last_token_index(torch.tensor([mask]))[0])


def ref_reward_model_step(model, tokenizer, pairs, opt):
    from rlhf_lib.reward_model import reward_model_step

    return reward_model_step(model, tokenizer, pairs, opt)


CHECK_PAIRS = [dict(prompt="The plot was", chosen=" superb.", rejected=" dull and far too long."),
               dict(prompt="Overall,", chosen=" a moving film.", rejected=" a mess."),
               dict(prompt="The music was", chosen=" not bad at all.", rejected=" awful."),
               dict(prompt="I expected", chosen=" little, and it was wonderful.", rejected=" more."),
               dict(prompt="The acting was", chosen=" very good.", rejected=" clumsy, but the ending was fine."),
               dict(prompt="The dialogue was", chosen=" sharp!", rejected=" flat."),
               dict(prompt="The pacing was", chosen=" perfect.", rejected=" not good."),
               dict(prompt="The visuals were", chosen=" gorgeous.", rejected=" ugly.")]
"""the preference pairs `compare_reward_model_step` trains on"""


def compare_reward_model_step(fn) -> str | None:
    """None if fn(model, tokenizer, pairs, opt) -> (loss, r_chosen, r_rejected) trains a reward model like
    `reward_model_step` for three steps (same returns within a relative 1e-4, same weights within 1e-5);
    otherwise what differs. Dropout is off here, so the order of the forward passes does not matter."""
    import copy

    from rlhf_lib.reward_model import make_reward_model, reward_model_step

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base, tokenizer = make_reward_model()
    base.eval()
    base.score.weight.data *= 30.0  # large gradients, so that clipping them matters
    batches = [CHECK_PAIRS[:4], CHECK_PAIRS[4:], CHECK_PAIRS[:4]]
    runs = []
    for step in (fn, reward_model_step):  # yours first: an unfinished one stops at once
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)  # plain steps: a missed clip shows, rounding does not grow
        runs.append((model, [step(model, tokenizer, b, opt) for b in batches]))
    (model_got, got), (model_want, want) = runs
    for i, (w, g) in enumerate(zip(want, got)):
        if not isinstance(g, (tuple, list)) or len(g) != 3:
            return "return a tuple (loss, r_chosen, r_rejected)"
        for name, a, b in zip(("r_chosen", "r_rejected", "loss"), w[1:] + w[:1], tuple(g[1:]) + tuple(g[:1])):
            b = torch.as_tensor(b).detach().float()
            if b.shape != a.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
                where = ("" if i == 0 else " Step 1 agreed, so the update differs: zero the gradients, backward, "
                         "clip the gradient norm to 1, then the optimizer's step.")
                show = lambda x: [round(v, 4) for v in x.reshape(-1).tolist()]
                return f"step {i + 1}: {name} expected {show(a)}, got {show(b)}.{where}"
    with torch.no_grad():
        gap = max(float((p - q).abs().max()) for p, q in zip(model_want.parameters(), model_got.parameters()))
    if gap > 1e-5:
        return f"after {len(batches)} steps the weights differ by up to {gap:.2e}: did the last step update them?"
    return None
