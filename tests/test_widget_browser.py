"""The labeling widget used as a learner uses it: JupyterLab in a real (headless) Chromium.

The test starts JupyterLab, opens a notebook whose cell shows a `Labeler`, clicks its buttons
and then reads the JSONL file on disk. It drives Debian's `chromium` through Playwright, with
no browser download. Where no chromium is installed the tests are skipped and say so, unless
RLHF_REQUIRE_BROWSER=1 (set by the CI script), where they fail instead.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rlhf_lib.widgets import Labeler

pytestmark = pytest.mark.slow  # a real browser: the quick lane leaves it out

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PAIRS = [("The plot was", " superb.", " awful."), ("The music was", " dull.", " lovely."),
         ("Overall,", " it was fine.", " it was fine!"), ("The ending was", " weak.", " strong."),
         ("I expected", " more.", " a great drama."), ("The acting was", " bad.", " good.")]

if CHROMIUM is None or shutil.which("jupyter", path=str(Path(sys.executable).parent)) is None:
    reason = "no chromium on this machine (Debian: apt-get install -y chromium)"
    if os.environ.get("RLHF_REQUIRE_BROWSER") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port, rooted in a fresh folder, with the news prompt turned off."""
    root = tmp_path_factory.mktemp("lab")
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, token = free_port(), "rlhf-test-token"
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(root / ".settings"), PYTHONPATH=str(ROOT))
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("JupyterLab did not start:\n" + (root / "server.log").read_text())
    yield root, url, token
    server.send_signal(signal.SIGINT)
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"])
        yield b
        b.close()


def write_notebook(folder: Path, name: str, labels: str) -> None:
    source = ("import os\n"
              "from rlhf_lib.widgets import Labeler\n"
              f"labeler = Labeler({labels!r}, {PAIRS!r})\n"
              "print(f'KERNEL_PID={os.getpid()}')\n"
              "labeler")
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": "labeler", "metadata": {},
                           "outputs": [], "source": source}],
                "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                            "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    (folder / name).write_text(json.dumps(notebook))


def open_and_run(browser, url, token, name):
    """Open the notebook, run its one cell, wait for the labeler; returns (page, kernel pid)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/lab/tree/{name}?reset&token={token}")  # reset: no tabs restored from earlier
    page.locator(".jp-Notebook .jp-Cell .cm-content").first.click(timeout=60_000)
    page.wait_for_timeout(500)
    page.keyboard.press("Shift+Enter")
    page.get_by_role("button", name="A is better").wait_for(timeout=60_000)
    pid = int(re.search(r"KERNEL_PID=(\d+)", page.locator(".jp-OutputArea").first.inner_text()).group(1))
    return page, pid


def click(page, name, judged):
    """Click a button and wait until the widget shows the new count (the kernel wrote the record)."""
    page.get_by_role("button", name=name).click()
    page.get_by_text(f"{judged} / {len(PAIRS)} pairs judged").wait_for(timeout=20_000)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_clicks_in_jupyterlab_write_exactly_the_expected_records(lab, browser):
    root, url, token = lab
    write_notebook(root, "label.ipynb", "labels.jsonl")
    page, _ = open_and_run(browser, url, token, "label.ipynb")
    page.get_by_text(f"0 / {len(PAIRS)} pairs judged").wait_for(timeout=20_000)
    for name, judged in [("A is better", 1), ("B is better", 2), ("Tie", 3), ("Skip", 4), ("Undo", 3)]:
        click(page, name, judged)
    saved = records(root / "labels.jsonl")
    assert [r["choice"] for r in saved] == ["a", "b", "tie"]
    assert [(r["prompt"], r["completion_a"], r["completion_b"]) for r in saved] == PAIRS[:3]
    assert {r["annotator"] for r in saved} == {"you"}
    # the skipped-then-undone pair is shown again, and the agreement figure counts the A/B clicks
    page.locator("b", has_text=PAIRS[3][1].strip()).first.wait_for(timeout=5_000)
    page.get_by_text("agreement with the simulated annotator's taste: 2/2").wait_for(timeout=5_000)
    # the keyboard box: "b" labels the shown pair, "u" takes it back, "s" skips it
    box = page.get_by_placeholder("keys: a, b, t, s, u")
    for key, judged in [("b", 4), ("u", 3), ("s", 4)]:
        box.press(key)
        page.get_by_text(f"{judged} / {len(PAIRS)} pairs judged").wait_for(timeout=20_000)
    saved = records(root / "labels.jsonl")
    assert [r["choice"] for r in saved] == ["a", "b", "tie", "skip"] and saved[3]["prompt"] == PAIRS[3][0]
    page.close()


def test_killing_the_kernel_keeps_every_click(lab, browser):
    root, url, token = lab
    write_notebook(root, "kill.ipynb", "kill.jsonl")
    page, pid = open_and_run(browser, url, token, "kill.ipynb")
    n = 4
    for judged, name in enumerate(["A is better", "B is better", "Tie", "A is better"][:n], 1):
        click(page, name, judged)
    os.kill(pid, signal.SIGKILL)  # no chance to flush anything after the last click
    page.close()
    saved = records(root / "kill.jsonl")
    assert [r["choice"] for r in saved] == ["a", "b", "tie", "a"]
    # opening a labeler on the same file resumes at the first pair not yet judged
    resumed = Labeler(root / "kill.jsonl", PAIRS)
    assert resumed.queue[0] == PAIRS[n] and len(resumed.queue) == len(PAIRS) - n
