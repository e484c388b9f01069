"""Faults as they happen: processes killed with SIGKILL in the middle of writing labels, checkpoints or any
whole file, several writers on one label file. Afterwards the files must be readable and consistent, and what
was acknowledged must be there."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlhf_lib.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from rlhf_lib.feedback import TornTailError, read_records, repair_torn_tail

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))

LABEL_WRITER = r"""
import sys
from rlhf_lib.feedback import PreferenceRecord, append_record, remove_record
path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
last = None
for i in range(n):
    rid = append_record(path, PreferenceRecord("The plot was", f" good {name} {i}." + " very" * (i % 50), " bad.",
                                               "a", name))
    print("add", rid, flush=True)
    if i % 3 == 2:  # an undo now and then
        remove_record(path, rid)
        print("del", rid, flush=True)
"""

CHECKPOINT_WRITER = r"""
import sys
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from rlhf_lib.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from rlhf_lib.rlhf import PolicyWithValue

folder = sys.argv[1]
torch.manual_seed(0)
model = PolicyWithValue(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32)))
opt = torch.optim.Adam(model.parameters())
start = load_checkpoint(folder, model, opt, 0)["iteration"] if find_checkpoint(folder) else 0
for i in range(start + 1, 10**6):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(i))
    opt.param_groups[0]["lr"] = float(i)
    save_checkpoint(folder, model, opt, 0, dict(
        iteration=i, beta=float(i), sampler=torch.Generator().manual_seed(i).get_state(),
        shuffler=torch.Generator().manual_seed(i + 1).get_state(), history=[{"iteration": k} for k in range(1, i + 1)],
        samples=[], config={"seed": 0}))
    print(i, flush=True)
"""

ATOMIC_WRITER = r"""
import sys
from rlhf_lib.files import atomic_file, write_atomic
path, first, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(first, 10**6):
    content = f"{i:07d}\n".encode() * (size // 8)
    if i % 2:
        write_atomic(path, content)
    else:  # the file-object form (checkpoints' torch.save), in many small writes
        with atomic_file(path, "wb") as f:
            for k in range(0, size, 1 << 16):
                f.write(content[k : k + (1 << 16)])
    print(i, flush=True)
"""


def tiny_policy():
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf_lib.rlhf import PolicyWithValue

    model = PolicyWithValue(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32)))
    return model, torch.optim.Adam(model.parameters())


def start(script, *args):
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE, text=True,
                            env=ENV, cwd=ROOT)


def kill_after(proc, lines_wanted, rng) -> list[str]:
    """Read until `lines_wanted` acknowledgements, wait a random moment, SIGKILL; every line it printed whole.
    A line the kill cut short acknowledges nothing: with unbuffered output (PYTHONUNBUFFERED) `print` writes its
    words one system call at a time, so a kill can leave "add" without its id."""
    lines = []
    while len(lines) < lines_wanted:
        line = proc.stdout.readline()
        assert line.endswith("\n"), "the writer stopped by itself"
        lines.append(line.split())
    time.sleep(rng.uniform(0, 0.03))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    lines += [line.split() for line in proc.stdout.read().split("\n")[:-1]]  # the last piece has no newline
    return lines


@pytest.mark.slow
def test_labels_survive_sigkill_in_the_middle_of_writing(tmp_path):
    rng = random.Random(0)
    path = tmp_path / "labels.jsonl"
    kept, removed = set(), set()
    for round_ in range(4):
        lines = kill_after(start(LABEL_WRITER, path, f"w{round_}", 10_000), rng.randint(5, 40), rng)
        for op, rid in lines:
            (kept.add if op == "add" else kept.discard)(rid)
            if op == "del":
                removed.add(rid)
        try:
            records = read_records(path)
        except TornTailError:  # allowed, if the kill cut a write: repair keeps every complete record
            with pytest.warns(UserWarning):
                repair_torn_tail(path)
            records = read_records(path)
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids))
        in_flight_undo = {lines[-1][1]} if lines[-1][0] == "add" else set()  # its undo may have been under way
        assert kept - set(ids) <= in_flight_undo, "an acknowledged record was lost"
        assert not removed & set(ids), "an acknowledged undo came back"
        assert len(set(ids) - kept) <= 1  # at most the append in flight when the kill came
        kept = set(ids)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "labels.jsonl"]
    assert all(name.endswith(".tmp") or name.endswith(".torn") for name in leftovers), leftovers


def test_concurrent_writers_with_undo_lose_nothing(tmp_path):
    """Four processes append and undo on one file at once: every record acknowledged and not undone is there."""
    path = tmp_path / "shared.jsonl"
    procs = [start(LABEL_WRITER, path, f"p{k}", 45) for k in range(4)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    expected = set()
    for out in outs:
        for op, rid in (line.split() for line in out.splitlines()):
            (expected.add if op == "add" else expected.discard)(rid)
    records = read_records(path)
    assert sorted(r["id"] for r in records) == sorted(expected)
    assert len(records) == 4 * 30
    assert b"\0" not in path.read_bytes()


def test_whole_file_writes_survive_sigkill_in_the_middle_of_writing(tmp_path):
    """A process replaces a 4 MB file again and again and is killed at random moments: the file always holds
    one whole version (the last acknowledged, or the one whose rename came just before the kill), never a mix of
    two, a cut one or nothing. What a kill leaves behind is a temporary file beside it, never the file itself."""
    rng, path, size = random.Random(2), tmp_path / "big.bin", 4 << 20
    version = lambda i: f"{i:07d}\n".encode() * (size // 8)  # every 8 bytes name the version they belong to
    path.write_bytes(version(0))
    done, cut_short = 0, 0
    for _ in range(20):
        lines = kill_after(start(ATOMIC_WRITER, path, done + 1, size), rng.randint(1, 3), rng)
        acknowledged = int(lines[-1][0])
        data = path.read_bytes()
        assert len(data) == size, f"{len(data)} bytes: a cut or empty file"
        done = int(data[:7])
        assert data == version(done), "pieces of two versions"
        assert acknowledged <= done <= acknowledged + 1, (acknowledged, done)
        leftovers = [p for p in tmp_path.iterdir() if p != path]
        assert all(p.name.startswith(".big.bin.") and p.name.endswith(".tmp") for p in leftovers), leftovers
        cut_short += len(leftovers)
        for p in leftovers:
            p.unlink()
    assert cut_short >= 5, "the kills did not land inside writes: the test proved nothing"


def test_atomic_file_leaves_the_old_file_when_the_writer_fails_and_keeps_its_mode(tmp_path):
    from rlhf_lib.files import atomic_file, write_atomic

    path = tmp_path / "summary.json"
    write_atomic(path, "old")
    path.chmod(0o640)
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write("new, half written")
            raise RuntimeError("the writer fails")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    write_atomic(path, "new")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o640
    fresh = write_atomic(tmp_path / "fresh.txt", "ü")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # a file made the usual way: the same permissions as ours
    assert fresh.read_bytes() == "ü".encode() and fresh.stat().st_mode == plain.stat().st_mode


def check_loaded(folder, at_least):
    model, opt = tiny_policy()
    state = load_checkpoint(folder, model, opt, 0)
    i = state["iteration"]
    assert at_least <= i <= at_least + 1, (at_least, i)
    for p in model.parameters():  # weights, value head and optimizer all from the same save
        assert torch.all(p == float(i))
    assert opt.param_groups[0]["lr"] == float(i) and state["beta"] == float(i)
    assert torch.equal(state["sampler"], torch.Generator().manual_seed(i).get_state())
    assert [h["iteration"] for h in state["history"]] == list(range(1, i + 1))
    return i


@pytest.mark.slow
def test_checkpoints_survive_sigkill_in_the_middle_of_a_save(tmp_path):
    rng = random.Random(1)
    folder = tmp_path / "checkpoint"
    done = 0
    for _ in range(4):
        lines = kill_after(start(CHECKPOINT_WRITER, folder), rng.randint(2, 6), rng)
        acknowledged = int(lines[-1][0])
        done = check_loaded(folder, acknowledged)
    assert done >= 8


def save_tiny(folder, i, config=None):
    model, opt = tiny_policy()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(i))
    save_checkpoint(folder, model, opt, 0, dict(iteration=i, beta=0.1, sampler=torch.Generator().get_state(),
                                                shuffler=torch.Generator().get_state(), history=[], samples=[],
                                                config=config or {"seed": 0, "lr": 1e-4}))


def test_pieces_of_two_saves_are_refused(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    save_tiny(one, 1)
    save_tiny(two, 2)
    shutil.rmtree(one / "policy")
    shutil.copytree(two / "policy", one / "policy")  # iteration-2 weights beside iteration-1 optimizer state
    with pytest.raises(ValueError, match="inconsistent: policy/model.safetensors does not belong"):
        load_checkpoint(one, *tiny_policy(), 0)


def test_an_empty_or_interrupted_checkpoint_is_a_clear_error(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "trainer.pt").write_bytes(b"")  # what a kill during the old, non-atomic save left
    with pytest.raises(ValueError, match="damaged, probably by an interrupted save"):
        load_checkpoint(folder, *tiny_policy(), 0)
    shutil.rmtree(folder)
    save_tiny(folder, 1)
    (tmp_path / "checkpoint.new").mkdir()  # a save that died before its manifest: ignored
    (tmp_path / "checkpoint.new" / "trainer.pt").write_bytes(b"")
    assert find_checkpoint(folder) == folder
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError, match="interrupted before it finished"):
        load_checkpoint(folder, *tiny_policy(), 0)


def test_resume_refuses_other_settings_or_process_counts(tmp_path):
    from rlhf_lib.rlhf import RLHFConfig

    folder = tmp_path / "checkpoint"
    from dataclasses import asdict

    save_tiny(folder, 1, config=asdict(RLHFConfig(iterations=5)))
    with pytest.raises(ValueError, match=r"other settings \(iterations: 5 in the checkpoint, 6 now"):
        load_checkpoint(folder, *tiny_policy(), 0, config=RLHFConfig(iterations=6))
    with pytest.raises(ValueError, match="made by 1 process"):
        load_checkpoint(folder, *tiny_policy(), 0, config=RLHFConfig(iterations=5), world=2)
    assert load_checkpoint(folder, *tiny_policy(), 0, config=RLHFConfig(iterations=5))["iteration"] == 1


# ---- texts longer than the model's context: a clear error before any work, not an IndexError in torch


@pytest.fixture(scope="module")
def course():
    from rlhf_lib.lm import load_model
    from rlhf_lib.reward_model import make_reward_model

    return load_model(), make_reward_model(seed=0)


def test_texts_longer_than_the_context_are_refused_up_front(course):
    from rlhf_lib.lm import sample
    from rlhf_lib.reward_model import RewardConfig, score_texts, train_reward_model
    from rlhf_lib.sft import SFTConfig, sft

    (policy, tok), (rm, rm_tok) = course
    long = "The plot was" + " very good," * 100 + " and fine."
    assert len(tok(long)["input_ids"]) > 128  # independent of the check: the text really is too long
    with pytest.raises(ValueError, match=r"text 1 is \d+ tokens long .* context of 128 tokens"):
        score_texts(rm, rm_tok, ["The plot was good.", long])
    with pytest.raises(ValueError, match="context of 128 tokens"):
        train_reward_model(rm, rm_tok, [dict(prompt="The plot was", chosen=long[12:], rejected=" bad.")],
                           RewardConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match=r"prompt 1 is \d+ tokens .*context of 128"):
        sample(policy, tok, ["The plot was", long], max_new_tokens=8, seed=0)
    with pytest.raises(ValueError, match="lower max_new_tokens"):
        sample(policy, tok, ["The plot was"], max_new_tokens=300, seed=0)
    with pytest.raises(ValueError, match="demonstration 0 .* context of 128"):
        sft(policy, tok, [dict(prompt="The plot was", completion=long[12:])], SFTConfig(epochs=1), progress=False)
    # at the limit itself, sampling still works: prompt + response fill the context exactly
    n_prompt = len(tok("The plot was", add_special_tokens=False)["input_ids"]) + 1
    s = sample(policy, tok, ["The plot was"], max_new_tokens=128 - n_prompt, seed=0, stop_at="text")
    assert s.prompt_ids.shape[1] + s.response_ids.shape[1] <= 128


RESUMING_LABELLER = """
import sys
from rlhf_lib.feedback import SimulatedAnnotator, label_into

class Loud(SimulatedAnnotator):  # says when each judgement is made, so the test can kill in the middle
    def compare(self, prompt, a, b):
        print("judged", flush=True)
        return super().compare(prompt, a, b)

pairs = [("The plot was", f" good {i}.", f" bad {i}.") for i in range(int(sys.argv[2]))]
label_into(sys.argv[1], Loud(0.1, seed=0), pairs)
"""


def test_labelling_killed_midway_resumes_without_loss_or_duplicates(tmp_path):
    """Notebook 06's labelling loop: SIGKILL it mid-run twice, run it again: every pair is in the file
    exactly once, and each judged pair before the kill is kept (at most the one in flight is redone)."""
    from rlhf_lib.feedback import SimulatedAnnotator, label_into

    rng, path, n = random.Random(1), tmp_path / "labels.jsonl", 300
    for _ in range(2):
        before = len(read_records(path, allow_empty=True)) if path.exists() else 0
        lines = kill_after(start(RESUMING_LABELLER, path, n), rng.randint(20, 60), rng)
        try:
            after = len(read_records(path))
        except TornTailError:
            with pytest.warns(UserWarning):
                repair_torn_tail(path)
            after = len(read_records(path))
        assert after >= before + len(lines) - 1, (before, len(lines), after)  # judged, then on disk
    label_into(path, SimulatedAnnotator(0.1, seed=0, name="sim-0"), [("The plot was", f" good {i}.", f" bad {i}.")
                                                                      for i in range(n)])
    pairs = [(r["prompt"], r["completion_a"], r["completion_b"]) for r in read_records(path)]
    assert len(pairs) == n and len(set(pairs)) == n
