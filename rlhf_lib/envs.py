"""Small environments for the tabular and policy-gradient notebooks.

`GridWorld` follows gymnasium's interface (`reset` returns `(state, info)`,
`step` returns `(state, reward, terminated, truncated, info)`) and also exposes
its exact model through `transitions(s, a)`, which value iteration needs.
CartPole comes from gymnasium itself.

Map legend:  S start   G goal (terminal)   X pit / cliff (terminal)
             # wall    . free cell
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlhf_lib.runtime import check_count, check_positive, check_probability

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
ACTION_NAMES = ("up", "right", "down", "left")
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (d_row, d_col) for each action


@dataclass(frozen=True)
class Layout:
    rows: tuple[str, ...]
    """the map, one string per row, in the legend above"""
    step_reward: float
    """reward for a step that ends on a free cell"""
    goal_reward: float
    """reward for the step that enters G"""
    pit_reward: float
    """reward for the step that enters X"""
    max_steps: int
    """episodes are truncated after this many steps"""


LAYOUTS = {
    # Russell & Norvig's 4x3 world: a small cost per step, +1 at the goal, -1 in the pit.
    "classic": Layout(
        rows=("...G",
              ".#.X",
              "S..."),
        step_reward=-0.04, goal_reward=1.0, pit_reward=-1.0, max_steps=100,
    ),
    # Sutton & Barto's cliff walk: the short path runs along the cliff edge.
    "cliff": Layout(
        rows=("............",
              "............",
              "............",
              "SXXXXXXXXXXG"),
        step_reward=-1.0, goal_reward=-1.0, pit_reward=-100.0, max_steps=200,
    ),
    # A small maze with a pit beside the shortest route.
    "maze": Layout(
        rows=("S..#....",
              ".#.#.##.",
              ".#...#..",
              ".####.#.",
              "......X.",
              ".##.#..G"),
        step_reward=-0.04, goal_reward=1.0, pit_reward=-1.0, max_steps=200,
    ),
}


class GridWorld:
    """A grid of cells; the agent moves up, right, down or left.

    With probability `slip` the move goes to one of the two perpendicular
    directions instead (half each). Moving into a wall or off the map stays put.
    States are cell indices `row * n_cols + col`; wall cells are never visited.
    """

    def __init__(self, layout: str | Layout = "classic", slip: float = 0.0, seed: int | None = None):
        if isinstance(layout, str):
            if layout not in LAYOUTS:
                known = ", ".join(sorted(LAYOUTS))
                raise ValueError(f"unknown gridworld layout {layout!r}; choose one of: {known}")
            layout = LAYOUTS[layout]
        self.layout = layout
        self.slip = check_probability("slip", slip)
        self.grid = [list(row) for row in layout.rows]
        self.n_rows, self.n_cols = len(self.grid), len(self.grid[0])
        if any(len(row) != self.n_cols for row in self.grid):
            raise ValueError("every row of a gridworld layout must have the same length")
        cells = "".join(layout.rows)
        if cells.count("S") != 1 or "G" not in cells:
            raise ValueError("a gridworld layout needs exactly one S and at least one G")
        if set(cells) - set("SGX#."):
            raise ValueError(f"unknown map characters: {sorted(set(cells) - set('SGX#.'))}")
        self.n_states = self.n_rows * self.n_cols
        self.n_actions = 4
        self.start = cells.index("S")
        self.max_steps = check_count("max_steps", layout.max_steps)
        self.rng = np.random.default_rng(seed)
        self.state = self.start
        self.steps = 0

    # ---- the map

    def cell(self, s: int) -> str:
        return self.grid[s // self.n_cols][s % self.n_cols]

    def is_terminal(self, s: int) -> bool:
        return self.cell(s) in "GX"

    def is_wall(self, s: int) -> bool:
        return self.cell(s) == "#"

    def _move(self, s: int, a: int) -> int:
        r, c = divmod(s, self.n_cols)
        dr, dc = MOVES[a]
        r2, c2 = r + dr, c + dc
        if not (0 <= r2 < self.n_rows and 0 <= c2 < self.n_cols) or self.grid[r2][c2] == "#":
            return s
        return r2 * self.n_cols + c2

    def _reward(self, s_next: int) -> float:
        kind = self.cell(s_next)
        if kind == "G":
            return self.layout.goal_reward
        if kind == "X":
            return self.layout.pit_reward
        return self.layout.step_reward

    # ---- the exact model

    def transitions(self, s: int, a: int) -> list[tuple[float, int, float, bool]]:
        """All outcomes of action `a` in state `s`: (probability, next state, reward, terminated)."""
        if self.is_terminal(s):
            return [(1.0, s, 0.0, True)]
        side = self.slip / 2
        outcomes = [(1.0 - self.slip, a), (side, (a + 1) % 4), (side, (a + 3) % 4)]
        merged: dict[int, float] = {}
        for p, direction in outcomes:
            if p > 0:
                s_next = self._move(s, direction)
                merged[s_next] = merged.get(s_next, 0.0) + p
        return [(p, s2, self._reward(s2), self.is_terminal(s2)) for s2, p in merged.items()]

    # ---- the gymnasium-style interface

    def reset(self, seed: int | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.state, self.steps = self.start, 0
        return self.state, {}

    def step(self, action: int):
        if not 0 <= int(action) < self.n_actions:
            raise ValueError(f"action must be 0..3 (up, right, down, left), got {action!r}")
        outcomes = self.transitions(self.state, int(action))
        i = self.rng.choice(len(outcomes), p=[o[0] for o in outcomes])
        _, self.state, reward, terminated = outcomes[i]
        self.steps += 1
        truncated = not terminated and self.steps >= self.max_steps
        return self.state, reward, terminated, truncated, {}


class BernoulliBandit:
    """k arms; arm i pays 1 with probability probs[i], else 0."""

    def __init__(self, probs, seed: int | None = None):
        self.probs = np.asarray(probs, dtype=float)
        if self.probs.ndim != 1 or len(self.probs) < 2:
            raise ValueError("a bandit needs a list of at least two arm probabilities")
        for i, p in enumerate(self.probs):
            check_probability(f"probs[{i}]", float(p))
        self.n_actions = len(self.probs)
        self.rng = np.random.default_rng(seed)

    @property
    def expected_rewards(self) -> np.ndarray:
        return self.probs.copy()

    def pull(self, action):
        """Reward(s) for pulling `action` (an int or an array of ints)."""
        action = np.asarray(action)
        return (self.rng.random(action.shape) < self.probs[action]).astype(float)


class GaussianBandit:
    """k arms; arm i pays a normal reward with mean means[i] and standard deviation std."""

    def __init__(self, means, std: float = 1.0, seed: int | None = None):
        self.means = np.asarray(means, dtype=float)
        if self.means.ndim != 1 or len(self.means) < 2:
            raise ValueError("a bandit needs a list of at least two arm means")
        self.std = check_positive("std", std, allow_zero=True)
        self.n_actions = len(self.means)
        self.rng = np.random.default_rng(seed)

    @property
    def expected_rewards(self) -> np.ndarray:
        return self.means.copy()

    def pull(self, action):
        """Reward(s) for pulling `action` (an int or an array of ints)."""
        action = np.asarray(action)
        return self.means[action] + self.std * self.rng.standard_normal(action.shape)
