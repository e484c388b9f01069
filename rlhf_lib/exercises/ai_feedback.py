"""The exercises of notebook 12 (AI feedback): the references and the test cases."""

from __future__ import annotations

import torch


def ref_swap_debias(forward, backward):
    from rlhf_lib.judge import agreed

    return agreed(forward, backward)


def ref_longer_preferred(forward, backward, longer):
    from rlhf_lib.judge import agreed, hit_shares

    hits = hit_shares(agreed(forward, backward), longer)
    return sum(hits) / len(hits)


def _verdicts(rng, n, tie_share=0.0):
    return [("tie" if rng.random() < tie_share else "ab"[int(rng.integers(0, 2))]) for _ in range(n)]


def swap_debias_cases(rng):
    """Verdicts read as given and read swapped: agreeing, disagreeing, all one letter (a judge that always picks
    the first place flips every verdict), and ties among the readings."""
    cases = [(["a", "b", "a", "b"], ["b", "a", "a", "b"]), (["a"] * 6, ["a"] * 6), (["b", "a"], ["a", "b"])]
    for n, ties in ((10, 0.0), (25, 0.2), (40, 0.1)):
        cases.append((_verdicts(rng, n, ties), _verdicts(rng, n, ties)))
    return cases


def longer_preferred_cases(rng):
    cases = [(["a", "a", "b", "b"], ["b", "a", "a", "b"], ["a", "a", "a", "b"]), (["a"] * 4, ["a"] * 4, list("abab")),
             (["a", "b", "b", "a", "a"], ["b", "a", "a", "a", "b"], ["a", "b", "a", "a", "a"])]  # one tie: 0.7
    for n in (12, 30):
        cases.append((_verdicts(rng, n), _verdicts(rng, n), _verdicts(rng, n)))
    return cases


def ref_plackett_luce_loss(scores, order):
    from rlhf_lib.reward_model import plackett_luce_loss

    return plackett_luce_loss(scores, order)


def plackett_luce_cases(rng):
    """Scores of B prompts' k responses and a ranking of each: k = 2 (Bradley-Terry), 3 and 5, one row whose
    ranking is the reverse of the scores', and large scores (a softmax without its maximum subtracted overflows)."""
    cases = []
    for B, k in ((3, 2), (4, 3), (2, 5)):
        scores = torch.tensor(rng.normal(size=(B, k)).round(3), dtype=torch.float32)
        order = torch.tensor(rng.permuted(torch.arange(k).expand(B, k).numpy(), axis=1), dtype=torch.long)
        cases.append((scores, order))
    cases.append((torch.tensor([[3.0, 1.0, -2.0]]), torch.tensor([[2, 1, 0]])))
    cases.append((torch.tensor([[0.5, -1.0, 2.0]]), torch.tensor([[1, 2, 0]])))  # a cycle: indices and ranks differ
    cases.append((torch.tensor([[200.0, 150.0, 90.0, 100.0]]), torch.tensor([[1, 0, 3, 2]])))
    return cases
