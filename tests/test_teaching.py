"""What a learner and a teacher rely on beyond the code: chance-corrected agreement checked by hand and by
brute force, an answer for every discussion question, every figure shown somewhere, one glossary linked
from every notebook, one course plan everywhere, and the same commands in both READMEs."""

import json
import math
import re
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from rlhf_lib.answers import ANSWERS, answer, answer_key
from rlhf_lib.feedback import cohens_kappa, order_from_ratings

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PLAN = {"09": "optimizing a learned reward", "10": "DPO", "11": "closing the loop", "12": "AI feedback",
        "13": "evaluation", "14": "scaling up"}


def cells(path):
    return json.loads(path.read_text())["cells"]


def markdown(path):
    return "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "markdown")


def code(path):
    return "\n".join("".join(c["source"]) for c in cells(path) if c["cell_type"] == "code")


# ---- Cohen's kappa


def test_kappa_of_a_hand_computed_table():
    # 50 items: both yes 20, x yes / y no 5, x no / y yes 10, both no 15.
    # p_o = 35/50 = 0.7; x says yes 25/50, y says yes 30/50: p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = 0.2 / 0.5.
    x = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    y = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohens_kappa(x, y) == pytest.approx(0.4)
    assert cohens_kappa(y, x) == pytest.approx(0.4)


def brute_force_kappa(x, y):
    """p_e as the chance that x's label of one item equals y's label of an item drawn independently:
    the mean over all n * n (item, item) combinations."""
    n = len(x)
    p_o = sum(x[i] == y[i] for i in range(n)) / n
    p_e = sum(x[i] == y[j] for i, j in product(range(n), repeat=2)) / n**2
    return (p_o - p_e) / (1 - p_e)


@pytest.mark.parametrize("seed", range(5))
def test_kappa_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 6, size=60).tolist()
    y = [v if rng.random() < 0.5 else int(rng.integers(1, 6)) for v in x]  # half copied, half random
    assert cohens_kappa(x, y) == pytest.approx(brute_force_kappa(x, y), abs=1e-12)


def test_kappa_limits_and_bad_input():
    assert cohens_kappa([1, 2, 3, 1], [1, 2, 3, 1]) == pytest.approx(1.0)
    assert cohens_kappa(["a", "b"] * 10, ["b", "a"] * 10) == pytest.approx(-1.0)
    assert math.isnan(cohens_kappa(["a"] * 4, ["a"] * 4))
    with pytest.raises(ValueError, match="same items"):
        cohens_kappa([1, 2], [1])
    with pytest.raises(ValueError, match="no items"):
        cohens_kappa([], [])


def test_order_from_ratings():
    assert [order_from_ratings(*r) for r in ((4, 2), (1, 5), (3, 3))] == ["a", "b", "tie"]


# ---- discussion questions and their answers

QUESTION = re.compile(r"\*\*Question (\d+)\.(\d+)\.\*\*")
UNANSWERED_FORM = re.compile(r"Exercise (\d+)\.(\d+) \(no checker\)")


def questions():
    found = {}
    for path in NOTEBOOKS:
        text = markdown(path)
        assert not UNANSWERED_FORM.search(text), f"{path.name}: write a discussion question as **Question N.M.**"
        for nb, q in QUESTION.findall(text):
            assert int(nb) == int(path.name[:2]), f"{path.name} numbers a question {nb}.{q}"
            found[f"{int(nb)}.{q}"] = path
    return found


def test_every_discussion_question_has_an_answer():
    found = questions()
    per_notebook = {path.name: sum(p == path for p in found.values()) for path in NOTEBOOKS if path.name[:2] >= "01"}
    assert all(n >= 2 for n in per_notebook.values()), f"two questions at least from 01 on: {per_notebook}"
    missing = sorted(set(found) - set(ANSWERS))
    stale = sorted(set(ANSWERS) - set(found))
    assert not missing, f"questions without a model answer in rlhf_lib/answers.py: {missing}"
    assert not stale, f"answers to questions no notebook asks: {stale}"
    for number, path in found.items():
        assert f'answer("{number}")' in code(path), f"{path.name}: add a cell that offers answer(\"{number}\")"


def test_answers_print_and_unknown_numbers_are_named(capsys):
    answer("8.1")
    out = capsys.readouterr().out
    assert out.startswith("Question 8.1.") and "1e-5" in out and "MEASURED" not in out
    with pytest.raises(KeyError, match="known"):
        answer("99.9")
    key = answer_key()
    assert all(f"Question {n}." in key for n in ANSWERS)
    assert key.index("Question 2.1.") < key.index("Question 8.1.")


# ---- figures, glossary, numbering, the Chinese README


def test_every_figure_is_shown_somewhere():
    shown = "\n".join([markdown(p) for p in NOTEBOOKS] + [p.read_text() for p in ROOT.glob("*.md")]
                      + [p.read_text() for folder in ("docs", "benchmarks") for p in (ROOT / folder).glob("*.md")])
    unused = [f.name for f in (ROOT / "assets" / "figures").glob("*.png") if f"figures/{f.name}" not in shown]
    assert not unused, f"figures no notebook or document shows: {unused}"
    missing = sorted(set(re.findall(r"figures/([\w.-]+\.png)", shown))
                     - {f.name for f in (ROOT / "assets" / "figures").glob("*.png")})
    assert not missing, f"figures shown but not in assets/figures: {missing}"


def test_glossary_is_bilingual_and_linked_from_every_notebook():
    glossary = (ROOT / "docs" / "glossary.md").read_text()
    for english, chinese in (("reinforcement learning", "强化学习"), ("reward model", "奖励模型"),
                             ("policy gradient", "策略梯度"), ("human feedback", "人类反馈"),
                             ("proximal policy optimization", "近端策略优化"), ("value function", "价值函数"),
                             ("advantage", "优势函数"), ("KL divergence", "KL 散度")):
        row = next((line for line in glossary.splitlines() if english in line.lower() or english in line), None)
        assert row is not None and chinese in row, f"glossary: {english} / {chinese}"
    for path in NOTEBOOKS:
        assert "docs/glossary.md" in "".join(cells(path)[0]["source"]), f"{path.name}: link the glossary in cell 1"


ZH_PLAN = {"09": "优化学到的奖励", "10": "DPO", "11": "闭合循环", "12": "AI 反馈", "13": "评估", "14": "扩大规模"}


def test_one_course_plan_everywhere():
    for text in (markdown(ROOT / "notebooks" / "00_welcome.ipynb"), (ROOT / "README.md").read_text(),
                 (ROOT / "README.zh-CN.md").read_text()):
        for number in PLAN:
            row = next((line for line in text.splitlines() if line.startswith(f"| {number} |")), "")
            assert PLAN[number].lower() in row.lower() or ZH_PLAN[number] in row, f"row {number}: {row!r}"


def test_notation_keeps_t_for_time_and_r_for_rewards():
    for path in NOTEBOOKS:
        text = markdown(path)
        assert not re.search(r"\\log r\b", text), f"{path.name}: a ratio is rho, r is a reward"
        assert not re.search(r"/\s*T\b|/T\}", text), f"{path.name}: a temperature is tau, T is the last time step"


def test_chinese_readme_has_the_same_commands():
    fence = re.compile(r"```(?:bash|sh)\n(.*?)\n```", re.DOTALL)
    english = fence.findall((ROOT / "README.md").read_text())
    chinese = fence.findall((ROOT / "README.zh-CN.md").read_text())
    assert english[:2] == chinese[:2] and len(english) >= 2


def test_every_notebook_from_01_on_ends_with_a_recap_before_its_assertion():
    """A markdown cell starting **Recap.** (what was built, what was measured, what comes next) comes after every
    exercise and question of the notebook and before its last code cell, the promise's assertion."""
    for path in NOTEBOOKS:
        if path.name[:2] < "01":
            continue
        cells = json.loads(path.read_text())["cells"]
        recaps = [i for i, c in enumerate(cells)
                  if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip().startswith("**Recap.**")]
        last_code = max(i for i, c in enumerate(cells) if c["cell_type"] == "code")
        assert len(recaps) == 1 and recaps[0] < last_code, f"{path.name}: recap cells at {recaps}"
        posed = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                 and re.match(r"\*\*(Question|Exercise) \d+\.\d+", "".join(c["source"]).lstrip())]
        assert all(i < recaps[0] for i in posed), f"{path.name}: a question or exercise after the recap"
        text = "".join(cells[recaps[0]]["source"])
        assert "Next:" in text and text.count("\n- ") >= 2, f"{path.name}: a recap lists what was done and what is next"


def test_every_notebook_links_its_papers():
    """docs/reading.md has a section for every notebook, each with papers, and the notebook's first cell links it."""
    reading = (ROOT / "docs" / "reading.md").read_text()
    sections = dict(re.findall(r"^## (\d\d) · [^\n]*\n(.*?)(?=^## |\Z)", reading, flags=re.M | re.S))
    for path in NOTEBOOKS:
        first = "".join(json.loads(path.read_text())["cells"][0]["source"])
        number = path.name[:2]
        assert "(../docs/reading.md)" in first and f"section {number}" in first, path.name
        assert number in sections and re.search(r"\b(19|20)\d\d\b", sections[number]), f"no papers for {number}"


PREDICTING = {"01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"}
"""notebooks whose main run comes after a prediction the learner writes down"""


def test_a_prediction_comes_before_each_main_run_and_is_shown_beside_its_outcome():
    """A markdown cell starting **Predict.**, then a code cell assigning `prediction`, which a later cell prints
    beside the measured outcome."""
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        predicts = [i for i, c in enumerate(cells)
                    if c["cell_type"] == "markdown" and "".join(c["source"]).lstrip().startswith("**Predict.**")]
        assert bool(predicts) == (path.name[:2] in PREDICTING), f"{path.name}: Predict cells at {predicts}"
        for i in predicts:
            after = cells[i + 1]
            assert after["cell_type"] == "code" and re.match(r"prediction = ", "".join(after["source"])), path.name
            assert any("{prediction}" in "".join(c["source"]) for c in cells[i + 2:] if c["cell_type"] == "code"), \
                f"{path.name}: the prediction is never shown beside the outcome"
