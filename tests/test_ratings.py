"""Ratings from matches against independent computations: a generic optimiser on the same likelihood, the
true strengths of simulated tournaments, Elo's update by hand, a win rate counted directly."""

import itertools

import numpy as np
import pytest
import torch

from rlhf_lib.evaluate import bradley_terry, elo
from rlhf_lib.ratings import check_matches, tally, why_no_rating, win_rate


def tournament(strengths, per_pair: int, tie_share: float, rng) -> list[tuple[int, int, float]]:
    """Every pair plays `per_pair` matches under the model the ratings assume, a tie counting half a win: with
    p = sigmoid(s_i - s_j), a tie has probability c * min(p, 1 - p) and i wins with p minus half of that, so the
    expected score of i stays p. c is set so that about `tie_share` of all matches are ties."""
    pairs = list(itertools.combinations(range(len(strengths)), 2))
    p = np.array([1.0 / (1.0 + np.exp(strengths[j] - strengths[i])) for i, j in pairs])
    c = min(2.0, tie_share / np.minimum(p, 1 - p).mean())
    matches = []
    for (i, j), pw in zip(pairs, p):
        tie = c * min(pw, 1 - pw)
        for u in rng.random(per_pair):
            matches.append((i, j, 0.5 if u < tie else float(u < tie + pw - tie / 2)))
    return matches


def fit_by_lbfgs(matches, n: int) -> np.ndarray:
    """The maximum-likelihood strengths by a generic optimiser: torch's L-BFGS on the log-likelihood of each
    match as given (a tie is half a win for each side), mean 0."""
    i = torch.tensor([m[0] for m in matches])
    j = torch.tensor([m[1] for m in matches])
    o = torch.tensor([m[2] for m in matches], dtype=torch.float64)
    theta = torch.zeros(n, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        d = theta[i] - theta[j]
        nll = -(o * torch.nn.functional.logsigmoid(d) + (1 - o) * torch.nn.functional.logsigmoid(-d)).sum()
        nll = nll + 0.5 * theta.sum() ** 2  # only pins the mean: the likelihood ignores it
        nll.backward()
        return nll

    opt.step(closure)
    out = theta.detach().numpy()
    return out - out.mean()


@pytest.mark.parametrize("seed", range(5))
def test_ratings_equal_a_generic_maximum_likelihood_fit(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    while True:  # a tournament whose ratings exist
        strengths = rng.normal(0, 1.5, n)
        pairs = [(i, j) for i, j in itertools.combinations(range(n), 2) if rng.random() < 0.8]  # not all meet
        matches = []
        for i, j in pairs:
            for _ in range(int(rng.integers(3, 15))):
                p = 1 / (1 + np.exp(strengths[j] - strengths[i]))
                u = rng.random()
                first, second = (i, j) if rng.random() < 0.5 else (j, i)  # either may be listed first
                outcome = 0.5 if u < 0.1 else float(u < 0.1 + 0.9 * p)
                matches.append((first, second, outcome if first == i else 1.0 - outcome))
        if why_no_rating(tally(*check_matches(matches, n))) is None:
            break
    ratings, intervals = bradley_terry(matches, n_players=n, bootstrap=0)
    if intervals is not None:
        raise AssertionError("bootstrap=0 must give no intervals")
    np.testing.assert_allclose(ratings, fit_by_lbfgs(matches, n), atol=1e-4)
    assert abs(ratings.mean()) < 1e-9


def test_intervals_cover_the_true_strengths_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = []
    for t in range(200):
        s = rng.normal(0, 1, 6)
        matches = tournament(s, per_pair=20, tie_share=0.1, rng=rng)
        ratings, intervals = bradley_terry(matches, bootstrap=200, seed=t)
        truth = s - s.mean()
        covered.extend((intervals[:, 0] <= truth) & (truth <= intervals[:, 1]))
        assert (intervals[:, 0] <= ratings).all() and (ratings <= intervals[:, 1]).all()
    assert 0.90 <= np.mean(covered) <= 0.99, f"coverage {np.mean(covered):.3f}"


def test_a_resample_without_a_rating_is_drawn_again():
    # two players, four matches: a resample that holds only one side's wins has no rating and is redrawn
    matches = [(0, 1, 1.0), (0, 1, 1.0), (0, 1, 0.0), (1, 0, 1.0)]
    ratings, intervals = bradley_terry(matches, bootstrap=300, seed=1)
    # a resample with a rating holds 1, 2 or 3 wins of player 0 in 4: strengths within +-log(3)/2
    assert np.abs(intervals).max() <= np.log(3) / 2 + 1e-9
    assert intervals[0, 1] == pytest.approx(np.log(3) / 2)  # 3 wins in 4 is drawn often enough
    # the fit of two players is the log-odds of the wins: 2 against 2
    np.testing.assert_allclose(ratings, [0.0, 0.0], atol=1e-9)


@pytest.mark.parametrize("matches, n_players, named", [
    ([(0, 1, 1.0), (1, 2, 1.0), (2, 0, 1.0)], 4, "player 3 never played"),
    ([(0, 1, 1.0), (0, 2, 1.0), (1, 2, 0.5)], None, "player 0 won every match"),
    ([(0, 1, 1.0), (2, 1, 1.0), (0, 2, 0.5)], None, "player 1 lost every match"),
    # 0 and 1 beat each other, 2 and 3 beat each other, and 0 and 1 beat both of 2 and 3 every time
    ([(0, 1, 1.0), (1, 0, 1.0), (2, 3, 1.0), (3, 2, 1.0), (0, 2, 1.0), (1, 3, 1.0)], None,
     "players [2, 3] never beat players [0, 1]"),
    ([(0, 1, 1.0), (1, 0, 1.0), (2, 3, 1.0), (3, 2, 1.0), (2, 0, 1.0), (3, 1, 1.0)], None,
     "players [2, 3] never lost to players [0, 1]"),
])
def test_ratings_that_do_not_exist_are_an_error_naming_the_player(matches, n_players, named):
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        bradley_terry(matches, n_players=n_players, bootstrap=0)


@pytest.mark.parametrize("matches, message", [
    ([], "no matches"),
    ([(0, 0, 1.0)], "cannot play itself"),
    ([(0, 1, 2.0)], "outcome must be"),
    ([(0, -1, 1.0)], "players are indices"),
    ([(0, 1)], "a match is"),
])
def test_bad_matches_are_a_clear_error(matches, message):
    with pytest.raises(ValueError, match=message):
        bradley_terry(matches, bootstrap=0)
    with pytest.raises(ValueError, match=message):
        elo(matches)


def test_elo_equals_the_update_done_by_hand():
    matches = [(0, 1, 1.0), (1, 2, 0.5), (2, 0, 1.0), (0, 1, 0.0)]
    r = {0: 1000.0, 1: 1000.0, 2: 1000.0}
    for a, b, o in matches:
        expected = 1 / (1 + 10 ** ((r[b] - r[a]) / 400))
        r[a], r[b] = r[a] + 32 * (o - expected), r[b] - 32 * (o - expected)
    np.testing.assert_allclose(elo(matches, k=32.0), [r[0], r[1], r[2]])
    assert elo(matches).sum() == pytest.approx(3000.0)  # points move from loser to winner


def test_elo_depends_on_the_order_and_bradley_terry_does_not():
    matches = [(0, 1, 1.0)] * 10 + [(0, 1, 0.0)] * 10
    assert elo(matches)[0] < elo(matches[::-1])[0]
    np.testing.assert_allclose(bradley_terry(matches, bootstrap=0)[0], bradley_terry(matches[::-1], bootstrap=0)[0])


def test_win_rate_and_its_interval():
    outcomes = [1, 1, 0.5, 0, 1, 0, 1, 1]
    rate, (low, high) = win_rate(outcomes, bootstrap=2000, seed=0)
    assert rate == pytest.approx(np.mean(outcomes))
    assert low < rate < high
    # the interval narrows like 1/sqrt(n): 16x the matches, about a quarter of the width
    _, (low16, high16) = win_rate(outcomes * 16, bootstrap=2000, seed=0)
    assert 0.18 < (high16 - low16) / (high - low) < 0.35
    with pytest.raises(ValueError, match="outcomes"):
        win_rate([2, 0])


def test_win_rate_refuses_a_negative_bootstrap():
    with pytest.raises(ValueError, match="bootstrap"):
        win_rate([1, 0], bootstrap=-1)
