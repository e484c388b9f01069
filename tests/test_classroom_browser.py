"""Two students label at the same time in a real (headless) Chromium with the keyboard, and the teacher
page shows both of them and their agreement. Debian's chromium is driven through Playwright, as in
tests/test_widget_browser.py; without it the test is skipped and says so, unless RLHF_REQUIRE_BROWSER=1.
Set CLASSROOM_SCREENSHOTS=FOLDER to keep a screenshot of each page."""

import os
import shutil
from pathlib import Path

import pytest
from test_classroom_server import TOKEN, Server

pytestmark = pytest.mark.slow  # a real browser: the quick lane leaves it out

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    reason = "no chromium on this machine (Debian: apt-get install -y chromium)"
    if os.environ.get("RLHF_REQUIRE_BROWSER") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")

KEYS = {"Ada": "abtabab", "<i>Bo</i>": "abbaabb"}  # Bo presses u after the third key, then b again


def kappa(x, y) -> float:
    """Cohen's kappa written out for the check: (p_o - p_e) / (1 - p_e)."""
    n = len(x)
    p_o = sum(u == v for u, v in zip(x, y)) / n
    p_e = sum((x.count(c) / n) * (y.count(c) / n) for c in set(x) | set(y))
    return (p_o - p_e) / (1 - p_e)


def test_two_students_label_with_the_keyboard_and_the_teacher_sees_them(tmp_path):
    server = Server(tmp_path, n_pairs=12, shared=1.0).start()
    shots = os.environ.get("CLASSROOM_SCREENSHOTS")
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"])
            pages = {}
            for name in KEYS:
                page = browser.new_context(viewport={"width": 1000, "height": 640}).new_page()
                page.goto(server.url + "/")
                page.fill("#name", name)
                page.keyboard.press("Enter")
                page.locator("#prompt").filter(has_text="Review").wait_for(timeout=20_000)
                pages[name] = page
            for i in range(len(KEYS["Ada"])):
                for name, page in pages.items():  # both press a key before either waits
                    page.keyboard.press(KEYS[name][i])
                for _, page in pages.items():
                    page.locator("#count").filter(has_text=f"{i + 1}").wait_for(timeout=20_000)
                if i == 2:  # Bo takes back the third label and judges that pair again below
                    bo = pages["<i>Bo</i>"]
                    bo.keyboard.press("u")
                    bo.locator("#count").filter(has_text="2").wait_for(timeout=20_000)
                    bo.locator("#status").filter(has_text="Undone").wait_for(timeout=20_000)
                    bo.keyboard.press("b")
                    bo.locator("#count").filter(has_text="3").wait_for(timeout=20_000)
            if shots:
                pages["Ada"].screenshot(path=str(Path(shots) / "classroom_student.png"))
            assert pages["<i>Bo</i>"].locator("#who").inner_text() == "<i>Bo</i>"  # shown as text

            records = server.export()
            by_name = {name: {(r["prompt"], r["completion_a"]): r["choice"] for r in records if r["annotator"] == name}
                       for name in KEYS}
            assert len(records) == 2 * len(KEYS["Ada"])
            keys = dict(a="a", b="b", t="tie")
            for name, pressed in KEYS.items():  # Bo's undone label is gone, his second judgement of it stored
                assert sorted(by_name[name].values()) == sorted(keys[k] for k in pressed)
            common = sorted(by_name["Ada"].keys() & by_name["<i>Bo</i>"].keys())
            assert len(common) == len(KEYS["Ada"])  # every pair is shared: both judged the same pairs
            expected = kappa([by_name["Ada"][c] for c in common], [by_name["<i>Bo</i>"][c] for c in common])

            teacher = browser.new_page(viewport={"width": 1100, "height": 800})
            teacher.goto(f"{server.url}/teacher?token={TOKEN}")
            students = teacher.locator("#students td.student").all_inner_texts()
            assert sorted(students) == sorted(KEYS)  # Bo's markup shown as the text he typed
            assert teacher.locator("#students i").count() == 0
            row = teacher.locator("#agreement tr").nth(1).locator("td").all_inner_texts()
            assert sorted(row[:2]) == sorted(KEYS) and row[2] == str(len(common))
            assert row[4] == f"{expected:.2f}"
            if shots:
                teacher.screenshot(path=str(Path(shots) / "classroom_teacher.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
