"""Ratings from pairwise matches, where no gold judge exists: win rates, Bradley-Terry strengths, Elo.

A match is `(i, j, outcome)`: players i != j (indices 0..n-1), outcome 1.0 when i won, 0.0 when j won and 0.5
for a tie (half a win each). Players are anything that writes reviews: policies compared on their samples,
judged by gold, a reward model or a judge.

- `bradley_terry`: the maximum-likelihood strengths of the Bradley-Terry model, P(i beats j) =
  sigmoid(s_i - s_j), in natural-log units shifted to mean 0, with percentile intervals from refitting on
  resampled matches (as Chatbot Arena reports its ratings).
- `elo`: the online rating chess uses, updated match by match; it depends on the order of the matches, which is
  why arenas moved to the maximum-likelihood fit.
- `win_rate`: the share of matches won (ties half) with a bootstrap interval.
"""

from __future__ import annotations

import numpy as np

MAX_REDRAWS = 1000
"""resamples in a row without a rating before `bradley_terry` gives up"""
RESAMPLES_AT_ONCE = 100
"""resamples tallied in one array (their counts take resamples x matches numbers)"""


def check_matches(matches, n_players: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(i, j, outcome) as arrays and the number of players, or a ValueError naming the first bad match."""
    rows = list(matches)
    if not rows:
        raise ValueError("no matches given")
    for m, row in enumerate(rows):
        if len(row) != 3:
            raise ValueError(f"match {m} is {row!r}; a match is (i, j, outcome)")
        i, j, outcome = row
        if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 0 for x in (i, j)):
            raise ValueError(f"match {m}: players are indices 0, 1, 2, ..., got {i!r} and {j!r}")
        if i == j:
            raise ValueError(f"match {m}: player {i} cannot play itself")
        if not (isinstance(outcome, (int, float, np.number)) and 0.0 <= float(outcome) <= 1.0):
            raise ValueError(f"match {m}: outcome must be 1.0 (i won), 0.0 (j won) or 0.5 (a tie), got {outcome!r}")
    i, j, outcome = (np.array(col) for col in zip(*rows))
    largest = int(max(i.max(), j.max())) + 1
    n = largest if n_players is None else n_players
    if n < largest:
        raise ValueError(f"n_players is {n_players}, but a match names player {largest - 1}")
    return i.astype(int), j.astype(int), outcome.astype(float), n


def tally(i, j, outcome, n: int, counts=None) -> np.ndarray:
    """wins (n, n): wins[a, b] = how often a beat b (a tie counts half to each). `counts` (R, M): how often each
    match is drawn in each of R resamples; then wins is (R, n, n)."""
    if counts is None:
        wins = np.zeros((n, n))
        np.add.at(wins, (i, j), outcome)
        np.add.at(wins, (j, i), 1.0 - outcome)
        return wins
    spread = np.zeros((len(i), n * n))  # each match's share of wins in the flattened tally
    np.add.at(spread, (np.arange(len(i)), i * n + j), outcome)
    np.add.at(spread, (np.arange(len(i)), j * n + i), 1.0 - outcome)
    return (counts @ spread).reshape(len(counts), n, n)


def _reaches_everyone(beat: np.ndarray) -> np.ndarray:
    """(R,) whether each directed graph (R, n, n) (an edge a -> b when a beat b) is strongly connected."""
    n = beat.shape[-1]
    reach = beat | np.eye(n, dtype=bool)
    for _ in range(int(np.ceil(np.log2(max(n, 2))))):
        reach = (reach.astype(np.int64) @ reach.astype(np.int64)) > 0
    return reach.all(axis=(-2, -1))


def why_no_rating(wins: np.ndarray) -> str | None:
    """Why the maximum-likelihood strengths do not exist for the tally `wins` (n, n), or None when they do.

    They exist exactly when the players cannot be split in two groups with one group never beating the other
    (Zermelo 1929; Ford 1957): a player who never played, won every match or lost every match is the simplest
    such split."""
    games = wins + wins.T
    for p in range(len(wins)):
        if games[p].sum() == 0:
            return f"player {p} never played"
        if wins[p].sum() == 0:
            return f"player {p} lost every match"
        if wins[:, p].sum() == 0:
            return f"player {p} won every match"
    beat = wins > 0
    if _reaches_everyone(beat[None])[0]:
        return None
    reach = beat | np.eye(len(wins), dtype=bool)
    for _ in range(len(wins)):
        reach = (reach.astype(np.int64) @ reach.astype(np.int64)) > 0
    top = np.flatnonzero(reach[0])  # everyone player 0 beat, directly or through others
    rest = np.setdiff1d(np.arange(len(wins)), top)
    if len(rest):
        return f"players {rest.tolist()} never lost to players {top.tolist()}"
    below = np.flatnonzero(reach[:, 0])  # everyone who beat player 0, directly or through others
    rest = np.setdiff1d(np.arange(len(wins)), below)
    return f"players {rest.tolist()} never beat players {below.tolist()}"


def _log_likelihood(theta: np.ndarray, wins: np.ndarray) -> np.ndarray:
    diff = theta[..., :, None] - theta[..., None, :]
    return (wins * -np.logaddexp(0.0, -diff)).sum(axis=(-2, -1))


def fit_strengths(wins: np.ndarray, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry strengths, mean 0, by Newton's method with step halving, for a tally
    (n, n) or a stack of them (R, n, n) fitted at once. The caller makes sure each estimate exists."""
    single = wins.ndim == 2
    wins = wins[None] if single else wins
    R, n, _ = wins.shape
    if R == 0:
        return np.zeros((0, n))
    games = wins + wins.transpose(0, 2, 1)
    theta = np.zeros((R, n))
    ones = np.ones((n, n)) / n
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))  # P(a beats b)
        grad = wins.sum(2) - (games * p).sum(2)  # (R, n)
        w = games * p * (1.0 - p)
        neg_hessian = np.einsum("rab,ab->rab", -w, 1.0 - np.eye(n)) + np.einsum("ra,ab->rab", w.sum(2), np.eye(n))
        step = np.linalg.solve(neg_hessian + ones, grad[..., None])[..., 0]  # the mean direction is free: pin it
        now, size = _log_likelihood(theta, wins), np.ones(R)
        for _ in range(40):  # halve each row's step until its likelihood does not fall
            worse = _log_likelihood(theta + size[:, None] * step, wins) < now - 1e-12
            if not worse.any():
                break
            size = np.where(worse, size / 2, size)
        theta = theta + size[:, None] * step
        theta -= theta.mean(1, keepdims=True)
        if np.abs(size[:, None] * step).max() < tol:
            break
    return theta[0] if single else theta


def bradley_terry(matches, n_players: int | None = None, bootstrap: int = 1000, seed: int = 0):
    """(ratings, intervals) of the players from their matches under the Bradley-Terry model.

    ratings (n,): the maximum-likelihood strengths s (P(i beats j) = sigmoid(s_i - s_j), natural-log units),
    shifted to mean 0. intervals (n, 2): the 2.5th and 97.5th percentiles of the ratings refitted on `bootstrap`
    resamples of the matches drawn with replacement (None when bootstrap = 0); a resample where the ratings do
    not exist is drawn again. A ValueError names the player when the ratings do not exist (a player who never
    played, or won or lost every match; more generally a group that never lost to the others)."""
    i, j, outcome, n = check_matches(matches, n_players)
    if not (isinstance(bootstrap, int) and bootstrap >= 0):
        raise ValueError(f"bootstrap must be a count of resamples (0: none), got {bootstrap!r}")
    wins = tally(i, j, outcome, n)
    why = why_no_rating(wins)
    if why:
        raise ValueError(f"the Bradley-Terry ratings do not exist: {why}")
    ratings = fit_strengths(wins)
    if bootstrap == 0:
        return ratings, None
    rng, kept, redraws = np.random.default_rng(seed), [], 0
    while sum(len(k) for k in kept) < bootstrap:
        want = min(RESAMPLES_AT_ONCE, bootstrap - sum(len(k) for k in kept))
        counts = rng.multinomial(len(i), np.full(len(i), 1.0 / len(i)), size=want)  # (want, M)
        stack = tally(i, j, outcome, n, counts)
        ok = _reaches_everyone(stack > 0)
        redraws = 0 if ok.any() else redraws + want
        if redraws > MAX_REDRAWS:
            raise ValueError(f"{MAX_REDRAWS} resamples in a row had no rating (too few matches to resample)")
        if ok.any():
            kept.append(fit_strengths(stack[ok]))
    resampled = np.concatenate(kept)[:bootstrap]
    return ratings, np.percentile(resampled, [2.5, 97.5], axis=0).T


def elo(matches, k: float = 16.0, start: float = 1000.0, n_players: int | None = None) -> np.ndarray:
    """(n,) online Elo ratings after the matches, in their order: everyone starts at `start`; after each match
    the winner takes k * (outcome - expected) points from the loser, expected = 1 / (1 + 10^((R_j - R_i) / 400)).
    A difference of 400 points means 10:1 odds (Bradley-Terry's strengths times 400 / ln 10)."""
    i, j, outcome, n = check_matches(matches, n_players)
    if not k > 0:
        raise ValueError(f"k must be positive, got {k!r}")
    ratings = np.full(n, float(start))
    for a, b, o in zip(i, j, outcome):
        expected = 1.0 / (1.0 + 10.0 ** ((ratings[b] - ratings[a]) / 400.0))
        ratings[a] += k * (o - expected)
        ratings[b] -= k * (o - expected)
    return ratings


def win_rate(outcomes, bootstrap: int = 1000, seed: int = 0) -> tuple[float, tuple[float, float] | None]:
    """(rate, (low, high)): the share of matches won (1 a win, 0 a loss, 0.5 a tie) and the 2.5th and 97.5th
    percentiles of that share over `bootstrap` resamples of the matches (None when bootstrap = 0)."""
    x = np.asarray(outcomes, dtype=float)
    if x.ndim != 1 or not len(x) or ((x < 0) | (x > 1)).any():
        raise ValueError("outcomes must be a non-empty list of 1 (won), 0 (lost) or 0.5 (a tie)")
    if not (isinstance(bootstrap, int) and bootstrap >= 0):
        raise ValueError(f"bootstrap must be a count of resamples (0: none), got {bootstrap!r}")
    if bootstrap == 0:
        return float(x.mean()), None
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(bootstrap, len(x)))].mean(1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(x.mean()), (float(low), float(high))
