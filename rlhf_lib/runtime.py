"""Seeding, the fast setting that shrinks notebooks for tests, and input checks.

Every notebook calls `set_seed` once at the top. A run's other random streams (held-out samples, the
responses of each process, ...) take their seeds from the run's seed with `derive_seed`. Step counts are written as
`pick(full=..., fast=...)`: a learner gets `full`; the test suite sets the
environment variable RLHF_FAST=1 and gets `fast`. Only the amount of work
shrinks; what a notebook asserts at its end means the same in both settings.
"""

from __future__ import annotations

import hashlib
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


SEED_STREAMS = {
    "corpus sample": (1, 1),  # the `pretrain` command: the corpus sample it describes beside the model
    "sentence heldout": (1, 10_000),  # the `reward` command: fresh pairs checked against gold
    "sentence normalization": (1, 20_000),  # the `reward` command: samples whose rewards get mean 0, std 1
    "whole groups": (1, 1),  # the whole-review recipe: its training starts and reviews
    "whole heldout": (1, 1000),  # the whole-review recipe: fresh pairs checked against gold
    "whole normalization": (1, 2000),  # both whole-review reward models: reviews whose rewards get mean 0, std 1
    "proxy pairs": (1, 7),  # goodhart's proxy reward model: its training pairs
    "proxy heldout": (1, 99),  # goodhart's proxy reward model: fresh pairs checked against gold
    "dpo batches": (1, 1),  # DPO: the order of the training batches (the held-out split uses the seed itself)
    "ppo update check": (1, 100),  # the checker of a learner's PPO update: the update's shuffles
    "sampler": (1000, 0),  # RLHF: the responses of process `index`
    "pair round": (1_000_003, 0),  # sample_whole_pairs: round `index` of sampling
    "group chunk": (100_003, 0),  # sample_groups: the chunk that starts at group `index`
    "environment": (1, 0),  # CartPole: environment `index`
}
"""stream -> (multiplier, offset): the seed of a stream is seed * multiplier + offset + index, the numbers each
stream has always used, so runs repeat what they gave before"""


def derive_seed(seed: int, stream: str, index: int = 0) -> int:
    """The seed of one random stream of a run (`SEED_STREAMS`), from the run's seed, the stream's name and an
    index (a process, a round, an environment). A name not in the table is a new stream: its seed comes from a
    hash of (seed, name, index), below 2**31, so that streams derived from it in turn (seed * 1,000,003 + ...)
    still fit the 64 bits a torch generator takes."""
    seed, index = check_count("seed", seed, minimum=0), check_count("index", index, minimum=0)
    if stream in SEED_STREAMS:
        multiplier, offset = SEED_STREAMS[stream]
        return seed * multiplier + offset + index
    digest = hashlib.sha256(f"{seed}/{stream}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


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

        report["torch threads"] = (f"{share_cores(force=True)} of {usable_cores()} cores "
                                   "(shared with busy torch processes)")
        report["GPU"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU is enough)"
    except ImportError:
        pass
    report["fast setting (RLHF_FAST)"] = is_fast()
    return report


def missing_packages(report: dict) -> list[str]:
    return [name for name, version in report.items() if version == "MISSING"]
