"""The exercises of notebook 11 (closing the loop): the references and the test cases."""

from __future__ import annotations

WORDS = ["The plot was great.", "The plot was dull.", "I loved it.", "I loved it.", "What a", "Nine out of ten.",
         "The acting was superb!", "It was fine."]


def ref_pairs_from_samples(starts, a, b, finished_a, finished_b):
    from rlhf_lib.whole_reviews import pairs_from_samples

    return pairs_from_samples(starts, a, b, finished_a, finished_b)


def pairs_from_samples_cases(rng):
    """Batches of two samples a start with identical pairs, cut-off reviews, and both at once among them."""
    cases = []
    for n in (1, 4, 12, 30):
        starts = [["", "The plot was", "What a"][int(i)] for i in rng.integers(0, 3, size=n)]
        a = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), size=n)]
        b = [WORDS[int(i)] for i in rng.integers(0, len(WORDS), size=n)]
        cases.append((starts, a, b, [bool(x) for x in rng.random(n) > 0.2], [bool(x) for x in rng.random(n) > 0.2]))
    starts = ["", "I", "The plot was"]
    cases.append((starts, [" x.", " y.", " z."], [" x.", " w.", " q."], [True, False, True], [True, True, True]))
    return cases


def ref_mix_old_and_new(old_groups, new_pairs, per_step):
    from rlhf_lib.loop import mix_old_and_new

    return mix_old_and_new(old_groups, new_pairs, per_step)


def mix_cases(rng):
    def pair(i):
        return dict(prompt="", chosen=f"good {i}.", rejected=f"bad {i}.")

    cases = []
    for n_old, n_new, per_step in ((3, 5, 2), (4, 64, 32), (2, 7, 3), (5, 0, 4), (0, 9, 4)):
        old = [[pair(100 * g + j) for j in range(int(rng.integers(0, 4)))] for g in range(n_old)]
        cases.append((old, [pair(i) for i in range(n_new)], per_step))
    return cases
