"""The notebooks' contract: stored clean, short cells, goals, exercises, a final assertion,
and a test setting that really reaches the kernels nbval starts."""

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CELL_LINES = 30


def cells(path):
    return json.loads(path.read_text())["cells"]


def source(cell):
    return "".join(cell["source"])


def test_notebooks_exist_in_order():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers[:6] == ["00", "01", "02", "03", "04", "05"]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    for cell in cells(path):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"strip the outputs of {path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_shape(path):
    cs = cells(path)
    first = source(cs[0]).lower()
    assert cs[0]["cell_type"] == "markdown" and ("learning goals" in first or "you will" in first)
    code = [source(c) for c in cs if c["cell_type"] == "code"]
    assert "set_seed(" in code[0], "the first code cell seeds everything"
    assert sum(c.count('check("') for c in code) >= 2, "at least two exercises with checkers"
    assert "assert " in code[-1], "the last cell asserts the notebook's promise"
    long = [c.splitlines()[0] for c in code if len(c.splitlines()) > MAX_CELL_LINES]
    assert not long, f"cells over {MAX_CELL_LINES} lines belong in rlhf_lib: {long}"
    for c in code:
        assert "import *" not in c and "pip install" not in c


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercise_stubs_are_unsolved(path):
    """A notebook must not give away an exercise: each stub raises NotImplementedError."""
    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    for c in code:
        if 'check("' in c and "def " in c:
            assert "raise NotImplementedError" in c


def test_fast_setting_reaches_the_kernel():
    """nbval starts kernels with jupyter_client from this process; one started the same way sees RLHF_FAST."""
    from nbval.kernel import RunningKernel

    assert os.environ.get("RLHF_FAST") == "1", "conftest.py should set the fast setting for the test suite"
    kernel = RunningKernel("python3", cwd=str(ROOT / "notebooks"))
    try:
        seen = []
        kernel.kc.execute_interactive(
            "from rlhf_lib import pick, is_fast; print(is_fast(), pick(full=1000, fast=10))",
            output_hook=lambda msg: seen.append(msg["content"].get("text", msg["content"].get("evalue", ""))),
            timeout=60,
        )
    finally:
        kernel.stop()
    assert "".join(seen).strip() == "True 10"


def test_every_notebook_from_01_to_08_has_a_build_it_and_three_exercises():
    """The learner writes the core of each training notebook, and the notebook's run uses it."""
    from collections import Counter

    from rlhf_lib.exercises import EXERCISES

    per_notebook = Counter(ex.notebook for ex in EXERCISES.values())
    for path in NOTEBOOKS:
        number = path.name[:2]
        if "01" <= number <= "08":
            text = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
            assert per_notebook[number] >= 3, f"{path.name}: {per_notebook[number]} exercises"
            assert "use_or_library(" in text, f"{path.name}: no build-it exercise plugged into the run"
            for name in (n for n, ex in EXERCISES.items() if ex.notebook == number):
                assert f'check("{name}"' in text, f"{path.name}: exercise {name} is never checked"
