"""Best-of-n: the expected gold score equals a brute-force average over every n-subset, the analytic KL equals
an exact computation without repeats, the empirical KL equals brute-force enumeration of draws and stays under
the bound with repeats, and Gao et al.'s fits recover the curves they were made from."""

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from rlhf_lib.bon import (
    best_of_n_curve,
    best_of_n_distribution,
    best_of_n_expected,
    best_of_n_kl,
    empirical_kl,
    fit_gao,
    gao_curve,
)


def brute_force_expected(proxy, gold, n):
    """Average over every n-subset of the gold score of its best-proxy member (tied best: their mean)."""
    values = []
    for subset in itertools.combinations(range(len(proxy)), n):
        top = max(proxy[i] for i in subset)
        winners = [i for i in subset if proxy[i] == top]
        values.append(np.mean([gold[i] for i in winners]))
    return float(np.mean(values))


@pytest.mark.parametrize("ties", [False, True])
def test_expected_gold_equals_brute_force_over_subsets(ties):
    rng = np.random.default_rng(3)
    N = 9
    proxy = rng.integers(0, 4, N).astype(float) if ties else rng.normal(size=N)
    gold = rng.normal(size=N)
    assert (len(set(proxy)) < N) == ties
    every = best_of_n_expected(proxy, gold)
    assert every.shape == (N,)
    for n in range(1, N + 1):
        want = brute_force_expected(proxy, gold, n)
        assert best_of_n_expected(proxy, gold, n) == pytest.approx(want, abs=1e-12)
        assert every[n - 1] == pytest.approx(want, abs=1e-12)
    assert every[0] == pytest.approx(gold.mean())  # n = 1 is the base policy
    assert every[-1] == pytest.approx(gold[proxy == proxy.max()].mean())  # n = N is the pool's best


def test_expected_gold_does_not_depend_on_pool_order():
    proxy = np.array([1.0, 2.0, 2.0, 0.0, 2.0, 1.0])
    gold = np.array([0.1, 0.5, -0.3, 0.2, 0.9, 0.0])
    perm = [4, 0, 5, 2, 3, 1]
    np.testing.assert_allclose(best_of_n_expected(proxy, gold), best_of_n_expected(proxy[perm], gold[perm]))


def test_kl_bound_equals_the_continuous_case_and_a_large_uniform_support():
    # continuous score: the winner's quantile u has density n u^(n-1); KL = E[log(n u^(n-1))] by quadrature
    u = (np.arange(200_000) + 0.5) / 200_000  # midpoint rule on (0, 1)
    for n in (1, 2, 4, 16, 64):
        log_density = math.log(n) + (n - 1) * np.log(u)
        quadrature = np.mean(np.exp(log_density) * log_density)
        assert best_of_n_kl(n) == pytest.approx(quadrature, abs=1e-4)
    # uniform support of M distinct responses: q_i = (i/M)^n - ((i-1)/M)^n, enumerated
    M = 100_000
    i = np.arange(1, M + 1)
    for n in (2, 8, 32):
        q = (i / M) ** n - ((i - 1) / M) ** n
        kl = np.sum(q[q > 0] * np.log(q[q > 0] * M))
        assert kl == pytest.approx(best_of_n_kl(n), abs=1e-3) and kl <= best_of_n_kl(n)
    np.testing.assert_allclose(best_of_n_kl(np.array([1, 2])), [0.0, math.log(2) - 0.5])


def brute_force_distribution(texts, proxy, n):
    """Enumerate all N^n ordered draws with replacement from the pool; the winner is a best-proxy draw, each
    tied best draw with equal share. Returns {text: probability}."""
    q = Counter()
    N = len(texts)
    for draw in itertools.product(range(N), repeat=n):
        top = max(proxy[i] for i in draw)
        winners = [i for i in draw if proxy[i] == top]
        for i in winners:
            q[texts[i]] += 1.0 / len(winners) / N**n
    return q


def test_best_of_n_distribution_equals_enumeration_with_repeats_and_ties():
    texts = ["a", "b", "a", "c", "d", "b", "a", "e"]
    score = {"a": 0.5, "b": 1.0, "c": 1.0, "d": -2.0, "e": 3.0}  # b and c tie
    proxy = [score[t] for t in texts]
    for n in (1, 2, 3, 4):
        distinct, p, q = best_of_n_distribution(texts, proxy, n)
        want = brute_force_distribution(texts, proxy, n)
        for t, qi in zip(distinct, q):
            assert qi == pytest.approx(want[t], abs=1e-12), (n, t)
        assert q.sum() == pytest.approx(1.0)
        counts = Counter(texts)
        np.testing.assert_allclose(p, [counts[t] / len(texts) for t in distinct])
        kl = sum(want[t] * math.log(want[t] / (counts[t] / len(texts))) for t in want if want[t] > 0)
        assert empirical_kl(texts, proxy, n) == pytest.approx(kl, abs=1e-12)


@pytest.mark.slow
def test_empirical_kl_without_repeats_approaches_the_bound_and_with_repeats_is_below():
    rng = np.random.default_rng(0)
    N = 20_000
    texts = [f"review {i}" for i in range(N)]
    proxy = rng.normal(size=N)
    weights = 0.7 ** np.arange(20)  # a short language: 20 texts, a few of them common
    repeated = [f"review {i}" for i in rng.choice(20, N, p=weights / weights.sum())]
    score = dict(zip((f"review {i}" for i in range(20)), rng.normal(size=20)))
    for n in (2, 4, 16, 64):
        assert empirical_kl(texts, proxy, n) == pytest.approx(best_of_n_kl(n), abs=0.02)
        assert empirical_kl(texts, proxy, n) <= best_of_n_kl(n)
        assert empirical_kl(repeated, [score[t] for t in repeated], n) < best_of_n_kl(n) - 0.005
    # with repeats the KL saturates: best-of-n tends to always returning the top-proxy text, KL -> -log p(top)
    top = max(score, key=score.get)
    ceiling = -math.log(repeated.count(top) / N)
    assert empirical_kl(repeated, [score[t] for t in repeated], 256) == pytest.approx(ceiling, abs=1e-3)
    assert ceiling < best_of_n_kl(256) - 2  # the bound keeps growing like log n
    assert empirical_kl(texts, proxy, 1) == pytest.approx(0.0, abs=1e-12)


def test_inconsistent_scores_and_bad_n_are_refused():
    with pytest.raises(ValueError, match="two different proxy scores"):
        empirical_kl(["a", "a"], [1.0, 2.0], 2)
    # scores that differ in the last digits (batched scoring) are the same score
    assert empirical_kl(["a", "a", "b"], [1.0, 1.0 + 1e-7, 0.0], 3) == pytest.approx(
        empirical_kl(["a", "a", "b"], [1.0, 1.0, 0.0], 3))
    with pytest.raises(ValueError, match="pool size"):
        best_of_n_expected([1.0, 2.0], [0.0, 1.0], 3)
    with pytest.raises(ValueError, match="same length"):
        best_of_n_expected([1.0, 2.0], [0.0], 1)
    with pytest.raises(ValueError, match="n must be"):
        best_of_n_kl(0)


@pytest.mark.parametrize("form,alpha,beta", [("bon", 1.2, 0.35), ("rl", 0.9, 0.6)])
def test_fits_recover_alpha_beta_and_the_peak_from_noisy_curves(form, alpha, beta):
    rng = np.random.default_rng(1)
    d = np.sqrt(np.linspace(0.0, 30.0, 60))
    gain = gao_curve(d, alpha, beta, form) + rng.normal(0.0, 0.01, d.shape)
    fit = fit_gao(d, gain, form)
    assert fit["alpha"] == pytest.approx(alpha, rel=0.03) and fit["beta"] == pytest.approx(beta, rel=0.03)
    grid = np.linspace(1e-6, 20, 2_000_001)  # the peak, found numerically on the true curve
    curve = gao_curve(grid, alpha, beta, form)
    d_star, r_star = grid[curve.argmax()], curve.max()
    assert fit["d_peak"] == pytest.approx(d_star, rel=0.05) and fit["R_peak"] == pytest.approx(r_star, rel=0.05)
    assert fit["kl_peak"] == pytest.approx(fit["d_peak"] ** 2)
    # the other form fits the same points worse
    other = fit_gao(d, gain, "rl" if form == "bon" else "bon")
    residual = lambda f: np.sum((gao_curve(d, f["alpha"], f["beta"], f["form"]) - gain) ** 2)
    assert residual(fit) < residual(other)


def test_gao_forms_are_the_papers():
    # best-of-n: d (alpha - beta d); RL: d (alpha - beta log d)
    assert gao_curve(2.0, 1.0, 0.25, "bon") == pytest.approx(2.0 * (1.0 - 0.25 * 2.0))
    assert gao_curve(2.0, 1.0, 0.25, "rl") == pytest.approx(2.0 * (1.0 - 0.25 * math.log(2.0)))
    assert gao_curve(0.0, 1.0, 0.25, "rl") == 0.0


def test_curve_over_prompts_averages_the_brute_force_figures():
    pools = [(["a", "b", "a", "c", "d"], [0.2, 1.0, 0.2, 1.0, -1.0], [0.1, 0.9, 0.3, 0.4, -0.5]),
             (["x", "y", "z", "x", "w"], [2.0, 0.0, 1.0, 2.0, 0.5], [1.0, 0.0, 0.2, 0.8, 0.1])]
    curve = best_of_n_curve(pools, [1, 2, 3])
    for k, n in enumerate([1, 2, 3]):
        gold = np.mean([brute_force_expected(p, g, n) for _, p, g in pools])
        kls = []
        for texts, proxy, _ in pools:
            q, counts = brute_force_distribution(texts, proxy, n), Counter(texts)
            kls.append(sum(v * math.log(v / (counts[t] / len(texts))) for t, v in q.items() if v > 0))
        assert curve["gold"][k] == pytest.approx(gold, abs=1e-12)
        assert curve["kl_empirical"][k] == pytest.approx(np.mean(kls), abs=1e-12)
        assert curve["gold_gain"][k] == pytest.approx(gold - np.mean([np.mean(g) for _, _, g in pools]), abs=1e-12)
    assert curve["kl_empirical"][0] == pytest.approx(0.0, abs=1e-12)
    assert (curve["kl_empirical"] <= curve["kl_bound"] + 1e-12).all()
