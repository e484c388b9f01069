"""How many threads torch may use: a fair share of the cores, re-checked while training.

torch starts one thread per core and, between two operations, lets each thread spin for a while waiting for
the next one. Alone that is fast. Two torch processes on the same cores are another matter: each one's threads
spin on cores the other needs, and on 2 cores two copies of notebook 04 ran 7.8 times slower than one alone.

So the library's long loops (sampling, PPO, DPO, the reward model, SFT, pretraining) call `share_cores()` at
every iteration. At most once a second it looks at the other processes that have torch loaded and are busy
(more than a third of a core since the last look) and gives this process an equal share:
threads = max(1, cores // (1 + busy others)). Two notebooks training at once on 2 cores get one thread each;
when one finishes, the other goes back to two at its next iteration.

    RLHF_THREADS=N   use N threads, whatever else runs (for a timing, or for bit-for-bit comparisons)

A change of thread count changes the order of some floating-point sums, so a run that shared its cores can
differ from one that ran alone in the last bits (and, over a long training run, in the samples drawn). Alone,
the same seed gives the same numbers; with RLHF_THREADS set, it does under any load.

Where there is no /proc (macOS, Windows), other processes are not seen and the count is the cores'.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

import torch

THREADS_ENV_VAR = "RLHF_THREADS"
RESCAN_SECONDS = 1.0
"""the shortest time between two looks at the other processes"""
BUSY_CORES = 1 / 3
"""a process using more than this share of a core since the last look counts as busy"""

_DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice at import: one a physical core
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_state = {"last_look": None, "cpu": {}, "torch": {}, "fixed": None}


def usable_cores() -> int:
    """The cores this process may use: torch's default (physical cores), capped by the CPU affinity mask and
    by a cgroup CPU quota (a container's `--cpus`), where these exist."""
    cores = _DEFAULT_THREADS
    if hasattr(os, "sched_getaffinity"):
        cores = min(cores, len(os.sched_getaffinity(0)))
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(float(quota) / float(period) + 0.5)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def threads_from_env() -> int | None:
    """The thread count RLHF_THREADS asks for, or None when it is unset or empty."""
    raw = os.environ.get(THREADS_ENV_VAR, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{THREADS_ENV_VAR} must be a whole number of threads, at least 1 (or unset to share "
                         f"the cores automatically), got {raw!r}")
    return int(raw)


def fair_share(cores: int, busy_others: int) -> int:
    """An equal share of the cores between this process and the busy others, at least one thread."""
    return max(1, cores // (1 + busy_others))


def share_cores(force: bool = False) -> int:
    """Set torch's thread count to this process's share of the cores and return it.

    Cheap to call often: between two looks at the other processes (RESCAN_SECONDS) it only returns the current
    count. RLHF_THREADS, or a `fixed(n)` block, overrides the share."""
    pinned = _state["fixed"] or threads_from_env()
    if pinned is not None:
        return _set(pinned)
    now = time.monotonic()
    last = _state["last_look"]
    if not force and last is not None and now - last < RESCAN_SECONDS:
        return torch.get_num_threads()
    return _set(fair_share(usable_cores(), len(busy_torch_processes())))


@contextmanager
def fixed(threads: int):
    """Use exactly `threads` threads inside the block (the share is not re-checked there), then share again.

    For models so small that a second thread only adds waiting (CartPole's networks, a unit test's batch)."""
    outer = _state["fixed"], torch.get_num_threads()
    _state["fixed"] = threads
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        _state["fixed"] = outer[0]
        torch.set_num_threads(outer[1])


def _set(threads: int) -> int:
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


# ---- the other processes, from /proc


def busy_torch_processes() -> list[int]:
    """The ids of the other processes that have torch loaded and used more than BUSY_CORES of a core since the
    last look (on the first look, over a tenth of a second). Empty where /proc does not exist."""
    if not os.path.isdir("/proc"):
        return []
    before, then = _state["cpu"], _state["last_look"]
    now = time.monotonic()
    if then is None or now - then > 10 * RESCAN_SECONDS:  # no recent look to compare with: take one now
        before, then = _cpu_times(), now
        time.sleep(0.1)
        now = time.monotonic()
    after = _cpu_times()
    _state["cpu"], _state["last_look"] = after, now
    elapsed = max(now - then, 1e-3)
    busy = []
    for pid, (start, ticks) in after.items():
        if pid in before and before[pid][0] == start and (ticks - before[pid][1]) / _TICKS / elapsed > BUSY_CORES:
            if _has_torch(pid, start):
                busy.append(pid)
    return busy


def _cpu_times() -> dict[int, tuple[int, int]]:
    """{pid: (start time, user + system CPU ticks)} of every other process we can read."""
    me, times = os.getpid(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()  # after the command name, which may hold spaces
        except (OSError, IndexError):
            continue  # gone, or not ours to read
        # fields[0] is the state (field 3 of proc(5)): utime, stime are fields 14, 15; starttime field 22
        times[int(name)] = (int(fields[19]), int(fields[11]) + int(fields[12]))
    return times


def _has_torch(pid: int, start: int) -> bool:
    """Whether the process has torch's library mapped; remembered per process (a library stays mapped)."""
    key = (pid, start)
    if key not in _state["torch"]:
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                _state["torch"][key] = b"libtorch_cpu" in f.read()
        except OSError:
            _state["torch"][key] = False
    return _state["torch"][key]
