"""Test-suite setup: notebooks run in the shrunk setting unless RLHF_FAST is set already.

nbval starts each notebook's kernel from this process, so the variable set here
reaches the kernels (tests/test_notebooks.py::test_fast_setting_reaches_the_kernel proves it)."""

import os

import pytest

os.environ.setdefault("RLHF_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# nbval reads a cell's messages only after the cell ends, and the kernel's queue holds about two thousand: a long
# cell's progress bars, refreshed ten times a second, can push out its final message and fail the cell. Refresh
# them every 2 seconds in the test suite (tests/test_notebooks.py causes the failure and shows this prevents it).
os.environ.setdefault("TQDM_MININTERVAL", "2")


@pytest.fixture
def pinned_threads(monkeypatch):
    """For a test that compares two runs bit for bit: torch's thread count pinned (RLHF_THREADS, which the
    test's subprocesses inherit) so that a busy neighbour cannot change it between the runs."""
    from rlhf_lib.threads import THREADS_ENV_VAR, usable_cores

    monkeypatch.setenv(THREADS_ENV_VAR, str(usable_cores()))


def _worker(config) -> bool:
    return hasattr(config, "workerinput")  # a process that pytest-xdist started


def _parallel_controller(config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not _worker(config)


def pytest_configure(config):
    """In a parallel run each process keeps one thread (RLHF_THREADS=1, inherited by its notebook kernels and
    subprocesses): two of them fill two cores without fighting, and a test's numbers do not depend on what the
    other process happens to be running (a share that followed the neighbour would change the last bits)."""
    if _worker(config):
        os.environ.setdefault("RLHF_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    """Every notebook run is slow: `pytest -m "not slow"` is the contributors' quick lane.

    The suite runs in two processes (`-n 2` in pyproject.toml; each notebook, and each test file, whole in one of
    them), one thread each (`pytest_configure`). In a worker, the tests that must have the machine to themselves (marked
    `alone`) are left out: they run after the parallel part, alone (`pytest_sessionfinish` below). The notebooks
    go first, the later (longer) ones first, so that no long notebook starts last."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
    if not _worker(config):
        return
    alone = [item for item in items if item.get_closest_marker("alone")]
    if alone:
        config.hook.pytest_deselected(items=alone)
        items[:] = [item for item in items if not item.get_closest_marker("alone")]
    notebooks = sorted({item.path for item in items if item.path.suffix == ".ipynb"}, reverse=True)
    rank = {path: i for i, path in enumerate(notebooks)}
    items.sort(key=lambda item: rank.get(item.path, len(rank)))  # stable: each file's items keep their order


def pytest_sessionfinish(session, exitstatus):
    """After a parallel run: the `alone` tests it selected, in one process of their own, on a quiet machine."""
    config = session.config
    if not _parallel_controller(config) or exitstatus not in (0, 1, 5):
        return
    import subprocess
    import sys

    marks = f"alone and ({config.option.markexpr})" if config.option.markexpr else "alone"
    command = [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-m", marks]
    if config.option.keyword:
        command += ["-k", config.option.keyword]
    print(f"\nthe tests that run alone: {' '.join(command[1:])}", flush=True)
    returncode = subprocess.run(command + list(config.args), cwd=config.invocation_params.dir).returncode
    if returncode not in (0, 5):  # 5: none selected
        session.exitstatus = returncode
