"""Checking a learner's function against the exercise's reference: `check`, `hint`, `reveal`, `use_or_library`.

A checker never raises: it prints one verdict (what differs: the case, the entry, expected and got) and returns
a `Verdict`, true when the function is right. An unfinished exercise does not stop the rest of the notebook.
"""

from __future__ import annotations

import copy
import inspect
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rlhf_lib import solutions
from rlhf_lib.cartpole import one_thread
from rlhf_lib.exercises.registry import EXERCISES, Exercise


class Verdict:
    """What `check` returns: true when the function passed. `message` is the verdict `check` printed.

    Jupyter displays nothing for it (the verdict was printed once already), so a check cell shows one
    message and no stray `True`/`False` under it.
    """

    def __init__(self, name: str, passed: bool, message: str):
        self.name, self.passed, self.message = name, passed, message

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return f"<check {self.name}: {'correct' if self.passed else 'not yet'}>"

    def _ipython_display_(self) -> None:
        pass  # already printed by check


RENAMED = {"hindsight_rewards": "broadcast_rewards"}
"""an exercise's old name -> its name now: the old one still works, with a note, so an older copy of a notebook runs"""


def _current(name: str) -> str:
    if name in RENAMED:
        print(f"({name} is now called {RENAMED[name]})")
        return RENAMED[name]
    return name


def _exercise(name: str) -> Exercise:
    if name not in EXERCISES:
        raise KeyError(f"no exercise called {name!r}; known: {', '.join(EXERCISES)}")
    return EXERCISES[name]


def _call(ex: Exercise, fn: Callable, case):
    args, kwargs = ((), case) if isinstance(case, dict) else (case, {})
    if ex.run is None:
        return fn(*args, **kwargs)
    # build-it exercises train tiny networks, seeding torch: leave the notebook's random state as it was
    with one_thread(), torch.random.fork_rng(devices=[]):
        return ex.run(fn, *args, **kwargs)


def _describe(case) -> str:
    if isinstance(case, dict):
        return ", ".join(f"{k}={v!r}" for k, v in case.items())
    return "arguments " + str([_fmt(a) for a in case if not hasattr(a, "transitions")])


def check(name: str, fn: Callable, seed: int = 0, quiet: bool = False) -> Verdict:
    """Run `fn` on the exercise's test cases and compare with the library.

    Prints one verdict (unless quiet): correct, not done yet, what it raised, or for the first case that
    differs, which entry differs with the expected and the got value; for a silent bug (`bug_<name>`), only
    that it is still there. Returns a `Verdict` (true if correct).
    """
    name = _current(name)
    ex = _exercise(name)
    message = _run_comparison(name, ex, fn) if ex.compare is not None else _compare_cases(name, ex, fn, seed)
    if name.startswith("bug_") and message.startswith(f"{name}: not yet."):  # say only that it is still there
        message = (f"{name}: not fixed yet: it still behaves differently from a correct version. Read it line by "
                   f"line against the equations; hint(\"{name}\") says where to look.")
    verdict = Verdict(name, message.endswith("correct!"), message)
    if not quiet:
        print(message)
    return verdict


def _compare_cases(name: str, ex: Exercise, fn: Callable, seed: int) -> str:
    """The verdict of `fn` against the reference on the exercise's cases. Each call gets its own copy of the
    case, so a right answer that changes its inputs in place is compared with the reference on the same inputs."""
    message = f"{name}: correct!"
    for case in ex.cases(np.random.default_rng(seed)):
        try:
            got = _call(ex, fn, copy.deepcopy(case))
        except NotImplementedError:
            message = f"{name}: not done yet. Fill in the function, run the cell again."
            break
        except Exception as err:  # a learner's bug: show it, do not stop the notebook
            message = f"{name}: your function raised {type(err).__name__}: {err}{_where(err)}"
            break
        difference = _difference(_call(ex, ex.reference, copy.deepcopy(case)), got, ex.atol)
        if difference:
            message = f"{name}: not yet. For {_describe(case)}\n  {difference}"
            break
    return message


def _difference(want, got, atol: float, label: str = "") -> str | None:
    """None if `got` matches `want`; otherwise a short description of the first difference."""
    if isinstance(want, dict):  # named outputs, e.g. the Q table and the returns of a training run
        if not isinstance(got, dict):
            return f"expected a dict with {sorted(want)}, got {type(got).__name__}"
        for key in want:
            found = _difference(want[key], got.get(key), atol, key)
            if found:
                return found
        return None
    try:
        w, g = np.asarray(want, dtype=float), np.asarray(got, dtype=float)
    except (TypeError, ValueError):  # not numbers (texts, records): equal item by item, or the first that differs
        if _plain(want) == _plain(got):
            return None
        prefix = label + ": " if label else ""
        if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
            if len(want) != len(got):
                return (f"{prefix}expected {len(want)} items, got {len(got)}\n  expected {_fmt(want)}\n"
                        f"  got      {_fmt(got)}")
            i = next(i for i, (x, y) in enumerate(zip(want, got)) if _plain(x) != _plain(y))
            return f"{prefix}item {i} differs: expected {want[i]!r}\n  got      {got[i]!r}"
        return f"{prefix}expected {_fmt(want)}\n  got      {_fmt(got)}"
    if w.shape != g.shape:
        return (f"{label + ': ' if label else ''}expected shape {w.shape}, got shape {g.shape}\n"
                f"  expected {_fmt(want)}\n  got      {_fmt(got)}")
    bad = ~np.isclose(g, w, atol=atol, rtol=1e-5)
    if not bad.any():
        return None
    if w.ndim == 0:
        return f"{label + ': ' if label else ''}expected {float(w):.6g}, got {float(g):.6g}"
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"{label or 'index '}[{', '.join(map(str, index))}]"
    text = f"at {where}: expected {w[index]:.6g}, got {g[index]:.6g} ({int(bad.sum())} of {bad.size} entries differ)"
    if w.size <= 12:
        text += f"\n  expected {_fmt(want)}\n  got      {_fmt(got)}"
    return text


def _plain(value):
    """Tuples as lists, all the way down: a pair given as a list equals the same pair given as a tuple."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _run_comparison(name: str, ex: Exercise, fn: Callable) -> str:
    """The verdict of a build-it exercise: run the learner's code where the library's would run, compare."""
    try:
        with torch.random.fork_rng(devices=[]):  # a comparison seeds torch: leave the notebook's stream as it was
            problem = ex.compare(fn)
    except NotImplementedError:
        return f"{name}: not done yet. Fill in the function, run the cell again."
    except Exception as err:  # a learner's bug: show it, do not stop the notebook
        return f"{name}: your function raised {type(err).__name__}: {err}{_where(err)}"
    return f"{name}: not yet. {problem}" if problem else f"{name}: correct!"


LIBRARY = Path(__file__).resolve().parents[1]


def _where(err: BaseException) -> str:
    """Where in the learner's code an error was raised: the last frame outside the library and outside the
    packages it calls (a line of a notebook cell, or of the learner's own file); "" when there is none."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        path = Path(frame.filename)
        if LIBRARY in path.parents or "site-packages" in path.parts or frame.filename.startswith("<frozen"):
            continue
        code = f": {frame.line.strip()}" if frame.line else ""
        return f"\n  at line {frame.lineno} of {frame.name}{code}"
    return ""


def _fmt(arg):
    if isinstance(arg, (list, tuple, np.ndarray, torch.Tensor)):
        try:
            return np.round(np.asarray(arg, dtype=float), 4).tolist()
        except (TypeError, ValueError):  # not numbers: show as they are
            return list(arg)
    return arg


def hint(name: str) -> None:
    """Print one or two nudges about the usual mistakes in this exercise, one bullet a sentence: a line that
    does not end a sentence goes on in the next."""
    name = _current(name)
    print(f"Hints for {name}:")
    for nudge in _nudges(_exercise(name).hint):
        print(f"  - {nudge}")


def _nudges(text: str) -> list[str]:
    nudges: list[str] = []
    for line in text.strip().splitlines():
        if nudges and not nudges[-1].rstrip().endswith((".", "!", "?", ".)")):
            nudges[-1] += " " + line.strip()
        else:
            nudges.append(line.strip())
    return nudges


def reveal(name: str) -> None:
    """Print the solution's source."""
    name = _current(name)
    _exercise(name)
    print(inspect.getsource(getattr(solutions, name)))


def use_or_library(name: str, fn: Callable) -> Callable:
    """`fn` if it passes `check(name, fn)`, otherwise the library's reference (same signature).

    Prints one line saying which one the run will use. The notebook's real training run calls it, so
    the plots show the learner's code at work once it is right, and the notebook still runs before.
    """
    name = _current(name)
    ex = _exercise(name)
    if check(name, fn, quiet=True):
        print(f"{name}: your function passed its check, so this run uses it")
        return fn
    print(f"{name}: not finished yet, so this run uses the library's version")
    return ex.reference
