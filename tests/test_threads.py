"""Sharing the cores: two real training processes at once each take half of them, and one alone takes all.

The policy is in rlhf_lib/threads.py. Run with RLHF_THREADS=2 exported for both workers, the overlap
assertions below fail (each keeps two threads while the other trains): that is the behaviour the policy
replaces, under which two copies of notebook 04 ran 7.8 times slower than one."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlhf_lib import threads

WORKER = Path(__file__).with_name("threads_worker.py")
MARGIN = 2.5  # seconds: a process sees a neighbour's start or end at its next look or the one after (one a second)


def start(kind, seconds, out, *wait_for):
    return subprocess.Popen([sys.executable, str(WORKER), kind, str(seconds), str(out), *map(str, wait_for)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process, out):
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-2000:]
    return json.loads(Path(out).read_text())


def wait_for(path, process, timeout=300):
    end = time.time() + timeout
    while not Path(path).exists():
        assert process.poll() is None and time.time() < end, f"no {path} after {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.alone  # it must see a process alone: after a parallel run, it runs by itself (conftest.py)
@pytest.mark.skipif(not os.path.isdir("/proc") or threads.usable_cores() < 2,
                    reason="needs /proc and at least 2 cores")
def test_two_training_processes_share_the_cores_and_take_them_back(tmp_path, monkeypatch):
    monkeypatch.delenv(threads.THREADS_ENV_VAR, raising=False)
    if threads.busy_torch_processes():
        pytest.skip("other torch processes are busy on this machine: no process here can run alone")
    cores = threads.usable_cores()
    a_out, b_out = tmp_path / "a.json", tmp_path / "b.json"
    a = start("ppo", 3 * MARGIN, a_out, b_out)  # PPO iterations, like notebook 08, until b is done and a while
    wait_for(f"{a_out}.started", a)
    time.sleep(2 * MARGIN)  # some steps alone
    b_launched = time.time()
    b = start("sample", 3 * MARGIN, b_out)  # sampling rounds, like notebook 04
    b_steps, a_steps = finish(b, b_out), finish(a, a_out)
    b_first, b_last = b_steps[0]["start"], b_steps[-1]["end"]

    alone_before = [s for s in a_steps if s["end"] < b_launched]
    together = [s for s in a_steps if b_first + MARGIN < s["start"] and s["end"] < b_last]
    alone_after = [s for s in a_steps if s["start"] > b_last + MARGIN]
    assert alone_before and together and alone_after, "the runs did not overlap as planned"
    assert all(s["threads"] == [cores, cores] for s in alone_before), alone_before
    assert all(s["threads"] == [cores // 2] * 2 for s in together), together
    assert all(s["threads"] == [cores, cores] for s in alone_after), alone_after
    # the newcomer saw the busy neighbour from its first step on
    assert all(s["threads"] == [cores // 2] * 2 for s in b_steps), b_steps


@pytest.mark.alone  # its last line compares the share with the busy processes it sees: no neighbour may change
def test_the_environment_variable_pins_the_count(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV_VAR, "1")
    assert threads.share_cores(force=True) == 1 == torch.get_num_threads()
    monkeypatch.setenv(threads.THREADS_ENV_VAR, "two")
    with pytest.raises(ValueError, match="RLHF_THREADS must be a whole number"):
        threads.share_cores(force=True)
    monkeypatch.setenv(threads.THREADS_ENV_VAR, "0")
    with pytest.raises(ValueError, match="at least 1"):
        threads.share_cores(force=True)
    monkeypatch.delenv(threads.THREADS_ENV_VAR)
    with threads.fixed(1):  # a block that pins the count wins over the share, and gives it back after
        assert threads.share_cores(force=True) == 1
    assert threads.share_cores(force=True) == threads.fair_share(threads.usable_cores(),
                                                                 len(threads.busy_torch_processes()))


def test_fair_share_by_hand():
    assert [threads.fair_share(2, n) for n in range(4)] == [2, 1, 1, 1]
    assert [threads.fair_share(8, n) for n in range(4)] == [8, 4, 2, 2]
