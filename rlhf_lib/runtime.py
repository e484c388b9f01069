"""Seeding, the fast setting that shrinks notebooks for tests, and input checks.

Every notebook calls `set_seed` once at the top. Step counts are written as
`pick(full=..., fast=...)`: a learner gets `full`; the test suite sets the
environment variable RLHF_FAST=1 and gets `fast`. Only the amount of work
shrinks; what a notebook asserts at its end means the same in both settings.
"""

from __future__ import annotations

import math
import os
import random

import numpy as np

FAST_ENV_VAR = "RLHF_FAST"


def set_seed(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and torch (CPU and CUDA)."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # the tabular notebooks do not need torch
        return
    torch.manual_seed(seed)  # also seeds every CUDA device
    from rlhf_lib.threads import share_cores

    share_cores(force=True)  # a fair share of the cores before the first cell computes (rlhf_lib/threads.py)


def is_fast() -> bool:
    """True when the environment asks for the shrunk test setting (RLHF_FAST=1)."""
    return os.environ.get(FAST_ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(full, fast):
    """Return `fast` under the test setting, `full` otherwise."""
    return fast if is_fast() else full


# ---- input checks: a clear message at the call site, not a stack trace deep inside


def check_probability(name: str, value: float) -> float:
    """Raise ValueError unless 0 <= value <= 1."""
    if not _is_real(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    """Raise ValueError unless value > 0 (or >= 0 with allow_zero)."""
    ok = _is_real(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


def check_count(name: str, value: int, minimum: int = 1) -> int:
    """Raise ValueError unless value is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_optional_positive(name: str, value, allow_zero: bool = False):
    """None, or a number > 0 (>= 0 with allow_zero): for settings where None switches a feature off."""
    return None if value is None else check_positive(f"{name} (or None to switch it off)", value, allow_zero)


def check_finite_fields(config) -> None:
    """Raise ValueError naming the first field of a dataclass that holds NaN or an infinity."""
    from dataclasses import fields

    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, (float, np.floating)) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value!r}")


def _is_real(value) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


# ---- the environment check of notebook 00

REQUIRED_PACKAGES = ("numpy", "torch", "gymnasium", "matplotlib", "tqdm", "ipywidgets", "transformers", "tokenizers",
                     "datasets", "vaderSentiment")


def environment_report(packages=REQUIRED_PACKAGES) -> dict:
    """Versions of the course's packages ("MISSING" where one cannot be imported), Python, threads, GPU."""
    import importlib
    import platform

    report = {"python": platform.python_version()}
    for name in packages:
        try:
            module = importlib.import_module(name)
            report[name] = getattr(module, "__version__", "installed")
        except Exception:  # an import can fail in many ways; each means the same thing here
            report[name] = "MISSING"
    try:
        import torch

        from rlhf_lib.threads import share_cores, usable_cores

        report["torch threads"] = f"{share_cores(force=True)} of {usable_cores()} cores (shared with busy torch processes)"
        report["GPU"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU is enough)"
    except ImportError:
        pass
    report["fast setting (RLHF_FAST)"] = is_fast()
    return report


def missing_packages(report: dict) -> list[str]:
    return [name for name, version in report.items() if version == "MISSING"]
