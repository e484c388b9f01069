"""How much a class agrees, corrected for the agreement chance alone would give.

Two students who both say "a" on 70% of pairs agree on 58% of pairs by luck alone
(0.7 * 0.7 + 0.3 * 0.3). Chance-corrected agreement measures how far they are above that:

    kappa = (p_o - p_e) / (1 - p_e)

- `cohens_kappa(x, y)` (from `rlhf_lib/feedback.py`, where notebook 06 uses it): two raters on the same items.
  p_o is the share of items they label alike,
  p_e = sum_c P_x(c) P_y(c) uses each rater's own share of each category c (Cohen 1960).
- `krippendorff_alpha(units)`: any number of raters, any number of labels a unit, missing ones
  allowed (nominal categories). alpha = 1 - D_o / D_e, where D_o is the share of disagreeing
  pairs of values within a unit and D_e the share of disagreeing pairs among all values pooled
  (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"). Units with one value carry
  no information about agreement and are left out.

1 is perfect agreement, 0 is chance, below 0 is systematic disagreement. Both are nan where
chance already explains everything (every label the same category).
"""

from __future__ import annotations

import math
from collections import Counter

from rlhf_lib.feedback import cohens_kappa  # noqa: F401  (one kappa for the notebook and the class)


def krippendorff_alpha(units) -> float:
    """Krippendorff's alpha (nominal) of `units`: one list of the values given to each unit."""
    units = [list(values) for values in units if len(values) >= 2]  # pairable values only
    # coincidences o[c, k]: each ordered pair of values (c, k) from different raters of a unit,
    # weighted 1 / (m_u - 1) so that every unit contributes its m_u values in all
    coincidences: Counter = Counter()
    for values in units:
        m = len(values)
        counts = Counter(values)
        for c in counts:
            for k in counts:
                pairs = counts[c] * (counts[k] - (c == k))
                if pairs:
                    coincidences[c, k] += pairs / (m - 1)
    n_c: Counter = Counter()
    for (c, _), o in coincidences.items():
        n_c[c] += o
    n = sum(n_c.values())
    if n <= 1:
        return math.nan
    observed = sum(o for (c, k), o in coincidences.items() if c != k)  # D_o times n
    expected = (n * n - sum(v * v for v in n_c.values())) / (n - 1)  # D_e times n
    if expected == 0:
        return math.nan
    return 1.0 - observed / expected
