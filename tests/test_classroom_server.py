"""The classroom server as a class uses it: a real `python -m rlhf_lib classroom serve` process on
127.0.0.1, many labelers at once over HTTP, and the process killed with SIGKILL while they post.

Run with -s to see the time to acknowledge a label (median and 99th percentile)."""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from rlhf_lib.classroom.client import ClassroomClient, ClassroomError

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "teacher-secret"
WORDS = ["great", "awful", "fine", "dull", "lovely", "weak", "strong", "superb", "bad", "good"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_pairs(path: Path, n: int) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            a, b = WORDS[i % len(WORDS)], WORDS[(3 * i + 1) % len(WORDS)]
            f.write(json.dumps(dict(prompt=f"Review {i}: the film was", completion_a=f" {a}.",
                                    completion_b=f" {b} #{i}.")) + "\n")
    return path


class Server:
    """`python -m rlhf_lib classroom serve` in a subprocess; start() waits until it answers."""

    def __init__(self, folder: Path, n_pairs: int = 200, shared: float = 0.2):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "rlhf_lib", "classroom", "serve", "--db", str(folder / "class.db"),
                     "--port", str(self.port), "--pairs", str(write_pairs(folder / "pairs.jsonl", n_pairs)),
                     "--shared", str(shared), "--teacher-token", TOKEN, "--runs", str(folder / "runs")]
        self.process, self.starts = None, 0

    def start(self):
        self.starts += 1
        log = open(self.folder / f"server{self.starts}.log", "w")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail("the server stopped:\n" + (self.folder / f"server{self.starts}.log").read_text())
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        pytest.fail("the server did not answer within 60 s")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def export(self) -> list[dict]:
        r = httpx.get(self.url + "/api/export", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert r.status_code == 200, r.text
        return [json.loads(line) for line in r.text.splitlines()]


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path)
    yield s
    s.stop()


def pair_key(prompt, a, b, annotator):
    return (prompt, a, b, annotator)


@pytest.mark.slow
def test_thirty_labelers_at_once_every_acknowledged_label_exported_once(server):
    server.start()
    n_labelers, n_labels = 30, 50
    acked, latencies, errors = [], [], []
    lock, go = threading.Lock(), threading.Barrier(n_labelers, timeout=60)

    def labeler(k):
        name = f"student-{k:02d}"
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                go.wait()
                for i in range(n_labels):
                    pair = http.get("/api/pair", params={"annotator": name}).json()
                    choice = "abts"[(k + i) % 4]
                    choice = dict(a="a", b="b", t="tie", s="skip")[choice]
                    body = dict(pair_id=pair["pair_id"], annotator=name, choice=choice, label_id=uuid.uuid4().hex)
                    start = time.perf_counter()
                    r = http.post("/api/label", json=body)
                    seconds = time.perf_counter() - start
                    assert r.status_code == 201, r.text
                    with lock:
                        latencies.append(seconds)
                        acked.append(pair_key(pair["prompt"], pair["completion_a"], pair["completion_b"], name)
                                     + (choice,))
        except Exception as err:  # reported below, with the others
            errors.append(f"{name}: {err!r}")

    threads = [threading.Thread(target=labeler, args=(k,), daemon=True) for k in range(n_labelers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    seconds = time.perf_counter() - start
    assert not errors, errors[:3]
    assert len(acked) == n_labelers * n_labels
    exported = [pair_key(r["prompt"], r["completion_a"], r["completion_b"], r["annotator"]) + (r["choice"],)
                for r in server.export()]
    assert sorted(exported) == sorted(acked)  # each acknowledged label exactly once, and nothing else
    assert len(set(acked)) == len(acked)
    # the notebook client on the same server: undo shows the pair again, a bad choice is a clear error
    client = ClassroomClient(server.url, "student-00")
    last = client.undo()
    pair = client.next_pair()
    assert pair["pair_id"] == last["pair_id"] and pair["labeled"] == n_labels - 1
    with pytest.raises(ClassroomError, match="422: field 'choice' must be one of"):
        client.label(pair["pair_id"], "A")
    assert client.label(pair["pair_id"], "tie")["labeled"] == n_labels
    assert len(server.export()) == len(acked)
    q = statistics.quantiles(latencies, n=100)
    print(f"\n{n_labelers} labelers x {n_labels} labels over HTTP in {seconds:.1f} s "
          f"({len(acked) / seconds:.0f} labels/s): time to acknowledge a label: median "
          f"{statistics.median(latencies) * 1000:.1f} ms, 99th percentile {q[98] * 1000:.1f} ms")


@pytest.mark.slow
def test_server_killed_mid_session_loses_and_duplicates_nothing(server):
    server.start()
    n_labelers, n_labels = 8, 25
    acked, errors = [], []
    lock, killed = threading.Lock(), threading.Event()

    def labeler(k):
        name = f"student-{k}"
        client = ClassroomClient(server.url, name, timeout=5, retries=200, backoff=0.05)
        try:
            for i in range(n_labels):
                pair = client.next_pair()
                choice = "ab"[(k + i) % 2]
                client.label(pair["pair_id"], choice)
                with lock:
                    acked.append((pair_key(pair["prompt"], pair["completion_a"], pair["completion_b"], name)
                                  + (choice,), killed.is_set()))
        except Exception as err:
            errors.append(f"{name}: {err!r}")

    threads = [threading.Thread(target=labeler, args=(k,), daemon=True) for k in range(n_labelers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    with lock:  # the labels acknowledged before the kill: they must survive it
        server.kill()
        killed.set()
        before = [label for label, after in acked if not after]
    assert len(before) >= 40
    server.start()  # same database, same port
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(acked) == n_labelers * n_labels  # the labelers carried on to the end
    exported = [pair_key(r["prompt"], r["completion_a"], r["completion_b"], r["annotator"]) + (r["choice"],)
                for r in server.export()]
    assert len(exported) == len(set(exported))  # nothing stored twice
    assert set(before) <= set(exported)
    assert sorted(exported) == sorted(label for label, _ in acked)
