"""Best-of-n: the simplest way to optimise a reward, and what it costs in KL and in gold reward.

Sample n responses from the base policy, keep the one the proxy (the learned reward model) scores
highest. No training; the only knob is n, and the price is the distance from the base policy:

    KL(best-of-n || base) <= log n - (n - 1) / n,

with equality when no response can repeat (a continuous score: the winner's quantile u has density
n u^(n-1)). Short reviews do repeat, and then the true KL is smaller; `empirical_kl` measures it.

From one pool of N samples of a prompt (proxy and gold score of each), `best_of_n_expected` gives the
expected gold score of best-of-n for every n <= N without drawing: sort the pool by proxy; when n are
drawn without replacement, the i-th lowest of N wins with probability C(i-1, n-1) / C(N, n).

Gao et al. (2022) found gold reward against d = sqrt(KL) follows, measured from the base policy (R(0) = 0),

    best-of-n   R(d) = d (alpha - beta d)          peak at d* = alpha / (2 beta)
    RL          R(d) = d (alpha - beta log d)      peak at d* = exp(alpha / beta - 1)

`fit_gao` fits alpha and beta by least squares and predicts the peak.

Ties in the proxy: a tied response wins as often as each other tied one (ties broken by a fair coin),
so every figure here depends only on the scores, never on the order of the pool.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

FORMS = ("bon", "rl")


def best_of_n_kl(n) -> np.ndarray | float:
    """The analytic KL(best-of-n || base) in nats, log n - (n - 1) / n: exact for a continuous score, an upper
    bound otherwise (Beirami et al. 2024). n may be an array."""
    n_arr = np.asarray(n, dtype=float)
    if np.any(n_arr < 1) or np.any(n_arr != np.round(n_arr)):
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    kl = np.log(n_arr) - (n_arr - 1) / n_arr
    return float(kl) if kl.ndim == 0 else kl


def _log_comb(a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """log C(a, n) for whole numbers 0 <= n, a; -inf where a < n."""
    a, n = np.broadcast_arrays(np.asarray(a).astype(np.int64), np.asarray(n).astype(np.int64))
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, max(int(a.max()), 1) + 1)))])  # log k!
    ok = a >= n
    out = np.full(a.shape, -np.inf)
    out[ok] = log_fact[a[ok]] - log_fact[n[ok]] - log_fact[a[ok] - n[ok]]
    return out


def _tie_groups(proxy: np.ndarray):
    """Distinct proxy values in ascending order, and for each the pool indices holding it."""
    values, inverse = np.unique(proxy, return_inverse=True)
    return values, [np.flatnonzero(inverse == g) for g in range(len(values))]


def best_of_n_expected(proxy, gold, n=None) -> np.ndarray | float:
    """Expected gold score of the response with the highest proxy score among n drawn without replacement
    from one prompt's pool of N samples. n: an int, an array of ints, or None for every n = 1..N (array).

    Exact, no sampling: the pool's highest-proxy group among the n drawn is the group with proxy value v
    with probability [C(L + m, n) - C(L, n)] / C(N, n) (m responses at v, L below it), and within a group
    each tied response is equally likely to win, so the group contributes its mean gold score."""
    proxy, gold = np.asarray(proxy, dtype=float), np.asarray(gold, dtype=float)
    if proxy.ndim != 1 or proxy.shape != gold.shape or len(proxy) == 0:
        raise ValueError(f"proxy and gold must be two non-empty lists of the same length, got shapes "
                         f"{proxy.shape} and {gold.shape}")
    if not (np.isfinite(proxy).all() and np.isfinite(gold).all()):
        raise ValueError("proxy and gold scores must be finite numbers")
    N = len(proxy)
    scalar = n is not None and np.ndim(n) == 0
    ns = np.arange(1, N + 1) if n is None else np.atleast_1d(np.asarray(n))
    if np.any(ns < 1) or np.any(ns > N) or np.any(ns != np.round(ns)):
        raise ValueError(f"n must be a whole number from 1 to the pool size {N}, got {n!r}")
    ns = ns.astype(float)
    _, groups = _tie_groups(proxy)
    sizes = np.array([len(g) for g in groups], dtype=float)  # (G,) m per group, ascending proxy
    below = np.concatenate([[0.0], np.cumsum(sizes)[:-1]])  # (G,) L per group
    mean_gold = np.array([gold[g].mean() for g in groups])  # (G,)
    log_total = _log_comb(np.full_like(ns, N), ns)[:, None]  # (K, 1)
    upto = np.exp(_log_comb((below + sizes)[None, :], ns[:, None]) - log_total)  # (K, G) P(max <= group)
    under = np.exp(_log_comb(below[None, :], ns[:, None]) - log_total)  # (K, G) P(max < group)
    expected = (upto - under) @ mean_gold  # (K,)
    return float(expected[0]) if scalar else expected


def best_of_n_distribution(texts, proxy, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(distinct texts, base probabilities p, best-of-n probabilities q): p is the pool's empirical
    distribution over distinct texts (counts / N); q is exactly the distribution of the best of n
    independent draws from p. With F the base probability of a proxy score at most v,

        P(the winner's proxy is v) = F(v)^n - F(v-)^n,

    shared among the texts with proxy v in proportion to p (the fair-coin tie rule). A repeated text's
    scores must agree to 1e-4 (relative); their mean is used."""
    texts = list(texts)
    proxy = np.asarray(proxy, dtype=float)
    if len(texts) != len(proxy) or not texts:
        raise ValueError(f"texts and proxy must be two non-empty lists of the same length, "
                         f"got {len(texts)} and {len(proxy)}")
    if isinstance(n, bool) or not float(n).is_integer() or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    seen = {}
    for t, s in zip(texts, proxy):
        seen.setdefault(t, []).append(s)
    score = {}
    for t, s in seen.items():  # batched scoring can differ in the last digits; more than that is a mistake
        if max(s) - min(s) > 1e-4 * (1 + abs(max(s))):
            raise ValueError(f"the text {t!r} has two different proxy scores ({min(s)} and {max(s)}); "
                             "a repeated text must score the same")
        score[t] = float(np.mean(s))
    counts = Counter(texts)
    distinct = sorted(counts, key=lambda t: (score[t], t))
    p = np.array([counts[t] for t in distinct], dtype=float) / len(texts)
    values, groups = _tie_groups(np.array([score[t] for t in distinct]))
    q = np.zeros_like(p)
    F_below = 0.0
    for g in groups:
        p_group = p[g].sum()
        F_upto = F_below + p_group
        q[g] = (F_upto**n - F_below**n) * p[g] / p_group
        F_below = F_upto
    return distinct, p, q


def empirical_kl(texts, proxy, n: int) -> float:
    """Plug-in estimate of KL(best-of-n || base) in nats from a pool of samples of the base policy that may
    repeat: KL(q || p) of `best_of_n_distribution`. Without repeats it is close to best_of_n_kl(n) for a
    large pool; with repeats it is below it."""
    _, p, q = best_of_n_distribution(texts, proxy, n)
    keep = q > 0
    return float(np.sum(q[keep] * np.log(q[keep] / p[keep])))


# ---- Gao et al.'s functional forms


def gao_curve(d, alpha: float, beta: float, form: str = "bon") -> np.ndarray:
    """R(d) of the chosen form at d = sqrt(KL) (d log d is 0 at d = 0)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    d = np.asarray(d, dtype=float)
    if form == "bon":
        return d * (alpha - beta * d)
    return d * alpha - beta * _d_log_d(d)


def _d_log_d(d: np.ndarray) -> np.ndarray:
    return np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)


def fit_gao(d, gold_gain, form: str = "bon") -> dict:
    """Least-squares fit of R(d) = d (alpha - beta d) (form="bon") or d (alpha - beta log d) (form="rl").

    d: sqrt(KL to the base policy) per point; gold_gain: gold score minus the base policy's (R(0) = 0).
    Returns alpha, beta, and the predicted peak: d_peak, kl_peak = d_peak^2 and R_peak (inf when beta <= 0:
    the fitted curve never turns down)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    d, y = np.asarray(d, dtype=float), np.asarray(gold_gain, dtype=float)
    if d.ndim != 1 or d.shape != y.shape or len(d) < 2:
        raise ValueError(f"d and gold_gain must be two lists of the same length, at least 2, "
                         f"got {d.shape} and {y.shape}")
    if np.any(d < 0) or not (np.isfinite(d).all() and np.isfinite(y).all()):
        raise ValueError("d (the square root of a KL) must be finite and >= 0, and gold_gain finite")
    second = d**2 if form == "bon" else _d_log_d(d)
    X = np.stack([d, -second], axis=1)  # (K, 2): R = alpha d - beta * (d^2 or d log d)
    (alpha, beta), *_ = np.linalg.lstsq(X, y, rcond=None)
    alpha, beta = float(alpha), float(beta)
    if beta <= 0:
        d_peak = r_peak = math.inf
    elif form == "bon":
        d_peak, r_peak = alpha / (2 * beta), alpha**2 / (4 * beta)
    else:
        d_peak = math.exp(alpha / beta - 1)
        r_peak = beta * d_peak  # d (alpha - beta log d) at log d = alpha / beta - 1
    return dict(form=form, alpha=alpha, beta=beta, d_peak=d_peak, kl_peak=d_peak**2, R_peak=r_peak)


# ---- many prompts


def best_of_n_curve(pools, ns, expected=best_of_n_expected) -> dict:
    """Best-of-n against n, averaged over prompts. pools: one (texts, proxy, gold) per prompt, each a pool of
    samples of the base policy for that prompt; ns: the n to report (each at most the smallest pool).
    expected(proxy, gold, n) -> the expected score of best-of-n from one pool (a learner's estimator can
    stand in for `best_of_n_expected`).
    Returns arrays over ns: kl_bound, kl_empirical (mean over prompts), d = sqrt(kl_empirical), proxy and
    gold (expected scores of best-of-n), and gold_gain = gold - gold at n = 1."""
    ns = np.asarray(list(ns), dtype=int)
    pools = list(pools)
    if not pools:
        raise ValueError("no pools: give one (texts, proxy, gold) per prompt")
    kl, proxy_mean, gold_mean = [], [], []
    for texts, proxy, gold in pools:
        kl.append([empirical_kl(texts, proxy, int(n)) for n in ns])
        proxy_mean.append([expected(proxy, proxy, int(n)) for n in ns])
        gold_mean.append([expected(proxy, gold, int(n)) for n in ns])
    kl_empirical = np.mean(kl, axis=0)
    gold = np.mean(gold_mean, axis=0)
    base_gold = np.mean([np.mean(g) for _, _, g in pools])
    return dict(n=ns, kl_bound=best_of_n_kl(ns), kl_empirical=kl_empirical, d=np.sqrt(kl_empirical),
                proxy=np.mean(proxy_mean, axis=0), gold=gold, gold_gain=gold - base_gold)
