"""Behaviour kept: the reward model trained on groups of pairs (`train_on_groups`, the loop of the whole-review
reward models) gives exactly what it gave when tests/data/golden_groups.json was made.

A change that alters these numbers on purpose regenerates the file (python tests/data/make_golden_groups.py) and
says why in its commit. On another processor the last bits may differ: there the losses and accuracies are
compared with a tolerance and the weights by their norm (as in tests/test_golden.py)."""

import importlib.util
import json
from pathlib import Path

import pytest

DATA = Path(__file__).with_name("data")
spec = importlib.util.spec_from_file_location("make_golden_groups", DATA / "make_golden_groups.py")
make_golden_groups = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_golden_groups)
GOLDEN = json.loads((DATA / "golden_groups.json").read_text())
SAME_CPU = make_golden_groups.make_golden.cpu() == GOLDEN["cpu"]


@pytest.fixture(scope="module")
def fresh():
    return make_golden_groups.make()


@pytest.mark.parametrize("name", list(make_golden_groups.RUNS))
def test_a_short_group_run_gives_the_recorded_numbers(fresh, name):
    want, got = GOLDEN["runs"][name], json.loads(json.dumps(fresh[name]))  # through JSON, as the file was
    assert len(got["losses"]) == len(want["losses"]) > 0
    if SAME_CPU:
        assert got == want, f"{name}: the run differs from tests/data/golden_groups.json (made at {GOLDEN['commit']})"
    else:
        numbers = lambda run: run["losses"] + run["accuracies"] + [run["norm"]]
        assert numbers(got) == pytest.approx(numbers(want), rel=1e-3, abs=1e-5)
