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
    """A notebook must not give away an exercise: each stub raises NotImplementedError, and a silent bug's
    function, which runs as given, still fails its check (its bug is really there)."""
    from rlhf_lib.exercises import check

    code = [source(c) for c in cells(path) if c["cell_type"] == "code"]
    for c in code:
        if 'check("bug_' in c:
            name = c.split('check("', 1)[1].split('"', 1)[0]
            space = {}
            exec(c.split("\ncheck(", 1)[0], space)  # the cell's definitions, without its check
            fn = next(v for k, v in space.items() if k.startswith("buggy_"))
            assert not check(name, fn, quiet=True), f"{path.name}: the silent bug of {name} is fixed already"
        elif 'check("' in c and "def " in c:
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


@pytest.mark.slow
def test_progress_bars_of_a_long_cell_do_not_drown_its_last_message(tmp_path):
    """nbval reads a cell's messages only after the cell has finished, and the kernel's message queue holds
    about two thousand: a cell whose progress bars refresh thousands of times loses its final "idle" and fails
    ("Timeout of 5 seconds exceeded waiting for output"; it failed notebook 09 once). conftest.py slows the
    bars' refresh for the test suite; here the same flood of refreshes passes with it and fails without it."""
    import subprocess
    import sys

    assert os.environ.get("TQDM_MININTERVAL"), "conftest.py should slow the progress bars' refresh"
    flood = dict(cell_type="code", execution_count=None, id="flood", metadata={}, outputs=[],
                 source="import time\nfrom tqdm.auto import tqdm\nfor i in tqdm(range(6000)):\n    time.sleep(0.001)\n")
    after = dict(cell_type="code", execution_count=None, id="after", metadata={}, outputs=[], source="print(1)\n")
    path = tmp_path / "flood.ipynb"
    path.write_text(json.dumps(dict(cells=[flood, after], metadata={}, nbformat=4, nbformat_minor=5)))

    def run(interval):
        env = {**os.environ, "TQDM_MININTERVAL": interval}
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "-c",
                               os.devnull, "--rootdir", str(tmp_path), str(path)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    slowed, every = run(os.environ["TQDM_MININTERVAL"]), run("0")
    assert slowed.returncode == 0, slowed.stdout[-2000:]
    assert every.returncode != 0 and "waiting for output" in every.stdout, every.stdout[-2000:]


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
