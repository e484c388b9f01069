"""The classroom server in one process: agreement measures against brute force and a published example,
handing out pairs, idempotent labels and undo, the export read back by the library, and bad input."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from rlhf_lib.__main__ import main
from rlhf_lib.classroom.agreement import krippendorff_alpha
from rlhf_lib.classroom.app import MAX_BODY, make_app
from rlhf_lib.classroom.store import Store
from rlhf_lib.feedback import FIELDS, load_preferences, read_records

TOKEN = "teacher-secret"
WORDS = ["great", "awful", "fine", "dull", "lovely", "weak", "strong", "superb", "bad", "good", "tender", "bland"]


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    return [(f"Review {i}: the film was", f" {a}.", f" {b}.") for i, (a, b) in
            enumerate(rng.sample(WORDS, 2) for _ in range(n))]


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "class.db")
    s.seed_pairs(make_pairs(20), shared=0.25, seed=3)
    return s


@pytest.fixture
def client(store):
    with TestClient(make_app(store, TOKEN)) as c:
        yield c


# ---- agreement


def brute_force_alpha(units) -> float:
    """1 - D_o / D_e from the definition: D_o over every ordered pair of values from two different
    raters of one unit, weighted 1 / (m_u - 1); D_e over every ordered pair of the pooled values."""
    units = [u for u in units if len(u) >= 2]
    pooled = [v for u in units for v in u]
    n = len(pooled)
    d_o = sum(sum(u[i] != u[j] for i in range(len(u)) for j in range(len(u)) if i != j) / (len(u) - 1)
              for u in units) / n
    d_e = sum(pooled[i] != pooled[j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    return 1 - d_o / d_e


def test_krippendorff_alpha_published_example_and_brute_force():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, missing
    # values; nominal alpha = 0.743
    observers = ["1 2 3 3 2 1 4 1 2 . . .", "1 2 3 3 2 2 4 1 2 5 . 3",
                 ". 3 3 3 2 3 4 2 2 5 1 .", "1 2 3 3 2 4 4 1 2 5 1 ."]
    grid = [row.split() for row in observers]
    units = [[row[u] for row in grid if row[u] != "."] for u in range(12)]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    rng = random.Random(1)
    for _ in range(20):
        units = [[rng.choice("abt") for _ in range(rng.randint(1, 5))] for _ in range(rng.randint(2, 12))]
        assert krippendorff_alpha(units) == pytest.approx(brute_force_alpha(units), nan_ok=True)
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)


# ---- handing out pairs


def test_shared_pairs_get_two_students_and_the_rest_one(store):
    shared = {row[0] for row in store._db().execute("SELECT id FROM pairs WHERE shared = 1")}
    assert len(shared) == 5  # 25% of 20
    students = ["ann", "ben", "cat"]
    labels = Counter()
    for step in range(200):  # round robin until every pair has its students
        name = students[step % 3]
        pair = store.next_pair(name)
        if pair is None:
            continue
        assert store.next_pair(name).id == pair.id  # asking again shows the same pair
        store.add_label(pair.id, name, "a", f"{name}-{pair.id}")
        labels[pair.id] += 1
        if all(labels[i] >= (2 if i in shared else 1) for i in range(1, 21)):
            break
    assert all(labels[i] >= 2 for i in shared)
    assert sum(labels.values()) <= 20 + len(shared) + 2  # barely more than the plan needs
    rows = store._db().execute("SELECT pair_id, COUNT(DISTINCT annotator) FROM labels GROUP BY pair_id").fetchall()
    assert all(n == labels[i] for i, n in rows)  # two labels of a pair are two different students


def test_seeding_is_deterministic_and_refuses_other_pairs(tmp_path):
    a, b = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    for s in (a, b):
        s.seed_pairs(make_pairs(30), shared=0.2, seed=7)
    query = "SELECT * FROM pairs ORDER BY id"
    assert a._db().execute(query).fetchall() == b._db().execute(query).fetchall()
    assert a.seed_pairs(make_pairs(30), shared=0.2, seed=7) == 30  # the same pairs again: nothing changes
    with pytest.raises(ValueError, match="already holds 30 other pairs"):
        a.seed_pairs(make_pairs(30, seed=1))


# ---- the API


def post(client, **body):
    return client.post("/api/label", json=body)


def test_retried_label_is_stored_once_and_undo_shows_the_pair_again(client, store):
    pair = client.get("/api/pair", params={"annotator": "Ada"}).json()
    body = dict(pair_id=pair["pair_id"], annotator="Ada", choice="a", label_id="ada-1")
    first, again = post(client, **body), post(client, **body)
    assert (first.status_code, first.json()["duplicate"]) == (201, False)
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert store.n_labels() == 1
    other = post(client, **dict(body, choice="b"))
    assert other.status_code == 409 and "already used" in other.json()["error"]
    second = post(client, pair_id=pair["pair_id"], annotator="Ada", choice="b")  # a new label_id, same pair
    assert second.status_code == 409 and "undo it first" in second.json()["error"]
    nxt = client.get("/api/pair", params={"annotator": "Ada"}).json()
    assert nxt["pair_id"] != pair["pair_id"] and nxt["labeled"] == 1
    undone = client.post("/api/undo", json={"annotator": "Ada"}).json()
    assert undone == dict(label_id="ada-1", pair_id=pair["pair_id"], already_undone=False)
    back = client.get("/api/pair", params={"annotator": "Ada"}).json()
    assert back["pair_id"] == pair["pair_id"] and back["labeled"] == 0
    assert post(client, **dict(body, label_id="ada-2", choice="b")).status_code == 201
    assert post(client, **body).json()["undone"] is True  # a late retry of the undone label is not stored again
    lines = client.get("/api/export", headers={"Authorization": f"Bearer {TOKEN}"}).text.splitlines()
    assert [json.loads(line)["choice"] for line in lines] == ["b"]
    assert client.post("/api/undo", json={"annotator": "Nobody"}).status_code == 404


def test_export_is_what_the_library_trains_from(client, store, tmp_path):
    pairs = make_pairs(20)
    posted = []
    for name, choices in [("Ada", "abtsab"), ("Ben", "bbata")]:
        for choice in choices:
            choice = dict(a="a", b="b", t="tie", s="skip")[choice]
            pair = client.get("/api/pair", params={"annotator": name}).json()
            assert post(client, pair_id=pair["pair_id"], annotator=name, choice=choice).status_code == 201
            posted.append(dict(zip(("prompt", "completion_a", "completion_b"), pairs[pair["pair_id"] - 1]),
                               choice=choice, annotator=name))
    path = tmp_path / "export.jsonl"
    path.write_text(client.get("/api/export", params={"token": TOKEN}).text)
    records = read_records(path)
    assert [set(r) for r in records] == [set(FIELDS)] * len(posted)
    assert [{k: r[k] for k in posted[0]} for r in records] == posted
    assert len(load_preferences(path)) == sum(p["choice"] != "skip" for p in posted)


def test_teacher_page_needs_the_token_and_escapes_names(client):
    name = "<script>alert(1)</script><b>Eve</b>"
    pair = client.get("/api/pair", params={"annotator": name}).json()
    assert post(client, pair_id=pair["pair_id"], annotator=name, choice="a").status_code == 201
    refused = client.get("/teacher")
    assert refused.status_code == 401 and "teacher token" in refused.text
    assert client.get("/teacher", params={"token": "wrong"}).status_code == 403
    page = client.get("/teacher", params={"token": TOKEN}).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;Eve&lt;/b&gt;" in page
    assert "<script>" not in page and "<b>Eve" not in page
    report = client.get("/api/report", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [s["name"] for s in report["students"]] == [name]


BAD_LABELS = [  # (body, status, words the error must contain)
    (dict(pair_id=999, annotator="Ada", choice="a"), 404, "unknown pair_id 999"),
    (dict(pair_id=1, annotator="Ada", choice="maybe"), 422, "'choice' must be one of"),
    (dict(annotator="Ada", choice="a"), 422, "missing field(s) 'pair_id'"),
    (dict(pair_id=1, choice="a"), 422, "missing field(s) 'annotator'"),
    (dict(pair_id="1", annotator="Ada", choice="a"), 422, "'pair_id' must be an integer"),
    (dict(pair_id=True, annotator="Ada", choice="a"), 422, "'pair_id' must be an integer"),
    (dict(pair_id=1.0, annotator="Ada", choice="a"), 422, "'pair_id' must be an integer"),
    (dict(pair_id=1, annotator=["Ada"], choice="a"), 422, "'annotator' must be text"),
    (dict(pair_id=1, annotator="Ada", choice=1), 422, "'choice' must be text"),
    (dict(pair_id=1, annotator="  ", choice="a"), 422, "'annotator' is empty"),
    (dict(pair_id=1, annotator="A" * 41, choice="a"), 422, "at most 40"),
    (dict(pair_id=1, annotator="Ada\x00", choice="a"), 422, "control characters"),
    (dict(pair_id=1, annotator="Ada", choice="a", label_id=""), 422, "'label_id' must be"),
    (dict(pair_id=1, annotator="Ada", choice="a", label_id="a b"), 422, "'label_id' must be"),
    (dict(pair_id=1, annotator="Ada", choice="a", score=3), 422, "unknown field(s) 'score'"),
    ([1, "Ada", "a"], 400, "must be a JSON object"),
]


@pytest.mark.parametrize("body,status,words", BAD_LABELS)
def test_bad_label_is_refused_and_nothing_is_stored(client, store, body, status, words):
    r = client.post("/api/label", json=body)
    assert r.status_code == status and words in r.json()["error"], r.text
    assert store.n_labels() == 0 and store.labels() == []


def test_bad_requests_of_other_kinds(client, store):
    r = client.post("/api/label", content=b'{"pair_id": 1, "annotator": "Ada", "choice": "a"')
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    big = json.dumps(dict(pair_id=1, annotator="Ada", choice="a", label_id="x" * MAX_BODY))
    r = client.post("/api/label", content=big)
    assert r.status_code == 413 and f"at most {MAX_BODY}" in r.json()["error"]
    r = client.post("/api/label", content=iter([big.encode()]))  # no length given: cut off while reading
    assert r.status_code == 413 and f"over {MAX_BODY} bytes" in r.json()["error"]
    r = client.get("/api/pair")
    assert r.status_code == 422 and "'annotator'" in r.json()["error"]
    r = client.get("/api/export")
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["error"]
    r = client.get("/api/export", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403 and "wrong teacher token" in r.json()["error"]
    assert client.get("/api/report").status_code == 401
    assert store.n_labels() == 0
    assert client.post("/api/undo", json={"annotator": "Ada", "label_id": "none"}).status_code == 404
    r = client.get("/api/label")
    assert r.status_code == 405 and "GET /api/label: Method Not Allowed" in r.json()["error"]
    assert client.get("/api/nothing").status_code == 404


def test_cli_refuses_bad_options_before_any_work(tmp_path, capsys):
    db = tmp_path / "class.db"
    assert main(["classroom", "serve", "--db", str(db), "--shared", "1.5"]) == 2
    assert "--shared must be between 0 and 1" in capsys.readouterr().err
    assert main(["classroom", "serve", "--db", str(db), "--pairs", str(tmp_path / "none.jsonl")]) == 2
    assert "--pairs: no file" in capsys.readouterr().err
    assert not db.exists()
    s = Store(db)
    s.seed_pairs(make_pairs(5))
    s.add_label(1, "Ada", "a", "x")
    assert main(["classroom", "train", "--db", str(db), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "1 a/b labels" in err and "--min-labels asks for 20" in err


def test_train_command_trains_on_the_class_labels_end_to_end(tmp_path, capsys):
    """The class labels one-sentence pairs: `classroom train` runs the one-sentence reward model and PPO on them
    (the commands' own default is whole reviews), and reports before/after."""
    import json

    s = Store(tmp_path / "class.db")
    pairs = make_pairs(30, seed=5)
    s.seed_pairs(pairs, shared=0.0, seed=1)
    for i in range(1, 31):
        s.add_label(i, "Ada", "a" if i % 3 else "b", f"k{i}")
    out = tmp_path / "run"
    code = main(["classroom", "train", "--db", str(s.path), "--out", str(out), "--epochs", "1", "--iterations", "1",
                 "--heldout", "8", "--eval-samples", "8"])
    assert code == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_decided"] == 30 and 0 <= summary["reward_model_gold_accuracy"] <= 1
    rm = json.loads((out / "reward_model" / "summary.json").read_text())
    ppo = json.loads((out / "ppo" / "summary.json").read_text())
    assert rm["n_train_pairs"] <= 30 and ppo["task"] == "sentence" and ppo["config"]["stop_at"] == "sentence"
    assert {"positive_rate", "grammatical_rate"} <= set(summary["after"])


def test_train_button_runs_the_train_command_in_the_background(tmp_path, store, monkeypatch):
    import time

    from rlhf_lib.classroom.cli import BackgroundTrainer

    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    store.add_label(1, "Ada", "a", "only-one")  # too few labels: the command refuses, and says why
    trainer = BackgroundTrainer(store.path, tmp_path / "runs")
    with TestClient(make_app(store, TOKEN, trainer)) as c:
        assert c.post("/api/train").status_code == 401
        assert c.get("/api/train", params={"token": TOKEN}).json()["state"] == "not started"
        assert c.post("/api/train", params={"token": TOKEN}).json()["state"] in ("running", "failed (exit code 2)")
        deadline = time.monotonic() + 60
        while (state := c.get("/api/train", params={"token": TOKEN}).json())["state"] == "running":
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["state"] == "failed (exit code 2)"
        assert "1 a/b labels" in state["log_tail"] and "--min-labels asks for 20" in state["log_tail"]
        assert "failed (exit code 2)" in c.get("/teacher", params={"token": TOKEN}).text


def test_serve_refuses_a_port_in_use(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["classroom", "serve", "--db", str(tmp_path / "class.db"), "--port", str(port)]) == 2
    assert f"--port {port}: cannot listen there" in capsys.readouterr().err
    assert not (tmp_path / "class.db").exists()
