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


def pytest_collection_modifyitems(items):
    """Every notebook run is slow: `pytest -m "not slow"` is the contributors' quick lane."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
