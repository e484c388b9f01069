"""Test-suite setup: notebooks run in the shrunk setting unless RLHF_FAST is set already.

nbval starts each notebook's kernel from this process, so the variable set here
reaches the kernels (tests/test_fast_setting.py proves it)."""

import os

os.environ.setdefault("RLHF_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
